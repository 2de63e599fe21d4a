/*
 * Transaction actions for dirty bitmaps.  Prepare does the change in a way
 * abort can undo exactly; nothing irreversible (such as deleting a stored
 * bitmap from the image) happens before commit.
 */
#include "block/bitmap-actions.h"
#include "block/blockdev.h"
#include "block/dirty-bitmap.h"
#include "qapi/error.h"

#include <string.h>

typedef struct {
    JsonObject *args;
    BlockDriverState *bs;
    BdrvDirtyBitmap *bm;      /* the bitmap acted on, once known */
    HBitmap *backup;          /* clear/merge: the old contents */
    bool was_recording;       /* enable/disable: the old state */
    bool prepared;
} BitmapAction;

static const char *arg_str(BitmapAction *a, const char *key)
{
    return json_object_get_string_member_with_default(a->args, key, NULL);
}

static bool lookup(BitmapAction *a, const char *key, GError **errp)
{
    a->bs = blockdev_lookup_node(arg_str(a, "node"), errp);
    if (!a->bs) {
        return false;
    }
    a->bm = block_dirty_bitmap_lookup(a->bs, arg_str(a, key), errp);
    return a->bm != NULL;
}

static void action_clean(void *opaque)
{
    BitmapAction *a = opaque;

    if (a->backup) {
        hbitmap_free(a->backup);
    }
    json_object_unref(a->args);
    g_free(a);
}

/* --- add --------------------------------------------------------------- */

static bool add_prepare(void *opaque, GError **errp)
{
    BitmapAction *a = opaque;
    uint64_t gran = json_object_get_int_member_with_default(a->args,
                                                             "granularity",
                                                             0);

    a->bs = blockdev_lookup_node(arg_str(a, "node"), errp);
    if (!a->bs) {
        return false;
    }
    /*
     * 0 means "default" to block_dirty_bitmap_add, but is refused in QMP
     * (after the empty-name check, as QEMU orders them).
     */
    if (!gran && json_object_has_member(a->args, "granularity") &&
        arg_str(a, "name") && arg_str(a, "name")[0]) {
        error_setg(errp, "Granularity must be power of 2 and at least 512");
        return false;
    }
    a->bm = block_dirty_bitmap_add(
        a->bs, arg_str(a, "name"), gran,
        json_object_get_boolean_member_with_default(a->args, "persistent",
                                                    false),
        json_object_get_boolean_member_with_default(a->args, "disabled",
                                                    false),
        errp);
    a->prepared = a->bm != NULL;
    return a->prepared;
}

static void add_abort(void *opaque)
{
    BitmapAction *a = opaque;

    /* Not stored yet (bitmaps reach the image on close or flush). */
    if (a->prepared) {
        bdrv_release_dirty_bitmap(a->bm);
    }
}

static const TransactionActionDrv add_drv = {
    .prepare = add_prepare,
    .abort = add_abort,
    .clean = action_clean,
};

/* --- remove ------------------------------------------------------------ */

static bool remove_prepare(void *opaque, GError **errp)
{
    BitmapAction *a = opaque;

    if (!lookup(a, "name", errp) ||
        !bdrv_dirty_bitmap_check(a->bm, BDRV_BITMAP_BUSY | BDRV_BITMAP_RO,
                                 errp)) {
        return false;
    }
    /* Busy keeps later actions of the same transaction away from it. */
    bdrv_dirty_bitmap_set_busy(a->bm, true);
    a->prepared = true;
    return true;
}

static void remove_abort(void *opaque)
{
    BitmapAction *a = opaque;

    if (a->prepared) {
        bdrv_dirty_bitmap_set_busy(a->bm, false);
    }
}

static void remove_commit(void *opaque)
{
    BitmapAction *a = opaque;
    g_autoptr(GError) err = NULL;

    bdrv_dirty_bitmap_set_busy(a->bm, false);
    if (!block_dirty_bitmap_remove(a->bs, arg_str(a, "name"), &err)) {
        g_warning("removing bitmap '%s' after commit: %s",
                  arg_str(a, "name"), err->message);
    }
}

static const TransactionActionDrv remove_drv = {
    .prepare = remove_prepare,
    .commit = remove_commit,
    .abort = remove_abort,
    .clean = action_clean,
};

/* --- clear ------------------------------------------------------------- */

static bool clear_prepare(void *opaque, GError **errp)
{
    BitmapAction *a = opaque;

    a->bs = blockdev_lookup_node(arg_str(a, "node"), errp);
    if (!a->bs) {
        return false;
    }
    a->prepared = block_dirty_bitmap_clear(a->bs, arg_str(a, "name"),
                                           &a->backup, errp);
    if (a->prepared) {
        a->bm = bdrv_find_dirty_bitmap(a->bs, arg_str(a, "name"));
    }
    return a->prepared;
}

static void restore_abort(void *opaque)
{
    BitmapAction *a = opaque;

    if (a->prepared && a->backup) {
        bdrv_restore_dirty_bitmap(a->bm, a->backup);
        a->backup = NULL;
    }
}

static const TransactionActionDrv clear_drv = {
    .prepare = clear_prepare,
    .abort = restore_abort,
    .clean = action_clean,
};

/* --- enable / disable -------------------------------------------------- */

static bool toggle_prepare(BitmapAction *a, bool enable, GError **errp)
{
    bool ok;

    if (!lookup(a, "name", errp)) {
        return false;
    }
    a->was_recording = bdrv_dirty_bitmap_recording(a->bm);
    ok = enable ? block_dirty_bitmap_enable(a->bs, arg_str(a, "name"), errp)
                : block_dirty_bitmap_disable(a->bs, arg_str(a, "name"), errp);
    a->prepared = ok;
    return ok;
}

static bool enable_prepare(void *opaque, GError **errp)
{
    return toggle_prepare(opaque, true, errp);
}

static bool disable_prepare(void *opaque, GError **errp)
{
    return toggle_prepare(opaque, false, errp);
}

static void toggle_abort(void *opaque)
{
    BitmapAction *a = opaque;

    if (!a->prepared) {
        return;
    }
    if (a->was_recording) {
        bdrv_enable_dirty_bitmap(a->bm);
    } else {
        bdrv_disable_dirty_bitmap(a->bm);
    }
}

static const TransactionActionDrv enable_drv = {
    .prepare = enable_prepare,
    .abort = toggle_abort,
    .clean = action_clean,
};

static const TransactionActionDrv disable_drv = {
    .prepare = disable_prepare,
    .abort = toggle_abort,
    .clean = action_clean,
};

/* --- merge ------------------------------------------------------------- */

static bool merge_prepare(void *opaque, GError **errp)
{
    BitmapAction *a = opaque;
    JsonArray *srcs = json_object_get_array_member(a->args, "bitmaps");
    guint n = srcs ? json_array_get_length(srcs) : 0;
    g_autofree BlockDirtyBitmapSource *sources =
        g_new0(BlockDirtyBitmapSource, MAX(n, 1));

    if (!lookup(a, "target", errp)) {
        return false;
    }
    for (guint i = 0; i < n; i++) {
        JsonNode *e = json_array_get_element(srcs, i);
        if (JSON_NODE_HOLDS_OBJECT(e)) {
            JsonObject *o = json_node_get_object(e);
            sources[i].bs = blockdev_lookup_node(
                json_object_get_string_member_with_default(o, "node", NULL),
                errp);
            if (!sources[i].bs) {
                return false;
            }
            sources[i].name =
                json_object_get_string_member_with_default(o, "name", NULL);
        } else {
            sources[i].bs = a->bs;
            sources[i].name = json_node_get_string(e);
        }
    }
    a->prepared = block_dirty_bitmap_merge(a->bs, arg_str(a, "target"),
                                           sources, n, &a->backup, errp);
    return a->prepared;
}

static const TransactionActionDrv merge_drv = {
    .prepare = merge_prepare,
    .abort = restore_abort,
    .clean = action_clean,
};

/* --- dispatch ---------------------------------------------------------- */

static const struct {
    const char *kind;
    const TransactionActionDrv *drv;
} actions[] = {
    {"block-dirty-bitmap-add", &add_drv},
    {"block-dirty-bitmap-remove", &remove_drv},
    {"block-dirty-bitmap-clear", &clear_drv},
    {"block-dirty-bitmap-enable", &enable_drv},
    {"block-dirty-bitmap-disable", &disable_drv},
    {"block-dirty-bitmap-merge", &merge_drv},
};

bool bitmap_action_add(Transaction *tran, const char *kind, JsonObject *data,
                       GError **errp)
{
    for (size_t i = 0; i < G_N_ELEMENTS(actions); i++) {
        if (!strcmp(actions[i].kind, kind)) {
            BitmapAction *a = g_new0(BitmapAction, 1);
            a->args = json_object_ref(data);
            tran_add(tran, actions[i].drv, a, kind);
            return true;
        }
    }
    error_setg(errp, "Unknown transaction action '%s'", kind);
    return false;
}
