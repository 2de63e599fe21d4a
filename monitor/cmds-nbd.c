/*
 * QMP handlers for qapi/schema/nbd.json, and the storage daemon's
 * --nbd-server and --export options.  Thin: the work is in nbd/ (see
 * include/nbd/server.h).  The first use also registers the
 * BLOCK_EXPORT_DELETED event source and an exit hook that stops the
 * server and waits for its clients before the nodes are closed.
 */
#include "monitor/monitor.h"
#include "nbd/server.h"
#include "qapi/error.h"
#include "qapi/qapi-validate.h"
#include "util/keyval.h"
#include "util/options.h"
#include "qmp-commands.h"

static void emit_export_deleted(const char *id)
{
    JsonObject *data = json_object_new();

    json_object_set_string_member(data, "id", id);
    qmp_event_emit(QAPI_EVENT_BLOCK_EXPORT_DELETED, data);
}

static void nbd_exit_hook(void *opaque)
{
    nbd_server_shutdown();
}

static void nbd_monitor_init(void)
{
    static bool done;

    if (!done) {
        done = true;
        nbd_export_set_deleted_hook(emit_export_deleted);
        qemu_add_exit_hook(nbd_exit_hook, NULL);
    }
}

/* The handlers consume their options: work on a copy of @args. */
bool qmp_nbd_server_start(JsonObject *args, JsonNode **ret, GError **errp)
{
    g_autoptr(JsonObject) opts = options_copy(args);

    nbd_monitor_init();
    return nbd_server_start_from_options(opts, errp);
}

bool qmp_nbd_server_stop(JsonObject *args, JsonNode **ret, GError **errp)
{
    if (!nbd_server_is_running()) {
        error_setg(errp, "NBD server not running");
        return false;
    }
    nbd_server_stop();
    return true;
}

bool qmp_block_export_add(JsonObject *args, JsonNode **ret, GError **errp)
{
    g_autoptr(JsonObject) opts = options_copy(args);

    nbd_monitor_init();
    return nbd_export_add_from_options(opts, errp);
}

bool qmp_block_export_del(JsonObject *args, JsonNode **ret, GError **errp)
{
    g_autoptr(JsonObject) opts = options_copy(args);

    return nbd_export_del_from_options(opts, errp);
}

bool qmp_query_block_exports(JsonObject *args, JsonNode **ret,
                             GError **errp)
{
    *ret = nbd_query_block_exports();
    return true;
}

/* ---- Command line ----------------------------------------------------- */

static JsonObject *parse_cmdline(const char *arg, const char *implied,
                                 const char *type, GError **errp)
{
    g_autoptr(JsonObject) opts = keyval_parse(arg, implied, errp);
    g_autoptr(JsonNode) node = NULL;

    if (!opts) {
        return NULL;
    }
    node = json_node_new(JSON_NODE_OBJECT);
    json_node_set_object(node, opts);
    if (!qapi_validate(qapi_schema_builtin(), type, node, NULL,
                       QAPI_VALIDATE_COERCE_STRINGS, errp)) {
        return NULL;
    }
    return g_steal_pointer(&opts);
}

bool nbd_cmdline_nbd_server(const char *arg, GError **errp)
{
    g_autoptr(JsonObject) opts = parse_cmdline(arg, NULL, "NbdServerOptions",
                                               errp);

    nbd_monitor_init();
    return opts && nbd_server_start_from_options(opts, errp);
}

bool nbd_cmdline_export(const char *arg, GError **errp)
{
    g_autoptr(JsonObject) opts = parse_cmdline(arg, "type",
                                               "BlockExportOptions", errp);

    nbd_monitor_init();
    return opts && nbd_export_add_from_options(opts, errp);
}
