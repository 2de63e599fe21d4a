/*
 * Named dirty bitmaps on block nodes: the objects the QMP commands, the NBD
 * server (qemu:dirty-bitmap:NAME), qemu-img bitmap and the checkpoint code
 * work with.  block/dirty-bitmap.c implements the objects and the write
 * hook; block/dirty-bitmap-ops.c the user-level operations with QEMU's
 * checks and error messages.  Semantics: docs/interop/bitmaps.md.
 *
 * A bitmap has one bit per `granularity` bytes of its node (a power of two
 * from 512 B to 2 GiB).  While it is *recording* (QEMU: enabled), every
 * write, write-zeroes and discard that reaches the node dirties the
 * granules it touches, rounded out.  Flags:
 *   persistent   - stored in the image (qcow2) on close and on request;
 *   inconsistent - its contents cannot be trusted (left in-use by a crash,
 *                  or unreadable); it can only be removed;
 *   busy         - locked by an operation (an NBD export, a backup job);
 *                  it cannot be changed or removed;
 *   readonly     - it lives in an image opened read-only.
 *
 * Lazy contents.  A bitmap that a format driver found in the image starts
 * without its bits in memory: they are read from the image by the driver's
 * load callback the first time a query needs them (count, get, iteration,
 * serialization, as a merge source).  Writes and merges into a bitmap
 * that is not loaded yet are kept in a delta and ORed into the stored
 * contents when they are loaded.  So opening an image with many bitmaps
 * reads only the bitmap directory, and writes do not read bitmap data.
 * A load failure makes the bitmap inconsistent (the error is returned by
 * bdrv_dirty_bitmap_load()).
 *
 * Threading.  Creation, removal, flag changes and merges happen on the
 * main thread.  Marking runs on any I/O thread.  The bits, the node's
 * bitmap list and its list of recording bitmaps are protected by the
 * node's dirty_bitmap_lock; every query below takes it, so NBD worker
 * threads may read a bitmap that is being written.  Only recording bitmaps
 * are visited on a write: the cost of a write does not depend on how many
 * disabled bitmaps a node has.
 */
#ifndef BLOCK_DIRTY_BITMAP_H
#define BLOCK_DIRTY_BITMAP_H

#include "block/block.h"
#include "util/hbitmap.h"

typedef struct BdrvDirtyBitmap BdrvDirtyBitmap;

/* Limits (QEMU's and the qcow2 bitmaps extension's). */
#define BDRV_BITMAP_MAX_NAME_SIZE 1023
#define BDRV_BITMAP_MIN_GRANULARITY HBITMAP_MIN_GRANULARITY
#define BDRV_BITMAP_MAX_GRANULARITY HBITMAP_MAX_GRANULARITY
#define BDRV_BITMAP_MAX_PER_NODE 65535

/* What bdrv_dirty_bitmap_check() refuses (QEMU's BDRV_BITMAP_* values). */
#define BDRV_BITMAP_BUSY 0x1
#define BDRV_BITMAP_RO 0x2
#define BDRV_BITMAP_INCONSISTENT 0x4
#define BDRV_BITMAP_DEFAULT \
    (BDRV_BITMAP_BUSY | BDRV_BITMAP_RO | BDRV_BITMAP_INCONSISTENT)
#define BDRV_BITMAP_ALLOW_RO (BDRV_BITMAP_BUSY | BDRV_BITMAP_INCONSISTENT)

/*
 * Hooks a format driver with persistent bitmaps provides (BlockDriver's
 * bitmap_ops).  All run on the main thread; every one is optional.
 */
typedef struct BdrvBitmapDriverOps {
    /* May a new persistent bitmap @name of @granularity be stored? */
    bool (*can_store_new)(BlockDriverState *bs, const char *name,
                          uint64_t granularity, GError **errp);
    /* Delete the stored copy of @name from the image now. */
    bool (*remove_persistent)(BlockDriverState *bs, const char *name,
                              GError **errp);
    /*
     * Read the stored contents of @bm into @hb (all clean, @bm's size and
     * granularity).  Called without the node's bitmap lock.
     */
    bool (*load)(BlockDriverState *bs, BdrvDirtyBitmap *bm, HBitmap *hb,
                 GError **errp);
    /*
     * The contents or flags of the persistent bitmap @bm are about to
     * change: make the stored copy untrusted (in-use) if it has to be.
     */
    bool (*before_change)(BlockDriverState *bs, BdrvDirtyBitmap *bm,
                          GError **errp);
    /* Store every persistent bitmap that changed (no writes in flight). */
    bool (*store)(BlockDriverState *bs, GError **errp);
    /*
     * Dirty bytes of the stored contents of @bm, without building the
     * bitmap in memory (for listings).  Called without the node's lock.
     */
    bool (*stored_count)(BlockDriverState *bs, BdrvDirtyBitmap *bm,
                         uint64_t *bytes, GError **errp);
    /*
     * Are the stored bitmaps usable?  False (with the reason) when the
     * image's bitmap metadata is broken; the data stays readable.
     */
    bool (*check_stored)(BlockDriverState *bs, GError **errp);
} BdrvBitmapDriverOps;

/* ---- Objects (block/dirty-bitmap.c) ---- */

/*
 * Create a recording, non-persistent bitmap on @bs covering its current
 * length.  @name may be NULL for an anonymous (internal) bitmap, which
 * bdrv_find_dirty_bitmap() never returns.  Fails on a duplicate or too
 * long name, a bad granularity, too many bitmaps, or no memory.
 */
BdrvDirtyBitmap *bdrv_create_dirty_bitmap(BlockDriverState *bs,
                                          uint64_t granularity,
                                          const char *name, GError **errp);
/*
 * Create a bitmap whose contents are stored in the image: no bits in
 * memory until the first query, which calls bitmap_ops->load.  For format
 * drivers, at open time.  @inconsistent bitmaps are never loaded.
 */
BdrvDirtyBitmap *bdrv_create_stored_dirty_bitmap(BlockDriverState *bs,
                                                 uint64_t granularity,
                                                 const char *name,
                                                 bool recording,
                                                 bool inconsistent,
                                                 GError **errp);
/* Detach @bm from its node and free it (callers check busy first). */
void bdrv_release_dirty_bitmap(BdrvDirtyBitmap *bm);
/* Release every bitmap of @bs (node teardown; no driver callbacks). */
void bdrv_release_all_dirty_bitmaps(BlockDriverState *bs);

BdrvDirtyBitmap *bdrv_find_dirty_bitmap(BlockDriverState *bs,
                                        const char *name);
/* Iteration in creation order (stored bitmaps: directory order). */
BdrvDirtyBitmap *bdrv_dirty_bitmap_first(BlockDriverState *bs);
BdrvDirtyBitmap *bdrv_dirty_bitmap_next(BdrvDirtyBitmap *bm);
guint bdrv_dirty_bitmap_count_on_node(BlockDriverState *bs);
bool bdrv_has_persistent_dirty_bitmaps(BlockDriverState *bs);

/* Default granularity for a new bitmap: the cluster size, clamped to
 * [4 KiB, 64 KiB]; 64 KiB if the format has no clusters (as QEMU). */
uint64_t bdrv_get_default_bitmap_granularity(BlockDriverState *bs);

/* Attributes. */
BlockDriverState *bdrv_dirty_bitmap_bs(const BdrvDirtyBitmap *bm);
const char *bdrv_dirty_bitmap_name(const BdrvDirtyBitmap *bm);
uint64_t bdrv_dirty_bitmap_granularity(const BdrvDirtyBitmap *bm);
/* Bytes covered (the node's length when created or last truncated). */
uint64_t bdrv_dirty_bitmap_size(const BdrvDirtyBitmap *bm);
bool bdrv_dirty_bitmap_recording(const BdrvDirtyBitmap *bm);
bool bdrv_dirty_bitmap_enabled(const BdrvDirtyBitmap *bm);  /* = recording */
bool bdrv_dirty_bitmap_persistent(const BdrvDirtyBitmap *bm);
bool bdrv_dirty_bitmap_inconsistent(const BdrvDirtyBitmap *bm);
bool bdrv_dirty_bitmap_busy(const BdrvDirtyBitmap *bm);
bool bdrv_dirty_bitmap_readonly(const BdrvDirtyBitmap *bm);
/* Whether the bits are in memory (false for a stored bitmap not yet read). */
bool bdrv_dirty_bitmap_loaded(const BdrvDirtyBitmap *bm);
/* Changed since it was read from (or last stored to) the image. */
bool bdrv_dirty_bitmap_changed(const BdrvDirtyBitmap *bm);

/*
 * Refuse (false + error naming the bitmap, QEMU's wording) if @bm has a
 * state in @flags: BDRV_BITMAP_BUSY, _RO, _INCONSISTENT.  With
 * BDRV_BITMAP_BUSY (every change, removal or export), a bitmap that
 * belongs to a checkpoint is refused too (include/block/checkpoint-ops.h).
 */
bool bdrv_dirty_bitmap_check(const BdrvDirtyBitmap *bm, unsigned flags,
                             GError **errp);

/* State changes (no checks: see block/dirty-bitmap-ops.c for those). */
void bdrv_enable_dirty_bitmap(BdrvDirtyBitmap *bm);
void bdrv_disable_dirty_bitmap(BdrvDirtyBitmap *bm);
void bdrv_dirty_bitmap_set_persistence(BdrvDirtyBitmap *bm, bool persistent);
void bdrv_dirty_bitmap_set_busy(BdrvDirtyBitmap *bm, bool busy);
/*
 * A bitmap that migrates to another process (migration/) is not stored
 * by this one: a store keeps its stored copy (and its in-use flag) as it
 * is, and the destination becomes the owner that stores it.
 */
void bdrv_dirty_bitmap_skip_store(BdrvDirtyBitmap *bm, bool skip);
bool bdrv_dirty_bitmap_get_skip_store(const BdrvDirtyBitmap *bm);
void bdrv_dirty_bitmap_set_readonly(BdrvDirtyBitmap *bm, bool readonly);
/* Drops the contents and stops recording; there is no way back. */
void bdrv_dirty_bitmap_set_inconsistent(BdrvDirtyBitmap *bm);
/*
 * Callers that change a persistent bitmap's contents or flags through the
 * low-level functions call this first: the driver may have to flag the
 * stored copy in-use.  The block_dirty_bitmap_*() operations do it.
 */
bool bdrv_dirty_bitmap_prepare_change(BdrvDirtyBitmap *bm, GError **errp);
/* For drivers: the stored copy now equals memory (after a store). */
void bdrv_dirty_bitmap_set_stored(BdrvDirtyBitmap *bm);

/*
 * Driver data attached to a stored bitmap (e.g. its directory entry);
 * @destroy runs when the bitmap is freed.
 */
void bdrv_dirty_bitmap_set_driver_data(BdrvDirtyBitmap *bm, void *data,
                                       GDestroyNotify destroy);
void *bdrv_dirty_bitmap_driver_data(const BdrvDirtyBitmap *bm);

/*
 * Make sure the bits are in memory, reading them from the image if
 * needed.  On failure the bitmap becomes inconsistent.  Queries call this
 * themselves (and then treat a failure as an empty bitmap); call it first
 * to see the error.  Returns false for an inconsistent bitmap.
 */
bool bdrv_dirty_bitmap_load(BdrvDirtyBitmap *bm, GError **errp);
/*
 * The opposite, to save memory: drop the bits of a stored bitmap that is
 * not recording, not busy and unchanged since it was read or stored (so
 * the image holds exactly them); the next query reads them again.
 * Returns whether they were dropped.  Main thread; used by checkpoints
 * for the frozen bitmaps of older checkpoints.
 */
bool bdrv_dirty_bitmap_unload(BdrvDirtyBitmap *bm);
/*
 * Give memory that was freed (bitmaps dropped or merged) back to the
 * system; for the end of control operations that handled many bitmaps.
 */
void bdrv_release_free_memory(void);

/* ---- Contents (all take the node's lock; all load lazily) ---- */

/* Mark the granules overlapping [offset, offset + bytes) dirty / clean. */
void bdrv_set_dirty_bitmap(BdrvDirtyBitmap *bm, int64_t offset,
                           int64_t bytes);
void bdrv_reset_dirty_bitmap(BdrvDirtyBitmap *bm, int64_t offset,
                             int64_t bytes);
/*
 * Clear every bit.  With @backup, the old contents are handed over (for
 * transactions: bdrv_restore_dirty_bitmap() puts them back); else freed.
 */
void bdrv_clear_dirty_bitmap(BdrvDirtyBitmap *bm, HBitmap **backup);
void bdrv_restore_dirty_bitmap(BdrvDirtyBitmap *bm, HBitmap *backup);
/*
 * dest |= src.  The sizes must match (else "Bitmaps are incompatible and
 * can't be merged"); the granularities may differ (a finer source rounds
 * out to the destination's granules).  @src may live on another node.
 * With @backup, the old contents of @dest are returned for a later
 * restore.  No state checks here.
 */
bool bdrv_merge_dirty_bitmap(BdrvDirtyBitmap *dest, BdrvDirtyBitmap *src,
                             HBitmap **backup, GError **errp);

bool bdrv_dirty_bitmap_get(BdrvDirtyBitmap *bm, int64_t offset);
/* Dirty bytes (the last granule counts only up to the size). */
uint64_t bdrv_get_dirty_count(BdrvDirtyBitmap *bm);
/*
 * The same with errors: a stored bitmap nothing touched yet is counted
 * from the image without loading it.  False (bitmap now inconsistent) if
 * its stored contents cannot be read.
 */
bool bdrv_dirty_bitmap_count_checked(BdrvDirtyBitmap *bm, uint64_t *count,
                                     GError **errp);
/* First dirty / clean byte in [offset, offset + bytes), or -1. */
int64_t bdrv_dirty_bitmap_next_dirty(BdrvDirtyBitmap *bm, int64_t offset,
                                     int64_t bytes);
int64_t bdrv_dirty_bitmap_next_zero(BdrvDirtyBitmap *bm, int64_t offset,
                                    int64_t bytes);
/*
 * First dirty extent overlapping [offset, end), cut at @end and at
 * @max_bytes: see hbitmap_next_dirty_area().
 */
bool bdrv_dirty_bitmap_next_dirty_area(BdrvDirtyBitmap *bm, int64_t offset,
                                       int64_t end, int64_t max_bytes,
                                       int64_t *dirty_start,
                                       int64_t *dirty_count);
/*
 * Call @fn for each dirty area overlapping [offset, end), in order and cut
 * at @end, with the bitmap locked; @fn returns false to stop early and
 * must not block or touch the bitmap.  False if the contents could not be
 * loaded (then the bitmap is inconsistent and @fn was not called).
 */
typedef HBitmapAreaFn BdrvDirtyAreaFn;
bool bdrv_dirty_bitmap_walk_dirty_areas(BdrvDirtyBitmap *bm, int64_t offset,
                                        int64_t end, BdrvDirtyAreaFn fn,
                                        void *opaque);
/*
 * Status of the extent starting at @offset: returns whether it is dirty
 * and stores in *pnum how many bytes (at most @bytes, clamped to the
 * size) share that status.  For NBD block status and `map --bitmap`.
 */
bool bdrv_dirty_bitmap_status(BdrvDirtyBitmap *bm, int64_t offset,
                              int64_t bytes, int64_t *pnum);
bool bdrv_dirty_bitmap_range_all_clean(BdrvDirtyBitmap *bm, int64_t offset,
                                       int64_t bytes);
bool bdrv_dirty_bitmap_range_all_dirty(BdrvDirtyBitmap *bm, int64_t offset,
                                       int64_t bytes);

/* SHA-256 of the serialized contents (64 hex digits), for tests. */
char *bdrv_dirty_bitmap_sha256(BdrvDirtyBitmap *bm, GError **errp);

/*
 * A frozen, detached copy (no node, not recording, anonymous): what an NBD
 * export of a recording bitmap can serve while the original keeps
 * changing.  Free it with bdrv_dirty_bitmap_free_copy().
 */
BdrvDirtyBitmap *bdrv_dirty_bitmap_copy(BdrvDirtyBitmap *bm, GError **errp);
void bdrv_dirty_bitmap_free_copy(BdrvDirtyBitmap *copy);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(BdrvDirtyBitmap, bdrv_dirty_bitmap_free_copy)

/*
 * Serialization in the qcow2 bitmap data layout (see util/hbitmap.h):
 * ranges start at multiples of bdrv_dirty_bitmap_serialization_align().
 */
uint64_t bdrv_dirty_bitmap_serialization_align(const BdrvDirtyBitmap *bm);
uint64_t bdrv_dirty_bitmap_serialization_size(const BdrvDirtyBitmap *bm,
                                              uint64_t offset,
                                              uint64_t bytes);
void bdrv_dirty_bitmap_serialize_part(BdrvDirtyBitmap *bm, uint8_t *buf,
                                      uint64_t offset, uint64_t bytes);
void bdrv_dirty_bitmap_deserialize_part(BdrvDirtyBitmap *bm,
                                        const uint8_t *buf, uint64_t offset,
                                        uint64_t bytes);
void bdrv_dirty_bitmap_deserialize_zeroes(BdrvDirtyBitmap *bm,
                                          uint64_t offset, uint64_t bytes);
void bdrv_dirty_bitmap_deserialize_ones(BdrvDirtyBitmap *bm, uint64_t offset,
                                        uint64_t bytes);

/* ---- Node-level hooks (block core and drivers) ---- */

/* After a successful write/zeroes/discard: mark every recording bitmap. */
/* (bdrv_dirty_bitmaps_mark() is declared in block/block_int.h) */

/*
 * Before resizing @bs: every bitmap must be usable (not busy, read-only or
 * inconsistent, QEMU's rule) and is loaded.  Then, after a successful
 * resize, bdrv_dirty_bitmaps_truncate() drops or adds clean bits.
 */
bool bdrv_dirty_bitmaps_prepare_truncate(BlockDriverState *bs, GError **errp);
void bdrv_dirty_bitmaps_truncate(BlockDriverState *bs, int64_t new_size);

/*
 * Store the changed persistent bitmaps of @bs in the image now (a
 * front-end's flush-to-disk request; also done on close).  Requests must
 * be drained.  True if there is nothing to store.
 */
bool bdrv_store_persistent_dirty_bitmaps(BlockDriverState *bs, GError **errp);

/* Can @bs (resp. images of format @fmt) store persistent bitmaps? */
bool bdrv_supports_persistent_dirty_bitmap(BlockDriverState *bs);
bool bdrv_format_supports_persistent_dirty_bitmap(const char *fmt);
/*
 * False, with the reason, if @bs has stored bitmap metadata it cannot use
 * (a broken bitmap directory); true otherwise.
 */
bool bdrv_dirty_bitmaps_check_stored(BlockDriverState *bs, GError **errp);

/* ---- User-level operations (block/dirty-bitmap-ops.c) ----
 * The checks and messages of QEMU's block-dirty-bitmap-* commands; QMP,
 * qemu-img bitmap and the transaction actions call these.
 */

/* @granularity 0 means the default. */
BdrvDirtyBitmap *block_dirty_bitmap_add(BlockDriverState *bs,
                                        const char *name,
                                        uint64_t granularity,
                                        bool persistent, bool disabled,
                                        GError **errp);
/* Find @name or fail with "Dirty bitmap 'NAME' not found". */
BdrvDirtyBitmap *block_dirty_bitmap_lookup(BlockDriverState *bs,
                                           const char *name, GError **errp);
/* Removes the stored copy too; an inconsistent bitmap can be removed. */
bool block_dirty_bitmap_remove(BlockDriverState *bs, const char *name,
                               GError **errp);
bool block_dirty_bitmap_clear(BlockDriverState *bs, const char *name,
                              HBitmap **backup, GError **errp);
bool block_dirty_bitmap_enable(BlockDriverState *bs, const char *name,
                               GError **errp);
bool block_dirty_bitmap_disable(BlockDriverState *bs, const char *name,
                                GError **errp);

/* One source of a merge: a bitmap @name on @bs. */
typedef struct BlockDirtyBitmapSource {
    BlockDriverState *bs;
    const char *name;
} BlockDirtyBitmapSource;

/* target |= every source, in order; all-or-nothing. */
bool block_dirty_bitmap_merge(BlockDriverState *bs, const char *target,
                              const BlockDirtyBitmapSource *sources,
                              size_t nb_sources, HBitmap **backup,
                              GError **errp);

#endif /* BLOCK_DIRTY_BITMAP_H */
