/*
 * Checkpoints on a real qcow2 node (block/checkpoint-ops.c with the
 * qcow2 driver): every write made while checkpoints are created or
 * removed lands in exactly one checkpoint bitmap (the drained switch),
 * nothing is lost, frozen bitmaps leave memory after use, the guard on
 * checkpoint bitmaps, the chain survives a reopen, a drained section
 * holds writes back, and a create or remove whose metadata update fails
 * (BP_FAULT_BITMAP_STEP_ERROR) leaves the chain and every bitmap exactly
 * as they were, in memory and in the image.
 */
#include "block/block.h"
#include "block/checkpoint-ops.h"
#include "block/dirty-bitmap.h"
#include "qapi/error.h"
#include "scratch.h"

#include <glib/gstdio.h>
#include <string.h>

#define GRAN (64 * 1024)
#define SIZE ((int64_t)64 * 1024 * 1024)
#define N_GRANULES (SIZE / GRAN)

static char *tmpdir;

static BlockDriverState *open_new(const char *name, char **path_out)
{
    return test_create_open(tmpdir, name, "qcow2", SIZE, BDRV_O_RDWR,
                            path_out);
}

static void create_ok(BlockDriverState *bs, const char *name)
{
    g_autoptr(GError) err = NULL;

    g_assert_true(bdrv_checkpoint_create(bs, name, NULL, GRAN, &err));
    g_assert_no_error(err);
}

static void remove_ok(BlockDriverState *bs, const char *name)
{
    g_autoptr(GError) err = NULL;

    g_assert_true(bdrv_checkpoint_remove(bs, name, &err));
    g_assert_no_error(err);
}

/* A writer thread: one 4 KiB write at the start of every granule. */
typedef struct {
    BlockDriverState *bs;
    gint done;              /* granules written so far */
} Writer;

static gpointer writer_main(gpointer opaque)
{
    Writer *w = opaque;
    uint8_t buf[4096];

    memset(buf, 0x42, sizeof(buf));
    for (int64_t i = 0; i < N_GRANULES; i++) {
        g_assert_cmpint(bdrv_pwrite(w->bs, i * GRAN, sizeof(buf), buf, 0),
                        ==, 0);
        g_atomic_int_set(&w->done, (gint)i + 1);
    }
    return NULL;
}

/* Wait until the writer made progress (no time limit needed: it runs). */
static void wait_progress(Writer *w, gint from)
{
    while (g_atomic_int_get(&w->done) == from &&
           g_atomic_int_get(&w->done) < N_GRANULES) {
        g_thread_yield();
    }
}

/* How many checkpoint bitmaps of @bs have granule @i dirty. */
static int owners_of(BlockDriverState *bs, const CheckpointChain *chain,
                     int64_t i)
{
    int n = 0;

    for (guint k = 0; k < ckpt_chain_length(chain); k++) {
        BdrvDirtyBitmap *bm = bdrv_find_dirty_bitmap(
            bs, ckpt_chain_nth(chain, k)->bitmap);
        g_assert_nonnull(bm);
        n += bdrv_dirty_bitmap_get(bm, i * GRAN);
    }
    return n;
}

static void check_exactly_once(BlockDriverState *bs)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(CheckpointChain) chain = bdrv_checkpoint_chain(bs, &err);
    g_autoptr(BdrvDirtyBitmap) all = NULL;

    g_assert_no_error(err);
    for (int64_t i = 0; i < N_GRANULES; i++) {
        g_assert_cmpint(owners_of(bs, chain, i), ==, 1);
    }
    all = bdrv_checkpoint_changes(bs, ckpt_chain_nth(chain, 0)->name, NULL,
                                  &err);
    g_assert_no_error(err);
    g_assert_cmpuint(bdrv_get_dirty_count(all), ==, SIZE);
}

static void test_exact_switch_under_writes(void)
{
    BlockDriverState *bs = open_new("switch.qcow2", NULL);
    Writer w = { .bs = bs };
    GThread *t;
    int n = 1;

    create_ok(bs, "c0");
    t = g_thread_new("writer", writer_main, &w);
    while (g_atomic_int_get(&w.done) < N_GRANULES && n < 40) {
        g_autofree char *name = g_strdup_printf("c%d", n++);
        gint seen = g_atomic_int_get(&w.done);
        create_ok(bs, name);
        wait_progress(&w, seen);
    }
    g_thread_join(t);
    check_exactly_once(bs);
    bdrv_unref(bs);
}

static void test_remove_under_writes(void)
{
    BlockDriverState *bs = open_new("remove.qcow2", NULL);
    Writer w = { .bs = bs };
    GRand *rnd = g_rand_new_with_seed(3);
    GThread *t;
    int n = 1;

    create_ok(bs, "c0");
    t = g_thread_new("writer", writer_main, &w);
    while (g_atomic_int_get(&w.done) < N_GRANULES && n < 60) {
        g_autoptr(CheckpointChain) chain = bdrv_checkpoint_chain(bs, NULL);
        guint len = ckpt_chain_length(chain);
        gint seen = g_atomic_int_get(&w.done);

        if (len > 1 && g_rand_boolean(rnd)) {
            /* Anything but the oldest, so that c0 keeps every write. */
            guint k = 1 + g_rand_int_range(rnd, 0, (gint32)len - 1);
            remove_ok(bs, ckpt_chain_nth(chain, k)->name);
        } else {
            g_autofree char *name = g_strdup_printf("c%d", n++);
            create_ok(bs, name);
        }
        wait_progress(&w, seen);
    }
    g_thread_join(t);
    check_exactly_once(bs);
    g_rand_free(rnd);
    bdrv_unref(bs);
}

static void test_frozen_bitmaps_leave_memory(void)
{
    BlockDriverState *bs = open_new("unload.qcow2", NULL);
    g_autoptr(GError) err = NULL;
    g_autoptr(BdrvDirtyBitmap) since = NULL;
    uint8_t buf[512] = { 1 };
    const char *names[] = { "c0", "c1", "c2", "c3" };

    for (int i = 0; i < 4; i++) {
        create_ok(bs, names[i]);
        g_assert_cmpint(bdrv_pwrite(bs, i * 8 * GRAN, sizeof(buf), buf, 0),
                        ==, 0);
    }
    for (int i = 0; i < 3; i++) {
        g_assert_false(bdrv_dirty_bitmap_loaded(
            bdrv_find_dirty_bitmap(bs, names[i])));
    }
    since = bdrv_checkpoint_changes(bs, "c0", NULL, &err);
    g_assert_no_error(err);
    g_assert_cmpuint(bdrv_get_dirty_count(since), ==, 4 * GRAN);
    for (int i = 0; i < 3; i++) {
        BdrvDirtyBitmap *bm = bdrv_find_dirty_bitmap(bs, names[i]);
        g_assert_false(bdrv_dirty_bitmap_loaded(bm));
        g_assert_false(bdrv_dirty_bitmap_recording(bm));
    }
    g_assert_true(bdrv_dirty_bitmap_recording(
        bdrv_find_dirty_bitmap(bs, "c3")));
    /* A merge for a removal reads c1 and drops it again. */
    remove_ok(bs, "c2");
    g_assert_false(bdrv_dirty_bitmap_loaded(
        bdrv_find_dirty_bitmap(bs, "c1")));
    g_assert_null(bdrv_find_dirty_bitmap(bs, "c2"));
    g_assert_cmpuint(bdrv_get_dirty_count(
                         bdrv_find_dirty_bitmap(bs, "c1")), ==, 2 * GRAN);
    bdrv_unref(bs);
}

static void test_guard(void)
{
    BlockDriverState *bs = open_new("guard.qcow2", NULL);
    g_autoptr(GError) err = NULL;

    create_ok(bs, "c0");
    g_assert_false(block_dirty_bitmap_remove(bs, "c0", &err));
    g_assert_nonnull(strstr(err->message, "block-checkpoint-remove"));
    g_clear_error(&err);
    g_assert_false(block_dirty_bitmap_disable(bs, "c0", &err));
    g_assert_nonnull(strstr(err->message, "belongs to checkpoint 'c0'"));
    g_clear_error(&err);
    remove_ok(bs, "c0");
    g_assert_null(bdrv_find_dirty_bitmap(bs, "c0"));
    g_assert_nonnull(block_dirty_bitmap_add(bs, "c0", 0, true, false,
                                            &err));
    g_assert_true(block_dirty_bitmap_remove(bs, "c0", &err));
    g_assert_no_error(err);
    bdrv_unref(bs);
}

static void test_reopen(void)
{
    g_autofree char *path = NULL;
    BlockDriverState *bs = open_new("reopen.qcow2", &path);
    g_autoptr(CheckpointChain) before = NULL;
    g_autoptr(CheckpointChain) after = NULL;
    g_autoptr(GError) err = NULL;

    create_ok(bs, "a");
    create_ok(bs, "b");
    create_ok(bs, "c");
    remove_ok(bs, "b");
    before = bdrv_checkpoint_chain(bs, &err);
    bdrv_unref(bs);
    bs = bdrv_open(path, NULL, 0, &err);
    g_assert_no_error(err);
    after = bdrv_checkpoint_chain(bs, &err);
    g_assert_no_error(err);
    g_assert_true(ckpt_chain_equal(before, after));
    g_assert_cmpstr(ckpt_chain_nth(after, 1)->parent, ==, "a");
    g_assert_true(ckpt_chain_check_invariants(after, &err));
    /* Read-only: no change allowed. */
    g_assert_false(bdrv_checkpoint_create(bs, "d", NULL, 0, &err));
    g_assert_nonnull(strstr(err->message, "read-only"));
    bdrv_unref(bs);
}

static gpointer one_write(gpointer opaque)
{
    Writer *w = opaque;
    uint8_t buf[512] = { 7 };

    g_atomic_int_set(&w->done, 1);
    g_assert_cmpint(bdrv_pwrite(w->bs, 0, sizeof(buf), buf, 0), ==, 0);
    g_atomic_int_set(&w->done, 2);
    return NULL;
}

static void test_drained_section(void)
{
    BlockDriverState *bs = open_new("drain.qcow2", NULL);
    Writer w = { .bs = bs };
    GThread *t;

    bdrv_drained_begin(bs);
    t = g_thread_new("writer", one_write, &w);
    while (g_atomic_int_get(&w.done) == 0) {
        g_thread_yield();
    }
    /* Held back for as long as the section lasts (no upper bound). */
    g_usleep(50 * 1000);
    g_assert_cmpint(g_atomic_int_get(&w.done), ==, 1);
    bdrv_drained_end(bs);
    g_thread_join(t);
    g_assert_cmpint(g_atomic_int_get(&w.done), ==, 2);
    bdrv_unref(bs);
}

/* ---- Failed commits roll back ---- */

/* The chain and, for each of its bitmaps, "name sha256 flags". */
typedef struct {
    CheckpointChain *chain;
    GPtrArray *bitmaps;
    guint n_bitmaps;
} NodeState;

static void node_state_free(NodeState *ns)
{
    ckpt_chain_free(ns->chain);
    g_ptr_array_unref(ns->bitmaps);
    g_free(ns);
}
G_DEFINE_AUTOPTR_CLEANUP_FUNC(NodeState, node_state_free)

static NodeState *node_state(BlockDriverState *bs)
{
    NodeState *ns = g_new0(NodeState, 1);
    g_autoptr(GError) err = NULL;

    ns->chain = bdrv_checkpoint_chain(bs, &err);
    g_assert_no_error(err);
    ns->bitmaps = g_ptr_array_new_with_free_func(g_free);
    ns->n_bitmaps = bdrv_dirty_bitmap_count_on_node(bs);
    for (BdrvDirtyBitmap *bm = bdrv_dirty_bitmap_first(bs); bm;
         bm = bdrv_dirty_bitmap_next(bm)) {
        g_autofree char *sha = bdrv_dirty_bitmap_sha256(bm, &err);

        g_assert_no_error(err);
        g_ptr_array_add(ns->bitmaps, g_strdup_printf(
            "%s %s rec=%d pers=%d inc=%d", bdrv_dirty_bitmap_name(bm), sha,
            bdrv_dirty_bitmap_recording(bm),
            bdrv_dirty_bitmap_persistent(bm),
            bdrv_dirty_bitmap_inconsistent(bm)));
    }
    return ns;
}

static void assert_same_state(NodeState *a, NodeState *b)
{
    g_assert_true(ckpt_chain_equal(a->chain, b->chain));
    g_assert_cmpuint(a->n_bitmaps, ==, b->n_bitmaps);
    g_assert_cmpuint(a->bitmaps->len, ==, b->bitmaps->len);
    for (guint i = 0; i < a->bitmaps->len; i++) {
        g_assert_cmpstr(g_ptr_array_index(a->bitmaps, i), ==,
                        g_ptr_array_index(b->bitmaps, i));
    }
}

static void write_at(BlockDriverState *bs, int64_t granule)
{
    uint8_t buf[4096];

    memset(buf, 0x5a, sizeof(buf));
    g_assert_cmpint(bdrv_pwrite(bs, granule * GRAN, sizeof(buf), buf, 0),
                    ==, 0);
}

/*
 * Make the create or remove of @name fail with ENOSPC at step 1, 2 and 3
 * of its metadata updates (the steps that can fail); each failure must
 * leave @bs exactly as before.  With @commit the failure is the commit's
 * (no write session: the plan's own operations write nothing).  Then
 * the operation must succeed.
 */
static void fail_each_step(BlockDriverState *bs, bool create,
                           const char *name, bool commit)
{
    g_autoptr(GError) err = NULL;

    for (int step = 1; step <= 3; step++) {
        g_autoptr(NodeState) before = node_state(bs);
        g_autoptr(NodeState) after = NULL;
        /* A new text restarts the count: see qcow2-bitmap-store.c. */
        g_autofree char *arm = g_strdup_printf("%d (%s %s)", step,
                                               create ? "create" : "remove",
                                               name);
        bool ok;

        g_setenv("BP_FAULT_BITMAP_STEP_ERROR", arm, TRUE);
        ok = create ? bdrv_checkpoint_create(bs, name, NULL, GRAN, &err)
                    : bdrv_checkpoint_remove(bs, name, &err);
        g_setenv("BP_FAULT_BITMAP_STEP_ERROR", "0 (off)", TRUE);
        g_assert_false(ok);
        g_assert_nonnull(strstr(err->message, "No space left on device"));
        if (commit) {
            g_assert_nonnull(strstr(err->message, "nothing was changed"));
        }
        g_clear_error(&err);
        after = node_state(bs);
        assert_same_state(before, after);
    }
    if (create) {
        create_ok(bs, name);
    } else {
        remove_ok(bs, name);
    }
}

static uint64_t count_of(BlockDriverState *bs, const char *bitmap)
{
    return bdrv_get_dirty_count(bdrv_find_dirty_bitmap(bs, bitmap));
}

static void test_failed_commit_rolls_back(void)
{
    g_autofree char *path = NULL;
    BlockDriverState *bs = open_new("rollback.qcow2", &path);
    g_autoptr(NodeState) before = NULL;
    g_autoptr(NodeState) after = NULL;
    g_autoptr(GError) err = NULL;

    create_ok(bs, "c0");
    write_at(bs, 1);
    create_ok(bs, "c1");
    write_at(bs, 2);
    write_at(bs, 3);
    create_ok(bs, "c2");
    write_at(bs, 5);
    create_ok(bs, "c3");

    /* A middle one: merge into c0, drop c1. */
    fail_each_step(bs, false, "c1", true);
    g_assert_null(bdrv_find_dirty_bitmap(bs, "c1"));
    g_assert_cmpuint(count_of(bs, "c0"), ==, 3 * GRAN);
    /* A new one: add c4, switch c3 off. */
    fail_each_step(bs, true, "c4", true);
    /* In a write session the merge target is flagged in use first. */
    write_at(bs, 7);
    fail_each_step(bs, false, "c4", false);
    g_assert_true(bdrv_dirty_bitmap_recording(
        bdrv_find_dirty_bitmap(bs, "c3")));
    g_assert_cmpuint(count_of(bs, "c3"), ==, GRAN);
    /* The newest: merge into its parent, switch that on again, drop it. */
    write_at(bs, 9);
    create_ok(bs, "c5");
    write_at(bs, 11);
    create_ok(bs, "c6");
    fail_each_step(bs, false, "c6", true);
    g_assert_true(bdrv_dirty_bitmap_recording(
        bdrv_find_dirty_bitmap(bs, "c5")));
    g_assert_cmpuint(count_of(bs, "c5"), ==, GRAN);
    fail_each_step(bs, false, "c5", true);
    g_assert_true(bdrv_dirty_bitmap_recording(
        bdrv_find_dirty_bitmap(bs, "c3")));
    g_assert_cmpuint(count_of(bs, "c3"), ==, 3 * GRAN);

    /* The image holds what memory held. */
    before = node_state(bs);
    bdrv_unref(bs);
    bs = bdrv_open(path, NULL, BDRV_O_RDWR, &err);
    g_assert_no_error(err);
    after = node_state(bs);
    assert_same_state(before, after);
    bdrv_unref(bs);
}

int main(int argc, char **argv)
{
    int ret;

    g_test_init(&argc, &argv, NULL);
    tmpdir = test_scratch_dir("bp-ckpt-ops");
    g_test_add_func("/checkpoint-ops/exact-switch-under-writes",
                    test_exact_switch_under_writes);
    g_test_add_func("/checkpoint-ops/remove-under-writes",
                    test_remove_under_writes);
    g_test_add_func("/checkpoint-ops/frozen-bitmaps-leave-memory",
                    test_frozen_bitmaps_leave_memory);
    g_test_add_func("/checkpoint-ops/guard", test_guard);
    g_test_add_func("/checkpoint-ops/reopen", test_reopen);
    g_test_add_func("/checkpoint-ops/drained-section", test_drained_section);
    g_test_add_func("/checkpoint-ops/failed-commit-rolls-back",
                    test_failed_commit_rolls_back);
    ret = g_test_run();
    test_scratch_remove(tmpdir);
    return ret;
}
