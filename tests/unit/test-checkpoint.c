/*
 * The checkpoint chain model (block/checkpoint.c): plans, queries and
 * validation, first case by case, then against a naive shadow model that
 * carries out every plan on simulated bitmaps and compares each change set
 * with the writes a per-cluster write log says happened.
 */
#include "block/checkpoint.h"
#include "block/qcow2/qcow2-checkpoint-format.h"
#include "qapi/error.h"

#include <string.h>

#define GRAN 65536

static CkptPlan *plan_create_ok(CheckpointChain *chain, const char *name,
                                const char *bitmap, int64_t t)
{
    g_autoptr(GError) err = NULL;
    CkptPlan *plan = ckpt_plan_create(chain, name, bitmap, GRAN, t, 0, &err);

    g_assert_no_error(err);
    g_assert_nonnull(plan);
    return plan;
}

/* Create @name and apply at once (the bitmap side is not simulated). */
static void create(CheckpointChain *chain, const char *name, int64_t t)
{
    g_autoptr(CkptPlan) plan = plan_create_ok(chain, name, NULL, t);
    g_autoptr(GError) err = NULL;

    g_assert_true(ckpt_chain_apply(chain, plan, &err));
    g_assert_no_error(err);
    g_assert_true(ckpt_chain_check_invariants(chain, &err));
}

static void remove_ckpt(CheckpointChain *chain, const char *name,
                        const char *expect_ops, bool expect_quiesce)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(CkptPlan) plan = ckpt_plan_remove(chain, name, &err);
    g_autofree char *ops = NULL;

    g_assert_no_error(err);
    ops = ckpt_plan_describe(plan);
    g_assert_cmpstr(ops, ==, expect_ops);
    g_assert_cmpint(plan->quiesce, ==, expect_quiesce);
    g_assert_true(ckpt_chain_apply(chain, plan, &err));
    g_assert_true(ckpt_chain_check_invariants(chain, &err));
    g_assert_null(ckpt_chain_find(chain, name));
}

/* "a b c" from a vector of names. */
static char *joined(char **v)
{
    return g_strjoinv(" ", v);
}

static void assert_since(CheckpointChain *chain, const char *name,
                         const char *expect)
{
    g_autoptr(GError) err = NULL;
    g_auto(GStrv) v = ckpt_changed_since(chain, name, &err);
    g_autofree char *s = NULL;

    g_assert_no_error(err);
    s = joined(v);
    g_assert_cmpstr(s, ==, expect);
}

static void assert_between(CheckpointChain *chain, const char *a,
                           const char *b, const char *expect)
{
    g_autoptr(GError) err = NULL;
    g_auto(GStrv) v = ckpt_changed_between(chain, a, b, &err);
    g_autofree char *s = NULL;

    g_assert_no_error(err);
    s = joined(v);
    g_assert_cmpstr(s, ==, expect);
}

static void test_create_plans(void)
{
    g_autoptr(CheckpointChain) chain = ckpt_chain_new();
    g_autoptr(CkptPlan) p1 = plan_create_ok(chain, "a", NULL, 10);
    g_autoptr(CkptPlan) p2 = NULL;
    g_autofree char *d1 = ckpt_plan_describe(p1);
    g_autofree char *d2 = NULL;
    const Checkpoint *b;

    g_assert_cmpstr(d1, ==, "add 'a' (granularity 65536)");
    g_assert_true(p1->quiesce);
    g_assert_true(ckpt_chain_apply(chain, p1, NULL));

    p2 = plan_create_ok(chain, "b", "bm-b", 20);
    d2 = ckpt_plan_describe(p2);
    g_assert_cmpstr(d2, ==, "add 'bm-b' (granularity 65536); disable 'a'");
    g_assert_true(ckpt_chain_apply(chain, p2, NULL));

    g_assert_cmpuint(ckpt_chain_length(chain), ==, 2);
    b = ckpt_chain_head(chain);
    g_assert_cmpstr(b->name, ==, "b");
    g_assert_cmpstr(b->bitmap, ==, "bm-b");
    g_assert_cmpstr(b->parent, ==, "a");
    g_assert_cmpint(b->ctime_sec, ==, 20);
    g_assert_null(ckpt_chain_nth(chain, 0)->parent);
    g_assert_true(ckpt_chain_find_bitmap(chain, "bm-b") == b);
    g_assert_null(ckpt_chain_find_bitmap(chain, "b"));
    g_assert_cmpint(ckpt_chain_index(chain, "b"), ==, 1);
    g_assert_cmpint(ckpt_chain_index(chain, "zz"), ==, -1);
    g_assert_true(ckpt_chain_check_invariants(chain, NULL));
}

static void test_create_errors(void)
{
    g_autoptr(CheckpointChain) chain = ckpt_chain_new();
    g_autofree char *long_name = g_strnfill(1024, 'x');
    g_autofree char *max_name = g_strnfill(1023, 'x');
    static const struct {
        const char *name, *bitmap;
        uint64_t gran;
        uint32_t nsec;
        const char *msg;
    } bad[] = {
        { "", NULL, GRAN, 0, "Checkpoint name must not be empty" },
        { "a", NULL, GRAN, 0, "Checkpoint 'a' already exists" },
        { "n", "a", GRAN, 0, "Bitmap 'a' already belongs to checkpoint 'a'" },
        { "n", NULL, 1000, 0, "Granularity must be power of 2 between 512 "
                              "and 2147483648" },
        { "n", NULL, 256, 0, NULL },
        { "n", NULL, (uint64_t)1 << 32, 0, NULL },
        { "n", NULL, GRAN, 1000000000, "Creation time nanoseconds "
                                       "1000000000 out of range" },
    };

    create(chain, "a", 1);
    for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
        g_autoptr(GError) err = NULL;
        CkptPlan *p = ckpt_plan_create(chain, bad[i].name, bad[i].bitmap,
                                       bad[i].gran, 5, bad[i].nsec, &err);

        g_assert_null(p);
        g_assert_nonnull(err);
        if (bad[i].msg) {
            g_assert_cmpstr(err->message, ==, bad[i].msg);
        }
    }
    {
        g_autoptr(GError) err = NULL;

        g_assert_null(ckpt_plan_create(chain, long_name, NULL, GRAN, 0, 0,
                                       &err));
        g_assert_cmpstr(err->message, ==, "Checkpoint name is 1024 bytes "
                        "long, the limit is 1023");
    }
    {
        g_autoptr(GError) err = NULL;

        g_assert_null(ckpt_plan_create(chain, "n", long_name, GRAN, 0, 0,
                                       &err));
        g_assert_cmpstr(err->message, ==, "Bitmap name is 1024 bytes "
                        "long, the limit is 1023");
    }
    create(chain, max_name, 2);
    g_assert_cmpuint(ckpt_chain_length(chain), ==, 2);
}

static void test_remove_plans(void)
{
    g_autoptr(CheckpointChain) chain = ckpt_chain_new();

    create(chain, "a", 1);
    create(chain, "b", 2);
    create(chain, "c", 3);
    create(chain, "d", 4);
    /* Middle: merge into the parent, re-link the child. */
    remove_ckpt(chain, "b", "merge 'b' into 'a'; remove 'b'", false);
    g_assert_cmpstr(ckpt_chain_find(chain, "c")->parent, ==, "a");
    /* Newest: the parent records again. */
    remove_ckpt(chain, "d", "merge 'd' into 'c'; enable 'c'; remove 'd'",
                true);
    g_assert_cmpstr(ckpt_chain_head(chain)->name, ==, "c");
    /* Oldest: just drop the bitmap. */
    remove_ckpt(chain, "a", "remove 'a'", false);
    g_assert_null(ckpt_chain_find(chain, "c")->parent);
    /* The only one. */
    remove_ckpt(chain, "c", "remove 'c'", true);
    g_assert_cmpuint(ckpt_chain_length(chain), ==, 0);
    g_assert_null(ckpt_chain_head(chain));
}

static void test_remove_errors(void)
{
    g_autoptr(CheckpointChain) chain = ckpt_chain_new();
    g_autoptr(GError) err = NULL;

    g_assert_null(ckpt_plan_remove(chain, "x", &err));
    g_assert_cmpstr(err->message, ==, "Checkpoint 'x' not found");
}

static void test_stale_plan(void)
{
    g_autoptr(CheckpointChain) chain = ckpt_chain_new();
    g_autoptr(CkptPlan) p1 = NULL, p2 = NULL, p3 = NULL;
    g_autoptr(CheckpointChain) copy = NULL;
    g_autoptr(GError) err = NULL;

    create(chain, "a", 1);
    p1 = plan_create_ok(chain, "b", NULL, 2);
    p2 = plan_create_ok(chain, "c", NULL, 2);
    p3 = ckpt_plan_remove(chain, "a", NULL);
    copy = ckpt_chain_copy(chain);
    g_assert_true(ckpt_chain_apply(chain, p1, NULL));
    g_assert_false(ckpt_chain_apply(chain, p2, &err));
    g_assert_cmpstr(err->message, ==, "The checkpoints changed while "
                    "checkpoint 'c' was being created");
    g_clear_error(&err);
    g_assert_false(ckpt_chain_apply(chain, p1, &err));
    g_clear_error(&err);
    g_assert_false(ckpt_chain_apply(chain, p3, &err));
    g_assert_cmpuint(ckpt_chain_length(chain), ==, 2);
    /* A copy made before takes the plans made for the original. */
    g_assert_true(ckpt_chain_apply(copy, p3, NULL));
    g_assert_cmpuint(ckpt_chain_length(copy), ==, 0);
}

static void test_queries(void)
{
    g_autoptr(CheckpointChain) chain = ckpt_chain_new();
    g_autoptr(GError) err = NULL;

    create(chain, "a", 1);
    create(chain, "b", 2);
    create(chain, "c", 3);
    assert_since(chain, "a", "a b c");
    assert_since(chain, "b", "b c");
    assert_since(chain, "c", "c");
    assert_between(chain, "a", "c", "a b");
    assert_between(chain, "a", "b", "a");
    assert_between(chain, "b", "b", "");
    g_assert_null(ckpt_changed_between(chain, "c", "a", &err));
    g_assert_cmpstr(err->message, ==, "Checkpoint 'c' is newer than "
                    "checkpoint 'a'");
    g_clear_error(&err);
    g_assert_null(ckpt_changed_since(chain, "zz", &err));
    g_assert_cmpstr(err->message, ==, "Checkpoint 'zz' not found");
    g_clear_error(&err);
    g_assert_null(ckpt_changed_between(chain, "a", "zz", &err));
    g_assert_cmpstr(err->message, ==, "Checkpoint 'zz' not found");
}

/* Bitmaps a-d, sound, with 'd' recording. */
static void sound_bitmaps(CkptBitmapState *bm)
{
    static const char *names[] = { "a", "b", "c", "d" };

    for (int i = 0; i < 4; i++) {
        bm[i] = (CkptBitmapState) {
            .name = names[i], .granularity = GRAN, .recording = i == 3,
        };
    }
}

static CheckpointChain *chain_abcd(void)
{
    CheckpointChain *chain = ckpt_chain_new();

    create(chain, "a", 1);
    create(chain, "b", 2);
    create(chain, "c", 3);
    create(chain, "d", 4);
    return chain;
}

static void test_validate_kinds(void)
{
    static const struct {
        int which;      /* bitmap to alter */
        int how;        /* 0 drop, 1 inconsistent, 2 granularity, 3 flip */
        const char *reason;
        guint unusable;
    } cases[] = {
        { 1, 0, "bitmap 'b' is missing", 2 },
        { 2, 1, "bitmap 'c' is inconsistent", 3 },
        { 0, 2, "bitmap 'a' has granularity 131072, expected 65536", 1 },
        { 1, 3, "bitmap 'b' is recording but checkpoint 'b' is not the "
                "newest", 2 },
        { 3, 3, "bitmap 'd' of the newest checkpoint 'd' is not "
                "recording", 4 },
        { 3, 0, "bitmap 'd' is missing", 4 },
    };

    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autoptr(CheckpointChain) chain = chain_abcd();
        g_autoptr(GError) err = NULL;
        CkptBitmapState bm[4];
        size_t n = 4;
        int w = cases[i].which;

        sound_bitmaps(bm);
        g_assert_cmpuint(ckpt_chain_validate_bitmaps(chain, bm, 4), ==, 0);
        switch (cases[i].how) {
        case 0:
            bm[w] = bm[3];
            n = 3;
            break;
        case 1:
            bm[w].inconsistent = true;
            break;
        case 2:
            bm[w].granularity *= 2;
            break;
        case 3:
            bm[w].recording = !bm[w].recording;
            break;
        }
        g_assert_cmpuint(ckpt_chain_validate_bitmaps(chain, bm, n), ==,
                         cases[i].unusable);
        g_assert_true(ckpt_chain_check_invariants(chain, NULL));
        for (guint k = 0; k < 4; k++) {
            const char *why = ckpt_chain_unusable_reason(chain, k);

            if (k <= (guint)w) {
                g_assert_cmpstr(why, ==, cases[i].reason);
            } else {
                g_assert_null(why);
            }
        }
        if (w > 0) {
            g_assert_null(ckpt_changed_since(chain, "a", &err));
            g_assert_true(g_str_has_prefix(err->message,
                          "Checkpoint 'a' is unusable: newer checkpoint"));
            g_clear_error(&err);
        }
        /* Younger than the damage: still usable, and so is a range
         * that ends at the damaged one. */
        if (w < 3) {
            g_autofree char *next = g_strdup_printf("%c", 'a' + w + 1);
            g_auto(GStrv) v = ckpt_changed_since(chain, next, &err);

            g_assert_no_error(err);
            g_assert_nonnull(v);
        }
        if (w > 0) {
            g_autofree char *at = g_strdup_printf("%c", 'a' + w);
            g_auto(GStrv) v = ckpt_changed_between(chain, "a", at, &err);

            g_assert_no_error(err);
            g_assert_cmpuint(g_strv_length(v), ==, w);
        }
    }
}

static void test_validate_sticky(void)
{
    g_autoptr(CheckpointChain) chain = chain_abcd();
    g_autoptr(CheckpointChain) back = NULL;
    g_autoptr(GError) err = NULL;
    g_autofree uint8_t *buf = NULL;
    size_t len;
    CkptBitmapState bm[4];

    sound_bitmaps(bm);
    bm[1].inconsistent = true;
    g_assert_cmpuint(ckpt_chain_validate_bitmaps(chain, bm, 4), ==, 2);
    /* The bitmap looks fine again: the damage stays. */
    bm[1].inconsistent = false;
    g_assert_cmpuint(ckpt_chain_validate_bitmaps(chain, bm, 4), ==, 2);
    g_assert_cmpstr(ckpt_chain_unusable_reason(chain, 0), ==,
                    "bitmap 'b' is inconsistent");
    /* And survives a store and a load, with a generic reason. */
    g_assert_true(qcow2_ckpt_table_encode(chain, 0, 0, &buf, &len, NULL));
    back = qcow2_ckpt_table_decode(buf, len, &err);
    g_assert_no_error(err);
    g_assert_true(ckpt_chain_equal(chain, back));
    g_assert_cmpuint(ckpt_chain_validate_bitmaps(back, bm, 4), ==, 2);
    g_assert_cmpstr(ckpt_chain_unusable_reason(back, 0), ==,
                    "bitmap 'b' was found inconsistent");
    g_assert_null(ckpt_chain_unusable_reason(back, 2));
}

static void test_remove_damaged(void)
{
    g_autoptr(CheckpointChain) chain = chain_abcd();
    CkptBitmapState bm[4];

    sound_bitmaps(bm);
    bm[2] = bm[3];          /* 'c' is missing */
    g_assert_cmpuint(ckpt_chain_validate_bitmaps(chain, bm, 3), ==, 3);
    /* Nothing to merge or remove; 'b' now lacks c's writes. */
    remove_ckpt(chain, "c", "", false);
    g_assert_cmpint(ckpt_chain_find(chain, "b")->damage, ==,
                    CKPT_DAMAGE_INCOMPLETE);
    g_assert_cmpstr(ckpt_chain_unusable_reason(chain, 0), ==,
                    "bitmap 'b' lacks the writes of removed damaged "
                    "checkpoint 'c'");
    g_assert_null(ckpt_chain_unusable_reason(chain, 2));
    /* Removing a sound child of a damaged parent: no merge either. */
    remove_ckpt(chain, "d", "enable 'b'; remove 'd'", true);
    /* Removing it passes the damage on: 'a' never saw c's writes. */
    remove_ckpt(chain, "b", "enable 'a'; remove 'b'", true);
    g_assert_cmpint(ckpt_chain_head(chain)->damage, ==,
                    CKPT_DAMAGE_INCOMPLETE);
    /* It goes away with the last checkpoint that lost writes. */
    remove_ckpt(chain, "a", "remove 'a'", true);
    create(chain, "e", 5);
    g_assert_null(ckpt_chain_unusable_reason(chain, 0));
    assert_since(chain, "e", "e");
}

static void test_damaged_inconsistent_ops(void)
{
    g_autoptr(CheckpointChain) chain = chain_abcd();
    g_autoptr(CkptPlan) plan = NULL;
    g_autofree char *ops = NULL;
    CkptBitmapState bm[4];

    sound_bitmaps(bm);
    bm[3].inconsistent = true;
    bm[3].recording = false;
    g_assert_cmpuint(ckpt_chain_validate_bitmaps(chain, bm, 4), ==, 4);
    /* An inconsistent bitmap can only be removed: no disable. */
    plan = plan_create_ok(chain, "e", NULL, 9);
    ops = ckpt_plan_describe(plan);
    g_assert_cmpstr(ops, ==, "add 'e' (granularity 65536)");
    g_assert_true(ckpt_chain_apply(chain, plan, NULL));
    assert_since(chain, "e", "e");
}

static void test_append(void)
{
    g_autoptr(CheckpointChain) chain = ckpt_chain_new();
    g_autoptr(GError) err = NULL;
    Checkpoint c = {
        .name = (char *)"a", .bitmap = (char *)"a", .parent = (char *)"z",
        .granularity = GRAN,
    };

    g_assert_false(ckpt_chain_append(chain, &c, &err));
    g_assert_cmpstr(err->message, ==, "Checkpoint 'a' has parent 'z', but "
                    "the newest checkpoint is '(none)'");
    g_clear_error(&err);
    c.parent = NULL;
    c.damage = CKPT_DAMAGE_NOT_RECORDING;
    g_assert_true(ckpt_chain_append(chain, &c, &err));
    g_assert_cmpstr(ckpt_chain_unusable_reason(chain, 0), ==,
                    "bitmap 'a' of the newest checkpoint 'a' was found not "
                    "recording");
    g_assert_false(ckpt_chain_append(chain, &c, &err));
    g_assert_true(ckpt_chain_check_invariants(chain, NULL));
}

static void test_mixed_granularity(void)
{
    g_autoptr(CheckpointChain) chain = ckpt_chain_new();
    g_autoptr(CkptPlan) p = NULL;
    g_autofree char *ops = NULL;

    p = ckpt_plan_create(chain, "a", NULL, 4096, 1, 0, NULL);
    g_assert_true(ckpt_chain_apply(chain, p, NULL));
    g_clear_pointer(&p, ckpt_plan_free);
    p = ckpt_plan_create(chain, "b", NULL, (uint64_t)1 << 31, 2, 5, NULL);
    ops = ckpt_plan_describe(p);
    g_assert_cmpstr(ops, ==, "add 'b' (granularity 2147483648); "
                    "disable 'a'");
    g_assert_true(ckpt_chain_apply(chain, p, NULL));
    g_assert_cmpuint(ckpt_chain_head(chain)->ctime_nsec, ==, 5);
    remove_ckpt(chain, "b", "merge 'b' into 'a'; enable 'a'; remove 'b'",
                true);
}

/* ---- Shadow model ---- */

#define SHADOW_SEQUENCES 1500
#define SHADOW_STEPS 60

/* A simulated bitmap over 64 clusters: one bit each. */
typedef struct SimBitmap {
    uint64_t bits;
    uint64_t granularity;
    bool recording;
    bool inconsistent;
} SimBitmap;

typedef struct WriteEvent {
    int64_t time;
    uint64_t mask;
} WriteEvent;

typedef struct Sim {
    GRand *rand;
    CheckpointChain *chain;
    GHashTable *bitmaps;    /* name -> SimBitmap * */
    GArray *log;            /* WriteEvent: every write, with its time */
    GHashTable *damaged;    /* names of checkpoints that must be damaged */
    int64_t clock;          /* logical time: one tick per event */
    int next;
} Sim;

static guint shadow_checks;     /* exact change sets compared */
static guint shadow_refused;    /* change sets refused as unknown */

static void sim_write(Sim *s)
{
    WriteEvent ev = { .time = ++s->clock };
    GHashTableIter it;
    gpointer v;

    for (int i = g_rand_int_range(s->rand, 1, 4); i > 0; i--) {
        ev.mask |= UINT64_C(1) << g_rand_int_range(s->rand, 0, 64);
    }
    g_array_append_val(s->log, ev);
    g_hash_table_iter_init(&it, s->bitmaps);
    while (g_hash_table_iter_next(&it, NULL, &v)) {
        SimBitmap *b = v;

        if (b->recording && !b->inconsistent) {
            b->bits |= ev.mask;
        }
    }
}

/* What the bitmap layer would do; it refuses what a plan must not ask. */
static void sim_run_op(Sim *s, const CkptOp *op)
{
    SimBitmap *b = g_hash_table_lookup(s->bitmaps, op->bitmap);
    SimBitmap *src;

    switch (op->kind) {
    case CKPT_OP_ADD:
        g_assert_null(b);
        b = g_new0(SimBitmap, 1);
        b->granularity = op->granularity;
        b->recording = true;
        g_hash_table_insert(s->bitmaps, g_strdup(op->bitmap), b);
        break;
    case CKPT_OP_DISABLE:
    case CKPT_OP_ENABLE:
        g_assert_nonnull(b);
        g_assert_false(b->inconsistent);
        b->recording = op->kind == CKPT_OP_ENABLE;
        break;
    case CKPT_OP_MERGE:
        src = g_hash_table_lookup(s->bitmaps, op->src);
        g_assert_nonnull(b);
        g_assert_nonnull(src);
        g_assert_false(b->inconsistent || src->inconsistent);
        g_assert_cmpuint(b->granularity, ==, src->granularity);
        b->bits |= src->bits;
        break;
    case CKPT_OP_REMOVE:
        g_assert_nonnull(b);
        g_hash_table_remove(s->bitmaps, op->bitmap);
        break;
    }
}

/* Carry out @plan; writes may come between ops unless it quiesces. */
static void sim_run_plan(Sim *s, CkptPlan *plan)
{
    for (guint i = 0; i < plan->n_ops; i++) {
        if (!plan->quiesce && g_rand_boolean(s->rand)) {
            sim_write(s);
        }
        sim_run_op(s, &plan->ops[i]);
    }
    g_assert_true(ckpt_chain_apply(s->chain, plan, NULL));
}

static void sim_create(Sim *s)
{
    g_autofree char *name = g_strdup_printf("c%d", s->next++);
    g_autofree char *bitmap = g_rand_boolean(s->rand) ?
                              g_strdup_printf("bm-%s", name) : NULL;
    g_autoptr(GError) err = NULL;
    g_autoptr(CkptPlan) plan = ckpt_plan_create(s->chain, name, bitmap, GRAN,
                                                ++s->clock, 0, &err);

    g_assert_no_error(err);
    g_assert_true(plan->quiesce);
    sim_run_plan(s, plan);
}

static bool sim_damaged(Sim *s, const Checkpoint *c)
{
    return c && g_hash_table_contains(s->damaged, c->name);
}

static void sim_remove(Sim *s)
{
    guint n = ckpt_chain_length(s->chain);
    guint i;
    const Checkpoint *c, *parent;
    g_autoptr(CkptPlan) plan = NULL;

    if (n == 0) {
        return;
    }
    i = g_rand_int_range(s->rand, 0, n);
    c = ckpt_chain_nth(s->chain, i);
    parent = i ? ckpt_chain_nth(s->chain, i - 1) : NULL;
    if (parent && (sim_damaged(s, c) || sim_damaged(s, parent))) {
        g_hash_table_add(s->damaged, g_strdup(parent->name));
    }
    g_hash_table_remove(s->damaged, c->name);
    plan = ckpt_plan_remove(s->chain, c->name, NULL);
    g_assert_true(plan->quiesce == (i + 1 == n));
    sim_run_plan(s, plan);
}

static void sim_validate(Sim *s)
{
    g_autofree CkptBitmapState *st =
        g_new0(CkptBitmapState, g_hash_table_size(s->bitmaps) + 1);
    GHashTableIter it;
    gpointer k, v;
    size_t n = 0;

    g_hash_table_iter_init(&it, s->bitmaps);
    while (g_hash_table_iter_next(&it, &k, &v)) {
        SimBitmap *b = v;

        st[n++] = (CkptBitmapState) {
            .name = k, .granularity = b->granularity,
            .recording = b->recording, .inconsistent = b->inconsistent,
        };
    }
    ckpt_chain_validate_bitmaps(s->chain, st, n);
}

/* Damage a checkpoint's bitmap behind the chain's back, then look. */
static void sim_tamper(Sim *s)
{
    guint n = ckpt_chain_length(s->chain);
    const Checkpoint *c;
    SimBitmap *b;

    if (n == 0) {
        return;
    }
    c = ckpt_chain_nth(s->chain, g_rand_int_range(s->rand, 0, n));
    b = g_hash_table_lookup(s->bitmaps, c->bitmap);
    if (!b) {
        return;
    }
    switch (b->inconsistent ? 0 : g_rand_int_range(s->rand, 0, 4)) {
    case 0:
        g_hash_table_remove(s->bitmaps, c->bitmap);
        break;
    case 1:
        b->inconsistent = true;
        b->recording = false;
        break;
    case 2:
        b->granularity *= 2;
        break;
    case 3:
        b->recording = !b->recording;
        break;
    }
    g_hash_table_add(s->damaged, g_strdup(c->name));
    sim_validate(s);
}

/* Store the table and load it back, as closing and opening would. */
static void sim_reopen(Sim *s)
{
    g_autofree uint8_t *buf = NULL;
    g_autoptr(GError) err = NULL;
    CheckpointChain *back;
    size_t len;

    g_assert_true(qcow2_ckpt_table_encode(s->chain, 0, 0, &buf, &len, &err));
    g_assert_cmpuint(len, ==, qcow2_ckpt_table_size(s->chain));
    back = qcow2_ckpt_table_decode(buf, len, &err);
    g_assert_no_error(err);
    g_assert_true(ckpt_chain_equal(s->chain, back));
    ckpt_chain_free(s->chain);
    s->chain = back;
    sim_validate(s);
}

/* The clusters written strictly between times @after and @before. */
static uint64_t truth(Sim *s, int64_t after, int64_t before)
{
    uint64_t mask = 0;

    for (guint i = 0; i < s->log->len; i++) {
        WriteEvent *ev = &g_array_index(s->log, WriteEvent, i);

        if (ev->time > after && ev->time < before) {
            mask |= ev->mask;
        }
    }
    return mask;
}

static uint64_t union_of(Sim *s, char **names)
{
    uint64_t mask = 0;

    for (; *names; names++) {
        SimBitmap *b = g_hash_table_lookup(s->bitmaps, *names);

        g_assert_nonnull(b);
        g_assert_false(b->inconsistent);
        mask |= b->bits;
    }
    return mask;
}

static void sim_check_pair(Sim *s, guint i, guint j, bool exact)
{
    const Checkpoint *a = ckpt_chain_nth(s->chain, i);
    const Checkpoint *b = ckpt_chain_nth(s->chain, j);
    g_autoptr(GError) err = NULL;
    g_auto(GStrv) v = ckpt_changed_between(s->chain, a->name, b->name, &err);

    if (!exact) {
        g_assert_null(v);
        g_assert_nonnull(err);
        shadow_refused++;
        return;
    }
    g_assert_no_error(err);
    g_assert_cmphex(union_of(s, v), ==,
                    truth(s, a->ctime_sec, b->ctime_sec));
    shadow_checks++;
}

static void sim_check(Sim *s)
{
    guint n = ckpt_chain_length(s->chain);
    g_autofree bool *bad = g_new0(bool, n + 1);  /* damage in [i, n) */
    g_autoptr(GError) err = NULL;
    g_autofree const char **reasons = ckpt_chain_unusable_reasons(s->chain);
    guint recording = 0;

    g_assert_true(ckpt_chain_check_invariants(s->chain, &err));
    for (guint i = n; i-- > 0;) {
        const Checkpoint *c = ckpt_chain_nth(s->chain, i);
        SimBitmap *b = g_hash_table_lookup(s->bitmaps, c->bitmap);

        g_assert_cmpint(c->damage != CKPT_DAMAGE_NONE, ==,
                        sim_damaged(s, c));
        bad[i] = bad[i + 1] || sim_damaged(s, c);
        recording += b && b->recording;
    }
    /* Every simulated bitmap belongs to a checkpoint: nothing leaks. */
    g_assert_cmpuint(g_hash_table_size(s->damaged), <=, n);
    {
        GHashTableIter it;
        gpointer k;

        g_hash_table_iter_init(&it, s->bitmaps);
        while (g_hash_table_iter_next(&it, &k, NULL)) {
            g_assert_nonnull(ckpt_chain_find_bitmap(s->chain, k));
        }
    }
    /* A sound chain has exactly one recording bitmap. */
    if (n && !bad[0]) {
        g_assert_cmpuint(recording, ==, 1);
    }
    for (guint i = 0; i < n; i++) {
        const Checkpoint *c = ckpt_chain_nth(s->chain, i);
        g_auto(GStrv) v = ckpt_changed_since(s->chain, c->name, NULL);

        g_assert_true((ckpt_chain_unusable_reason(s->chain, i) == NULL) ==
                      !bad[i]);
        g_assert_true(reasons[i] == ckpt_chain_unusable_reason(s->chain, i));
        g_assert_true((v == NULL) == bad[i]);
        if (v) {
            g_assert_cmphex(union_of(s, v), ==,
                            truth(s, c->ctime_sec, INT64_MAX));
            shadow_checks++;
        }
        for (guint j = i; j < n; j++) {
            /* The range [i, j) must be sound. */
            bool exact = true;

            for (guint k = i; k < j; k++) {
                exact &= !sim_damaged(s, ckpt_chain_nth(s->chain, k));
            }
            sim_check_pair(s, i, j, exact);
        }
    }
}

static void sim_step(Sim *s)
{
    int r = g_rand_int_range(s->rand, 0, 100);

    if (r < 40) {
        sim_write(s);
    } else if (r < 65) {
        sim_create(s);
    } else if (r < 85) {
        sim_remove(s);
    } else if (r < 89) {
        sim_tamper(s);
    } else if (r < 93) {
        sim_validate(s);
    } else {
        sim_reopen(s);
    }
}

static void shadow_sequence(guint32 seed, int steps)
{
    Sim s = {
        .rand = g_rand_new_with_seed(seed),
        .chain = ckpt_chain_new(),
        .bitmaps = g_hash_table_new_full(g_str_hash, g_str_equal, g_free,
                                         g_free),
        .log = g_array_new(FALSE, FALSE, sizeof(WriteEvent)),
        .damaged = g_hash_table_new_full(g_str_hash, g_str_equal, g_free,
                                         NULL),
    };

    for (int i = 0; i < steps; i++) {
        sim_step(&s);
        sim_check(&s);
    }
    g_rand_free(s.rand);
    ckpt_chain_free(s.chain);
    g_hash_table_destroy(s.bitmaps);
    g_array_free(s.log, TRUE);
    g_hash_table_destroy(s.damaged);
}

static void test_shadow(void)
{
    for (guint32 seed = 1; seed <= SHADOW_SEQUENCES; seed++) {
        shadow_sequence(seed, SHADOW_STEPS);
    }
    g_test_message("%u change sets compared with the write log, %u "
                   "refused as unknown", shadow_checks, shadow_refused);
    g_assert_cmpuint(shadow_checks, >, 10000);
    g_assert_cmpuint(shadow_refused, >, 1000);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/checkpoint/create-plans", test_create_plans);
    g_test_add_func("/checkpoint/create-errors", test_create_errors);
    g_test_add_func("/checkpoint/remove-plans", test_remove_plans);
    g_test_add_func("/checkpoint/remove-errors", test_remove_errors);
    g_test_add_func("/checkpoint/stale-plan", test_stale_plan);
    g_test_add_func("/checkpoint/queries", test_queries);
    g_test_add_func("/checkpoint/validate-kinds", test_validate_kinds);
    g_test_add_func("/checkpoint/validate-sticky", test_validate_sticky);
    g_test_add_func("/checkpoint/remove-damaged", test_remove_damaged);
    g_test_add_func("/checkpoint/damaged-inconsistent-ops",
                    test_damaged_inconsistent_ops);
    g_test_add_func("/checkpoint/append", test_append);
    g_test_add_func("/checkpoint/mixed-granularity", test_mixed_granularity);
    g_test_add_func("/checkpoint/shadow-model", test_shadow);
    return g_test_run();
}
