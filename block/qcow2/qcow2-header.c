/*
 * qcow2 header and header extensions: parsing and validation of untrusted
 * bytes, the feature-bit policy, serialization back into the first
 * cluster (unknown extensions kept byte for byte), and the small in-place
 * header updates (dirty and corrupt bits, table pointers).
 */
#include "qcow2.h"
#include "util/align.h"
#include "util/bswap.h"
#include "util/checked-math.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <string.h>

static void raw_ext_free(gpointer p)
{
    Qcow2RawExt *e = p;

    g_free(e->data);
    g_free(e);
}

void qcow2_header_clear(Qcow2Header *h)
{
    g_free(h->extra_fields);
    g_free(h->backing_file);
    g_free(h->backing_fmt);
    if (h->features) {
        g_array_unref(h->features);
    }
    if (h->exts) {
        g_ptr_array_unref(h->exts);
    }
    memset(h, 0, sizeof(*h));
}

static void header_init_lists(Qcow2Header *h)
{
    if (!h->features) {
        h->features = g_array_new(false, true, sizeof(Qcow2FeatureName));
    }
    if (!h->exts) {
        h->exts = g_ptr_array_new_with_free_func(raw_ext_free);
    }
}

const Qcow2RawExt *qcow2_header_find_ext(const Qcow2Header *h,
                                         uint32_t magic)
{
    for (guint i = 0; h->exts && i < h->exts->len; i++) {
        const Qcow2RawExt *e = h->exts->pdata[i];
        if (e->magic == magic) {
            return e;
        }
    }
    return NULL;
}

void qcow2_header_set_ext(Qcow2Header *h, uint32_t magic, const void *data,
                          uint32_t len)
{
    Qcow2RawExt *e = NULL;
    guint i;

    header_init_lists(h);
    for (i = 0; i < h->exts->len; i++) {
        if (((Qcow2RawExt *)h->exts->pdata[i])->magic == magic) {
            e = h->exts->pdata[i];
            break;
        }
    }
    if (!data) {
        if (e) {
            g_ptr_array_remove_index(h->exts, i);
        }
        return;
    }
    if (!e) {
        e = g_new0(Qcow2RawExt, 1);
        e->magic = magic;
        g_ptr_array_add(h->exts, e);
    }
    g_free(e->data);
    e->data = g_memdup2(data, len);
    e->len = len;
}

static const char *const feature_type_names[] = {
    "incompatible", "compatible", "autoclear",
};

char *qcow2_feature_describe(const Qcow2Header *h, int type, int bit)
{
    for (guint i = 0; h->features && i < h->features->len; i++) {
        Qcow2FeatureName *f = &g_array_index(h->features, Qcow2FeatureName,
                                             i);
        if (f->type == type && f->bit == bit && f->name[0]) {
            return g_strdup_printf("%s (%s bit %d)", f->name,
                                   feature_type_names[type], bit);
        }
    }
    return g_strdup_printf("Unknown %s feature bit %d",
                           feature_type_names[type], bit);
}

/* The feature names we know, as every writer of version 3 images has. */
static const struct {
    uint8_t type;
    uint8_t bit;
    const char *name;
} std_features[] = {
    { QCOW2_FEATURE_TYPE_INCOMPAT, 0, "dirty bit" },
    { QCOW2_FEATURE_TYPE_INCOMPAT, 1, "corrupt bit" },
    { QCOW2_FEATURE_TYPE_INCOMPAT, 2, "external data file" },
    { QCOW2_FEATURE_TYPE_INCOMPAT, 3, "compression type" },
    { QCOW2_FEATURE_TYPE_INCOMPAT, 4, "extended L2 entries" },
    { QCOW2_FEATURE_TYPE_COMPAT, 0, "lazy refcounts" },
    { QCOW2_FEATURE_TYPE_AUTOCLEAR, 0, "bitmaps" },
    { QCOW2_FEATURE_TYPE_AUTOCLEAR, 1, "raw external data" },
};

static bool is_std_feature(uint8_t type, uint8_t bit)
{
    for (size_t i = 0; i < G_N_ELEMENTS(std_features); i++) {
        if (std_features[i].type == type && std_features[i].bit == bit) {
            return true;
        }
    }
    return false;
}

/* Our standard table, followed by the image's names for other bits. */
void qcow2_header_set_std_features(Qcow2Header *h)
{
    GArray *n = g_array_new(false, true, sizeof(Qcow2FeatureName));

    for (size_t i = 0; i < G_N_ELEMENTS(std_features); i++) {
        Qcow2FeatureName f = {0};
        f.type = std_features[i].type;
        f.bit = std_features[i].bit;
        g_strlcpy(f.name, std_features[i].name, sizeof(f.name));
        g_array_append_val(n, f);
    }
    for (guint i = 0; h->features && i < h->features->len; i++) {
        Qcow2FeatureName *f = &g_array_index(h->features, Qcow2FeatureName,
                                             i);
        if (!is_std_feature(f->type, f->bit)) {
            g_array_append_val(n, *f);
        }
    }
    if (h->features) {
        g_array_unref(h->features);
    }
    h->features = n;
}

/* Fixed header fields, after the magic/version/length checks. */
static void parse_fixed_fields(const uint8_t *buf, Qcow2Header *h)
{
    h->backing_file_offset = ldq_be(buf + QCOW2_HDR_BACKING_OFFSET);
    h->backing_file_size = ldl_be(buf + QCOW2_HDR_BACKING_SIZE);
    h->cluster_bits = ldl_be(buf + QCOW2_HDR_CLUSTER_BITS);
    h->size = ldq_be(buf + QCOW2_HDR_SIZE);
    h->crypt_method = ldl_be(buf + QCOW2_HDR_CRYPT_METHOD);
    h->l1_size = ldl_be(buf + QCOW2_HDR_L1_SIZE);
    h->l1_table_offset = ldq_be(buf + QCOW2_HDR_L1_OFFSET);
    h->refcount_table_offset = ldq_be(buf + QCOW2_HDR_REFTABLE_OFFSET);
    h->refcount_table_clusters = ldl_be(buf + QCOW2_HDR_REFTABLE_CLUSTERS);
    h->nb_snapshots = ldl_be(buf + QCOW2_HDR_NB_SNAPSHOTS);
    h->snapshots_offset = ldq_be(buf + QCOW2_HDR_SNAPSHOTS_OFFSET);
}

static bool parse_v3_fields(const uint8_t *buf, size_t len, Qcow2Header *h,
                            uint64_t cluster_size, GError **errp)
{
    if (len < QCOW2_V3_MIN_HEADER_SIZE) {
        error_setg(errp, "qcow2 header truncated: the file has %zu bytes, "
                   "a version 3 header needs %d", len,
                   QCOW2_V3_MIN_HEADER_SIZE);
        return false;
    }
    h->incompatible_features = ldq_be(buf + QCOW2_HDR_INCOMPAT);
    h->compatible_features = ldq_be(buf + QCOW2_HDR_COMPAT);
    h->autoclear_features = ldq_be(buf + QCOW2_HDR_AUTOCLEAR);
    h->refcount_order = ldl_be(buf + QCOW2_HDR_REFCOUNT_ORDER);
    h->header_length = ldl_be(buf + QCOW2_HDR_HEADER_LENGTH);
    if (h->header_length < QCOW2_V3_MIN_HEADER_SIZE) {
        error_setg(errp, "qcow2 header too short: header_length is %" PRIu32
                   ", at least %d required", h->header_length,
                   QCOW2_V3_MIN_HEADER_SIZE);
        return false;
    }
    if (h->header_length % 8) {
        error_setg(errp, "qcow2 header_length %" PRIu32 " is not a multiple "
                   "of 8", h->header_length);
        return false;
    }
    if (h->header_length > cluster_size) {
        error_setg(errp, "qcow2 header exceeds cluster size: header_length "
                   "%" PRIu32 ", cluster size %" PRIu64, h->header_length,
                   cluster_size);
        return false;
    }
    if (h->header_length > len) {
        error_setg(errp, "qcow2 header truncated: header_length is %" PRIu32
                   " but the file has only %zu bytes", h->header_length, len);
        return false;
    }
    if (h->header_length > QCOW2_HDR_COMPRESSION_TYPE) {
        h->compression_type = buf[QCOW2_HDR_COMPRESSION_TYPE];
    }
    if (h->header_length > QCOW2_V3_HEADER_SIZE) {
        h->extra_fields_len = h->header_length - QCOW2_V3_HEADER_SIZE;
        h->extra_fields = g_memdup2(buf + QCOW2_V3_HEADER_SIZE,
                                    h->extra_fields_len);
    }
    return true;
}

static bool parse_feature_table(const uint8_t *data, uint32_t len,
                                Qcow2Header *h)
{
    for (uint32_t off = 0; off + QCOW2_FEATURE_ENTRY_SIZE <= len;
         off += QCOW2_FEATURE_ENTRY_SIZE) {
        Qcow2FeatureName f = {0};
        f.type = data[off];
        f.bit = data[off + 1];
        memcpy(f.name, data + off + 2, QCOW2_FEATURE_NAME_SIZE);
        if (f.type <= QCOW2_FEATURE_TYPE_AUTOCLEAR && f.bit < 64) {
            g_array_append_val(h->features, f);
        }
    }
    return true;
}

/* Walk the extensions between the header and @limit. */
static bool parse_extensions(const uint8_t *buf, uint64_t limit,
                             Qcow2Header *h, GError **errp)
{
    uint64_t off = h->header_length;

    while (off + 8 <= limit) {
        uint32_t magic = ldl_be(buf + off);
        uint32_t len = ldl_be(buf + off + 4);
        const uint8_t *data = buf + off + 8;

        if (magic == QCOW2_EXT_END) {
            return true;
        }
        if (len > limit - off - 8) {
            error_setg(errp, "Header extension 0x%08" PRIx32 " at offset %"
                       PRIu64 " too large: length %" PRIu32 " but only %"
                       PRIu64 " bytes are left in the header cluster",
                       magic, off, len, limit - off - 8);
            return false;
        }
        switch (magic) {
        case QCOW2_EXT_BACKING_FORMAT:
            if (h->backing_fmt) {
                error_setg(errp, "Duplicate backing format header "
                           "extension");
                return false;
            }
            if (len > QCOW2_MAX_BACKING_FMT) {
                error_setg(errp, "Backing format name too long: %" PRIu32
                           " bytes (at most %d)", len, QCOW2_MAX_BACKING_FMT);
                return false;
            }
            h->backing_fmt = g_strndup((const char *)data, len);
            break;
        case QCOW2_EXT_FEATURE_TABLE:
            parse_feature_table(data, len, h);
            break;
        default:
            if (magic == QCOW2_EXT_BITMAPS &&
                qcow2_header_find_ext(h, magic)) {
                error_setg(errp, "Duplicate bitmaps header extension");
                return false;
            }
            {
                Qcow2RawExt *e = g_new0(Qcow2RawExt, 1);
                e->magic = magic;
                e->len = len;
                e->data = g_memdup2(data, len);
                g_ptr_array_add(h->exts, e);
            }
            break;
        }
        off += 8 + ROUND_UP((uint64_t)len, 8);
    }
    return true;
}

static bool check_features(Qcow2Header *h, GError **errp)
{
    uint64_t known = QCOW2_INCOMPAT_DIRTY | QCOW2_INCOMPAT_CORRUPT |
                     QCOW2_INCOMPAT_DATA_FILE | QCOW2_INCOMPAT_COMPRESSION |
                     QCOW2_INCOMPAT_EXTL2;
    uint64_t unknown = h->incompatible_features & ~known;

    if (unknown) {
        GString *msg = g_string_new("Unsupported qcow2 feature(s): ");
        bool first = true;
        for (int bit = 0; bit < 64; bit++) {
            if (unknown & (UINT64_C(1) << bit)) {
                g_autofree char *d = qcow2_feature_describe(
                    h, QCOW2_FEATURE_TYPE_INCOMPAT, bit);
                g_string_append_printf(msg, "%s%s", first ? "" : ", ", d);
                first = false;
            }
        }
        error_setg(errp, "%s", msg->str);
        g_string_free(msg, true);
        return false;
    }
    if (h->incompatible_features & QCOW2_INCOMPAT_DATA_FILE) {
        error_setg(errp, "Unsupported qcow2 feature(s): external data file "
                   "(incompatible bit 2) is not supported");
        return false;
    }
    if (h->incompatible_features & QCOW2_INCOMPAT_EXTL2) {
        error_setg(errp, "Unsupported qcow2 feature(s): extended L2 entries "
                   "(incompatible bit 4) are not supported");
        return false;
    }
    if (h->compression_type > QCOW2_COMPRESSION_ZSTD) {
        error_setg(errp, "qcow2: unknown compression type %u",
                   h->compression_type);
        return false;
    }
    if (!!(h->incompatible_features & QCOW2_INCOMPAT_COMPRESSION) !=
        (h->compression_type != QCOW2_COMPRESSION_ZLIB)) {
        error_setg(errp, "qcow2: compression type %u does not match the "
                   "compression type incompatible bit (%s)",
                   h->compression_type,
                   (h->incompatible_features & QCOW2_INCOMPAT_COMPRESSION)
                       ? "set" : "clear");
        return false;
    }
    if (h->crypt_method) {
        error_setg(errp, "qcow2: encrypted images (crypt_method %" PRIu32
                   ") are not supported", h->crypt_method);
        return false;
    }
    if (h->refcount_order > QCOW2_MAX_REFCOUNT_ORDER) {
        error_setg(errp, "Reference count entry width too large; may not "
                   "exceed 64 bits (refcount_order %" PRIu32 ")",
                   h->refcount_order);
        return false;
    }
    return true;
}

/* A table of @bytes at @offset: aligned, past the header, inside the file. */
static bool check_table(const char *what, uint64_t offset, uint64_t bytes,
                        uint64_t cluster_size, uint64_t file_size,
                        GError **errp)
{
    uint64_t end;

    if (offset & (cluster_size - 1)) {
        error_setg(errp, "%s offset %#" PRIx64 " is not aligned to the "
                   "cluster size (%" PRIu64 ")", what, offset, cluster_size);
        return false;
    }
    if (offset < cluster_size) {
        error_setg(errp, "%s (offset %#" PRIx64 ") overlaps the header",
                   what, offset);
        return false;
    }
    if (checked_add(offset, bytes, &end) || end > file_size) {
        error_setg(errp, "%s (offset %#" PRIx64 ", %" PRIu64 " bytes) lies "
                   "beyond the end of the image file (%" PRIu64 " bytes)",
                   what, offset, bytes, file_size);
        return false;
    }
    return true;
}

static bool ranges_overlap(uint64_t a, uint64_t alen, uint64_t b,
                           uint64_t blen)
{
    return alen && blen && a < b + blen && b < a + alen;
}

static bool check_tables(Qcow2Header *h, uint64_t file_size, GError **errp)
{
    uint64_t cs = UINT64_C(1) << h->cluster_bits;
    int l2_bits = h->cluster_bits - 3;
    int shift = h->cluster_bits + l2_bits;
    uint64_t l1_needed, reft_bytes;

    if (h->size > (uint64_t)BDRV_MAX_LENGTH) {
        error_setg(errp, "Image size %" PRIu64 " is too large", h->size);
        return false;
    }
    if (h->l1_size > QCOW2_MAX_L1_BYTES / 8) {
        error_setg(errp, "Active L1 table too large: %" PRIu32 " entries "
                   "(at most %d)", h->l1_size, QCOW2_MAX_L1_BYTES / 8);
        return false;
    }
    l1_needed = (h->size >> shift) +
                ((h->size & ((UINT64_C(1) << shift) - 1)) != 0);
    if (h->l1_size < l1_needed) {
        error_setg(errp, "L1 table is too small: %" PRIu32 " entries for a "
                   "virtual size that needs %" PRIu64, h->l1_size, l1_needed);
        return false;
    }
    if (h->l1_size &&
        !check_table("Active L1 table", h->l1_table_offset,
                     (uint64_t)h->l1_size * 8, cs, file_size, errp)) {
        return false;
    }
    if (h->refcount_table_clusters == 0) {
        error_setg(errp, "Image does not contain a reference count table");
        return false;
    }
    if ((uint64_t)h->refcount_table_clusters > QCOW2_MAX_REFTABLE_BYTES / cs) {
        error_setg(errp, "Reference count table too large: %" PRIu32
                   " clusters (at most %d bytes)", h->refcount_table_clusters,
                   QCOW2_MAX_REFTABLE_BYTES);
        return false;
    }
    reft_bytes = (uint64_t)h->refcount_table_clusters * cs;
    if (!check_table("Reference count table", h->refcount_table_offset,
                     reft_bytes, cs, file_size, errp)) {
        return false;
    }
    if (ranges_overlap(h->refcount_table_offset, reft_bytes,
                       h->l1_table_offset, (uint64_t)h->l1_size * 8)) {
        error_setg(errp, "Reference count table (offset %#" PRIx64 ") "
                   "overlaps the active L1 table (offset %#" PRIx64 ")",
                   h->refcount_table_offset, h->l1_table_offset);
        return false;
    }
    if (h->nb_snapshots > QCOW2_MAX_SNAPSHOTS) {
        error_setg(errp, "Too many snapshots: %" PRIu32 " (at most %d)",
                   h->nb_snapshots, QCOW2_MAX_SNAPSHOTS);
        return false;
    }
    if (h->nb_snapshots &&
        !check_table("Snapshot table", h->snapshots_offset, 0, cs,
                     file_size, errp)) {
        return false;
    }
    return true;
}

static bool parse_backing_name(const uint8_t *buf, size_t len,
                               Qcow2Header *h, GError **errp)
{
    uint64_t cs = UINT64_C(1) << h->cluster_bits;

    if (!h->backing_file_offset) {
        return true;
    }
    if (h->backing_file_offset > cs) {
        error_setg(errp, "Invalid backing file offset %#" PRIx64 " (beyond "
                   "the first cluster)", h->backing_file_offset);
        return false;
    }
    if (h->backing_file_size > QCOW2_MAX_BACKING_NAME) {
        error_setg(errp, "Backing file name too long: %" PRIu32 " bytes (at "
                   "most %d)", h->backing_file_size, QCOW2_MAX_BACKING_NAME);
        return false;
    }
    if (h->backing_file_offset < h->header_length) {
        error_setg(errp, "Backing file name (offset %#" PRIx64 ") overlaps "
                   "the header", h->backing_file_offset);
        return false;
    }
    if (h->backing_file_offset + h->backing_file_size > len) {
        error_setg(errp, "Backing file name (offset %#" PRIx64 ", %" PRIu32
                   " bytes) runs past the end of the %s",
                   h->backing_file_offset, h->backing_file_size,
                   len < cs ? "file" : "header cluster");
        return false;
    }
    if (h->backing_file_size) {
        h->backing_file = g_strndup(
            (const char *)buf + h->backing_file_offset, h->backing_file_size);
    }
    return true;
}

bool qcow2_header_parse(const uint8_t *buf, size_t len, uint64_t file_size,
                        Qcow2Header *h, GError **errp)
{
    uint64_t cs, limit;

    qcow2_header_clear(h);
    header_init_lists(h);
    if (len < 8 || ldl_be(buf + QCOW2_HDR_MAGIC) != QCOW2_MAGIC) {
        error_setg(errp, "Image is not in qcow2 format");
        return false;
    }
    h->version = ldl_be(buf + QCOW2_HDR_VERSION);
    if (h->version != 2 && h->version != 3) {
        error_setg(errp, "Unsupported qcow2 version %" PRIu32
                   " (supported: 2 and 3)", h->version);
        return false;
    }
    if (len < QCOW2_V2_HEADER_SIZE) {
        error_setg(errp, "qcow2 header truncated: the file has %zu bytes, "
                   "the header needs %d", len, QCOW2_V2_HEADER_SIZE);
        return false;
    }
    parse_fixed_fields(buf, h);
    if (h->cluster_bits < QCOW2_MIN_CLUSTER_BITS ||
        h->cluster_bits > QCOW2_MAX_CLUSTER_BITS) {
        error_setg(errp, "Unsupported cluster size: 2^%" PRIu32
                   " (supported: 2^%d to 2^%d)", h->cluster_bits,
                   QCOW2_MIN_CLUSTER_BITS, QCOW2_MAX_CLUSTER_BITS);
        return false;
    }
    cs = UINT64_C(1) << h->cluster_bits;
    if (h->version == 2) {
        h->header_length = QCOW2_V2_HEADER_SIZE;
        h->refcount_order = 4;
    } else if (!parse_v3_fields(buf, len, h, cs, errp)) {
        return false;
    }
    limit = MIN((uint64_t)len, cs);
    if (h->backing_file_offset && h->backing_file_offset < limit) {
        limit = h->backing_file_offset;
    }
    if (!parse_extensions(buf, limit, h, errp) ||
        !check_features(h, errp) ||
        !parse_backing_name(buf, len, h, errp) ||
        !check_tables(h, file_size, errp)) {
        return false;
    }
    return true;
}

/* Append one extension at *off; false if it (plus an end marker) overflows. */
static bool put_ext(uint8_t *buf, size_t size, size_t *off, uint32_t magic,
                    const void *data, uint32_t len)
{
    uint64_t need = 8 + ROUND_UP((uint64_t)len, 8);

    if (*off + need + 8 > size) {
        return false;
    }
    stl_be(buf + *off, magic);
    stl_be(buf + *off + 4, len);
    if (len) {
        memcpy(buf + *off + 8, data, len);
    }
    *off += need;
    return true;
}

static bool put_feature_table(Qcow2Header *h, uint8_t *buf, size_t size,
                              size_t *off)
{
    uint32_t len = h->features->len * QCOW2_FEATURE_ENTRY_SIZE;
    g_autofree uint8_t *t = g_malloc0(len ? len : 1);

    for (guint i = 0; i < h->features->len; i++) {
        Qcow2FeatureName *f = &g_array_index(h->features, Qcow2FeatureName,
                                             i);
        uint8_t *e = t + i * QCOW2_FEATURE_ENTRY_SIZE;
        e[0] = f->type;
        e[1] = f->bit;
        memcpy(e + 2, f->name, strnlen(f->name, QCOW2_FEATURE_NAME_SIZE));
    }
    return put_ext(buf, size, off, QCOW2_EXT_FEATURE_TABLE, t, len);
}

static void put_fixed_fields(Qcow2Header *h, uint8_t *buf, uint32_t hlen)
{
    stl_be(buf + QCOW2_HDR_MAGIC, QCOW2_MAGIC);
    stl_be(buf + QCOW2_HDR_VERSION, h->version);
    stq_be(buf + QCOW2_HDR_BACKING_OFFSET, h->backing_file_offset);
    stl_be(buf + QCOW2_HDR_BACKING_SIZE, h->backing_file_size);
    stl_be(buf + QCOW2_HDR_CLUSTER_BITS, h->cluster_bits);
    stq_be(buf + QCOW2_HDR_SIZE, h->size);
    stl_be(buf + QCOW2_HDR_CRYPT_METHOD, h->crypt_method);
    stl_be(buf + QCOW2_HDR_L1_SIZE, h->l1_size);
    stq_be(buf + QCOW2_HDR_L1_OFFSET, h->l1_table_offset);
    stq_be(buf + QCOW2_HDR_REFTABLE_OFFSET, h->refcount_table_offset);
    stl_be(buf + QCOW2_HDR_REFTABLE_CLUSTERS, h->refcount_table_clusters);
    stl_be(buf + QCOW2_HDR_NB_SNAPSHOTS, h->nb_snapshots);
    stq_be(buf + QCOW2_HDR_SNAPSHOTS_OFFSET, h->snapshots_offset);
    if (h->version < 3) {
        return;
    }
    stq_be(buf + QCOW2_HDR_INCOMPAT, h->incompatible_features);
    stq_be(buf + QCOW2_HDR_COMPAT, h->compatible_features);
    stq_be(buf + QCOW2_HDR_AUTOCLEAR, h->autoclear_features);
    stl_be(buf + QCOW2_HDR_REFCOUNT_ORDER, h->refcount_order);
    stl_be(buf + QCOW2_HDR_HEADER_LENGTH, hlen);
    buf[QCOW2_HDR_COMPRESSION_TYPE] = h->compression_type;
    if (h->extra_fields_len) {
        memcpy(buf + QCOW2_V3_HEADER_SIZE, h->extra_fields,
               h->extra_fields_len);
    }
}

int qcow2_header_serialize(Qcow2Header *h, uint8_t *buf, size_t buf_size,
                           GError **errp)
{
    uint32_t hlen = h->version < 3 ? QCOW2_V2_HEADER_SIZE
                                   : QCOW2_V3_HEADER_SIZE +
                                         h->extra_fields_len;
    size_t off = hlen;
    size_t blen = h->backing_file ? strlen(h->backing_file) : 0;
    bool ok = hlen <= buf_size;

    header_init_lists(h);
    memset(buf, 0, buf_size);
    if (ok && h->backing_fmt) {
        ok = put_ext(buf, buf_size, &off, QCOW2_EXT_BACKING_FORMAT,
                     h->backing_fmt, strlen(h->backing_fmt));
    }
    /* Like QEMU, only clusters above 4 KiB get a feature name table. */
    if (ok && h->version >= 3 && h->features->len && buf_size > 4096) {
        ok = put_feature_table(h, buf, buf_size, &off);
    }
    for (guint i = 0; ok && i < h->exts->len; i++) {
        Qcow2RawExt *e = h->exts->pdata[i];
        ok = put_ext(buf, buf_size, &off, e->magic, e->data, e->len);
    }
    if (ok) {
        off += 8; /* the end marker: eight zero bytes */
        ok = off + blen <= buf_size && blen <= QCOW2_MAX_BACKING_NAME;
    }
    if (!ok) {
        error_setg(errp, "The qcow2 header and its extensions do not fit "
                   "in the first cluster (%zu bytes)", buf_size);
        return -ENOSPC;
    }
    h->backing_file_offset = blen ? off : 0;
    h->backing_file_size = blen;
    if (blen) {
        memcpy(buf + off, h->backing_file, blen);
        off += blen;
    }
    h->header_length = hlen;
    put_fixed_fields(h, buf, hlen);
    return (int)off;
}

void qcow2_geometry_from_header(Qcow2State *s)
{
    Qcow2Header *h = &s->hdr;

    s->cluster_bits = h->cluster_bits;
    s->cluster_size = UINT64_C(1) << s->cluster_bits;
    s->l2_bits = s->cluster_bits - 3;
    s->l2_entries = UINT64_C(1) << s->l2_bits;
    s->refcount_order = h->refcount_order;
    s->refcount_max = h->refcount_order == 6
                          ? UINT64_MAX
                          : (UINT64_C(1) << (1 << h->refcount_order)) - 1;
    s->refblock_bits = s->cluster_bits + 3 - s->refcount_order;
    s->refblock_entries = UINT64_C(1) << s->refblock_bits;
    s->csize_shift = 62 - (s->cluster_bits - 8);
    s->csize_mask = (UINT64_C(1) << (s->cluster_bits - 8)) - 1;
    s->cluster_offset_mask = (UINT64_C(1) << s->csize_shift) - 1;
    s->size = h->size;
    s->compression_type = h->compression_type;
}

int qcow2_update_header(BlockDriverState *bs)
{
    Qcow2State *s = bs->opaque;
    g_autofree uint8_t *buf = g_try_malloc(s->cluster_size);
    g_autoptr(GError) err = NULL;
    int ret;

    if (!buf) {
        return -ENOMEM;
    }
    ret = qcow2_header_serialize(&s->hdr, buf, s->cluster_size, &err);
    if (ret < 0) {
        return ret;
    }
    ret = qcow2_grow_file(bs, s->cluster_size);
    if (ret < 0) {
        return ret;
    }
    return bdrv_pwrite(bs->file, 0, s->cluster_size, buf, 0);
}

int qcow2_write_header_field(BlockDriverState *bs, int offset, int width,
                             uint64_t value)
{
    uint8_t b[8];

    if (width == 8) {
        stq_be(b, value);
    } else {
        stl_be(b, (uint32_t)value);
    }
    return bdrv_pwrite(bs->file, offset, width, b, 0);
}

static int write_incompat(BlockDriverState *bs)
{
    Qcow2State *s = bs->opaque;
    int ret = qcow2_write_header_field(bs, QCOW2_HDR_INCOMPAT, 8,
                                       s->hdr.incompatible_features);
    return ret < 0 ? ret : bdrv_flush(bs->file);
}

int qcow2_mark_dirty(BlockDriverState *bs)
{
    Qcow2State *s = bs->opaque;
    int ret;

    if (s->dirty_on_disk || s->hdr.version < 3) {
        return 0;
    }
    s->hdr.incompatible_features |= QCOW2_INCOMPAT_DIRTY;
    ret = write_incompat(bs);
    if (ret == 0) {
        s->dirty_on_disk = true;
    }
    return ret;
}

int qcow2_mark_clean(BlockDriverState *bs)
{
    Qcow2State *s = bs->opaque;
    int ret;

    if (!(s->hdr.incompatible_features & QCOW2_INCOMPAT_DIRTY)) {
        s->dirty_on_disk = false;
        return 0;
    }
    s->hdr.incompatible_features &= ~QCOW2_INCOMPAT_DIRTY;
    ret = write_incompat(bs);
    if (ret == 0) {
        s->dirty_on_disk = false;
    }
    return ret;
}

void qcow2_signal_corruption(BlockDriverState *bs, const char *fmt, ...)
{
    Qcow2State *s = bs->opaque;
    g_autofree char *msg = NULL;
    va_list ap;

    va_start(ap, fmt);
    msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    if (!s->corrupt_reported) {
        if (s->writable) {
            error_report("qcow2: Marking image as corrupt: %s; further "
                         "corruption events will be suppressed", msg);
        } else {
            error_report("qcow2: Image is corrupt: %s; further non-fatal "
                         "corruption events will be suppressed", msg);
        }
        s->corrupt_reported = true;
    }
    if (s->writable) {
        s->writable = false;
        s->hdr.incompatible_features |= QCOW2_INCOMPAT_CORRUPT;
        if (s->hdr.version >= 3) {
            write_incompat(bs);
        }
    }
}
