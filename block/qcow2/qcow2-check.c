/*
 * Consistency check and repair (qemu-img check [-r leaks|all]): refcounts
 * are computed from scratch by walking every structure that references
 * clusters (header, L1/L2 tables of the active image and of snapshots,
 * refcount table and blocks, bitmaps), then compared with the stored ones.
 * Leaks are fixed in place; refcounts that are too low are fixed in place
 * when their refcount block is sound, otherwise the whole refcount
 * structure is rebuilt at the end of the file.  Messages go to stderr in
 * the format qemu-img users know.  Runs with the metadata lock held and
 * does its own I/O (caches are written first and dropped where changed).
 */
#include "qcow2.h"
#include "qcow2-checkpoint.h"
#include "util/align.h"
#include "util/bswap.h"
#include "util/checked-math.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

struct Qcow2CheckRefs {
    BlockDriverState *bs;
    BdrvCheckResult *res;
    BdrvCheckMode fix;
    uint32_t *refs;          /* computed refcount per host cluster */
    uint64_t nb;             /* clusters in @refs */
    uint64_t file_clusters;
    uint64_t file_len;
    bool rebuild;            /* refcount structure itself is broken */
    uint64_t next_contig;    /* for fragmentation statistics */
    uint8_t *blk;            /* stored refcount block @blk_index */
    uint64_t blk_index;
};

/* Snapshot table entries we need (docs/interop/qcow2.md, "Snapshots"). */
#define SNAPSHOT_ENTRY_FIXED 40
#define SNAPSHOT_MAX_EXTRA 1024

BdrvCheckMode qcow2_check_fix_mode(Qcow2CheckRefs *r)
{
    return r->fix;
}

int qcow2_check_inc_refs(Qcow2CheckRefs *r, uint64_t offset, uint64_t size)
{
    Qcow2State *s = r->bs->opaque;
    uint64_t first, last;

    if (size == 0) {
        return 0;
    }
    first = offset >> s->cluster_bits;
    last = (offset + size - 1) >> s->cluster_bits;
    if (last >= r->nb) {
        uint64_t n = MAX(last + 1, r->nb + r->nb / 2);
        uint32_t *p;
        if (last >= r->file_clusters + (UINT64_C(1) << 24)) {
            fprintf(stderr, "ERROR: reference to cluster %" PRIu64
                    " far beyond the end of the file\n", last);
            r->res->corruptions++;
            return 0;
        }
        p = g_try_realloc(r->refs, n * sizeof(uint32_t));
        if (!p) {
            r->res->check_errors++;
            return -ENOMEM;
        }
        memset(p + r->nb, 0, (n - r->nb) * sizeof(uint32_t));
        r->refs = p;
        r->nb = n;
    }
    for (uint64_t c = first; c <= last; c++) {
        if (r->refs[c] != UINT32_MAX) {
            r->refs[c]++;
        }
    }
    return 0;
}

/* Whether [off, off + len) lies inside the file, else report it. */
static bool in_file(Qcow2CheckRefs *r, const char *what, uint64_t off,
                    uint64_t len)
{
    uint64_t end;

    if (checked_add(off, len, &end) || off >= r->file_len) {
        fprintf(stderr, "ERROR %s at offset %#" PRIx64 " is beyond the end "
                "of the image file\n", what, off);
        return false;
    }
    return true;
}

static int write_table(BlockDriverState *bs, Qcow2MetaKind kind,
                       uint64_t off, const void *buf, uint64_t len)
{
    int ret = qcow2_pre_write_check(bs, kind, off, len);

    return ret < 0 ? ret : bdrv_pwrite(bs->file, off, len, buf, 0);
}

/* One L2 entry: count its clusters; repair (in @table) what is broken. */
static bool check_l2_entry(Qcow2CheckRefs *r, uint64_t *slot, bool active)
{
    BlockDriverState *bs = r->bs;
    Qcow2State *s = bs->opaque;
    uint64_t e = ldq_be(slot), off = e & QCOW2_L2E_OFFSET_MASK, coff, clen;
    Qcow2ClusterType type = qcow2_l2_entry_type(s, e);
    bool bad;

    switch (type) {
    case QCOW2_CLUSTER_COMPRESSED:
        qcow2_compressed_range(s, e, &coff, &clen);
        if (e & QCOW2_OFLAG_COPIED) {
            fprintf(stderr, "ERROR: coffset=0x%" PRIx64 ": Compressed "
                    "cluster has QCOW_OFLAG_COPIED set\n", coff);
            r->res->corruptions++;
        }
        if (!in_file(r, "compressed cluster", coff, clen)) {
            r->res->corruptions++;
            return false;
        }
        qcow2_check_inc_refs(r, coff & ~UINT64_C(511),
                             clen + (coff & 511));
        if (active) {
            /* Compressed clusters count as fragmented, as in QEMU. */
            r->res->allocated_clusters++;
            r->res->compressed_clusters++;
            r->res->fragmented_clusters++;
        }
        return false;
    case QCOW2_CLUSTER_NORMAL:
    case QCOW2_CLUSTER_ZERO_ALLOC:
        bad = qcow2_offset_in_cluster(s, off) != 0;
        if (bad) {
            fprintf(stderr, "%s offset=%" PRIx64 ": Cluster is not properly "
                    "aligned; L2 entry corrupted\n",
                    (r->fix & BDRV_FIX_ERRORS) ? "Repairing" : "ERROR", off);
        } else if (!in_file(r, "data cluster", off, s->cluster_size)) {
            bad = true;
        }
        if (bad) {
            if (!(r->fix & BDRV_FIX_ERRORS)) {
                r->res->corruptions++;
                return false;
            }
            /* The data is lost either way: make it read as zeroes. */
            stq_be(slot, s->hdr.version >= 3 ? QCOW2_OFLAG_ZERO : 0);
            r->res->corruptions_fixed++;
            return true;
        }
        qcow2_check_inc_refs(r, off, s->cluster_size);
        if (active) {
            r->res->allocated_clusters++;
            if (r->next_contig && off != r->next_contig) {
                r->res->fragmented_clusters++;
            }
            r->next_contig = off + s->cluster_size;
        }
        return false;
    default:
        return false;
    }
}

static int check_l2(Qcow2CheckRefs *r, uint64_t l2_off, bool active)
{
    BlockDriverState *bs = r->bs;
    Qcow2State *s = bs->opaque;
    g_autofree uint64_t *t = g_try_malloc(s->cluster_size);
    bool changed = false;
    int ret;

    if (!t) {
        r->res->check_errors++;
        return -ENOMEM;
    }
    ret = qcow2_read_host(bs, l2_off, s->cluster_size, t);
    if (ret < 0) {
        fprintf(stderr, "ERROR: I/O error in check_refcounts_l2\n");
        r->res->check_errors++;
        return ret;
    }
    r->next_contig = 0;     /* fragmentation is counted per L2 table */
    for (uint64_t i = 0; i < s->l2_entries; i++) {
        changed |= check_l2_entry(r, &t[i], active);
    }
    if (changed) {
        qcow2_cache_discard(s->l2_cache, l2_off, s->cluster_size);
        ret = write_table(bs, QCOW2_META_L2, l2_off, t, s->cluster_size);
        if (ret < 0) {
            r->res->check_errors++;
        }
    }
    return 0;
}

static int check_l1(Qcow2CheckRefs *r, uint64_t l1_off, uint64_t l1_size,
                    bool active)
{
    BlockDriverState *bs = r->bs;
    Qcow2State *s = bs->opaque;
    g_autofree uint64_t *l1 = NULL;
    int ret;

    if (l1_size == 0) {
        return 0;
    }
    if (l1_size > QCOW2_MAX_L1_BYTES / 8 ||
        qcow2_offset_in_cluster(s, l1_off) ||
        !in_file(r, "L1 table", l1_off, l1_size * 8)) {
        fprintf(stderr, "ERROR: invalid L1 table (offset %#" PRIx64
                ", %" PRIu64 " entries)\n", l1_off, l1_size);
        r->res->corruptions++;
        return 0;
    }
    qcow2_check_inc_refs(r, l1_off, l1_size * 8);
    if (active) {
        l1 = g_memdup2(s->l1_table, l1_size * 8);
    } else {
        l1 = g_try_new(uint64_t, l1_size);
        if (!l1) {
            r->res->check_errors++;
            return -ENOMEM;
        }
        ret = qcow2_read_host(bs, l1_off, l1_size * 8, l1);
        if (ret < 0) {
            r->res->check_errors++;
            return ret;
        }
        for (uint64_t i = 0; i < l1_size; i++) {
            l1[i] = ldq_be(&l1[i]);
        }
    }
    for (uint64_t i = 0; i < l1_size; i++) {
        uint64_t off = l1[i] & QCOW2_L1E_OFFSET_MASK;
        if (!off) {
            continue;
        }
        if (qcow2_offset_in_cluster(s, off)) {
            fprintf(stderr, "ERROR l2_offset=%" PRIx64 ": Table is not "
                    "cluster aligned; L1 entry corrupted\n", off);
            r->res->corruptions++;
            continue;
        }
        if (!in_file(r, "L2 table", off, s->cluster_size)) {
            r->res->corruptions++;
            continue;
        }
        qcow2_check_inc_refs(r, off, s->cluster_size);
        ret = check_l2(r, off, active);
        if (ret < 0) {
            return ret;
        }
    }
    return 0;
}

static int check_snapshots(Qcow2CheckRefs *r)
{
    BlockDriverState *bs = r->bs;
    Qcow2State *s = bs->opaque;
    uint64_t off = s->hdr.snapshots_offset;
    uint8_t e[SNAPSHOT_ENTRY_FIXED];
    int ret;

    for (uint32_t i = 0; i < s->hdr.nb_snapshots; i++) {
        uint64_t start = off, len;
        ret = qcow2_read_host(bs, off, sizeof(e), e);
        if (ret < 0) {
            r->res->check_errors++;
            return ret;
        }
        if (ldl_be(e + 36) > SNAPSHOT_MAX_EXTRA) {
            fprintf(stderr, "ERROR snapshot %u has too much extra data\n", i);
            r->res->corruptions++;
            return 0;
        }
        len = SNAPSHOT_ENTRY_FIXED + ldl_be(e + 36) + ldw_be(e + 12) +
              ldw_be(e + 14);
        off = start + ROUND_UP(len, 8);
        qcow2_check_inc_refs(r, start, off - start);
        ret = check_l1(r, ldq_be(e), ldl_be(e + 8), false);
        if (ret < 0) {
            return ret;
        }
    }
    return 0;
}

static int check_reftable(Qcow2CheckRefs *r)
{
    Qcow2State *s = r->bs->opaque;

    qcow2_check_inc_refs(r, s->reftable_offset, s->reftable_size * 8);
    for (uint64_t i = 0; i < s->reftable_size; i++) {
        uint64_t off = s->reftable[i] & QCOW2_REFT_OFFSET_MASK;
        if (!off) {
            continue;
        }
        if (qcow2_offset_in_cluster(s, off)) {
            fprintf(stderr, "ERROR refcount block %" PRIu64 " is not "
                    "cluster aligned; refcount table entry corrupted\n", i);
            r->res->corruptions++;
            r->rebuild = true;
            continue;
        }
        if (off >= r->file_len) {
            fprintf(stderr, "ERROR refcount block %" PRIu64 " is outside "
                    "image\n", i);
            r->res->corruptions++;
            r->rebuild = true;
            continue;
        }
        qcow2_check_inc_refs(r, off, s->cluster_size);
    }
    return 0;
}

/* The stored refcount block @i, or NULL (with *ok false) if unusable. */
static int load_refblock(Qcow2CheckRefs *r, uint64_t i, void *buf,
                         uint64_t *off)
{
    Qcow2State *s = r->bs->opaque;

    *off = i < s->reftable_size ? s->reftable[i] & QCOW2_REFT_OFFSET_MASK
                                : 0;
    if (!*off || qcow2_offset_in_cluster(s, *off) || *off >= r->file_len) {
        *off = 0;
        memset(buf, 0, s->cluster_size);
        return 0;
    }
    return qcow2_read_host(r->bs, *off, s->cluster_size, buf);
}

/* Compare stored and computed refcounts; fix in place what we may. */
static int compare_refcounts(Qcow2CheckRefs *r, uint64_t *highest)
{
    BlockDriverState *bs = r->bs;
    Qcow2State *s = bs->opaque;
    uint64_t total = MAX(r->nb, r->file_clusters);
    uint64_t nblocks = DIV_ROUND_UP(total, s->refblock_entries);
    g_autofree uint8_t *blk = g_try_malloc(s->cluster_size);
    int ret;

    if (!blk) {
        return -ENOMEM;
    }
    *highest = 0;
    for (uint64_t b = 0; b < nblocks; b++) {
        uint64_t off;
        bool dirty = false;
        ret = load_refblock(r, b, blk, &off);
        if (ret < 0) {
            r->res->check_errors++;
            return ret;
        }
        for (uint64_t j = 0; j < s->refblock_entries; j++) {
            uint64_t c = b * s->refblock_entries + j;
            uint64_t disk, want = c < r->nb ? r->refs[c] : 0;
            bool fixed = false;
            if (c >= total) {
                break;
            }
            disk = qcow2_refblock_get(blk, j, s->refcount_order);
            if (want) {
                *highest = c;
            }
            if (disk == want) {
                continue;
            }
            if (disk > want && (r->fix & BDRV_FIX_LEAKS) && off) {
                fixed = true;
                r->res->leaks_fixed++;
            } else if (disk < want && (r->fix & BDRV_FIX_ERRORS) && off &&
                       want <= s->refcount_max) {
                fixed = true;
                r->res->corruptions_fixed++;
            } else if (disk < want && !off) {
                r->rebuild = true;
            }
            fprintf(stderr, "%s cluster %" PRIu64 " refcount=%" PRIu64
                    " reference=%" PRIu64 "\n",
                    fixed ? "Repairing" : disk < want ? "ERROR" : "Leaked",
                    c, disk, want);
            if (fixed) {
                qcow2_refblock_set(blk, j, s->refcount_order, want);
                dirty = true;
            } else if (disk < want) {
                r->res->corruptions++;
            } else {
                r->res->leaks++;
            }
        }
        if (dirty) {
            qcow2_cache_discard(s->refblock_cache, off, s->cluster_size);
            ret = write_table(bs, QCOW2_META_REFBLOCK, off, blk,
                              s->cluster_size);
            if (ret < 0) {
                r->res->check_errors++;
                return ret;
            }
        }
    }
    s->free_cluster_index = 0;
    return 0;
}

/* Walk everything that references clusters. */
static int calculate_refcounts(Qcow2CheckRefs *r)
{
    Qcow2State *s = r->bs->opaque;
    int ret;

    r->next_contig = 0;
    qcow2_check_inc_refs(r, 0, s->cluster_size);
    ret = check_l1(r, s->l1_offset, s->l1_size, true);
    if (ret == 0) {
        ret = check_snapshots(r);
    }
    if (ret == 0) {
        ret = check_reftable(r);
    }
    if (ret == 0) {
        ret = qcow2_bitmaps_check_refs(r->bs, r, r->res);
    }
    return ret;
}

/* Write a complete new refcount structure after the last used cluster. */
static int rebuild_refcounts(Qcow2CheckRefs *r)
{
    BlockDriverState *bs = r->bs;
    Qcow2State *s = bs->opaque;
    uint64_t cs = s->cluster_size, start = 0;
    uint64_t nblocks = 1, tclusters = 1, entries, total;
    g_autofree uint64_t *table = NULL;
    g_autofree uint8_t *blk = g_try_malloc(cs);
    uint8_t hdr[12];
    int ret;

    fprintf(stderr, "Rebuilding refcount structure\n");
    /* After the last used cluster and what the image claims in the file. */
    for (uint64_t c = r->nb; c > 0; c--) {
        if (r->refs[c - 1]) {
            start = c;
            break;
        }
    }
    start = MAX(start, qcow2_size_to_clusters(s, s->alloc_end));
    /* The old table and blocks will no longer be referenced. */
    for (uint64_t c = s->reftable_offset >> s->cluster_bits;
         c < qcow2_size_to_clusters(s, s->reftable_offset +
                                           s->reftable_size * 8) &&
         c < r->nb; c++) {
        r->refs[c] -= r->refs[c] ? 1 : 0;
    }
    for (uint64_t i = 0; i < s->reftable_size; i++) {
        uint64_t off = s->reftable[i] & QCOW2_REFT_OFFSET_MASK;
        uint64_t c = off >> s->cluster_bits;
        if (off && !qcow2_offset_in_cluster(s, off) && off < r->file_len &&
            c < r->nb && r->refs[c]) {
            r->refs[c]--;
        }
    }
    for (;;) {
        total = start + nblocks + tclusters;
        uint64_t nb2 = DIV_ROUND_UP(total, s->refblock_entries);
        uint64_t tc2 = DIV_ROUND_UP(nb2 * 8, cs);
        if (nb2 == nblocks && tc2 == tclusters) {
            break;
        }
        nblocks = nb2;
        tclusters = tc2;
    }
    entries = tclusters * cs / 8;
    if (entries * 8 > QCOW2_MAX_REFTABLE_BYTES) {
        return -EFBIG;
    }
    ret = qcow2_check_inc_refs(r, start << s->cluster_bits,
                               (nblocks + tclusters) << s->cluster_bits);
    table = g_try_new0(uint64_t, entries);
    if (ret < 0 || !table || !blk) {
        return -ENOMEM;
    }
    ret = qcow2_grow_file(bs, total << s->cluster_bits);
    for (uint64_t b = 0; b < nblocks && ret == 0; b++) {
        memset(blk, 0, cs);
        for (uint64_t j = 0; j < s->refblock_entries; j++) {
            uint64_t c = b * s->refblock_entries + j;
            if (c < r->nb) {
                qcow2_refblock_set(blk, j, s->refcount_order,
                                   MIN(r->refs[c], s->refcount_max));
            }
        }
        stq_be(&table[b], (start + b) << s->cluster_bits);
        ret = bdrv_pwrite(bs->file, (start + b) << s->cluster_bits, cs, blk,
                          0);
    }
    if (ret == 0) {
        ret = bdrv_pwrite(bs->file, (start + nblocks) << s->cluster_bits,
                          entries * 8, table, 0);
    }
    if (ret == 0) {
        ret = bdrv_flush(bs->file);
    }
    if (ret == 0) {
        stq_be(hdr, (start + nblocks) << s->cluster_bits);
        stl_be(hdr + 8, (uint32_t)tclusters);
        ret = bdrv_pwrite(bs->file, QCOW2_HDR_REFTABLE_OFFSET, 12, hdr, 0);
    }
    if (ret == 0) {
        ret = bdrv_flush(bs->file);
    }
    if (ret < 0) {
        return ret;
    }
    qcow2_cache_empty(bs, s->refblock_cache);
    for (uint64_t i = 0; i < entries; i++) {
        table[i] = ldq_be(&table[i]);
    }
    g_free(s->reftable);
    s->reftable = g_steal_pointer(&table);
    s->reftable_size = entries;
    s->reftable_offset = (start + nblocks) << s->cluster_bits;
    s->hdr.refcount_table_offset = s->reftable_offset;
    s->hdr.refcount_table_clusters = (uint32_t)tclusters;
    s->free_cluster_index = 0;
    s->fresh_offset = MAX(s->fresh_offset, total << s->cluster_bits);
    qcow2_meta_build(s);
    r->file_len = MAX(r->file_len, total << s->cluster_bits);
    r->file_clusters = qcow2_size_to_clusters(s, r->file_len);
    return 0;
}

/* Refcount of cluster @c as stored now (0 when unreadable). */
static uint64_t stored_refcount(Qcow2CheckRefs *r, uint64_t c)
{
    Qcow2State *s = r->bs->opaque;
    uint64_t i = c >> s->refblock_bits, off;

    if (!r->blk) {
        r->blk = g_try_malloc(s->cluster_size);
        if (!r->blk) {
            return 0;
        }
        r->blk_index = UINT64_MAX;
    }
    if (r->blk_index != i) {
        r->blk_index = UINT64_MAX;
        if (load_refblock(r, i, r->blk, &off) < 0) {
            return 0;
        }
        r->blk_index = i;
    }
    return qcow2_refblock_get(r->blk, c & (s->refblock_entries - 1),
                              s->refcount_order);
}

/* Bit 63 of L1 and L2 entries must say "refcount is exactly one". */
static int check_copied_flags(Qcow2CheckRefs *r)
{
    BlockDriverState *bs = r->bs;
    Qcow2State *s = bs->opaque;
    bool repair = r->fix & BDRV_FIX_ERRORS;
    g_autofree uint64_t *t = g_try_malloc(s->cluster_size);

    if (!t) {
        return -ENOMEM;
    }
    for (uint32_t i = 0; i < s->l1_size; i++) {
        uint64_t e = s->l1_table[i], off = e & QCOW2_L1E_OFFSET_MASK;
        uint64_t rc;
        bool changed = false;
        if (!off || qcow2_offset_in_cluster(s, off) || off >= r->file_len) {
            continue;
        }
        rc = stored_refcount(r, off >> s->cluster_bits);
        if ((rc == 1) != !!(e & QCOW2_OFLAG_COPIED)) {
            fprintf(stderr, "%s OFLAG_COPIED L2 cluster: l1_index=%u "
                    "l1_entry=%" PRIx64 " refcount=%" PRIu64 "\n",
                    repair ? "Repairing" : "ERROR", i, e, rc);
            if (repair) {
                uint8_t b[8];
                s->l1_table[i] = rc == 1 ? e | QCOW2_OFLAG_COPIED
                                         : e & ~QCOW2_OFLAG_COPIED;
                stq_be(b, s->l1_table[i]);
                if (write_table(bs, QCOW2_META_L1, s->l1_offset + i * 8, b,
                                8) < 0) {
                    r->res->check_errors++;
                }
                r->res->corruptions_fixed++;
            } else {
                r->res->corruptions++;
            }
        }
        if (qcow2_read_host(bs, off, s->cluster_size, t) < 0) {
            r->res->check_errors++;
            continue;
        }
        for (uint64_t j = 0; j < s->l2_entries; j++) {
            uint64_t l2e = ldq_be(&t[j]);
            Qcow2ClusterType type = qcow2_l2_entry_type(s, l2e);
            uint64_t doff = l2e & QCOW2_L2E_OFFSET_MASK;
            if ((type != QCOW2_CLUSTER_NORMAL &&
                 type != QCOW2_CLUSTER_ZERO_ALLOC) ||
                qcow2_offset_in_cluster(s, doff)) {
                continue;
            }
            rc = stored_refcount(r, doff >> s->cluster_bits);
            if ((rc == 1) != !!(l2e & QCOW2_OFLAG_COPIED)) {
                fprintf(stderr, "%s OFLAG_COPIED data cluster: l2_entry=%"
                        PRIx64 " refcount=%" PRIu64 "\n",
                        repair ? "Repairing" : "ERROR", l2e, rc);
                if (repair) {
                    stq_be(&t[j], rc == 1 ? l2e | QCOW2_OFLAG_COPIED
                                          : l2e & ~QCOW2_OFLAG_COPIED);
                    changed = true;
                    r->res->corruptions_fixed++;
                } else {
                    r->res->corruptions++;
                }
            }
        }
        if (changed) {
            qcow2_cache_discard(s->l2_cache, off, s->cluster_size);
            if (write_table(bs, QCOW2_META_L2, off, t, s->cluster_size) < 0) {
                r->res->check_errors++;
            }
        }
    }
    return 0;
}

static int check_locked(BlockDriverState *bs, BdrvCheckResult *res,
                        BdrvCheckMode fix)
{
    Qcow2State *s = bs->opaque;
    Qcow2CheckRefs r = { .bs = bs, .res = res, .fix = fix };
    int64_t len = bdrv_getlength(bs->file);
    uint64_t highest = 0;
    int ret;

    memset(res, 0, sizeof(*res));
    if (len < 0) {
        res->check_errors++;
        return (int)len;
    }
    if (fix && !s->writable) {
        return -EACCES;
    }
    ret = qcow2_cache_write(bs, s->l2_cache);
    if (ret == 0) {
        ret = qcow2_cache_write(bs, s->refblock_cache);
    }
    if (ret < 0) {
        res->check_errors++;
        return ret;
    }
    r.file_len = MAX((uint64_t)len, s->file_len);
    r.file_clusters = qcow2_size_to_clusters(s, r.file_len);
    r.nb = MAX(r.file_clusters, 1);
    r.refs = g_try_new0(uint32_t, r.nb);
    if (!r.refs) {
        res->check_errors++;
        return -ENOMEM;
    }
    res->total_clusters = qcow2_size_to_clusters(s, s->size);
    ret = calculate_refcounts(&r);
    if (ret == 0) {
        ret = compare_refcounts(&r, &highest);
    }
    if (ret == 0 && r.rebuild && (fix & BDRV_FIX_ERRORS)) {
        BdrvCheckResult found = *res;
        ret = rebuild_refcounts(&r);
        if (ret == 0) {
            /* Everything that was wrong with refcounts is now right. */
            res->corruptions_fixed += found.corruptions;
            res->leaks_fixed += found.leaks;
            res->corruptions = 0;
            res->leaks = 0;
        }
    }
    if (ret == 0) {
        ret = check_copied_flags(&r);
    }
    if (ret == 0 && fix) {
        ret = qcow2_cache_flush(bs, s->l2_cache);
    }
    res->image_end_offset = (int64_t)((highest + 1) << s->cluster_bits);
    g_free(r.refs);
    g_free(r.blk);
    return ret;
}

int qcow2_check(BlockDriverState *bs, BdrvCheckResult *res,
                BdrvCheckMode fix)
{
    Qcow2State *s = bs->opaque;
    int ret;

    g_mutex_lock(&s->lock);
    ret = check_locked(bs, res, fix);
    if (ret == 0) {
        ret = qcow2_checkpoints_check(bs, res, fix);
    }
    if (ret == 0 && fix && !res->check_errors && !res->corruptions) {
        /* Consistent again: the dirty and corrupt bits can go. */
        ret = qcow2_mark_clean(bs);
        if (ret == 0 &&
            (s->hdr.incompatible_features & QCOW2_INCOMPAT_CORRUPT)) {
            s->hdr.incompatible_features &= ~QCOW2_INCOMPAT_CORRUPT;
            ret = qcow2_write_header_field(bs, QCOW2_HDR_INCOMPAT, 8,
                                           s->hdr.incompatible_features);
        }
    }
    g_mutex_unlock(&s->lock);
    return ret;
}

int qcow2_repair_dirty(BlockDriverState *bs, GError **errp)
{
    BdrvCheckResult res;
    Qcow2State *s = bs->opaque;
    int ret = check_locked(bs, &res, BDRV_FIX_ERRORS | BDRV_FIX_LEAKS);

    if (ret < 0 || res.check_errors) {
        error_setg_errno(errp, ret < 0 ? -ret : EIO,
                         "Could not repair dirty image");
        return ret < 0 ? ret : -EIO;
    }
    ret = qcow2_mark_clean(bs);
    if (ret < 0) {
        error_setg_errno(errp, -ret, "Could not mark the image clean");
    }
    (void)s;
    return ret;
}
