/*
 * Private to block/dirty-bitmap*.c: the bitmap object and the helpers the
 * object file (dirty-bitmap.c) shares with the contents file
 * (dirty-bitmap-contents.c).  Locking rules: see dirty-bitmap.c.
 */
#ifndef BLOCK_DIRTY_BITMAP_INT_H
#define BLOCK_DIRTY_BITMAP_INT_H

#include "block/block_int.h"
#include "block/dirty-bitmap.h"

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
    bool skip_store;         /* migrating: leave the stored copy alone */
    bool changed;            /* contents differ from the stored copy */
    void *driver_data;
    GDestroyNotify driver_data_free;
};

static inline void bm_lock(const BdrvDirtyBitmap *bm)
{
    if (bm->bs) {
        g_mutex_lock(&bm->bs->dirty_bitmap_lock);
    }
}

static inline void bm_unlock(const BdrvDirtyBitmap *bm)
{
    if (bm->bs) {
        g_mutex_unlock(&bm->bs->dirty_bitmap_lock);
    }
}

/* "(anonymous)" for a bitmap without a name. */
const char *dbm_display_name(const BdrvDirtyBitmap *bm);
/* Load for a query; false (and inconsistent) if that failed. */
bool dbm_ensure_loaded(BdrvDirtyBitmap *bm);
/* Make sure bm->hb exists (a delta if not loaded); node lock held. */
bool dbm_ensure_hb_locked(BdrvDirtyBitmap *bm);
/* Free a detached or released bitmap. */
void dbm_free(BdrvDirtyBitmap *bm);

#endif
