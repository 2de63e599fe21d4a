/*
 * Migration URIs: "tcp:HOST:PORT" (HOST may be "[IPv6]", or empty to
 * listen on every address) and "unix:PATH".  Connecting (blocking, on the
 * worker thread) and listening (main thread) with GIO.
 */
#include "migration-int.h"
#include "qapi/error.h"

#include <errno.h>
#include <gio/gunixsocketaddress.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct MigUri {
    bool is_unix;
    char *host;      /* tcp: without brackets; may be "" */
    guint16 port;
    char *path;      /* unix */
} MigUri;

static void uri_clear(MigUri *u)
{
    g_free(u->host);
    g_free(u->path);
}

static bool parse_port(const char *s, guint16 *port)
{
    guint64 v;

    if (!g_ascii_string_to_unsigned(s, 10, 0, 65535, &v, NULL)) {
        return false;
    }
    *port = (guint16)v;
    return true;
}

static bool uri_parse(const char *uri, MigUri *u, GError **errp)
{
    const char *rest, *colon;

    memset(u, 0, sizeof(*u));
    if (g_str_has_prefix(uri, "unix:")) {
        u->is_unix = true;
        u->path = g_strdup(uri + 5);
        if (!u->path[0]) {
            error_setg(errp, "Migration URI '%s' has no socket path", uri);
            return false;
        }
        return true;
    }
    if (!g_str_has_prefix(uri, "tcp:")) {
        error_setg(errp, "Unsupported migration URI '%s'", uri);
        error_append_hint(errp, "Use tcp:HOST:PORT or unix:PATH");
        return false;
    }
    rest = uri + 4;
    if (rest[0] == '[') {
        const char *end = strchr(rest, ']');
        if (!end || end[1] != ':') {
            error_setg(errp, "Invalid IPv6 address in migration URI '%s'",
                       uri);
            return false;
        }
        u->host = g_strndup(rest + 1, end - rest - 1);
        colon = end + 1;
    } else {
        colon = strrchr(rest, ':');
        if (!colon) {
            error_setg(errp, "Migration URI '%s' has no port", uri);
            return false;
        }
        u->host = g_strndup(rest, colon - rest);
    }
    if (!parse_port(colon + 1, &u->port)) {
        error_setg(errp, "Invalid port in migration URI '%s'", uri);
        return false;
    }
    return true;
}

bool mig_transport_check_uri(const char *uri, GError **errp)
{
    MigUri u;
    bool ok = uri_parse(uri, &u, errp);

    uri_clear(&u);
    return ok;
}

GIOStream *mig_transport_connect(const char *uri, GCancellable *cancel,
                                 GError **errp)
{
    g_autoptr(GSocketClient) client = g_socket_client_new();
    g_autoptr(GSocketConnectable) addr = NULL;
    g_autoptr(GError) err = NULL;
    GSocketConnection *conn;
    MigUri u;

    if (!uri_parse(uri, &u, errp)) {
        uri_clear(&u);
        return NULL;
    }
    if (u.is_unix) {
        addr = G_SOCKET_CONNECTABLE(g_unix_socket_address_new(u.path));
    } else if (!u.host[0]) {
        error_setg(errp, "Migration URI '%s' has no host", uri);
        uri_clear(&u);
        return NULL;
    } else {
        addr = g_network_address_new(u.host, u.port);
    }
    uri_clear(&u);
    conn = g_socket_client_connect(client, addr, cancel, &err);
    if (!conn) {
        error_setg(errp, "Failed to connect to '%s': %s", uri, err->message);
        return NULL;
    }
    return G_IO_STREAM(conn);
}

/* A stale socket file from an earlier run is replaced, nothing else. */
static bool remove_stale_socket(const char *path, GError **errp)
{
    struct stat sb;

    if (lstat(path, &sb) < 0) {
        return true;
    }
    if (!S_ISSOCK(sb.st_mode)) {
        error_setg(errp, "Cannot listen on '%s': the file exists and is "
                   "not a socket", path);
        return false;
    }
    if (unlink(path) < 0) {
        error_setg_errno(errp, errno, "Cannot remove old socket '%s'",
                         path);
        return false;
    }
    return true;
}

static GSocketAddress *tcp_listen_address(const MigUri *u, GError **errp)
{
    g_autoptr(GResolver) resolver = NULL;
    GList *addrs;
    GSocketAddress *sa;

    if (!u->host[0]) {
        g_autoptr(GInetAddress) any =
            g_inet_address_new_any(G_SOCKET_FAMILY_IPV6);
        return g_inet_socket_address_new(any, u->port);
    }
    resolver = g_resolver_get_default();
    addrs = g_resolver_lookup_by_name(resolver, u->host, NULL, errp);
    if (!addrs) {
        return NULL;
    }
    sa = g_inet_socket_address_new(addrs->data, u->port);
    g_resolver_free_addresses(addrs);
    return sa;
}

GSocketListener *mig_transport_listen(const char *uri, GError **errp)
{
    g_autoptr(GSocketListener) listener = g_socket_listener_new();
    g_autoptr(GSocketAddress) addr = NULL;
    g_autoptr(GError) err = NULL;
    MigUri u;
    bool ok;

    if (!uri_parse(uri, &u, errp)) {
        uri_clear(&u);
        return NULL;
    }
    if (u.is_unix) {
        ok = remove_stale_socket(u.path, errp);
        addr = ok ? g_unix_socket_address_new(u.path) : NULL;
    } else {
        addr = tcp_listen_address(&u, errp);
    }
    uri_clear(&u);
    if (!addr) {
        return NULL;
    }
    if (!g_socket_listener_add_address(listener, addr, G_SOCKET_TYPE_STREAM,
                                       G_SOCKET_PROTOCOL_DEFAULT, NULL, NULL,
                                       &err)) {
        error_setg(errp, "Failed to listen on '%s': %s", uri, err->message);
        return NULL;
    }
    return g_steal_pointer(&listener);
}
