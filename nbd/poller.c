/*
 * The poller: one thread that serves the small requests of idle
 * connections.  A connection's reader thread that finds no input hands
 * the connection here and sleeps; the poller waits on all such sockets at
 * once (epoll) and serves whatever arrives, reading and replying without
 * ever waiting on one socket.  Anything it cannot finish that way (a
 * large write, a request for the pool, a full socket, the end of the
 * connection) goes back to the reader thread, which carries on as before.
 *
 * Why: with a thread per connection, a client that is slower than the
 * server makes every reader sleep and wake once per request; measured
 * with four connections of 4 KiB writes that was two context switches
 * and several microseconds of CPU per request, against a fraction of
 * that when one thread serves them all.
 *
 * Ownership is exclusive: while c->parked is set only the poller touches
 * the connection's input buffer and output queue (and no worker of it
 * runs: readers park only with nothing in flight).
 */
#include "nbd/nbd-internal.h"
#include "qapi/error.h"

#include <errno.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define POLLER_EVENTS 64

static struct {
    GMutex lock;                     /* start and stop */
    GThread *thread;
    int epfd;
    int stopfd;                      /* eventfd: the thread must return */
    bool failed;                     /* could not start: readers wait */
} poller;

bool nbd_poller_enabled(void)
{
    static gsize once;
    static bool enabled;

    /* BP_NBD_POLLER=off: readers wait for input themselves (tests). */
    if (g_once_init_enter(&once)) {
        enabled = g_strcmp0(g_getenv("BP_NBD_POLLER"), "off") != 0;
        g_once_init_leave(&once, 1);
    }
    return enabled;
}

static void hand_back(NbdClient *c, bool ended)
{
    epoll_ctl(poller.epfd, EPOLL_CTL_DEL, c->fd, NULL);
    g_mutex_lock(&c->lock);
    c->ended = ended;
    c->parked = false;
    g_cond_broadcast(&c->cond);
    g_mutex_unlock(&c->lock);
}

static gpointer poller_thread(gpointer opaque)
{
    struct epoll_event ev[POLLER_EVENTS];

    nbd_reply_set_deferred(true);
    nbd_reply_set_nowait(true);
    for (;;) {
        int n = epoll_wait(poller.epfd, ev, POLLER_EVENTS, -1);

        if (n < 0) {
            /* Only EINTR is possible with a valid epoll fd and buffer. */
            continue;
        }
        for (int i = 0; i < n; i++) {
            NbdClient *c = ev[i].data.ptr;

            if (!c) {
                return NULL;
            }
            if (!__atomic_load_n(&c->parked, __ATOMIC_ACQUIRE)) {
                continue;                   /* not ours (cannot happen) */
            }
            switch (nbd_request_serve_nowait(c)) {
            case NBD_SERVE_WAIT:
                break;
            case NBD_SERVE_HAND_BACK:
                hand_back(c, false);
                break;
            case NBD_SERVE_END:
                hand_back(c, true);
                break;
            }
        }
    }
}

/* Start the thread on first use; false if that failed (once). */
static bool poller_start(void)
{
    bool ok;

    g_mutex_lock(&poller.lock);
    if (!poller.thread && !poller.failed) {
        struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };
        g_autoptr(GError) err = NULL;

        poller.epfd = epoll_create1(EPOLL_CLOEXEC);
        poller.stopfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (poller.epfd >= 0 && poller.stopfd >= 0 &&
            epoll_ctl(poller.epfd, EPOLL_CTL_ADD, poller.stopfd, &ev) == 0) {
            poller.thread = g_thread_try_new("nbd-poller", poller_thread,
                                             NULL, &err);
        }
        if (!poller.thread) {
            error_report("NBD: no poller thread (%s); each connection "
                         "waits for input on its own thread",
                         err ? err->message : g_strerror(errno));
            if (poller.epfd >= 0) {
                close(poller.epfd);
            }
            if (poller.stopfd >= 0) {
                close(poller.stopfd);
            }
            poller.failed = true;
        }
    }
    ok = poller.thread != NULL;
    g_mutex_unlock(&poller.lock);
    return ok;
}

bool nbd_poller_park(NbdClient *c)
{
    struct epoll_event ev = { .events = EPOLLIN, .data.ptr = c };

    if (!poller_start()) {
        return false;
    }
    g_mutex_lock(&c->lock);
    if (c->quit) {
        g_mutex_unlock(&c->lock);
        return false;
    }
    /* Pairs with the poller's acquire: it sees the reader's last writes. */
    __atomic_store_n(&c->parked, true, __ATOMIC_RELEASE);
    g_mutex_unlock(&c->lock);
    if (epoll_ctl(poller.epfd, EPOLL_CTL_ADD, c->fd, &ev) < 0) {
        g_mutex_lock(&c->lock);
        c->parked = false;
        g_mutex_unlock(&c->lock);
        return false;
    }
    /*
     * A disconnect sets c->quit and shuts the socket down: the poller sees
     * the end of input and hands the connection back.
     */
    g_mutex_lock(&c->lock);
    while (c->parked) {
        g_cond_wait(&c->cond, &c->lock);
    }
    g_mutex_unlock(&c->lock);
    return true;
}

void nbd_poller_stop(void)
{
    g_mutex_lock(&poller.lock);
    if (poller.thread) {
        uint64_t one = 1;

        if (write(poller.stopfd, &one, sizeof(one)) != sizeof(one)) {
            /* The counter cannot overflow from one write: unreachable. */
            error_report("NBD: cannot stop the poller thread");
        } else {
            g_thread_join(poller.thread);
            close(poller.epfd);
            close(poller.stopfd);
        }
        poller.thread = NULL;
    }
    g_mutex_unlock(&poller.lock);
}
