/*
 * The checkpoint chain model (include/block/checkpoint.h): an ordered list
 * of checkpoints, plans of bitmap operations for create and remove, the
 * change-set queries and the validation against the node's bitmaps.  No
 * I/O happens here; docs/interop/qcow2-checkpoints.rst has the rules.
 */
#include "block/checkpoint.h"
#include "qapi/error.h"

#include <inttypes.h>
#include <string.h>

struct CheckpointChain {
    GPtrArray *list;        /* Checkpoint *, oldest first */
    GHashTable *by_name;    /* name -> Checkpoint * (borrowed) */
    GHashTable *by_bitmap;  /* bitmap name -> Checkpoint * (borrowed) */
    uint64_t generation;    /* bumped by every change, to refuse old plans */
};

static void checkpoint_free(gpointer p)
{
    Checkpoint *c = p;

    g_free(c->name);
    g_free(c->bitmap);
    g_free(c->parent);
    g_free(c->damage_reason);
    g_free(c);
}

static Checkpoint *checkpoint_dup(const Checkpoint *src)
{
    Checkpoint *c = g_new0(Checkpoint, 1);

    *c = *src;
    c->name = g_strdup(src->name);
    c->bitmap = g_strdup(src->bitmap);
    c->parent = g_strdup(src->parent);
    c->damage_reason = g_strdup(src->damage_reason);
    return c;
}

CheckpointChain *ckpt_chain_new(void)
{
    CheckpointChain *chain = g_new0(CheckpointChain, 1);

    chain->list = g_ptr_array_new_with_free_func(checkpoint_free);
    chain->by_name = g_hash_table_new(g_str_hash, g_str_equal);
    chain->by_bitmap = g_hash_table_new(g_str_hash, g_str_equal);
    return chain;
}

void ckpt_chain_free(CheckpointChain *chain)
{
    if (!chain) {
        return;
    }
    g_hash_table_destroy(chain->by_name);
    g_hash_table_destroy(chain->by_bitmap);
    g_ptr_array_free(chain->list, TRUE);
    g_free(chain);
}

static void chain_push(CheckpointChain *chain, Checkpoint *c)
{
    g_ptr_array_add(chain->list, c);
    g_hash_table_insert(chain->by_name, c->name, c);
    g_hash_table_insert(chain->by_bitmap, c->bitmap, c);
}

CheckpointChain *ckpt_chain_copy(const CheckpointChain *chain)
{
    CheckpointChain *copy = ckpt_chain_new();

    for (guint i = 0; i < chain->list->len; i++) {
        chain_push(copy, checkpoint_dup(g_ptr_array_index(chain->list, i)));
    }
    copy->generation = chain->generation;
    return copy;
}

bool ckpt_chain_equal(const CheckpointChain *a, const CheckpointChain *b)
{
    if (a->list->len != b->list->len) {
        return false;
    }
    for (guint i = 0; i < a->list->len; i++) {
        const Checkpoint *x = g_ptr_array_index(a->list, i);
        const Checkpoint *y = g_ptr_array_index(b->list, i);

        if (strcmp(x->name, y->name) || strcmp(x->bitmap, y->bitmap) ||
            g_strcmp0(x->parent, y->parent) ||
            x->ctime_sec != y->ctime_sec || x->ctime_nsec != y->ctime_nsec ||
            x->granularity != y->granularity || x->damage != y->damage) {
            return false;
        }
    }
    return true;
}

guint ckpt_chain_length(const CheckpointChain *chain)
{
    return chain->list->len;
}

const Checkpoint *ckpt_chain_nth(const CheckpointChain *chain, guint index)
{
    if (index >= chain->list->len) {
        return NULL;
    }
    return g_ptr_array_index(chain->list, index);
}

const Checkpoint *ckpt_chain_head(const CheckpointChain *chain)
{
    if (chain->list->len == 0) {
        return NULL;
    }
    return g_ptr_array_index(chain->list, chain->list->len - 1);
}

const Checkpoint *ckpt_chain_find(const CheckpointChain *chain,
                                  const char *name)
{
    return g_hash_table_lookup(chain->by_name, name);
}

const Checkpoint *ckpt_chain_find_bitmap(const CheckpointChain *chain,
                                         const char *bitmap)
{
    return g_hash_table_lookup(chain->by_bitmap, bitmap);
}

int ckpt_chain_index(const CheckpointChain *chain, const char *name)
{
    const Checkpoint *c = ckpt_chain_find(chain, name);

    if (!c) {
        return -1;
    }
    for (guint i = 0; i < chain->list->len; i++) {
        if (g_ptr_array_index(chain->list, i) == c) {
            return (int)i;
        }
    }
    g_assert_not_reached();
}

bool ckpt_check_name(const char *what, const char *name, GError **errp)
{
    size_t len = name ? strlen(name) : 0;

    if (len == 0) {
        error_setg(errp, "%s name must not be empty", what);
        return false;
    }
    if (len > CKPT_NAME_MAX) {
        error_setg(errp, "%s name is %zu bytes long, the limit is %d",
                   what, len, CKPT_NAME_MAX);
        return false;
    }
    return true;
}

bool ckpt_check_granularity(uint64_t granularity, GError **errp)
{
    if (granularity < CKPT_MIN_GRANULARITY ||
        granularity > CKPT_MAX_GRANULARITY ||
        (granularity & (granularity - 1))) {
        error_setg(errp, "Granularity must be power of 2 between %" PRIu64
                   " and %" PRIu64, CKPT_MIN_GRANULARITY,
                   CKPT_MAX_GRANULARITY);
        return false;
    }
    return true;
}

/* The reason recorded for damage found in an earlier session. */
static char *damage_reason_stored(const Checkpoint *c)
{
    switch (c->damage) {
    case CKPT_DAMAGE_NONE:
        return NULL;
    case CKPT_DAMAGE_MISSING:
        return g_strdup_printf("bitmap '%s' was found missing", c->bitmap);
    case CKPT_DAMAGE_INCONSISTENT:
        return g_strdup_printf("bitmap '%s' was found inconsistent",
                               c->bitmap);
    case CKPT_DAMAGE_GRANULARITY:
        return g_strdup_printf("bitmap '%s' was found with a granularity "
                               "other than %" PRIu64, c->bitmap,
                               c->granularity);
    case CKPT_DAMAGE_STRAY_RECORDING:
        return g_strdup_printf("bitmap '%s' was found recording but "
                               "checkpoint '%s' was not the newest",
                               c->bitmap, c->name);
    case CKPT_DAMAGE_NOT_RECORDING:
        return g_strdup_printf("bitmap '%s' of the newest checkpoint '%s' "
                               "was found not recording", c->bitmap, c->name);
    case CKPT_DAMAGE_INCOMPLETE:
        return g_strdup_printf("bitmap '%s' lacks the writes of a removed "
                               "damaged checkpoint", c->bitmap);
    }
    return g_strdup_printf("bitmap '%s' is damaged (code %d)", c->bitmap,
                           (int)c->damage);
}

bool ckpt_chain_append(CheckpointChain *chain, const Checkpoint *c,
                       GError **errp)
{
    const Checkpoint *head = ckpt_chain_head(chain);
    Checkpoint *copy;

    if (!ckpt_check_name("Checkpoint", c->name, errp) ||
        !ckpt_check_name("Bitmap", c->bitmap, errp) ||
        !ckpt_check_granularity(c->granularity, errp)) {
        return false;
    }
    if (ckpt_chain_find(chain, c->name)) {
        error_setg(errp, "Checkpoint '%s' already exists", c->name);
        return false;
    }
    if (ckpt_chain_find_bitmap(chain, c->bitmap)) {
        error_setg(errp, "Bitmap '%s' already belongs to checkpoint '%s'",
                   c->bitmap, ckpt_chain_find_bitmap(chain, c->bitmap)->name);
        return false;
    }
    if (g_strcmp0(c->parent, head ? head->name : NULL)) {
        error_setg(errp, "Checkpoint '%s' has parent '%s', but the newest "
                   "checkpoint is '%s'", c->name,
                   c->parent ? c->parent : "(none)",
                   head ? head->name : "(none)");
        return false;
    }
    if (c->ctime_nsec >= 1000000000 || (int)c->damage < 0 ||
        c->damage > CKPT_DAMAGE__MAX) {
        error_setg(errp, "Checkpoint '%s' has an invalid creation time or "
                   "damage code", c->name);
        return false;
    }
    if (ckpt_chain_length(chain) >= CKPT_MAX_CHECKPOINTS) {
        error_setg(errp, "Too many checkpoints, the limit is %d",
                   CKPT_MAX_CHECKPOINTS);
        return false;
    }
    copy = checkpoint_dup(c);
    g_free(copy->damage_reason);
    copy->damage_reason = damage_reason_stored(copy);
    chain_push(chain, copy);
    chain->generation++;
    return true;
}

static bool check_entry(const CheckpointChain *chain, guint i,
                        GError **errp)
{
    const Checkpoint *c = g_ptr_array_index(chain->list, i);
    const Checkpoint *prev = i ? g_ptr_array_index(chain->list, i - 1) : NULL;

    if (!ckpt_check_name("Checkpoint", c->name, errp) ||
        !ckpt_check_name("Bitmap", c->bitmap, errp) ||
        !ckpt_check_granularity(c->granularity, errp)) {
        return false;
    }
    if (g_strcmp0(c->parent, prev ? prev->name : NULL)) {
        error_setg(errp, "checkpoint %u '%s': parent '%s' is not the "
                   "previous checkpoint", i, c->name,
                   c->parent ? c->parent : "(none)");
        return false;
    }
    if (ckpt_chain_find(chain, c->name) != c ||
        ckpt_chain_find_bitmap(chain, c->bitmap) != c) {
        error_setg(errp, "checkpoint %u '%s' is not indexed by its name and "
                   "bitmap (duplicate?)", i, c->name);
        return false;
    }
    if (c->ctime_nsec >= 1000000000) {
        error_setg(errp, "checkpoint %u '%s': nanoseconds %u out of range",
                   i, c->name, c->ctime_nsec);
        return false;
    }
    if ((int)c->damage < 0 || c->damage > CKPT_DAMAGE__MAX ||
        (c->damage == CKPT_DAMAGE_NONE) != (c->damage_reason == NULL)) {
        error_setg(errp, "checkpoint %u '%s': damage code %d does not match "
                   "its reason", i, c->name, (int)c->damage);
        return false;
    }
    return true;
}

bool ckpt_chain_check_invariants(const CheckpointChain *chain, GError **errp)
{
    guint n = chain->list->len;

    if (g_hash_table_size(chain->by_name) != n ||
        g_hash_table_size(chain->by_bitmap) != n) {
        error_setg(errp, "chain of %u checkpoints indexes %u names and %u "
                   "bitmaps", n, g_hash_table_size(chain->by_name),
                   g_hash_table_size(chain->by_bitmap));
        return false;
    }
    if (n > CKPT_MAX_CHECKPOINTS) {
        error_setg(errp, "chain has %u checkpoints, the limit is %d", n,
                   CKPT_MAX_CHECKPOINTS);
        return false;
    }
    for (guint i = 0; i < n; i++) {
        if (!check_entry(chain, i, errp)) {
            return false;
        }
    }
    return true;
}

/* ---- Plans ---- */

/*
 * May the plan enable or disable @c's bitmap?  Not when it is missing,
 * and not when it is inconsistent: such a bitmap can only be removed.
 */
static bool can_switch(const Checkpoint *c)
{
    return c->damage != CKPT_DAMAGE_MISSING &&
           c->damage != CKPT_DAMAGE_INCONSISTENT;
}

static void plan_add_op(CkptPlan *plan, CkptOpKind kind, const char *bitmap,
                        const char *src, uint64_t granularity)
{
    CkptOp *op;

    plan->ops = g_renew(CkptOp, plan->ops, plan->n_ops + 1);
    op = &plan->ops[plan->n_ops++];
    op->kind = kind;
    op->bitmap = g_strdup(bitmap);
    op->src = g_strdup(src);
    op->granularity = granularity;
}

void ckpt_plan_free(CkptPlan *plan)
{
    if (!plan) {
        return;
    }
    for (guint i = 0; i < plan->n_ops; i++) {
        g_free(plan->ops[i].bitmap);
        g_free(plan->ops[i].src);
    }
    g_free(plan->ops);
    g_free(plan->checkpoint);
    g_free(plan->created.name);
    g_free(plan->created.bitmap);
    g_free(plan->created.parent);
    g_free(plan->created.damage_reason);
    g_free(plan);
}

char *ckpt_plan_describe(const CkptPlan *plan)
{
    GString *s = g_string_new(NULL);

    for (guint i = 0; i < plan->n_ops; i++) {
        const CkptOp *op = &plan->ops[i];

        if (i) {
            g_string_append(s, "; ");
        }
        switch (op->kind) {
        case CKPT_OP_ADD:
            g_string_append_printf(s, "add '%s' (granularity %" PRIu64 ")",
                                   op->bitmap, op->granularity);
            break;
        case CKPT_OP_DISABLE:
            g_string_append_printf(s, "disable '%s'", op->bitmap);
            break;
        case CKPT_OP_ENABLE:
            g_string_append_printf(s, "enable '%s'", op->bitmap);
            break;
        case CKPT_OP_MERGE:
            g_string_append_printf(s, "merge '%s' into '%s'", op->src,
                                   op->bitmap);
            break;
        case CKPT_OP_REMOVE:
            g_string_append_printf(s, "remove '%s'", op->bitmap);
            break;
        }
    }
    return g_string_free(s, FALSE);
}

CkptPlan *ckpt_plan_create(const CheckpointChain *chain, const char *name,
                           const char *bitmap, uint64_t granularity,
                           int64_t now_sec, uint32_t now_nsec,
                           GError **errp)
{
    const Checkpoint *head = ckpt_chain_head(chain);
    const Checkpoint *owner;
    CkptPlan *plan;

    if (!bitmap) {
        bitmap = name;
    }
    if (!ckpt_check_name("Checkpoint", name, errp) ||
        !ckpt_check_name("Bitmap", bitmap, errp) ||
        !ckpt_check_granularity(granularity, errp)) {
        return NULL;
    }
    if (now_nsec >= 1000000000) {
        error_setg(errp, "Creation time nanoseconds %u out of range",
                   now_nsec);
        return NULL;
    }
    if (ckpt_chain_find(chain, name)) {
        error_setg(errp, "Checkpoint '%s' already exists", name);
        return NULL;
    }
    owner = ckpt_chain_find_bitmap(chain, bitmap);
    if (owner) {
        error_setg(errp, "Bitmap '%s' already belongs to checkpoint '%s'",
                   bitmap, owner->name);
        return NULL;
    }
    if (ckpt_chain_length(chain) >= CKPT_MAX_CHECKPOINTS) {
        error_setg(errp, "Too many checkpoints, the limit is %d",
                   CKPT_MAX_CHECKPOINTS);
        return NULL;
    }

    plan = g_new0(CkptPlan, 1);
    plan->kind = CKPT_PLAN_CREATE;
    plan->checkpoint = g_strdup(name);
    plan->generation = chain->generation;
    plan->quiesce = true;
    plan->created.name = g_strdup(name);
    plan->created.bitmap = g_strdup(bitmap);
    plan->created.parent = g_strdup(head ? head->name : NULL);
    plan->created.ctime_sec = now_sec;
    plan->created.ctime_nsec = now_nsec;
    plan->created.granularity = granularity;

    /* The fallible step first: if it fails nothing has changed. */
    plan_add_op(plan, CKPT_OP_ADD, bitmap, NULL, granularity);
    if (head && can_switch(head)) {
        plan_add_op(plan, CKPT_OP_DISABLE, head->bitmap, NULL, 0);
    }
    return plan;
}

CkptPlan *ckpt_plan_remove(const CheckpointChain *chain, const char *name,
                           GError **errp)
{
    int idx = ckpt_chain_index(chain, name);
    const Checkpoint *c, *parent;
    bool is_head, merge;
    CkptPlan *plan;

    if (idx < 0) {
        error_setg(errp, "Checkpoint '%s' not found", name);
        return NULL;
    }
    c = ckpt_chain_nth(chain, idx);
    parent = idx > 0 ? ckpt_chain_nth(chain, idx - 1) : NULL;
    is_head = (guint)idx + 1 == ckpt_chain_length(chain);

    plan = g_new0(CkptPlan, 1);
    plan->kind = CKPT_PLAN_REMOVE;
    plan->checkpoint = g_strdup(name);
    plan->generation = chain->generation;
    plan->quiesce = is_head;

    /*
     * The parent's bitmap must take over C's writes.  A damaged bitmap on
     * either side cannot make an exact union, so then the parent is
     * marked instead (it was unusable already, since C is in its range).
     */
    merge = parent && c->damage == CKPT_DAMAGE_NONE &&
            parent->damage == CKPT_DAMAGE_NONE;
    plan->parent_incomplete = parent && !merge;
    if (merge) {
        plan_add_op(plan, CKPT_OP_MERGE, parent->bitmap, c->bitmap, 0);
    }
    if (parent && is_head && can_switch(parent)) {
        plan_add_op(plan, CKPT_OP_ENABLE, parent->bitmap, NULL, 0);
    }
    if (c->damage != CKPT_DAMAGE_MISSING) {
        plan_add_op(plan, CKPT_OP_REMOVE, c->bitmap, NULL, 0);
    }
    return plan;
}

static bool apply_remove(CheckpointChain *chain, const CkptPlan *plan,
                         GError **errp)
{
    int idx = ckpt_chain_index(chain, plan->checkpoint);
    Checkpoint *c, *parent, *child;

    if (idx < 0) {
        error_setg(errp, "Checkpoint '%s' not found", plan->checkpoint);
        return false;
    }
    c = g_ptr_array_index(chain->list, idx);
    parent = idx > 0 ? g_ptr_array_index(chain->list, idx - 1) : NULL;
    child = (guint)idx + 1 < chain->list->len ?
            g_ptr_array_index(chain->list, idx + 1) : NULL;

    if (parent && plan->parent_incomplete &&
        parent->damage == CKPT_DAMAGE_NONE) {
        parent->damage = CKPT_DAMAGE_INCOMPLETE;
        parent->damage_reason =
            g_strdup_printf("bitmap '%s' lacks the writes of removed "
                            "damaged checkpoint '%s'", parent->bitmap,
                            c->name);
    }
    if (child) {
        g_free(child->parent);
        child->parent = g_strdup(parent ? parent->name : NULL);
    }
    g_hash_table_remove(chain->by_name, c->name);
    g_hash_table_remove(chain->by_bitmap, c->bitmap);
    g_ptr_array_remove_index(chain->list, idx);
    return true;
}

bool ckpt_chain_apply(CheckpointChain *chain, const CkptPlan *plan,
                      GError **errp)
{
    if (plan->generation != chain->generation) {
        error_setg(errp, "The checkpoints changed while checkpoint '%s' "
                   "was being %s", plan->checkpoint,
                   plan->kind == CKPT_PLAN_CREATE ? "created" : "removed");
        return false;
    }
    if (plan->kind == CKPT_PLAN_CREATE) {
        if (!ckpt_chain_append(chain, &plan->created, errp)) {
            return false;
        }
        /* ckpt_chain_append() bumped the generation already. */
        return true;
    }
    if (!apply_remove(chain, plan, errp)) {
        return false;
    }
    chain->generation++;
    return true;
}

/* ---- Queries ---- */

const char *ckpt_chain_unusable_reason(const CheckpointChain *chain,
                                       guint index)
{
    for (guint i = index; i < chain->list->len; i++) {
        const Checkpoint *c = g_ptr_array_index(chain->list, i);

        if (c->damage != CKPT_DAMAGE_NONE) {
            return c->damage_reason;
        }
    }
    return NULL;
}

const char **ckpt_chain_unusable_reasons(const CheckpointChain *chain)
{
    guint n = chain->list->len;
    const char **reasons = g_new0(const char *, n + 1);
    const char *nearest = NULL;

    for (guint i = n; i-- > 0;) {
        const Checkpoint *c = g_ptr_array_index(chain->list, i);

        if (c->damage != CKPT_DAMAGE_NONE) {
            nearest = c->damage_reason;
        }
        reasons[i] = nearest;
    }
    return reasons;
}

/* Bitmap names of checkpoints [from, to), or NULL if one is damaged. */
static char **range_bitmaps(const CheckpointChain *chain, const char *name,
                            guint from, guint to, GError **errp)
{
    g_autoptr(GPtrArray) names = g_ptr_array_new_with_free_func(g_free);

    for (guint i = from; i < to; i++) {
        const Checkpoint *c = g_ptr_array_index(chain->list, i);

        if (c->damage != CKPT_DAMAGE_NONE) {
            if (i == from) {
                error_setg(errp, "Checkpoint '%s' is unusable: %s", name,
                           c->damage_reason);
            } else {
                error_setg(errp, "Checkpoint '%s' is unusable: newer "
                           "checkpoint '%s' is damaged: %s", name, c->name,
                           c->damage_reason);
            }
            error_append_hint(errp, "Remove the damaged checkpoints and "
                              "take a full backup");
            return NULL;
        }
        g_ptr_array_add(names, g_strdup(c->bitmap));
    }
    g_ptr_array_add(names, NULL);
    return (char **)g_ptr_array_free(g_steal_pointer(&names), FALSE);
}

char **ckpt_changed_since(const CheckpointChain *chain, const char *name,
                          GError **errp)
{
    int idx = ckpt_chain_index(chain, name);

    if (idx < 0) {
        error_setg(errp, "Checkpoint '%s' not found", name);
        return NULL;
    }
    return range_bitmaps(chain, name, idx, chain->list->len, errp);
}

char **ckpt_changed_between(const CheckpointChain *chain, const char *older,
                            const char *newer, GError **errp)
{
    int from = ckpt_chain_index(chain, older);
    int to = ckpt_chain_index(chain, newer);

    if (from < 0 || to < 0) {
        error_setg(errp, "Checkpoint '%s' not found", from < 0 ? older : newer);
        return NULL;
    }
    if (from > to) {
        error_setg(errp, "Checkpoint '%s' is newer than checkpoint '%s'",
                   older, newer);
        return NULL;
    }
    return range_bitmaps(chain, older, from, to, errp);
}

/* ---- Validation ---- */

/* Why @bm cannot be @c's bitmap now, or NULL. */
static char *bitmap_problem(const Checkpoint *c, bool is_head,
                            const CkptBitmapState *bm, CkptDamage *damage)
{
    if (!bm) {
        *damage = CKPT_DAMAGE_MISSING;
        return g_strdup_printf("bitmap '%s' is missing", c->bitmap);
    }
    if (bm->inconsistent) {
        *damage = CKPT_DAMAGE_INCONSISTENT;
        return g_strdup_printf("bitmap '%s' is inconsistent", c->bitmap);
    }
    if (bm->granularity != c->granularity) {
        *damage = CKPT_DAMAGE_GRANULARITY;
        return g_strdup_printf("bitmap '%s' has granularity %" PRIu64
                               ", expected %" PRIu64, c->bitmap,
                               bm->granularity, c->granularity);
    }
    if (bm->recording && !is_head) {
        *damage = CKPT_DAMAGE_STRAY_RECORDING;
        return g_strdup_printf("bitmap '%s' is recording but checkpoint "
                               "'%s' is not the newest", c->bitmap, c->name);
    }
    if (!bm->recording && is_head) {
        *damage = CKPT_DAMAGE_NOT_RECORDING;
        return g_strdup_printf("bitmap '%s' of the newest checkpoint '%s' "
                               "is not recording", c->bitmap, c->name);
    }
    return NULL;
}

guint ckpt_chain_validate_bitmaps(CheckpointChain *chain,
                                  const CkptBitmapState *bitmaps, size_t n)
{
    g_autoptr(GHashTable) found = g_hash_table_new(g_str_hash, g_str_equal);
    guint len = chain->list->len;
    guint unusable = 0;
    bool damaged_after = false;
    bool changed = false;

    for (size_t i = 0; i < n; i++) {
        g_hash_table_insert(found, (gpointer)bitmaps[i].name,
                            (gpointer)&bitmaps[i]);
    }
    /* Newest first, so that damage counts for every older checkpoint. */
    for (guint i = len; i-- > 0;) {
        Checkpoint *c = g_ptr_array_index(chain->list, i);
        CkptDamage damage = CKPT_DAMAGE_NONE;
        char *why = bitmap_problem(c, i + 1 == len,
                                   g_hash_table_lookup(found, c->bitmap),
                                   &damage);

        if (why) {
            changed |= c->damage != damage;
            g_free(c->damage_reason);
            c->damage_reason = why;
            c->damage = damage;
        }
        damaged_after |= c->damage != CKPT_DAMAGE_NONE;
        unusable += damaged_after;
    }
    if (changed) {
        /* Plans made before this may merge a bitmap now known damaged. */
        chain->generation++;
    }
    return unusable;
}
