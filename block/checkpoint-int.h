/*
 * Private to block/checkpoint-*.c: helpers the node operations
 * (checkpoint-ops.c) share with the change sets and queries
 * (checkpoint-query.c).
 */
#ifndef BLOCK_CHECKPOINT_INT_H
#define BLOCK_CHECKPOINT_INT_H

#include "block/block_int.h"
#include "block/checkpoint-ops.h"

static inline const BdrvCheckpointDriverOps *ckpt_ops(BlockDriverState *bs)
{
    return bs && bs->drv ? bs->drv->checkpoint_ops : NULL;
}

/*
 * The bitmap of checkpoint @c, read into memory; fails (naming both) if
 * it is gone or cannot be read.
 */
BdrvDirtyBitmap *ckpt_load_bitmap(BlockDriverState *bs, const Checkpoint *c,
                                  GError **errp);

/* Drop the bits of every frozen checkpoint bitmap of @bs from memory. */
void ckpt_unload_frozen(BlockDriverState *bs, const CheckpointChain *chain);

#endif
