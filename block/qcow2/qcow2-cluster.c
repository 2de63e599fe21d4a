/*
 * Guest-to-host cluster mapping: the L1 table (in memory, written entry by
 * entry), L2 tables (through the L2 cache, a slice at a time), entry
 * validation, linking newly written clusters, zeroing and discarding whole
 * clusters, growing the L1 table and metadata preallocation.  Lock held
 * throughout.
 *
 * Ordering (docs/interop/qcow2.md, "Update ordering"): a new L2 table is
 * written and synced before the L1 entry points at it; a new L2 entry
 * reaches the file only after the refcount of its cluster did (cache
 * dependency); a freed cluster's refcount drops only after the L2 entry
 * that used it is gone.
 */
#include "qcow2.h"
#include "util/align.h"
#include "util/bswap.h"

#include <errno.h>
#include <inttypes.h>
#include <string.h>

uint64_t qcow2_l1_size_for(Qcow2State *s, uint64_t size)
{
    int shift = s->cluster_bits + s->l2_bits;

    return (size >> shift) + ((size & ((UINT64_C(1) << shift) - 1)) != 0);
}

int qcow2_l1_load(BlockDriverState *bs, GError **errp)
{
    Qcow2State *s = bs->opaque;
    int ret;

    s->l1_size = s->hdr.l1_size;
    s->l1_offset = s->hdr.l1_table_offset;
    s->l1_table = g_try_new0(uint64_t, MAX(s->l1_size, 1));
    if (!s->l1_table) {
        error_setg(errp, "Could not allocate the L1 table (%" PRIu32
                   " entries)", s->l1_size);
        return -ENOMEM;
    }
    if (!s->l1_size) {
        return 0;
    }
    ret = qcow2_read_host(bs, s->l1_offset, (uint64_t)s->l1_size * 8,
                          s->l1_table);
    if (ret < 0) {
        error_setg_errno(errp, -ret, "Could not read the L1 table");
        return ret;
    }
    for (uint32_t i = 0; i < s->l1_size; i++) {
        s->l1_table[i] = ldq_be(&s->l1_table[i]);
    }
    return 0;
}

Qcow2ClusterType qcow2_l2_entry_type(Qcow2State *s, uint64_t e)
{
    if (e & QCOW2_OFLAG_COMPRESSED) {
        return QCOW2_CLUSTER_COMPRESSED;
    }
    if ((e & QCOW2_OFLAG_ZERO) && s->hdr.version >= 3) {
        return (e & QCOW2_L2E_OFFSET_MASK) ? QCOW2_CLUSTER_ZERO_ALLOC
                                           : QCOW2_CLUSTER_ZERO_PLAIN;
    }
    return (e & QCOW2_L2E_OFFSET_MASK) ? QCOW2_CLUSTER_NORMAL
                                       : QCOW2_CLUSTER_UNALLOCATED;
}

/* The L2 table offset of L1 entry @i (0 if none), checked. */
static int l2_offset(BlockDriverState *bs, uint64_t i, uint64_t *off)
{
    Qcow2State *s = bs->opaque;
    uint64_t e, o;
    Qcow2MetaKind hit;

    *off = 0;
    if (i >= s->l1_size) {
        return 0;
    }
    e = s->l1_table[i];
    o = e & QCOW2_L1E_OFFSET_MASK;
    if (!o) {
        return 0;
    }
    if (qcow2_offset_in_cluster(s, o)) {
        qcow2_signal_corruption(bs, "L2 table offset %#" PRIx64 " unaligned "
                                "(L1 index: %#" PRIx64 ")", o, i);
        return -EIO;
    }
    if (o >= s->file_len) {
        qcow2_signal_corruption(bs, "L2 table offset %#" PRIx64 " is beyond "
                                "the end of the image file (L1 index: %#"
                                PRIx64 ")", o, i);
        return -EIO;
    }
    hit = qcow2_meta_overlap(s, QCOW2_META_L2, o, s->cluster_size);
    if (hit != QCOW2_META_NONE) {
        qcow2_signal_corruption(bs, "L2 table at %#" PRIx64 " overlaps %s "
                                "(L1 index: %#" PRIx64 ")", o,
                                qcow2_meta_name(hit), i);
        return -EIO;
    }
    *off = o;
    return 0;
}

/* Check a data cluster range that an L2 entry points at. */
static int check_host_range(BlockDriverState *bs, uint64_t host,
                            uint64_t bytes, uint64_t l2_off, uint64_t idx)
{
    Qcow2State *s = bs->opaque;
    Qcow2MetaKind hit;

    if (host >= s->file_len) {
        qcow2_signal_corruption(bs, "Data cluster offset %#" PRIx64 " is "
                                "beyond the end of the image file (L2 "
                                "offset: %#" PRIx64 ", L2 index: %#" PRIx64
                                ")", host, l2_off, idx);
        return -EIO;
    }
    hit = qcow2_meta_overlap(s, QCOW2_META_NONE, host, bytes);
    if (hit != QCOW2_META_NONE) {
        qcow2_signal_corruption(bs, "Data cluster at %#" PRIx64 " overlaps "
                                "%s (L2 offset: %#" PRIx64 ", L2 index: %#"
                                PRIx64 ")", host, qcow2_meta_name(hit),
                                l2_off, idx);
        return -EIO;
    }
    return 0;
}

static int check_entry(BlockDriverState *bs, uint64_t e,
                       Qcow2ClusterType type, uint64_t l2_off, uint64_t idx)
{
    Qcow2State *s = bs->opaque;
    uint64_t host = e & QCOW2_L2E_OFFSET_MASK, coff, clen;

    switch (type) {
    case QCOW2_CLUSTER_NORMAL:
    case QCOW2_CLUSTER_ZERO_ALLOC:
        if (qcow2_offset_in_cluster(s, host)) {
            qcow2_signal_corruption(bs, "Cluster allocation offset %#"
                                    PRIx64 " unaligned (L2 offset: %#"
                                    PRIx64 ", L2 index: %#" PRIx64 ")",
                                    host, l2_off, idx);
            return -EIO;
        }
        return type == QCOW2_CLUSTER_NORMAL
                   ? check_host_range(bs, host, s->cluster_size, l2_off, idx)
                   : 0;
    case QCOW2_CLUSTER_COMPRESSED:
        qcow2_compressed_range(s, e, &coff, &clen);
        return check_host_range(bs, coff, 1, l2_off, idx);
    default:
        return 0;
    }
}

int qcow2_get_mapping(BlockDriverState *bs, uint64_t offset, uint64_t bytes,
                      uint64_t *pnum, uint64_t *host, uint64_t *l2_entry,
                      Qcow2ClusterType *type)
{
    Qcow2State *s = bs->opaque;
    uint64_t l1_index = offset >> (s->cluster_bits + s->l2_bits);
    uint64_t l2_index = (offset >> s->cluster_bits) & (s->l2_entries - 1);
    uint64_t in_cluster = qcow2_offset_in_cluster(s, offset);
    uint64_t left = (s->l2_entries - l2_index) * s->cluster_size -
                    in_cluster;
    uint64_t sidx = l2_index & (s->l2_slice_entries - 1);
    uint64_t want, n = 1, first, base, off;
    uint64_t *table;
    int ret;

    want = MIN(bytes, left);
    *host = 0;
    *l2_entry = 0;
    *type = QCOW2_CLUSTER_UNALLOCATED;
    *pnum = want;
    ret = l2_offset(bs, l1_index, &off);
    if (ret < 0 || !off) {
        return ret;             /* no table: the whole range is unallocated */
    }
    /* One cache entry (slice of the table) at a time. */
    want = MIN(want, (s->l2_slice_entries - sidx) * s->cluster_size -
                         in_cluster);
    *pnum = want;
    ret = qcow2_cache_get(bs, s->l2_cache, off + (l2_index - sidx) * 8,
                          (void **)&table);
    if (ret < 0) {
        return ret;
    }
    first = ldq_be(&table[sidx]);
    *type = qcow2_l2_entry_type(s, first);
    ret = check_entry(bs, first, *type, off, l2_index);
    if (ret < 0) {
        goto out;
    }
    base = first & QCOW2_L2E_OFFSET_MASK;
    if (*type != QCOW2_CLUSTER_COMPRESSED) {
        uint64_t need = DIV_ROUND_UP(in_cluster + want, s->cluster_size);
        for (; n < need; n++) {
            uint64_t e = ldq_be(&table[sidx + n]);
            if (qcow2_l2_entry_type(s, e) != *type) {
                break;
            }
            if (*type == QCOW2_CLUSTER_NORMAL &&
                e != first + n * s->cluster_size) {
                break;
            }
        }
        /*
         * The first cluster was checked above; if the rest of the run is
         * not clean, stop after the first one and let the next request
         * find (and report) the bad cluster.
         */
        if (*type == QCOW2_CLUSTER_NORMAL && n > 1 &&
            (base + (n - 1) * s->cluster_size >= s->file_len ||
             qcow2_meta_overlap(s, QCOW2_META_NONE, base + s->cluster_size,
                                (n - 1) * s->cluster_size) !=
                 QCOW2_META_NONE)) {
            n = 1;
        }
    }
    *pnum = MIN(n * s->cluster_size - in_cluster, want);
    *l2_entry = first;
    if (*type == QCOW2_CLUSTER_NORMAL || *type == QCOW2_CLUSTER_ZERO_ALLOC) {
        *host = base + in_cluster;
    }
out:
    qcow2_cache_put(s->l2_cache, (void **)&table);
    return ret;
}

static int write_l1_entry(BlockDriverState *bs, uint64_t i)
{
    Qcow2State *s = bs->opaque;

    return qcow2_write_table_entry(bs, QCOW2_META_L1, s->l1_offset, i,
                                   s->l1_table[i]);
}

/*
 * A new, zeroed L2 table for L1 entry @i, stable (with its refcount)
 * before L1 points at it.  Written straight to the file: the cache holds
 * slices, and only the one a caller needs is worth keeping.
 */
static int l2_allocate(BlockDriverState *bs, uint64_t i, uint64_t *l2_off)
{
    Qcow2State *s = bs->opaque;
    int64_t off;
    int ret;

    off = qcow2_alloc_clusters(bs, s->cluster_size);
    if (off < 0) {
        return (int)off;
    }
    qcow2_meta_add(s, off, s->cluster_size, QCOW2_META_L2);
    /* Nothing cached from an earlier life of the cluster. */
    qcow2_cache_discard(s->l2_cache, (uint64_t)off, s->cluster_size);
    ret = qcow2_pre_write_check(bs, QCOW2_META_L2, (uint64_t)off,
                                s->cluster_size);
    if (ret == 0) {
        ret = bdrv_pwrite_zeroes(bs->file, (uint64_t)off, s->cluster_size,
                                 0);
    }
    if (ret == 0) {
        ret = s->lazy_refcounts ? bdrv_flush(bs->file)
                                : qcow2_cache_flush(bs, s->refblock_cache);
    }
    if (ret == 0) {
        s->l1_table[i] = (uint64_t)off | QCOW2_OFLAG_COPIED;
        ret = write_l1_entry(bs, i);
        if (ret < 0) {
            s->l1_table[i] = 0;
        }
    }
    if (ret < 0) {
        qcow2_meta_remove(s, (uint64_t)off, s->cluster_size);
        qcow2_free_clusters(bs, (uint64_t)off, s->cluster_size);
        return ret;
    }
    *l2_off = (uint64_t)off;
    return 0;
}

/*
 * The L2 slice for guest @offset (allocating the table when @alloc and it
 * is missing; *table NULL when it is missing and not @alloc), and the
 * index of @offset's entry in it.
 */
static int get_l2_slice(BlockDriverState *bs, uint64_t offset, bool alloc,
                        uint64_t **table, uint64_t *sidx)
{
    Qcow2State *s = bs->opaque;
    uint64_t i = offset >> (s->cluster_bits + s->l2_bits), off;
    uint64_t l2_index = (offset >> s->cluster_bits) & (s->l2_entries - 1);
    uint64_t slice;
    int ret;

    *table = NULL;
    *sidx = l2_index & (s->l2_slice_entries - 1);
    slice = (l2_index - *sidx) * 8;
    if (i >= s->l1_size) {
        return -EIO;
    }
    ret = l2_offset(bs, i, &off);
    if (ret < 0) {
        return ret;
    }
    if (off && !(s->l1_table[i] & QCOW2_OFLAG_COPIED) && alloc) {
        /* Shared with a snapshot: we do not copy L2 tables. */
        return -ENOTSUP;
    }
    if (off) {
        return qcow2_cache_get(bs, s->l2_cache, off + slice, (void **)table);
    }
    if (!alloc) {
        return 0;
    }
    ret = l2_allocate(bs, i, &off);
    if (ret < 0) {
        return ret;
    }
    /* The file holds zeroes there: a clean entry, nothing to read. */
    ret = qcow2_cache_get_empty(bs, s->l2_cache, off + slice,
                                (void **)table);
    if (ret == 0) {
        memset(*table, 0, s->l2_slice_entries * 8);
    }
    return ret;
}

int qcow2_prepare_l2(BlockDriverState *bs, uint64_t offset)
{
    Qcow2State *s = bs->opaque;
    uint64_t *table, sidx;
    int ret = get_l2_slice(bs, offset, true, &table, &sidx);

    if (ret == 0) {
        qcow2_cache_put(s->l2_cache, (void **)&table);
    }
    return ret;
}

int qcow2_count_alloc_clusters(BlockDriverState *bs, uint64_t offset,
                               uint64_t max, uint64_t *count)
{
    Qcow2State *s = bs->opaque;
    uint64_t n = 0;
    uint64_t *table, sidx;
    int ret;

    ret = get_l2_slice(bs, offset, false, &table, &sidx);
    if (ret < 0) {
        return ret;
    }
    max = MIN(max, s->l2_slice_entries - sidx);
    if (!table) {
        *count = max;
        return 0;
    }
    for (; n < max; n++) {
        uint64_t e = ldq_be(&table[sidx + n]);
        if (qcow2_l2_entry_type(s, e) == QCOW2_CLUSTER_NORMAL &&
            (e & QCOW2_OFLAG_COPIED)) {
            break;
        }
    }
    qcow2_cache_put(s->l2_cache, (void **)&table);
    *count = n;
    return 0;
}

/* Apply @fn to @count entries from @offset (one L2 slice), then free. */
typedef uint64_t (*EntryFn)(Qcow2State *s, BlockDriverState *bs,
                            uint64_t old, uint64_t arg, bool *free_old);

static int update_entries(BlockDriverState *bs, uint64_t offset,
                          uint64_t count, bool alloc, EntryFn fn,
                          uint64_t arg, uint64_t step)
{
    Qcow2State *s = bs->opaque;
    g_autofree uint64_t *freed = g_try_new(uint64_t, count);
    uint64_t nfreed = 0;
    uint64_t *table, sidx;
    bool dirty = false;
    int ret;

    if (!freed) {
        return -ENOMEM;
    }
    ret = get_l2_slice(bs, offset, alloc, &table, &sidx);
    if (ret < 0 || !table) {
        return ret;
    }
    g_assert(sidx + count <= s->l2_slice_entries);
    if (!s->lazy_refcounts) {
        ret = qcow2_cache_set_dependency(bs, s->l2_cache, s->refblock_cache);
        if (ret < 0) {
            qcow2_cache_put(s->l2_cache, (void **)&table);
            return ret;
        }
    }
    for (uint64_t i = 0; i < count; i++) {
        uint64_t old = ldq_be(&table[sidx + i]);
        bool free_old = false;
        uint64_t e = fn(s, bs, old, arg + i * step, &free_old);
        if (e != old) {
            stq_be(&table[sidx + i], e);
            dirty = true;
        }
        if (free_old) {
            freed[nfreed++] = old;
        }
    }
    if (dirty) {
        qcow2_cache_mark_dirty(s->l2_cache, table);
    }
    qcow2_cache_put(s->l2_cache, (void **)&table);
    /*
     * The entries changed: a refcount drop that fails now only leaks the
     * old cluster, so it must not turn into a failure of the request (the
     * caller would undo an allocation that is already linked).
     */
    for (uint64_t i = 0; i < nfreed; i++) {
        qcow2_free_any_cluster(bs, freed[i]);
    }
    return 0;
}

static bool is_allocated(Qcow2State *s, uint64_t e)
{
    Qcow2ClusterType t = qcow2_l2_entry_type(s, e);

    return t == QCOW2_CLUSTER_NORMAL || t == QCOW2_CLUSTER_ZERO_ALLOC ||
           t == QCOW2_CLUSTER_COMPRESSED;
}

static uint64_t link_fn(Qcow2State *s, BlockDriverState *bs, uint64_t old,
                        uint64_t host, bool *free_old)
{
    *free_old = is_allocated(s, old);
    return host | QCOW2_OFLAG_COPIED;
}

/* Whole slices at a time, from @offset's slice on. */
static uint64_t slice_chunk(Qcow2State *s, uint64_t offset, uint64_t count)
{
    uint64_t l2_index = (offset >> s->cluster_bits) & (s->l2_entries - 1);

    return MIN(count, s->l2_slice_entries -
                          (l2_index & (s->l2_slice_entries - 1)));
}

int qcow2_link_clusters(BlockDriverState *bs, uint64_t offset,
                        uint64_t count, uint64_t host)
{
    Qcow2State *s = bs->opaque;

    while (count > 0) {
        uint64_t n = slice_chunk(s, offset, count);
        int ret = update_entries(bs, offset, n, true, link_fn, host,
                                 s->cluster_size);
        if (ret < 0) {
            return ret;
        }
        offset += n << s->cluster_bits;
        host += n << s->cluster_bits;
        count -= n;
    }
    return 0;
}

static uint64_t zero_fn(Qcow2State *s, BlockDriverState *bs, uint64_t old,
                        uint64_t unmap, bool *free_old)
{
    switch (qcow2_l2_entry_type(s, old)) {
    case QCOW2_CLUSTER_UNALLOCATED:
        return QCOW2_OFLAG_ZERO;
    case QCOW2_CLUSTER_ZERO_PLAIN:
        return old;
    case QCOW2_CLUSTER_ZERO_ALLOC:
        if (!unmap) {
            return old;
        }
        *free_old = true;
        return QCOW2_OFLAG_ZERO;
    case QCOW2_CLUSTER_NORMAL:
        if (!unmap && (old & QCOW2_OFLAG_COPIED)) {
            return old | QCOW2_OFLAG_ZERO;
        }
        *free_old = true;
        return QCOW2_OFLAG_ZERO;
    default:
        *free_old = true;
        return QCOW2_OFLAG_ZERO;
    }
}

int qcow2_zero_clusters(BlockDriverState *bs, uint64_t offset,
                        uint64_t count, bool unmap)
{
    Qcow2State *s = bs->opaque;

    while (count > 0) {
        uint64_t n = slice_chunk(s, offset, count);
        int ret = update_entries(bs, offset, n, true, zero_fn, unmap, 0);
        if (ret < 0) {
            return ret;
        }
        offset += n << s->cluster_bits;
        count -= n;
    }
    return 0;
}

static uint64_t discard_fn(Qcow2State *s, BlockDriverState *bs, uint64_t old,
                           uint64_t full, bool *free_old)
{
    bool allocated = is_allocated(s, old);

    *free_old = allocated;
    if (full) {
        return 0;
    }
    /* A discarded cluster reads as zeroes where the format can say so. */
    if (!allocated && !bs->backing) {
        return old;
    }
    return s->hdr.version >= 3 ? QCOW2_OFLAG_ZERO : 0;
}

int qcow2_discard_clusters(BlockDriverState *bs, uint64_t offset,
                           uint64_t count, bool full)
{
    Qcow2State *s = bs->opaque;

    while (count > 0) {
        uint64_t n = slice_chunk(s, offset, count);
        int ret = update_entries(bs, offset, n, false, discard_fn, full, 0);
        if (ret < 0) {
            return ret;
        }
        offset += n << s->cluster_bits;
        count -= n;
    }
    return 0;
}

int qcow2_grow_l1(BlockDriverState *bs, uint64_t min_size)
{
    Qcow2State *s = bs->opaque;
    uint64_t bytes = min_size * 8;
    uint64_t old_off = s->l1_offset, old_size = s->l1_size;
    g_autofree uint64_t *be = NULL;
    uint64_t *table;
    uint8_t hdr[12];
    int64_t off;
    int ret;

    if (min_size <= s->l1_size) {
        return 0;
    }
    if (bytes > QCOW2_MAX_L1_BYTES) {
        return -EFBIG;
    }
    table = g_try_new0(uint64_t, min_size);
    be = g_try_new0(uint64_t, min_size);
    if (!table || !be) {
        g_free(table);
        return -ENOMEM;
    }
    memcpy(table, s->l1_table, old_size * 8);
    for (uint64_t i = 0; i < min_size; i++) {
        stq_be(&be[i], table[i]);
    }
    off = qcow2_alloc_clusters(bs, bytes);
    if (off < 0) {
        g_free(table);
        return (int)off;
    }
    /* The table and its refcounts are stable before the header names it. */
    ret = qcow2_cache_flush(bs, s->refblock_cache);
    if (ret == 0) {
        ret = bdrv_pwrite(bs->file, off, bytes, be, 0);
    }
    if (ret == 0) {
        ret = bdrv_flush(bs->file);
    }
    if (ret == 0) {
        stl_be(hdr, (uint32_t)min_size);
        stq_be(hdr + 4, (uint64_t)off);
        ret = bdrv_pwrite(bs->file, QCOW2_HDR_L1_SIZE, 12, hdr, 0);
    }
    if (ret < 0) {
        g_free(table);
        qcow2_free_clusters(bs, off, bytes);
        return ret;
    }
    /*
     * The header names the new table now, so we use it whether or not
     * the sync below works; if it fails, the old table is leaked rather
     * than freed (the header on the disk may still name it).
     */
    ret = bdrv_flush(bs->file);
    g_free(s->l1_table);
    s->l1_table = table;
    s->l1_size = (uint32_t)min_size;
    s->l1_offset = (uint64_t)off;
    s->hdr.l1_size = s->l1_size;
    s->hdr.l1_table_offset = s->l1_offset;
    if (ret < 0) {
        return ret;
    }
    if (old_size) {
        return qcow2_free_clusters(bs, old_off, old_size * 8);
    }
    return 0;
}

int qcow2_preallocate(BlockDriverState *bs, uint64_t offset, uint64_t end)
{
    Qcow2State *s = bs->opaque;

    offset = ROUND_DOWN(offset, s->cluster_size);
    while (offset < end) {
        uint64_t pnum, host_unused, l2e, count;
        Qcow2ClusterType type;
        bool fresh = false;
        int64_t host;
        int ret = qcow2_get_mapping(bs, offset, end - offset, &pnum,
                                    &host_unused, &l2e, &type);

        if (ret < 0) {
            return ret;
        }
        count = qcow2_size_to_clusters(s, pnum);
        if (type != QCOW2_CLUSTER_UNALLOCATED) {
            offset += count << s->cluster_bits;
            continue;
        }
        ret = qcow2_prepare_l2(bs, offset);
        host = ret < 0 ? ret : qcow2_alloc_clusters_upto(bs, count, &count,
                                                         &fresh);
        if (host < 0) {
            return (int)host;
        }
        if (!fresh) {
            ret = bdrv_pwrite_zeroes(bs->file, host,
                                     count << s->cluster_bits, 0);
        }
        if (ret == 0) {
            ret = qcow2_link_clusters(bs, offset, count, host);
        }
        if (ret < 0) {
            return ret;
        }
        offset += count << s->cluster_bits;
    }
    return 0;
}
