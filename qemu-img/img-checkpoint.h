/*
 * Checkpoint pieces of qemu-img outside the `checkpoint` subcommand: the
 * hooks convert --bitmaps and bitmap --list call.  Implemented in
 * img-checkpoint.c.
 */
#ifndef QEMU_IMG_IMG_CHECKPOINT_H
#define QEMU_IMG_IMG_CHECKPOINT_H

#include <stdbool.h>

#include "img-common.h"

/*
 * convert --bitmaps, after the bitmaps were copied: give @dst the
 * checkpoints of @src.  Failing to do so is only a warning (printed):
 * the bitmaps are there, as plain bitmaps.  Always true.
 */
bool img_checkpoints_convert_copy(BlockDriverState *src,
                                  BlockDriverState *dst);

/*
 * bitmap --list: bitmap name -> name of the checkpoint that owns it
 * (g_hash_table_unref), or NULL when @bs has no usable checkpoints.
 */
GHashTable *img_checkpoint_owners(BlockDriverState *bs);

#endif
