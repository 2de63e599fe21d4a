/*
 * The qcow2 driver's vtable glue: probe, open (header, options, caches,
 * tables, feature-bit policy, dirty-image repair), close, flush, info,
 * resize.  The pieces live in the other files of this directory (see
 * block/qcow2/README.md).
 */
#include "qcow2.h"
#include "qcow2-checkpoint.h"
#include "block/dirty-bitmap.h"
#include "util/align.h"
#include "util/bswap.h"
#include "util/options.h"

#include <errno.h>
#include <inttypes.h>
#include <string.h>

/* Cache defaults, as in QEMU: the L2 cache covers the whole disk up to 32 MiB
 * of tables; the refcount cache holds four blocks.  Unlike QEMU, the L2
 * cache holds 4 KiB slices of tables by default, not whole clusters: a
 * scattered write then reads and keeps 4 KiB of metadata, not 64 KiB. */
#define DEFAULT_L2_CACHE_MAX (32 * 1024 * 1024)
#define DEFAULT_L2_SLICE 4096
#define MIN_L2_CACHE_TABLES 2
#define MIN_REFCOUNT_CACHE_TABLES 4
#define PROBE_MIN 4096

static int qcow2_probe(const uint8_t *buf, int buf_size, const char *filename)
{
    if (buf_size >= 8 && ldl_be(buf) == QCOW2_MAGIC) {
        return 100;
    }
    return 0;
}

/* Cache sizes from l2-cache-size, refcount-cache-size and cache-size. */
static bool cache_sizes(Qcow2State *s, JsonObject *opts, uint64_t *l2,
                        uint64_t *rc, GError **errp)
{
    uint64_t cs = s->cluster_size;
    uint64_t max_l2 = ROUND_UP(qcow2_size_to_clusters(s, s->size) * 8, cs);
    bool has_l2 = opts_has(opts, "l2-cache-size");
    bool has_rc = opts_has(opts, "refcount-cache-size");
    bool has_all = opts_has(opts, "cache-size");
    uint64_t all = 0;

    if (!opts_take_size(opts, "l2-cache-size", 0, l2, errp) ||
        !opts_take_size(opts, "refcount-cache-size", 0, rc, errp) ||
        !opts_take_size(opts, "cache-size", 0, &all, errp)) {
        return false;
    }
    if (has_all) {
        if (has_l2 && has_rc) {
            error_setg(errp, "cache-size, l2-cache-size and "
                       "refcount-cache-size may not be set at the same time");
            return false;
        } else if (has_l2) {
            if (*l2 > all) {
                error_setg(errp, "l2-cache-size may not exceed cache-size");
                return false;
            }
            *rc = all - *l2;
        } else if (has_rc) {
            if (*rc > all) {
                error_setg(errp, "refcount-cache-size may not exceed "
                           "cache-size");
                return false;
            }
            *l2 = all - *rc;
        } else {
            *l2 = MIN(all, max_l2);
            *rc = all - *l2;
        }
    } else {
        if (!has_l2) {
            *l2 = MIN(max_l2, (uint64_t)DEFAULT_L2_CACHE_MAX);
        }
        if (!has_rc) {
            *rc = MIN_REFCOUNT_CACHE_TABLES * cs;
        }
    }
    /* More L2 cache than the disk has tables is of no use. */
    *l2 = MAX(MIN(*l2, max_l2), MIN_L2_CACHE_TABLES * cs);
    *rc = MAX(MIN(*rc, (uint64_t)QCOW2_MAX_REFTABLE_BYTES / 8 * cs),
              MIN_REFCOUNT_CACHE_TABLES * cs);
    return true;
}

static bool take_open_opts(BlockDriverState *bs, JsonObject *opts,
                           GError **errp)
{
    Qcow2State *s = bs->opaque;
    uint64_t l2, rc, entry;
    g_autofree char *overlap = NULL;
    g_autoptr(GError) err = NULL;
    int64_t interval;
    bool lazy, discard, unused;

    if (!cache_sizes(s, opts, &l2, &rc, errp) ||
        !opts_take_size(opts, "l2-cache-entry-size",
                        MIN(s->cluster_size, (uint64_t)DEFAULT_L2_SLICE),
                        &entry, errp) ||
        !opts_take_bool(opts, "lazy-refcounts",
                        s->hdr.compatible_features &
                            QCOW2_COMPAT_LAZY_REFCOUNTS,
                        &lazy, errp) ||
        !opts_take_bool(opts, "pass-discard-request", true, &discard, errp) ||
        !opts_take_bool(opts, "pass-discard-snapshot", true, &unused, errp) ||
        !opts_take_bool(opts, "pass-discard-other", false, &unused, errp) ||
        !opts_take_int(opts, "cache-clean-interval", 0, &interval, errp)) {
        return false;
    }
    overlap = opts_take_str(opts, "overlap-check", &err);
    if (err) {
        g_propagate_error(errp, g_steal_pointer(&err));
        return false;
    }
    if (overlap && strcmp(overlap, "none") && strcmp(overlap, "constant") &&
        strcmp(overlap, "cached") && strcmp(overlap, "all")) {
        error_setg(errp, "Unsupported value '%s' for qcow2 option "
                   "'overlap-check'. Allowed are any of the following: none, "
                   "constant, cached, all", overlap);
        return false;
    }
    if (entry < 512 || entry > s->cluster_size || (entry & (entry - 1))) {
        error_setg(errp, "l2-cache-entry-size must be a power of two from "
                   "512 to the cluster size (%" PRIu64 ")", s->cluster_size);
        return false;
    }
    if (lazy && s->hdr.version < 3) {
        error_setg(errp, "Lazy refcounts require a qcow2 image with at least "
                   "qemu 1.1 compatibility level");
        return false;
    }
    s->lazy_refcounts = lazy;
    s->pass_discard = discard;
    s->l2_slice_entries = entry / 8;
    s->l2_cache = qcow2_cache_new((int)(l2 / entry), entry, QCOW2_META_L2);
    s->refblock_cache = qcow2_cache_new((int)(rc / s->cluster_size),
                                        s->cluster_size,
                                        QCOW2_META_REFBLOCK);
    if (!s->l2_cache || !s->refblock_cache) {
        error_setg(errp, "Could not allocate metadata caches");
        return false;
    }
    return true;
}

/* Read and parse the header cluster. */
static int read_header(BlockDriverState *bs, GError **errp)
{
    Qcow2State *s = bs->opaque;
    uint64_t n = MIN(s->file_len, (uint64_t)PROBE_MIN);
    g_autofree uint8_t *buf = g_malloc0(PROBE_MIN);
    int ret = n ? bdrv_pread(bs->file, 0, n, buf, 0) : 0;

    if (ret < 0) {
        error_setg_errno(errp, -ret, "Could not read qcow2 header");
        return ret;
    }
    if (n >= 24 && ldl_be(buf) == QCOW2_MAGIC) {
        uint32_t cb = ldl_be(buf + QCOW2_HDR_CLUSTER_BITS);
        if (cb >= QCOW2_MIN_CLUSTER_BITS && cb <= QCOW2_MAX_CLUSTER_BITS &&
            (UINT64_C(1) << cb) > n && s->file_len > n) {
            n = MIN(s->file_len, UINT64_C(1) << cb);
            g_free(buf);
            buf = g_malloc0(n);
            ret = bdrv_pread(bs->file, 0, n, buf, 0);
            if (ret < 0) {
                error_setg_errno(errp, -ret, "Could not read qcow2 header");
                return ret;
            }
        }
    }
    if (!qcow2_header_parse(buf, n, s->file_len, &s->hdr, errp)) {
        return -EINVAL;
    }
    return 0;
}

static void qcow2_free_state(Qcow2State *s)
{
    qcow2_cache_free(s->l2_cache);
    qcow2_cache_free(s->refblock_cache);
    s->l2_cache = s->refblock_cache = NULL;
    g_free(s->l1_table);
    g_free(s->reftable);
    s->l1_table = NULL;
    s->reftable = NULL;
    if (s->meta_other) {
        g_array_unref(s->meta_other);
        s->meta_other = NULL;
    }
    if (s->meta) {
        g_array_unref(s->meta);
        s->meta = NULL;
    }
    if (s->inflight) {
        g_ptr_array_unref(s->inflight);
        s->inflight = NULL;
    }
    qcow2_header_clear(&s->hdr);
    g_cond_clear(&s->alloc_cond);
    g_mutex_clear(&s->lock);
}

/* Read-write open: feature bits we must act on before the first write. */
static int open_rw_fixups(BlockDriverState *bs, int flags, GError **errp)
{
    Qcow2State *s = bs->opaque;
    int ret;

    if (s->hdr.autoclear_features & ~QCOW2_AUTOCLEAR_KNOWN) {
        s->hdr.autoclear_features &= QCOW2_AUTOCLEAR_KNOWN;
        ret = qcow2_write_header_field(bs, QCOW2_HDR_AUTOCLEAR, 8,
                                       s->hdr.autoclear_features);
        if (ret == 0) {
            ret = bdrv_flush(bs->file);
        }
        if (ret < 0) {
            error_setg_errno(errp, -ret, "Could not update qcow2 header");
            return ret;
        }
    }
    if ((s->hdr.incompatible_features & QCOW2_INCOMPAT_DIRTY) &&
        !(flags & BDRV_O_CHECK)) {
        return qcow2_repair_dirty(bs, errp);
    }
    return 0;
}

static int qcow2_open(BlockDriverState *bs, JsonObject *opts, int flags,
                      GError **errp)
{
    Qcow2State *s = bs->opaque;
    bool rw = flags & BDRV_O_RDWR;
    int64_t len;
    int ret;

    g_mutex_init(&s->lock);
    g_cond_init(&s->alloc_cond);
    s->inflight = g_ptr_array_new();
    qcow2_meta_reset(s);
    len = bdrv_getlength(bs->file);
    if (len < 0) {
        error_setg_errno(errp, (int)-len, "Could not get the image size");
        ret = (int)len;
        goto fail;
    }
    s->file_len = (uint64_t)len;
    s->alloc_end = (uint64_t)len;
    ret = read_header(bs, errp);
    if (ret < 0) {
        goto fail;
    }
    qcow2_geometry_from_header(s);
    if (rw && (s->hdr.incompatible_features & QCOW2_INCOMPAT_CORRUPT) &&
        !(flags & BDRV_O_CHECK)) {
        error_setg(errp, "qcow2: Image is corrupt; cannot be opened "
                   "read/write");
        error_append_hint(errp, "Run 'qemu-img check -r all' to repair it, "
                          "or open it read-only");
        ret = -EACCES;
        goto fail;
    }
    if (rw && s->hdr.nb_snapshots && !(flags & BDRV_O_CHECK)) {
        error_setg(errp, "qcow2: images with internal snapshots can only be "
                   "opened read-only");
        ret = -ENOTSUP;
        goto fail;
    }
    if (!take_open_opts(bs, opts, errp)) {
        ret = -EINVAL;
        goto fail;
    }
    ret = qcow2_l1_load(bs, errp);
    if (ret == 0) {
        ret = qcow2_refcount_init(bs, errp);
    }
    if (ret < 0) {
        goto fail;
    }
    qcow2_meta_build(s);
    s->fresh_offset = ROUND_UP(s->file_len, s->cluster_size);
    s->writable = rw && !(flags & BDRV_O_INACTIVE);
    if (s->writable) {
        ret = open_rw_fixups(bs, flags, errp);
        if (ret < 0) {
            goto fail;
        }
    }
    ret = qcow2_bitmaps_open(bs, errp);
    if (ret == 0) {
        ret = qcow2_checkpoints_open(bs, flags, errp);
    }
    if (ret < 0) {
        goto fail;
    }
    bs->backing_file = g_strdup(s->hdr.backing_file);
    bs->backing_format = g_strdup(s->hdr.backing_fmt);
    bs->request_alignment = 1;
    return 0;
fail:
    qcow2_free_state(s);
    return ret;
}

/* Store everything and clear the dirty bit (lock held). */
static int qcow2_quiesce(BlockDriverState *bs)
{
    Qcow2State *s = bs->opaque;
    int ret;

    if (!s->writable) {
        return 0;
    }
    ret = qcow2_bitmaps_store(bs);
    if (ret == 0) {
        ret = qcow2_checkpoints_flush(bs);
    }
    if (ret == 0) {
        ret = qcow2_write_caches(bs);
    }
    if (ret == 0) {
        ret = qcow2_trim_file(bs);
    }
    if (ret == 0) {
        ret = bdrv_flush(bs->file);
    }
    if (ret == 0 && s->dirty_on_disk) {
        ret = qcow2_mark_clean(bs);
    }
    return ret;
}

static void qcow2_close(BlockDriverState *bs)
{
    Qcow2State *s = bs->opaque;

    g_mutex_lock(&s->lock);
    qcow2_quiesce(bs);
    g_mutex_unlock(&s->lock);
    qcow2_checkpoints_close(bs);
    qcow2_bitmaps_close(bs);
    qcow2_free_state(s);
}

static int qcow2_inactivate(BlockDriverState *bs)
{
    Qcow2State *s = bs->opaque;
    int ret;

    g_mutex_lock(&s->lock);
    ret = qcow2_quiesce(bs);
    g_mutex_unlock(&s->lock);
    return ret;
}

static int qcow2_flush(BlockDriverState *bs)
{
    Qcow2State *s = bs->opaque;
    int ret;

    g_mutex_lock(&s->lock);
    ret = qcow2_write_caches(bs);
    g_mutex_unlock(&s->lock);
    return ret;
}

static int64_t qcow2_getlength(BlockDriverState *bs)
{
    Qcow2State *s = bs->opaque;

    return (int64_t)s->size;
}

static int qcow2_get_info(BlockDriverState *bs, BlockDriverInfo *bdi)
{
    Qcow2State *s = bs->opaque;

    bdi->cluster_size = (uint32_t)s->cluster_size;
    bdi->is_dirty = !!(s->hdr.incompatible_features & QCOW2_INCOMPAT_DIRTY);
    return 0;
}

static JsonNode *qcow2_get_specific_info(BlockDriverState *bs, GError **errp)
{
    Qcow2State *s = bs->opaque;
    JsonObject *top = json_object_new();
    JsonObject *data = json_object_new();
    JsonNode *node = json_node_new(JSON_NODE_OBJECT);
    bool v3 = s->hdr.version >= 3;

    g_mutex_lock(&s->lock);
    json_object_set_string_member(data, "compat", v3 ? "1.1" : "0.10");
    json_object_set_string_member(data, "compression-type",
                                  s->compression_type == QCOW2_COMPRESSION_ZSTD
                                      ? "zstd" : "zlib");
    if (v3) {
        json_object_set_boolean_member(
            data, "lazy-refcounts",
            !!(s->hdr.compatible_features & QCOW2_COMPAT_LAZY_REFCOUNTS));
    }
    qcow2_bitmaps_info(bs, data);
    qcow2_checkpoints_info(bs, data);
    json_object_set_int_member(data, "refcount-bits",
                               1 << s->refcount_order);
    if (v3) {
        json_object_set_boolean_member(
            data, "corrupt",
            !!(s->hdr.incompatible_features & QCOW2_INCOMPAT_CORRUPT));
        json_object_set_boolean_member(data, "extended-l2", false);
    }
    g_mutex_unlock(&s->lock);
    json_object_set_string_member(top, "type", "qcow2");
    json_object_set_object_member(top, "data", data);
    json_node_take_object(node, top);
    return node;
}

static int truncate_locked(BlockDriverState *bs, uint64_t size,
                           PreallocMode prealloc, GError **errp)
{
    Qcow2State *s = bs->opaque;
    uint64_t old = s->size;
    int ret = 0;

    if (size < old) {
        uint64_t from = ROUND_UP(size, s->cluster_size);
        uint64_t to = ROUND_UP(old, s->cluster_size);
        if (to > from) {
            ret = qcow2_discard_clusters(bs, from, (to - from) >>
                                                      s->cluster_bits, true);
        }
        if (ret == 0) {
            ret = qcow2_write_caches(bs);
        }
    } else {
        ret = qcow2_grow_l1(bs, qcow2_l1_size_for(s, size));
        if (ret == -EFBIG) {
            error_setg(errp, "The L1 table for %" PRIu64 " bytes would "
                       "exceed %d bytes", size, QCOW2_MAX_L1_BYTES);
            return ret;
        }
        if (ret == 0 && prealloc == PREALLOC_MODE_METADATA) {
            ret = qcow2_preallocate(bs, old, size);
            if (ret == 0) {
                ret = qcow2_write_caches(bs);
            }
        }
    }
    if (ret == 0) {
        ret = bdrv_flush(bs->file);
    }
    if (ret == 0) {
        ret = qcow2_write_header_field(bs, QCOW2_HDR_SIZE, 8, size);
    }
    if (ret < 0) {
        error_setg_errno(errp, -ret, "Failed to resize the qcow2 image");
        return ret;
    }
    s->size = size;
    s->hdr.size = size;
    return 0;
}

static int qcow2_truncate(BlockDriverState *bs, int64_t offset, bool exact,
                          PreallocMode prealloc, GError **errp)
{
    Qcow2State *s = bs->opaque;
    int ret;

    if (offset % 512) {
        error_setg(errp, "The new size must be a multiple of 512");
        return -EINVAL;
    }
    if (prealloc != PREALLOC_MODE_OFF && prealloc != PREALLOC_MODE_METADATA) {
        error_setg(errp, "Unsupported preallocation mode '%s'",
                   prealloc_mode_name(prealloc));
        return -ENOTSUP;
    }
    ret = qcow2_bitmaps_before_write(bs);
    if (ret < 0) {
        error_setg_errno(errp, -ret, "Could not flag the bitmaps in use");
        return ret;
    }
    g_mutex_lock(&s->lock);
    if (s->hdr.nb_snapshots) {
        error_setg(errp, "Can't resize an image which has snapshots");
        ret = -ENOTSUP;
    } else if (!s->writable) {
        error_setg(errp, "Image is read-only or corrupt");
        ret = -EACCES;
    } else if (s->inflight->len) {
        error_setg(errp, "Cannot resize while writes are in flight");
        ret = -EBUSY;
    } else {
        ret = s->lazy_refcounts ? qcow2_mark_dirty(bs) : 0;
        if (ret == 0) {
            ret = truncate_locked(bs, (uint64_t)offset, prealloc, errp);
        } else {
            error_setg_errno(errp, -ret, "Could not mark the image dirty");
        }
    }
    g_mutex_unlock(&s->lock);
    return ret;
}

const BlockDriver bdrv_qcow2 = {
    .format_name = "qcow2",
    .instance_size = sizeof(Qcow2State),
    .is_format = true,
    .supports_backing = true,
    .needs_exclusive_file = true,
    .supports_compressed_writes = true,
    .probe = qcow2_probe,
    .open = qcow2_open,
    .close = qcow2_close,
    .pread = qcow2_pread,
    .pwrite = qcow2_pwrite,
    .pwrite_zeroes = qcow2_pwrite_zeroes,
    .pdiscard = qcow2_pdiscard,
    .flush = qcow2_flush,
    .block_status = qcow2_block_status,
    .getlength = qcow2_getlength,
    .truncate = qcow2_truncate,
    .get_info = qcow2_get_info,
    .get_specific_info = qcow2_get_specific_info,
    .check = qcow2_check,
    .create = qcow2_create,
    .inactivate = qcow2_inactivate,
    .bitmap_ops = &qcow2_bitmap_ops,
    .checkpoint_ops = &qcow2_checkpoint_ops,
};
