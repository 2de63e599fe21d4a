/*
 * The extents a qemu:dirty-bitmap:NAME context produces for block status:
 * random bitmaps and requests against a per-granule model, with the reply
 * limits a server applies (REQ_ONE, a small extent cap, the real cap), so
 * the fast path for sparse bitmaps and the capped slow path both agree
 * with what the bitmap holds.
 */
#include "nbd/nbd-internal.h"
#include "block/block_int.h"
#include "block/dirty-bitmap.h"
#include "qapi/error.h"
#include "scratch.h"

#include <string.h>

#define GRAN 512u
#define NGRAN 20000u
#define DISK ((uint64_t)GRAN * NGRAN)

static char *tmpdir;

static BlockDriverState *open_raw(void)
{
    return test_create_open(tmpdir, "d.raw", "raw", (int64_t)DISK,
                            BDRV_O_RDWR, NULL);
}

/* Is any granule of [off, off + 1) dirty in the model? */
static bool model_dirty(const bool *model, uint64_t off)
{
    return model[off / GRAN];
}

/*
 * Check one reply: extents are non-empty, never two neighbours with the
 * same flags, each matches the model byte by byte (granule by granule),
 * at most @max of them, and they cover the request unless the cap cut
 * them short.
 */
static void check_reply(const bool *model, const NbdExtents *ex,
                        uint64_t offset, uint64_t length, uint32_t max)
{
    uint64_t pos = offset;

    g_assert_cmpuint(ex->count, >, 0);
    g_assert_cmpuint(ex->count, <=, max);
    for (uint32_t i = 0; i < ex->count; i++) {
        uint32_t len = ex->pairs[2 * i];
        uint32_t flags = ex->pairs[2 * i + 1];

        g_assert_cmpuint(len, >, 0);
        g_assert_true(flags == 0 || flags == NBD_STATE_DIRTY);
        if (i > 0) {
            g_assert_cmpuint(flags, !=, ex->pairs[2 * i - 1]);
        }
        for (uint64_t b = pos; b < pos + len; b = (b / GRAN + 1) * GRAN) {
            g_assert_cmpint(model_dirty(model, b), ==,
                            flags == NBD_STATE_DIRTY);
        }
        pos += len;
    }
    g_assert_cmpuint(pos - offset, ==, ex->total);
    g_assert_cmpuint(ex->total, <=, length);
    if (ex->count < max) {
        g_assert_cmpuint(ex->total, ==, length);
    } else if (ex->total < length) {
        /* Cut by the cap: the last extent ends where the status changes. */
        g_assert_cmpint(model_dirty(model, pos), !=,
                        ex->pairs[2 * ex->count - 1] == NBD_STATE_DIRTY);
    }
}

static void fill_random(GRand *r, BdrvDirtyBitmap *bm, bool *model, int density)
{
    memset(model, 0, NGRAN);
    bdrv_clear_dirty_bitmap(bm, NULL);
    for (uint32_t i = 0; i < NGRAN; i++) {
        /* Runs of various lengths, some sparse stretches, some dense. */
        if (g_rand_int_range(r, 0, 100) < density) {
            uint32_t n = (uint32_t)g_rand_int_range(r, 1, 200);
            for (uint32_t k = i; k < MIN(NGRAN, i + n); k++) {
                model[k] = true;
            }
            bdrv_set_dirty_bitmap(bm, (int64_t)i * GRAN, (int64_t)n * GRAN);
            i += n;
        }
    }
}

static void test_random_requests(void)
{
    g_autoptr(GRand) r = g_rand_new_with_seed(1234);
    g_autoptr(GError) err = NULL;
    g_autofree bool *model = g_new0(bool, NGRAN);
    BlockDriverState *bs = open_raw();
    BdrvDirtyBitmap *bm = bdrv_create_dirty_bitmap(bs, GRAN, "b", &err);
    NbdBitmapContext *ctx;
    const uint32_t caps[] = {1, 2, 7, NBD_MAX_EXTENTS};

    g_assert_no_error(err);
    ctx = nbd_bitmap_context_for_bitmap(bs, "b", true, &err);
    g_assert_no_error(err);
    for (int round = 0; round < 40; round++) {
        fill_random(r, bm, model, (int[]){0, 1, 10, 50, 90}[round % 5]);
        for (int q = 0; q < 50; q++) {
            uint64_t offset = (uint64_t)g_rand_int_range(r, 0, DISK - 1);
            uint64_t length =
                1 + (uint64_t)g_rand_int_range(r, 0, (gint32)(DISK - offset));
            uint32_t max = caps[q % G_N_ELEMENTS(caps)];
            NbdExtents ex;

            /* Whole granules most of the time, odd bytes sometimes. */
            if (q % 3) {
                offset -= offset % GRAN;
                length = MAX(GRAN, length - length % GRAN);
                length = MIN(length, DISK - offset);
            }
            nbd_extents_init(&ex, length, max);
            g_assert_cmpint(ctx->ops->extents(ctx->opaque, offset, length, &ex),
                            ==, 0);
            check_reply(model, &ex, offset, length, max);
            nbd_extents_clear(&ex);
        }
    }
    nbd_bitmap_context_free(ctx);
    bdrv_unref(bs);
}

/* A request reaching past the bitmap's end (the node grew) reads clean. */
static void test_past_bitmap_end(void)
{
    g_autoptr(GError) err = NULL;
    BlockDriverState *bs = open_raw();
    BdrvDirtyBitmap *bm = bdrv_create_dirty_bitmap(bs, GRAN, "b", &err);
    NbdBitmapContext *ctx;
    NbdExtents ex;

    g_assert_no_error(err);
    bdrv_set_dirty_bitmap(bm, 0, (int64_t)DISK);
    ctx = nbd_bitmap_context_for_bitmap(bs, "b", true, &err);
    g_assert_no_error(err);
    nbd_extents_init(&ex, 2 * GRAN, NBD_MAX_EXTENTS);
    g_assert_cmpint(ctx->ops->extents(ctx->opaque, DISK - GRAN, 2 * GRAN, &ex),
                    ==, 0);
    g_assert_cmpuint(ex.count, ==, 2);
    g_assert_cmpuint(ex.pairs[0], ==, GRAN);
    g_assert_cmpuint(ex.pairs[1], ==, NBD_STATE_DIRTY);
    g_assert_cmpuint(ex.pairs[2], ==, GRAN);
    g_assert_cmpuint(ex.pairs[3], ==, 0);
    nbd_extents_clear(&ex);
    nbd_bitmap_context_free(ctx);
    bdrv_unref(bs);
}

/*
 * Robustness item 37: a bitmap that turns inconsistent after the export
 * started (a failed lazy load, no memory for a recorded write) makes
 * every later block status request fail with EIO, which the server sends
 * as an error reply; the extents it had are never handed out.  From
 * outside this cannot be provoked once the export runs (the export loads
 * the bitmap first and keeps it busy), hence a test at this level.
 */
static void test_inconsistent_after_start(void)
{
    g_autoptr(GError) err = NULL;
    BlockDriverState *bs = open_raw();
    BdrvDirtyBitmap *bm = bdrv_create_dirty_bitmap(bs, GRAN, "b", &err);
    NbdBitmapContext *ctx;
    NbdExtents ex;

    g_assert_no_error(err);
    bdrv_set_dirty_bitmap(bm, 4 * GRAN, 8 * GRAN);
    ctx = nbd_bitmap_context_for_bitmap(bs, "b", true, &err);
    g_assert_no_error(err);

    nbd_extents_init(&ex, DISK, NBD_MAX_EXTENTS);
    g_assert_cmpint(ctx->ops->extents(ctx->opaque, 0, DISK, &ex), ==, 0);
    g_assert_cmpuint(ex.count, ==, 3);
    nbd_extents_clear(&ex);

    bdrv_dirty_bitmap_set_inconsistent(bm);
    for (uint64_t off = 0; off < DISK; off += DISK / 4) {
        nbd_extents_init(&ex, GRAN, 1);
        g_assert_cmpint(ctx->ops->extents(ctx->opaque, off, GRAN, &ex), ==,
                        -EIO);
        nbd_extents_clear(&ex);
    }
    /* Once that export is gone, a new one is refused outright. */
    nbd_bitmap_context_free(ctx);
    g_assert_null(nbd_bitmap_context_for_bitmap(bs, "b", true, &err));
    g_assert_nonnull(err);
    g_assert_nonnull(strstr(err->message, "inconsistent"));
    bdrv_unref(bs);
}

int main(int argc, char **argv)
{
    int ret;

    g_test_init(&argc, &argv, NULL);
    tmpdir = test_scratch_dir("bp-nbd-bitmap");
    g_test_add_func("/nbd/bitmap-context/random-requests",
                    test_random_requests);
    g_test_add_func("/nbd/bitmap-context/past-bitmap-end",
                    test_past_bitmap_end);
    g_test_add_func("/nbd/bitmap-context/inconsistent-after-start",
                    test_inconsistent_after_start);
    ret = g_test_run();
    test_scratch_remove(tmpdir);
    return ret;
}
