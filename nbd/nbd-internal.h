/*
 * Shared between the files of nbd/: the export and client structures,
 * the connection's buffered I/O, request decoding and validation, reply
 * encoding and the metadata context matcher.  Nothing here is public;
 * include/nbd/server.h is the API.
 *
 * Threads of one connection: its reader thread (handshake, then request
 * headers and write payloads) and the workers of its own pool.  Small
 * READ/WRITE requests run on the reader itself while they complete fast
 * (page cache); everything else, and everything for a while after an
 * inline request was slow, goes to the pool.  Replies go through one
 * output queue per connection (reply.c): small ones are batched, and the
 * reader's own replies are written when it is about to wait for input.
 */
#ifndef NBD_NBD_INTERNAL_H
#define NBD_NBD_INTERNAL_H

#include <glib.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "block/block.h"
#include "nbd/nbd-protocol.h"
#include "nbd/server.h"

/* ---- Exports and metadata contexts -------------------------------------- */

typedef enum {
    NBD_META_BASE_ALLOCATION,
    NBD_META_ALLOCATION_DEPTH,
    NBD_META_BITMAP,
} NbdMetaKind;

struct NbdBitmapContext {
    char *name;                      /* bitmap's export name */
    const NbdBitmapContextOps *ops;
    void *opaque;
};

typedef struct NbdMetaContext {
    char *name;                      /* full context name */
    NbdMetaKind kind;
    NbdBitmapContext *bitmap;        /* NBD_META_BITMAP only */
} NbdMetaContext;

struct NbdExport {
    gint refcnt;                     /* atomic; last unref defers free */
    char *id;                        /* NULL for qemu-nbd exports */
    char *name;
    char *description;               /* NULL: none */
    BlockDriverState *bs;
    uint64_t size;
    bool writable;
    bool discard_ignore;
    bool writethrough;
    uint16_t flags;                  /* transmission flags, client-neutral */
    /* Context id == index; immutable after creation. */
    NbdMetaContext *contexts;
    unsigned n_contexts;
    /* Under the export registry lock. */
    bool shutting_down;
    unsigned clients;
};

/* Look up a published (not shutting down) export; returns a reference. */
NbdExport *nbd_export_lookup(const char *name);
void nbd_export_ref(NbdExport *exp);
/* Any thread; the free itself happens on the main loop. */
void nbd_export_unref(NbdExport *exp);
/* Names of the published exports and their descriptions (for LIST). */
void nbd_export_names(GPtrArray *names, GPtrArray *descriptions);
/*
 * Attach/detach a client (counts for block-export-del safe mode); attach
 * fails once the export is shutting down.
 */
bool nbd_export_attach(NbdExport *exp);
void nbd_export_detach(NbdExport *exp);
/* Free the exports whose last reference went (main thread). */
void nbd_export_run_pending(void);
/* Set by the server when it stops: every export is deleted hard. */
void nbd_export_del_all(void);

/*
 * Match @query against @exp's contexts; @list selects the LIST semantics
 * (namespace-only queries like "qemu:" match every context of the
 * namespace), otherwise only exact names match.  Sets bit i of @selected
 * (n_contexts bits) for every match.  Returns false for a malformed query
 * (length over NBD_MAX_STRING_SIZE), which matches nothing.
 */
bool nbd_meta_match(const NbdExport *exp, const char *query, size_t len,
                    bool list, bool *selected);

/* The extents machinery (meta-context.c). */
struct NbdExtents {
    uint32_t *pairs;                 /* length, flags (host order) */
    uint32_t count;
    uint32_t cap;
    uint32_t max;
    uint64_t total;
    uint64_t limit;                  /* <= UINT32_MAX (a request length) */
};

void nbd_extents_init(NbdExtents *ex, uint64_t limit, uint32_t max);
void nbd_extents_clear(NbdExtents *ex);
/* Room for one more extent; false when @ex already holds max extents. */
bool nbd_extents_grow(NbdExtents *ex);

/*
 * Append an extent, merged into the previous one when the flags match,
 * cut at the request's length.  False once the extents cover the request
 * or no more fit: the caller stops.  nbd_extents_add() out of line;
 * inline here because a reply over a sparse bitmap has hundreds.
 */
static inline bool nbd_extents_append(NbdExtents *ex, uint64_t length,
                                      uint32_t flags)
{
    uint64_t room = ex->limit - ex->total;
    uint32_t *last = ex->count ? &ex->pairs[2 * ex->count - 2] : NULL;

    if (length > room) {
        length = room;
    }
    if (length == 0) {
        return false;
    }
    if (last && last[1] == flags && (uint64_t)last[0] + length <= UINT32_MAX) {
        last[0] += (uint32_t)length;
    } else {
        if (ex->count == ex->cap && !nbd_extents_grow(ex)) {
            return false;
        }
        ex->pairs[2 * ex->count] = (uint32_t)length;
        ex->pairs[2 * ex->count + 1] = flags;
        ex->count++;
    }
    ex->total += length;
    return ex->total < ex->limit;
}
/* Fill @ex for context @ctx of @exp; 0 or -errno. */
int nbd_meta_extents(NbdExport *exp, const NbdMetaContext *ctx,
                     uint64_t offset, uint64_t length, NbdExtents *ex);

/* ---- Connections -------------------------------------------------------- */

#define NBD_RBUF_SIZE (256 * 1024)
#define NBD_CLIENT_MAX_INFLIGHT 32
#define NBD_CLIENT_MAX_INFLIGHT_BYTES (64u * 1024 * 1024)
#define NBD_CLIENT_WORKERS 16
/* READ/WRITE up to this size may run on the reader thread. */
#define NBD_INLINE_MAX (2 * 1024 * 1024)
/*
 * An inline request is slow when it takes longer than this plus 1 us per
 * KiB (a page-cache copy runs at several GB/s).
 */
#define NBD_INLINE_SLOW_US 100
#define NBD_INLINE_SLOW_OF_16 4
#define NBD_POOL_MODE_REQUESTS 1024
/* Replies up to this size are copied into the output queue. */
#define NBD_OUT_COPY_MAX (64 * 1024 + 64)
/* Queued reply bytes beyond which senders wait for the socket. */
#define NBD_OUT_LIMIT (1024 * 1024)

typedef struct NbdClient {
    int fd;
    GThread *thread;
    char *peer;                      /* for messages */

    /* Negotiation (reader thread). */
    bool fixed_newstyle;
    bool no_zeroes;
    bool structured;
    unsigned n_options;
    NbdExport *meta_exp;             /* export of the selected contexts */
    bool *meta_selected;             /* meta_exp->n_contexts flags */
    unsigned n_meta_selected;

    /* Transmission. */
    NbdExport *exp;                  /* after GO/EXPORT_NAME */
    uint16_t tx_flags;
    GThreadPool *pool;
    unsigned pool_mode;              /* requests left that skip inline */
    uint16_t slow_history;           /* 1 bit per recent inline request */

    /* Input buffer (reader thread). */
    uint8_t *rbuf;
    size_t rpos;
    size_t rlen;

    /* Output queue (reply.c). */
    GMutex send_lock;
    GCond send_cond;
    GByteArray *out;                 /* queued small replies */
    GByteArray *out_spare;           /* empty buffer to swap in */
    bool sending;                    /* a thread is writing the socket */
    unsigned send_waiters;
    int send_error;                  /* first write error: all sends fail */
    bool out_blocked;                /* the poller left bytes queued */

    /*
     * In-flight pool requests: counted atomically (the reader adds, the
     * workers subtract); lock/cond only when someone has to wait.
     */
    gint inflight;
    gint64 inflight_bytes;
    gint slot_waiting;
    GMutex lock;                     /* guards quit; pairs with cond */
    GCond cond;
    bool quit;                       /* stop reading; tear down */
    bool parked;                     /* under lock: the poller serves it */
    bool ended;                      /* the poller ended the connection */

    gint n_logs;                     /* messages printed (rate limit) */
    /* Statistics (BP_NBD_DEBUG prints them at the end). */
    uint64_t n_requests;
    uint64_t n_polled;               /* of which the poller served */
    uint64_t n_recvs;
    gint64 n_writes;
} NbdClient;

/* ---- channel.c: buffered socket I/O ------------------------------------- */

/* Read exactly @len bytes; 0, -ECONNRESET at EOF, or -errno. */
int nbd_chan_read(NbdClient *c, void *buf, size_t len);
/* Discard exactly @len bytes of input. */
int nbd_chan_skip(NbdClient *c, uint64_t len);
/*
 * Read what the socket has without waiting: 1 if bytes came in, 0 if
 * none were there, -ENOBUFS if the buffer is full, -ECONNRESET at EOF, or
 * -errno.  Unlike nbd_chan_read, it does not flush queued replies first.
 */
int nbd_chan_fill_nowait(NbdClient *c);
/* Drop @len buffered bytes (at most nbd_chan_buffered()). */
void nbd_chan_consume(NbdClient *c, size_t len);
/* Bytes already buffered (not yet consumed). */
size_t nbd_chan_buffered(NbdClient *c);
/* The next @len buffered bytes, or NULL if fewer are buffered. */
const uint8_t *nbd_chan_peek(NbdClient *c, size_t len);
/* Write every byte of @iov (the caller is the connection's sender). */
int nbd_chan_writev(NbdClient *c, struct iovec *iov, int iovcnt);
int nbd_chan_write(NbdClient *c, const void *buf, size_t len);
/*
 * Write what the socket takes without waiting (advancing @iov past it):
 * the byte count, or -errno on an error other than a full socket.
 */
ssize_t nbd_chan_try_writev(NbdClient *c, struct iovec *iov, int iovcnt);
/* Wake a reader blocked in recv() and make further I/O fail. */
void nbd_chan_shutdown(NbdClient *c);

/* ---- handshake.c -------------------------------------------------------- */

typedef enum {
    NBD_HS_TRANSMISSION,             /* c->exp set: start serving */
    NBD_HS_CLOSE,                    /* clean end (ABORT) or I/O error */
} NbdHandshakeResult;

NbdHandshakeResult nbd_handshake(NbdClient *c);

/* ---- request.c ---------------------------------------------------------- */

typedef struct NbdRequestHeader {
    uint32_t magic;
    uint16_t flags;
    uint16_t type;
    uint64_t handle;
    uint64_t offset;
    uint32_t len;
} NbdRequestHeader;

/* What the connection negotiated, as the validator needs it. */
typedef struct NbdTxState {
    uint64_t size;
    bool writable;
    bool structured;
    unsigned n_contexts;             /* selected metadata contexts */
    uint16_t tx_flags;
} NbdTxState;

typedef enum {
    NBD_REQ_OK,                      /* execute it */
    NBD_REQ_ERROR,                   /* reply @error, stream in sync */
    NBD_REQ_ERROR_DRAIN,             /* skip @len payload bytes, then reply */
    NBD_REQ_DISCONNECT,              /* cannot continue: close */
    NBD_REQ_DISC,                    /* NBD_CMD_DISC: finish and close */
} NbdRequestVerdict;

typedef struct NbdRequestCheck {
    NbdRequestVerdict verdict;
    uint32_t error;                  /* NBD_E* for the error verdicts */
    const char *reason;              /* static text for messages */
} NbdRequestCheck;

void nbd_request_decode(const uint8_t *buf, NbdRequestHeader *req);
void nbd_request_check(const NbdRequestHeader *req, const NbdTxState *st,
                       NbdRequestCheck *out);
const char *nbd_cmd_name(uint16_t type);
const char *nbd_opt_name(uint32_t opt);

/* The transmission loop on the reader thread. */
void nbd_transmission(NbdClient *c);

typedef enum {
    NBD_SERVE_WAIT,                  /* all served: wait for input */
    NBD_SERVE_HAND_BACK,             /* the reader thread must go on */
    NBD_SERVE_END,                   /* the connection must end */
} NbdServeResult;

/*
 * On the poller: serve the requests of @c that complete without waiting,
 * reading only what the socket already has.
 */
NbdServeResult nbd_request_serve_nowait(NbdClient *c);

/* ---- poller.c ----------------------------------------------------------- */

/* Whether idle readers hand their connection to the poller. */
bool nbd_poller_enabled(void);
/*
 * From the reader thread of an idle @c: hand it to the poller and sleep
 * until the poller hands it back (true; c->ended if the poller ended the
 * connection).  False if there is no poller to take it.
 */
bool nbd_poller_park(NbdClient *c);
/* Stop the poller thread (no connection may be parked). */
void nbd_poller_stop(void);
/* Make the reader quit and wait for the pool's requests (teardown). */
void nbd_request_drain(NbdClient *c);

/* ---- commands.c: one request on a worker -------------------------------- */

typedef struct NbdRequest {
    NbdClient *client;
    NbdRequestHeader hdr;
    const uint8_t *data;             /* WRITE payload */
    uint8_t *owned;                  /* allocation behind data, if any */
    uint64_t cost;                   /* bytes counted in inflight_bytes */
} NbdRequest;

/* Execute @r and send its reply (inline on the reader, or a worker). */
void nbd_request_run(NbdClient *c, NbdRequest *r);
/* The pool's entry point: run, then nbd_request_done(). */
void nbd_request_execute(gpointer data, gpointer user_data);
/* Free @r and release its in-flight slot (after its reply). */
void nbd_request_done(NbdRequest *r);

/* ---- reply.c ------------------------------------------------------------ */

/* Map a -errno (or errno) from the block layer to an NBD error. */
uint32_t nbd_errno_to_nbd(int err);

void nbd_encode_simple_reply(uint8_t *buf, uint32_t error, uint64_t handle);
void nbd_encode_chunk_header(uint8_t *buf, uint16_t flags, uint16_t type,
                             uint64_t handle, uint32_t length);

/*
 * Reply helpers: 0 or -errno (then the connection quits).  On the reader
 * thread in transmission (nbd_reply_set_deferred), small replies are only
 * queued; nbd_send_flush() writes them before the reader waits for input.
 */
void nbd_reply_set_deferred(bool on);
int nbd_send_flush(NbdClient *c);
/* The poller's side (poller.c): sends never wait for the socket. */
void nbd_reply_set_nowait(bool on);
/* Write the queue as far as the socket takes it: 0, -EAGAIN, or -errno. */
int nbd_send_flush_nowait(NbdClient *c);
void nbd_send_init(NbdClient *c);
void nbd_send_cleanup(NbdClient *c);
int nbd_send_simple(NbdClient *c, uint64_t handle, uint32_t error,
                    const void *data, size_t len);
int nbd_send_chunk(NbdClient *c, uint64_t handle, uint16_t flags,
                   uint16_t type, const struct iovec *payload, int niov);
int nbd_send_error(NbdClient *c, uint64_t handle, uint32_t error,
                   const char *msg);
int nbd_send_done(NbdClient *c, uint64_t handle);
/* A successful reply without payload to a non-READ command. */
int nbd_send_ok(NbdClient *c, uint64_t handle);

/* ---- server.c ----------------------------------------------------------- */

/* Log a protocol problem of @c (one line on stderr). */
void nbd_client_log(NbdClient *c, const char *fmt, ...) G_GNUC_PRINTF(2, 3);
/* Disconnect every client attached to @exp (NULL: every client). */
void nbd_server_disconnect_clients(NbdExport *exp);
/* Whether a server with a single-connection limit is running. */
bool nbd_server_single_conn(void);
/* The main thread (set by the first server or export call). */
bool nbd_in_main_thread(void);
void nbd_note_main_thread(void);

#endif
