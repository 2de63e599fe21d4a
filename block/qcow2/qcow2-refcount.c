/*
 * Host cluster refcounts: the refcount table (kept in memory), refcount
 * blocks (through the refcount block cache), cluster allocation and
 * freeing, creation of refcount blocks and growth of the refcount table.
 *
 * Ordering (docs/interop/qcow2.md, "Update ordering"): a new refcount
 * block is written and synced before the table entry that points at it; a
 * new refcount table is written and synced before the header points at
 * it, and the old one is freed only afterwards.  Lock held throughout.
 */
#include "qcow2.h"
#include "util/align.h"
#include "util/bswap.h"
#include "util/checked-math.h"

#include <errno.h>
#include <inttypes.h>
#include <string.h>

uint64_t qcow2_refblock_get(const void *block, uint64_t index, int order)
{
    const uint8_t *b = block;

    switch (order) {
    case 0:
        return (b[index / 8] >> (index % 8)) & 1;
    case 1:
        return (b[index / 4] >> (2 * (index % 4))) & 3;
    case 2:
        return (b[index / 2] >> (4 * (index % 2))) & 15;
    case 3:
        return b[index];
    case 4:
        return ldw_be(b + 2 * index);
    case 5:
        return ldl_be(b + 4 * index);
    default:
        return ldq_be(b + 8 * index);
    }
}

void qcow2_refblock_set(void *block, uint64_t index, int order,
                        uint64_t value)
{
    uint8_t *b = block;
    int bits, shift;

    switch (order) {
    case 0:
    case 1:
    case 2:
        bits = 1 << order;
        shift = (int)((index % (8 / bits)) * bits);
        b += index / (8 / bits);
        *b = (uint8_t)((*b & ~(((1 << bits) - 1) << shift)) |
                       (value << shift));
        break;
    case 3:
        b[index] = (uint8_t)value;
        break;
    case 4:
        stw_be(b + 2 * index, (uint16_t)value);
        break;
    case 5:
        stl_be(b + 4 * index, (uint32_t)value);
        break;
    default:
        stq_be(b + 8 * index, value);
        break;
    }
}

int qcow2_refcount_init(BlockDriverState *bs, GError **errp)
{
    Qcow2State *s = bs->opaque;
    uint64_t bytes = (uint64_t)s->hdr.refcount_table_clusters *
                     s->cluster_size;
    int ret;

    s->reftable_offset = s->hdr.refcount_table_offset;
    s->reftable_size = bytes / 8;
    s->reftable = g_try_malloc(bytes);
    if (!s->reftable) {
        error_setg(errp, "Could not allocate the refcount table (%" PRIu64
                   " bytes)", bytes);
        return -ENOMEM;
    }
    ret = qcow2_read_host(bs, s->reftable_offset, bytes, s->reftable);
    if (ret < 0) {
        error_setg_errno(errp, -ret, "Could not read the refcount table");
        return ret;
    }
    for (uint64_t i = 0; i < s->reftable_size; i++) {
        s->reftable[i] = ldq_be(&s->reftable[i]);
    }
    s->free_cluster_index = 0;
    return 0;
}

void qcow2_refcount_close(BlockDriverState *bs)
{
    Qcow2State *s = bs->opaque;

    g_free(s->reftable);
    s->reftable = NULL;
}

/* Record that [start, end) was handed out; whether it was never written. */
static bool note_alloc(Qcow2State *s, uint64_t start, uint64_t end)
{
    bool fresh = start >= s->fresh_offset;

    s->fresh_offset = MAX(s->fresh_offset, end);
    return fresh;
}

/* Growth step of the host file: 16 MiB (a multiple of every cluster size). */
#define QCOW2_GROW_CHUNK (UINT64_C(16) * 1024 * 1024)

int qcow2_grow_file(BlockDriverState *bs, uint64_t end)
{
    Qcow2State *s = bs->opaque;
    int ret;

    s->alloc_end = MAX(s->alloc_end, end);
    if (end <= s->file_len) {
        return 0;
    }
    end = ROUND_UP(end, QCOW2_GROW_CHUNK);
    ret = bdrv_truncate(bs->file, end, false, PREALLOC_MODE_OFF, NULL);
    if (ret < 0) {
        return ret;
    }
    __atomic_store_n(&s->file_len, end, __ATOMIC_RELEASE);
    return 0;
}

int qcow2_trim_file(BlockDriverState *bs)
{
    Qcow2State *s = bs->opaque;
    int ret;

    if (s->file_len <= s->alloc_end) {
        return 0;
    }
    ret = bdrv_truncate(bs->file, s->alloc_end, true, PREALLOC_MODE_OFF,
                        NULL);
    if (ret == 0) {
        __atomic_store_n(&s->file_len, s->alloc_end, __ATOMIC_RELEASE);
    }
    return ret;
}

/* The refcount block offset for reftable index @i (0 if none), checked. */
static int refblock_offset(BlockDriverState *bs, uint64_t i, uint64_t *off)
{
    Qcow2State *s = bs->opaque;
    uint64_t e;

    *off = 0;
    if (i >= s->reftable_size) {
        return 0;
    }
    e = s->reftable[i];
    if ((e & QCOW2_REFT_OFFSET_MASK) == 0) {
        return 0;
    }
    if (qcow2_offset_in_cluster(s, e & QCOW2_REFT_OFFSET_MASK) ||
        (e & QCOW2_REFT_RESERVED_MASK)) {
        qcow2_signal_corruption(bs, "Refblock offset %#" PRIx64 " unaligned "
                                "(reftable index: %#" PRIx64 ")", e, i);
        return -EIO;
    }
    if ((e & QCOW2_REFT_OFFSET_MASK) >= s->file_len) {
        qcow2_signal_corruption(bs, "Refblock at %#" PRIx64 " is beyond the "
                                "end of the image file (reftable index: %#"
                                PRIx64 ")", e, i);
        return -EIO;
    }
    *off = e & QCOW2_REFT_OFFSET_MASK;
    return 0;
}

int qcow2_get_refcount(BlockDriverState *bs, uint64_t cluster_index,
                       uint64_t *refcount)
{
    Qcow2State *s = bs->opaque;
    uint64_t off;
    void *block;
    int ret;

    *refcount = 0;
    ret = refblock_offset(bs, cluster_index >> s->refblock_bits, &off);
    if (ret < 0 || !off) {
        return ret;
    }
    ret = qcow2_cache_get(bs, s->refblock_cache, off, &block);
    if (ret < 0) {
        return ret;
    }
    *refcount = qcow2_refblock_get(block, cluster_index &
                                   (s->refblock_entries - 1),
                                   s->refcount_order);
    qcow2_cache_put(s->refblock_cache, &block);
    return 0;
}

static int write_reftable_entry(BlockDriverState *bs, uint64_t i)
{
    Qcow2State *s = bs->opaque;

    return qcow2_write_table_entry(bs, QCOW2_META_REFTABLE,
                                   s->reftable_offset, i, s->reftable[i]);
}

/*
 * Create the missing refcount block for reftable index @i.  Every cluster
 * it covers is free, and the allocator never hands out the first one of a
 * block that has no refcount block: that is where the block goes,
 * describing itself.
 */
static int create_refblock(BlockDriverState *bs, uint64_t i)
{
    Qcow2State *s = bs->opaque;
    uint64_t off = (i << s->refblock_bits) << s->cluster_bits;
    void *block;
    int ret;

    if (off == 0 || qcow2_meta_overlap(s, QCOW2_META_NONE, off,
                                       s->cluster_size) != QCOW2_META_NONE) {
        qcow2_signal_corruption(bs, "Refcount block %#" PRIx64 " is missing "
                                "but its clusters are in use", i);
        return -EIO;
    }
    ret = qcow2_grow_file(bs, off + s->cluster_size);
    if (ret < 0) {
        return ret;
    }
    note_alloc(s, off, off + s->cluster_size);
    qcow2_meta_add(s, off, s->cluster_size, QCOW2_META_REFBLOCK);
    ret = qcow2_cache_get_empty(bs, s->refblock_cache, off, &block);
    if (ret < 0) {
        qcow2_meta_remove(s, off, s->cluster_size);
        return ret;
    }
    memset(block, 0, s->cluster_size);
    qcow2_refblock_set(block, 0, s->refcount_order, 1);
    qcow2_cache_mark_dirty(s->refblock_cache, block);
    qcow2_cache_put(s->refblock_cache, &block);
    /* The block must be stable before the table points at it. */
    ret = qcow2_cache_flush(bs, s->refblock_cache);
    if (ret == 0) {
        s->reftable[i] = off;
        ret = write_reftable_entry(bs, i);
    }
    if (ret < 0) {
        /*
         * Nothing points at the block: forget it (a dirty copy in the
         * cache too), so that the next allocation here creates it anew
         * instead of finding its cluster "in use".
         */
        s->reftable[i] = 0;
        qcow2_cache_discard(s->refblock_cache, off, s->cluster_size);
        qcow2_meta_remove(s, off, s->cluster_size);
        return ret;
    }
    return 0;
}

/* Refcount blocks and table laid out at cluster @start, self-describing. */
static int write_new_refstructure(BlockDriverState *bs, uint64_t start,
                                  uint64_t nblocks, uint64_t tclusters,
                                  uint64_t *table, uint64_t entries)
{
    Qcow2State *s = bs->opaque;
    uint64_t first_rt = start >> s->refblock_bits;
    uint64_t end = start + nblocks + tclusters;
    g_autofree uint8_t *buf = g_try_malloc0(s->cluster_size);
    g_autofree uint64_t *be = g_try_new(uint64_t, entries);
    int ret;

    if (!buf || !be) {
        return -ENOMEM;
    }
    for (uint64_t k = 0; k < nblocks; k++) {
        memset(buf, 0, s->cluster_size);
        for (uint64_t c = start; c < end; c++) {
            if ((c >> s->refblock_bits) == first_rt + k) {
                qcow2_refblock_set(buf, c & (s->refblock_entries - 1),
                                   s->refcount_order, 1);
            }
        }
        ret = bdrv_pwrite(bs->file, (start + k) << s->cluster_bits,
                          s->cluster_size, buf, 0);
        if (ret < 0) {
            return ret;
        }
    }
    for (uint64_t k = 0; k < entries; k++) {
        stq_be(&be[k], table[k]);
    }
    ret = bdrv_pwrite(bs->file, (start + nblocks) << s->cluster_bits,
                      entries * 8, be, 0);
    return ret < 0 ? ret : bdrv_flush(bs->file);
}

/* Grow the refcount table so that index @need exists. */
static int grow_reftable(BlockDriverState *bs, uint64_t need)
{
    Qcow2State *s = bs->opaque;
    uint64_t old = s->reftable_size, old_off = s->reftable_offset;
    uint64_t target = MAX(need + 1, old + old / 2 + 1);
    uint64_t start, first_rt, nblocks = 1, tclusters, entries;
    uint64_t *table;
    uint8_t hdr[12];
    int ret;

    start = MAX(old << s->refblock_bits,
                qcow2_size_to_clusters(s, s->alloc_end));
    start = ROUND_UP(start, s->refblock_entries);
    first_rt = start >> s->refblock_bits;
    for (;;) {
        uint64_t n = MAX(target, first_rt + nblocks);
        tclusters = DIV_ROUND_UP(n * 8, s->cluster_size);
        if (nblocks * s->refblock_entries >= nblocks + tclusters) {
            break;
        }
        nblocks++;
    }
    entries = tclusters * s->cluster_size / 8;
    if (entries * 8 > QCOW2_MAX_REFTABLE_BYTES) {
        qcow2_signal_corruption(bs, "Refcount table would exceed %d bytes",
                                QCOW2_MAX_REFTABLE_BYTES);
        return -EFBIG;
    }
    table = g_try_new0(uint64_t, entries);
    if (!table) {
        return -ENOMEM;
    }
    memcpy(table, s->reftable, old * 8);
    for (uint64_t k = 0; k < nblocks; k++) {
        table[first_rt + k] = (start + k) << s->cluster_bits;
    }
    ret = qcow2_grow_file(bs, (start + nblocks + tclusters) <<
                                  s->cluster_bits);
    /* Written from here on, even if this fails: no longer fresh. */
    note_alloc(s, start << s->cluster_bits,
               (start + nblocks + tclusters) << s->cluster_bits);
    if (ret == 0) {
        ret = write_new_refstructure(bs, start, nblocks, tclusters, table,
                                     entries);
    }
    if (ret == 0) {
        stq_be(hdr, (start + nblocks) << s->cluster_bits);
        stl_be(hdr + 8, (uint32_t)tclusters);
        ret = bdrv_pwrite(bs->file, QCOW2_HDR_REFTABLE_OFFSET, 12, hdr, 0);
    }
    if (ret < 0) {
        g_free(table);
        return ret;
    }
    /*
     * The header names the new table now, so we use it whether or not
     * the sync below works; if it fails, the old table is leaked rather
     * than freed (the header on the disk may still name it).
     */
    ret = bdrv_flush(bs->file);
    g_free(s->reftable);
    s->reftable = table;
    s->reftable_size = entries;
    s->reftable_offset = (start + nblocks) << s->cluster_bits;
    s->hdr.refcount_table_offset = s->reftable_offset;
    s->hdr.refcount_table_clusters = (uint32_t)tclusters;
    qcow2_meta_add(s, start << s->cluster_bits, nblocks << s->cluster_bits,
                   QCOW2_META_REFBLOCK);
    if (ret < 0) {
        return ret;
    }
    return qcow2_free_clusters(bs, old_off, old * 8);
}

/* Make sure the refcount block covering cluster @c exists. */
static int ensure_refblock(BlockDriverState *bs, uint64_t c, bool *changed)
{
    Qcow2State *s = bs->opaque;
    uint64_t i = c >> s->refblock_bits, off;
    int ret;

    if (i >= s->reftable_size) {
        *changed = true;
        ret = grow_reftable(bs, i);
        if (ret < 0) {
            return ret;
        }
    }
    ret = refblock_offset(bs, i, &off);
    if (ret < 0 || off) {
        return ret;
    }
    return create_refblock(bs, i);
}

static int update_refcount(BlockDriverState *bs, uint64_t offset,
                           uint64_t length, int64_t addend, bool punch)
{
    Qcow2State *s = bs->opaque;
    uint64_t first, last, c;
    int ret = 0;

    if (length == 0 || addend == 0) {
        return 0;
    }
    if (addend < 0 && !s->lazy_refcounts) {
        ret = qcow2_cache_set_dependency(bs, s->refblock_cache, s->l2_cache);
        if (ret < 0) {
            return ret;
        }
    }
    first = offset >> s->cluster_bits;
    last = (offset + length - 1) >> s->cluster_bits;
    for (c = first; c <= last && ret == 0;) {
        uint64_t i = c >> s->refblock_bits, off;
        bool changed = false;
        void *block;

        if (addend > 0) {
            ret = ensure_refblock(bs, c, &changed);
            if (ret < 0) {
                break;
            }
        }
        ret = refblock_offset(bs, i, &off);
        if (ret == 0 && !off) {
            qcow2_signal_corruption(bs, "Freeing cluster %#" PRIx64 " that "
                                    "has no refcount block",
                                    c << s->cluster_bits);
            ret = -EIO;
        }
        if (ret == 0) {
            ret = qcow2_cache_get(bs, s->refblock_cache, off, &block);
        }
        if (ret < 0) {
            break;
        }
        for (; c <= last && (c >> s->refblock_bits) == i; c++) {
            uint64_t idx = c & (s->refblock_entries - 1);
            uint64_t rc = qcow2_refblock_get(block, idx, s->refcount_order);
            if (addend < 0 && rc < (uint64_t)-addend) {
                qcow2_signal_corruption(bs, "Refcount of cluster %#" PRIx64
                                        " would become negative",
                                        c << s->cluster_bits);
                ret = -EIO;
                break;
            }
            if (addend > 0 && s->refcount_max - rc < (uint64_t)addend) {
                ret = -ERANGE;
                break;
            }
            rc += addend;
            qcow2_refblock_set(block, idx, s->refcount_order, rc);
            if (rc == 0) {
                uint64_t o = c << s->cluster_bits;
                s->free_cluster_index = MIN(s->free_cluster_index, c);
                if ((s->compressed_cursor >> s->cluster_bits) == c) {
                    s->compressed_cursor = 0;   /* may be reused */
                }
                qcow2_cache_discard(s->l2_cache, o, s->cluster_size);
                if (punch && s->pass_discard) {
                    bdrv_pdiscard(bs->file, o, s->cluster_size);
                }
            }
        }
        qcow2_cache_mark_dirty(s->refblock_cache, block);
        qcow2_cache_put(s->refblock_cache, &block);
    }
    return ret;
}

int qcow2_update_refcount(BlockDriverState *bs, uint64_t offset,
                          uint64_t length, int64_t addend)
{
    return update_refcount(bs, offset, length, addend, false);
}

int qcow2_free_clusters(BlockDriverState *bs, uint64_t offset, uint64_t size)
{
    return update_refcount(bs, offset, size, -1, false);
}

void qcow2_compressed_range(Qcow2State *s, uint64_t l2_entry,
                            uint64_t *offset, uint64_t *bytes)
{
    uint64_t desc = l2_entry & QCOW2_L2E_COMPRESSED_DESC_MASK;
    uint64_t nsect = ((desc >> s->csize_shift) & s->csize_mask) + 1;

    *offset = desc & s->cluster_offset_mask;
    *bytes = nsect * QCOW2_COMPRESSED_SECTOR_SIZE -
             (*offset & (QCOW2_COMPRESSED_SECTOR_SIZE - 1));
}

int qcow2_free_any_cluster(BlockDriverState *bs, uint64_t l2_entry)
{
    Qcow2State *s = bs->opaque;
    uint64_t off, bytes;

    switch (qcow2_l2_entry_type(s, l2_entry)) {
    case QCOW2_CLUSTER_NORMAL:
    case QCOW2_CLUSTER_ZERO_ALLOC:
        return update_refcount(bs, l2_entry & QCOW2_L2E_OFFSET_MASK,
                               s->cluster_size, -1, true);
    case QCOW2_CLUSTER_COMPRESSED:
        qcow2_compressed_range(s, l2_entry, &off, &bytes);
        return update_refcount(bs, off, bytes, -1, false);
    default:
        return 0;
    }
}

/*
 * First run of @n clusters whose refcounts are all zero; with @partial,
 * the first free run however short (up to @n), its length in *found.
 */
static int find_free_run(BlockDriverState *bs, uint64_t n, bool partial,
                         uint64_t *start, uint64_t *found,
                         uint64_t *first_free)
{
    Qcow2State *s = bs->opaque;
    uint64_t idx = s->free_cluster_index, run = 0, run_start = idx;
    uint64_t mask = s->refblock_entries - 1;
    bool stop = false;
    int ret;

    *first_free = UINT64_MAX;
    while (run < n) {
        uint64_t off;
        void *block;

        ret = refblock_offset(bs, idx >> s->refblock_bits, &off);
        if (ret < 0) {
            return ret;
        }
        if (!off) {
            uint64_t k;
            if ((idx & mask) == 0) {
                /* Reserved for this block's own refcount block. */
                if (partial && run) {
                    break;
                }
                run = 0;
                run_start = ++idx;
            }
            k = MIN(s->refblock_entries - (idx & mask), n - run);
            *first_free = MIN(*first_free, idx);
            run += k;
            idx += k;
            continue;
        }
        ret = qcow2_cache_get(bs, s->refblock_cache, off, &block);
        if (ret < 0) {
            return ret;
        }
        do {
            if (qcow2_refblock_get(block, idx & mask, s->refcount_order)) {
                if (partial && run) {
                    stop = true;
                    break;
                }
                run = 0;
                run_start = idx + 1;
            } else {
                *first_free = MIN(*first_free, idx);
                run++;
            }
            idx++;
        } while (run < n && (idx & mask));
        qcow2_cache_put(s->refblock_cache, &block);
        if (stop) {
            break;
        }
    }
    *start = run_start;
    *found = run;
    return 0;
}

/*
 * An allocation of at least a refcount block's worth of clusters (tiny
 * clusters only): a fresh region at the end of the file, with its own
 * refcount blocks in front, describing themselves and the run.
 */
static int64_t alloc_big(BlockDriverState *bs, uint64_t n)
{
    Qcow2State *s = bs->opaque;
    uint64_t start, first_rt, nblocks = 1, end;
    g_autofree uint8_t *buf = g_try_malloc(s->cluster_size);
    int ret;

    if (!buf) {
        return -ENOMEM;
    }
    for (int tries = 0;; tries++) {
        start = ROUND_UP(qcow2_size_to_clusters(s, s->alloc_end),
                         s->refblock_entries);
        while (nblocks * s->refblock_entries < nblocks + n) {
            nblocks++;
        }
        first_rt = start >> s->refblock_bits;
        if (first_rt + nblocks <= s->reftable_size) {
            break;
        }
        if (tries > 16) {
            return -EIO;
        }
        ret = grow_reftable(bs, first_rt + 2 * nblocks + 16);
        if (ret < 0) {
            return ret;
        }
    }
    end = start + nblocks + n;
    if (end > (QCOW2_MAX_HOST_OFFSET >> s->cluster_bits)) {
        return -EFBIG;
    }
    ret = qcow2_grow_file(bs, end << s->cluster_bits);
    /* Written from here on, even if this fails: no longer fresh. */
    note_alloc(s, start << s->cluster_bits, end << s->cluster_bits);
    for (uint64_t k = 0; k < nblocks && ret == 0; k++) {
        memset(buf, 0, s->cluster_size);
        for (uint64_t c = start; c < end; c++) {
            if ((c >> s->refblock_bits) == first_rt + k) {
                qcow2_refblock_set(buf, c & (s->refblock_entries - 1),
                                   s->refcount_order, 1);
            }
        }
        ret = bdrv_pwrite(bs->file, (start + k) << s->cluster_bits,
                          s->cluster_size, buf, 0);
    }
    if (ret == 0) {
        ret = bdrv_flush(bs->file);
    }
    for (uint64_t k = 0; k < nblocks && ret == 0; k++) {
        if (s->reftable[first_rt + k]) {
            qcow2_signal_corruption(bs, "Refcount block %#" PRIx64 " exists "
                                    "beyond the end of the file",
                                    first_rt + k);
            return -EIO;
        }
        s->reftable[first_rt + k] = (start + k) << s->cluster_bits;
        qcow2_meta_add(s, (start + k) << s->cluster_bits, s->cluster_size,
                       QCOW2_META_REFBLOCK);
        ret = write_reftable_entry(bs, first_rt + k);
        if (ret < 0) {
            /*
             * Not linked: its clusters stay free for a later refcount
             * block (the blocks linked before it only leak the run).
             */
            s->reftable[first_rt + k] = 0;
            qcow2_meta_remove(s, (start + k) << s->cluster_bits,
                              s->cluster_size);
        }
    }
    if (ret < 0) {
        return ret;
    }
    return (int64_t)((start + nblocks) << s->cluster_bits);
}

int64_t qcow2_alloc_clusters(BlockDriverState *bs, uint64_t size)
{
    return qcow2_alloc_clusters_fresh(bs, size, NULL);
}

/* Allocate @n clusters (or, with @partial, at least one and up to @n). */
static int64_t alloc_run(BlockDriverState *bs, uint64_t n, bool partial,
                         uint64_t *count, bool *fresh)
{
    Qcow2State *s = bs->opaque;
    uint64_t start, first_free, end, found;
    bool f;
    int ret;

    g_assert(n > 0);
    if (n >= s->refblock_entries && !partial) {
        int64_t r = alloc_big(bs, n);
        if (fresh) {
            *fresh = true;
        }
        *count = n;
        return r;
    }
    n = MIN(n, s->refblock_entries - 1);
    for (int tries = 0;; tries++) {
        bool changed = false;

        if (tries > 64) {
            return -EIO;
        }
        ret = find_free_run(bs, n, partial, &start, &found, &first_free);
        if (ret < 0) {
            return ret;
        }
        if (checked_add(start, found, &end) ||
            end > (QCOW2_MAX_HOST_OFFSET >> s->cluster_bits)) {
            return -EFBIG;
        }
        for (uint64_t c = start; c < end && !changed;
             c = ROUND_DOWN(c, s->refblock_entries) + s->refblock_entries) {
            ret = ensure_refblock(bs, c, &changed);
            if (ret < 0) {
                return ret;
            }
        }
        if (!changed) {
            break;
        }
    }
    if (qcow2_meta_overlap(s, QCOW2_META_NONE, start << s->cluster_bits,
                           found << s->cluster_bits) != QCOW2_META_NONE) {
        qcow2_signal_corruption(bs, "Cluster allocation at %#" PRIx64
                                " would overlap metadata with refcount 0",
                                start << s->cluster_bits);
        return -EIO;
    }
    ret = update_refcount(bs, start << s->cluster_bits,
                          found << s->cluster_bits, 1, false);
    if (ret < 0) {
        return ret;
    }
    s->free_cluster_index = first_free == start ? end : first_free;
    ret = qcow2_grow_file(bs, end << s->cluster_bits);
    if (ret < 0) {
        return ret;
    }
    f = note_alloc(s, start << s->cluster_bits, end << s->cluster_bits);
    if (fresh) {
        *fresh = f;
    }
    *count = found;
    return (int64_t)(start << s->cluster_bits);
}

int64_t qcow2_alloc_clusters_fresh(BlockDriverState *bs, uint64_t size,
                                   bool *fresh)
{
    Qcow2State *s = bs->opaque;
    uint64_t count;

    return alloc_run(bs, qcow2_size_to_clusters(s, size), false, &count,
                     fresh);
}

int64_t qcow2_alloc_clusters_upto(BlockDriverState *bs, uint64_t max,
                                  uint64_t *count, bool *fresh)
{
    return alloc_run(bs, max, true, count, fresh);
}
