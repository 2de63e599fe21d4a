/*
 * Management entry points: the arguments of nbd-server-start,
 * block-export-add, block-export-del and query-block-exports (QMP, or the
 * daemon's --nbd-server/--export after keyval parsing) turned into calls
 * of the server and export API.  Options are read with util/options.h,
 * which accepts both typed JSON values and command-line strings.
 */
#include "nbd/nbd-internal.h"
#include "nbd/checkpoint-context.h"
#include "block/blockdev.h"
#include "qapi/error.h"
#include "util/options.h"

#include <string.h>

/* ---- nbd-server-start --------------------------------------------------- */

static bool take_unix(JsonObject *a, NbdServerConfig *cfg, char **path,
                      GError **errp)
{
    bool abstract, tight;

    *path = opts_take_str(a, "path", errp);
    if (!*path) {
        if (errp && !*errp) {
            error_setg(errp, "Parameter 'addr.path' is missing");
        }
        return false;
    }
    if (!opts_take_bool(a, "abstract", false, &abstract, errp) ||
        !opts_take_bool(a, "tight", true, &tight, errp)) {
        return false;
    }
    if (abstract) {
        error_setg(errp, "Abstract Unix sockets are not supported");
        return false;
    }
    cfg->unix_path = *path;
    return true;
}

static bool take_inet(JsonObject *a, NbdServerConfig *cfg, char **host,
                      char **port, GError **errp)
{
    static const char *const ignored[] = {
        "numeric", "to", "ipv4", "ipv6", "keep-alive",
    };

    *host = opts_take_str(a, "host", errp);
    *port = opts_take_str(a, "port", errp);
    if (!*host || !*port) {
        if (errp && !*errp) {
            error_setg(errp, "Parameter 'addr.%s' is missing",
                       *host ? "port" : "host");
        }
        return false;
    }
    for (size_t i = 0; i < G_N_ELEMENTS(ignored); i++) {
        json_object_remove_member(a, ignored[i]);
    }
    cfg->host = *host;
    cfg->port = *port;
    return true;
}

bool nbd_server_start_from_options(JsonObject *args, GError **errp)
{
    g_autoptr(JsonObject) addr = opts_take_object(args, "addr");
    g_autoptr(JsonObject) data = NULL;
    g_autofree char *type = NULL, *path = NULL, *host = NULL, *port = NULL;
    JsonObject *detail;
    NbdServerConfig cfg = { 0 };
    int64_t maxc;
    bool ok;

    if (!addr) {
        error_setg(errp, "Parameter 'addr' is missing");
        return false;
    }
    type = opts_take_str(addr, "type", errp);
    if (!type) {
        if (errp && !*errp) {
            error_setg(errp, "Parameter 'addr.type' is missing");
        }
        return false;
    }
    /* SocketAddressLegacy puts the details under "data". */
    data = opts_take_object(addr, "data");
    detail = data ? data : addr;
    if (!strcmp(type, "unix")) {
        ok = take_unix(detail, &cfg, &path, errp);
    } else if (!strcmp(type, "inet")) {
        ok = take_inet(detail, &cfg, &host, &port, errp);
    } else {
        error_setg(errp, "Socket address type '%s' is not supported", type);
        return false;
    }
    if (!ok || !opts_check_empty(detail, "addr", errp) ||
        !opts_check_empty(addr, "addr", errp)) {
        return false;
    }
    if (opts_has(args, "tls-creds") || opts_has(args, "tls-authz")) {
        error_setg(errp, "TLS is not supported");
        return false;
    }
    if (!opts_take_int(args, "max-connections", 0, &maxc, errp)) {
        return false;
    }
    if (maxc < 0 || maxc > UINT32_MAX) {
        error_setg(errp, "Parameter 'max-connections' expects uint32_t");
        return false;
    }
    cfg.max_connections = (uint32_t)maxc;
    if (!opts_check_empty(args, "nbd-server", errp)) {
        return false;
    }
    return nbd_server_start(&cfg, errp);
}

/* ---- block-export-add --------------------------------------------------- */

/* One element of "bitmaps": a name, or {"node": N, "name": B}. */
static NbdBitmapContext *bitmap_item(JsonNode *item, BlockDriverState *bs,
                                     bool writable, GError **errp)
{
    if (JSON_NODE_HOLDS_VALUE(item) &&
        json_node_get_value_type(item) == G_TYPE_STRING) {
        return nbd_bitmap_context_for_bitmap(bs, json_node_get_string(item),
                                             writable, errp);
    }
    if (JSON_NODE_HOLDS_OBJECT(item)) {
        JsonObject *o = json_node_get_object(item);
        const char *node = json_object_get_string_member_with_default(
            o, "node", NULL);
        const char *name = json_object_get_string_member_with_default(
            o, "name", NULL);
        BlockDriverState *nbs;

        if (!node || !name) {
            error_setg(errp, "Parameter 'bitmaps' expects a bitmap name or "
                       "{\"node\", \"name\"}");
            return NULL;
        }
        nbs = blockdev_lookup_node(node, errp);
        return nbs ? nbd_bitmap_context_for_bitmap(nbs, name, writable, errp)
                   : NULL;
    }
    error_setg(errp, "Invalid parameter type for 'bitmaps', expected: array");
    return NULL;
}

/* "bitmaps" as a JSON array, or a keyval object {"0": .., "1": ..}. */
static bool take_bitmaps(JsonObject *args, BlockDriverState *bs,
                         bool writable, GPtrArray *out, GError **errp)
{
    JsonNode *n = json_object_get_member(args, "bitmaps");
    g_autoptr(GList) items = NULL;
    g_autoptr(JsonArray) arr = NULL;

    if (!n) {
        return true;
    }
    if (JSON_NODE_HOLDS_ARRAY(n)) {
        arr = json_array_ref(json_node_get_array(n));
        items = json_array_get_elements(arr);
    } else if (JSON_NODE_HOLDS_VALUE(n) &&
               json_node_get_value_type(n) == G_TYPE_STRING) {
        items = g_list_append(NULL, n);
    } else {
        error_setg(errp, "Invalid parameter type for 'bitmaps', "
                   "expected: array");
        return false;
    }
    for (GList *l = items; l; l = l->next) {
        NbdBitmapContext *ctx = bitmap_item(l->data, bs, writable, errp);
        if (!ctx) {
            return false;
        }
        g_ptr_array_add(out, ctx);
    }
    json_object_remove_member(args, "bitmaps");
    return true;
}

static void free_context(gpointer p)
{
    nbd_bitmap_context_free(p);
}

bool nbd_export_add_from_options(JsonObject *args, GError **errp)
{
    g_autofree char *type = NULL, *id = NULL, *node = NULL, *name = NULL;
    g_autofree char *desc = NULL, *iothread = NULL;
    g_autoptr(GPtrArray) ctxs = g_ptr_array_new_with_free_func(free_context);
    GError *err = NULL;
    bool writable, writethrough, depth, fixed;
    NbdExportConfig cfg = { 0 };

    type = opts_take_str(args, "type", &err);
    id = err ? NULL : opts_take_str(args, "id", &err);
    node = err ? NULL : opts_take_str(args, "node-name", &err);
    name = err ? NULL : opts_take_str(args, "name", &err);
    desc = err ? NULL : opts_take_str(args, "description", &err);
    iothread = err ? NULL : opts_take_str(args, "iothread", &err);
    if (err) {
        g_propagate_error(errp, err);
        return false;
    }
    if (!type || strcmp(type, "nbd")) {
        error_setg(errp, type ? "Parameter 'type' does not accept value "
                   "'%s'" : "Parameter 'type' is missing", type);
        return false;
    }
    if (!id || !node) {
        error_setg(errp, "Parameter '%s' is missing", id ? "node-name" : "id");
        return false;
    }
    if (!opts_take_bool(args, "writable", false, &writable, errp) ||
        !opts_take_bool(args, "writethrough", false, &writethrough, errp) ||
        !opts_take_bool(args, "allocation-depth", false, &depth, errp) ||
        !opts_take_bool(args, "fixed-iothread", false, &fixed, errp)) {
        return false;
    }
    if (iothread) {
        /* There are no iothread objects to name. */
        error_setg(errp, "iothread \"%s\" not found", iothread);
        return false;
    }
    if (!nbd_server_is_running()) {
        error_setg(errp, "NBD server not running");
        return false;
    }
    cfg.bs = bdrv_find_node(node);
    if (!cfg.bs) {
        error_setg(errp, "Cannot find device='' nor node-name='%s'", node);
        return false;
    }
    if (!take_bitmaps(args, cfg.bs, writable, ctxs, errp) ||
        !nbd_checkpoint_contexts_take(args, cfg.bs, ctxs, errp) ||
        !opts_check_empty(args, "block-export-add", errp)) {
        return false;
    }
    cfg.id = id;
    cfg.name = name ? name : node;
    cfg.description = desc;
    cfg.writable = writable;
    cfg.writethrough = writethrough;
    cfg.allocation_depth = depth;
    g_ptr_array_set_free_func(ctxs, NULL);
    cfg.bitmap_contexts = ctxs;
    return nbd_export_new(&cfg, errp) != NULL;
}

/* ---- block-export-del, query-block-exports ---------------------------- */

bool nbd_export_del_from_options(JsonObject *args, GError **errp)
{
    g_autofree char *id = opts_take_str(args, "id", errp);
    g_autofree char *mode = NULL;
    NbdExport *exp;

    if (!id) {
        if (errp && !*errp) {
            error_setg(errp, "Parameter 'id' is missing");
        }
        return false;
    }
    mode = opts_take_str(args, "mode", errp);
    if (mode && strcmp(mode, "safe") && strcmp(mode, "hard")) {
        error_setg(errp, "Parameter 'mode' does not accept value '%s'",
                   mode);
        return false;
    }
    exp = nbd_export_find_id(id);
    if (!exp) {
        error_setg(errp, "Export '%s' is not found", id);
        return false;
    }
    return nbd_export_del(exp, mode && !strcmp(mode, "hard")
                               ? NBD_EXPORT_DEL_HARD : NBD_EXPORT_DEL_SAFE,
                          errp);
}

JsonNode *nbd_query_block_exports(void)
{
    g_autoptr(GPtrArray) all = nbd_export_list();
    JsonArray *arr = json_array_new();
    JsonNode *node = json_node_new(JSON_NODE_ARRAY);

    for (guint i = 0; i < all->len; i++) {
        NbdExport *exp = g_ptr_array_index(all, i);
        JsonObject *o;

        if (!exp->id) {
            continue;
        }
        o = json_object_new();
        json_object_set_string_member(o, "id", exp->id);
        json_object_set_string_member(o, "type", "nbd");
        json_object_set_string_member(o, "node-name",
                                      bdrv_get_node_name(exp->bs));
        json_object_set_boolean_member(o, "shutting-down",
                                       nbd_export_is_shutting_down(exp));
        json_array_add_object_element(arr, o);
    }
    json_node_take_array(node, arr);
    return node;
}
