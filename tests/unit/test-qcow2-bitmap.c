/*
 * Persistent bitmaps in qcow2 through the block layer, against a shadow
 * model: random writes, write-zeroes, discards, clears, merges and
 * enable/disable over many open/close sessions (some verified before any
 * write, so from lazily loaded contents, some after), explicit stores in
 * the middle of a session, all-zero / all-ones / mixed data clusters, an
 * odd disk size, and a refcount check (no leak, no corruption) after
 * every session.  Finally every bitmap is removed and the extension goes.
 */
#include "block/block_int.h"
#include "block/dirty-bitmap.h"
#include "qapi/error.h"
#include "scratch.h"

#include <string.h>

#define MiB (UINT64_C(1) << 20)
#define DISK (64 * MiB + 3 * 512)

typedef struct {
    const char *name;
    uint64_t gran;
    bool recording;
    uint64_t nbits;
    bool *bits;
} Model;

static char *tmpdir;
static Model models[] = {
    { "g512", 512, true },
    { "g4k", 4096, true },
    { "g64k", 65536, true },
    { "g1m", 1 << 20, true },
    { "off", 4096, false },
};
#define NB G_N_ELEMENTS(models)

static void model_set(Model *m, uint64_t off, uint64_t len)
{
    uint64_t end = MIN(off + len, (uint64_t)DISK);

    for (uint64_t b = off / m->gran; b * m->gran < end; b++) {
        m->bits[b] = true;
    }
}

static void model_mark(uint64_t off, uint64_t len)
{
    for (size_t i = 0; i < NB; i++) {
        if (models[i].recording) {
            model_set(&models[i], off, len);
        }
    }
}

static BlockDriverState *open_img(const char *path, int flags)
{
    g_autoptr(JsonObject) o = json_object_new();
    GError *err = NULL;
    BlockDriverState *bs;

    json_object_set_string_member(o, "driver", "qcow2");
    bs = bdrv_open(path, o, flags, &err);
    g_assert_no_error(err);
    return bs;
}

static void verify(BlockDriverState *bs)
{
    for (size_t i = 0; i < NB; i++) {
        Model *m = &models[i];
        BdrvDirtyBitmap *bm = bdrv_find_dirty_bitmap(bs, m->name);
        uint64_t count = 0;
        GError *err = NULL;

        g_assert_nonnull(bm);
        g_assert_true(bdrv_dirty_bitmap_persistent(bm));
        g_assert_false(bdrv_dirty_bitmap_inconsistent(bm));
        g_assert_cmpint(bdrv_dirty_bitmap_recording(bm), ==, m->recording);
        g_assert_cmpuint(bdrv_dirty_bitmap_granularity(bm), ==, m->gran);
        g_assert_true(bdrv_dirty_bitmap_load(bm, &err));
        g_assert_no_error(err);
        for (uint64_t b = 0; b < m->nbits; b++) {
            if (bdrv_dirty_bitmap_get(bm, b * m->gran) != m->bits[b]) {
                g_error("bitmap %s bit %" PRIu64 ": got %d", m->name, b,
                        !m->bits[b]);
            }
            if (m->bits[b]) {
                count += MIN(m->gran, DISK - b * m->gran);
            }
        }
        g_assert_cmpuint(bdrv_get_dirty_count(bm), ==, count);
    }
}

/* The stored count (nothing loaded) agrees with the model too. */
static void verify_stored_counts(BlockDriverState *bs)
{
    for (size_t i = 0; i < NB; i++) {
        Model *m = &models[i];
        BdrvDirtyBitmap *bm = bdrv_find_dirty_bitmap(bs, m->name);
        uint64_t count = 0, got;
        GError *err = NULL;

        for (uint64_t b = 0; b < m->nbits; b++) {
            count += m->bits[b] ? MIN(m->gran, DISK - b * m->gran) : 0;
        }
        g_assert_false(bdrv_dirty_bitmap_loaded(bm));
        g_assert_true(bdrv_dirty_bitmap_count_checked(bm, &got, &err));
        g_assert_no_error(err);
        g_assert_cmpuint(got, ==, count);
        g_assert_false(bdrv_dirty_bitmap_loaded(bm));
    }
}

static void check_clean(const char *path)
{
    BlockDriverState *bs = open_img(path, BDRV_O_CHECK);
    BdrvCheckResult res = { 0 };

    g_assert_cmpint(bdrv_check(bs, &res, BDRV_FIX_NONE), ==, 0);
    g_assert_cmpint(res.corruptions, ==, 0);
    g_assert_cmpint(res.leaks, ==, 0);
    g_assert_cmpint(res.check_errors, ==, 0);
    bdrv_unref(bs);
}

static void random_io(BlockDriverState *bs, GRand *rnd, int n)
{
    static uint8_t buf[256 * 1024];

    for (int k = 0; k < n; k++) {
        uint64_t len = g_rand_int_range(rnd, 1, sizeof(buf));
        uint64_t off = g_rand_int_range(rnd, 0, (gint32)(DISK - len));
        int kind = g_rand_int_range(rnd, 0, 3), ret;

        if (kind == 0) {
            ret = bdrv_pwrite(bs, off, len, buf, 0);
        } else if (kind == 1) {
            ret = bdrv_pwrite_zeroes(bs, off, len, 0);
        } else {
            ret = bdrv_pdiscard(bs, off, len);
        }
        g_assert_cmpint(ret, ==, 0);
        model_mark(off, len);
    }
}

/* One random bitmap operation, mirrored in the model. */
static void random_op(BlockDriverState *bs, GRand *rnd)
{
    Model *a = &models[g_rand_int_range(rnd, 0, NB)];
    Model *b = &models[g_rand_int_range(rnd, 0, NB)];
    BlockDirtyBitmapSource src = { bs, b->name };
    GError *err = NULL;
    uint64_t off;

    switch (g_rand_int_range(rnd, 0, 5)) {
    case 0:
        g_assert_true(block_dirty_bitmap_clear(bs, a->name, NULL, &err));
        memset(a->bits, 0, a->nbits);
        break;
    case 1:
        g_assert_true(block_dirty_bitmap_merge(bs, a->name, &src, 1, NULL,
                                               &err));
        for (uint64_t i = 0; i < b->nbits; i++) {
            if (b->bits[i]) {
                model_set(a, i * b->gran, b->gran);
            }
        }
        break;
    case 2:
        if (a->recording) {
            g_assert_true(block_dirty_bitmap_disable(bs, a->name, &err));
        } else {
            g_assert_true(block_dirty_bitmap_enable(bs, a->name, &err));
        }
        a->recording = !a->recording;
        break;
    case 3:
        /* A long run: all-ones clusters even at 512 B granularity. */
        off = g_rand_int_range(rnd, 0, 32) * MiB;
        g_assert_cmpint(bdrv_pwrite_zeroes(bs, off, 24 * MiB, 0), ==, 0);
        model_mark(off, 24 * MiB);
        break;
    default:
        g_assert_true(bdrv_store_persistent_dirty_bitmaps(bs, &err));
        break;
    }
    g_assert_no_error(err);
}

static void test_sessions(void)
{
    g_autofree char *path = g_build_filename(tmpdir, "s.qcow2", NULL);
    g_autoptr(JsonObject) o = json_object_new();
    g_autoptr(GRand) rnd = g_rand_new_with_seed(2024);
    GError *err = NULL;
    BlockDriverState *bs;

    json_object_set_int_member(o, "size", DISK);
    json_object_set_int_member(o, "cluster_size", 4096);
    g_assert_true(bdrv_create("qcow2", path, o, &err));
    g_assert_no_error(err);
    bs = open_img(path, BDRV_O_RDWR);
    for (size_t i = 0; i < NB; i++) {
        models[i].nbits = (DISK + models[i].gran - 1) / models[i].gran;
        models[i].bits = g_new0(bool, models[i].nbits);
        g_assert_nonnull(block_dirty_bitmap_add(bs, models[i].name,
                                                models[i].gran, true,
                                                !models[i].recording,
                                                &err));
        g_assert_no_error(err);
    }
    bdrv_unref(bs);
    check_clean(path);
    for (int session = 0; session < 12; session++) {
        bs = open_img(path, BDRV_O_RDWR);
        if (session % 3 == 0) {
            verify_stored_counts(bs);
        }
        if (session % 2 == 0) {
            verify(bs);     /* straight from the image */
        }
        random_io(bs, rnd, 20);
        for (int k = 0; k < 6; k++) {
            random_op(bs, rnd);
            random_io(bs, rnd, 5);
        }
        verify(bs);
        bdrv_unref(bs);
        check_clean(path);
    }
    bs = open_img(path, BDRV_O_RDWR);
    verify(bs);
    for (size_t i = 0; i < NB; i++) {
        g_assert_true(block_dirty_bitmap_remove(bs, models[i].name, &err));
        g_assert_no_error(err);
        g_free(models[i].bits);
    }
    bdrv_unref(bs);
    check_clean(path);
    bs = open_img(path, 0);
    g_assert_null(bdrv_dirty_bitmap_first(bs));
    bdrv_unref(bs);
}

static void test_persistent_limits(void)
{
    g_autofree char *path = g_build_filename(tmpdir, "l.qcow2", NULL);
    g_autofree char *v2 = g_build_filename(tmpdir, "v2.qcow2", NULL);
    g_autoptr(JsonObject) o = json_object_new();
    g_autoptr(JsonObject) o2 = json_object_new();
    g_autofree char *long_name = g_strnfill(1024, 'x');
    GError *err = NULL;
    BlockDriverState *bs;

    json_object_set_int_member(o, "size", UINT64_C(1) << 40);
    g_assert_true(bdrv_create("qcow2", path, o, &err));
    bs = open_img(path, BDRV_O_RDWR);
    /* 1 TiB at 512 B: 256 MiB of bitmap, under the 512 MiB limit. */
    g_assert_nonnull(block_dirty_bitmap_add(bs, "ok", 512, true, true,
                                            &err));
    g_assert_no_error(err);
    g_assert_true(block_dirty_bitmap_remove(bs, "ok", &err));
    g_assert_null(block_dirty_bitmap_add(bs, long_name, 0, true, false,
                                         &err));
    g_assert_nonnull(strstr(err->message, "Name length exceeds maximum"));
    g_clear_error(&err);
    bdrv_unref(bs);

    json_object_set_int_member(o2, "size", 1 << 20);
    json_object_set_string_member(o2, "compat", "0.10");
    g_assert_true(bdrv_create("qcow2", v2, o2, &err));
    g_assert_no_error(err);
    bs = open_img(v2, BDRV_O_RDWR);
    g_assert_null(block_dirty_bitmap_add(bs, "b", 0, true, false, &err));
    g_assert_nonnull(strstr(err->message, "qcow2 v2"));
    g_clear_error(&err);
    /* Non-persistent bitmaps work on any image. */
    g_assert_nonnull(block_dirty_bitmap_add(bs, "b", 0, false, false,
                                            &err));
    g_assert_no_error(err);
    bdrv_unref(bs);
}

static void test_read_only(void)
{
    g_autofree char *path = g_build_filename(tmpdir, "ro.qcow2", NULL);
    g_autoptr(JsonObject) o = json_object_new();
    GError *err = NULL;
    BlockDriverState *bs;
    BdrvDirtyBitmap *bm;

    json_object_set_int_member(o, "size", 16 * MiB);
    g_assert_true(bdrv_create("qcow2", path, o, &err));
    bs = open_img(path, BDRV_O_RDWR);
    g_assert_nonnull(block_dirty_bitmap_add(bs, "b", 0, true, false, &err));
    bdrv_unref(bs);
    bs = open_img(path, 0);
    bm = bdrv_find_dirty_bitmap(bs, "b");
    g_assert_true(bdrv_dirty_bitmap_readonly(bm));
    g_assert_false(block_dirty_bitmap_clear(bs, "b", NULL, &err));
    g_assert_nonnull(strstr(err->message, "readonly"));
    g_clear_error(&err);
    g_assert_false(block_dirty_bitmap_remove(bs, "b", &err));
    g_clear_error(&err);
    g_assert_null(block_dirty_bitmap_add(bs, "c", 0, true, false, &err));
    g_clear_error(&err);
    g_assert_true(bdrv_store_persistent_dirty_bitmaps(bs, &err));
    bdrv_unref(bs);
}

int main(int argc, char **argv)
{
    int ret;

    g_test_init(&argc, &argv, NULL);
    tmpdir = test_scratch_dir("bp-qcow2-bitmap");
    g_test_add_func("/qcow2-bitmap/sessions", test_sessions);
    g_test_add_func("/qcow2-bitmap/persistent-limits",
                    test_persistent_limits);
    g_test_add_func("/qcow2-bitmap/read-only", test_read_only);
    ret = g_test_run();
    test_scratch_remove(tmpdir);
    return ret;
}
