/*
 * QMP handlers for qapi/schema/bitmap.json and transaction.json.  Each
 * block-dirty-bitmap-* command runs as a one-action transaction, so the
 * command and the transaction action share one implementation.
 */
#include "block/bitmap-actions.h"
#include "block/checkpoint-actions.h"
#include "block/blockdev.h"
#include "block/dirty-bitmap.h"
#include "qapi/error.h"
#include "qapi/qobject-json.h"
#include "qmp-commands.h"

static bool run_single(const char *kind, JsonObject *args, GError **errp)
{
    Transaction *tran = tran_new();

    if (!bitmap_action_add(tran, kind, args, errp)) {
        tran_free(tran);
        return false;
    }
    return tran_run(tran, errp);
}

bool qmp_block_dirty_bitmap_add(JsonObject *args, JsonNode **ret,
                                GError **errp)
{
    return run_single("block-dirty-bitmap-add", args, errp);
}

bool qmp_block_dirty_bitmap_remove(JsonObject *args, JsonNode **ret,
                                   GError **errp)
{
    return run_single("block-dirty-bitmap-remove", args, errp);
}

bool qmp_block_dirty_bitmap_clear(JsonObject *args, JsonNode **ret,
                                  GError **errp)
{
    return run_single("block-dirty-bitmap-clear", args, errp);
}

bool qmp_block_dirty_bitmap_enable(JsonObject *args, JsonNode **ret,
                                   GError **errp)
{
    return run_single("block-dirty-bitmap-enable", args, errp);
}

bool qmp_block_dirty_bitmap_disable(JsonObject *args, JsonNode **ret,
                                    GError **errp)
{
    return run_single("block-dirty-bitmap-disable", args, errp);
}

bool qmp_block_dirty_bitmap_merge(JsonObject *args, JsonNode **ret,
                                  GError **errp)
{
    return run_single("block-dirty-bitmap-merge", args, errp);
}

bool qmp_x_debug_block_dirty_bitmap_sha256(JsonObject *args, JsonNode **ret,
                                           GError **errp)
{
    BlockDriverState *bs =
        blockdev_lookup_node(qobj_get_str(args, "node", NULL), errp);
    BdrvDirtyBitmap *bm;
    g_autofree char *sum = NULL;
    JsonObject *o;

    if (!bs) {
        return false;
    }
    bm = block_dirty_bitmap_lookup(bs, qobj_get_str(args, "name", NULL),
                                   errp);
    if (!bm) {
        return false;
    }
    sum = bdrv_dirty_bitmap_sha256(bm, errp);
    if (!sum) {
        return false;
    }
    o = json_object_new();
    json_object_set_string_member(o, "sha256", sum);
    *ret = json_node_init_object(json_node_alloc(), o);
    json_object_unref(o);
    return true;
}

bool qmp_transaction(JsonObject *args, JsonNode **ret, GError **errp)
{
    JsonArray *list = qobj_get_array(args, "actions");
    Transaction *tran = tran_new();
    guint n = list ? json_array_get_length(list) : 0;

    for (guint i = 0; i < n; i++) {
        JsonObject *act = json_array_get_object_element(list, i);
        const char *kind = json_object_get_string_member(act, "type");
        JsonObject *data = json_object_get_object_member(act, "data");

        if (!(checkpoint_action_kind(kind)
                  ? checkpoint_action_add(tran, kind, data, errp)
                  : bitmap_action_add(tran, kind, data, errp))) {
            tran_free(tran);
            return false;
        }
    }
    return tran_run(tran, errp);
}
