/*
 * QMP handlers for qapi/schema/checkpoint.json.  The transaction actions
 * of the same names are in block/checkpoint-actions.c; the plain commands
 * call the node operations directly, so that a failure to remove is
 * reported (a transaction's commit step cannot fail).
 */
#include "block/blockdev.h"
#include "block/checkpoint-ops.h"
#include "qapi/error.h"
#include "qapi/qobject-json.h"
#include "qmp-commands.h"

bool qmp_block_checkpoint_add(JsonObject *args, JsonNode **ret,
                              GError **errp)
{
    BlockDriverState *bs =
        blockdev_lookup_node(qobj_get_str(args, "node", NULL), errp);

    return bs && bdrv_checkpoint_create(bs, qobj_get_str(args, "name", NULL),
                                        qobj_get_str(args, "bitmap", NULL),
                                        qobj_get_uint(args, "granularity", 0),
                                        errp);
}

bool qmp_block_checkpoint_remove(JsonObject *args, JsonNode **ret,
                                 GError **errp)
{
    BlockDriverState *bs =
        blockdev_lookup_node(qobj_get_str(args, "node", NULL), errp);

    return bs && bdrv_checkpoint_remove(bs, qobj_get_str(args, "name", NULL),
                                        errp);
}

/* One BlockCheckpointsInfo; a node whose table is unusable says why. */
static JsonObject *node_info(BlockDriverState *bs, bool changed)
{
    JsonObject *o = json_object_new();
    g_autoptr(GError) err = NULL;
    JsonArray *list = bdrv_checkpoint_query(bs, changed, &err);

    json_object_set_string_member(o, "node", bdrv_get_node_name(bs));
    json_object_set_array_member(o, "checkpoints",
                                 list ? list : json_array_new());
    if (!list) {
        json_object_set_string_member(o, "error", err->message);
    }
    return o;
}

bool qmp_query_block_checkpoints(JsonObject *args, JsonNode **ret,
                                 GError **errp)
{
    const char *node = qobj_get_str(args, "node", NULL);
    bool changed = qobj_get_bool(args, "changed-bytes", true);
    JsonArray *arr;

    if (node) {
        BlockDriverState *bs = blockdev_lookup_node(node, errp);
        if (!bs) {
            return false;
        }
        if (!bdrv_supports_checkpoints(bs)) {
            error_setg(errp, "Node '%s' (format %s) does not support "
                       "checkpoints", node, bdrv_get_format_name(bs));
            return false;
        }
        arr = json_array_new();
        json_array_add_object_element(arr, node_info(bs, changed));
    } else {
        arr = json_array_new();
        for (BlockDriverState *bs = bdrv_next_node(NULL); bs;
             bs = bdrv_next_node(bs)) {
            if (bdrv_supports_checkpoints(bs)) {
                json_array_add_object_element(arr, node_info(bs, changed));
            }
        }
    }
    *ret = json_node_init_array(json_node_alloc(), arr);
    json_array_unref(arr);
    return true;
}
