/*
 * Transmission replies: simple replies and structured reply chunks, the
 * connection's output queue, and the one place where host errno values
 * become NBD error numbers.  Every message is queued or written whole, so
 * chunks of different requests interleave but never mix.  A failed write
 * makes the connection quit (the reader is woken by a socket shutdown).
 */
#include "nbd/nbd-internal.h"
#include "util/bswap.h"

#include <errno.h>
#include <string.h>

uint32_t nbd_errno_to_nbd(int err)
{
    if (err < 0) {
        err = -err;
    }
    switch (err) {
    case 0:
        return NBD_SUCCESS;
    case EPERM:
    case EROFS:
    case EACCES:
        return NBD_EPERM;
    case EIO:
        return NBD_EIO;
    case ENOMEM:
        return NBD_ENOMEM;
#ifdef EDQUOT
    case EDQUOT:
#endif
    case EFBIG:
    case ENOSPC:
        return NBD_ENOSPC;
    case EOVERFLOW:
        return NBD_EOVERFLOW;
    case ENOTSUP:
#if EOPNOTSUPP != ENOTSUP
    case EOPNOTSUPP:
#endif
        return NBD_ENOTSUP;
    case ESHUTDOWN:
        return NBD_ESHUTDOWN;
    case EINVAL:
    default:
        return NBD_EINVAL;
    }
}

void nbd_encode_simple_reply(uint8_t *buf, uint32_t error, uint64_t handle)
{
    stl_be(buf, NBD_SIMPLE_REPLY_MAGIC);
    stl_be(buf + 4, error);
    stq_be(buf + 8, handle);
}

void nbd_encode_chunk_header(uint8_t *buf, uint16_t flags, uint16_t type,
                             uint64_t handle, uint32_t length)
{
    stl_be(buf, NBD_STRUCTURED_REPLY_MAGIC);
    stw_be(buf + 4, flags);
    stw_be(buf + 6, type);
    stq_be(buf + 8, handle);
    stl_be(buf + 16, length);
}

/* ---- The output queue ------------------------------------------------------
 *
 * One thread at a time writes the socket (the "sender").  A small reply is
 * appended to c->out; if nobody is sending, the appender becomes the
 * sender and writes everything queued, looping while others append, so
 * replies finishing together share one sendmsg.  A large reply (READ
 * data) waits until the socket is free, then goes out with the queue in
 * one sendmsg, straight from the caller's buffer.  The reader thread's
 * replies are only queued (deferred) and written when it is about to wait
 * for input.  Queued bytes are bounded: beyond NBD_OUT_LIMIT appenders
 * wait, which stops the reader when the client does not read.
 */

static void send_failed(NbdClient *c);

static __thread bool reply_deferred;
/*
 * The poller thread never waits for a socket: what the socket does not
 * take at once stays queued and c->out_blocked tells the poller to hand
 * the connection back to its reader, which may wait.  It only serves a
 * connection while no worker of it runs, so it is the only sender then.
 */
static __thread bool reply_nowait;

void nbd_reply_set_deferred(bool on)
{
    reply_deferred = on;
}

void nbd_reply_set_nowait(bool on)
{
    reply_nowait = on;
}

/*
 * With send_lock held: write the queue, then @iov, as far as the socket
 * takes them now; what is left (of both) stays queued, in order.
 */
static int drain_nowait_locked(NbdClient *c, const struct iovec *iov,
                               int niov)
{
    struct iovec v[9];
    size_t queued = c->out->len;
    ssize_t done;
    int n = 0;

    g_assert(!c->sending && niov < (int)G_N_ELEMENTS(v));
    if (queued) {
        v[n].iov_base = c->out->data;
        v[n++].iov_len = queued;
    }
    for (int i = 0; i < niov; i++) {
        v[n++] = iov[i];
    }
    done = nbd_chan_try_writev(c, v, n);
    if (done < 0) {
        c->send_error = (int)done;
        g_byte_array_set_size(c->out, 0);
        return (int)done;
    }
    g_byte_array_remove_range(c->out, 0, MIN((size_t)done, queued));
    done -= MIN((size_t)done, queued);
    for (int i = 0; i < niov; i++) {
        size_t skip = MIN((size_t)done, iov[i].iov_len);

        g_byte_array_append(c->out, (const guint8 *)iov[i].iov_base + skip,
                            iov[i].iov_len - skip);
        done -= skip;
    }
    c->out_blocked = c->out->len > 0;
    return 0;
}

int nbd_send_flush_nowait(NbdClient *c)
{
    int ret;

    g_mutex_lock(&c->send_lock);
    ret = c->send_error ? c->send_error
                        : drain_nowait_locked(c, NULL, 0);
    g_mutex_unlock(&c->send_lock);
    if (ret < 0) {
        send_failed(c);
        return ret;
    }
    return c->out_blocked ? -EAGAIN : 0;
}

void nbd_send_init(NbdClient *c)
{
    g_cond_init(&c->send_cond);
    c->out = g_byte_array_sized_new(64 * 1024);
    c->out_spare = g_byte_array_sized_new(64 * 1024);
}

void nbd_send_cleanup(NbdClient *c)
{
    if (c->out) {
        g_byte_array_unref(c->out);
        g_byte_array_unref(c->out_spare);
        c->out = c->out_spare = NULL;
        g_cond_clear(&c->send_cond);
    }
}

static void send_failed(NbdClient *c)
{
    g_mutex_lock(&c->lock);
    c->quit = true;
    g_cond_broadcast(&c->cond);
    g_mutex_unlock(&c->lock);
    nbd_chan_shutdown(c);
}

/*
 * With send_lock held and no sender: write the queue (then @iov, once)
 * until the queue stays empty.  Drops the lock while writing.
 */
static int drain_locked(NbdClient *c, struct iovec *iov, int niov)
{
    int ret = 0;

    c->sending = true;
    while (c->out->len > 0 || niov > 0) {
        GByteArray *buf = c->out;
        struct iovec v[9];
        int n = 0;

        c->out = c->out_spare;
        c->out_spare = NULL;
        if (buf->len) {
            v[n].iov_base = buf->data;
            v[n++].iov_len = buf->len;
        }
        for (int i = 0; i < niov; i++) {
            v[n++] = iov[i];
        }
        niov = 0;
        if (c->send_waiters) {
            g_cond_broadcast(&c->send_cond);   /* room in the queue */
        }
        g_mutex_unlock(&c->send_lock);
        ret = nbd_chan_writev(c, v, n);
        g_mutex_lock(&c->send_lock);
        g_byte_array_set_size(buf, 0);
        c->out_spare = buf;
        if (ret < 0) {
            c->send_error = ret;
            g_byte_array_set_size(c->out, 0);
            break;
        }
    }
    c->sending = false;
    if (c->send_waiters) {
        g_cond_broadcast(&c->send_cond);
    }
    return ret;
}

static int send_message(NbdClient *c, struct iovec *iov, int niov)
{
    size_t total = 0;
    int ret = 0;

    for (int i = 0; i < niov; i++) {
        total += iov[i].iov_len;
    }
    g_mutex_lock(&c->send_lock);
    if (reply_nowait) {
        if (c->send_error) {
            ret = c->send_error;
        } else if (total > NBD_OUT_COPY_MAX ||
                   c->out->len + total > NBD_OUT_LIMIT) {
            ret = drain_nowait_locked(c, iov, niov);
        } else {
            for (int i = 0; i < niov; i++) {
                g_byte_array_append(c->out, iov[i].iov_base,
                                    iov[i].iov_len);
            }
        }
        g_mutex_unlock(&c->send_lock);
        if (ret < 0) {
            send_failed(c);
        }
        return ret;
    }
    while (!c->send_error && c->sending &&
           (total > NBD_OUT_COPY_MAX || c->out->len > NBD_OUT_LIMIT)) {
        c->send_waiters++;
        g_cond_wait(&c->send_cond, &c->send_lock);
        c->send_waiters--;
    }
    if (c->send_error) {
        ret = c->send_error;
    } else if (total > NBD_OUT_COPY_MAX) {
        ret = drain_locked(c, iov, niov);
    } else {
        for (int i = 0; i < niov; i++) {
            g_byte_array_append(c->out, iov[i].iov_base, iov[i].iov_len);
        }
        if (!c->sending &&
            (!reply_deferred || c->out->len > NBD_OUT_LIMIT)) {
            ret = drain_locked(c, NULL, 0);
        }
    }
    g_mutex_unlock(&c->send_lock);
    if (ret < 0) {
        send_failed(c);
    }
    return ret;
}

int nbd_send_flush(NbdClient *c)
{
    int ret = 0;

    if (!c->out) {
        return 0;
    }
    g_mutex_lock(&c->send_lock);
    if (c->send_error) {
        ret = c->send_error;
    } else if (!c->sending && c->out->len > 0) {
        ret = drain_locked(c, NULL, 0);
    }
    g_mutex_unlock(&c->send_lock);
    if (ret < 0) {
        send_failed(c);
    }
    return ret;
}

int nbd_send_simple(NbdClient *c, uint64_t handle, uint32_t error,
                    const void *data, size_t len)
{
    uint8_t hdr[NBD_SIMPLE_REPLY_SIZE];
    struct iovec iov[2] = {
        { .iov_base = hdr, .iov_len = sizeof(hdr) },
        { .iov_base = (void *)data, .iov_len = len },
    };

    nbd_encode_simple_reply(hdr, error, handle);
    return send_message(c, iov, len ? 2 : 1);
}

int nbd_send_chunk(NbdClient *c, uint64_t handle, uint16_t flags,
                   uint16_t type, const struct iovec *payload, int niov)
{
    uint8_t hdr[NBD_STRUCTURED_REPLY_SIZE];
    struct iovec iov[8];
    uint64_t len = 0;

    g_assert(niov >= 0 && niov < (int)G_N_ELEMENTS(iov));
    iov[0].iov_base = hdr;
    iov[0].iov_len = sizeof(hdr);
    for (int i = 0; i < niov; i++) {
        iov[i + 1] = payload[i];
        len += payload[i].iov_len;
    }
    g_assert(len <= UINT32_MAX);
    nbd_encode_chunk_header(hdr, flags, type, handle, (uint32_t)len);
    return send_message(c, iov, niov + 1);
}

int nbd_send_error(NbdClient *c, uint64_t handle, uint32_t error,
                   const char *msg)
{
    uint8_t head[6];
    size_t mlen = msg ? MIN(strlen(msg), NBD_MAX_STRING_SIZE) : 0;
    struct iovec iov[2] = {
        { .iov_base = head, .iov_len = sizeof(head) },
        { .iov_base = (void *)msg, .iov_len = mlen },
    };

    g_assert(error != 0);
    if (!c->structured) {
        /* A simple error reply (even to READ) carries no payload. */
        return nbd_send_simple(c, handle, error, NULL, 0);
    }
    stl_be(head, error);
    stw_be(head + 4, (uint16_t)mlen);
    return nbd_send_chunk(c, handle, NBD_REPLY_FLAG_DONE,
                          NBD_REPLY_TYPE_ERROR, iov, mlen ? 2 : 1);
}

int nbd_send_done(NbdClient *c, uint64_t handle)
{
    return nbd_send_chunk(c, handle, NBD_REPLY_FLAG_DONE,
                          NBD_REPLY_TYPE_NONE, NULL, 0);
}

int nbd_send_ok(NbdClient *c, uint64_t handle)
{
    /* Structured replies allow a simple reply without payload here. */
    return nbd_send_simple(c, handle, NBD_SUCCESS, NULL, 0);
}
