/*
 * The qcow2 data path: reads (host clusters, backing file, zero and
 * compressed clusters), writes (in place, or allocating with copy-on-write
 * of the partial head and tail clusters), write-zeroes, discard and block
 * status.
 *
 * Concurrency: the metadata lock is held for lookups and metadata updates
 * only.  An allocating write registers its guest range as in flight, drops
 * the lock to write the data, then links the new clusters into the L2
 * table: a cluster is never visible in L2 before its data is written.
 * Requests that would touch the same guest clusters' mapping wait until
 * the allocation is linked.
 */
#include "qcow2.h"
#include "util/align.h"

#include <errno.h>
#include <inttypes.h>
#include <string.h>

/* Largest run of clusters one allocating write step handles. */
#define QCOW2_MAX_ALLOC_BYTES (UINT64_C(32) * 1024 * 1024)

int qcow2_read_host(BlockDriverState *bs, uint64_t offset, uint64_t bytes,
                    void *buf)
{
    Qcow2State *s = bs->opaque;
    uint64_t len = __atomic_load_n(&s->file_len, __ATOMIC_ACQUIRE);
    uint64_t n = offset >= len ? 0 : MIN(bytes, len - offset);
    int ret = 0;

    if (n) {
        ret = bdrv_pread(bs->file, offset, n, buf, 0);
    }
    if (ret == 0 && n < bytes) {
        memset((uint8_t *)buf + n, 0, bytes - n);
    }
    return ret;
}

static bool inflight_overlaps(Qcow2State *s, uint64_t start, uint64_t end)
{
    for (guint i = 0; i < s->inflight->len; i++) {
        Qcow2Inflight *f = s->inflight->pdata[i];
        if (f->start < end && start < f->end) {
            return true;
        }
    }
    return false;
}

/* Wait (lock held) until no allocation in flight touches [start, end). */
static void wait_inflight(Qcow2State *s, uint64_t start, uint64_t end)
{
    while (inflight_overlaps(s, start, end)) {
        g_cond_wait(&s->alloc_cond, &s->lock);
    }
}

/* Read guest bytes that this layer does not define. */
static int read_backing(BlockDriverState *bs, uint64_t offset,
                        uint64_t bytes, uint8_t *buf)
{
    int64_t blen;
    uint64_t n = 0;
    int ret = 0;

    if (bs->backing) {
        blen = bdrv_getlength(bs->backing);
        if (blen < 0) {
            return (int)blen;
        }
        if (offset < (uint64_t)blen) {
            n = MIN(bytes, (uint64_t)blen - offset);
            ret = bdrv_pread(bs->backing, offset, n, buf, 0);
        }
    }
    if (ret == 0 && n < bytes) {
        memset(buf + n, 0, bytes - n);
    }
    return ret;
}

/* Bytes [in, in + bytes) of the compressed cluster @l2e. */
static int read_compressed(BlockDriverState *bs, uint64_t l2e, uint64_t in,
                           uint64_t bytes, uint8_t *buf)
{
    Qcow2State *s = bs->opaque;
    uint64_t coff, clen;
    g_autofree uint8_t *cbuf = NULL;
    g_autofree uint8_t *out = NULL;
    int ret;

    qcow2_compressed_range(s, l2e, &coff, &clen);
    cbuf = g_try_malloc(clen);
    out = g_try_malloc(s->cluster_size);
    if (!cbuf || !out) {
        return -ENOMEM;
    }
    ret = qcow2_read_host(bs, coff, clen, cbuf);
    if (ret < 0) {
        return ret;
    }
    ret = qcow2_decompress(s->compression_type, out, s->cluster_size, cbuf,
                           clen);
    if (ret < 0) {
        error_report("qcow2: could not decompress the cluster at host "
                     "offset %#" PRIx64, coff);
        return -EIO;
    }
    memcpy(buf, out + in, bytes);
    return 0;
}

/* The old contents of [offset, offset + bytes) given its mapping. */
static int read_mapped(BlockDriverState *bs, uint64_t offset, uint64_t bytes,
                       Qcow2ClusterType type, uint64_t host, uint64_t l2e,
                       uint8_t *buf)
{
    Qcow2State *s = bs->opaque;

    switch (type) {
    case QCOW2_CLUSTER_UNALLOCATED:
        return read_backing(bs, offset, bytes, buf);
    case QCOW2_CLUSTER_ZERO_PLAIN:
    case QCOW2_CLUSTER_ZERO_ALLOC:
        memset(buf, 0, bytes);
        return 0;
    case QCOW2_CLUSTER_NORMAL:
        return qcow2_read_host(bs, host, bytes, buf);
    default:
        return read_compressed(bs, l2e, qcow2_offset_in_cluster(s, offset),
                               bytes, buf);
    }
}

int qcow2_pread(BlockDriverState *bs, int64_t offset, int64_t bytes,
                void *buf, int flags)
{
    Qcow2State *s = bs->opaque;
    uint8_t *p = buf;

    while (bytes > 0) {
        uint64_t n, host, l2e;
        Qcow2ClusterType type;
        int ret;

        g_mutex_lock(&s->lock);
        ret = qcow2_get_mapping(bs, offset, bytes, &n, &host, &l2e, &type);
        g_mutex_unlock(&s->lock);
        if (ret == 0) {
            ret = read_mapped(bs, offset, n, type, host, l2e, p);
        }
        if (ret < 0) {
            return ret;
        }
        offset += n;
        bytes -= n;
        p += n;
    }
    return 0;
}

/* What a partial cluster of an allocating write must preserve. */
typedef struct CowSource {
    Qcow2ClusterType type;
    uint64_t host;       /* of the cluster start */
    uint64_t l2e;
} CowSource;

static bool cow_reads_zero(BlockDriverState *bs, const CowSource *c)
{
    return c->type == QCOW2_CLUSTER_ZERO_PLAIN ||
           c->type == QCOW2_CLUSTER_ZERO_ALLOC ||
           (c->type == QCOW2_CLUSTER_UNALLOCATED && !bs->backing);
}

static int get_cow_source(BlockDriverState *bs, uint64_t cluster,
                          CowSource *c)
{
    Qcow2State *s = bs->opaque;
    uint64_t n;

    return qcow2_get_mapping(bs, cluster, s->cluster_size, &n, &c->host,
                             &c->l2e, &c->type);
}

/*
 * Write one new cluster at @host for guest cluster @gcluster: bytes
 * [in, in + len) come from @data, the rest from @cow.  A fresh cluster
 * already reads as zeroes, so zero copy-on-write needs no write.
 */
static int write_cow_cluster(BlockDriverState *bs, uint64_t host,
                             uint64_t gcluster, uint64_t in, uint64_t len,
                             const uint8_t *data, const CowSource *cow,
                             bool fresh)
{
    Qcow2State *s = bs->opaque;
    g_autofree uint8_t *b = NULL;
    int ret;

    if (fresh && cow_reads_zero(bs, cow)) {
        return bdrv_pwrite(bs->file, host + in, len, data, 0);
    }
    b = g_try_malloc(s->cluster_size);
    if (!b) {
        return -ENOMEM;
    }
    ret = read_mapped(bs, gcluster, s->cluster_size, cow->type, cow->host,
                      cow->l2e, b);
    if (ret < 0) {
        return ret;
    }
    memcpy(b + in, data, len);
    return bdrv_pwrite(bs->file, host, s->cluster_size, b, 0);
}

/* Data of an allocating write: [offset, offset + len) in [gstart, gend). */
static int write_alloc_data(BlockDriverState *bs, uint64_t host,
                            uint64_t gstart, uint64_t gend, uint64_t offset,
                            uint64_t len, const uint8_t *buf,
                            const CowSource *head, const CowSource *tail,
                            bool fresh)
{
    Qcow2State *s = bs->opaque;
    uint64_t cs = s->cluster_size;
    uint64_t end = offset + len;
    uint64_t mid_start = ROUND_UP(offset, cs), mid_end = ROUND_DOWN(end, cs);
    int ret;

    if (offset == gstart && end == gend) {
        return bdrv_pwrite(bs->file, host, len, buf, 0);
    }
    if (mid_start > mid_end) {
        /* Head and tail are the same cluster. */
        return write_cow_cluster(bs, host, gstart, offset - gstart, len, buf,
                                 head, fresh);
    }
    if (offset > gstart) {
        ret = write_cow_cluster(bs, host, gstart, offset - gstart,
                                mid_start - offset, buf, head, fresh);
        if (ret < 0) {
            return ret;
        }
    }
    if (mid_end > mid_start) {
        ret = bdrv_pwrite(bs->file, host + (mid_start - gstart),
                          mid_end - mid_start, buf + (mid_start - offset), 0);
        if (ret < 0) {
            return ret;
        }
    }
    if (end > mid_end) {
        ret = write_cow_cluster(bs, host + (mid_end - gstart), mid_end, 0,
                                end - mid_end, buf + (mid_end - offset), tail,
                                fresh);
    }
    return ret < 0 ? ret : 0;
}

static int metadata_begin(BlockDriverState *bs)
{
    Qcow2State *s = bs->opaque;

    if (!s->writable) {
        return -EIO;
    }
    return s->lazy_refcounts ? qcow2_mark_dirty(bs) : 0;
}

/*
 * One step of a write at @offset; returns bytes written (> 0), 0 to retry
 * after waiting, or -errno.  Called and returns with the lock held.
 */
static int64_t write_step(BlockDriverState *bs, uint64_t offset,
                          uint64_t bytes, const uint8_t *buf)
{
    Qcow2State *s = bs->opaque;
    uint64_t cs = s->cluster_size, n, host, l2e, count, gstart, gend, len;
    Qcow2ClusterType type;
    CowSource head = {0}, tail = {0};
    Qcow2Inflight f;
    bool fresh = false;
    int64_t alloc;
    int ret;

    if (!s->writable) {
        return -EIO;
    }
    ret = qcow2_get_mapping(bs, offset, bytes, &n, &host, &l2e, &type);
    if (ret < 0) {
        return ret;
    }
    if (type == QCOW2_CLUSTER_NORMAL && (l2e & QCOW2_OFLAG_COPIED)) {
        g_mutex_unlock(&s->lock);
        ret = bdrv_pwrite(bs->file, host, n, buf, 0);
        g_mutex_lock(&s->lock);
        return ret < 0 ? ret : (int64_t)n;
    }
    gstart = ROUND_DOWN(offset, cs);
    count = MIN(qcow2_size_to_clusters(s, offset + bytes - gstart),
                QCOW2_MAX_ALLOC_BYTES >> s->cluster_bits);
    if (inflight_overlaps(s, gstart, gstart + count * cs)) {
        wait_inflight(s, gstart, gstart + count * cs);
        return 0;
    }
    ret = metadata_begin(bs);
    if (ret == 0) {
        ret = qcow2_prepare_l2(bs, gstart);
    }
    if (ret == 0) {
        ret = qcow2_count_alloc_clusters(bs, gstart, count, &count);
    }
    if (ret < 0) {
        return ret;
    }
    alloc = qcow2_alloc_clusters_upto(bs, count, &count, &fresh);
    if (alloc < 0) {
        return alloc;
    }
    gend = gstart + count * cs;
    len = MIN(bytes, gend - offset);
    if (ret == 0 && offset > gstart) {
        ret = get_cow_source(bs, gstart, &head);
    }
    if (ret == 0 && offset + len < gend) {
        ret = get_cow_source(bs, gend - cs, &tail);
    }
    if (ret < 0) {
        qcow2_free_clusters(bs, alloc, count * cs);
        return ret;
    }
    f.start = gstart;
    f.end = gend;
    g_ptr_array_add(s->inflight, &f);
    g_mutex_unlock(&s->lock);

    ret = write_alloc_data(bs, alloc, gstart, gend, offset, len, buf, &head,
                           &tail, fresh);

    g_mutex_lock(&s->lock);
    if (ret == 0 && !s->writable) {
        ret = -EIO;
    }
    if (ret == 0) {
        ret = qcow2_link_clusters(bs, gstart, count, alloc);
    }
    if (ret < 0) {
        qcow2_free_clusters(bs, alloc, count * cs);
    }
    g_ptr_array_remove_fast(s->inflight, &f);
    g_cond_broadcast(&s->alloc_cond);
    return ret < 0 ? ret : (int64_t)len;
}

int qcow2_write_caches(BlockDriverState *bs)
{
    Qcow2State *s = bs->opaque;
    int ret;

    if (!s->writable) {
        /*
         * Marked corrupt: tables changed before that stay unwritten, and
         * a flush must not pretend they are stored.
         */
        return qcow2_cache_has_dirty(s->l2_cache) ||
               qcow2_cache_has_dirty(s->refblock_cache) ? -EIO : 0;
    }
    ret = qcow2_cache_write(bs, s->l2_cache);
    if (ret == 0) {
        ret = qcow2_cache_write(bs, s->refblock_cache);
    }
    return ret;
}

int qcow2_pwrite(BlockDriverState *bs, int64_t offset, int64_t bytes,
                 const void *buf, int flags)
{
    Qcow2State *s = bs->opaque;
    const uint8_t *p = buf;
    int64_t ret;

    if (flags & BDRV_REQ_WRITE_COMPRESSED) {
        return qcow2_pwrite_compressed(bs, offset, bytes, buf, flags);
    }
    ret = qcow2_bitmaps_before_write(bs);
    if (ret < 0) {
        return (int)ret;
    }
    g_mutex_lock(&s->lock);
    if (s->writable && !(flags & BDRV_REQ_FUA)) {
        /* Fast path: an overwrite inside one host extent. */
        uint64_t n, host, l2e;
        Qcow2ClusterType type;
        if (qcow2_get_mapping(bs, offset, bytes, &n, &host, &l2e,
                              &type) == 0 &&
            type == QCOW2_CLUSTER_NORMAL && (l2e & QCOW2_OFLAG_COPIED) &&
            n == (uint64_t)bytes) {
            g_mutex_unlock(&s->lock);
            return bdrv_pwrite(bs->file, host, n, buf, 0);
        }
    }
    while (bytes > 0) {
        ret = write_step(bs, offset, bytes, p);
        if (ret < 0) {
            break;
        }
        offset += ret;
        bytes -= ret;
        p += ret;
    }
    if (ret >= 0 && (flags & BDRV_REQ_FUA)) {
        ret = qcow2_write_caches(bs);
    }
    g_mutex_unlock(&s->lock);
    if (ret >= 0 && (flags & BDRV_REQ_FUA)) {
        ret = bdrv_flush(bs->file);
    }
    return ret < 0 ? (int)ret : 0;
}

/* Whether the cluster at @offset already reads as zeroes. */
static int cluster_reads_zero(BlockDriverState *bs, uint64_t offset,
                              bool *zero)
{
    CowSource c;
    int ret = get_cow_source(bs, offset, &c);

    *zero = ret == 0 && cow_reads_zero(bs, &c);
    return ret;
}

/*
 * Zero [offset, offset + bytes), which lies inside one cluster, by writing
 * zeroes unless it already reads as zeroes (lock held on entry).
 */
static int zero_partial(BlockDriverState *bs, uint64_t offset,
                        uint64_t bytes, int flags)
{
    Qcow2State *s = bs->opaque;
    g_autofree uint8_t *z = NULL;
    bool zero;
    int ret;

    g_assert(qcow2_offset_in_cluster(s, offset) + bytes <= s->cluster_size);
    ret = cluster_reads_zero(bs, ROUND_DOWN(offset, s->cluster_size), &zero);
    if (ret < 0 || zero) {
        return ret;
    }
    if (flags & BDRV_REQ_NO_FALLBACK) {
        return -ENOTSUP;
    }
    z = g_try_malloc0(bytes);
    if (!z) {
        return -ENOMEM;
    }
    while (bytes > 0) {
        int64_t n = write_step(bs, offset, bytes, z);
        if (n < 0) {
            return (int)n;
        }
        offset += n;
        bytes -= n;
    }
    return 0;
}

int qcow2_pwrite_zeroes(BlockDriverState *bs, int64_t offset, int64_t bytes,
                        int flags)
{
    Qcow2State *s = bs->opaque;
    uint64_t cs = s->cluster_size;
    uint64_t start = ROUND_UP((uint64_t)offset, cs);
    uint64_t end = (uint64_t)(offset + bytes) == s->size
                       ? ROUND_UP(s->size, cs)
                       : ROUND_DOWN((uint64_t)(offset + bytes), cs);
    int ret = 0;

    if (s->hdr.version < 3) {
        return -ENOTSUP;
    }
    ret = qcow2_bitmaps_before_write(bs);
    if (ret < 0) {
        return ret;
    }
    g_mutex_lock(&s->lock);
    if (start > end) {
        /* All inside one cluster. */
        ret = zero_partial(bs, offset, bytes, flags);
        goto out;
    }
    if ((uint64_t)offset < start) {
        ret = zero_partial(bs, offset, start - offset, flags);
    }
    if (ret == 0 && (uint64_t)(offset + bytes) > end) {
        ret = zero_partial(bs, end, offset + bytes - end, flags);
    }
    if (ret == 0 && end > start) {
        wait_inflight(s, start, end);
        ret = metadata_begin(bs);
        if (ret == 0) {
            ret = qcow2_zero_clusters(bs, start, (end - start) / cs,
                                      flags & BDRV_REQ_MAY_UNMAP);
        }
    }
out:
    if (ret == 0 && (flags & BDRV_REQ_FUA)) {
        ret = qcow2_write_caches(bs);
    }
    g_mutex_unlock(&s->lock);
    return ret;
}

int qcow2_pdiscard(BlockDriverState *bs, int64_t offset, int64_t bytes)
{
    Qcow2State *s = bs->opaque;
    uint64_t cs = s->cluster_size;
    uint64_t start = ROUND_UP((uint64_t)offset, cs);
    uint64_t end = (uint64_t)(offset + bytes) == s->size
                       ? ROUND_UP(s->size, cs)
                       : ROUND_DOWN((uint64_t)(offset + bytes), cs);
    int ret;

    if (start >= end) {
        return 0;
    }
    ret = qcow2_bitmaps_before_write(bs);
    if (ret < 0) {
        return ret;
    }
    g_mutex_lock(&s->lock);
    wait_inflight(s, start, end);
    ret = metadata_begin(bs);
    if (ret == 0) {
        ret = qcow2_discard_clusters(bs, start, (end - start) / cs, false);
    }
    g_mutex_unlock(&s->lock);
    return ret;
}

int qcow2_block_status(BlockDriverState *bs, bool want_zero, int64_t offset,
                       int64_t bytes, int64_t *pnum, int64_t *map,
                       BlockDriverState **file)
{
    Qcow2State *s = bs->opaque;
    uint64_t n, host, l2e;
    Qcow2ClusterType type;
    int ret;

    g_mutex_lock(&s->lock);
    ret = qcow2_get_mapping(bs, offset, bytes, &n, &host, &l2e, &type);
    g_mutex_unlock(&s->lock);
    if (ret < 0) {
        return ret;
    }
    *pnum = n;
    switch (type) {
    case QCOW2_CLUSTER_UNALLOCATED:
        return bs->backing ? 0 : BDRV_BLOCK_ZERO;
    case QCOW2_CLUSTER_ZERO_PLAIN:
        return BDRV_BLOCK_ZERO | BDRV_BLOCK_ALLOCATED;
    case QCOW2_CLUSTER_ZERO_ALLOC:
        *map = host;
        *file = bs->file;
        return BDRV_BLOCK_ZERO | BDRV_BLOCK_ALLOCATED |
               BDRV_BLOCK_OFFSET_VALID;
    case QCOW2_CLUSTER_NORMAL:
        *map = host;
        *file = bs->file;
        return BDRV_BLOCK_DATA | BDRV_BLOCK_ALLOCATED |
               BDRV_BLOCK_OFFSET_VALID;
    default:
        return BDRV_BLOCK_DATA | BDRV_BLOCK_ALLOCATED;
    }
}
