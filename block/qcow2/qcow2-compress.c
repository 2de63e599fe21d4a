/*
 * Decompression of compressed clusters ("Compressed clusters" in
 * docs/interop/qcow2.md): zlib clusters are raw deflate streams with a 4 KiB
 * window and no header; zstd clusters are one zstd frame.  The stored
 * data is rounded up to whole sectors, so input may carry trailing bytes
 * that belong to the next cluster: decompression stops as soon as one
 * cluster of output has been produced.
 */
#include "qcow2.h"

#include <errno.h>
#include <zlib.h>
#include <zstd.h>

static int inflate_raw(uint8_t *dest, size_t dest_size, const uint8_t *src,
                       size_t src_size)
{
    z_stream strm = {0};
    int ret;

    if (inflateInit2(&strm, -12) != Z_OK) {
        return -EIO;
    }
    strm.next_in = (Bytef *)src;
    strm.avail_in = (uInt)src_size;
    strm.next_out = dest;
    strm.avail_out = (uInt)dest_size;
    ret = inflate(&strm, Z_FINISH);
    inflateEnd(&strm);
    if ((ret == Z_STREAM_END || ret == Z_BUF_ERROR) && strm.avail_out == 0) {
        return 0;
    }
    return -EIO;
}

static int unzstd(uint8_t *dest, size_t dest_size, const uint8_t *src,
                  size_t src_size)
{
    ZSTD_DCtx *dctx = ZSTD_createDCtx();
    ZSTD_inBuffer in = { src, src_size, 0 };
    ZSTD_outBuffer out = { dest, dest_size, 0 };
    int ret = 0;

    if (!dctx) {
        return -ENOMEM;
    }
    while (out.pos < out.size) {
        size_t in_before = in.pos, out_before = out.pos;
        size_t r = ZSTD_decompressStream(dctx, &out, &in);
        if (ZSTD_isError(r)) {
            ret = -EIO;
            break;
        }
        if (in.pos == in_before && out.pos == out_before) {
            ret = -EIO; /* no progress: the input ran out */
            break;
        }
    }
    ZSTD_freeDCtx(dctx);
    return ret;
}

int qcow2_decompress(int type, uint8_t *dest, size_t dest_size,
                     const uint8_t *src, size_t src_size)
{
    switch (type) {
    case QCOW2_COMPRESSION_ZLIB:
        return inflate_raw(dest, dest_size, src, src_size);
    case QCOW2_COMPRESSION_ZSTD:
        return unzstd(dest, dest_size, src, src_size);
    default:
        return -ENOTSUP;
    }
}
