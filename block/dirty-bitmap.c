/*
 * Named dirty bitmaps on a node.  For now only the write hook exists; the
 * bitmap objects arrive with the persistent-bitmaps work.
 */
#include "block/block_int.h"

void bdrv_dirty_bitmaps_mark(BlockDriverState *bs, int64_t offset,
                             int64_t bytes)
{
    (void)bs;
    (void)offset;
    (void)bytes;
}
