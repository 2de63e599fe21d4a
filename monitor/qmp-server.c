/*
 * QMP over Unix sockets: listeners, client connections, greeting, output
 * queues and event delivery.  Everything runs on the GLib main loop
 * thread; sockets are non-blocking.
 *
 * Client lifetime: a client is closed by client_kill(), which only marks
 * it dead, removes its sources and defers the freeing to an idle callback,
 * so that no code path (a reply written from inside the stream callback,
 * an event sent from a handler) ever sees a freed client.
 */
#include "monitor/monitor.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <gio/gio.h>

#include "monitor/monitor-internal.h"
#include "monitor/qmp-dispatch.h"
#include "monitor/qmp-stream.h"
#include "qapi/qobject-json.h"

/* Stop reading from a client while this much output waits for it. */
#define OUTPUT_PAUSE_BYTES (1u * 1024 * 1024)
/* A client that lets more than this pile up (events) is disconnected. */
#define OUTPUT_MAX_BYTES ((gsize)3 * QMP_JSON_MAX_SIZE)
#define READ_CHUNK 65536

typedef struct MonitorListener MonitorListener;

typedef struct MonitorClient {
    MonitorListener *listener;
    GSocket *sock;
    GSource *in_src;
    GSource *out_src;
    QmpStream *stream;
    QmpDispatchState state;
    GByteArray *out;
    bool dead;
} MonitorClient;

struct MonitorListener {
    char *id;
    char *path;             /* absolute, for unlink after a chdir */
    bool pretty;
    GSocket *sock;
    GSource *src;
    GList *clients;
};

static GList *listeners;
static bool sink_registered;

static void client_start_reading(MonitorClient *c);

static gboolean client_idle_free(gpointer opaque)
{
    MonitorClient *c = opaque;

    c->listener->clients = g_list_remove(c->listener->clients, c);
    g_socket_close(c->sock, NULL);
    g_object_unref(c->sock);
    qmp_stream_free(c->stream);
    g_byte_array_unref(c->out);
    g_free(c);
    return G_SOURCE_REMOVE;
}

static void drop_source(GSource **src)
{
    if (*src) {
        g_source_destroy(*src);
        g_source_unref(*src);
        *src = NULL;
    }
}

static void client_kill(MonitorClient *c)
{
    if (c->dead) {
        return;
    }
    c->dead = true;
    drop_source(&c->in_src);
    drop_source(&c->out_src);
    g_socket_shutdown(c->sock, TRUE, TRUE, NULL);
    g_idle_add(client_idle_free, c);
}

/* Write what the socket takes now; false if the client is gone. */
static bool client_flush_some(MonitorClient *c)
{
    while (c->out->len) {
        g_autoptr(GError) err = NULL;
        gssize n = g_socket_send(c->sock, (const char *)c->out->data,
                                 c->out->len, NULL, &err);

        if (n < 0) {
            if (g_error_matches(err, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK)) {
                return true;
            }
            client_kill(c);
            return false;
        }
        g_byte_array_remove_range(c->out, 0, n);
    }
    return true;
}

static gboolean client_writable(GSocket *sock, GIOCondition cond,
                                gpointer opaque)
{
    MonitorClient *c = opaque;

    if (!client_flush_some(c)) {
        return G_SOURCE_REMOVE;
    }
    if (c->out->len) {
        return G_SOURCE_CONTINUE;
    }
    g_source_unref(c->out_src);
    c->out_src = NULL;
    if (!c->in_src) {
        client_start_reading(c);
    }
    return G_SOURCE_REMOVE;
}

static void client_flush(MonitorClient *c)
{
    if (c->dead || !client_flush_some(c)) {
        return;
    }
    if (c->out->len && !c->out_src) {
        c->out_src = g_socket_create_source(c->sock, G_IO_OUT, NULL);
        g_source_set_callback(c->out_src, G_SOURCE_FUNC(client_writable), c,
                              NULL);
        g_source_attach(c->out_src, NULL);
    }
    if (c->out->len > OUTPUT_PAUSE_BYTES && c->in_src) {
        drop_source(&c->in_src);        /* resumed by client_writable() */
    }
}

/* Queue one JSON message followed by CRLF. */
static void client_send(MonitorClient *c, JsonNode *msg)
{
    g_autoptr(GString) text = NULL;

    if (c->dead) {
        return;
    }
    text = g_string_new(NULL);
    qobj_to_json_append(text, msg, c->listener->pretty);
    g_string_append(text, "\r\n");
    if (c->out->len + text->len > OUTPUT_MAX_BYTES) {
        g_warning("monitor %s: client does not read its replies; "
                  "disconnecting it", c->listener->id);
        client_kill(c);
        return;
    }
    g_byte_array_append(c->out, (const guint8 *)text->str, text->len);
    client_flush(c);
}

static void client_emit(void *opaque, JsonNode *value, GError *err)
{
    MonitorClient *c = opaque;
    g_autoptr(JsonNode) reply = NULL;

    if (err) {
        reply = qmp_error_reply(err, NULL);
        g_error_free(err);
    } else {
        reply = qmp_dispatch(&c->state, value);
        json_node_unref(value);
    }
    client_send(c, reply);
}

static gboolean client_readable(GSocket *sock, GIOCondition cond,
                                gpointer opaque)
{
    MonitorClient *c = opaque;
    char buf[READ_CHUNK];
    g_autoptr(GError) err = NULL;
    gssize n;

    n = g_socket_receive(c->sock, buf, sizeof(buf), NULL, &err);
    if (n < 0 && g_error_matches(err, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK)) {
        return G_SOURCE_CONTINUE;
    }
    if (n <= 0) {
        /* EOF or error: a partial message is simply dropped. */
        client_kill(c);
        return G_SOURCE_REMOVE;
    }
    qmp_stream_feed(c->stream, buf, n);
    if (c->dead || !c->in_src) {
        return G_SOURCE_REMOVE;
    }
    return G_SOURCE_CONTINUE;
}

static void client_start_reading(MonitorClient *c)
{
    c->in_src = g_socket_create_source(c->sock, G_IO_IN | G_IO_HUP |
                                       G_IO_ERR, NULL);
    g_source_set_callback(c->in_src, G_SOURCE_FUNC(client_readable), c, NULL);
    g_source_attach(c->in_src, NULL);
}

static void send_greeting(MonitorClient *c)
{
    JsonObject *greeting = json_object_new();
    JsonObject *qmp = json_object_new();
    g_autoptr(JsonNode) msg = NULL;

    json_object_set_member(qmp, "version", qmp_version_info());
    /* No capability is offered: "oob" is not implemented. */
    json_object_set_array_member(qmp, "capabilities", json_array_new());
    json_object_set_object_member(greeting, "QMP", qmp);
    msg = qobj_new_object(greeting);
    client_send(c, msg);
}

static void event_sink(JsonNode *event, void *opaque)
{
    for (GList *l = listeners; l; l = l->next) {
        MonitorListener *ml = l->data;

        for (GList *k = ml->clients; k; k = k->next) {
            MonitorClient *c = k->data;

            if (c->state.negotiated && !c->dead) {
                client_send(c, event);
            }
        }
    }
}

static void accept_one(MonitorListener *ml, GSocket *sock)
{
    MonitorClient *c;

    if (g_list_length(ml->clients) >= MONITOR_MAX_CLIENTS) {
        g_warning("monitor %s: too many clients, refusing a connection",
                  ml->id);
        g_socket_close(sock, NULL);
        g_object_unref(sock);
        return;
    }
    g_socket_set_blocking(sock, FALSE);
    c = g_new0(MonitorClient, 1);
    c->listener = ml;
    c->sock = sock;
    c->out = g_byte_array_new();
    c->stream = qmp_stream_new(client_emit, c);
    ml->clients = g_list_append(ml->clients, c);
    send_greeting(c);
    if (!c->dead) {
        client_start_reading(c);
    }
}

static gboolean listener_ready(GSocket *sock, GIOCondition cond,
                               gpointer opaque)
{
    MonitorListener *ml = opaque;

    for (;;) {
        g_autoptr(GError) err = NULL;
        GSocket *client = g_socket_accept(ml->sock, NULL, &err);

        if (!client) {
            if (!g_error_matches(err, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK)) {
                g_warning("monitor %s: accept failed: %s", ml->id,
                          err->message);
            }
            return G_SOURCE_CONTINUE;
        }
        accept_one(ml, client);
    }
}

bool monitor_has_listener(const char *id)
{
    for (GList *l = listeners; l; l = l->next) {
        if (!strcmp(((MonitorListener *)l->data)->id, id)) {
            return true;
        }
    }
    return false;
}

/* Remove a socket left behind by a dead process; refuse other files. */
static bool remove_stale_socket(const char *path, GError **errp)
{
    struct stat st;

    if (lstat(path, &st) < 0) {
        return true;
    }
    if (!S_ISSOCK(st.st_mode)) {
        error_setg(errp, "Failed to bind socket to %s: %s", path,
                   g_strerror(EEXIST));
        return false;
    }
    if (unlink(path) < 0) {
        error_setg_errno(errp, errno, "Failed to remove stale socket %s",
                         path);
        return false;
    }
    return true;
}

static GSocket *listen_unix(const char *path, GError **errp)
{
    g_autoptr(GError) err = NULL;
    struct sockaddr_un sun = { .sun_family = AF_UNIX };
    GSocket *sock;
    int fd;

    if (strlen(path) >= sizeof(sun.sun_path)) {
        error_setg(errp, "UNIX socket path '%s' is too long", path);
        return NULL;
    }
    if (!remove_stale_socket(path, errp)) {
        return NULL;
    }
    strcpy(sun.sun_path, path);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        error_setg_errno(errp, errno, "Failed to create socket");
        return NULL;
    }
    if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
        error_setg_errno(errp, errno, "Failed to bind socket to %s", path);
        close(fd);
        return NULL;
    }
    /* A deep backlog: clients that connect in bursts must not see EAGAIN. */
    if (listen(fd, SOMAXCONN) < 0) {
        error_setg_errno(errp, errno, "Failed to listen on socket %s", path);
        close(fd);
        unlink(path);
        return NULL;
    }
    sock = g_socket_new_from_fd(fd, &err);
    if (!sock) {
        error_setg(errp, "Failed to listen on socket %s: %s", path,
                   err->message);
        close(fd);
        unlink(path);
        return NULL;
    }
    g_socket_set_blocking(sock, FALSE);
    return sock;
}

bool monitor_add_unix_listener(const char *id, const char *path, bool pretty,
                               GError **errp)
{
    MonitorListener *ml;
    GSocket *sock;

    if (monitor_has_listener(id)) {
        error_setg(errp, "monitor '%s' already exists", id);
        return false;
    }
    sock = listen_unix(path, errp);
    if (!sock) {
        return false;
    }
    ml = g_new0(MonitorListener, 1);
    ml->id = g_strdup(id);
    ml->path = g_canonicalize_filename(path, NULL);
    ml->pretty = pretty;
    ml->sock = sock;
    ml->src = g_socket_create_source(sock, G_IO_IN, NULL);
    g_source_set_callback(ml->src, G_SOURCE_FUNC(listener_ready), ml, NULL);
    g_source_attach(ml->src, NULL);
    listeners = g_list_append(listeners, ml);
    if (!sink_registered) {
        qmp_event_add_sink(event_sink, NULL);
        sink_registered = true;
    }
    return true;
}

/* Last chance to deliver queued output (e.g. the reply to quit). */
static void client_final_flush(MonitorClient *c)
{
    if (c->dead || !c->out->len) {
        return;
    }
    g_socket_set_blocking(c->sock, TRUE);
    g_socket_set_timeout(c->sock, 1);
    while (c->out->len) {
        gssize n = g_socket_send(c->sock, (const char *)c->out->data,
                                 c->out->len, NULL, NULL);

        if (n <= 0) {
            break;
        }
        g_byte_array_remove_range(c->out, 0, n);
    }
}

void monitor_cleanup(void)
{
    while (listeners) {
        MonitorListener *ml = listeners->data;

        listeners = g_list_delete_link(listeners, listeners);
        while (ml->clients) {
            MonitorClient *c = ml->clients->data;

            client_final_flush(c);
            drop_source(&c->in_src);
            drop_source(&c->out_src);
            if (c->dead) {
                /* Its idle free is pending: run it now instead. */
                g_idle_remove_by_data(c);
            }
            client_idle_free(c);
        }
        drop_source(&ml->src);
        g_socket_close(ml->sock, NULL);
        g_object_unref(ml->sock);
        unlink(ml->path);
        g_free(ml->path);
        g_free(ml->id);
        g_free(ml);
    }
    if (sink_registered) {
        qmp_event_remove_sink(event_sink, NULL);
        sink_registered = false;
    }
}
