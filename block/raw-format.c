/*
 * The "raw" format driver: a pass-through to the protocol child, with an
 * optional window (offset/size) into it.
 */
#include "block/block_int.h"
#include "util/options.h"

#include <errno.h>

typedef struct {
    uint64_t offset;
    uint64_t size;
    bool has_size;
} RawState;

static int raw_probe(const uint8_t *buf, int buf_size, const char *filename)
{
    return 1; /* anything is a raw image, with the lowest score */
}

static int raw_open(BlockDriverState *bs, JsonObject *opts, int flags,
                    GError **errp)
{
    RawState *s = bs->opaque;
    int64_t file_len;

    s->has_size = opts_has(opts, "size");
    if (!opts_take_size(opts, "offset", 0, &s->offset, errp) ||
        !opts_take_size(opts, "size", 0, &s->size, errp)) {
        return -EINVAL;
    }
    file_len = bdrv_getlength(bs->file);
    if (file_len < 0) {
        error_setg_errno(errp, (int)-file_len, "Could not get file size");
        return (int)file_len;
    }
    if (s->offset > (uint64_t)file_len) {
        error_setg(errp, "The sum of offset (%" PRIu64 ") and size (0) has "
                   "to be smaller or equal to the actual size of the "
                   "containing file (%" PRId64 ")", s->offset, file_len);
        return -EINVAL;
    }
    if (s->has_size && s->offset + s->size > (uint64_t)file_len) {
        error_setg(errp, "The sum of offset (%" PRIu64 ") and size (%" PRIu64
                   ") has to be smaller or equal to the actual size of the "
                   "containing file (%" PRId64 ")", s->offset, s->size,
                   file_len);
        return -EINVAL;
    }
    bs->request_alignment = bs->file->request_alignment;
    bs->max_transfer = bs->file->max_transfer;
    return 0;
}

static void raw_close(BlockDriverState *bs)
{
}

static int raw_pread(BlockDriverState *bs, int64_t offset, int64_t bytes,
                     void *buf, int flags)
{
    RawState *s = bs->opaque;
    return bdrv_pread(bs->file, offset + s->offset, bytes, buf, flags);
}

static int raw_pwrite(BlockDriverState *bs, int64_t offset, int64_t bytes,
                      const void *buf, int flags)
{
    RawState *s = bs->opaque;
    return bdrv_pwrite(bs->file, offset + s->offset, bytes, buf, flags);
}

static int raw_pwrite_zeroes(BlockDriverState *bs, int64_t offset,
                             int64_t bytes, int flags)
{
    RawState *s = bs->opaque;
    return bdrv_pwrite_zeroes(bs->file, offset + s->offset, bytes,
                              flags | BDRV_REQ_NO_FALLBACK) == 0
               ? 0
               : -ENOTSUP;
}

static int raw_pdiscard(BlockDriverState *bs, int64_t offset, int64_t bytes)
{
    RawState *s = bs->opaque;
    return bdrv_pdiscard(bs->file, offset + s->offset, bytes);
}

static int64_t raw_getlength(BlockDriverState *bs)
{
    RawState *s = bs->opaque;
    int64_t len;

    if (s->has_size) {
        return s->size;
    }
    len = bdrv_getlength(bs->file);
    return len < 0 ? len : len - (int64_t)s->offset;
}

static int raw_block_status(BlockDriverState *bs, bool want_zero,
                            int64_t offset, int64_t bytes, int64_t *pnum,
                            int64_t *map, BlockDriverState **file)
{
    RawState *s = bs->opaque;

    *pnum = bytes;
    *map = offset + s->offset;
    *file = bs->file;
    return BDRV_BLOCK_RAW | BDRV_BLOCK_OFFSET_VALID;
}

static int raw_truncate(BlockDriverState *bs, int64_t offset, bool exact,
                        PreallocMode prealloc, GError **errp)
{
    RawState *s = bs->opaque;

    if (s->has_size || s->offset) {
        error_setg(errp, "Cannot resize a raw image with offset or size "
                   "options");
        return -ENOTSUP;
    }
    return bdrv_truncate(bs->file, offset, exact, prealloc, errp);
}

static bool raw_create(const char *filename, JsonObject *opts, GError **errp)
{
    return bdrv_file.create(filename, opts, errp);
}

const BlockDriver bdrv_raw = {
    .format_name = "raw",
    .instance_size = sizeof(RawState),
    .is_format = true,
    .probe = raw_probe,
    .open = raw_open,
    .close = raw_close,
    .pread = raw_pread,
    .pwrite = raw_pwrite,
    .pwrite_zeroes = raw_pwrite_zeroes,
    .pdiscard = raw_pdiscard,
    .getlength = raw_getlength,
    .block_status = raw_block_status,
    .truncate = raw_truncate,
    .create = raw_create,
};
