/*
 * Transmission replies: simple replies and structured reply chunks, and
 * the one place where host errno values become NBD error numbers.  Every
 * send is one whole message under the connection's send_lock, so chunks
 * of different requests interleave but never mix.  A failed send makes
 * the connection quit (the reader is woken by a socket shutdown).
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

static int send_locked(NbdClient *c, struct iovec *iov, int niov)
{
    int ret;

    g_mutex_lock(&c->send_lock);
    ret = nbd_chan_writev(c, iov, niov);
    g_mutex_unlock(&c->send_lock);
    if (ret < 0) {
        g_mutex_lock(&c->lock);
        c->quit = true;
        g_cond_broadcast(&c->cond);
        g_mutex_unlock(&c->lock);
        nbd_chan_shutdown(c);
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
    return send_locked(c, iov, len ? 2 : 1);
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
    return send_locked(c, iov, niov + 1);
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
