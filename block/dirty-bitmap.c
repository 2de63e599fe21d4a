/*
 * Named dirty bitmaps on a node: the objects, their flags, lazy loading of
 * stored contents, the write hook and the queries.  The user-level checks
 * live in dirty-bitmap-ops.c; the qcow2 storage in qcow2/qcow2-bitmap.c.
 *
 * Contents model.  bm->hb holds bits; bm->loaded says whether they include
 * the contents stored in the image.  A stored bitmap starts with hb == NULL
 * and loaded == false; writes and merges into it go to a delta hb (only
 * ever ORed into), and loading ORs the delta into what the driver reads.
 * Everything that needs the real contents calls bitmap_ensure_loaded().
 *
 * Locking: bs->dirty_bitmap_lock protects bs->dirty_bitmaps,
 * bs->recording_bitmaps, and every bm->hb (pointer and bits), bm->loaded
 * and bm->changed.  Loads are serialized by load_lock and do their I/O
 * without the node lock.  Detached copies are frozen and need no lock.
 */
#include "block/block_int.h"
#include "block/dirty-bitmap.h"
#include "qapi/error.h"

#include <errno.h>
#include <string.h>

struct BdrvDirtyBitmap {
    BlockDriverState *bs;    /* NULL for a detached copy */
    char *name;              /* NULL: anonymous */
    uint64_t granularity;
    uint64_t size;
    HBitmap *hb;             /* NULL: nothing in memory yet */
    bool loaded;             /* hb (if any) includes the stored contents */
    bool stored;             /* has contents in the image to load */
    bool recording;
    bool persistent;
    bool inconsistent;
    bool busy;
    bool readonly;
    bool changed;            /* contents differ from the stored copy */
    void *driver_data;
    GDestroyNotify driver_data_free;
};

static GMutex load_lock;

static void bm_lock(const BdrvDirtyBitmap *bm)
{
    if (bm->bs) {
        g_mutex_lock(&bm->bs->dirty_bitmap_lock);
    }
}

static void bm_unlock(const BdrvDirtyBitmap *bm)
{
    if (bm->bs) {
        g_mutex_unlock(&bm->bs->dirty_bitmap_lock);
    }
}

static const BdrvBitmapDriverOps *bitmap_ops(BlockDriverState *bs)
{
    return bs && bs->drv ? bs->drv->bitmap_ops : NULL;
}

static const char *bm_display_name(const BdrvDirtyBitmap *bm)
{
    return bm->name ? bm->name : "(anonymous)";
}

/* ---- Creation and release ---- */

static bool check_new_bitmap(BlockDriverState *bs, uint64_t granularity,
                             const char *name, GError **errp)
{
    if (name && bdrv_find_dirty_bitmap(bs, name)) {
        error_setg(errp, "Bitmap already exists: %s", name);
        return false;
    }
    if (name && strlen(name) > BDRV_BITMAP_MAX_NAME_SIZE) {
        error_setg(errp, "Bitmap name too long: %s", name);
        return false;
    }
    if (granularity < BDRV_BITMAP_MIN_GRANULARITY ||
        (granularity & (granularity - 1))) {
        error_setg(errp, "Granularity must be power of 2 and at least 512");
        return false;
    }
    if (granularity > BDRV_BITMAP_MAX_GRANULARITY) {
        error_setg(errp, "Granularity exceeds maximum (%" PRIu64 " bytes)",
                   (uint64_t)BDRV_BITMAP_MAX_GRANULARITY);
        return false;
    }
    if (bs->dirty_bitmaps->len >= BDRV_BITMAP_MAX_PER_NODE) {
        error_setg(errp, "Too many dirty bitmaps on node '%s' (at most %d)",
                   bdrv_get_node_name(bs), BDRV_BITMAP_MAX_PER_NODE);
        return false;
    }
    return true;
}

static BdrvDirtyBitmap *bitmap_new(BlockDriverState *bs, uint64_t granularity,
                                   const char *name, GError **errp)
{
    BdrvDirtyBitmap *bm;
    int64_t len;

    if (!check_new_bitmap(bs, granularity, name, errp)) {
        return NULL;
    }
    len = bdrv_getlength(bs);
    if (len < 0) {
        error_setg_errno(errp, (int)-len, "Cannot get the length of node '%s'",
                         bdrv_get_node_name(bs));
        return NULL;
    }
    bm = g_new0(BdrvDirtyBitmap, 1);
    bm->bs = bs;
    bm->name = g_strdup(name);
    bm->granularity = granularity;
    bm->size = (uint64_t)len;
    return bm;
}

/* Attach @bm to its node; recording bitmaps join the write hook's list. */
static void bitmap_attach(BdrvDirtyBitmap *bm)
{
    BlockDriverState *bs = bm->bs;

    g_mutex_lock(&bs->dirty_bitmap_lock);
    if (!bs->recording_bitmaps) {
        bs->recording_bitmaps = g_ptr_array_new();
    }
    g_ptr_array_add(bs->dirty_bitmaps, bm);
    if (bm->recording) {
        g_ptr_array_add(bs->recording_bitmaps, bm);
    }
    g_mutex_unlock(&bs->dirty_bitmap_lock);
}

BdrvDirtyBitmap *bdrv_create_dirty_bitmap(BlockDriverState *bs,
                                          uint64_t granularity,
                                          const char *name, GError **errp)
{
    BdrvDirtyBitmap *bm = bitmap_new(bs, granularity, name, errp);

    if (!bm) {
        return NULL;
    }
    bm->hb = hbitmap_try_new(bm->size, granularity);
    if (!bm->hb) {
        error_setg(errp, "Not enough memory for bitmap '%s'",
                   bm_display_name(bm));
        g_free(bm->name);
        g_free(bm);
        return NULL;
    }
    bm->loaded = true;
    bm->recording = true;
    bm->readonly = bdrv_is_read_only(bs);
    bitmap_attach(bm);
    return bm;
}

BdrvDirtyBitmap *bdrv_create_stored_dirty_bitmap(BlockDriverState *bs,
                                                 uint64_t granularity,
                                                 const char *name,
                                                 bool recording,
                                                 bool inconsistent,
                                                 GError **errp)
{
    BdrvDirtyBitmap *bm;

    if (!name) {
        error_setg(errp, "A stored bitmap needs a name");
        return NULL;
    }
    bm = bitmap_new(bs, granularity, name, errp);
    if (!bm) {
        return NULL;
    }
    bm->stored = true;
    bm->persistent = true;
    bm->inconsistent = inconsistent;
    bm->recording = recording && !inconsistent;
    bm->readonly = bdrv_is_read_only(bs);
    bitmap_attach(bm);
    return bm;
}

static void bitmap_free(BdrvDirtyBitmap *bm)
{
    if (bm->driver_data_free) {
        bm->driver_data_free(bm->driver_data);
    }
    hbitmap_free(bm->hb);
    g_free(bm->name);
    g_free(bm);
}

void bdrv_release_dirty_bitmap(BdrvDirtyBitmap *bm)
{
    BlockDriverState *bs = bm->bs;

    g_mutex_lock(&bs->dirty_bitmap_lock);
    g_ptr_array_remove(bs->dirty_bitmaps, bm);
    if (bs->recording_bitmaps) {
        g_ptr_array_remove(bs->recording_bitmaps, bm);
    }
    g_mutex_unlock(&bs->dirty_bitmap_lock);
    bitmap_free(bm);
}

void bdrv_release_all_dirty_bitmaps(BlockDriverState *bs)
{
    while (bs->dirty_bitmaps && bs->dirty_bitmaps->len) {
        bdrv_release_dirty_bitmap(
            g_ptr_array_index(bs->dirty_bitmaps, bs->dirty_bitmaps->len - 1));
    }
    if (bs->recording_bitmaps) {
        g_ptr_array_unref(bs->recording_bitmaps);
        bs->recording_bitmaps = NULL;
    }
}

/* ---- Lookup and attributes ---- */

BdrvDirtyBitmap *bdrv_find_dirty_bitmap(BlockDriverState *bs,
                                        const char *name)
{
    if (!name) {
        return NULL;
    }
    for (guint i = 0; i < bs->dirty_bitmaps->len; i++) {
        BdrvDirtyBitmap *bm = g_ptr_array_index(bs->dirty_bitmaps, i);
        if (bm->name && !strcmp(bm->name, name)) {
            return bm;
        }
    }
    return NULL;
}

BdrvDirtyBitmap *bdrv_dirty_bitmap_first(BlockDriverState *bs)
{
    return bs->dirty_bitmaps->len ? g_ptr_array_index(bs->dirty_bitmaps, 0)
                                  : NULL;
}

BdrvDirtyBitmap *bdrv_dirty_bitmap_next(BdrvDirtyBitmap *bm)
{
    GPtrArray *all = bm->bs->dirty_bitmaps;
    guint i;

    if (!g_ptr_array_find(all, bm, &i) || i + 1 >= all->len) {
        return NULL;
    }
    return g_ptr_array_index(all, i + 1);
}

guint bdrv_dirty_bitmap_count_on_node(BlockDriverState *bs)
{
    return bs->dirty_bitmaps->len;
}

bool bdrv_has_persistent_dirty_bitmaps(BlockDriverState *bs)
{
    for (guint i = 0; i < bs->dirty_bitmaps->len; i++) {
        BdrvDirtyBitmap *bm = g_ptr_array_index(bs->dirty_bitmaps, i);
        if (bm->persistent) {
            return true;
        }
    }
    return false;
}

uint64_t bdrv_get_default_bitmap_granularity(BlockDriverState *bs)
{
    BlockDriverInfo bdi = { 0 };

    if (bdrv_get_info(bs, &bdi) >= 0 && bdi.cluster_size > 0) {
        return MIN(MAX((uint64_t)bdi.cluster_size, 4096), 65536);
    }
    return 65536;
}

BlockDriverState *bdrv_dirty_bitmap_bs(const BdrvDirtyBitmap *bm)
{
    return bm->bs;
}

const char *bdrv_dirty_bitmap_name(const BdrvDirtyBitmap *bm)
{
    return bm->name;
}

uint64_t bdrv_dirty_bitmap_granularity(const BdrvDirtyBitmap *bm)
{
    return bm->granularity;
}

uint64_t bdrv_dirty_bitmap_size(const BdrvDirtyBitmap *bm)
{
    return bm->size;
}

bool bdrv_dirty_bitmap_recording(const BdrvDirtyBitmap *bm)
{
    return bm->recording;
}

bool bdrv_dirty_bitmap_enabled(const BdrvDirtyBitmap *bm)
{
    return bm->recording;
}

bool bdrv_dirty_bitmap_persistent(const BdrvDirtyBitmap *bm)
{
    return bm->persistent;
}

bool bdrv_dirty_bitmap_inconsistent(const BdrvDirtyBitmap *bm)
{
    return bm->inconsistent;
}

bool bdrv_dirty_bitmap_busy(const BdrvDirtyBitmap *bm)
{
    return bm->busy;
}

bool bdrv_dirty_bitmap_readonly(const BdrvDirtyBitmap *bm)
{
    return bm->readonly;
}

bool bdrv_dirty_bitmap_loaded(const BdrvDirtyBitmap *bm)
{
    return bm->loaded;
}

bool bdrv_dirty_bitmap_changed(const BdrvDirtyBitmap *bm)
{
    return bm->changed;
}

bool bdrv_dirty_bitmap_check(const BdrvDirtyBitmap *bm, unsigned flags,
                             GError **errp)
{
    const char *name = bm_display_name(bm);

    if ((flags & BDRV_BITMAP_BUSY) && bm->busy) {
        error_setg(errp, "Bitmap '%s' is currently in use by another "
                   "operation and cannot be used", name);
        return false;
    }
    if ((flags & BDRV_BITMAP_RO) && bm->readonly) {
        error_setg(errp, "Bitmap '%s' is readonly and cannot be modified",
                   name);
        return false;
    }
    if ((flags & BDRV_BITMAP_INCONSISTENT) && bm->inconsistent) {
        error_setg(errp, "Bitmap '%s' is inconsistent and cannot be used",
                   name);
        error_append_hint(errp, "Try block-dirty-bitmap-remove to delete "
                          "this bitmap from disk");
        return false;
    }
    return true;
}

/* ---- State changes ---- */

static void set_recording_locked(BdrvDirtyBitmap *bm, bool on)
{
    GPtrArray *rec = bm->bs ? bm->bs->recording_bitmaps : NULL;

    if (bm->recording == on) {
        return;
    }
    bm->recording = on;
    if (!rec) {
        return;
    }
    if (on) {
        g_ptr_array_add(rec, bm);
    } else {
        g_ptr_array_remove(rec, bm);
    }
}

void bdrv_enable_dirty_bitmap(BdrvDirtyBitmap *bm)
{
    if (bm->inconsistent || !bm->bs) {
        return;
    }
    bm_lock(bm);
    set_recording_locked(bm, true);
    bm_unlock(bm);
}

void bdrv_disable_dirty_bitmap(BdrvDirtyBitmap *bm)
{
    bm_lock(bm);
    set_recording_locked(bm, false);
    bm_unlock(bm);
}

void bdrv_dirty_bitmap_set_persistence(BdrvDirtyBitmap *bm, bool persistent)
{
    bm->persistent = persistent && bm->name;
}

void bdrv_dirty_bitmap_set_busy(BdrvDirtyBitmap *bm, bool busy)
{
    bm->busy = busy;
}

void bdrv_dirty_bitmap_set_readonly(BdrvDirtyBitmap *bm, bool readonly)
{
    bm->readonly = readonly;
}

void bdrv_dirty_bitmap_set_inconsistent(BdrvDirtyBitmap *bm)
{
    bm_lock(bm);
    set_recording_locked(bm, false);
    bm->inconsistent = true;
    hbitmap_free(bm->hb);
    bm->hb = NULL;
    bm->loaded = false;
    bm_unlock(bm);
}

void bdrv_dirty_bitmap_set_stored(BdrvDirtyBitmap *bm)
{
    bm_lock(bm);
    bm->changed = false;
    bm->stored = true;
    bm_unlock(bm);
}

bool bdrv_dirty_bitmap_prepare_change(BdrvDirtyBitmap *bm, GError **errp)
{
    const BdrvBitmapDriverOps *ops = bitmap_ops(bm->bs);

    if (!bm->persistent || !ops || !ops->before_change) {
        return true;
    }
    return ops->before_change(bm->bs, bm, errp);
}

void bdrv_dirty_bitmap_set_driver_data(BdrvDirtyBitmap *bm, void *data,
                                       GDestroyNotify destroy)
{
    if (bm->driver_data_free) {
        bm->driver_data_free(bm->driver_data);
    }
    bm->driver_data = data;
    bm->driver_data_free = destroy;
}

void *bdrv_dirty_bitmap_driver_data(const BdrvDirtyBitmap *bm)
{
    return bm->driver_data;
}

/* ---- Lazy loading ---- */

static bool load_stored(BdrvDirtyBitmap *bm, GError **errp)
{
    const BdrvBitmapDriverOps *ops = bitmap_ops(bm->bs);
    g_autoptr(HBitmap) hb = NULL;
    GError *err = NULL;

    if (!ops || !ops->load) {
        error_setg(&err, "Cannot load bitmap '%s': the format has no "
                   "stored bitmaps", bm_display_name(bm));
    } else if (!(hb = hbitmap_try_new(bm->size, bm->granularity))) {
        error_setg(&err, "Not enough memory to load bitmap '%s'",
                   bm_display_name(bm));
    } else {
        ops->load(bm->bs, bm, hb, &err);
    }
    if (err) {
        bdrv_dirty_bitmap_set_inconsistent(bm);
        g_propagate_error(errp, err);
        return false;
    }
    bm_lock(bm);
    if (bm->hb) {
        /* Writes and merges that arrived before the load. */
        hbitmap_merge(hb, bm->hb);
        hbitmap_free(bm->hb);
    }
    bm->hb = g_steal_pointer(&hb);
    bm->loaded = true;
    bm_unlock(bm);
    return true;
}

bool bdrv_dirty_bitmap_load(BdrvDirtyBitmap *bm, GError **errp)
{
    bool ok = true;

    bm_lock(bm);
    ok = bm->loaded && !bm->inconsistent;
    bm_unlock(bm);
    if (ok) {
        return true;
    }
    g_mutex_lock(&load_lock);
    if (bm->inconsistent) {
        bdrv_dirty_bitmap_check(bm, BDRV_BITMAP_INCONSISTENT, errp);
        ok = false;
    } else if (!bm->loaded) {
        if (bm->stored) {
            ok = load_stored(bm, errp);
        } else {
            /* Never stored: what is in memory (if anything) is all. */
            bm_lock(bm);
            if (!bm->hb) {
                bm->hb = hbitmap_try_new(bm->size, bm->granularity);
            }
            bm->loaded = bm->hb != NULL;
            bm_unlock(bm);
            if (!bm->loaded) {
                error_setg(errp, "Not enough memory for bitmap '%s'",
                           bm_display_name(bm));
                bdrv_dirty_bitmap_set_inconsistent(bm);
                ok = false;
            }
        }
    }
    g_mutex_unlock(&load_lock);
    return ok;
}

/*
 * Load for a query; on failure the bitmap is inconsistent and reads as
 * empty (callers that care call bdrv_dirty_bitmap_load() first).
 */
static bool ensure_loaded(BdrvDirtyBitmap *bm)
{
    return bdrv_dirty_bitmap_load(bm, NULL);
}

/* A delta to OR into while the stored contents are not loaded. */
static bool ensure_hb_locked(BdrvDirtyBitmap *bm)
{
    if (!bm->hb && !bm->inconsistent) {
        bm->hb = hbitmap_try_new(bm->size, bm->granularity);
    }
    return bm->hb != NULL;
}

/* ---- The write hook ---- */

void bdrv_dirty_bitmaps_mark(BlockDriverState *bs, int64_t offset,
                             int64_t bytes)
{
    GPtrArray *rec;

    if (offset < 0 || bytes <= 0) {
        return;
    }
    g_mutex_lock(&bs->dirty_bitmap_lock);
    rec = bs->recording_bitmaps;
    for (guint i = 0; rec && i < rec->len; i++) {
        BdrvDirtyBitmap *bm = g_ptr_array_index(rec, i);
        if (!ensure_hb_locked(bm)) {
            /* No memory for the delta: the bitmap can no longer be exact. */
            g_ptr_array_remove_index(rec, i--);
            bm->recording = false;
            bm->inconsistent = true;
            bm->loaded = false;
            continue;
        }
        hbitmap_set(bm->hb, (uint64_t)offset, (uint64_t)bytes);
        bm->changed = true;
    }
    g_mutex_unlock(&bs->dirty_bitmap_lock);
}

/* ---- Contents ---- */

void bdrv_set_dirty_bitmap(BdrvDirtyBitmap *bm, int64_t offset,
                           int64_t bytes)
{
    if (offset < 0 || bytes <= 0) {
        return;
    }
    bm_lock(bm);
    if (ensure_hb_locked(bm)) {
        hbitmap_set(bm->hb, (uint64_t)offset, (uint64_t)bytes);
        bm->changed = true;
    }
    bm_unlock(bm);
}

void bdrv_reset_dirty_bitmap(BdrvDirtyBitmap *bm, int64_t offset,
                             int64_t bytes)
{
    if (offset < 0 || bytes <= 0 || !ensure_loaded(bm)) {
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
        if (!ensure_loaded(bm)) {
            return;
        }
    }
    fresh = hbitmap_try_new(bm->size, bm->granularity);
    bm_lock(bm);
    if (!fresh) {
        /* Clear in place (no new memory); the old contents are lost. */
        if (ensure_hb_locked(bm)) {
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
    if (!ensure_hb_locked(dest)) {
        unlock_pair(dest, src);
        error_setg(errp, "Not enough memory to merge into bitmap '%s'",
                   bm_display_name(dest));
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

    if (offset < 0 || !ensure_loaded(bm)) {
        return false;
    }
    bm_lock(bm);
    ret = hbitmap_get(bm->hb, (uint64_t)offset);
    bm_unlock(bm);
    return ret;
}

uint64_t bdrv_get_dirty_count(BdrvDirtyBitmap *bm)
{
    uint64_t ret;

    if (!ensure_loaded(bm)) {
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

    if (offset < 0 || bytes <= 0 || !ensure_loaded(bm)) {
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

    if (offset < 0 || bytes <= 0 || !ensure_loaded(bm)) {
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
        !ensure_loaded(bm)) {
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
    if (!ensure_loaded(bm)) {
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

    if (offset < 0 || bytes < 0 || !ensure_loaded(bm)) {
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

    if (offset < 0 || bytes < 0 || !ensure_loaded(bm)) {
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
        bitmap_free(copy);
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
    if (!ensure_loaded(bm)) {
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
        return ensure_loaded(bm);
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

/* ---- Node-level hooks ---- */

bool bdrv_dirty_bitmaps_prepare_truncate(BlockDriverState *bs, GError **errp)
{
    for (guint i = 0; i < bs->dirty_bitmaps->len; i++) {
        BdrvDirtyBitmap *bm = g_ptr_array_index(bs->dirty_bitmaps, i);

        if (!bm->persistent) {
            /* In-memory bitmaps just follow the new size. */
            if (!bm->inconsistent && !bdrv_dirty_bitmap_load(bm, errp)) {
                return false;
            }
            continue;
        }
        if (!bdrv_dirty_bitmap_check(bm, BDRV_BITMAP_DEFAULT, errp) ||
            !bdrv_dirty_bitmap_load(bm, errp) ||
            !bdrv_dirty_bitmap_prepare_change(bm, errp)) {
            return false;
        }
    }
    return true;
}

void bdrv_dirty_bitmaps_truncate(BlockDriverState *bs, int64_t new_size)
{
    if (new_size < 0) {
        return;
    }
    g_mutex_lock(&bs->dirty_bitmap_lock);
    for (guint i = 0; i < bs->dirty_bitmaps->len; i++) {
        BdrvDirtyBitmap *bm = g_ptr_array_index(bs->dirty_bitmaps, i);

        if (bm->size == (uint64_t)new_size) {
            continue;
        }
        if (bm->hb) {
            hbitmap_truncate(bm->hb, (uint64_t)new_size);
        }
        bm->size = (uint64_t)new_size;
        bm->changed = true;
    }
    g_mutex_unlock(&bs->dirty_bitmap_lock);
}

bool bdrv_store_persistent_dirty_bitmaps(BlockDriverState *bs, GError **errp)
{
    const BdrvBitmapDriverOps *ops = bitmap_ops(bs);

    if (!ops || !ops->store || bdrv_is_read_only(bs)) {
        return true;
    }
    return ops->store(bs, errp);
}
