/*
 * The NBD server: listening sockets (TCP or Unix) watched by the main
 * loop, one reader thread per accepted connection, and the teardown of
 * connections.
 *
 * Lifecycle of a connection: accept (main loop) -> reader thread runs the
 * handshake, then the transmission loop (handing the connection to the
 * poller whenever it is idle, poller.c), then waits for its in-flight
 * requests and its worker pool -> it moves itself to the dead list and
 * schedules the reaper -> the reaper (main loop) joins the thread, closes
 * the socket, detaches and unrefs the export, and re-arms accept if the
 * connection limit had paused it.  The socket is closed only by the
 * reaper, so a shutdown() from the main thread never hits a reused fd.
 */
#include "nbd/nbd-internal.h"
#include "qapi/error.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <glib-unix.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define NBD_LISTEN_BACKLOG 128
#define NBD_CLIENT_LOG_LIMIT 32

typedef struct {
    int fd;
    guint watch;
} Listener;

static struct {
    GMutex lock;                 /* clients, dead, reap_source */
    GCond cond;                  /* a client thread finished */
    GPtrArray *clients;          /* NbdClient * with a running thread */
    GSList *dead;                /* finished, waiting for the reaper */
    guint reap_source;

    /* Main thread only. */
    bool running;
    GArray *listeners;           /* Listener */
    char *unix_path;             /* to unlink when stopping */
    uint32_t max_connections;
    bool paused;                 /* accept watches removed at the limit */
    void (*gone_hook)(bool negotiated, void *opaque);
    void *gone_opaque;
} srv;

static GThread *main_thread;

void nbd_note_main_thread(void)
{
    if (!main_thread) {
        main_thread = g_thread_self();
    }
}

bool nbd_in_main_thread(void)
{
    return main_thread == g_thread_self();
}

bool nbd_server_single_conn(void)
{
    return srv.max_connections == 1;
}

void nbd_server_set_client_gone_hook(void (*fn)(bool negotiated,
                                                void *opaque),
                                     void *opaque)
{
    srv.gone_hook = fn;
    srv.gone_opaque = opaque;
}

static void clients_init(void)
{
    if (!srv.clients) {
        srv.clients = g_ptr_array_new();
    }
}

/* ---- Messages ---------------------------------------------------------- */

void nbd_client_log(NbdClient *c, const char *fmt, ...)
{
    g_autofree char *msg = NULL;
    va_list ap;
    unsigned n = g_atomic_int_add(&c->n_logs, 1);

    if (n > NBD_CLIENT_LOG_LIMIT) {
        return;
    }
    va_start(ap, fmt);
    msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    if (n == NBD_CLIENT_LOG_LIMIT) {
        error_report("nbd client %s: %s (further messages suppressed)",
                     c->peer, msg);
    } else {
        error_report("nbd client %s: %s", c->peer, msg);
    }
}

static char *peer_name(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    char host[NI_MAXHOST], port[NI_MAXSERV];

    if (getpeername(fd, (struct sockaddr *)&ss, &len) < 0) {
        return g_strdup_printf("fd %d", fd);
    }
    if (ss.ss_family == AF_UNIX) {
        return g_strdup_printf("unix:%d", fd);
    }
    if (getnameinfo((struct sockaddr *)&ss, len, host, sizeof(host), port,
                    sizeof(port), NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
        return g_strdup_printf("fd %d", fd);
    }
    return g_strdup_printf("%s:%s", host, port);
}

/* ---- Connection threads ------------------------------------------------- */

static void client_free(NbdClient *c)
{
    g_free(c->meta_selected);
    nbd_send_cleanup(c);
    g_free(c->rbuf);
    g_free(c->peer);
    g_mutex_clear(&c->send_lock);
    g_mutex_clear(&c->lock);
    g_cond_clear(&c->cond);
    g_free(c);
}

static void update_accepting(void);

/* Main loop: tear down the connections whose thread has finished. */
static void reap_dead(void)
{
    GSList *dead;

    g_mutex_lock(&srv.lock);
    dead = srv.dead;
    srv.dead = NULL;
    g_mutex_unlock(&srv.lock);
    for (GSList *l = dead; l; l = l->next) {
        NbdClient *c = l->data;
        NbdExport *exp = g_atomic_pointer_get(&c->exp);
        bool negotiated = exp != NULL;

        g_thread_join(c->thread);
        close(c->fd);
        if (exp) {
            nbd_export_unref(exp);
        }
        if (c->meta_exp) {
            nbd_export_unref(c->meta_exp);
        }
        client_free(c);
        if (srv.gone_hook) {
            srv.gone_hook(negotiated, srv.gone_opaque);
        }
    }
    g_slist_free(dead);
    update_accepting();
}

static gboolean reap_cb(gpointer opaque)
{
    g_mutex_lock(&srv.lock);
    srv.reap_source = 0;
    g_mutex_unlock(&srv.lock);
    reap_dead();
    return G_SOURCE_REMOVE;
}

static void client_finish(NbdClient *c)
{
    nbd_request_drain(c);
    if (c->pool) {
        g_thread_pool_free(c->pool, FALSE, TRUE);
        c->pool = NULL;
    }
    /* Replies the reader queued (e.g. before NBD_CMD_DISC). */
    nbd_send_flush(c);
    if (c->n_requests && g_getenv("BP_NBD_DEBUG")) {
        nbd_client_log(c, "%" PRIu64 " requests (%" PRIu64 " served by "
                       "the poller), %" PRIu64 " reads, %" PRId64 " writes",
                       c->n_requests, c->n_polled, c->n_recvs, c->n_writes);
    }
    shutdown(c->fd, SHUT_RDWR);
    /* No request left: the export is free for a safe delete right now. */
    if (c->exp) {
        nbd_export_detach(c->exp);
    }

    g_mutex_lock(&srv.lock);
    g_ptr_array_remove(srv.clients, c);
    srv.dead = g_slist_append(srv.dead, c);
    if (!srv.reap_source) {
        srv.reap_source = g_idle_add(reap_cb, NULL);
    }
    g_cond_broadcast(&srv.cond);
    g_mutex_unlock(&srv.lock);
}

static gpointer client_thread(gpointer opaque)
{
    NbdClient *c = opaque;

    if (nbd_handshake(c) == NBD_HS_TRANSMISSION) {
        /* A hard delete may have raced with GO: it sees c->exp or we see
         * the flag. */
        if (!nbd_export_is_shutting_down(c->exp)) {
            nbd_send_init(c);
            c->pool = g_thread_pool_new(nbd_request_execute, c,
                                        NBD_CLIENT_WORKERS, FALSE, NULL);
            nbd_transmission(c);
        }
    }
    client_finish(c);
    return NULL;
}

static bool client_start(int fd, GError **errp)
{
    NbdClient *c = g_new0(NbdClient, 1);
    GError *err = NULL;

    c->fd = fd;
    c->peer = peer_name(fd);
    c->rbuf = g_malloc(NBD_RBUF_SIZE);
    g_mutex_init(&c->send_lock);
    g_mutex_init(&c->lock);
    g_cond_init(&c->cond);

    g_mutex_lock(&srv.lock);
    clients_init();
    g_ptr_array_add(srv.clients, c);
    c->thread = g_thread_try_new("nbd-client", client_thread, c, &err);
    if (!c->thread) {
        g_ptr_array_remove(srv.clients, c);
        g_mutex_unlock(&srv.lock);
        error_setg(errp, "cannot start a thread for NBD client %s: %s",
                   c->peer, err->message);
        g_error_free(err);
        close(fd);
        client_free(c);
        return false;
    }
    g_mutex_unlock(&srv.lock);
    return true;
}

bool nbd_server_add_client_fd(int fd, GError **errp)
{
    nbd_note_main_thread();
    return client_start(fd, errp);
}

unsigned nbd_server_client_count(void)
{
    unsigned n;

    g_mutex_lock(&srv.lock);
    clients_init();
    n = srv.clients->len + g_slist_length(srv.dead);
    g_mutex_unlock(&srv.lock);
    return n;
}

void nbd_server_disconnect_clients(NbdExport *exp)
{
    g_mutex_lock(&srv.lock);
    clients_init();
    for (guint i = 0; i < srv.clients->len; i++) {
        NbdClient *c = g_ptr_array_index(srv.clients, i);

        if (exp && g_atomic_pointer_get(&c->exp) != exp) {
            continue;
        }
        g_mutex_lock(&c->lock);
        c->quit = true;
        g_cond_broadcast(&c->cond);
        g_mutex_unlock(&c->lock);
        shutdown(c->fd, SHUT_RDWR);
    }
    g_mutex_unlock(&srv.lock);
}

/* ---- Listening ---------------------------------------------------------- */

static gboolean accept_cb(gint fd, GIOCondition cond, gpointer opaque)
{
    int cfd = accept4(fd, NULL, NULL, SOCK_CLOEXEC);
    int one = 1;
    g_autoptr(GError) err = NULL;

    if (cfd < 0) {
        return G_SOURCE_CONTINUE;
    }
    /* Harmless (ENOTSUP/EOPNOTSUPP) on Unix sockets. */
    setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (!client_start(cfd, &err)) {
        error_report_err(g_steal_pointer(&err));
    }
    update_accepting();
    return G_SOURCE_CONTINUE;
}

static void set_watches(bool on)
{
    for (guint i = 0; srv.listeners && i < srv.listeners->len; i++) {
        Listener *l = &g_array_index(srv.listeners, Listener, i);

        if (on && !l->watch) {
            l->watch = g_unix_fd_add(l->fd, G_IO_IN, accept_cb, NULL);
        } else if (!on && l->watch) {
            g_source_remove(l->watch);
            l->watch = 0;
        }
    }
}

/* Pause accepting at the connection limit; resume below it. */
static void update_accepting(void)
{
    bool full;

    if (!srv.running) {
        return;
    }
    full = srv.max_connections &&
           nbd_server_client_count() >= srv.max_connections;
    if (full != srv.paused) {
        srv.paused = full;
        set_watches(!full);
    }
}

static void add_listener(int fd)
{
    Listener l = { .fd = fd };

    g_array_append_val(srv.listeners, l);
}

static bool listen_unix(const char *path, GError **errp)
{
    struct sockaddr_un sun = { .sun_family = AF_UNIX };
    int fd;

    if (strlen(path) >= sizeof(sun.sun_path)) {
        error_setg(errp, "UNIX socket path '%s' is too long", path);
        return false;
    }
    strcpy(sun.sun_path, path);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        error_setg_errno(errp, errno, "Failed to create socket");
        return false;
    }
    unlink(path);
    if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
        error_setg_errno(errp, errno, "Failed to bind socket to %s", path);
        close(fd);
        return false;
    }
    if (listen(fd, NBD_LISTEN_BACKLOG) < 0) {
        error_setg_errno(errp, errno, "Failed to listen on socket");
        close(fd);
        unlink(path);
        return false;
    }
    add_listener(fd);
    srv.unix_path = g_strdup(path);
    return true;
}

static bool listen_inet(const char *host, const char *port, GError **errp)
{
    struct addrinfo hints = {
        .ai_family = AF_UNSPEC,
        .ai_socktype = SOCK_STREAM,
        .ai_flags = AI_PASSIVE,
    };
    struct addrinfo *res = NULL;
    int saved = 0;
    int ret;

    if (host && !*host) {
        host = NULL;
    }
    ret = getaddrinfo(host, port, &hints, &res);
    if (ret != 0) {
        error_setg(errp, "address resolution failed for %s:%s: %s",
                   host ? host : "", port, gai_strerror(ret));
        return false;
    }
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        int one = 1;
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC,
                        ai->ai_protocol);

        if (fd < 0) {
            saved = errno;
            continue;
        }
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (ai->ai_family == AF_INET6) {
            setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
        }
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 ||
            listen(fd, NBD_LISTEN_BACKLOG) < 0) {
            saved = errno;
            close(fd);
            continue;
        }
        add_listener(fd);
    }
    freeaddrinfo(res);
    if (srv.listeners->len == 0) {
        error_setg_errno(errp, saved ? saved : EADDRNOTAVAIL,
                         "Failed to bind socket to %s:%s",
                         host ? host : "", port);
        return false;
    }
    return true;
}

static void close_listeners(void)
{
    set_watches(false);
    for (guint i = 0; srv.listeners && i < srv.listeners->len; i++) {
        close(g_array_index(srv.listeners, Listener, i).fd);
    }
    if (srv.listeners) {
        g_array_set_size(srv.listeners, 0);
    }
    if (srv.unix_path) {
        unlink(srv.unix_path);
        g_clear_pointer(&srv.unix_path, g_free);
    }
}

bool nbd_server_start(const NbdServerConfig *cfg, GError **errp)
{
    bool ok;

    nbd_note_main_thread();
    if (srv.running) {
        error_setg(errp, "NBD server already running");
        return false;
    }
    if (!srv.listeners) {
        srv.listeners = g_array_new(FALSE, TRUE, sizeof(Listener));
    }
    if (cfg->unix_path) {
        ok = listen_unix(cfg->unix_path, errp);
    } else {
        ok = listen_inet(cfg->host, cfg->port ? cfg->port : "10809", errp);
    }
    if (!ok) {
        close_listeners();
        return false;
    }
    srv.running = true;
    srv.paused = true;
    srv.max_connections = cfg->max_connections;
    update_accepting();
    return true;
}

bool nbd_server_is_running(void)
{
    return srv.running;
}

void nbd_server_stop(void)
{
    close_listeners();
    srv.running = false;
    srv.paused = false;
    srv.max_connections = 0;
    nbd_export_del_all();
    nbd_server_disconnect_clients(NULL);
}

void nbd_server_shutdown(void)
{
    nbd_note_main_thread();
    nbd_server_stop();
    g_mutex_lock(&srv.lock);
    clients_init();
    while (srv.clients->len > 0) {
        g_cond_wait(&srv.cond, &srv.lock);
    }
    g_mutex_unlock(&srv.lock);
    reap_dead();
    nbd_poller_stop();
    nbd_export_run_pending();
}
