/*
 * qemu:dirty-bitmap:NAME contexts for plain dirty bitmaps.  The export
 * serves the live bitmap (as QEMU does): writes through a writable export
 * show up in later block status replies.  The bitmap is marked busy while
 * exported, so it cannot be removed or changed by management meanwhile;
 * its stored contents are loaded when the export is created, so a bitmap
 * that cannot be read fails the export instead of reading as clean.  If
 * the bitmap turns inconsistent later, block status replies EIO: never
 * stale data.
 */
#include "nbd/nbd-internal.h"
#include "block/dirty-bitmap.h"
#include "qapi/error.h"

#include <errno.h>

/* One call per dirty area: the clean gap before it, then the area. */
static int bitmap_extents(void *opaque, uint64_t offset, uint64_t length,
                          NbdExtents *ex)
{
    BdrvDirtyBitmap *bm = opaque;
    uint64_t end = offset + length;
    uint64_t bend = MIN(end, bdrv_dirty_bitmap_size(bm));

    if (bdrv_dirty_bitmap_inconsistent(bm)) {
        return -EIO;
    }
    while (offset < bend) {
        int64_t start, count;

        if (!bdrv_dirty_bitmap_next_dirty_area(bm, (int64_t)offset,
                                               (int64_t)bend,
                                               (int64_t)length, &start,
                                               &count)) {
            break;
        }
        if ((uint64_t)start > offset &&
            !nbd_extents_add(ex, (uint64_t)start - offset, 0)) {
            goto out;
        }
        if (!nbd_extents_add(ex, (uint64_t)count, NBD_STATE_DIRTY)) {
            goto out;
        }
        offset = (uint64_t)(start + count);
    }
    /* Clean to the end (also past the bitmap's size if the node grew). */
    if (offset < end) {
        nbd_extents_add(ex, end - offset, 0);
    }
out:
    /* A failed lazy load shows up as inconsistency: do not trust it. */
    return bdrv_dirty_bitmap_inconsistent(bm) ? -EIO : 0;
}

static void bitmap_release(void *opaque)
{
    bdrv_dirty_bitmap_set_busy(opaque, false);
}

static const NbdBitmapContextOps bitmap_context_ops = {
    .extents = bitmap_extents,
    .release = bitmap_release,
};

NbdBitmapContext *nbd_bitmap_context_for_bitmap(BlockDriverState *bs,
                                                const char *bitmap,
                                                bool export_writable,
                                                GError **errp)
{
    BdrvDirtyBitmap *bm = NULL;

    /* The node itself, then its backing chain (QEMU's search order). */
    for (BlockDriverState *cur = bs; cur && !bm;
         cur = bdrv_get_backing(cur)) {
        bm = bdrv_find_dirty_bitmap(cur, bitmap);
    }
    if (!bm) {
        error_setg(errp, "Bitmap '%s' is not found", bitmap);
        return NULL;
    }
    if (!bdrv_dirty_bitmap_check(bm, BDRV_BITMAP_ALLOW_RO, errp)) {
        return NULL;
    }
    /* Others could change it behind a read-only export's back. */
    if (!export_writable && !bdrv_is_read_only(bs) &&
        bdrv_dirty_bitmap_enabled(bm)) {
        error_setg(errp, "Enabled bitmap '%s' incompatible with readonly "
                   "export", bitmap);
        return NULL;
    }
    if (!bdrv_dirty_bitmap_load(bm, errp)) {
        return NULL;
    }
    bdrv_dirty_bitmap_set_busy(bm, true);
    return nbd_bitmap_context_new(bitmap, &bitmap_context_ops, bm);
}
