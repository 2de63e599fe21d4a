/*
 * Buffered socket I/O of one NBD connection.  The reader thread owns the
 * input buffer: one recv() usually brings in several request headers (and
 * small write payloads), which keeps the syscall count per request low;
 * before each recv() it writes the replies it has queued.  Writes are
 * whole messages (header and payload in one sendmsg when possible) and
 * never raise SIGPIPE.  The _nowait calls serve the poller (poller.c),
 * which must never block on one client's socket.
 */
#include "nbd/nbd-internal.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>

/* Move the unread bytes to the start of the buffer. */
static void compact(NbdClient *c)
{
    if (c->rpos == c->rlen) {
        c->rpos = c->rlen = 0;
    } else if (c->rpos > 0) {
        memmove(c->rbuf, c->rbuf + c->rpos, c->rlen - c->rpos);
        c->rlen -= c->rpos;
        c->rpos = 0;
    }
}

/* Skip @n written bytes of @iov. */
static void iov_advance(struct iovec **iov, int *iovcnt, size_t n)
{
    while (*iovcnt > 0 && n >= (*iov)->iov_len) {
        n -= (*iov)->iov_len;
        (*iov)++;
        (*iovcnt)--;
    }
    if (*iovcnt > 0) {
        (*iov)->iov_base = (uint8_t *)(*iov)->iov_base + n;
        (*iov)->iov_len -= n;
    }
}

/*
 * The reader is about to wait for input: first write the replies it
 * queued, or the client might wait for them forever.
 */
static int before_recv(NbdClient *c)
{
    return nbd_send_flush(c);
}

/* Refill the buffer with at least one byte; 0 or -errno. */
static int chan_fill(NbdClient *c)
{
    ssize_t n;

    if (before_recv(c) < 0) {
        return -EPIPE;
    }

    compact(c);
    do {
        n = recv(c->fd, c->rbuf + c->rlen, NBD_RBUF_SIZE - c->rlen, 0);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
        return errno == EAGAIN ? -ETIMEDOUT : -errno;
    }
    if (n == 0) {
        return -ECONNRESET;
    }
    c->rlen += n;
    c->n_recvs++;
    return 0;
}

int nbd_chan_fill_nowait(NbdClient *c)
{
    ssize_t n;

    compact(c);
    if (c->rlen == NBD_RBUF_SIZE) {
        return -ENOBUFS;
    }
    do {
        n = recv(c->fd, c->rbuf + c->rlen, NBD_RBUF_SIZE - c->rlen,
                 MSG_DONTWAIT);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
        return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -errno;
    }
    if (n == 0) {
        return -ECONNRESET;
    }
    c->rlen += n;
    c->n_recvs++;
    return 1;
}

void nbd_chan_consume(NbdClient *c, size_t len)
{
    g_assert(len <= c->rlen - c->rpos);
    c->rpos += len;
}

size_t nbd_chan_buffered(NbdClient *c)
{
    return c->rlen - c->rpos;
}

const uint8_t *nbd_chan_peek(NbdClient *c, size_t len)
{
    return c->rlen - c->rpos >= len ? c->rbuf + c->rpos : NULL;
}

int nbd_chan_read(NbdClient *c, void *buf, size_t len)
{
    uint8_t *out = buf;

    while (len > 0) {
        size_t avail = c->rlen - c->rpos;

        if (avail > 0) {
            size_t n = MIN(avail, len);
            memcpy(out, c->rbuf + c->rpos, n);
            c->rpos += n;
            out += n;
            len -= n;
            continue;
        }
        if (len >= NBD_RBUF_SIZE / 2) {
            /* Large payloads go straight to their destination. */
            ssize_t n;

            if (before_recv(c) < 0) {
                return -EPIPE;
            }
            do {
                n = recv(c->fd, out, len, 0);
            } while (n < 0 && errno == EINTR);
            if (n < 0) {
                return errno == EAGAIN ? -ETIMEDOUT : -errno;
            }
            if (n == 0) {
                return -ECONNRESET;
            }
            out += n;
            len -= n;
            continue;
        }
        int ret = chan_fill(c);
        if (ret < 0) {
            return ret;
        }
    }
    return 0;
}

int nbd_chan_skip(NbdClient *c, uint64_t len)
{
    while (len > 0) {
        size_t avail = c->rlen - c->rpos;

        if (avail > 0) {
            size_t n = MIN(avail, len);
            c->rpos += n;
            len -= n;
            continue;
        }
        int ret = chan_fill(c);
        if (ret < 0) {
            return ret;
        }
    }
    return 0;
}

int nbd_chan_writev(NbdClient *c, struct iovec *iov, int iovcnt)
{
    while (iovcnt > 0) {
        struct msghdr msg = { .msg_iov = iov, .msg_iovlen = iovcnt };
        ssize_t n = sendmsg(c->fd, &msg, MSG_NOSIGNAL);

        __atomic_add_fetch(&c->n_writes, 1, __ATOMIC_RELAXED);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return errno == EAGAIN ? -ETIMEDOUT : -errno;
        }
        iov_advance(&iov, &iovcnt, (size_t)n);
    }
    return 0;
}

ssize_t nbd_chan_try_writev(NbdClient *c, struct iovec *iov, int iovcnt)
{
    size_t done = 0;

    while (iovcnt > 0) {
        struct msghdr msg = { .msg_iov = iov, .msg_iovlen = iovcnt };
        ssize_t n = sendmsg(c->fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);

        __atomic_add_fetch(&c->n_writes, 1, __ATOMIC_RELAXED);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                break;
            }
            return -errno;
        }
        done += n;
        iov_advance(&iov, &iovcnt, (size_t)n);
    }
    return (ssize_t)done;
}

int nbd_chan_write(NbdClient *c, const void *buf, size_t len)
{
    struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };

    return nbd_chan_writev(c, &iov, 1);
}

void nbd_chan_shutdown(NbdClient *c)
{
    shutdown(c->fd, SHUT_RDWR);
}
