/*
 * Unit tests for the qcow2 header parser and serializer
 * (block/qcow2/qcow2-header.c) on crafted byte arrays: valid version 2 and
 * 3 headers, every rejected field with the message naming it, extension
 * bounds, the feature name table, and byte-exact round trips of unknown
 * extensions and header fields.
 */
#include "qcow2.h"
#include "util/bswap.h"

#include <string.h>

#define CS 65536
#define FILE_SIZE (4 * CS)

/* A valid image start like `qemu-img create -f qcow2 x 1G` writes. */
static uint8_t *make_header(int version)
{
    uint8_t *b = g_malloc0(CS);

    stl_be(b + QCOW2_HDR_MAGIC, QCOW2_MAGIC);
    stl_be(b + QCOW2_HDR_VERSION, version);
    stl_be(b + QCOW2_HDR_CLUSTER_BITS, 16);
    stq_be(b + QCOW2_HDR_SIZE, UINT64_C(1) << 30);
    stl_be(b + QCOW2_HDR_L1_SIZE, 2);
    stq_be(b + QCOW2_HDR_L1_OFFSET, 3 * CS);
    stq_be(b + QCOW2_HDR_REFTABLE_OFFSET, CS);
    stl_be(b + QCOW2_HDR_REFTABLE_CLUSTERS, 1);
    if (version >= 3) {
        stl_be(b + QCOW2_HDR_REFCOUNT_ORDER, 4);
        stl_be(b + QCOW2_HDR_HEADER_LENGTH, 112);
    }
    return b;
}

/* Append an extension at *off. */
static void add_ext(uint8_t *b, size_t *off, uint32_t magic,
                    const void *data, uint32_t len)
{
    stl_be(b + *off, magic);
    stl_be(b + *off + 4, len);
    memcpy(b + *off + 8, data, len);
    *off += 8 + ((len + 7) & ~7U);
}

/* Parse and expect failure with @needle in the message. */
static void expect_error(const uint8_t *b, size_t len, const char *needle)
{
    Qcow2Header h = {0};
    g_autoptr(GError) err = NULL;

    g_assert_false(qcow2_header_parse(b, len, FILE_SIZE, &h, &err));
    g_assert_nonnull(err);
    if (!strstr(err->message, needle)) {
        g_test_message("message was: %s", err->message);
    }
    g_assert_nonnull(strstr(err->message, needle));
    qcow2_header_clear(&h);
}

static void test_valid_v3(void)
{
    g_autofree uint8_t *b = make_header(3);
    Qcow2Header h = {0};
    g_autoptr(GError) err = NULL;

    g_assert_true(qcow2_header_parse(b, CS, FILE_SIZE, &h, &err));
    g_assert_no_error(err);
    g_assert_cmpuint(h.version, ==, 3);
    g_assert_cmpuint(h.cluster_bits, ==, 16);
    g_assert_cmpuint(h.size, ==, UINT64_C(1) << 30);
    g_assert_cmpuint(h.refcount_order, ==, 4);
    g_assert_cmpuint(h.header_length, ==, 112);
    g_assert_null(h.backing_file);
    g_assert_cmpuint(h.exts->len, ==, 0);
    qcow2_header_clear(&h);
}

static void test_valid_v2(void)
{
    g_autofree uint8_t *b = make_header(2);
    Qcow2Header h = {0};
    g_autoptr(GError) err = NULL;

    /* v2 ignores bytes 72..103 as header fields: put junk-free zeros. */
    g_assert_true(qcow2_header_parse(b, CS, FILE_SIZE, &h, &err));
    g_assert_cmpuint(h.version, ==, 2);
    g_assert_cmpuint(h.header_length, ==, 72);
    g_assert_cmpuint(h.refcount_order, ==, 4);
    g_assert_cmpuint(h.incompatible_features, ==, 0);
    qcow2_header_clear(&h);
}

static void test_bad_magic(void)
{
    g_autofree uint8_t *b = make_header(3);

    b[0] = 'X';
    expect_error(b, CS, "not in qcow2 format");
    expect_error(b, 3, "not in qcow2 format");
}

static void test_bad_version(void)
{
    g_autofree uint8_t *b = make_header(3);

    stl_be(b + QCOW2_HDR_VERSION, 1);
    expect_error(b, CS, "Unsupported qcow2 version 1");
    stl_be(b + QCOW2_HDR_VERSION, 4);
    expect_error(b, CS, "Unsupported qcow2 version 4");
}

static void test_truncated(void)
{
    g_autofree uint8_t *b = make_header(3);

    expect_error(b, 50, "truncated");
    expect_error(b, 80, "truncated");
    stl_be(b + QCOW2_HDR_HEADER_LENGTH, 4096);
    expect_error(b, 1024, "header_length is 4096");
}

static void test_header_length(void)
{
    g_autofree uint8_t *b = make_header(3);

    stl_be(b + QCOW2_HDR_HEADER_LENGTH, 100);
    expect_error(b, CS, "header_length is 100");
    stl_be(b + QCOW2_HDR_HEADER_LENGTH, 108);
    expect_error(b, CS, "header_length 108 is not a multiple of 8");
    stl_be(b + QCOW2_HDR_HEADER_LENGTH, 0x7ffffff8);
    expect_error(b, CS, "exceeds cluster size");
}

static void test_cluster_bits(void)
{
    g_autofree uint8_t *b = make_header(3);

    stl_be(b + QCOW2_HDR_CLUSTER_BITS, 8);
    expect_error(b, CS, "Unsupported cluster size: 2^8");
    stl_be(b + QCOW2_HDR_CLUSTER_BITS, 22);
    expect_error(b, CS, "Unsupported cluster size: 2^22");
    stl_be(b + QCOW2_HDR_CLUSTER_BITS, 0xffffffff);
    expect_error(b, CS, "Unsupported cluster size");
}

static void test_unknown_incompat(void)
{
    g_autofree uint8_t *b = make_header(3);
    uint8_t entry[48] = {0};
    size_t off = 112;

    stq_be(b + QCOW2_HDR_INCOMPAT, UINT64_C(1) << 40);
    expect_error(b, CS, "Unknown incompatible feature bit 40");
    entry[0] = QCOW2_FEATURE_TYPE_INCOMPAT;
    entry[1] = 40;
    memcpy(entry + 2, "fancy feature", 13);
    add_ext(b, &off, QCOW2_EXT_FEATURE_TABLE, entry, sizeof(entry));
    expect_error(b, CS, "fancy feature (incompatible bit 40)");
    stq_be(b + QCOW2_HDR_INCOMPAT, (UINT64_C(1) << 40) | (1 << 9));
    expect_error(b, CS, "Unknown incompatible feature bit 9, fancy feature");
}

static void test_refused_features(void)
{
    g_autofree uint8_t *b = make_header(3);

    stq_be(b + QCOW2_HDR_INCOMPAT, QCOW2_INCOMPAT_DATA_FILE);
    expect_error(b, CS, "external data file");
    stq_be(b + QCOW2_HDR_INCOMPAT, QCOW2_INCOMPAT_EXTL2);
    expect_error(b, CS, "extended L2 entries");
    stq_be(b + QCOW2_HDR_INCOMPAT, 0);
    stl_be(b + QCOW2_HDR_CRYPT_METHOD, 1);
    expect_error(b, CS, "encrypted");
}

static void test_compression_type(void)
{
    g_autofree uint8_t *b = make_header(3);
    Qcow2Header h = {0};

    stq_be(b + QCOW2_HDR_INCOMPAT, QCOW2_INCOMPAT_COMPRESSION);
    expect_error(b, CS, "compression type 0");
    b[QCOW2_HDR_COMPRESSION_TYPE] = 1;
    g_assert_true(qcow2_header_parse(b, CS, FILE_SIZE, &h, NULL));
    g_assert_cmpuint(h.compression_type, ==, QCOW2_COMPRESSION_ZSTD);
    qcow2_header_clear(&h);
    stq_be(b + QCOW2_HDR_INCOMPAT, 0);
    expect_error(b, CS, "compression type 1");
    b[QCOW2_HDR_COMPRESSION_TYPE] = 7;
    expect_error(b, CS, "unknown compression type 7");
}

static void test_ext_too_large(void)
{
    g_autofree uint8_t *b = make_header(3);
    uint8_t small[512];

    stl_be(b + 112, 0x12345678);
    stl_be(b + 116, CS);
    expect_error(b, CS, "too large");
    stl_be(b + 116, 0xfffffff0);
    expect_error(b, CS, "Header extension 0x12345678 at offset 112 too large");
    /* A file shorter than the cluster: the extension area ends there. */
    stl_be(b + 116, 1000);
    memcpy(small, b, sizeof(small));
    expect_error(small, sizeof(small), "too large");
}

static void test_backing_fmt(void)
{
    g_autofree uint8_t *b = make_header(3);
    g_autofree char *big = g_strnfill(1024, 'a');
    Qcow2Header h = {0};
    size_t off = 112;

    add_ext(b, &off, QCOW2_EXT_BACKING_FORMAT, "qcow2", 5);
    memcpy(b + off + 8, "base.img", 8);
    stq_be(b + QCOW2_HDR_BACKING_OFFSET, off + 8);
    stl_be(b + QCOW2_HDR_BACKING_SIZE, 8);
    g_assert_true(qcow2_header_parse(b, CS, FILE_SIZE, &h, NULL));
    g_assert_cmpstr(h.backing_fmt, ==, "qcow2");
    g_assert_cmpstr(h.backing_file, ==, "base.img");
    qcow2_header_clear(&h);

    stl_be(b + QCOW2_HDR_BACKING_SIZE, 1024);
    expect_error(b, CS, "Backing file name too long");
    stl_be(b + QCOW2_HDR_BACKING_SIZE, 8);
    stq_be(b + QCOW2_HDR_BACKING_OFFSET, CS - 4);
    expect_error(b, CS, "runs past the end");
    stq_be(b + QCOW2_HDR_BACKING_OFFSET, CS * 2);
    expect_error(b, CS, "Invalid backing file offset");
    stq_be(b + QCOW2_HDR_BACKING_OFFSET, 0);
    off = 112;
    add_ext(b, &off, QCOW2_EXT_BACKING_FORMAT, big, 1024);
    expect_error(b, CS, "Backing format name too long");
}

static void test_refcount_order(void)
{
    g_autofree uint8_t *b = make_header(3);

    stl_be(b + QCOW2_HDR_REFCOUNT_ORDER, 7);
    expect_error(b, CS, "may not exceed 64 bits");
}

static void test_l1_checks(void)
{
    g_autofree uint8_t *b = make_header(3);

    stl_be(b + QCOW2_HDR_L1_SIZE, 5 * 1024 * 1024);
    expect_error(b, CS, "Active L1 table too large");
    stl_be(b + QCOW2_HDR_L1_SIZE, 1);
    expect_error(b, CS, "L1 table is too small");
    stl_be(b + QCOW2_HDR_L1_SIZE, 2);
    stq_be(b + QCOW2_HDR_L1_OFFSET, 3 * CS + 8);
    expect_error(b, CS, "is not aligned");
    stq_be(b + QCOW2_HDR_L1_OFFSET, 100 * CS);
    expect_error(b, CS, "beyond the end of the image file");
    stq_be(b + QCOW2_HDR_L1_OFFSET, 0);
    expect_error(b, CS, "overlaps the header");
    stq_be(b + QCOW2_HDR_L1_OFFSET, UINT64_MAX - CS + 1);
    expect_error(b, CS, "beyond the end");
    stq_be(b + QCOW2_HDR_L1_OFFSET, CS);
    expect_error(b, CS, "overlaps the active L1 table");
}

static void test_reftable_checks(void)
{
    g_autofree uint8_t *b = make_header(3);

    stq_be(b + QCOW2_HDR_REFTABLE_OFFSET, 0);
    expect_error(b, CS, "Reference count table (offset 0) overlaps the "
                 "header");
    stq_be(b + QCOW2_HDR_REFTABLE_OFFSET, CS + 512);
    expect_error(b, CS, "Reference count table offset 0x10200 is not "
                 "aligned");
    stq_be(b + QCOW2_HDR_REFTABLE_OFFSET, CS);
    stl_be(b + QCOW2_HDR_REFTABLE_CLUSTERS, 0);
    expect_error(b, CS, "does not contain a reference count table");
    stl_be(b + QCOW2_HDR_REFTABLE_CLUSTERS, 200);
    expect_error(b, CS, "Reference count table too large");
    stl_be(b + QCOW2_HDR_REFTABLE_CLUSTERS, 0xffffffff);
    expect_error(b, CS, "Reference count table too large");
    stl_be(b + QCOW2_HDR_REFTABLE_CLUSTERS, 8);
    expect_error(b, CS, "beyond the end of the image file");
}

static void test_snapshots(void)
{
    g_autofree uint8_t *b = make_header(3);

    stl_be(b + QCOW2_HDR_NB_SNAPSHOTS, 70000);
    expect_error(b, CS, "Too many snapshots");
    stl_be(b + QCOW2_HDR_NB_SNAPSHOTS, 1);
    stq_be(b + QCOW2_HDR_SNAPSHOTS_OFFSET, 12345);
    expect_error(b, CS, "Snapshot table offset");
}

/* Unknown extensions and fields survive parse + serialize byte for byte. */
static void test_round_trip(void)
{
    g_autofree uint8_t *b = make_header(3);
    g_autofree uint8_t *out = g_malloc(CS);
    uint8_t odd[5] = { 1, 2, 3, 4, 5 }, bm[24] = { 0, 0, 0, 1 };
    Qcow2Header h = {0}, h2 = {0};
    const Qcow2RawExt *e;
    size_t off = 120;
    int n;

    stl_be(b + QCOW2_HDR_HEADER_LENGTH, 120);
    memset(b + 112, 0xab, 8);            /* an unknown additional field */
    add_ext(b, &off, 0xdeadbeef, odd, sizeof(odd));
    add_ext(b, &off, QCOW2_EXT_BITMAPS, bm, sizeof(bm));
    add_ext(b, &off, 0x0badf00d, "", 0);
    stq_be(b + QCOW2_HDR_AUTOCLEAR, 1);
    g_assert_true(qcow2_header_parse(b, CS, FILE_SIZE, &h, NULL));
    g_assert_cmpuint(h.exts->len, ==, 3);
    g_assert_cmpuint(h.extra_fields_len, ==, 8);
    h.backing_file = g_strdup("some/base.qcow2");
    h.backing_fmt = g_strdup("qcow2");
    qcow2_header_set_std_features(&h);
    n = qcow2_header_serialize(&h, out, CS, NULL);
    g_assert_cmpint(n, >, 120);
    g_assert_true(qcow2_header_parse(out, CS, FILE_SIZE, &h2, NULL));
    g_assert_cmpuint(h2.header_length, ==, 120);
    g_assert_cmpmem(h2.extra_fields, 8, b + 112, 8);
    g_assert_cmpuint(h2.exts->len, ==, 3);
    e = h2.exts->pdata[0];
    g_assert_cmpuint(e->magic, ==, 0xdeadbeef);
    g_assert_cmpmem(e->data, e->len, odd, sizeof(odd));
    e = qcow2_header_find_ext(&h2, QCOW2_EXT_BITMAPS);
    g_assert_nonnull(e);
    g_assert_cmpmem(e->data, e->len, bm, sizeof(bm));
    g_assert_cmpuint(((Qcow2RawExt *)h2.exts->pdata[2])->len, ==, 0);
    g_assert_cmpstr(h2.backing_file, ==, "some/base.qcow2");
    g_assert_cmpstr(h2.backing_fmt, ==, "qcow2");
    g_assert_cmpuint(h2.features->len, ==, 8);
    g_assert_cmpuint(h2.autoclear_features, ==, 1);
    /* Serializing the re-parsed header gives the same bytes. */
    {
        g_autofree uint8_t *out2 = g_malloc(CS);
        g_assert_cmpint(qcow2_header_serialize(&h2, out2, CS, NULL), ==, n);
        g_assert_cmpmem(out, CS, out2, CS);
    }
    qcow2_header_clear(&h);
    qcow2_header_clear(&h2);
}

static void test_set_ext(void)
{
    Qcow2Header h = {0};
    g_autofree uint8_t *out = g_malloc(512);
    g_autoptr(GError) err = NULL;
    uint8_t big[400] = {0};

    h.version = 3;
    h.cluster_bits = 9;
    h.refcount_order = 4;
    qcow2_header_set_ext(&h, 0x1234, "abc", 3);
    qcow2_header_set_ext(&h, 0x1234, "abcdef", 6);
    g_assert_cmpuint(qcow2_header_find_ext(&h, 0x1234)->len, ==, 6);
    qcow2_header_set_ext(&h, 0x5678, big, sizeof(big));
    g_assert_cmpint(qcow2_header_serialize(&h, out, 512, &err), ==, -ENOSPC);
    g_assert_nonnull(strstr(err->message, "do not fit"));
    qcow2_header_set_ext(&h, 0x5678, NULL, 0);
    g_assert_null(qcow2_header_find_ext(&h, 0x5678));
    g_assert_cmpint(qcow2_header_serialize(&h, out, 512, NULL), >, 0);
    qcow2_header_clear(&h);
}

static void test_duplicate_ext(void)
{
    g_autofree uint8_t *b = make_header(3);
    uint8_t bm[24] = {0};
    size_t off = 112;

    add_ext(b, &off, QCOW2_EXT_BITMAPS, bm, sizeof(bm));
    add_ext(b, &off, QCOW2_EXT_BITMAPS, bm, sizeof(bm));
    expect_error(b, CS, "Duplicate bitmaps header extension");
    off = 112;
    add_ext(b, &off, QCOW2_EXT_BACKING_FORMAT, "raw", 3);
    add_ext(b, &off, QCOW2_EXT_BACKING_FORMAT, "raw", 3);
    expect_error(b, CS, "Duplicate backing format");
}

/* Every prefix of a valid header fails cleanly (or parses). */
static void test_all_truncations(void)
{
    g_autofree uint8_t *b = make_header(3);

    for (size_t len = 0; len < 200; len++) {
        Qcow2Header h = {0};
        g_autoptr(GError) err = NULL;
        uint8_t *copy = g_memdup2(b, len ? len : 1);
        bool ok = qcow2_header_parse(copy, len, FILE_SIZE, &h, &err);
        g_assert_true(ok == (err == NULL));
        qcow2_header_clear(&h);
        g_free(copy);
    }
}

/* Random bytes after a valid fixed header never crash the parser. */
static void test_random_extensions(void)
{
    GRand *r = g_rand_new_with_seed(42);

    for (int i = 0; i < 2000; i++) {
        g_autofree uint8_t *b = make_header(3);
        Qcow2Header h = {0};
        size_t len = 112 + g_rand_int_range(r, 0, 400);
        for (size_t j = 112; j < len; j++) {
            b[j] = g_rand_int_range(r, 0, 4) ? 0 : g_rand_int(r);
        }
        if (g_rand_boolean(r)) {
            stl_be(b + 116, g_rand_int_range(r, 0, 600));
        }
        qcow2_header_parse(b, len, FILE_SIZE, &h, NULL);
        qcow2_header_clear(&h);
    }
    g_rand_free(r);
}

static void test_feature_describe(void)
{
    Qcow2Header h = {0};
    g_autofree char *a = NULL, *c = NULL;

    qcow2_header_set_std_features(&h);
    a = qcow2_feature_describe(&h, QCOW2_FEATURE_TYPE_AUTOCLEAR, 0);
    g_assert_cmpstr(a, ==, "bitmaps (autoclear bit 0)");
    c = qcow2_feature_describe(&h, QCOW2_FEATURE_TYPE_COMPAT, 5);
    g_assert_cmpstr(c, ==, "Unknown compatible feature bit 5");
    qcow2_header_clear(&h);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/qcow2-header/valid-v3", test_valid_v3);
    g_test_add_func("/qcow2-header/valid-v2", test_valid_v2);
    g_test_add_func("/qcow2-header/bad-magic", test_bad_magic);
    g_test_add_func("/qcow2-header/bad-version", test_bad_version);
    g_test_add_func("/qcow2-header/truncated", test_truncated);
    g_test_add_func("/qcow2-header/header-length", test_header_length);
    g_test_add_func("/qcow2-header/cluster-bits", test_cluster_bits);
    g_test_add_func("/qcow2-header/unknown-incompat", test_unknown_incompat);
    g_test_add_func("/qcow2-header/refused-features", test_refused_features);
    g_test_add_func("/qcow2-header/compression-type", test_compression_type);
    g_test_add_func("/qcow2-header/ext-too-large", test_ext_too_large);
    g_test_add_func("/qcow2-header/backing", test_backing_fmt);
    g_test_add_func("/qcow2-header/refcount-order", test_refcount_order);
    g_test_add_func("/qcow2-header/l1", test_l1_checks);
    g_test_add_func("/qcow2-header/reftable", test_reftable_checks);
    g_test_add_func("/qcow2-header/snapshots", test_snapshots);
    g_test_add_func("/qcow2-header/round-trip", test_round_trip);
    g_test_add_func("/qcow2-header/set-ext", test_set_ext);
    g_test_add_func("/qcow2-header/duplicate-ext", test_duplicate_ext);
    g_test_add_func("/qcow2-header/all-truncations", test_all_truncations);
    g_test_add_func("/qcow2-header/random-extensions",
                    test_random_extensions);
    g_test_add_func("/qcow2-header/feature-describe", test_feature_describe);
    return g_test_run();
}
