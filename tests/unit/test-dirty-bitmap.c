/*
 * Dirty bitmap objects (block/dirty-bitmap.c, dirty-bitmap-ops.c) on raw
 * nodes: name and granularity rules, status flags and their refusals,
 * marking by writes against a shadow model, merge rules (granularities,
 * sizes, several sources, other nodes, backups), serialization round
 * trips, lazy loading through a fake driver hook, resize, and concurrent
 * marking.
 */
#include "block/block_int.h"
#include "block/dirty-bitmap.h"
#include "qapi/error.h"
#include "scratch.h"

#include <string.h>

static char *tmpdir;

#define DISK (4 * 1024 * 1024)

static BlockDriverState *open_raw(const char *name, int64_t size, int flags)
{
    return test_create_open(tmpdir, name, "raw", size, flags, NULL);
}

/* ---- Shadow model: one bool per granule ---- */

typedef struct {
    uint64_t gran, size, nbits;
    bool *bits;
} Shadow;

static Shadow *shadow_new(uint64_t size, uint64_t gran)
{
    Shadow *s = g_new0(Shadow, 1);

    s->gran = gran;
    s->size = size;
    s->nbits = (size + gran - 1) / gran;
    s->bits = g_new0(bool, s->nbits);
    return s;
}

static void shadow_free(Shadow *s)
{
    g_free(s->bits);
    g_free(s);
}

static void shadow_set(Shadow *s, uint64_t off, uint64_t len, bool v)
{
    uint64_t end = MIN(off + len, s->size);

    for (uint64_t b = off / s->gran; off < end && b * s->gran < end; b++) {
        s->bits[b] = v;
    }
}

static uint64_t shadow_count(const Shadow *s)
{
    uint64_t n = 0;

    for (uint64_t b = 0; b < s->nbits; b++) {
        if (s->bits[b]) {
            n += MIN(s->gran, s->size - b * s->gran);
        }
    }
    return n;
}

static void shadow_check(const Shadow *s, BdrvDirtyBitmap *bm)
{
    int64_t off = 0, pnum;

    g_assert_cmpuint(bdrv_get_dirty_count(bm), ==, shadow_count(s));
    for (uint64_t b = 0; b < s->nbits; b++) {
        g_assert_cmpint(bdrv_dirty_bitmap_get(bm, b * s->gran), ==,
                        s->bits[b]);
    }
    /* The extents agree with the bits too. */
    while ((uint64_t)off < s->size) {
        bool dirty = bdrv_dirty_bitmap_status(bm, off, INT64_MAX, &pnum);
        g_assert_cmpint(pnum, >, 0);
        for (int64_t o = off; o < off + pnum; o += s->gran) {
            g_assert_cmpint(s->bits[o / s->gran], ==, dirty);
        }
        off += pnum;
    }
}

/* ---- Tests ---- */

static void test_names_and_granularity(void)
{
    g_autoptr(BlockDriverState) bs = open_raw("names.raw", DISK,
                                              BDRV_O_RDWR);
    g_autofree char *long_ok = g_strnfill(1023, 'n');
    g_autofree char *too_long = g_strnfill(1024, 'n');
    GError *err = NULL;
    BdrvDirtyBitmap *bm;

    g_assert_cmpuint(bdrv_get_default_bitmap_granularity(bs), ==, 65536);
    bm = block_dirty_bitmap_add(bs, "", 0, false, false, &err);
    g_assert_null(bm);
    g_assert_cmpstr(err->message, ==, "Bitmap name cannot be empty");
    g_clear_error(&err);
    g_assert_nonnull(block_dirty_bitmap_add(bs, long_ok, 0, false, false,
                                            &err));
    g_assert_no_error(err);
    g_assert_null(block_dirty_bitmap_add(bs, too_long, 0, false, false,
                                         &err));
    g_assert_true(g_str_has_prefix(err->message, "Bitmap name too long"));
    g_clear_error(&err);
    bm = block_dirty_bitmap_add(bs, "a", 0, false, false, &err);
    g_assert_no_error(err);
    g_assert_cmpuint(bdrv_dirty_bitmap_granularity(bm), ==, 65536);
    g_assert_true(bdrv_dirty_bitmap_recording(bm));
    g_assert_false(bdrv_dirty_bitmap_persistent(bm));
    g_assert_null(block_dirty_bitmap_add(bs, "a", 0, false, false, &err));
    g_assert_cmpstr(err->message, ==, "Bitmap already exists: a");
    g_clear_error(&err);

    static const uint64_t bad[] = { 1, 256, 511, 1000, 65535 };
    for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
        g_assert_null(block_dirty_bitmap_add(bs, "g", bad[i], false, false,
                                             &err));
        g_assert_cmpstr(err->message, ==,
                        "Granularity must be power of 2 and at least 512");
        g_clear_error(&err);
    }
    g_assert_null(block_dirty_bitmap_add(bs, "g", UINT64_C(1) << 32, false,
                                         false, &err));
    g_assert_nonnull(strstr(err->message, "exceeds maximum"));
    g_clear_error(&err);
    g_assert_nonnull(block_dirty_bitmap_add(bs, "g512", 512, false, false,
                                            &err));
    g_assert_nonnull(block_dirty_bitmap_add(bs, "g2G", UINT64_C(1) << 31,
                                            false, true, &err));
    g_assert_no_error(err);
    g_assert_false(bdrv_dirty_bitmap_recording(
        bdrv_find_dirty_bitmap(bs, "g2G")));
    /* raw cannot store bitmaps */
    g_assert_null(block_dirty_bitmap_add(bs, "p", 0, true, false, &err));
    g_assert_nonnull(strstr(err->message, "Can't store persistent bitmaps"));
    g_clear_error(&err);
    /* Anonymous bitmaps exist but cannot be found by name. */
    bm = bdrv_create_dirty_bitmap(bs, 4096, NULL, &err);
    g_assert_no_error(err);
    g_assert_null(bdrv_find_dirty_bitmap(bs, NULL));
    g_assert_cmpuint(bdrv_dirty_bitmap_count_on_node(bs), ==, 5);
    bdrv_release_dirty_bitmap(bm);
    g_assert_cmpuint(bdrv_dirty_bitmap_count_on_node(bs), ==, 4);
    /* Iteration visits them in creation order. */
    bm = bdrv_dirty_bitmap_first(bs);
    g_assert_cmpstr(bdrv_dirty_bitmap_name(bm), ==, long_ok);
    bm = bdrv_dirty_bitmap_next(bm);
    g_assert_cmpstr(bdrv_dirty_bitmap_name(bm), ==, "a");
    g_assert_true(block_dirty_bitmap_remove(bs, "a", &err));
    g_assert_false(block_dirty_bitmap_remove(bs, "a", &err));
    g_assert_cmpstr(err->message, ==, "Dirty bitmap 'a' not found");
    g_clear_error(&err);
}

static void test_marking_shadow(void)
{
    g_autoptr(BlockDriverState) bs = open_raw("mark.raw", DISK + 1000,
                                              BDRV_O_RDWR);
    static const uint64_t grans[] = { 512, 4096, 65536, 1 << 20 };
    BdrvDirtyBitmap *bm[G_N_ELEMENTS(grans)];
    Shadow *sh[G_N_ELEMENTS(grans)];
    BdrvDirtyBitmap *off_bm;
    g_autoptr(GRand) rnd = g_rand_new_with_seed(42);
    g_autofree uint8_t *buf = g_malloc0(256 * 1024);
    GError *err = NULL;

    for (size_t i = 0; i < G_N_ELEMENTS(grans); i++) {
        g_autofree char *name = g_strdup_printf("g%zu", i);
        bm[i] = block_dirty_bitmap_add(bs, name, grans[i], false, false,
                                       &err);
        g_assert_no_error(err);
        sh[i] = shadow_new(DISK + 1000, grans[i]);
    }
    off_bm = block_dirty_bitmap_add(bs, "off", 512, false, true, &err);
    g_assert_no_error(err);
    for (int n = 0; n < 200; n++) {
        int64_t len = g_rand_int_range(rnd, 1, 256 * 1024);
        int64_t off = g_rand_int_range(rnd, 0, DISK + 1000 - len);
        int kind = g_rand_int_range(rnd, 0, 3);
        int ret;

        if (kind == 0) {
            ret = bdrv_pwrite(bs, off, len, buf, 0);
        } else if (kind == 1) {
            ret = bdrv_pwrite_zeroes(bs, off, len, 0);
        } else {
            ret = bdrv_pdiscard(bs, off, len);
        }
        g_assert_cmpint(ret, ==, 0);
        for (size_t i = 0; i < G_N_ELEMENTS(grans); i++) {
            /* g2 stops recording after write 100. */
            if (i != 2 || n <= 100) {
                shadow_set(sh[i], off, len, true);
            }
        }
        if (n == 100) {
            /* Half way: clear one and disable another. */
            g_assert_true(block_dirty_bitmap_clear(bs, "g1", NULL, &err));
            memset(sh[1]->bits, 0, sh[1]->nbits);
            g_assert_true(block_dirty_bitmap_disable(bs, "g2", &err));
            g_assert_no_error(err);
        }
    }
    for (size_t i = 0; i < G_N_ELEMENTS(grans); i++) {
        shadow_check(sh[i], bm[i]);
        shadow_free(sh[i]);
    }
    g_assert_cmpuint(bdrv_get_dirty_count(off_bm), ==, 0);
    g_assert_cmpuint(bs->recording_bitmaps->len, ==, 3);
    /* Failed writes mark nothing. */
    g_assert_true(block_dirty_bitmap_clear(bs, "g0", NULL, &err));
    g_assert_cmpint(bdrv_pwrite(bs, DISK, 4096, buf, 0), <, 0);
    g_assert_cmpuint(bdrv_get_dirty_count(bm[0]), ==, 0);
}

static void test_disabled_stays_clean(void)
{
    g_autoptr(BlockDriverState) bs = open_raw("dis.raw", DISK, BDRV_O_RDWR);
    uint8_t buf[1024] = { 0 };
    GError *err = NULL;
    BdrvDirtyBitmap *on;

    for (int i = 0; i < 100; i++) {
        g_autofree char *name = g_strdup_printf("d%d", i);
        g_assert_nonnull(block_dirty_bitmap_add(bs, name, 0, false, true,
                                                &err));
    }
    on = block_dirty_bitmap_add(bs, "on", 0, false, false, &err);
    g_assert_no_error(err);
    /* Only the recording bitmap is in the write hook's list. */
    g_assert_cmpuint(bs->recording_bitmaps->len, ==, 1);
    g_assert_cmpint(bdrv_pwrite(bs, 70000, sizeof(buf), buf, 0), ==, 0);
    g_assert_cmpuint(bdrv_get_dirty_count(on), ==, 65536);
    g_assert_true(bdrv_dirty_bitmap_get(on, 65536));
    g_assert_false(bdrv_dirty_bitmap_get(on, 0));
    for (int i = 0; i < 100; i++) {
        g_autofree char *name = g_strdup_printf("d%d", i);
        g_assert_cmpuint(bdrv_get_dirty_count(bdrv_find_dirty_bitmap(bs,
                                                                     name)),
                         ==, 0);
    }
    g_assert_true(block_dirty_bitmap_enable(bs, "d7", &err));
    g_assert_true(block_dirty_bitmap_enable(bs, "d7", &err)); /* no-op */
    g_assert_cmpuint(bs->recording_bitmaps->len, ==, 2);
    g_assert_true(block_dirty_bitmap_disable(bs, "on", &err));
    g_assert_cmpuint(bs->recording_bitmaps->len, ==, 1);
    g_assert_cmpint(bdrv_pwrite(bs, 0, 1, buf, 0), ==, 0);
    g_assert_true(bdrv_dirty_bitmap_get(bdrv_find_dirty_bitmap(bs, "d7"),
                                        0));
    g_assert_false(bdrv_dirty_bitmap_get(on, 0));
    g_assert_no_error(err);
}

static void test_status_flags(void)
{
    g_autoptr(BlockDriverState) bs = open_raw("flags.raw", DISK,
                                              BDRV_O_RDWR);
    BlockDirtyBitmapSource src = { bs, "b" };
    GError *err = NULL;
    BdrvDirtyBitmap *b = block_dirty_bitmap_add(bs, "b", 0, false, false,
                                                &err);

    g_assert_nonnull(block_dirty_bitmap_add(bs, "t", 0, false, false, &err));
    bdrv_dirty_bitmap_set_busy(b, true);
    g_assert_false(block_dirty_bitmap_clear(bs, "b", NULL, &err));
    g_assert_cmpstr(err->message, ==, "Bitmap 'b' is currently in use by "
                    "another operation and cannot be used");
    g_clear_error(&err);
    g_assert_false(block_dirty_bitmap_remove(bs, "b", &err));
    g_clear_error(&err);
    g_assert_false(block_dirty_bitmap_enable(bs, "b", &err));
    g_clear_error(&err);
    /* A busy bitmap may still be a merge source. */
    g_assert_true(block_dirty_bitmap_merge(bs, "t", &src, 1, NULL, &err));
    g_assert_no_error(err);
    bdrv_dirty_bitmap_set_busy(b, false);

    bdrv_dirty_bitmap_set_readonly(b, true);
    g_assert_false(block_dirty_bitmap_clear(bs, "b", NULL, &err));
    g_assert_cmpstr(err->message, ==,
                    "Bitmap 'b' is readonly and cannot be modified");
    g_clear_error(&err);
    /* enable/disable are allowed on read-only bitmaps (as QEMU). */
    g_assert_true(block_dirty_bitmap_disable(bs, "b", &err));
    g_assert_no_error(err);
    bdrv_dirty_bitmap_set_readonly(b, false);

    bdrv_dirty_bitmap_set_inconsistent(b);
    g_assert_false(bdrv_dirty_bitmap_recording(b));
    g_assert_false(block_dirty_bitmap_merge(bs, "t", &src, 1, NULL, &err));
    g_assert_true(g_str_has_prefix(err->message, "Bitmap 'b' is "
                                   "inconsistent and cannot be used"));
    g_assert_nonnull(strstr(err->message, "block-dirty-bitmap-remove"));
    g_clear_error(&err);
    g_assert_false(block_dirty_bitmap_enable(bs, "b", &err));
    g_clear_error(&err);
    g_assert_false(bdrv_dirty_bitmap_load(b, &err));
    g_clear_error(&err);
    g_assert_null(bdrv_dirty_bitmap_sha256(b, &err));
    g_clear_error(&err);
    g_assert_cmpuint(bdrv_get_dirty_count(b), ==, 0);
    g_assert_true(block_dirty_bitmap_remove(bs, "b", &err));
    g_assert_no_error(err);
}

static void test_read_only_node(void)
{
    BlockDriverState *rw = open_raw("ro.raw", DISK, BDRV_O_RDWR);
    g_autoptr(BlockDriverState) bs = NULL;
    GError *err = NULL;
    g_autofree char *path = g_build_filename(tmpdir, "ro.raw", NULL);
    g_autoptr(JsonObject) opts = json_object_new();

    bdrv_unref(rw);
    json_object_set_string_member(opts, "driver", "raw");
    bs = bdrv_open(path, opts, 0, &err);
    g_assert_no_error(err);
    g_assert_nonnull(block_dirty_bitmap_add(bs, "r", 0, false, false, &err));
    g_assert_true(bdrv_dirty_bitmap_readonly(bdrv_find_dirty_bitmap(bs,
                                                                    "r")));
    g_assert_false(block_dirty_bitmap_clear(bs, "r", NULL, &err));
    g_assert_nonnull(strstr(err->message, "readonly"));
    g_clear_error(&err);
    g_assert_false(block_dirty_bitmap_remove(bs, "r", &err));
    g_clear_error(&err);
}

static void fill_random(BdrvDirtyBitmap *bm, Shadow *s, GRand *rnd, int n)
{
    for (int i = 0; i < n; i++) {
        uint64_t len = g_rand_int_range(rnd, 1, 300000);
        uint64_t off = g_rand_int_range(rnd, 0, (gint32)(s->size - 1));

        bdrv_set_dirty_bitmap(bm, off, len);
        shadow_set(s, off, len, true);
    }
}

static void test_merge_rules(void)
{
    g_autoptr(BlockDriverState) bs = open_raw("m1.raw", DISK, BDRV_O_RDWR);
    g_autoptr(BlockDriverState) bs2 = open_raw("m2.raw", DISK, BDRV_O_RDWR);
    g_autoptr(BlockDriverState) small = open_raw("m3.raw", DISK / 2,
                                                 BDRV_O_RDWR);
    g_autoptr(GRand) rnd = g_rand_new_with_seed(7);
    GError *err = NULL;
    BdrvDirtyBitmap *fine, *coarse, *other, *dst;
    Shadow *sf = shadow_new(DISK, 512), *sc = shadow_new(DISK, 1 << 20);
    Shadow *so = shadow_new(DISK, 4096), *sd = shadow_new(DISK, 65536);
    HBitmap *backup = NULL;
    g_autofree char *before = NULL, *after = NULL;

    fine = block_dirty_bitmap_add(bs, "fine", 512, false, true, &err);
    coarse = block_dirty_bitmap_add(bs, "coarse", 1 << 20, false, true, &err);
    other = block_dirty_bitmap_add(bs2, "other", 4096, false, true, &err);
    dst = block_dirty_bitmap_add(bs, "dst", 65536, false, true, &err);
    g_assert_nonnull(block_dirty_bitmap_add(small, "small", 65536, false,
                                            true, &err));
    g_assert_no_error(err);
    fill_random(fine, sf, rnd, 20);
    fill_random(coarse, sc, rnd, 3);
    fill_random(other, so, rnd, 20);
    fill_random(dst, sd, rnd, 5);
    before = bdrv_dirty_bitmap_sha256(dst, &err);

    /* Finer, coarser and another node's bitmaps, in one call. */
    BlockDirtyBitmapSource srcs[] = {
        { bs, "fine" }, { bs, "coarse" }, { bs2, "other" },
    };
    g_assert_true(block_dirty_bitmap_merge(bs, "dst", srcs, 3, &backup,
                                           &err));
    g_assert_no_error(err);
    for (uint64_t b = 0; b < sf->nbits; b++) {
        if (sf->bits[b]) {
            shadow_set(sd, b * 512, 512, true);
        }
    }
    for (uint64_t b = 0; b < sc->nbits; b++) {
        if (sc->bits[b]) {
            shadow_set(sd, b << 20, 1 << 20, true);
        }
    }
    for (uint64_t b = 0; b < so->nbits; b++) {
        if (so->bits[b]) {
            shadow_set(sd, b * 4096, 4096, true);
        }
    }
    shadow_check(sd, dst);
    /* The sources did not change. */
    shadow_check(sf, fine);
    shadow_check(so, other);
    /* Abort: the backup brings the old contents back. */
    bdrv_restore_dirty_bitmap(dst, backup);
    after = bdrv_dirty_bitmap_sha256(dst, &err);
    g_assert_cmpstr(before, ==, after);

    /* Different sizes cannot merge; the target is untouched. */
    BlockDirtyBitmapSource bad[] = { { bs, "fine" }, { small, "small" } };
    g_assert_false(block_dirty_bitmap_merge(bs, "dst", bad, 2, NULL, &err));
    g_assert_cmpstr(err->message, ==,
                    "Bitmaps are incompatible and can't be merged");
    g_clear_error(&err);
    g_free(after);
    after = bdrv_dirty_bitmap_sha256(dst, &err);
    g_assert_cmpstr(before, ==, after);
    /* A missing source is named. */
    BlockDirtyBitmapSource missing[] = { { bs, "nope" } };
    g_assert_false(block_dirty_bitmap_merge(bs, "dst", missing, 1, NULL,
                                            &err));
    g_assert_cmpstr(err->message, ==, "Dirty bitmap 'nope' not found");
    g_clear_error(&err);
    /* Merging a bitmap into itself changes nothing. */
    BlockDirtyBitmapSource self[] = { { bs, "dst" } };
    g_assert_true(block_dirty_bitmap_merge(bs, "dst", self, 1, NULL, &err));
    g_free(after);
    after = bdrv_dirty_bitmap_sha256(dst, &err);
    g_assert_cmpstr(before, ==, after);
    shadow_free(sf);
    shadow_free(sc);
    shadow_free(so);
    shadow_free(sd);
}

static void test_clear_backup_copy(void)
{
    g_autoptr(BlockDriverState) bs = open_raw("clr.raw", DISK, BDRV_O_RDWR);
    GError *err = NULL;
    BdrvDirtyBitmap *bm = block_dirty_bitmap_add(bs, "c", 4096, false, false,
                                                 &err);
    g_autoptr(BdrvDirtyBitmap) copy = NULL;
    g_autofree char *sum = NULL, *sum2 = NULL, *sum3 = NULL;
    HBitmap *backup = NULL;
    uint8_t buf[8192] = { 0 };

    bdrv_set_dirty_bitmap(bm, 10000, 50000);
    sum = bdrv_dirty_bitmap_sha256(bm, &err);
    copy = bdrv_dirty_bitmap_copy(bm, &err);
    g_assert_no_error(err);
    /* The copy is frozen: later writes do not reach it. */
    g_assert_cmpint(bdrv_pwrite(bs, 1 << 20, sizeof(buf), buf, 0), ==, 0);
    g_assert_true(bdrv_dirty_bitmap_get(bm, 1 << 20));
    g_assert_false(bdrv_dirty_bitmap_get(copy, 1 << 20));
    g_assert_cmpuint(bdrv_get_dirty_count(copy), ==, 53248);
    sum2 = bdrv_dirty_bitmap_sha256(copy, &err);
    g_assert_cmpstr(sum, ==, sum2);

    g_assert_true(block_dirty_bitmap_clear(bs, "c", &backup, &err));
    g_assert_cmpuint(bdrv_get_dirty_count(bm), ==, 0);
    g_assert_nonnull(backup);
    bdrv_restore_dirty_bitmap(bm, backup);
    g_assert_cmpuint(bdrv_get_dirty_count(bm), ==, 53248 + 8192);
    bdrv_reset_dirty_bitmap(bm, 1 << 20, 8192);
    sum3 = bdrv_dirty_bitmap_sha256(bm, &err);
    g_assert_cmpstr(sum, ==, sum3);
    g_assert_cmpint(bdrv_dirty_bitmap_next_dirty(bm, 0, DISK), ==, 8192);
    g_assert_cmpint(bdrv_dirty_bitmap_next_zero(bm, 8192, DISK), ==, 61440);
    int64_t start, count;
    g_assert_true(bdrv_dirty_bitmap_next_dirty_area(bm, 0, DISK, INT64_MAX,
                                                    &start, &count));
    g_assert_cmpint(start, ==, 8192);
    g_assert_cmpint(count, ==, 53248);
    g_assert_false(bdrv_dirty_bitmap_next_dirty_area(bm, 61440, DISK,
                                                     INT64_MAX, &start,
                                                     &count));
    g_assert_true(bdrv_dirty_bitmap_range_all_dirty(bm, 8192, 53248));
    g_assert_true(bdrv_dirty_bitmap_range_all_clean(bm, 61440, 1 << 20));
    g_assert_no_error(err);
}

static void test_serialization(void)
{
    g_autoptr(BlockDriverState) bs = open_raw("ser.raw", DISK + 4096 * 3,
                                              BDRV_O_RDWR);
    g_autoptr(GRand) rnd = g_rand_new_with_seed(3);
    GError *err = NULL;
    uint64_t size = DISK + 4096 * 3;
    BdrvDirtyBitmap *a = block_dirty_bitmap_add(bs, "a", 4096, false, true,
                                                &err);
    BdrvDirtyBitmap *b = block_dirty_bitmap_add(bs, "b", 4096, false, true,
                                                &err);
    Shadow *s = shadow_new(size, 4096);
    uint64_t align = bdrv_dirty_bitmap_serialization_align(a);
    g_autofree char *sa = NULL, *sb = NULL;

    g_assert_cmpuint(align, ==, 4096 * 8);
    fill_random(a, s, rnd, 30);
    /* Round trip in chunks of several sizes (all aligned starts). */
    for (uint64_t chunk = align; chunk <= size; chunk *= 4) {
        bdrv_clear_dirty_bitmap(b, NULL);
        for (uint64_t off = 0; off < size; off += chunk) {
            uint64_t n = bdrv_dirty_bitmap_serialization_size(a, off, chunk);
            g_autofree uint8_t *buf = g_malloc(n);

            bdrv_dirty_bitmap_serialize_part(a, buf, off, chunk);
            bdrv_dirty_bitmap_deserialize_part(b, buf, off, chunk);
        }
        g_free(sa);
        g_free(sb);
        sa = bdrv_dirty_bitmap_sha256(a, &err);
        sb = bdrv_dirty_bitmap_sha256(b, &err);
        g_assert_cmpstr(sa, ==, sb);
        shadow_check(s, b);
    }
    g_assert_cmpuint(bdrv_dirty_bitmap_serialization_size(a, 0, size), ==,
                     (size / 4096 + 7) / 8);
    bdrv_dirty_bitmap_deserialize_ones(b, align, align * 2);
    g_assert_true(bdrv_dirty_bitmap_range_all_dirty(b, align, align * 2));
    bdrv_dirty_bitmap_deserialize_zeroes(b, 0, size);
    g_assert_cmpuint(bdrv_get_dirty_count(b), ==, 0);
    g_assert_no_error(err);
    shadow_free(s);
}

/* ---- Lazy loading through a fake driver hook ---- */

static int fake_loads;
static bool fake_fail;
static GPtrArray *fake_changes;

static bool fake_load(BlockDriverState *bs, BdrvDirtyBitmap *bm, HBitmap *hb,
                      GError **errp)
{
    fake_loads++;
    if (fake_fail) {
        error_setg(errp, "Could not read bitmap '%s' table: Input/output "
                   "error", bdrv_dirty_bitmap_name(bm));
        return false;
    }
    /* "Stored" contents: the first 1 MiB is dirty. */
    hbitmap_set(hb, 0, 1 << 20);
    return true;
}

static bool fake_before_change(BlockDriverState *bs, BdrvDirtyBitmap *bm,
                               GError **errp)
{
    g_ptr_array_add(fake_changes, g_strdup(bdrv_dirty_bitmap_name(bm)));
    return true;
}

static const BdrvBitmapDriverOps fake_ops = {
    .load = fake_load,
    .before_change = fake_before_change,
};

static void test_lazy_load(void)
{
    g_autoptr(BlockDriverState) bs = open_raw("lazy.raw", DISK, BDRV_O_RDWR);
    const BlockDriver *real = bs->drv;
    BlockDriver fake = *real;
    GError *err = NULL;
    BdrvDirtyBitmap *rec, *off, *bad, *tgt;
    uint8_t buf[4096] = { 0 };

    fake.bitmap_ops = &fake_ops;
    bs->drv = &fake;
    fake_loads = 0;
    fake_fail = false;
    fake_changes = g_ptr_array_new_with_free_func(g_free);
    rec = bdrv_create_stored_dirty_bitmap(bs, 65536, "rec", true, false,
                                          &err);
    off = bdrv_create_stored_dirty_bitmap(bs, 65536, "off", false, false,
                                          &err);
    bad = bdrv_create_stored_dirty_bitmap(bs, 65536, "bad", true, true,
                                          &err);
    tgt = bdrv_create_stored_dirty_bitmap(bs, 65536, "tgt", false, false,
                                          &err);
    g_assert_no_error(err);
    g_assert_true(bdrv_dirty_bitmap_persistent(rec));
    g_assert_false(bdrv_dirty_bitmap_recording(bad));
    g_assert_true(bdrv_dirty_bitmap_inconsistent(bad));
    /* Writes reach the recording one without reading stored data. */
    g_assert_cmpint(bdrv_pwrite(bs, 3 << 20, sizeof(buf), buf, 0), ==, 0);
    g_assert_cmpint(fake_loads, ==, 0);
    g_assert_false(bdrv_dirty_bitmap_loaded(rec));
    g_assert_true(bdrv_dirty_bitmap_changed(rec));
    g_assert_false(bdrv_dirty_bitmap_changed(off));
    /* A merge into a bitmap that is not loaded does not load it either. */
    BlockDirtyBitmapSource src = { bs, "rec" };
    g_assert_true(block_dirty_bitmap_merge(bs, "tgt", &src, 1, NULL, &err));
    g_assert_no_error(err);
    g_assert_cmpint(fake_loads, ==, 1);      /* the source only */
    g_assert_false(bdrv_dirty_bitmap_loaded(tgt));
    g_assert_cmpuint(fake_changes->len, ==, 1);
    g_assert_cmpstr(g_ptr_array_index(fake_changes, 0), ==, "tgt");
    /* The first query loads and ORs the delta in. */
    g_assert_cmpuint(bdrv_get_dirty_count(rec), ==, (1 << 20) + 65536);
    g_assert_cmpuint(bdrv_get_dirty_count(tgt), ==, (1 << 20) + 65536);
    g_assert_cmpint(fake_loads, ==, 2);
    g_assert_cmpuint(bdrv_get_dirty_count(off), ==, 1 << 20);
    g_assert_cmpint(fake_loads, ==, 3);
    g_assert_cmpuint(bdrv_get_dirty_count(off), ==, 1 << 20);
    g_assert_cmpint(fake_loads, ==, 3);
    /* Clearing a stored bitmap needs no load. */
    BdrvDirtyBitmap *c = bdrv_create_stored_dirty_bitmap(bs, 4096, "c",
                                                         false, false, &err);
    g_assert_true(block_dirty_bitmap_clear(bs, "c", NULL, &err));
    g_assert_cmpuint(bdrv_get_dirty_count(c), ==, 0);
    g_assert_cmpint(fake_loads, ==, 3);
    /* A load failure makes it inconsistent, with the driver's error. */
    fake_fail = true;
    BdrvDirtyBitmap *f = bdrv_create_stored_dirty_bitmap(bs, 4096, "f",
                                                         true, false, &err);
    g_assert_false(bdrv_dirty_bitmap_load(f, &err));
    g_assert_nonnull(strstr(err->message, "Input/output error"));
    g_clear_error(&err);
    g_assert_true(bdrv_dirty_bitmap_inconsistent(f));
    g_assert_false(bdrv_dirty_bitmap_recording(f));
    g_assert_cmpuint(bdrv_get_dirty_count(f), ==, 0);
    /* Inconsistent bitmaps are never loaded. */
    g_assert_false(bdrv_dirty_bitmap_load(bad, &err));
    g_clear_error(&err);
    g_assert_true(block_dirty_bitmap_remove(bs, "bad", &err));
    g_assert_no_error(err);
    bdrv_release_all_dirty_bitmaps(bs);
    bs->drv = real;
    g_ptr_array_unref(fake_changes);
}

static void test_truncate(void)
{
    g_autoptr(BlockDriverState) bs = open_raw("trunc.raw", DISK, BDRV_O_RDWR);
    GError *err = NULL;
    BdrvDirtyBitmap *bm = block_dirty_bitmap_add(bs, "t", 65536, false,
                                                 false, &err);
    BdrvDirtyBitmap *m = block_dirty_bitmap_add(bs, "m", 65536, false,
                                                false, &err);

    bdrv_set_dirty_bitmap(bm, DISK - 65536, 65536);
    bdrv_set_dirty_bitmap(bm, 0, 100);
    g_assert_cmpint(bdrv_truncate(bs, DISK * 2, false, PREALLOC_MODE_OFF,
                                  &err), ==, 0);
    g_assert_no_error(err);
    g_assert_cmpuint(bdrv_dirty_bitmap_size(bm), ==, DISK * 2);
    g_assert_cmpuint(bdrv_get_dirty_count(bm), ==, 2 * 65536);
    g_assert_cmpint(bdrv_truncate(bs, DISK / 2 + 1, true, PREALLOC_MODE_OFF,
                                  &err), ==, 0);
    g_assert_cmpuint(bdrv_get_dirty_count(bm), ==, 65536);
    /* Growing again brings clean bits, not the old ones. */
    g_assert_cmpint(bdrv_truncate(bs, DISK, false, PREALLOC_MODE_OFF, &err),
                    ==, 0);
    g_assert_cmpuint(bdrv_get_dirty_count(bm), ==, 65536);
    g_assert_cmpuint(bdrv_dirty_bitmap_size(m), ==, DISK);
    /* Marks after the resize land in the new area. */
    uint8_t buf[512] = { 0 };
    g_assert_cmpint(bdrv_pwrite(bs, DISK - 512, 512, buf, 0), ==, 0);
    g_assert_true(bdrv_dirty_bitmap_get(m, DISK - 1));
}

typedef struct {
    BlockDriverState *bs;
    int id;
} WriterArgs;

static gpointer writer(gpointer p)
{
    WriterArgs *a = p;
    uint8_t buf[512] = { 0 };

    for (int i = 0; i < 64; i++) {
        int64_t off = ((int64_t)(a->id * 64 + i)) * 4096;
        g_assert_cmpint(bdrv_pwrite(a->bs, off, sizeof(buf), buf, 0), ==, 0);
    }
    return NULL;
}

static void test_concurrent_marking(void)
{
    g_autoptr(BlockDriverState) bs = open_raw("thr.raw", DISK, BDRV_O_RDWR);
    GError *err = NULL;
    BdrvDirtyBitmap *bm = block_dirty_bitmap_add(bs, "t", 4096, false,
                                                 false, &err);
    GThread *th[8];
    WriterArgs args[8];

    for (int i = 0; i < 8; i++) {
        args[i] = (WriterArgs){ bs, i };
        th[i] = g_thread_new("writer", writer, &args[i]);
    }
    for (int i = 0; i < 8; i++) {
        /* Readers may query while the writers mark. */
        (void)bdrv_get_dirty_count(bm);
        g_thread_join(th[i]);
    }
    g_assert_cmpuint(bdrv_get_dirty_count(bm), ==, 8 * 64 * 4096);
    g_assert_no_error(err);
}

int main(int argc, char **argv)
{
    int ret;

    g_test_init(&argc, &argv, NULL);
    tmpdir = test_scratch_dir("bp-bitmap");
    g_test_add_func("/dirty-bitmap/names-and-granularity",
                    test_names_and_granularity);
    g_test_add_func("/dirty-bitmap/marking-shadow", test_marking_shadow);
    g_test_add_func("/dirty-bitmap/disabled-stays-clean",
                    test_disabled_stays_clean);
    g_test_add_func("/dirty-bitmap/status-flags", test_status_flags);
    g_test_add_func("/dirty-bitmap/read-only-node", test_read_only_node);
    g_test_add_func("/dirty-bitmap/merge-rules", test_merge_rules);
    g_test_add_func("/dirty-bitmap/clear-backup-copy",
                    test_clear_backup_copy);
    g_test_add_func("/dirty-bitmap/serialization", test_serialization);
    g_test_add_func("/dirty-bitmap/lazy-load", test_lazy_load);
    g_test_add_func("/dirty-bitmap/truncate", test_truncate);
    g_test_add_func("/dirty-bitmap/concurrent-marking",
                    test_concurrent_marking);
    ret = g_test_run();
    test_scratch_remove(tmpdir);
    return ret;
}
