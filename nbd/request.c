/*
 * Transmission phase, reader side: decode each request header, validate
 * it (a pure function, unit-tested in tests/unit/test-nbd-request.c), read
 * or skip write payloads, and hand valid requests to the connection's
 * worker pool.  In-flight requests are capped in number and in payload
 * bytes, so a client cannot make the server allocate without bound; the
 * reader simply stops reading while the cap is reached.
 */
#include "nbd/nbd-internal.h"
#include "util/bswap.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

void nbd_request_decode(const uint8_t *buf, NbdRequestHeader *req)
{
    req->magic = ldl_be(buf);
    req->flags = ldw_be(buf + 4);
    req->type = ldw_be(buf + 6);
    req->handle = ldq_be(buf + 8);
    req->offset = ldq_be(buf + 16);
    req->len = ldl_be(buf + 24);
}

const char *nbd_cmd_name(uint16_t type)
{
    switch (type) {
    case NBD_CMD_READ:
        return "NBD_CMD_READ";
    case NBD_CMD_WRITE:
        return "NBD_CMD_WRITE";
    case NBD_CMD_DISC:
        return "NBD_CMD_DISC";
    case NBD_CMD_FLUSH:
        return "NBD_CMD_FLUSH";
    case NBD_CMD_TRIM:
        return "NBD_CMD_TRIM";
    case NBD_CMD_CACHE:
        return "NBD_CMD_CACHE";
    case NBD_CMD_WRITE_ZEROES:
        return "NBD_CMD_WRITE_ZEROES";
    case NBD_CMD_BLOCK_STATUS:
        return "NBD_CMD_BLOCK_STATUS";
    default:
        return "unknown command";
    }
}

const char *nbd_opt_name(uint32_t opt)
{
    switch (opt) {
    case NBD_OPT_EXPORT_NAME:
        return "NBD_OPT_EXPORT_NAME";
    case NBD_OPT_ABORT:
        return "NBD_OPT_ABORT";
    case NBD_OPT_LIST:
        return "NBD_OPT_LIST";
    case NBD_OPT_STARTTLS:
        return "NBD_OPT_STARTTLS";
    case NBD_OPT_INFO:
        return "NBD_OPT_INFO";
    case NBD_OPT_GO:
        return "NBD_OPT_GO";
    case NBD_OPT_STRUCTURED_REPLY:
        return "NBD_OPT_STRUCTURED_REPLY";
    case NBD_OPT_LIST_META_CONTEXT:
        return "NBD_OPT_LIST_META_CONTEXT";
    case NBD_OPT_SET_META_CONTEXT:
        return "NBD_OPT_SET_META_CONTEXT";
    default:
        return "unknown option";
    }
}

/* Flags each command accepts (FUA is valid on every command). */
static uint16_t allowed_flags(uint16_t type, const NbdTxState *st)
{
    switch (type) {
    case NBD_CMD_READ:
        return NBD_CMD_FLAG_FUA | (st->structured ? NBD_CMD_FLAG_DF : 0);
    case NBD_CMD_WRITE_ZEROES:
        return NBD_CMD_FLAG_FUA | NBD_CMD_FLAG_NO_HOLE |
               NBD_CMD_FLAG_FAST_ZERO;
    case NBD_CMD_BLOCK_STATUS:
        return NBD_CMD_FLAG_FUA | NBD_CMD_FLAG_REQ_ONE;
    default:
        return NBD_CMD_FLAG_FUA;
    }
}

static bool is_write_cmd(uint16_t type)
{
    return type == NBD_CMD_WRITE || type == NBD_CMD_TRIM ||
           type == NBD_CMD_WRITE_ZEROES;
}

/* The first problem of a request of a known command, or NULL. */
static const char *find_error(const NbdRequestHeader *req,
                              const NbdTxState *st, uint32_t *error)
{
    uint64_t end;

    *error = NBD_EINVAL;
    if (req->flags & ~allowed_flags(req->type, st)) {
        return "unsupported flags";
    }
    if ((req->type == NBD_CMD_READ || req->type == NBD_CMD_WRITE) &&
        req->len > NBD_MAX_PAYLOAD) {
        return "length over the 32 MiB limit";
    }
    if (req->type == NBD_CMD_BLOCK_STATUS) {
        if (!st->structured || st->n_contexts == 0) {
            return "no metadata context negotiated";
        }
        if (req->len == 0) {
            return "zero length";
        }
    }
    if (is_write_cmd(req->type) && !st->writable) {
        *error = NBD_EPERM;
        return "export is read-only";
    }
    if (req->type == NBD_CMD_FLUSH) {
        return NULL;
    }
    if (__builtin_add_overflow(req->offset, (uint64_t)req->len, &end)) {
        return "offset + length overflows";
    }
    if (end > st->size) {
        if (req->type == NBD_CMD_WRITE ||
            req->type == NBD_CMD_WRITE_ZEROES) {
            *error = NBD_ENOSPC;
        }
        return "range beyond the end of the export";
    }
    return NULL;
}

void nbd_request_check(const NbdRequestHeader *req, const NbdTxState *st,
                       NbdRequestCheck *out)
{
    memset(out, 0, sizeof(*out));
    if (req->magic != NBD_REQUEST_MAGIC) {
        out->verdict = NBD_REQ_DISCONNECT;
        out->reason = "bad request magic";
        return;
    }
    switch (req->type) {
    case NBD_CMD_DISC:
        out->verdict = NBD_REQ_DISC;
        return;
    case NBD_CMD_READ:
    case NBD_CMD_WRITE:
    case NBD_CMD_FLUSH:
    case NBD_CMD_TRIM:
    case NBD_CMD_CACHE:
    case NBD_CMD_WRITE_ZEROES:
    case NBD_CMD_BLOCK_STATUS:
        break;
    default:
        /* Assume no payload follows, as for every command but WRITE. */
        out->verdict = NBD_REQ_ERROR;
        out->error = NBD_EINVAL;
        out->reason = "unknown command";
        return;
    }
    out->reason = find_error(req, st, &out->error);
    if (!out->reason) {
        out->verdict = NBD_REQ_OK;
        out->error = 0;
    } else if (req->type != NBD_CMD_WRITE || req->len == 0) {
        out->verdict = NBD_REQ_ERROR;
    } else if (req->len <= NBD_DRAIN_LIMIT) {
        out->verdict = NBD_REQ_ERROR_DRAIN;
    } else {
        out->verdict = NBD_REQ_DISCONNECT;
        out->error = 0;
        out->reason = "write payload too large to skip";
    }
}

/* ---- The reader loop ---------------------------------------------------- */

static bool over_cap(NbdClient *c, uint64_t cost)
{
    gint n = g_atomic_int_get(&c->inflight);
    gint64 bytes = __atomic_load_n(&c->inflight_bytes, __ATOMIC_SEQ_CST);

    return n >= NBD_CLIENT_MAX_INFLIGHT ||
           (n > 0 && (uint64_t)bytes + cost > NBD_CLIENT_MAX_INFLIGHT_BYTES);
}

/*
 * Reserve an in-flight slot for a pool request (the reader is the only
 * one adding, workers subtract): no lock unless the cap is reached.
 */
static bool acquire_slot(NbdClient *c, uint64_t cost)
{
    bool ok = true;

    if (over_cap(c, cost)) {
        g_mutex_lock(&c->lock);
        g_atomic_int_set(&c->slot_waiting, 1);
        while (!c->quit && over_cap(c, cost)) {
            g_cond_wait(&c->cond, &c->lock);
        }
        g_atomic_int_set(&c->slot_waiting, 0);
        ok = !c->quit;
        g_mutex_unlock(&c->lock);
    }
    if (ok) {
        g_atomic_int_inc(&c->inflight);
        __atomic_add_fetch(&c->inflight_bytes, (gint64)cost,
                           __ATOMIC_SEQ_CST);
    }
    return ok;
}

static void release_slot(NbdClient *c, uint64_t cost)
{
    __atomic_sub_fetch(&c->inflight_bytes, (gint64)cost, __ATOMIC_SEQ_CST);
    g_atomic_int_add(&c->inflight, -1);
    if (g_atomic_int_get(&c->slot_waiting)) {
        g_mutex_lock(&c->lock);
        g_cond_broadcast(&c->cond);
        g_mutex_unlock(&c->lock);
    }
}

static void fill_state(NbdClient *c, NbdTxState *st)
{
    st->size = c->exp->size;
    st->writable = c->exp->writable;
    st->structured = c->structured;
    st->n_contexts = c->n_meta_selected;
    st->tx_flags = c->tx_flags;
}

/*
 * Small reads and writes, and block status, run on the reader while they
 * are fast: no thread hand-off, and their replies are batched.  When
 * inline requests turn slow (the data was not in the page cache, metadata
 * updates hit the disk), the next NBD_POOL_MODE_REQUESTS requests go to
 * the pool, where they overlap.  A slow request now and then is just the
 * thread (or a lock holder) being preempted on a busy machine, so it
 * takes NBD_INLINE_SLOW_OF_16 slow ones among the last sixteen.
 */
typedef enum { INLINE_AUTO, INLINE_ALWAYS, INLINE_NEVER } InlinePolicy;

/* BP_NBD_INLINE=always|never overrides the heuristic (tests, profiling). */
static InlinePolicy inline_policy(void)
{
    static gsize once;
    static InlinePolicy policy;

    if (g_once_init_enter(&once)) {
        const char *env = g_getenv("BP_NBD_INLINE");
        policy = !g_strcmp0(env, "always") ? INLINE_ALWAYS
                 : !g_strcmp0(env, "never") ? INLINE_NEVER : INLINE_AUTO;
        g_once_init_leave(&once, 1);
    }
    return policy;
}

/* Whether @hdr is of a kind that runs inline while inline is fast. */
static bool inline_kind(const NbdClient *c, const NbdRequestHeader *hdr)
{
    if (hdr->type == NBD_CMD_BLOCK_STATUS) {
        /* Metadata lookups: clients wait for each answer (maps). */
        return true;
    }
    return (hdr->type == NBD_CMD_READ || hdr->type == NBD_CMD_WRITE) &&
           hdr->len <= NBD_INLINE_MAX && !(hdr->flags & NBD_CMD_FLAG_FUA) &&
           !c->exp->writethrough;
}

static bool run_inline(NbdClient *c, const NbdRequestHeader *hdr)
{
    InlinePolicy policy = inline_policy();

    if (policy == INLINE_NEVER) {
        return false;
    }
    if (policy == INLINE_AUTO && c->pool_mode > 0) {
        if (--c->pool_mode == 0) {
            c->slow_history = 0;
        }
        return false;
    }
    return inline_kind(c, hdr);
}

/*
 * Whether more threads want to run than there are CPUs, per the kernel's
 * count of runnable tasks in /proc/loadavg (read at most every 100 ms).
 * Then a slow request says nothing about I/O: the thread (or a lock
 * holder) was waiting for a CPU, and the pool would not help.
 */
static bool cpus_saturated(void)
{
    static gint64 checked_at;
    static gint saturated;
    gint64 now = g_get_monotonic_time();
    g_autofree char *text = NULL;
    unsigned runnable = 0, total = 0;
    const char *p;

    if (now - __atomic_load_n(&checked_at, __ATOMIC_RELAXED) < 100000) {
        return g_atomic_int_get(&saturated);
    }
    __atomic_store_n(&checked_at, now, __ATOMIC_RELAXED);
    if (g_file_get_contents("/proc/loadavg", &text, NULL, NULL) &&
        (p = strchr(text, '/')) != NULL) {
        /* "0.5 0.4 0.3 RUNNABLE/TOTAL LASTPID" */
        while (p > text && p[-1] != ' ') {
            p--;
        }
        if (sscanf(p, "%u/%u", &runnable, &total) == 2) {
            g_atomic_int_set(&saturated,
                             runnable > g_get_num_processors());
        }
    }
    return g_atomic_int_get(&saturated);
}

/* Slower than page-cache speed: a data copy runs at several GB/s. */
static bool was_slow(const NbdRequestHeader *hdr, gint64 us)
{
    gint64 allowance = hdr->type == NBD_CMD_BLOCK_STATUS ? 0
                                                         : hdr->len >> 10;

    return us > NBD_INLINE_SLOW_US + allowance && !cpus_saturated();
}

static bool execute_inline(NbdClient *c, const NbdRequestHeader *hdr)
{
    NbdRequest r = { .client = c, .hdr = *hdr };
    gint64 t0;

    if (hdr->type == NBD_CMD_WRITE && hdr->len > 0) {
        r.data = nbd_chan_peek(c, hdr->len);
        if (!r.data) {
            r.owned = g_try_malloc(hdr->len);
            if (!r.owned) {
                return nbd_chan_skip(c, hdr->len) == 0 &&
                       nbd_send_error(c, hdr->handle, NBD_ENOMEM,
                                      "out of memory") == 0;
            }
            if (nbd_chan_read(c, r.owned, hdr->len) < 0) {
                g_free(r.owned);
                return false;
            }
            r.data = r.owned;
        }
    }
    t0 = g_get_monotonic_time();
    nbd_request_run(c, &r);
    t0 = g_get_monotonic_time() - t0;
    c->slow_history = (uint16_t)((c->slow_history << 1) |
                                 was_slow(hdr, t0));
    if (__builtin_popcount(c->slow_history) >= NBD_INLINE_SLOW_OF_16) {
        c->pool_mode = NBD_POOL_MODE_REQUESTS;
        if (g_getenv("BP_NBD_DEBUG")) {
            nbd_client_log(c, "inline requests are slow (%" PRId64
                           " us): pool mode", t0);
        }
    }
    if (hdr->type == NBD_CMD_WRITE && !r.owned &&
        nbd_chan_skip(c, hdr->len) < 0) {
        return false;
    }
    g_free(r.owned);
    return true;
}

/* Queue a valid request; false if the connection must end. */
static bool dispatch(NbdClient *c, const NbdRequestHeader *hdr)
{
    uint64_t cost = 0;
    NbdRequest *r;

    if (run_inline(c, hdr)) {
        return execute_inline(c, hdr);
    }
    if (hdr->type == NBD_CMD_READ || hdr->type == NBD_CMD_WRITE) {
        cost = hdr->len;
    }
    if (!acquire_slot(c, cost)) {
        return false;
    }
    r = g_new0(NbdRequest, 1);
    r->client = c;
    r->hdr = *hdr;
    r->cost = cost;
    if (hdr->type == NBD_CMD_WRITE && hdr->len > 0) {
        r->owned = g_try_malloc(hdr->len);
        r->data = r->owned;
        if (!r->owned || nbd_chan_read(c, r->owned, hdr->len) < 0) {
            bool nomem = !r->owned;
            bool ok = nomem && nbd_chan_skip(c, hdr->len) == 0 &&
                      nbd_send_error(c, hdr->handle, NBD_ENOMEM,
                                     "out of memory") == 0;
            g_free(r->owned);
            g_free(r);
            release_slot(c, cost);
            return ok;
        }
    }
    /* The pool's worker owns and frees @r from here on. */
    g_thread_pool_push(c->pool, r, NULL);
    /* cppcheck-suppress memleak */
    return true;
}

static void check_request(NbdClient *c, const NbdRequestHeader *hdr,
                          NbdRequestCheck *chk)
{
    NbdTxState st;

    fill_state(c, &st);
    nbd_request_check(hdr, &st, chk);
}

/* Act on a checked request; false to end the connection. */
static bool handle_checked(NbdClient *c, const NbdRequestHeader *hdr,
                           const NbdRequestCheck *chk)
{
    switch (chk->verdict) {
    case NBD_REQ_OK:
        return dispatch(c, hdr);
    case NBD_REQ_DISC:
        return false;
    case NBD_REQ_DISCONNECT:
        nbd_client_log(c, "%s: %s (magic 0x%08x, length %u), closing",
                       nbd_cmd_name(hdr->type), chk->reason, hdr->magic,
                       hdr->len);
        return false;
    case NBD_REQ_ERROR_DRAIN:
        if (nbd_chan_skip(c, hdr->len) < 0) {
            return false;
        }
        /* fall through */
    case NBD_REQ_ERROR:
        nbd_client_log(c, "%s (type %u, flags 0x%x, offset %" PRIu64
                       ", length %u): %s", nbd_cmd_name(hdr->type),
                       hdr->type, hdr->flags, hdr->offset, hdr->len,
                       chk->reason);
        return nbd_send_error(c, hdr->handle, chk->error, chk->reason) == 0;
    }
    return false;
}

/* Handle one request; false to end the connection. */
static bool handle_request(NbdClient *c, const NbdRequestHeader *hdr)
{
    NbdRequestCheck chk;

    check_request(c, hdr, &chk);
    return handle_checked(c, hdr, &chk);
}

/* ---- Serving from the poller -------------------------------------------- */

/*
 * Whether the poller may take @hdr: only what completes without waiting
 * for anyone (the request is whole in the buffer, it runs inline, its
 * error reply needs no payload beyond the buffer) and only while no
 * worker of the connection runs, so that the poller is the connection's
 * only sender.  Everything else goes back to the reader thread.
 */
static bool poller_may_take(NbdClient *c, const NbdRequestHeader *hdr,
                            const NbdRequestCheck *chk)
{
    if (g_atomic_int_get(&c->inflight) > 0 || c->pool_mode > 0) {
        return false;
    }
    switch (chk->verdict) {
    case NBD_REQ_OK:
        /* (Readers do not park under BP_NBD_INLINE=never.) */
        return inline_kind(c, hdr);
    case NBD_REQ_ERROR:
    case NBD_REQ_ERROR_DRAIN:
        return true;
    default:
        return false;
    }
}

NbdServeResult nbd_request_serve_nowait(NbdClient *c)
{
    int ret;

    /*
     * One read per wakeup: the poller's epoll is level-triggered, so what
     * arrives after it (or did not fit) wakes the poller again, and
     * reading on until the socket is empty would cost a second recv() per
     * request when the client sends them one at a time.
     */
    c->out_blocked = false;
    ret = nbd_chan_fill_nowait(c);
    if (ret < 0) {
        /* EOF or an error: the reader meets it again and ends. */
        return NBD_SERVE_HAND_BACK;
    }
    while (nbd_chan_buffered(c) >= NBD_REQUEST_SIZE) {
        NbdRequestHeader hdr;
        NbdRequestCheck chk;
        uint64_t need = NBD_REQUEST_SIZE;

        if (__atomic_load_n(&c->quit, __ATOMIC_ACQUIRE)) {
            return NBD_SERVE_HAND_BACK;
        }
        nbd_request_decode(nbd_chan_peek(c, NBD_REQUEST_SIZE), &hdr);
        check_request(c, &hdr, &chk);
        if (!poller_may_take(c, &hdr, &chk)) {
            return NBD_SERVE_HAND_BACK;
        }
        if (hdr.type == NBD_CMD_WRITE) {
            need += hdr.len;
        }
        if (need > NBD_RBUF_SIZE) {
            return NBD_SERVE_HAND_BACK;
        }
        if (nbd_chan_buffered(c) < need) {
            break;                          /* the rest is on its way */
        }
        nbd_chan_consume(c, NBD_REQUEST_SIZE);
        c->n_requests++;
        c->n_polled++;
        if (!handle_checked(c, &hdr, &chk)) {
            return NBD_SERVE_END;
        }
        if (c->out_blocked || c->pool_mode > 0) {
            return NBD_SERVE_HAND_BACK;
        }
    }
    /* The replies go out before the poller waits again. */
    ret = nbd_send_flush_nowait(c);
    if (ret == -EAGAIN) {
        return NBD_SERVE_HAND_BACK;
    }
    return ret < 0 ? NBD_SERVE_END : NBD_SERVE_WAIT;
}

/*
 * Whether the reader, idle, should hand its connection to the poller and
 * sleep: the poller then reads requests from many connections in one
 * thread, so a client slower than the server does not cost a thread wake
 * per request (see poller.c).
 */
static bool poller_wanted(NbdClient *c)
{
    return nbd_poller_enabled() && inline_policy() != INLINE_NEVER &&
           c->pool_mode == 0 && g_atomic_int_get(&c->inflight) == 0 &&
           nbd_chan_buffered(c) == 0;
}

void nbd_transmission(NbdClient *c)
{
    nbd_reply_set_deferred(true);
    for (;;) {
        uint8_t buf[NBD_REQUEST_SIZE];
        NbdRequestHeader hdr;
        bool quit;

        if (poller_wanted(c)) {
            int ret = nbd_chan_fill_nowait(c);

            if (ret < 0) {
                return;
            }
            if (ret == 0) {
                if (nbd_send_flush(c) < 0) {
                    return;
                }
                if (nbd_poller_park(c)) {
                    if (c->ended) {
                        return;
                    }
                    continue;
                }
                /* No poller: wait for input here. */
            }
        }
        if (nbd_chan_read(c, buf, sizeof(buf)) < 0) {
            return;
        }
        nbd_request_decode(buf, &hdr);
        c->n_requests++;
        if (!handle_request(c, &hdr)) {
            return;
        }
        quit = __atomic_load_n(&c->quit, __ATOMIC_ACQUIRE);
        if (quit) {
            return;
        }
    }
}

void nbd_request_done(NbdRequest *r)
{
    NbdClient *c = r->client;
    uint64_t cost = r->cost;

    g_free(r->owned);
    g_free(r);
    release_slot(c, cost);
}

/* Wait until every pool request has finished (teardown). */
void nbd_request_drain(NbdClient *c)
{
    g_mutex_lock(&c->lock);
    c->quit = true;
    g_atomic_int_set(&c->slot_waiting, 1);
    while (g_atomic_int_get(&c->inflight) > 0) {
        g_cond_wait(&c->cond, &c->lock);
    }
    g_atomic_int_set(&c->slot_waiting, 0);
    g_mutex_unlock(&c->lock);
}
