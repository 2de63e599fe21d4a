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

typedef struct ExtentWalk {
    NbdExtents *ex;
    uint64_t pos;           /* where the next extent starts */
    bool stopped;           /* the reply is full (or covers the request) */
} ExtentWalk;

/* One call per dirty area: the clean gap before it, then the area. */
static bool add_dirty_area(uint64_t start, uint64_t count, void *opaque)
{
    ExtentWalk *w = opaque;
    NbdExtents *ex = w->ex;
    uint32_t *p;

    /*
     * Fast path: areas are maximal runs and the walk stays inside the
     * request, so gaps and areas alternate (nothing to merge, nothing to
     * cut) and only the room for two more extents needs checking.
     */
    if (ex->cap - ex->count >= 2) {
        p = &ex->pairs[2 * ex->count];
        if (start > w->pos) {
            *p++ = (uint32_t)(start - w->pos);
            *p++ = 0;
            ex->count++;
        }
        p[0] = (uint32_t)count;
        p[1] = NBD_STATE_DIRTY;
        ex->count++;
        ex->total += start + count - w->pos;
    } else if ((start > w->pos &&
                !nbd_extents_append(ex, start - w->pos, 0)) ||
               !nbd_extents_append(ex, count, NBD_STATE_DIRTY)) {
        w->stopped = true;
        return false;
    }
    w->pos = start + count;
    if (ex->total >= ex->limit) {
        w->stopped = true;
        return false;
    }
    return true;
}

static int bitmap_extents(void *opaque, uint64_t offset, uint64_t length,
                          NbdExtents *ex)
{
    BdrvDirtyBitmap *bm = opaque;
    uint64_t end = offset + length;
    uint64_t bend = MIN(end, bdrv_dirty_bitmap_size(bm));
    ExtentWalk w = { .ex = ex, .pos = offset };

    if (bdrv_dirty_bitmap_inconsistent(bm)) {
        return -EIO;
    }
    if (offset < bend &&
        !bdrv_dirty_bitmap_walk_dirty_areas(bm, (int64_t)offset,
                                            (int64_t)bend, add_dirty_area,
                                            &w)) {
        return -EIO;
    }
    /* Clean to the end (also past the bitmap's size if the node grew). */
    if (!w.stopped && w.pos < end) {
        nbd_extents_append(ex, end - w.pos, 0);
    }
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
