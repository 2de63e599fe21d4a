/*
 * qcow2 bitmap directory codec (block/qcow2/qcow2-bitmap-dir.c) on crafted
 * buffers: round trips, every rejection of the extension, the directory
 * and table entries with the message naming the culprit, and random
 * corruption of a valid directory (must never crash or read out of
 * bounds: run under ASan).
 */
#include "qcow2-bitmap.h"
#include "qapi/error.h"
#include "util/bswap.h"

#include <string.h>

#define CS 65536
#define MiB (UINT64_C(1) << 20)

static const Qcow2BitmapGeometry geo = {
    .cluster_size = CS,
    .disk_size = 1024 * MiB,
    .file_size = 64 * MiB,
};

static Qcow2BitmapEntry *mk(const char *name, uint64_t table, uint32_t size,
                            uint32_t flags, uint8_t gbits)
{
    Qcow2BitmapEntry *e = qcow2_bitmap_entry_new(name);

    e->table_offset = table;
    e->table_size = size;
    e->flags = flags;
    e->granularity_bits = gbits;
    return e;
}

static GPtrArray *three_entries(void)
{
    GPtrArray *a = g_ptr_array_new_with_free_func(
        (GDestroyNotify)qcow2_bitmap_entry_free);

    /* 1 GiB at 64 KiB: 16384 bits = 2048 bytes, one cluster. */
    g_ptr_array_add(a, mk("b0", 3 * CS, 1, QCOW2_BME_FLAG_AUTO, 16));
    g_ptr_array_add(a, mk("a-much-longer-bitmap-name", 4 * CS, 1, 0, 16));
    /* 512 B granularity: 2 Mi bits = 256 KiB = 4 clusters. */
    g_ptr_array_add(a, mk("fine", 5 * CS, 4, QCOW2_BME_FLAG_IN_USE, 9));
    return a;
}

/* Serialize @entries into a directory at 2 * CS and parse it back. */
static GPtrArray *roundtrip(GPtrArray *entries, uint8_t **out,
                            uint64_t *out_size, GError **errp)
{
    Qcow2BitmapExt ext = { entries->len, 0, 2 * CS };
    uint8_t *buf = qcow2_bitmap_dir_serialize(entries, &ext.dir_size);
    GPtrArray *back = qcow2_bitmap_dir_parse(buf, &ext, &geo, errp);

    if (out) {
        *out = buf;
        *out_size = ext.dir_size;
    } else {
        g_free(buf);
    }
    return back;
}

static void expect_dir_error(const uint8_t *buf, uint64_t size, uint32_t nb,
                             const char *needle)
{
    Qcow2BitmapExt ext = { nb, size, 2 * CS };
    GError *err = NULL;
    GPtrArray *r = qcow2_bitmap_dir_parse(buf, &ext, &geo, &err);

    g_assert_null(r);
    g_assert_nonnull(err);
    if (!strstr(err->message, needle)) {
        g_error("message '%s' lacks '%s'", err->message, needle);
    }
    g_error_free(err);
}

static void test_roundtrip(void)
{
    g_autoptr(GPtrArray) in = three_entries();
    GError *err = NULL;
    g_autoptr(GPtrArray) out = roundtrip(in, NULL, NULL, &err);

    g_assert_no_error(err);
    g_assert_cmpuint(out->len, ==, 3);
    for (guint i = 0; i < 3; i++) {
        Qcow2BitmapEntry *a = g_ptr_array_index(in, i);
        Qcow2BitmapEntry *b = g_ptr_array_index(out, i);
        g_assert_cmpstr(a->name, ==, b->name);
        g_assert_cmpuint(a->table_offset, ==, b->table_offset);
        g_assert_cmpuint(a->table_size, ==, b->table_size);
        g_assert_cmpuint(a->flags, ==, b->flags);
        g_assert_cmpuint(a->granularity_bits, ==, b->granularity_bits);
    }
    /* Entry sizes are padded to 8: 24 + 2 -> 32, 24 + 25 -> 56. */
    g_assert_cmpuint(qcow2_bitmap_entry_size(2), ==, 32);
    g_assert_cmpuint(qcow2_bitmap_entry_size(25), ==, 56);
    g_assert_cmpuint(qcow2_bitmap_entry_size(1023), ==, 1048);
    g_assert_cmpuint(qcow2_bitmap_data_bytes(1024 * MiB, 16), ==, 2048);
    g_assert_cmpuint(qcow2_bitmap_data_bytes(1, 16), ==, 1);
    g_assert_cmpuint(qcow2_bitmap_data_bytes(0, 16), ==, 0);
    g_assert_cmpuint(qcow2_bitmap_table_entries(1024 * MiB, 9, CS), ==, 4);
}

static void test_ext(void)
{
    uint8_t raw[QCOW2_BME_EXT_SIZE];
    Qcow2BitmapExt ext = { 2, 64, 2 * CS }, back;
    GError *err = NULL;
    static const struct {
        uint32_t nb, reserved;
        uint64_t size, offset;
        const char *needle;
    } bad[] = {
        { 0, 0, 64, 2 * CS, "zero bitmaps" },
        { 65536, 0, 65536 * 32, 2 * CS, "exceeding" },
        { 1, 7, 32, 2 * CS, "Reserved field" },
        { 1, 0, 1024 * 65535 + 8, 2 * CS, "exceeds the maximum" },
        { 4, 0, 64, 2 * CS, "says 4 bitmaps, but 64 bytes cannot hold" },
        { 1, 0, 32, 2 * CS + 512, "invalid bitmap directory offset" },
        { 1, 0, 32, 0, "invalid bitmap directory offset" },
        { 1, 0, 32, 64 * MiB, "beyond the end" },
        { 1, 0, 1024 * 1024, 64 * MiB - CS, "beyond the end" },
    };

    qcow2_bitmap_ext_serialize(&ext, raw);
    g_assert_true(qcow2_bitmap_ext_parse(raw, sizeof(raw), &geo, &back,
                                         &err));
    g_assert_no_error(err);
    g_assert_cmpuint(back.nb_bitmaps, ==, 2);
    g_assert_cmpuint(back.dir_size, ==, 64);
    g_assert_cmpuint(back.dir_offset, ==, 2 * CS);
    g_assert_false(qcow2_bitmap_ext_parse(raw, 16, &geo, &back, &err));
    g_assert_nonnull(strstr(err->message, "Invalid extension length"));
    g_clear_error(&err);
    for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
        stl_be(raw, bad[i].nb);
        stl_be(raw + 4, bad[i].reserved);
        stq_be(raw + 8, bad[i].size);
        stq_be(raw + 16, bad[i].offset);
        g_assert_false(qcow2_bitmap_ext_parse(raw, sizeof(raw), &geo, &back,
                                              &err));
        if (!strstr(err->message, bad[i].needle)) {
            g_error("case %zu: '%s' lacks '%s'", i, err->message,
                    bad[i].needle);
        }
        g_clear_error(&err);
    }
}

static void test_count_mismatch(void)
{
    g_autoptr(GPtrArray) in = three_entries();
    g_autofree uint8_t *buf = NULL;
    uint64_t size;
    GError *err = NULL;
    g_autoptr(GPtrArray) out = roundtrip(in, &buf, &size, &err);

    g_assert_no_error(err);
    /* Header says more bitmaps than the directory holds. */
    expect_dir_error(buf, size, 4, "says 4 bitmaps, the directory holds "
                     "only 3");
    /* Header says fewer: bytes are left over. */
    expect_dir_error(buf, size, 2, "says 2 bitmaps in");
    expect_dir_error(buf, size, 1, "holds 3 or more");
    /* Directory size cuts the last entry. */
    expect_dir_error(buf, size - 8, 3, "crosses the end of the directory");
    expect_dir_error(buf, 40, 2, "entry 1");
}

/* Build a one-entry directory, let @poke damage it, expect @needle. */
static void one_bad(void (*poke)(uint8_t *buf), const char *needle)
{
    g_autoptr(GPtrArray) in = g_ptr_array_new_with_free_func(
        (GDestroyNotify)qcow2_bitmap_entry_free);
    uint64_t size;
    g_autofree uint8_t *buf = NULL;

    g_ptr_array_add(in, mk("victim", 3 * CS, 1, 0, 16));
    buf = qcow2_bitmap_dir_serialize(in, &size);
    poke(buf);
    expect_dir_error(buf, size, 1, needle);
}

static void poke_flags(uint8_t *b) { stl_be(b + 12, 1U << 5); }
static void poke_type(uint8_t *b) { b[16] = 2; }
static void poke_gran_low(uint8_t *b) { b[17] = 8; }
static void poke_gran_high(uint8_t *b) { b[17] = 32; }
static void poke_name_zero(uint8_t *b) { stw_be(b + 18, 0); }
static void poke_name_long(uint8_t *b) { stw_be(b + 18, 1024); }
static void poke_name_nul(uint8_t *b) { b[24 + 2] = 0; }
static void poke_extra(uint8_t *b) { stl_be(b + 20, 8); }
static void poke_table_zero(uint8_t *b) { stq_be(b, 0); }
static void poke_table_misaligned(uint8_t *b) { stq_be(b, 3 * CS + 8); }
static void poke_table_eof(uint8_t *b) { stq_be(b, 64 * MiB); }
static void poke_table_size0(uint8_t *b) { stl_be(b + 8, 0); }
static void poke_table_huge(uint8_t *b) { stl_be(b + 8, 0x10000000); }
static void poke_table_short(uint8_t *b) { b[17] = 9; }
static void poke_table_on_dir(uint8_t *b) { stq_be(b, 2 * CS); }

static void test_bad_entries(void)
{
    one_bad(poke_flags, "Bitmap 'victim' has reserved flags");
    one_bad(poke_type, "Bitmap 'victim' has unknown type 2");
    one_bad(poke_gran_low, "Bitmap 'victim' has granularity bits 8");
    one_bad(poke_gran_high, "Bitmap 'victim' has granularity bits 32");
    one_bad(poke_name_zero, "entry 0 has a name of 0 bytes");
    one_bad(poke_name_long, "entry 0");
    one_bad(poke_name_nul, "NUL byte");
    one_bad(poke_extra, "extra data");
    one_bad(poke_table_zero, "misaligned table offset 0x0");
    one_bad(poke_table_misaligned, "misaligned table offset");
    one_bad(poke_table_eof, "beyond the end of the file");
    one_bad(poke_table_size0, "invalid table size 0");
    one_bad(poke_table_huge, "invalid table size");
    /* 512 B granularity needs 4 table entries; the entry has 1. */
    one_bad(poke_table_short, "the disk needs 4");
    one_bad(poke_table_on_dir, "the bitmap directory");
}

static void test_in_use_may_be_short(void)
{
    g_autoptr(GPtrArray) in = g_ptr_array_new_with_free_func(
        (GDestroyNotify)qcow2_bitmap_entry_free);
    GError *err = NULL;
    g_autoptr(GPtrArray) out = NULL;

    g_ptr_array_add(in, mk("crashed", 3 * CS, 1, QCOW2_BME_FLAG_IN_USE, 9));
    out = roundtrip(in, NULL, NULL, &err);
    g_assert_no_error(err);
    g_assert_cmpuint(out->len, ==, 1);
}

static void test_duplicates_and_overlaps(void)
{
    g_autoptr(GPtrArray) dup = three_entries();
    g_autoptr(GPtrArray) ovl = three_entries();
    GError *err = NULL;
    GPtrArray *r;

    g_free(((Qcow2BitmapEntry *)g_ptr_array_index(dup, 2))->name);
    ((Qcow2BitmapEntry *)g_ptr_array_index(dup, 2))->name = g_strdup("b0");
    r = roundtrip(dup, NULL, NULL, &err);
    g_assert_null(r);
    g_assert_nonnull(strstr(err->message, "two bitmaps named 'b0'"));
    g_clear_error(&err);

    /* "fine" has 4 entries (32 bytes) at 5 * CS: move b0 into it. */
    ((Qcow2BitmapEntry *)g_ptr_array_index(ovl, 0))->table_offset = 5 * CS;
    r = roundtrip(ovl, NULL, NULL, &err);
    g_assert_null(r);
    g_assert_nonnull(strstr(err->message, "overlaps"));
    g_assert_nonnull(strstr(err->message, "'b0'"));
    g_clear_error(&err);
}

static void test_table_entries(void)
{
    GError *err = NULL;
    static const struct {
        uint64_t entry;
        const char *needle;   /* NULL: valid */
    } cases[] = {
        { 0, NULL },
        { 1, NULL },
        { 3 * CS, NULL },
        { 2, "reserved bits" },
        { UINT64_C(1) << 60, "reserved bits" },
        { 3 * CS | 1, "all-ones flag" },
        { 3 * CS + 512, "misaligned" },
        { 64 * MiB, "outside the image file" },
        { 512 * 1024 * MiB, "outside the image file" },
    };

    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        bool ok = qcow2_bitmap_table_entry_check(cases[i].entry, 7, "t",
                                                 &geo, &err);
        if (!cases[i].needle) {
            g_assert_true(ok);
            g_assert_no_error(err);
            continue;
        }
        g_assert_false(ok);
        g_assert_nonnull(strstr(err->message, "Bitmap 't' table entry 7"));
        if (!strstr(err->message, cases[i].needle)) {
            g_error("case %zu: '%s' lacks '%s'", i, err->message,
                    cases[i].needle);
        }
        g_clear_error(&err);
    }
}

static void test_constraints(void)
{
    Qcow2BitmapGeometry huge = { CS, UINT64_C(1) << 50, 0 };
    g_autofree char *long_name = g_strnfill(1024, 'x');
    GError *err = NULL;

    g_assert_true(qcow2_bitmap_check_constraints("ok", 65536, &geo, &err));
    g_assert_true(qcow2_bitmap_check_constraints("ok", UINT64_C(1) << 31,
                                                 &geo, &err));
    g_assert_no_error(err);
    g_assert_false(qcow2_bitmap_check_constraints("x", UINT64_C(1) << 32,
                                                  &geo, &err));
    g_assert_nonnull(strstr(err->message, "exceeds maximum"));
    g_clear_error(&err);
    g_assert_false(qcow2_bitmap_check_constraints("x", 256, &geo, &err));
    g_assert_nonnull(strstr(err->message, "under minimum"));
    g_clear_error(&err);
    g_assert_false(qcow2_bitmap_check_constraints(long_name, 65536, &geo,
                                                  &err));
    g_assert_cmpstr(err->message, ==,
                    "Name length exceeds maximum (1023 characters)");
    g_clear_error(&err);
    /* 1 PiB at 512 B: 256 GiB of bitmap data, beyond 512 MiB. */
    g_assert_false(qcow2_bitmap_check_constraints("x", 512, &huge, &err));
    g_assert_nonnull(strstr(err->message, "Use larger granularity"));
    g_clear_error(&err);
    g_assert_true(qcow2_bitmap_check_constraints("x", UINT64_C(1) << 20,
                                                 &huge, &err));
    g_assert_no_error(err);
}

static void test_random_corruption(void)
{
    g_autoptr(GPtrArray) in = three_entries();
    g_autofree uint8_t *good = NULL;
    uint64_t size;
    GError *err = NULL;
    g_autoptr(GPtrArray) out = roundtrip(in, &good, &size, &err);
    g_autoptr(GRand) rnd = g_rand_new_with_seed(1234);
    int accepted = 0;

    g_assert_no_error(err);
    for (int n = 0; n < 20000; n++) {
        /* An exact-size heap copy, so ASan sees any overread. */
        g_autofree uint8_t *buf = g_memdup2(good, size);
        int flips = g_rand_int_range(rnd, 1, 4);
        Qcow2BitmapExt ext = { 3, size, 2 * CS };
        GPtrArray *r;

        for (int f = 0; f < flips; f++) {
            buf[g_rand_int_range(rnd, 0, (gint32)size)] ^=
                (uint8_t)(1u << g_rand_int_range(rnd, 0, 8));
        }
        if (g_rand_boolean(rnd)) {
            ext.nb_bitmaps = g_rand_int_range(rnd, 1, 6);
        }
        r = qcow2_bitmap_dir_parse(buf, &ext, &geo, &err);
        if (r) {
            accepted++;
            g_ptr_array_unref(r);
        } else {
            g_assert_nonnull(err);
            g_clear_error(&err);
        }
    }
    /* Flips in names or padding are harmless: some must pass. */
    g_assert_cmpint(accepted, >, 0);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/qcow2-bitmap-dir/roundtrip", test_roundtrip);
    g_test_add_func("/qcow2-bitmap-dir/extension", test_ext);
    g_test_add_func("/qcow2-bitmap-dir/count-mismatch", test_count_mismatch);
    g_test_add_func("/qcow2-bitmap-dir/bad-entries", test_bad_entries);
    g_test_add_func("/qcow2-bitmap-dir/in-use-may-be-short",
                    test_in_use_may_be_short);
    g_test_add_func("/qcow2-bitmap-dir/duplicates-and-overlaps",
                    test_duplicates_and_overlaps);
    g_test_add_func("/qcow2-bitmap-dir/table-entries", test_table_entries);
    g_test_add_func("/qcow2-bitmap-dir/constraints", test_constraints);
    g_test_add_func("/qcow2-bitmap-dir/random-corruption",
                    test_random_corruption);
    return g_test_run();
}
