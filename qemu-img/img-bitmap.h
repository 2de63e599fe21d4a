/*
 * Bitmap pieces of qemu-img outside the `bitmap` subcommand: hooks that
 * convert (--bitmaps) and map (--bitmap NAME) call.  Implemented in
 * img-bitmap.c next to the subcommand; they print their own errors.
 */
#ifndef QEMU_IMG_IMG_BITMAP_H
#define QEMU_IMG_IMG_BITMAP_H

#include <stdbool.h>
#include <stdint.h>

#include "img-common.h"

/*
 * convert --bitmaps, before the target is created: the source and the
 * output format support persistent bitmaps, and no source bitmap is
 * inconsistent (unless @skip_broken).  False after printing why.
 */
bool img_bitmaps_convert_check(BlockDriverState *src, const char *out_fmt,
                               bool skip_broken);
/*
 * After the data copy: recreate every persistent bitmap of @src on @dst
 * (name, granularity, recording) with the same contents, skipping
 * inconsistent ones with a warning if @skip_broken.  False after printing.
 */
bool img_bitmaps_convert_copy(BlockDriverState *src, BlockDriverState *dst,
                              bool skip_broken);

/*
 * map --bitmap NAME: print the dirty and clean extents of bitmap @name in
 * [start, start + length) (length < 0: to the end).  Returns the exit code.
 */
int img_bitmap_map(BlockDriverState *bs, const char *name, int64_t start,
                   int64_t length, ImgOutputFormat out);

#endif
