/*
 * Named dirty bitmaps on a node: the objects, their flags, lazy loading of
 * stored contents, the write hook and the node-level hooks.  Contents and
 * queries are in dirty-bitmap-contents.c, the user-level checks in
 * dirty-bitmap-ops.c, the qcow2 storage in qcow2/qcow2-bitmap*.c.
 *
 * Contents model.  bm->hb holds bits; bm->loaded says whether they include
 * the contents stored in the image.  A stored bitmap starts with hb == NULL
 * and loaded == false; writes and merges into it go to a delta hb (only
 * ever ORed into), and loading ORs the delta into what the driver reads.
 * Everything that needs the real contents calls dbm_ensure_loaded().
 *
 * Locking: bs->dirty_bitmap_lock protects bs->dirty_bitmaps,
 * bs->recording_bitmaps, and every bm->hb (pointer and bits), bm->loaded
 * and bm->changed.  Loads are serialized by load_lock and do their I/O
 * without the node lock.  Detached copies are frozen and need no lock.
 */
#include "block/dirty-bitmap-int.h"
#include "block/checkpoint-ops.h"
#include "qapi/error.h"

#include <errno.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <string.h>

static GMutex load_lock;

static const BdrvBitmapDriverOps *bitmap_ops(BlockDriverState *bs)
{
    return bs && bs->drv ? bs->drv->bitmap_ops : NULL;
}

const char *dbm_display_name(const BdrvDirtyBitmap *bm)
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
                   dbm_display_name(bm));
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

void dbm_free(BdrvDirtyBitmap *bm)
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
    dbm_free(bm);
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
    const char *name = dbm_display_name(bm);

    /* Checkpoint bitmaps change only through the checkpoint commands. */
    if ((flags & BDRV_BITMAP_BUSY) && bm->bs && bm->name &&
        !bdrv_checkpoint_check_bitmap(bm->bs, bm->name, errp)) {
        return false;
    }
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

void bdrv_dirty_bitmap_skip_store(BdrvDirtyBitmap *bm, bool skip)
{
    bm->skip_store = skip;
}

bool bdrv_dirty_bitmap_get_skip_store(const BdrvDirtyBitmap *bm)
{
    return bm->skip_store;
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
                   "stored bitmaps", dbm_display_name(bm));
    } else if (!(hb = hbitmap_try_new(bm->size, bm->granularity))) {
        error_setg(&err, "Not enough memory to load bitmap '%s'",
                   dbm_display_name(bm));
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
                           dbm_display_name(bm));
                bdrv_dirty_bitmap_set_inconsistent(bm);
                ok = false;
            }
        }
    }
    g_mutex_unlock(&load_lock);
    return ok;
}

void bdrv_release_free_memory(void)
{
#ifdef __GLIBC__
    /*
     * A bitmap of a large disk is megabytes; once glibc has handed such a
     * block back, it serves the next ones from the heap and keeps what
     * they free.  Without this, 64 checkpoints on 1 TiB left ~8 MiB of
     * freed bitmaps resident, and an export of "changed since" 7 MiB more
     * (bench/checkpoints).
     */
    malloc_trim(0);
#endif
}

bool bdrv_dirty_bitmap_unload(BdrvDirtyBitmap *bm)
{
    bool done = false;

    if (!bm->bs) {
        return false;
    }
    g_mutex_lock(&load_lock);
    bm_lock(bm);
    if (bm->stored && bm->loaded && !bm->changed && !bm->recording &&
        !bm->busy && !bm->inconsistent) {
        hbitmap_free(bm->hb);
        bm->hb = NULL;
        bm->loaded = false;
        done = true;
    }
    bm_unlock(bm);
    g_mutex_unlock(&load_lock);
    return done;
}

/*
 * Load for a query; on failure the bitmap is inconsistent and reads as
 * empty (callers that care call bdrv_dirty_bitmap_load() first).
 */
bool dbm_ensure_loaded(BdrvDirtyBitmap *bm)
{
    return bdrv_dirty_bitmap_load(bm, NULL);
}

/* A delta to OR into while the stored contents are not loaded. */
bool dbm_ensure_hb_locked(BdrvDirtyBitmap *bm)
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
        if (!dbm_ensure_hb_locked(bm)) {
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

bool bdrv_supports_persistent_dirty_bitmap(BlockDriverState *bs)
{
    const BdrvBitmapDriverOps *ops = bitmap_ops(bs);

    return ops && ops->can_store_new;
}

bool bdrv_format_supports_persistent_dirty_bitmap(const char *fmt)
{
    BlockDriver *drv = fmt ? bdrv_find_format(fmt) : NULL;

    return drv && drv->bitmap_ops && drv->bitmap_ops->can_store_new;
}

bool bdrv_dirty_bitmaps_check_stored(BlockDriverState *bs, GError **errp)
{
    const BdrvBitmapDriverOps *ops = bitmap_ops(bs);

    return !ops || !ops->check_stored || ops->check_stored(bs, errp);
}
