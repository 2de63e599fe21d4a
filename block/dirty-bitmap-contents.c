/*
 * Contents of dirty bitmaps: set/reset/clear/merge, the queries (get,
 * count, next dirty/clean, extents), SHA-256, frozen copies and
 * serialization.  Every query loads stored contents lazily; see
 * dirty-bitmap.c for the contents model and the locking rules.
 */
#include "block/dirty-bitmap-int.h"
#include "qapi/error.h"

#include <string.h>

/* ---- Contents ---- */

void bdrv_set_dirty_bitmap(BdrvDirtyBitmap *bm, int64_t offset,
                           int64_t bytes)
{
    if (offset < 0 || bytes <= 0) {
        return;
    }
    bm_lock(bm);
    if (dbm_ensure_hb_locked(bm)) {
        hbitmap_set(bm->hb, (uint64_t)offset, (uint64_t)bytes);
        bm->changed = true;
    }
    bm_unlock(bm);
}

void bdrv_reset_dirty_bitmap(BdrvDirtyBitmap *bm, int64_t offset,
                             int64_t bytes)
{
    if (offset < 0 || bytes <= 0 || !dbm_ensure_loaded(bm)) {
        return;
    }
    bm_lock(bm);
    hbitmap_reset(bm->hb, (uint64_t)offset, (uint64_t)bytes);
    bm->changed = true;
    bm_unlock(bm);
}

void bdrv_clear_dirty_bitmap(BdrvDirtyBitmap *bm, HBitmap **backup)
{
    HBitmap *fresh;

    if (backup) {
        *backup = NULL;
        if (!dbm_ensure_loaded(bm)) {
            return;
        }
    }
    fresh = hbitmap_try_new(bm->size, bm->granularity);
    bm_lock(bm);
    if (!fresh) {
        /* Clear in place (no new memory); the old contents are lost. */
        if (dbm_ensure_hb_locked(bm)) {
            hbitmap_reset_all(bm->hb);
            bm->loaded = true;
            bm->changed = true;
        }
        bm_unlock(bm);
        return;
    }
    if (backup) {
        *backup = bm->hb;
    } else {
        hbitmap_free(bm->hb);
    }
    bm->hb = fresh;
    bm->loaded = true;      /* the contents are known: empty */
    bm->changed = true;
    bm_unlock(bm);
}

void bdrv_restore_dirty_bitmap(BdrvDirtyBitmap *bm, HBitmap *backup)
{
    if (!backup) {
        return;
    }
    bm_lock(bm);
    hbitmap_free(bm->hb);
    bm->hb = backup;
    bm->loaded = true;
    bm_unlock(bm);
}

/* dst |= src for bitmaps of the same size, any granularities. */
static void merge_hb(HBitmap *dst, const HBitmap *src)
{
    uint64_t off = 0, start, len, size = hbitmap_size(src);

    if (hbitmap_merge(dst, src)) {
        return;
    }
    while (hbitmap_next_dirty_area(src, off, size, UINT64_MAX, &start,
                                   &len)) {
        hbitmap_set(dst, start, len);
        off = start + len;
    }
}

static void lock_pair(BdrvDirtyBitmap *a, BdrvDirtyBitmap *b)
{
    if (!a->bs || !b->bs || a->bs == b->bs) {
        bm_lock(a->bs ? a : b);
        return;
    }
    if ((uintptr_t)a->bs < (uintptr_t)b->bs) {
        bm_lock(a);
        bm_lock(b);
    } else {
        bm_lock(b);
        bm_lock(a);
    }
}

static void unlock_pair(BdrvDirtyBitmap *a, BdrvDirtyBitmap *b)
{
    if (!a->bs || !b->bs || a->bs == b->bs) {
        bm_unlock(a->bs ? a : b);
        return;
    }
    bm_unlock(a);
    bm_unlock(b);
}

bool bdrv_merge_dirty_bitmap(BdrvDirtyBitmap *dest, BdrvDirtyBitmap *src,
                             HBitmap **backup, GError **errp)
{
    if (backup) {
        *backup = NULL;
    }
    if (dest->size != src->size) {
        error_setg(errp, "Bitmaps are incompatible and can't be merged");
        return false;
    }
    if (!bdrv_dirty_bitmap_load(src, errp)) {
        return false;
    }
    if (backup && !bdrv_dirty_bitmap_load(dest, errp)) {
        return false;
    }
    if (dest == src) {
        return true;
    }
    lock_pair(dest, src);
    if (!dbm_ensure_hb_locked(dest)) {
        unlock_pair(dest, src);
        error_setg(errp, "Not enough memory to merge into bitmap '%s'",
                   dbm_display_name(dest));
        return false;
    }
    if (backup) {
        *backup = hbitmap_copy(dest->hb);
    }
    merge_hb(dest->hb, src->hb);
    dest->changed = true;
    unlock_pair(dest, src);
    return true;
}

bool bdrv_dirty_bitmap_get(BdrvDirtyBitmap *bm, int64_t offset)
{
    bool ret;

    if (offset < 0 || !dbm_ensure_loaded(bm)) {
        return false;
    }
    bm_lock(bm);
    ret = hbitmap_get(bm->hb, (uint64_t)offset);
    bm_unlock(bm);
    return ret;
}

/*
 * A stored bitmap nothing touched yet can be counted from the image
 * without building it in memory (listings of many bitmaps).
 */
static bool stored_count(BdrvDirtyBitmap *bm, uint64_t *count,
                         GError **errp)
{
    const BdrvBitmapDriverOps *ops = bm->bs && bm->bs->drv
                                     ? bm->bs->drv->bitmap_ops : NULL;
    bool untouched;

    if (!ops || !ops->stored_count) {
        return false;
    }
    bm_lock(bm);
    untouched = bm->stored && !bm->loaded && !bm->hb && !bm->inconsistent;
    bm_unlock(bm);
    return untouched && ops->stored_count(bm->bs, bm, count, errp);
}

bool bdrv_dirty_bitmap_count_checked(BdrvDirtyBitmap *bm, uint64_t *count,
                                     GError **errp)
{
    GError *err = NULL;

    *count = 0;
    if (stored_count(bm, count, &err)) {
        return true;
    }
    if (err) {
        /* The stored contents are unreadable: never trust them. */
        bdrv_dirty_bitmap_set_inconsistent(bm);
        g_propagate_error(errp, err);
        return false;
    }
    if (!bdrv_dirty_bitmap_load(bm, errp)) {
        return false;
    }
    *count = bdrv_get_dirty_count(bm);
    return true;
}

uint64_t bdrv_get_dirty_count(BdrvDirtyBitmap *bm)
{
    uint64_t ret;

    if (stored_count(bm, &ret, NULL)) {
        return ret;
    }
    if (!dbm_ensure_loaded(bm)) {
        return 0;
    }
    bm_lock(bm);
    ret = hbitmap_count(bm->hb);
    bm_unlock(bm);
    return ret;
}

int64_t bdrv_dirty_bitmap_next_dirty(BdrvDirtyBitmap *bm, int64_t offset,
                                     int64_t bytes)
{
    int64_t ret;

    if (offset < 0 || bytes <= 0 || !dbm_ensure_loaded(bm)) {
        return -1;
    }
    bm_lock(bm);
    ret = hbitmap_next_dirty(bm->hb, (uint64_t)offset, (uint64_t)bytes);
    bm_unlock(bm);
    return ret;
}

int64_t bdrv_dirty_bitmap_next_zero(BdrvDirtyBitmap *bm, int64_t offset,
                                    int64_t bytes)
{
    int64_t ret;

    if (offset < 0 || bytes <= 0 || !dbm_ensure_loaded(bm)) {
        return -1;
    }
    bm_lock(bm);
    ret = hbitmap_next_clean(bm->hb, (uint64_t)offset, (uint64_t)bytes);
    bm_unlock(bm);
    return ret;
}

bool bdrv_dirty_bitmap_next_dirty_area(BdrvDirtyBitmap *bm, int64_t offset,
                                       int64_t end, int64_t max_bytes,
                                       int64_t *dirty_start,
                                       int64_t *dirty_count)
{
    uint64_t start, count;
    bool ret;

    if (offset < 0 || end <= offset || max_bytes <= 0 ||
        !dbm_ensure_loaded(bm)) {
        return false;
    }
    bm_lock(bm);
    ret = hbitmap_next_dirty_area(bm->hb, (uint64_t)offset, (uint64_t)end,
                                  (uint64_t)max_bytes, &start, &count);
    bm_unlock(bm);
    if (ret) {
        *dirty_start = (int64_t)start;
        *dirty_count = (int64_t)count;
    }
    return ret;
}

bool bdrv_dirty_bitmap_walk_dirty_areas(BdrvDirtyBitmap *bm, int64_t offset,
                                        int64_t end,
                                        BdrvDirtyAreaFn fn, void *opaque)
{
    if (offset < 0 || end <= offset || !dbm_ensure_loaded(bm)) {
        return false;
    }
    /*
     * One lock for the whole walk: a block status reply over a sparse
     * bitmap has hundreds of areas, and a lock round trip per area cost
     * more than finding the area.  @fn must not block.
     */
    bm_lock(bm);
    if (bm->hb) {
        hbitmap_walk_dirty_areas(bm->hb, (uint64_t)offset, (uint64_t)end,
                                 fn, opaque);
    }
    bm_unlock(bm);
    return true;
}

bool bdrv_dirty_bitmap_status(BdrvDirtyBitmap *bm, int64_t offset,
                              int64_t bytes, int64_t *pnum)
{
    uint64_t avail;
    int64_t next;
    bool dirty;

    *pnum = 0;
    if (offset < 0 || bytes <= 0 || (uint64_t)offset >= bm->size) {
        return false;
    }
    avail = MIN((uint64_t)bytes, bm->size - (uint64_t)offset);
    if (!dbm_ensure_loaded(bm)) {
        *pnum = (int64_t)avail;
        return false;
    }
    bm_lock(bm);
    dirty = hbitmap_get(bm->hb, (uint64_t)offset);
    next = dirty ? hbitmap_next_clean(bm->hb, (uint64_t)offset, avail)
                 : hbitmap_next_dirty(bm->hb, (uint64_t)offset, avail);
    bm_unlock(bm);
    *pnum = next < 0 ? (int64_t)avail : next - offset;
    return dirty;
}

bool bdrv_dirty_bitmap_range_all_clean(BdrvDirtyBitmap *bm, int64_t offset,
                                       int64_t bytes)
{
    bool ret;

    if (offset < 0 || bytes < 0 || !dbm_ensure_loaded(bm)) {
        return true;
    }
    bm_lock(bm);
    ret = hbitmap_range_all_clean(bm->hb, (uint64_t)offset, (uint64_t)bytes);
    bm_unlock(bm);
    return ret;
}

bool bdrv_dirty_bitmap_range_all_dirty(BdrvDirtyBitmap *bm, int64_t offset,
                                       int64_t bytes)
{
    bool ret;

    if (offset < 0 || bytes < 0 || !dbm_ensure_loaded(bm)) {
        return false;
    }
    bm_lock(bm);
    ret = hbitmap_range_all_dirty(bm->hb, (uint64_t)offset, (uint64_t)bytes);
    bm_unlock(bm);
    return ret;
}

char *bdrv_dirty_bitmap_sha256(BdrvDirtyBitmap *bm, GError **errp)
{
    char out[65];

    if (!bdrv_dirty_bitmap_load(bm, errp)) {
        return NULL;
    }
    bm_lock(bm);
    hbitmap_sha256(bm->hb, out);
    bm_unlock(bm);
    return g_strdup(out);
}

BdrvDirtyBitmap *bdrv_dirty_bitmap_copy(BdrvDirtyBitmap *bm, GError **errp)
{
    BdrvDirtyBitmap *copy;

    if (!bdrv_dirty_bitmap_load(bm, errp)) {
        return NULL;
    }
    copy = g_new0(BdrvDirtyBitmap, 1);
    copy->granularity = bm->granularity;
    bm_lock(bm);
    copy->size = bm->size;
    copy->hb = hbitmap_copy(bm->hb);
    bm_unlock(bm);
    copy->loaded = true;
    copy->readonly = true;
    return copy;
}

void bdrv_dirty_bitmap_free_copy(BdrvDirtyBitmap *copy)
{
    if (copy) {
        g_assert(!copy->bs);
        dbm_free(copy);
    }
}

/* ---- Serialization ---- */

uint64_t bdrv_dirty_bitmap_serialization_align(const BdrvDirtyBitmap *bm)
{
    return bm->granularity * 8;
}

uint64_t bdrv_dirty_bitmap_serialization_size(const BdrvDirtyBitmap *bm,
                                              uint64_t offset, uint64_t bytes)
{
    uint64_t end, bits;

    if (offset >= bm->size) {
        return 0;
    }
    end = bytes > bm->size - offset ? bm->size : offset + bytes;
    bits = (end - offset + bm->granularity - 1) / bm->granularity;
    return (bits + 7) / 8;
}

void bdrv_dirty_bitmap_serialize_part(BdrvDirtyBitmap *bm, uint8_t *buf,
                                      uint64_t offset, uint64_t bytes)
{
    if (!dbm_ensure_loaded(bm)) {
        memset(buf, 0, bdrv_dirty_bitmap_serialization_size(bm, offset,
                                                            bytes));
        return;
    }
    bm_lock(bm);
    hbitmap_serialize_part(bm->hb, buf, offset, bytes);
    bm_unlock(bm);
}

/*
 * Deserializing writes contents: the target must hold them all, so a
 * stored bitmap is loaded first (a fresh one just gets its hb).
 */
static bool deserialize_target(BdrvDirtyBitmap *bm)
{
    if (bm->stored) {
        return dbm_ensure_loaded(bm);
    }
    return bdrv_dirty_bitmap_load(bm, NULL);
}

void bdrv_dirty_bitmap_deserialize_part(BdrvDirtyBitmap *bm,
                                        const uint8_t *buf, uint64_t offset,
                                        uint64_t bytes)
{
    if (!deserialize_target(bm)) {
        return;
    }
    bm_lock(bm);
    hbitmap_deserialize_part(bm->hb, buf, offset, bytes, true);
    bm->changed = true;
    bm_unlock(bm);
}

void bdrv_dirty_bitmap_deserialize_zeroes(BdrvDirtyBitmap *bm,
                                          uint64_t offset, uint64_t bytes)
{
    if (!deserialize_target(bm)) {
        return;
    }
    bm_lock(bm);
    hbitmap_deserialize_zeroes(bm->hb, offset, bytes);
    bm->changed = true;
    bm_unlock(bm);
}

void bdrv_dirty_bitmap_deserialize_ones(BdrvDirtyBitmap *bm, uint64_t offset,
                                        uint64_t bytes)
{
    if (!deserialize_target(bm)) {
        return;
    }
    bm_lock(bm);
    hbitmap_deserialize_ones(bm->hb, offset, bytes);
    bm->changed = true;
    bm_unlock(bm);
}
