/*
 * Compressed cluster writes (BDRV_REQ_WRITE_COMPRESSED, used by
 * `qemu-img convert -c`).  Each guest cluster is compressed on its own
 * (zlib: raw deflate with a 4 KiB window; zstd: one frame) and packed at
 * byte granularity after the previous compressed cluster, as QEMU does:
 * Qcow2State.compressed_cursor is the next free byte inside the last host
 * cluster used for compressed data.  A host cluster holding pieces of
 * several compressed clusters has one reference per piece, so that
 * freeing them one by one (qcow2_free_any_cluster) frees it last.
 * Clusters that do not shrink are written uncompressed by the normal path.
 *
 * The metadata lock is held from the allocation until the L2 entry is
 * updated, data write included: compressed writes are a bulk-copy path,
 * so keeping it simple beats overlapping them with other requests.
 */
#include "qcow2.h"
#include "util/align.h"
#include "util/bswap.h"

#include <errno.h>
#include <string.h>
#include <zlib.h>
#include <zstd.h>

/* Raw deflate of @len bytes; the output size, or -ENOSPC if over @cap. */
static ssize_t deflate_raw(uint8_t *dst, size_t cap, const uint8_t *src,
                           size_t len)
{
    z_stream strm = {0};
    ssize_t ret;

    if (deflateInit2(&strm, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -12, 9,
                     Z_DEFAULT_STRATEGY) != Z_OK) {
        return -ENOMEM;
    }
    strm.next_in = (Bytef *)src;
    strm.avail_in = (uInt)len;
    strm.next_out = dst;
    strm.avail_out = (uInt)cap;
    ret = deflate(&strm, Z_FINISH) == Z_STREAM_END
              ? (ssize_t)(cap - strm.avail_out) : -ENOSPC;
    deflateEnd(&strm);
    return ret;
}

static ssize_t compress_cluster(int type, uint8_t *dst, size_t cap,
                                const uint8_t *src, size_t len)
{
    size_t r;

    switch (type) {
    case QCOW2_COMPRESSION_ZLIB:
        return deflate_raw(dst, cap, src, len);
    case QCOW2_COMPRESSION_ZSTD:
        r = ZSTD_compress(dst, cap, src, len, ZSTD_CLEVEL_DEFAULT);
        return ZSTD_isError(r) ? -ENOSPC : (ssize_t)r;
    default:
        return -ENOTSUP;
    }
}

static bool inflight_touches(Qcow2State *s, uint64_t start, uint64_t end)
{
    for (guint i = 0; i < s->inflight->len; i++) {
        Qcow2Inflight *f = s->inflight->pdata[i];
        if (f->start < end && start < f->end) {
            return true;
        }
    }
    return false;
}

/*
 * Reserve @size (< cluster size) host bytes for compressed data and take
 * one reference on every host cluster they touch; lock held.  Continues
 * in the cursor's cluster when the data fits there or the next cluster
 * allocated happens to follow it.
 */
static int64_t alloc_compressed_bytes(BlockDriverState *bs, uint64_t size)
{
    Qcow2State *s = bs->opaque;
    uint64_t cs = s->cluster_size;
    uint64_t cur = s->compressed_cursor, off;
    int64_t fresh = 0;
    int ret;

    g_assert(size > 0 && size < cs);
    if (cur && cs - qcow2_offset_in_cluster(s, cur) < size) {
        fresh = qcow2_alloc_clusters(bs, cs);
        if (fresh < 0) {
            return fresh;
        }
        if ((uint64_t)fresh != ROUND_UP(cur, cs)) {
            cur = 0;            /* not contiguous: leave the tail unused */
        }
    }
    if (cur) {
        /* The cursor's cluster gains one user (ERANGE: 1-bit refcounts). */
        ret = qcow2_update_refcount(bs, cur, 1, 1);
        if (ret < 0) {
            if (fresh > 0) {
                qcow2_free_clusters(bs, fresh, cs);
            }
            s->compressed_cursor = 0;
            if (ret == -ERANGE) {
                return alloc_compressed_bytes(bs, size);
            }
            return ret;
        }
        off = cur;
    } else {
        if (!fresh) {
            fresh = qcow2_alloc_clusters(bs, cs);
            if (fresh < 0) {
                return fresh;
            }
        }
        off = fresh;
    }
    s->compressed_cursor = qcow2_offset_in_cluster(s, off + size)
                               ? off + size : 0;
    return (int64_t)off;
}

/* Point guest cluster @gofs at compressed entry @entry; lock held. */
static int link_compressed(BlockDriverState *bs, uint64_t gofs,
                           uint64_t entry)
{
    Qcow2State *s = bs->opaque;
    uint64_t l1_index = gofs >> (s->cluster_bits + s->l2_bits);
    uint64_t l2_index = (gofs >> s->cluster_bits) & (s->l2_entries - 1);
    uint64_t l2_off, old, *table, sidx;
    int ret;

    l2_off = s->l1_table[l1_index] & QCOW2_L1E_OFFSET_MASK;
    if (!l2_off) {
        return -EIO;
    }
    if (!s->lazy_refcounts) {
        ret = qcow2_cache_set_dependency(bs, s->l2_cache, s->refblock_cache);
        if (ret < 0) {
            return ret;
        }
    }
    sidx = l2_index & (s->l2_slice_entries - 1);
    ret = qcow2_cache_get(bs, s->l2_cache, l2_off + (l2_index - sidx) * 8,
                          (void **)&table);
    if (ret < 0) {
        return ret;
    }
    old = ldq_be(&table[sidx]);
    stq_be(&table[sidx], entry);
    qcow2_cache_mark_dirty(s->l2_cache, table);
    qcow2_cache_put(s->l2_cache, (void **)&table);
    /* Linked: failing to drop the old cluster only leaks it. */
    qcow2_free_any_cluster(bs, old);
    return 0;
}

/* Store @clen compressed bytes as guest cluster @gofs; lock held. */
static int store_compressed(BlockDriverState *bs, uint64_t gofs,
                            const uint8_t *cbuf, uint64_t clen)
{
    Qcow2State *s = bs->opaque;
    uint64_t sectors, entry;
    int64_t host;
    int ret;

    if (!s->writable) {
        return -EIO;
    }
    while (inflight_touches(s, gofs, gofs + s->cluster_size)) {
        g_cond_wait(&s->alloc_cond, &s->lock);
    }
    ret = s->lazy_refcounts ? qcow2_mark_dirty(bs) : 0;
    if (ret == 0) {
        ret = qcow2_prepare_l2(bs, gofs);
    }
    if (ret < 0) {
        return ret;
    }
    host = alloc_compressed_bytes(bs, clen);
    if (host < 0) {
        return (int)host;
    }
    /* Additional 512-byte sectors after the one holding the first byte. */
    sectors = (((uint64_t)host + clen - 1) >> 9) - ((uint64_t)host >> 9);
    entry = QCOW2_OFLAG_COMPRESSED | (sectors << s->csize_shift) |
            (uint64_t)host;
    ret = qcow2_pre_write_check(bs, QCOW2_META_NONE, host, clen);
    if (ret == 0) {
        ret = bdrv_pwrite(bs->file, host, clen, cbuf, 0);
    }
    if (ret == 0 && !s->writable) {
        ret = -EIO;
    }
    if (ret == 0) {
        ret = link_compressed(bs, gofs, entry);
    }
    if (ret < 0) {
        qcow2_update_refcount(bs, host, clen, -1);
        s->compressed_cursor = 0;
    }
    return ret;
}

int qcow2_pwrite_compressed(BlockDriverState *bs, int64_t offset,
                            int64_t bytes, const void *buf, int flags)
{
    Qcow2State *s = bs->opaque;
    uint64_t cs = s->cluster_size;
    int plain = flags & ~(BDRV_REQ_WRITE_COMPRESSED | BDRV_REQ_FUA);
    g_autofree uint8_t *in = NULL;
    g_autofree uint8_t *out = NULL;
    const uint8_t *p = buf;
    int ret = 0;

    if (qcow2_offset_in_cluster(s, offset) ||
        (qcow2_offset_in_cluster(s, offset + bytes) &&
         (uint64_t)(offset + bytes) != s->size)) {
        return -EINVAL;
    }
    ret = qcow2_bitmaps_before_write(bs);
    if (ret < 0) {
        return ret;
    }
    in = g_try_malloc0(cs);
    out = g_try_malloc(cs);
    if (!in || !out) {
        return -ENOMEM;
    }
    while (bytes > 0 && ret == 0) {
        uint64_t n = MIN((uint64_t)bytes, cs);
        const uint8_t *src = p;
        ssize_t clen;

        if (n < cs) {
            /* The image's last cluster: compress it padded with zeroes. */
            memcpy(in, p, n);
            memset(in + n, 0, cs - n);
            src = in;
        }
        clen = compress_cluster(s->compression_type, out, cs - 1, src, cs);
        if (clen == -ENOSPC) {
            ret = qcow2_pwrite(bs, offset, n, p, plain);
        } else if (clen < 0) {
            ret = (int)clen;
        } else {
            g_mutex_lock(&s->lock);
            ret = store_compressed(bs, offset, out, clen);
            g_mutex_unlock(&s->lock);
        }
        offset += n;
        bytes -= n;
        p += n;
    }
    if (ret == 0 && (flags & BDRV_REQ_FUA)) {
        g_mutex_lock(&s->lock);
        ret = qcow2_write_caches(bs);
        g_mutex_unlock(&s->lock);
        if (ret == 0) {
            ret = bdrv_flush(bs->file);
        }
    }
    return ret;
}
