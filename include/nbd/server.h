/*
 * NBD server and export API, shared by the QMP handlers (nbd-server-start,
 * block-export-add, ...), the storage daemon's --nbd-server/--export
 * options and qemu-nbd.  The protocol itself lives in nbd/; see
 * docs/interop/nbd.md for what is served.
 *
 * Threading: every function here runs on the main thread (the one that
 * runs the default GMainContext), except nbd_extents_add(), which a
 * metadata context's extents() callback calls from a worker thread.
 * Exports are reference counted; the server finalizes them (and emits
 * the "deleted" notification) from an idle callback on the main loop.
 */
#ifndef NBD_SERVER_H
#define NBD_SERVER_H

#include <glib.h>
#include <json-glib/json-glib.h>
#include <stdbool.h>
#include <stdint.h>

#include "block/block.h"

typedef struct NbdExport NbdExport;

/* ---- Metadata contexts backed by bitmaps ------------------------------ */

/*
 * The reply being built for one context of one NBD_CMD_BLOCK_STATUS.
 * Consecutive extents with equal flags are merged.
 */
typedef struct NbdExtents NbdExtents;

/*
 * Append an extent of @length bytes (> 0) with @flags after the previous
 * one.  Returns false when the reply is full (the caller stops; a reply
 * may describe less than the requested range).
 */
bool nbd_extents_add(NbdExtents *ex, uint64_t length, uint32_t flags);

/*
 * A "qemu:dirty-bitmap:NAME" context.  extents() reports the range
 * [offset, offset + length) (within the export) as extents whose flags are
 * NBD_STATE_DIRTY or 0, calling nbd_extents_add() until it returns false
 * or the range is covered; it returns 0 or -errno (sent to the client as
 * an error reply).  It runs on worker threads, concurrently with writes.
 * release() (optional) runs on the main thread when the export is freed.
 * Plain dirty bitmaps and checkpoint differences both plug in here.
 */
typedef struct NbdBitmapContextOps {
    int (*extents)(void *opaque, uint64_t offset, uint64_t length,
                   NbdExtents *ex);
    void (*release)(void *opaque);
} NbdBitmapContextOps;

typedef struct NbdBitmapContext NbdBitmapContext;

/* @name is what follows "qemu:dirty-bitmap:" in the context name. */
NbdBitmapContext *nbd_bitmap_context_new(const char *name,
                                         const NbdBitmapContextOps *ops,
                                         void *opaque);
/* Only for a context that was never handed to an export. */
void nbd_bitmap_context_free(NbdBitmapContext *ctx);

/*
 * A context for the dirty bitmap @bitmap of @bs (or of its backing chain),
 * marked busy while the export lives.  Fails if there is no such bitmap
 * or it cannot be exported (inconsistent, busy, unreadable, or recording
 * on a writable node behind a read-only export).
 */
NbdBitmapContext *nbd_bitmap_context_for_bitmap(BlockDriverState *bs,
                                                const char *bitmap,
                                                bool export_writable,
                                                GError **errp);

/* ---- Exports ------------------------------------------------------------ */

typedef struct NbdExportConfig {
    const char *id;           /* block-export id; NULL for qemu-nbd */
    BlockDriverState *bs;     /* the export takes its own reference */
    const char *name;         /* export name ("" is the default export) */
    const char *description;  /* may be NULL */
    bool writable;
    bool allocation_depth;    /* serve qemu:allocation-depth */
    bool discard_ignore;      /* TRIM succeeds without discarding */
    bool writethrough;        /* flush after every write */
    /* Bitmap names to serve as qemu:dirty-bitmap:NAME (NULL-terminated). */
    const char *const *bitmaps;
    /*
     * Extra ready-made contexts (NbdBitmapContext *), e.g. checkpoint
     * differences; ownership moves to the export even on failure.
     */
    GPtrArray *bitmap_contexts;
} NbdExportConfig;

/* Create and publish an export.  Main thread only. */
NbdExport *nbd_export_new(const NbdExportConfig *cfg, GError **errp);

/* Find a live export by block-export id (not shutting down). */
NbdExport *nbd_export_find_id(const char *id);

typedef enum {
    NBD_EXPORT_DEL_SAFE,   /* fail if clients are connected */
    NBD_EXPORT_DEL_HARD,   /* disconnect them */
} NbdExportDelMode;

/*
 * Hide the export from new clients and drop the user's reference.  The
 * export is freed (and the deleted hook called) once its last client has
 * gone, from the main loop, never within this call.
 */
bool nbd_export_del(NbdExport *exp, NbdExportDelMode mode, GError **errp);

const char *nbd_export_get_id(NbdExport *exp);
const char *nbd_export_get_name(NbdExport *exp);
BlockDriverState *nbd_export_get_bs(NbdExport *exp);
bool nbd_export_is_shutting_down(NbdExport *exp);
/* Clients currently attached to @exp (past GO/EXPORT_NAME). */
unsigned nbd_export_client_count(NbdExport *exp);

/* Every export, including those shutting down, in creation order. */
GPtrArray *nbd_export_list(void);   /* free with g_ptr_array_unref */

/* Called (main thread) with the id of each freed export that had one. */
void nbd_export_set_deleted_hook(void (*fn)(const char *id));

/* ---- Server ------------------------------------------------------------- */

typedef struct NbdServerConfig {
    /* Exactly one of unix_path or host/port. */
    const char *unix_path;
    const char *host;
    const char *port;         /* service name or number */
    uint32_t max_connections; /* 0: unlimited */
} NbdServerConfig;

/* Listen and serve every export.  Fails if a server is running. */
bool nbd_server_start(const NbdServerConfig *cfg, GError **errp);
bool nbd_server_is_running(void);

/*
 * Stop listening, delete every export (hard) and disconnect all clients;
 * returns without waiting for them.
 */
void nbd_server_stop(void);

/*
 * For process exit: like nbd_server_stop() (also when no server runs),
 * then wait for every client thread and free every export, so the block
 * graph can be closed afterwards.
 */
void nbd_server_shutdown(void);

/* Serve one already-connected socket (tests, socket activation). */
bool nbd_server_add_client_fd(int fd, GError **errp);

/* Number of connected clients (any phase). */
unsigned nbd_server_client_count(void);

/*
 * Called on the main thread whenever a client connection has been torn
 * down; @negotiated says whether it reached the transmission phase
 * (qemu-nbd exits after its last such client).
 */
void nbd_server_set_client_gone_hook(void (*fn)(bool negotiated,
                                                void *opaque),
                                     void *opaque);

/* ---- Management entry points (QMP and command-line options) ----------- */

/*
 * nbd-server-start / --nbd-server: @args is {"addr": SocketAddress,
 * "max-connections": N} (QMP types or keyval strings; both the flat
 * SocketAddress and the legacy {"type","data"} form are accepted).
 * Keys are consumed; unknown ones are an error.
 */
bool nbd_server_start_from_options(JsonObject *args, GError **errp);

/*
 * block-export-add / --export with type nbd: @args holds type, id,
 * node-name, name, description, writable, writethrough, bitmaps,
 * allocation-depth (and the ignored iothread/fixed-iothread).
 */
bool nbd_export_add_from_options(JsonObject *args, GError **errp);

/* block-export-del: {"id", "mode": "safe"|"hard"}. */
bool nbd_export_del_from_options(JsonObject *args, GError **errp);

/* query-block-exports: a JSON array of BlockExportInfo. */
JsonNode *nbd_query_block_exports(void);

/*
 * The storage daemon's --nbd-server and --export options (keyval text,
 * validated against NbdServerOptions / BlockExportOptions).  Implemented
 * in monitor/cmds-nbd.c, next to the QMP handlers, because they need the
 * schema and the monitor's exit hooks.
 */
bool nbd_cmdline_nbd_server(const char *arg, GError **errp);
bool nbd_cmdline_export(const char *arg, GError **errp);

#endif
