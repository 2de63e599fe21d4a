/*
 * Checkpoint change sets as qemu:dirty-bitmap:NAME contexts
 * (include/nbd/checkpoint-context.h).  Each context owns a frozen,
 * detached bitmap from bdrv_checkpoint_changes(); worker threads only
 * read it, so it needs no lock, and it is freed with the export.
 */
#include "nbd/checkpoint-context.h"
#include "nbd/nbd-protocol.h"
#include "nbd/server.h"
#include "block/checkpoint-ops.h"
#include "qapi/error.h"

#include <errno.h>
#include <stdlib.h>

static int changes_extents(void *opaque, uint64_t offset, uint64_t length,
                           NbdExtents *ex)
{
    BdrvDirtyBitmap *bm = opaque;

    while (length > 0) {
        int64_t pnum = 0;
        bool dirty = bdrv_dirty_bitmap_status(bm, (int64_t)offset,
                                              (int64_t)length, &pnum);

        if (pnum <= 0) {
            /* Past the size the checkpoints knew: nothing recorded. */
            pnum = (int64_t)length;
            dirty = false;
        }
        if (!nbd_extents_add(ex, (uint64_t)pnum,
                             dirty ? NBD_STATE_DIRTY : 0)) {
            break;
        }
        offset += (uint64_t)pnum;
        length -= (uint64_t)pnum;
    }
    return 0;
}

static void changes_release(void *opaque)
{
    bdrv_dirty_bitmap_free_copy(opaque);
    bdrv_release_free_memory();
}

static const NbdBitmapContextOps changes_ops = {
    .extents = changes_extents,
    .release = changes_release,
};

static const char *member_str(JsonObject *o, const char *key)
{
    JsonNode *n = json_object_get_member(o, key);

    return n && JSON_NODE_HOLDS_VALUE(n) &&
           json_node_get_value_type(n) == G_TYPE_STRING
           ? json_node_get_string(n) : NULL;
}

/* One element: a checkpoint name, or {"from", "to", "name"}. */
static NbdBitmapContext *context_for(JsonNode *item, BlockDriverState *bs,
                                     GError **errp)
{
    const char *from = NULL, *to = NULL, *name = NULL;
    g_autofree char *dflt = NULL;
    BdrvDirtyBitmap *bm;

    if (JSON_NODE_HOLDS_VALUE(item) &&
        json_node_get_value_type(item) == G_TYPE_STRING) {
        from = name = json_node_get_string(item);
    } else if (JSON_NODE_HOLDS_OBJECT(item)) {
        JsonObject *o = json_node_get_object(item);
        from = member_str(o, "from");
        to = member_str(o, "to");
        name = member_str(o, "name");
        if (!from || !to) {
            error_setg(errp, "Parameter 'checkpoints' expects a checkpoint "
                       "name or {\"from\", \"to\"}");
            return NULL;
        }
        if (!name) {
            name = dflt = g_strdup_printf("%s..%s", from, to);
        }
    } else {
        error_setg(errp, "Invalid parameter type for 'checkpoints', "
                   "expected: array");
        return NULL;
    }
    bm = bdrv_checkpoint_changes(bs, from, to, errp);
    if (!bm) {
        g_prefix_error(errp, "Cannot export checkpoint '%s': ", from);
        return NULL;
    }
    return nbd_bitmap_context_new(name, &changes_ops, bm);
}

/* A keyval list {"0": a, "1": b} (command line), in index order. */
static GList *keyval_items(JsonObject *o)
{
    g_autoptr(GList) keys = json_object_get_members(o);
    GList *items = NULL;
    guint n = g_list_length(keys);

    for (guint i = 0; i < n; i++) {
        g_autofree char *k = g_strdup_printf("%u", i);
        JsonNode *v = json_object_get_member(o, k);
        if (!v) {
            g_list_free(items);
            return NULL;
        }
        items = g_list_append(items, v);
    }
    return items;
}

bool nbd_checkpoint_contexts_take(JsonObject *args, BlockDriverState *bs,
                                  GPtrArray *out, GError **errp)
{
    JsonNode *n = json_object_get_member(args, "checkpoints");
    g_autoptr(GList) items = NULL;

    if (!n) {
        return true;
    }
    if (JSON_NODE_HOLDS_ARRAY(n)) {
        items = json_array_get_elements(json_node_get_array(n));
    } else if (JSON_NODE_HOLDS_OBJECT(n)) {
        items = keyval_items(json_node_get_object(n));
    } else if (JSON_NODE_HOLDS_VALUE(n) &&
               json_node_get_value_type(n) == G_TYPE_STRING) {
        items = g_list_append(NULL, n);
    }
    if (!items && !(JSON_NODE_HOLDS_ARRAY(n) &&
                    !json_array_get_length(json_node_get_array(n)))) {
        error_setg(errp, "Invalid parameter type for 'checkpoints', "
                   "expected: array");
        return false;
    }
    for (GList *l = items; l; l = l->next) {
        NbdBitmapContext *ctx = context_for(l->data, bs, errp);
        if (!ctx) {
            return false;
        }
        g_ptr_array_add(out, ctx);
    }
    json_object_remove_member(args, "checkpoints");
    return true;
}
