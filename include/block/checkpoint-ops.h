/*
 * Checkpoints on block nodes: the running-system side of the checkpoint
 * model (include/block/checkpoint.h).  block/checkpoint-ops.c carries out
 * the model's plans with the dirty bitmap layer, in a drained section and
 * followed by one metadata update of the image; it answers "what changed
 * since" with frozen bitmap copies (for NBD exports and qemu-img), builds
 * the query replies and guards checkpoint bitmaps against direct changes.
 * Semantics: docs/interop/qcow2-checkpoints.rst, user guide:
 * docs/checkpoints.md.
 *
 * All functions run on the main thread.
 *
 * Memory.  Only the newest checkpoint's bitmap records writes, so only it
 * has to stay in memory.  The bitmaps of older checkpoints are read from
 * the image when an operation needs them and dropped again afterwards
 * (bdrv_dirty_bitmap_unload()).
 */
#ifndef BLOCK_CHECKPOINT_OPS_H
#define BLOCK_CHECKPOINT_OPS_H

#include <json-glib/json-glib.h>

#include "block/block.h"
#include "block/checkpoint.h"
#include "block/dirty-bitmap.h"

/*
 * What a format driver that stores checkpoints provides (BlockDriver's
 * checkpoint_ops).  Main thread only.
 */
typedef struct BdrvCheckpointDriverOps {
    /*
     * A copy of the node's chain as stored (empty if there is none), or
     * NULL with the reason when the stored table cannot be used.
     */
    CheckpointChain *(*get_chain)(BlockDriverState *bs, GError **errp);
    /* Fail, naming the limit, if @chain would not fit in the image. */
    bool (*check_room)(BlockDriverState *bs, const CheckpointChain *chain,
                       GError **errp);
    /*
     * Make @chain the node's chain and write it to the image together with
     * every changed persistent bitmap, in one metadata update.  Requests
     * on @bs are drained.  On failure the node's chain is the old one
     * again, in memory and in what the driver writes next; the image
     * holds the old state, or (if even writing the old header back
     * failed) either state, never a mix.  The caller undoes its bitmap
     * changes.
     */
    bool (*commit)(BlockDriverState *bs, const CheckpointChain *chain,
                   GError **errp);
} BdrvCheckpointDriverOps;

/* Does @bs (its format driver) store checkpoints? */
bool bdrv_supports_checkpoints(BlockDriverState *bs);

/*
 * The node's chain, checked against its bitmaps as they are now (a new
 * copy; damage found now is included but not yet stored).  Fails when
 * the node has no checkpoint support or its table is unusable.
 */
CheckpointChain *bdrv_checkpoint_chain(BlockDriverState *bs, GError **errp);

/*
 * Check @chain against the bitmaps @bs has now (ckpt_chain_validate_
 * bitmaps()); returns how many checkpoints are unusable.  For drivers
 * (at open and in check) and the functions below.
 */
guint bdrv_checkpoint_validate(BlockDriverState *bs, CheckpointChain *chain);

/*
 * Create checkpoint @name as the newest, with bitmap @bitmap (NULL: named
 * like the checkpoint) of @granularity bytes (0: the default bitmap
 * granularity of @bs).  Stored in the image before returning.
 */
bool bdrv_checkpoint_create(BlockDriverState *bs, const char *name,
                            const char *bitmap, uint64_t granularity,
                            GError **errp);

/*
 * Remove checkpoint @name: its writes move to its parent's bitmap, and
 * its child is re-linked.  Stored in the image before returning.
 */
bool bdrv_checkpoint_remove(BlockDriverState *bs, const char *name,
                            GError **errp);

/*
 * Would removing @name work now?  Checks everything that does not change
 * anything (for a transaction's prepare step), including that the
 * bitmaps to merge can be read.
 */
bool bdrv_checkpoint_check_remove(BlockDriverState *bs, const char *name,
                                  GError **errp);

/*
 * What changed since checkpoint @from (@to NULL: until now), or between
 * @from and the later checkpoint @to: a frozen, detached bitmap (free
 * with bdrv_dirty_bitmap_free_copy()) of the finest granularity in the
 * range.  Fails if a checkpoint does not exist or the range is damaged.
 */
BdrvDirtyBitmap *bdrv_checkpoint_changes(BlockDriverState *bs,
                                         const char *from, const char *to,
                                         GError **errp);

/*
 * The checkpoints of @bs as a JSON array of CheckpointInfo
 * (qapi/schema/checkpoint.json), oldest first.  With @changed_bytes, each
 * usable one gets "changed-bytes" (reads every bitmap once).
 */
JsonArray *bdrv_checkpoint_query(BlockDriverState *bs, bool changed_bytes,
                                 GError **errp);

/*
 * For the bitmap layer: fail with a message pointing at the checkpoint
 * commands if bitmap @bitmap of @bs belongs to a checkpoint, because
 * changing, removing or exporting it directly would break the chain.
 */
bool bdrv_checkpoint_check_bitmap(BlockDriverState *bs, const char *bitmap,
                                  GError **errp);

/*
 * qemu-img convert --bitmaps: give @dst (whose persistent bitmaps were
 * just copied from @src) the checkpoint chain of @src, checked against
 * what @dst really has.  Nothing to do (true) if @src has no checkpoints.
 */
bool bdrv_checkpoint_copy_chain(BlockDriverState *src, BlockDriverState *dst,
                                GError **errp);

/* "missing", "inconsistent", ...: the CheckpointDamage enum of the schema */
const char *bdrv_checkpoint_damage_name(CkptDamage damage);

#endif
