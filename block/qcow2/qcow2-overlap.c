/*
 * The metadata map: which host clusters hold qcow2 metadata, so that no
 * write (guest data or a table landing at a wrong offset) can overwrite
 * another structure.  The header, L1 table, refcount table and snapshot
 * table are ranges taken from the state; L2 tables, refcount blocks and
 * other single clusters live in sorted arrays of (cluster index << 3 |
 * kind).  Bitmap and checkpoint structures (QCOW2_META_OTHER) have an
 * array of their own that guest-data checks skip, as QEMU's default
 * overlap checks do: a data write can only land there if the refcounts
 * are already wrong, and this keeps the cost of a guest write independent
 * of the number of bitmaps.  All functions run with the lock held.
 */
#include "qcow2.h"
#include "util/bswap.h"

#include <errno.h>

#define META_KIND_BITS 3
#define META_KIND_MASK ((UINT64_C(1) << META_KIND_BITS) - 1)

static inline uint64_t meta_cluster(uint64_t e)
{
    return e >> META_KIND_BITS;
}

const char *qcow2_meta_name(Qcow2MetaKind kind)
{
    switch (kind) {
    case QCOW2_META_HEADER:
        return "qcow2_header";
    case QCOW2_META_L1:
        return "active L1 table";
    case QCOW2_META_REFTABLE:
        return "refcount table";
    case QCOW2_META_REFBLOCK:
        return "refcount block";
    case QCOW2_META_L2:
        return "active L2 table";
    case QCOW2_META_SNAPSHOTS:
        return "snapshot table";
    case QCOW2_META_OTHER:
        return "other metadata";
    default:
        return "nothing";
    }
}

/* First index whose cluster is >= @cluster. */
static guint lower_bound(GArray *a, uint64_t cluster)
{
    guint lo = 0, hi = a->len;

    while (lo < hi) {
        guint mid = lo + (hi - lo) / 2;
        if (meta_cluster(g_array_index(a, uint64_t, mid)) < cluster) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo;
}

void qcow2_meta_reset(Qcow2State *s)
{
    if (!s->meta) {
        s->meta = g_array_new(false, false, sizeof(uint64_t));
    }
    if (!s->meta_other) {
        s->meta_other = g_array_new(false, false, sizeof(uint64_t));
    }
    g_array_set_size(s->meta, 0);
    g_array_set_size(s->meta_other, 0);
}

static GArray *meta_array(Qcow2State *s, Qcow2MetaKind kind)
{
    if (!s->meta_other) {
        s->meta_other = g_array_new(false, false, sizeof(uint64_t));
    }
    return kind == QCOW2_META_OTHER ? s->meta_other : s->meta;
}

void qcow2_meta_add(Qcow2State *s, uint64_t offset, uint64_t size,
                    Qcow2MetaKind kind)
{
    GArray *a = meta_array(s, kind);
    uint64_t first = offset >> s->cluster_bits;
    uint64_t n = qcow2_size_to_clusters(s, offset + size) - first;

    for (uint64_t c = first; c < first + n; c++) {
        uint64_t e = (c << META_KIND_BITS) | kind;
        g_array_insert_val(a, lower_bound(a, c), e);
    }
}

static void meta_remove_from(GArray *a, uint64_t first, uint64_t n)
{
    for (uint64_t c = first; c < first + n; c++) {
        guint i = lower_bound(a, c);
        if (i < a->len && meta_cluster(g_array_index(a, uint64_t, i)) == c) {
            g_array_remove_index(a, i);
        }
    }
}

void qcow2_meta_remove(Qcow2State *s, uint64_t offset, uint64_t size)
{
    uint64_t first = offset >> s->cluster_bits;
    uint64_t n = qcow2_size_to_clusters(s, offset + size) - first;

    meta_remove_from(s->meta, first, n);
    meta_remove_from(meta_array(s, QCOW2_META_OTHER), first, n);
}

static bool range_hits(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
    return alen && blen && a < b + blen && b < a + alen;
}

static gint cmp_u64(gconstpointer a, gconstpointer b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The first entry of @a in clusters [first, last], skipping @self once. */
static Qcow2MetaKind meta_scan(GArray *a, Qcow2MetaKind *self,
                               uint64_t first, uint64_t last)
{
    for (guint i = lower_bound(a, first); i < a->len; i++) {
        uint64_t e = g_array_index(a, uint64_t, i);
        Qcow2MetaKind kind = e & META_KIND_MASK;
        if (meta_cluster(e) > last) {
            break;
        }
        /* A table being written to its own cluster is fine, once. */
        if (kind == *self && first == last) {
            *self = QCOW2_META_NONE;
            continue;
        }
        return kind;
    }
    return QCOW2_META_NONE;
}

Qcow2MetaKind qcow2_meta_overlap(Qcow2State *s, Qcow2MetaKind self,
                                 uint64_t offset, uint64_t size)
{
    uint64_t first, last;
    bool metadata_write = self != QCOW2_META_NONE;

    if (size == 0) {
        return QCOW2_META_NONE;
    }
    if (self != QCOW2_META_HEADER && offset < s->cluster_size) {
        return QCOW2_META_HEADER;
    }
    if (self != QCOW2_META_L1 &&
        range_hits(offset, size, s->l1_offset, (uint64_t)s->l1_size * 8)) {
        return QCOW2_META_L1;
    }
    if (self != QCOW2_META_REFTABLE &&
        range_hits(offset, size, s->reftable_offset,
                   s->reftable_size * 8)) {
        return QCOW2_META_REFTABLE;
    }
    if (self != QCOW2_META_SNAPSHOTS && s->hdr.nb_snapshots &&
        range_hits(offset, size, s->hdr.snapshots_offset, s->cluster_size)) {
        return QCOW2_META_SNAPSHOTS;
    }
    first = offset >> s->cluster_bits;
    last = (offset + size - 1) >> s->cluster_bits;
    {
        Qcow2MetaKind hit = meta_scan(s->meta, &self, first, last);
        if (hit != QCOW2_META_NONE) {
            return hit;
        }
    }
    /* Guest data skips bitmap/checkpoint structures. */
    if (!metadata_write) {
        return QCOW2_META_NONE;
    }
    return meta_scan(meta_array(s, QCOW2_META_OTHER), &self, first, last);
}

int qcow2_pre_write_check(BlockDriverState *bs, Qcow2MetaKind self,
                          uint64_t offset, uint64_t size)
{
    Qcow2State *s = bs->opaque;
    Qcow2MetaKind hit = qcow2_meta_overlap(s, self, offset, size);

    if (hit == QCOW2_META_NONE) {
        return 0;
    }
    qcow2_signal_corruption(bs, "Preventing invalid write on metadata "
                            "(overlaps with %s)", qcow2_meta_name(hit));
    return -EIO;
}

int qcow2_write_table_entry(BlockDriverState *bs, Qcow2MetaKind kind,
                            uint64_t table_offset, uint64_t i, uint64_t value)
{
    uint64_t off = table_offset + i * 8;
    uint8_t b[8];
    int ret = qcow2_pre_write_check(bs, kind, off, 8);

    if (ret < 0) {
        return ret;
    }
    stq_be(b, value);
    return bdrv_pwrite(bs->file, off, 8, b, 0);
}

void qcow2_meta_build(Qcow2State *s)
{
    qcow2_meta_reset(s);
    for (uint32_t i = 0; i < s->l1_size; i++) {
        uint64_t off = s->l1_table[i] & QCOW2_L1E_OFFSET_MASK;
        if (off) {
            uint64_t e = ((off >> s->cluster_bits) << META_KIND_BITS) |
                         QCOW2_META_L2;
            g_array_append_val(s->meta, e);
        }
    }
    for (uint64_t i = 0; i < s->reftable_size; i++) {
        uint64_t off = s->reftable[i] & QCOW2_REFT_OFFSET_MASK;
        if (off) {
            uint64_t e = ((off >> s->cluster_bits) << META_KIND_BITS) |
                         QCOW2_META_REFBLOCK;
            g_array_append_val(s->meta, e);
        }
    }
    g_array_sort(s->meta, cmp_u64);
}
