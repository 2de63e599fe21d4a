/*
 * qcow2 image creation: validate the creation options (the -o keys of
 * qemu-img create), lay out header, refcount table, refcount blocks and L1
 * table the way QEMU does (header, reftable, refblock, L1 in consecutive
 * clusters), and optionally preallocate metadata.
 */
#include "qcow2.h"
#include "util/align.h"
#include "util/bswap.h"
#include "util/options.h"

#include <errno.h>
#include <inttypes.h>
#include <string.h>

typedef struct CreateOpts {
    uint64_t size;
    int version;
    uint64_t cluster_size;
    int refcount_order;
    bool lazy;
    PreallocMode prealloc;
    int compression;
    char *backing_file;
    char *backing_fmt;
    bool nocow;
} CreateOpts;

static void create_opts_free(CreateOpts *o)
{
    g_free(o->backing_file);
    g_free(o->backing_fmt);
}

static bool take_str(JsonObject *opts, const char *key, char **out,
                     GError **errp)
{
    g_autoptr(GError) err = NULL;

    *out = opts_take_str(opts, key, &err);
    if (err) {
        g_propagate_error(errp, g_steal_pointer(&err));
        return false;
    }
    return true;
}

static bool parse_enums(JsonObject *opts, CreateOpts *o, GError **errp)
{
    g_autofree char *compat = NULL, *prealloc = NULL, *ctype = NULL;

    if (!take_str(opts, "compat", &compat, errp) ||
        !take_str(opts, "preallocation", &prealloc, errp) ||
        !take_str(opts, "compression_type", &ctype, errp)) {
        return false;
    }
    o->version = 3;
    if (compat && (!strcmp(compat, "0.10") || !strcmp(compat, "v2"))) {
        o->version = 2;
    } else if (compat && strcmp(compat, "1.1") && strcmp(compat, "v3")) {
        error_setg(errp, "Parameter 'version' does not accept value '%s'",
                   compat);
        return false;
    }
    o->prealloc = PREALLOC_MODE_OFF;
    if (prealloc) {
        int m = prealloc_mode_parse(prealloc);
        if (m < 0) {
            error_setg(errp, "Parameter 'preallocation' does not accept "
                       "value '%s'", prealloc);
            return false;
        }
        if (m == PREALLOC_MODE_FALLOC || m == PREALLOC_MODE_FULL) {
            error_setg(errp, "Preallocation mode '%s' is not supported for "
                       "qcow2 (use 'off' or 'metadata')", prealloc);
            return false;
        }
        o->prealloc = m;
    }
    o->compression = QCOW2_COMPRESSION_ZLIB;
    if (ctype && !strcmp(ctype, "zstd")) {
        o->compression = QCOW2_COMPRESSION_ZSTD;
    } else if (ctype && strcmp(ctype, "zlib")) {
        error_setg(errp, "Parameter 'compression-type' does not accept "
                   "value '%s'", ctype);
        return false;
    }
    return true;
}

/* Options that we refuse when turned on. */
static bool refuse_unsupported(JsonObject *opts, GError **errp)
{
    g_autofree char *data_file = NULL;
    bool ext_l2, data_raw, enc;

    if (!opts_take_bool(opts, "extended_l2", false, &ext_l2, errp) ||
        !opts_take_bool(opts, "data_file_raw", false, &data_raw, errp) ||
        !opts_take_bool(opts, "encryption", false, &enc, errp) ||
        !take_str(opts, "data_file", &data_file, errp)) {
        return false;
    }
    if (ext_l2) {
        error_setg(errp, "Extended L2 entries are not supported");
        return false;
    }
    if (data_file || data_raw) {
        error_setg(errp, "External data files are not supported");
        return false;
    }
    if (enc) {
        error_setg(errp, "Encryption is not supported");
        return false;
    }
    return true;
}

/* The backing file's size, when the user gave none. */
static bool size_from_backing(CreateOpts *o, const char *filename,
                              GError **errp)
{
    g_autoptr(JsonObject) bopts = json_object_new();
    g_autofree char *path = NULL;
    g_autoptr(GError) err = NULL;
    BlockDriverState *b;
    int64_t len;

    if (g_path_is_absolute(o->backing_file) ||
        g_str_has_prefix(o->backing_file, "json:")) {
        path = g_strdup(o->backing_file);
    } else {
        g_autofree char *dir = g_path_get_dirname(filename);
        path = g_build_filename(dir, o->backing_file, NULL);
    }
    if (o->backing_fmt) {
        json_object_set_string_member(bopts, "driver", o->backing_fmt);
    }
    b = bdrv_open(path, bopts, BDRV_O_NO_BACKING | BDRV_O_FORCE_SHARE, &err);
    if (!b) {
        error_setg(errp, "%s", err->message);
        error_append_hint(errp, "Could not open backing image.");
        return false;
    }
    len = bdrv_getlength(b);
    bdrv_unref(b);
    if (len < 0) {
        error_setg_errno(errp, (int)-len, "Could not get the backing file "
                         "size");
        return false;
    }
    o->size = (uint64_t)len;
    return true;
}

static bool parse_create_opts(const char *filename, JsonObject *opts,
                              CreateOpts *o, GError **errp)
{
    bool has_size = opts_has(opts, "size");
    int64_t rbits;

    if (!opts_take_size(opts, "size", 0, &o->size, errp) ||
        !opts_take_size(opts, "cluster_size", 65536, &o->cluster_size,
                        errp) ||
        !opts_take_int(opts, "refcount_bits", 16, &rbits, errp) ||
        !opts_take_bool(opts, "lazy_refcounts", false, &o->lazy, errp) ||
        !opts_take_bool(opts, "nocow", false, &o->nocow, errp) ||
        !take_str(opts, "backing_file", &o->backing_file, errp) ||
        !take_str(opts, "backing_fmt", &o->backing_fmt, errp) ||
        !parse_enums(opts, o, errp) || !refuse_unsupported(opts, errp)) {
        return false;
    }
    if (!is_power_of_2(o->cluster_size) || o->cluster_size < 512 ||
        o->cluster_size > (UINT64_C(1) << QCOW2_MAX_CLUSTER_BITS)) {
        error_setg(errp, "Cluster size must be a power of two between 512 "
                   "and 2048k");
        return false;
    }
    if (rbits < 1 || rbits > 64 || !is_power_of_2((uint64_t)rbits)) {
        error_setg(errp, "Refcount width must be a power of two and may not "
                   "exceed 64 bits");
        return false;
    }
    o->refcount_order = __builtin_ctzll((uint64_t)rbits);
    if (o->version < 3 && rbits != 16) {
        error_setg(errp, "Different refcount widths than 16 bits require "
                   "compatibility level 1.1 or above (use version=v3 or "
                   "greater)");
        return false;
    }
    if (o->version < 3 && o->lazy) {
        error_setg(errp, "Lazy refcounts only supported with compatibility "
                   "level 1.1 and above (use version=v3 or greater)");
        return false;
    }
    if (o->version < 3 && o->compression != QCOW2_COMPRESSION_ZLIB) {
        error_setg(errp, "Non-zlib compression type is only supported with "
                   "compatibility level 1.1 and above (use version=v3 or "
                   "greater)");
        return false;
    }
    if (o->backing_fmt && !o->backing_file) {
        error_setg(errp, "Backing format cannot be used without backing "
                   "file");
        return false;
    }
    if (o->backing_file && o->prealloc != PREALLOC_MODE_OFF) {
        error_setg(errp, "Backing file and preallocation can only be used "
                   "at the same time if extended_l2 is on");
        return false;
    }
    if (o->backing_file && strlen(o->backing_file) > QCOW2_MAX_BACKING_NAME) {
        error_setg(errp, "Backing file name too long (at most %d bytes)",
                   QCOW2_MAX_BACKING_NAME);
        return false;
    }
    if (!has_size && !o->backing_file) {
        error_setg(errp, "Image creation needs a size parameter");
        return false;
    }
    if (!has_size && !size_from_backing(o, filename, errp)) {
        return false;
    }
    o->size = ROUND_UP(o->size, 512);
    return true;
}

/* Header for the new image (geometry fields filled by the caller). */
static void fill_header(Qcow2Header *h, const CreateOpts *o)
{
    h->version = o->version;
    h->cluster_bits = __builtin_ctzll(o->cluster_size);
    h->size = o->size;
    h->refcount_order = o->refcount_order;
    h->compression_type = o->compression;
    if (o->compression != QCOW2_COMPRESSION_ZLIB) {
        h->incompatible_features |= QCOW2_INCOMPAT_COMPRESSION;
    }
    if (o->lazy) {
        h->compatible_features |= QCOW2_COMPAT_LAZY_REFCOUNTS;
    }
    h->backing_file = g_strdup(o->backing_file);
    h->backing_fmt = g_strdup(o->backing_fmt);
    if (o->version >= 3) {
        qcow2_header_set_std_features(h);
    }
}

/* Write header, refcount table/blocks and L1 to the empty file @f. */
static int write_layout(BlockDriverState *f, const CreateOpts *o,
                        GError **errp)
{
    Qcow2Header h = {0};
    uint64_t cs = o->cluster_size;
    int cbits = __builtin_ctzll(cs);
    uint64_t per_block = cs * 8 >> o->refcount_order;
    uint64_t l1_size = DIV_ROUND_UP(o->size, cs * (cs / 8));
    uint64_t l1_clusters = MAX(DIV_ROUND_UP(l1_size * 8, cs), 1);
    uint64_t rt = 1, rb = 1, total, l1_off, end;
    g_autofree uint8_t *buf = NULL;
    int ret;

    if (l1_size * 8 > QCOW2_MAX_L1_BYTES) {
        error_setg(errp, "Image size is too large for this cluster size");
        return -EFBIG;
    }
    for (;;) {
        total = 1 + rt + rb + l1_clusters;
        uint64_t rb2 = DIV_ROUND_UP(total, per_block);
        uint64_t rt2 = DIV_ROUND_UP(rb2 * 8, cs);
        if (rb2 == rb && rt2 == rt) {
            break;
        }
        rb = rb2;
        rt = rt2;
    }
    l1_off = (1 + rt + rb) << cbits;
    end = l1_off + MAX(l1_size * 8, 8);
    fill_header(&h, o);
    h.l1_size = (uint32_t)l1_size;
    h.l1_table_offset = l1_off;
    h.refcount_table_offset = cs;
    h.refcount_table_clusters = (uint32_t)rt;
    buf = g_try_malloc0((rt + rb) * cs);
    if (!buf) {
        error_setg(errp, "Could not allocate %" PRIu64 " bytes for the "
                   "refcount structures", (rt + rb) * cs);
        ret = -ENOMEM;
        goto out;
    }
    ret = bdrv_truncate(f, (int64_t)end, true, PREALLOC_MODE_OFF, errp);
    if (ret < 0) {
        goto out;
    }
    ret = qcow2_header_serialize(&h, buf, cs, errp);
    if (ret < 0) {
        goto out;
    }
    ret = bdrv_pwrite(f, 0, cs, buf, 0);
    if (ret < 0) {
        error_setg_errno(errp, -ret, "Could not write qcow2 header");
        goto out;
    }
    memset(buf, 0, (rt + rb) * cs);
    for (uint64_t i = 0; i < rb; i++) {
        stq_be(buf + i * 8, (1 + rt + i) << cbits);
    }
    for (uint64_t c = 0; c < total; c++) {
        qcow2_refblock_set(buf + rt * cs + (c / per_block) * cs,
                           c % per_block, o->refcount_order, 1);
    }
    ret = bdrv_pwrite(f, cs, (rt + rb) * cs, buf, 0);
    if (ret == 0) {
        ret = bdrv_flush(f);
    }
    if (ret < 0) {
        error_setg_errno(errp, -ret, "Could not write qcow2 header");
    }
out:
    qcow2_header_clear(&h);
    return ret;
}

static bool preallocate_image(const char *filename, const CreateOpts *o,
                              GError **errp)
{
    g_autoptr(JsonObject) opts = json_object_new();
    BlockDriverState *bs;
    Qcow2State *s;
    int ret;

    json_object_set_string_member(opts, "driver", "qcow2");
    bs = bdrv_open(filename, opts, BDRV_O_RDWR | BDRV_O_NO_BACKING, errp);
    if (!bs) {
        return false;
    }
    s = bs->opaque;
    g_mutex_lock(&s->lock);
    ret = qcow2_preallocate(bs, 0, o->size);
    if (ret == 0) {
        ret = qcow2_write_caches(bs);
    }
    g_mutex_unlock(&s->lock);
    bdrv_unref(bs);
    if (ret < 0) {
        error_setg_errno(errp, -ret, "Could not preallocate metadata");
        return false;
    }
    return true;
}

bool qcow2_create(const char *filename, JsonObject *opts, GError **errp)
{
    CreateOpts o = {0};
    g_autoptr(JsonObject) fopts = json_object_new();
    g_autoptr(JsonObject) oopts = json_object_new();
    BlockDriverState *f;
    bool ok = false;

    if (!parse_create_opts(filename, opts, &o, errp)) {
        goto out;
    }
    json_object_set_int_member(fopts, "size", 0);
    json_object_set_boolean_member(fopts, "nocow", o.nocow);
    if (!bdrv_create("file", filename, fopts, errp)) {
        goto out;
    }
    json_object_set_string_member(oopts, "driver", "file");
    f = bdrv_open(filename, oopts, BDRV_O_RDWR | BDRV_O_PROTOCOL, errp);
    if (!f) {
        goto out;
    }
    ok = write_layout(f, &o, errp) >= 0;
    bdrv_unref(f);
    if (ok && o.prealloc == PREALLOC_MODE_METADATA) {
        ok = preallocate_image(filename, &o, errp);
    }
out:
    create_opts_free(&o);
    return ok;
}
