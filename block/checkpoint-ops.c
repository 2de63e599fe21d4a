/*
 * Checkpoints on block nodes: create and remove by carrying out the
 * model's plans (block/checkpoint.c) with the dirty bitmap layer, the
 * validation of a node's chain against its bitmaps, and the guard that
 * keeps the bitmap commands away from checkpoint bitmaps.  Change sets
 * and queries live in checkpoint-query.c.
 *
 * How a plan runs (run_plan()):
 *  1. the chain after the plan is computed and must fit in the image;
 *  2. the bitmaps that will be merged are read (the only step that may
 *     fail for lack of memory or an I/O error, and it changes nothing);
 *  3. requests on the node are drained, so that every write is recorded
 *     by exactly one of the bitmaps that swap roles;
 *  4. the plan's operations run in memory: a new bitmap is created, the
 *     recording one switched, a merge done, a bitmap dropped from memory;
 *  5. the driver writes the new table together with the changed bitmaps
 *     in one update of the image metadata (ops->commit), so a crash leaves
 *     either the old or the new state on disk; a dropped bitmap leaves the
 *     bitmap directory in that same update (until then it is only made
 *     non-persistent, and released from memory after the commit);
 *  6. the drain ends, and frozen bitmaps are dropped from memory again.
 * If an operation of step 4 or the commit fails, every operation done is
 * undone in reverse order (CkptUndo): a new bitmap is released, a switch
 * reverted, a merge target gets its old contents back, a dropped bitmap
 * becomes persistent again.  The driver's commit puts its old chain back
 * itself, so the node is left exactly as before.
 */
#include "checkpoint-int.h"
#include "qapi/error.h"

#include <errno.h>
#include <string.h>
#include <time.h>

static bool check_support(BlockDriverState *bs, GError **errp)
{
    if (!ckpt_ops(bs)) {
        error_setg(errp, "Node '%s' (format %s) does not support "
                   "checkpoints; they need a qcow2 image",
                   bdrv_get_node_name(bs), bdrv_get_format_name(bs));
        return false;
    }
    return true;
}

bool bdrv_supports_checkpoints(BlockDriverState *bs)
{
    return ckpt_ops(bs) != NULL;
}

guint bdrv_checkpoint_validate(BlockDriverState *bs, CheckpointChain *chain)
{
    guint count = bdrv_dirty_bitmap_count_on_node(bs);
    g_autofree CkptBitmapState *st = g_new0(CkptBitmapState, MAX(count, 1));
    size_t n = 0;

    /* Only persistent bitmaps can be a checkpoint's. */
    for (BdrvDirtyBitmap *bm = bdrv_dirty_bitmap_first(bs); bm;
         bm = bdrv_dirty_bitmap_next(bm)) {
        if (!bdrv_dirty_bitmap_name(bm) || !bdrv_dirty_bitmap_persistent(bm)) {
            continue;
        }
        st[n].name = bdrv_dirty_bitmap_name(bm);
        st[n].granularity = bdrv_dirty_bitmap_granularity(bm);
        st[n].recording = bdrv_dirty_bitmap_recording(bm);
        st[n].inconsistent = bdrv_dirty_bitmap_inconsistent(bm);
        n++;
    }
    return ckpt_chain_validate_bitmaps(chain, st, n);
}

CheckpointChain *bdrv_checkpoint_chain(BlockDriverState *bs, GError **errp)
{
    CheckpointChain *chain;

    if (!check_support(bs, errp)) {
        return NULL;
    }
    chain = ckpt_ops(bs)->get_chain(bs, errp);
    if (chain) {
        bdrv_checkpoint_validate(bs, chain);
    }
    return chain;
}

/* ---- Bitmaps in and out of memory ---- */

BdrvDirtyBitmap *ckpt_load_bitmap(BlockDriverState *bs, const Checkpoint *c,
                                  GError **errp)
{
    BdrvDirtyBitmap *bm = bdrv_find_dirty_bitmap(bs, c->bitmap);
    g_autoptr(GError) err = NULL;

    if (!bm) {
        error_setg(errp, "Bitmap '%s' of checkpoint '%s' is missing",
                   c->bitmap, c->name);
        return NULL;
    }
    if (!bdrv_dirty_bitmap_load(bm, &err)) {
        error_setg(errp, "Cannot read bitmap '%s' of checkpoint '%s': %s",
                   c->bitmap, c->name, err->message);
        return NULL;
    }
    return bm;
}

void ckpt_unload_frozen(BlockDriverState *bs, const CheckpointChain *chain)
{
    for (guint i = 0; i < ckpt_chain_length(chain); i++) {
        const Checkpoint *c = ckpt_chain_nth(chain, i);
        BdrvDirtyBitmap *bm = bdrv_find_dirty_bitmap(bs, c->bitmap);

        if (bm && !bdrv_dirty_bitmap_recording(bm)) {
            bdrv_dirty_bitmap_unload(bm);
        }
    }
    /* Callers come here after their merges: their temporaries are gone too. */
    bdrv_release_free_memory();
}

/* ---- Running a plan ---- */

static BdrvDirtyBitmap *plan_bitmap(BlockDriverState *bs, const char *name,
                                    GError **errp)
{
    BdrvDirtyBitmap *bm = bdrv_find_dirty_bitmap(bs, name);

    if (!bm) {
        error_setg(errp, "Bitmap '%s' of node '%s' disappeared", name,
                   bdrv_get_node_name(bs));
    }
    return bm;
}

/* What one operation of a plan changed in memory, to undo it. */
typedef struct CkptUndo {
    CkptOpKind kind;
    BdrvDirtyBitmap *bm;
    bool was_recording;     /* DISABLE, ENABLE */
    HBitmap *backup;        /* MERGE: the target's contents before */
} CkptUndo;

/* One operation, in memory (requests drained); noted in @undo if done. */
static bool run_op(BlockDriverState *bs, const CkptOp *op, GArray *undo,
                   GError **errp)
{
    CkptUndo u = { .kind = op->kind };
    BdrvDirtyBitmap *src;

    if (op->kind == CKPT_OP_ADD) {
        u.bm = block_dirty_bitmap_add(bs, op->bitmap, op->granularity, true,
                                      false, errp);
        if (u.bm) {
            g_array_append_val(undo, u);
        }
        return u.bm != NULL;
    }
    u.bm = plan_bitmap(bs, op->bitmap, errp);
    if (!u.bm) {
        return false;
    }
    switch (op->kind) {
    case CKPT_OP_DISABLE:
    case CKPT_OP_ENABLE:
        if (!bdrv_dirty_bitmap_prepare_change(u.bm, errp)) {
            return false;
        }
        u.was_recording = bdrv_dirty_bitmap_recording(u.bm);
        if (op->kind == CKPT_OP_ENABLE) {
            bdrv_enable_dirty_bitmap(u.bm);
        } else {
            bdrv_disable_dirty_bitmap(u.bm);
        }
        break;
    case CKPT_OP_MERGE:
        src = plan_bitmap(bs, op->src, errp);
        if (!src || !bdrv_dirty_bitmap_prepare_change(u.bm, errp) ||
            !bdrv_merge_dirty_bitmap(u.bm, src, &u.backup, errp)) {
            return false;
        }
        break;
    case CKPT_OP_REMOVE:
        /*
         * Not yet from memory: the commit's directory update drops its
         * stored copy together with the new table, so that the image
         * never holds the new chain with the old parent bitmap.
         */
        bdrv_dirty_bitmap_set_persistence(u.bm, false);
        break;
    case CKPT_OP_ADD:
        g_assert_not_reached();
    }
    g_array_append_val(undo, u);
    return true;
}

/* The plan failed: put every bitmap back as it was, newest change first. */
static void undo_ops(GArray *undo)
{
    for (guint i = undo->len; i-- > 0;) {
        CkptUndo *u = &g_array_index(undo, CkptUndo, i);

        switch (u->kind) {
        case CKPT_OP_ADD:
            bdrv_release_dirty_bitmap(u->bm);
            break;
        case CKPT_OP_DISABLE:
        case CKPT_OP_ENABLE:
            if (u->was_recording) {
                bdrv_enable_dirty_bitmap(u->bm);
            } else {
                bdrv_disable_dirty_bitmap(u->bm);
            }
            break;
        case CKPT_OP_MERGE:
            bdrv_restore_dirty_bitmap(u->bm, g_steal_pointer(&u->backup));
            break;
        case CKPT_OP_REMOVE:
            bdrv_dirty_bitmap_set_persistence(u->bm, true);
            break;
        }
    }
}

/* The plan is committed: drop what only an undo would have needed. */
static void finish_ops(GArray *undo)
{
    for (guint i = 0; i < undo->len; i++) {
        CkptUndo *u = &g_array_index(undo, CkptUndo, i);

        if (u->kind == CKPT_OP_MERGE) {
            hbitmap_free(g_steal_pointer(&u->backup));
        } else if (u->kind == CKPT_OP_REMOVE) {
            bdrv_release_dirty_bitmap(u->bm);
        }
    }
}

/* Refuse plans touching a bitmap that something else holds. */
static bool check_plan_bitmaps(BlockDriverState *bs, const CkptPlan *plan,
                               GError **errp)
{
    for (guint i = 0; i < plan->n_ops; i++) {
        const CkptOp *op = &plan->ops[i];
        const char *names[2] = { op->bitmap, op->src };

        for (int k = 0; k < 2; k++) {
            BdrvDirtyBitmap *bm = names[k] ?
                bdrv_find_dirty_bitmap(bs, names[k]) : NULL;
            if (op->kind != CKPT_OP_ADD && bm && bdrv_dirty_bitmap_busy(bm)) {
                error_setg(errp, "Bitmap '%s' is currently in use by "
                           "another operation", names[k]);
                return false;
            }
        }
    }
    return true;
}

/* Step 2: read every bitmap a merge needs, before anything changes. */
static bool preload(BlockDriverState *bs, const CheckpointChain *chain,
                    const CkptPlan *plan, GError **errp)
{
    for (guint i = 0; i < plan->n_ops; i++) {
        const CkptOp *op = &plan->ops[i];
        const Checkpoint *c;

        if (op->kind != CKPT_OP_MERGE) {
            continue;
        }
        c = ckpt_chain_find_bitmap(chain, op->src);
        if (!c || !ckpt_load_bitmap(bs, c, errp)) {
            if (!c) {
                error_setg(errp, "Bitmap '%s' is no checkpoint's", op->src);
            }
            return false;
        }
    }
    return true;
}

static bool run_plan(BlockDriverState *bs, const CheckpointChain *chain,
                     const CkptPlan *plan, GError **errp)
{
    const BdrvCheckpointDriverOps *ops = ckpt_ops(bs);
    g_autoptr(CheckpointChain) next = ckpt_chain_copy(chain);
    g_autoptr(GArray) undo = g_array_new(FALSE, TRUE, sizeof(CkptUndo));
    bool ok = true;

    if (!ckpt_chain_apply(next, plan, errp) ||
        !ops->check_room(bs, next, errp) ||
        !check_plan_bitmaps(bs, plan, errp)) {
        return false;
    }
    if (!preload(bs, chain, plan, errp)) {
        ckpt_unload_frozen(bs, chain);
        return false;
    }
    bdrv_drained_begin(bs);
    for (guint i = 0; ok && i < plan->n_ops; i++) {
        ok = run_op(bs, &plan->ops[i], undo, errp);
    }
    if (ok && !ops->commit(bs, next, errp)) {
        g_prefix_error(errp, "Could not %s checkpoint '%s', nothing was "
                       "changed: ", plan->kind == CKPT_PLAN_CREATE ?
                       "create" : "remove", plan->checkpoint);
        ok = false;
    }
    if (ok) {
        finish_ops(undo);
    } else {
        undo_ops(undo);
    }
    bdrv_drained_end(bs);
    ckpt_unload_frozen(bs, ok ? next : chain);
    return ok;
}

static bool check_writable(BlockDriverState *bs, const char *what,
                           const char *name, GError **errp)
{
    if (bdrv_is_read_only(bs)) {
        error_setg(errp, "Cannot %s checkpoint '%s': node '%s' is "
                   "read-only", what, name, bdrv_get_node_name(bs));
        return false;
    }
    return true;
}

bool bdrv_checkpoint_create(BlockDriverState *bs, const char *name,
                            const char *bitmap, uint64_t granularity,
                            GError **errp)
{
    g_autoptr(CheckpointChain) chain = bdrv_checkpoint_chain(bs, errp);
    g_autoptr(CkptPlan) plan = NULL;
    struct timespec now = { 0 };

    if (!chain || !check_writable(bs, "create", name, errp)) {
        return false;
    }
    if (!granularity) {
        granularity = bdrv_get_default_bitmap_granularity(bs);
    }
    clock_gettime(CLOCK_REALTIME, &now);
    plan = ckpt_plan_create(chain, name, bitmap, granularity, now.tv_sec,
                            (uint32_t)now.tv_nsec, errp);
    if (!plan) {
        return false;
    }
    if (bdrv_find_dirty_bitmap(bs, plan->ops[0].bitmap)) {
        error_setg(errp, "Bitmap '%s' already exists on node '%s'",
                   plan->ops[0].bitmap, bdrv_get_node_name(bs));
        error_append_hint(errp, "Name the checkpoint's bitmap with "
                          "'bitmap', or remove the bitmap first");
        return false;
    }
    return run_plan(bs, chain, plan, errp);
}

/* The plan to remove @name, after every check that changes nothing. */
static CkptPlan *remove_plan(BlockDriverState *bs, CheckpointChain *chain,
                             const char *name, GError **errp)
{
    CkptPlan *plan;

    if (!check_writable(bs, "remove", name, errp)) {
        return NULL;
    }
    plan = ckpt_plan_remove(chain, name, errp);
    if (plan && !check_plan_bitmaps(bs, plan, errp)) {
        ckpt_plan_free(plan);
        return NULL;
    }
    return plan;
}

bool bdrv_checkpoint_remove(BlockDriverState *bs, const char *name,
                            GError **errp)
{
    g_autoptr(CheckpointChain) chain = bdrv_checkpoint_chain(bs, errp);
    g_autoptr(CkptPlan) plan = chain ? remove_plan(bs, chain, name, errp)
                                     : NULL;

    return plan && run_plan(bs, chain, plan, errp);
}

bool bdrv_checkpoint_check_remove(BlockDriverState *bs, const char *name,
                                  GError **errp)
{
    g_autoptr(CheckpointChain) chain = bdrv_checkpoint_chain(bs, errp);
    g_autoptr(CkptPlan) plan = chain ? remove_plan(bs, chain, name, errp)
                                     : NULL;
    g_autoptr(CheckpointChain) next = NULL;
    bool ok;

    if (!plan) {
        return false;
    }
    next = ckpt_chain_copy(chain);
    ok = ckpt_chain_apply(next, plan, errp) &&
         ckpt_ops(bs)->check_room(bs, next, errp) &&
         preload(bs, chain, plan, errp);
    ckpt_unload_frozen(bs, chain);
    return ok;
}

/* ---- The guard ---- */

bool bdrv_checkpoint_check_bitmap(BlockDriverState *bs, const char *bitmap,
                                  GError **errp)
{
    const BdrvCheckpointDriverOps *ops = ckpt_ops(bs);
    g_autoptr(CheckpointChain) chain = NULL;
    const Checkpoint *c;

    if (!ops) {
        return true;
    }
    /* An unusable table protects nothing: its bitmaps are plain ones. */
    chain = ops->get_chain(bs, NULL);
    c = chain ? ckpt_chain_find_bitmap(chain, bitmap) : NULL;
    if (!c) {
        return true;
    }
    error_setg(errp, "Bitmap '%s' belongs to checkpoint '%s' and cannot be "
               "changed, removed or exported directly; use "
               "block-checkpoint-remove to remove the checkpoint with its "
               "bitmap", bitmap, c->name);
    error_append_hint(errp, "Offline: qemu-img checkpoint -d %s FILE.  To "
                      "export what changed since it, use block-export-add "
                      "with \"checkpoints\"", c->name);
    return false;
}

const char *bdrv_checkpoint_damage_name(CkptDamage damage)
{
    static const char *const names[] = {
        [CKPT_DAMAGE_NONE] = "none",
        [CKPT_DAMAGE_MISSING] = "missing",
        [CKPT_DAMAGE_INCONSISTENT] = "inconsistent",
        [CKPT_DAMAGE_GRANULARITY] = "granularity",
        [CKPT_DAMAGE_STRAY_RECORDING] = "stray-recording",
        [CKPT_DAMAGE_NOT_RECORDING] = "not-recording",
        [CKPT_DAMAGE_INCOMPLETE] = "incomplete",
    };

    return (unsigned)damage <= CKPT_DAMAGE__MAX ? names[damage] : "unknown";
}
