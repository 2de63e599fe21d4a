/*
 * Checkpoints on block nodes: change sets ("changed since C", "changed
 * between C1 and C2") as frozen bitmap copies, the query replies, and
 * copying a chain to another image (qemu-img convert --bitmaps).
 *
 * A change set is the union of the bitmaps of a range of checkpoints
 * (ckpt_changed_since()/ckpt_changed_between()).  The union is built in
 * a detached copy of the range's finest bitmap, so that no granule is
 * rounded out further than one of its bitmaps already did.  Each frozen
 * bitmap is read from the image for the merge and dropped again after
 * it; the newest one is copied at one instant, so the result is what
 * had changed at the moment of the call.
 */
#include "checkpoint-int.h"
#include "qapi/error.h"

#include <string.h>

/* The checkpoint whose bitmap is @bitmap (the vector came from @chain). */
static const Checkpoint *owner(const CheckpointChain *chain,
                               const char *bitmap)
{
    const Checkpoint *c = ckpt_chain_find_bitmap(chain, bitmap);

    g_assert(c);
    return c;
}

/* A detached, empty bitmap with the size and granularity of @c's. */
static BdrvDirtyBitmap *empty_like(BlockDriverState *bs, const Checkpoint *c,
                                   GError **errp)
{
    BdrvDirtyBitmap *bm = ckpt_load_bitmap(bs, c, errp);
    BdrvDirtyBitmap *copy = bm ? bdrv_dirty_bitmap_copy(bm, errp) : NULL;

    if (copy) {
        bdrv_clear_dirty_bitmap(copy, NULL);
    }
    /* Left in memory: the caller merges it next, then drops it. */
    return copy;
}

/* The union of the bitmaps @names (at least one) of @chain. */
static BdrvDirtyBitmap *union_of(BlockDriverState *bs,
                                 const CheckpointChain *chain, char **names,
                                 GError **errp)
{
    const Checkpoint *finest = owner(chain, names[0]);
    g_autoptr(BdrvDirtyBitmap) acc = NULL;

    for (char **n = names + 1; *n; n++) {
        const Checkpoint *c = owner(chain, *n);
        if (c->granularity < finest->granularity) {
            finest = c;
        }
    }
    acc = empty_like(bs, finest, errp);
    for (char **n = names; acc && *n; n++) {
        BdrvDirtyBitmap *bm = ckpt_load_bitmap(bs, owner(chain, *n), errp);

        if (!bm || !bdrv_merge_dirty_bitmap(acc, bm, NULL, errp)) {
            g_clear_pointer(&acc, bdrv_dirty_bitmap_free_copy);
        }
        if (bm && !bdrv_dirty_bitmap_recording(bm)) {
            bdrv_dirty_bitmap_unload(bm);
        }
    }
    return g_steal_pointer(&acc);
}

BdrvDirtyBitmap *bdrv_checkpoint_changes(BlockDriverState *bs,
                                         const char *from, const char *to,
                                         GError **errp)
{
    g_autoptr(CheckpointChain) chain = bdrv_checkpoint_chain(bs, errp);
    g_auto(GStrv) names = NULL;
    BdrvDirtyBitmap *acc;

    if (!chain) {
        return NULL;
    }
    names = to ? ckpt_changed_between(chain, from, to, errp)
               : ckpt_changed_since(chain, from, errp);
    if (!names) {
        return NULL;
    }
    if (!names[0]) {
        /* From a checkpoint to itself: nothing changed. */
        acc = empty_like(bs, ckpt_chain_find(chain, from), errp);
    } else {
        acc = union_of(bs, chain, names, errp);
    }
    ckpt_unload_frozen(bs, chain);
    return acc;
}

/* ---- query-block-checkpoints ---- */

/*
 * Bytes changed since each usable checkpoint (-1 where unknown): one
 * pass from the newest back, adding one bitmap at a time to a union of
 * the finest granularity.
 */
static int64_t *changed_bytes(BlockDriverState *bs,
                              const CheckpointChain *chain,
                              const char **reasons)
{
    guint len = ckpt_chain_length(chain), first = len;
    int64_t *out = g_new(int64_t, MAX(len, 1));
    const Checkpoint *finest = NULL;
    g_autoptr(BdrvDirtyBitmap) acc = NULL;

    for (guint i = 0; i < len; i++) {
        out[i] = -1;
    }
    /* The usable checkpoints are a suffix of the chain. */
    while (first > 0 && !reasons[first - 1]) {
        first--;
    }
    for (guint i = first; i < len; i++) {
        const Checkpoint *c = ckpt_chain_nth(chain, i);
        if (!finest || c->granularity < finest->granularity) {
            finest = c;
        }
    }
    acc = finest ? empty_like(bs, finest, NULL) : NULL;
    for (guint i = len; acc && i-- > first;) {
        const Checkpoint *c = ckpt_chain_nth(chain, i);
        BdrvDirtyBitmap *bm = ckpt_load_bitmap(bs, c, NULL);

        if (!bm || !bdrv_merge_dirty_bitmap(acc, bm, NULL, NULL)) {
            break;
        }
        out[i] = (int64_t)bdrv_get_dirty_count(acc);
        if (!bdrv_dirty_bitmap_recording(bm)) {
            bdrv_dirty_bitmap_unload(bm);
        }
    }
    return out;
}

static JsonObject *checkpoint_info(const Checkpoint *c, bool newest,
                                   const char *reason, int64_t changed)
{
    JsonObject *o = json_object_new();

    json_object_set_string_member(o, "name", c->name);
    if (c->parent) {
        json_object_set_string_member(o, "parent", c->parent);
    }
    json_object_set_string_member(o, "bitmap", c->bitmap);
    json_object_set_int_member(o, "date-sec", c->ctime_sec);
    json_object_set_int_member(o, "date-nsec", c->ctime_nsec);
    json_object_set_int_member(o, "granularity", (gint64)c->granularity);
    json_object_set_boolean_member(o, "recording", newest);
    json_object_set_boolean_member(o, "usable", !reason);
    if (reason) {
        json_object_set_string_member(o, "reason", reason);
    }
    if (c->damage != CKPT_DAMAGE_NONE) {
        json_object_set_string_member(o, "damage",
                                      bdrv_checkpoint_damage_name(c->damage));
    }
    if (changed >= 0) {
        json_object_set_int_member(o, "changed-bytes", changed);
    }
    return o;
}

JsonArray *bdrv_checkpoint_query(BlockDriverState *bs, bool with_changes,
                                 GError **errp)
{
    g_autoptr(CheckpointChain) chain = bdrv_checkpoint_chain(bs, errp);
    g_autofree const char **reasons = NULL;
    g_autofree int64_t *changed = NULL;
    JsonArray *arr;
    guint len;

    if (!chain) {
        return NULL;
    }
    len = ckpt_chain_length(chain);
    reasons = ckpt_chain_unusable_reasons(chain);
    if (with_changes) {
        changed = changed_bytes(bs, chain, reasons);
        ckpt_unload_frozen(bs, chain);
    }
    arr = json_array_new();
    for (guint i = 0; i < len; i++) {
        json_array_add_object_element(
            arr, checkpoint_info(ckpt_chain_nth(chain, i), i + 1 == len,
                                 reasons[i], changed ? changed[i] : -1));
    }
    return arr;
}

/* ---- Copying a chain (convert --bitmaps) ---- */

bool bdrv_checkpoint_copy_chain(BlockDriverState *src, BlockDriverState *dst,
                                GError **errp)
{
    g_autoptr(CheckpointChain) chain = NULL;
    const BdrvCheckpointDriverOps *ops = ckpt_ops(dst);
    bool ok;

    if (!ckpt_ops(src)) {
        return true;
    }
    chain = bdrv_checkpoint_chain(src, errp);
    if (!chain) {
        g_prefix_error(errp, "Cannot copy the checkpoints: ");
        return false;
    }
    if (!ckpt_chain_length(chain)) {
        return true;
    }
    if (!ops) {
        error_setg(errp, "Cannot copy the checkpoints: format %s does not "
                   "support them", bdrv_get_format_name(dst));
        return false;
    }
    /* Bitmaps skipped as broken make their checkpoints damaged here. */
    bdrv_checkpoint_validate(dst, chain);
    if (!ops->check_room(dst, chain, errp)) {
        g_prefix_error(errp, "Cannot copy the checkpoints: ");
        return false;
    }
    bdrv_drained_begin(dst);
    ok = ops->commit(dst, chain, errp);
    bdrv_drained_end(dst);
    if (!ok) {
        g_prefix_error(errp, "Cannot copy the checkpoints: ");
    }
    return ok;
}
