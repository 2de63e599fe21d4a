/*
 * qcow2 checkpoints: the hooks the rest of the qcow2 driver calls
 * (qcow2-checkpoint.c).  The table lives in the CKPT header extension
 * (docs/interop/qcow2-checkpoints.rst, "Storage in the image").
 */
#ifndef BLOCK_QCOW2_CHECKPOINT_H
#define BLOCK_QCOW2_CHECKPOINT_H

#include "block/block_int.h"
#include "block/checkpoint-ops.h"

typedef struct Qcow2CkptState Qcow2CkptState;

/*
 * After the bitmaps are open: decode the table, check it against the
 * bitmaps, and on a read-write open (not for check) write it back with
 * autoclear bit 48 if that found something new or the bit was clear.
 * A table that cannot be decoded does not fail the open: its error is
 * returned by every checkpoint operation.
 */
int qcow2_checkpoints_open(BlockDriverState *bs, int flags, GError **errp);
/* On close and inactivation (metadata lock held): write a pending table. */
int qcow2_checkpoints_flush(BlockDriverState *bs);
void qcow2_checkpoints_close(BlockDriverState *bs);
/*
 * For the bitmap store's header switch (metadata lock held): the header
 * write reached the disk, with the staged table; or it failed, and the
 * table of before the running commit (if any) goes back into s->hdr so
 * that the old header can be written again.
 */
void qcow2_checkpoints_header_written(BlockDriverState *bs);
void qcow2_checkpoints_unstage(BlockDriverState *bs);
/* "checkpoints" in the format-specific info (metadata lock held). */
void qcow2_checkpoints_info(BlockDriverState *bs, JsonObject *data);
/*
 * qemu-img check (metadata lock held): report a table that cannot be
 * decoded as a corruption (-r all removes it; the bitmaps stay as plain
 * bitmaps) and unusable checkpoints as information; -r all also stores
 * damage found now.
 */
int qcow2_checkpoints_check(BlockDriverState *bs, BdrvCheckResult *res,
                            BdrvCheckMode fix);

/* BlockDriver.checkpoint_ops. */
extern const BdrvCheckpointDriverOps qcow2_checkpoint_ops;

#endif
