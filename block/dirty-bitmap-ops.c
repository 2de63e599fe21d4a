/*
 * User-level bitmap operations: the checks, order of checks and error
 * messages of QEMU's block-dirty-bitmap-{add,remove,clear,enable,disable,
 * merge}.  QMP handlers, qemu-img bitmap and transaction actions call
 * these; they never print.
 */
#include "block/block_int.h"
#include "block/dirty-bitmap.h"
#include "qapi/error.h"

#include <string.h>

static const BdrvBitmapDriverOps *bitmap_ops(BlockDriverState *bs)
{
    return bs->drv ? bs->drv->bitmap_ops : NULL;
}

/* QEMU's bdrv_can_store_new_dirty_bitmap(). */
static bool can_store_new(BlockDriverState *bs, const char *name,
                          uint64_t granularity, GError **errp)
{
    const BdrvBitmapDriverOps *ops = bitmap_ops(bs);

    if (!ops || !ops->can_store_new) {
        error_setg(errp, "Can't store persistent bitmaps to %s: "
                   "Operation not supported", bdrv_get_node_name(bs));
        return false;
    }
    return ops->can_store_new(bs, name, granularity, errp);
}

BdrvDirtyBitmap *block_dirty_bitmap_add(BlockDriverState *bs,
                                        const char *name,
                                        uint64_t granularity,
                                        bool persistent, bool disabled,
                                        GError **errp)
{
    BdrvDirtyBitmap *bm;

    if (!name || !name[0]) {
        error_setg(errp, "Bitmap name cannot be empty");
        return NULL;
    }
    if (granularity) {
        if (granularity < BDRV_BITMAP_MIN_GRANULARITY ||
            (granularity & (granularity - 1))) {
            error_setg(errp, "Granularity must be power of 2 "
                       "and at least 512");
            return NULL;
        }
    } else {
        granularity = bdrv_get_default_bitmap_granularity(bs);
    }
    if (persistent) {
        /* Duplicate names first, with the generic message. */
        if (bdrv_find_dirty_bitmap(bs, name)) {
            error_setg(errp, "Bitmap already exists: %s", name);
            return NULL;
        }
        if (!can_store_new(bs, name, granularity, errp)) {
            return NULL;
        }
    }
    bm = bdrv_create_dirty_bitmap(bs, granularity, name, errp);
    if (!bm) {
        return NULL;
    }
    if (disabled) {
        bdrv_disable_dirty_bitmap(bm);
    }
    bdrv_dirty_bitmap_set_persistence(bm, persistent);
    return bm;
}

BdrvDirtyBitmap *block_dirty_bitmap_lookup(BlockDriverState *bs,
                                           const char *name, GError **errp)
{
    BdrvDirtyBitmap *bm;

    if (!name) {
        error_setg(errp, "Bitmap name cannot be NULL");
        return NULL;
    }
    bm = bdrv_find_dirty_bitmap(bs, name);
    if (!bm) {
        error_setg(errp, "Dirty bitmap '%s' not found", name);
    }
    return bm;
}

bool block_dirty_bitmap_remove(BlockDriverState *bs, const char *name,
                               GError **errp)
{
    BdrvDirtyBitmap *bm = block_dirty_bitmap_lookup(bs, name, errp);
    const BdrvBitmapDriverOps *ops = bitmap_ops(bs);

    if (!bm ||
        !bdrv_dirty_bitmap_check(bm, BDRV_BITMAP_BUSY | BDRV_BITMAP_RO,
                                 errp)) {
        return false;
    }
    if (bdrv_dirty_bitmap_persistent(bm) && ops && ops->remove_persistent &&
        !ops->remove_persistent(bs, name, errp)) {
        return false;
    }
    bdrv_release_dirty_bitmap(bm);
    return true;
}

bool block_dirty_bitmap_clear(BlockDriverState *bs, const char *name,
                              HBitmap **backup, GError **errp)
{
    BdrvDirtyBitmap *bm = block_dirty_bitmap_lookup(bs, name, errp);

    if (!bm || !bdrv_dirty_bitmap_check(bm, BDRV_BITMAP_DEFAULT, errp) ||
        !bdrv_dirty_bitmap_prepare_change(bm, errp)) {
        return false;
    }
    if (backup && !bdrv_dirty_bitmap_load(bm, errp)) {
        return false;
    }
    bdrv_clear_dirty_bitmap(bm, backup);
    return true;
}

bool block_dirty_bitmap_enable(BlockDriverState *bs, const char *name,
                               GError **errp)
{
    BdrvDirtyBitmap *bm = block_dirty_bitmap_lookup(bs, name, errp);

    if (!bm || !bdrv_dirty_bitmap_check(bm, BDRV_BITMAP_ALLOW_RO, errp)) {
        return false;
    }
    if (bdrv_dirty_bitmap_recording(bm)) {
        return true;
    }
    if (!bdrv_dirty_bitmap_readonly(bm) &&
        !bdrv_dirty_bitmap_prepare_change(bm, errp)) {
        return false;
    }
    bdrv_enable_dirty_bitmap(bm);
    return true;
}

bool block_dirty_bitmap_disable(BlockDriverState *bs, const char *name,
                                GError **errp)
{
    BdrvDirtyBitmap *bm = block_dirty_bitmap_lookup(bs, name, errp);

    if (!bm || !bdrv_dirty_bitmap_check(bm, BDRV_BITMAP_ALLOW_RO, errp)) {
        return false;
    }
    if (!bdrv_dirty_bitmap_recording(bm)) {
        return true;
    }
    if (!bdrv_dirty_bitmap_readonly(bm) &&
        !bdrv_dirty_bitmap_prepare_change(bm, errp)) {
        return false;
    }
    bdrv_disable_dirty_bitmap(bm);
    return true;
}

/*
 * Merge every source into @target.  The sources are checked (found,
 * consistent, loadable, same size) before the target changes, so a failure
 * leaves the target as it was; with @backup the old contents are kept for
 * a transaction's abort.
 */
bool block_dirty_bitmap_merge(BlockDriverState *bs, const char *target,
                              const BlockDirtyBitmapSource *sources,
                              size_t nb_sources, HBitmap **backup,
                              GError **errp)
{
    BdrvDirtyBitmap *dst = block_dirty_bitmap_lookup(bs, target, errp);
    g_autofree BdrvDirtyBitmap **src = NULL;
    HBitmap *old = NULL;

    if (backup) {
        *backup = NULL;
    }
    if (!dst || !bdrv_dirty_bitmap_check(dst, BDRV_BITMAP_DEFAULT, errp)) {
        return false;
    }
    src = g_new0(BdrvDirtyBitmap *, nb_sources + 1);
    for (size_t i = 0; i < nb_sources; i++) {
        src[i] = block_dirty_bitmap_lookup(sources[i].bs, sources[i].name,
                                           errp);
        if (!src[i] ||
            !bdrv_dirty_bitmap_check(src[i], BDRV_BITMAP_INCONSISTENT,
                                     errp) ||
            !bdrv_dirty_bitmap_load(src[i], errp)) {
            return false;
        }
        if (bdrv_dirty_bitmap_size(src[i]) != bdrv_dirty_bitmap_size(dst)) {
            error_setg(errp, "Bitmaps are incompatible and can't be merged");
            return false;
        }
    }
    if (!bdrv_dirty_bitmap_prepare_change(dst, errp)) {
        return false;
    }
    for (size_t i = 0; i < nb_sources; i++) {
        HBitmap *step_backup = NULL;

        if (!bdrv_merge_dirty_bitmap(dst, src[i],
                                     backup && !old ? &step_backup : NULL,
                                     errp)) {
            bdrv_restore_dirty_bitmap(dst, old);
            return false;
        }
        if (step_backup) {
            old = step_backup;
        }
    }
    if (backup) {
        *backup = old;
    } else {
        hbitmap_free(old);
    }
    return true;
}
