/*
 * Checkpoint chain model: the pure, I/O-free part of first-class
 * checkpoints.  Semantics and the on-disk table: docs/interop/
 * qcow2-checkpoints.rst.
 *
 * A node's checkpoints form one linear chain, oldest first.  Each one owns
 * a persistent dirty bitmap.  The bitmap of checkpoint C holds the writes
 * made between C's creation and the creation of C's child; only the
 * newest checkpoint's bitmap records.  "Changed since C" is the union of
 * the bitmaps from C to the newest, so a write costs one bitmap update no
 * matter how many checkpoints exist.
 *
 * This module never touches a bitmap.  Operations return a *plan*: the
 * bitmap operations the caller must perform (CkptOp), in order.  When all
 * of them succeeded the caller applies the plan to the chain with
 * ckpt_chain_apply().  The chain can be copied, so a caller can apply a
 * plan to a copy first, encode the new table and make sure it fits before
 * touching any bitmap.
 *
 * Damage.  ckpt_chain_validate_bitmaps() compares the chain with the
 * bitmaps the node really has.  A checkpoint whose bitmap is missing,
 * inconsistent or altered is marked *damaged*; damage is sticky (it is
 * stored in the table and survives later validations that no longer see
 * the problem) and is removed only with the checkpoint.  A checkpoint is
 * usable when no checkpoint from it to the newest is damaged: a change set
 * is either exact or refused, never partial.
 *
 * A chain is a plain data structure with no lock: the node's owner uses
 * it from the main thread only.
 */
#ifndef BLOCK_CHECKPOINT_H
#define BLOCK_CHECKPOINT_H

#include <glib.h>
#include <stdbool.h>
#include <stdint.h>

/* Names follow the bitmap naming rules: 1..1023 bytes, no NUL. */
#define CKPT_NAME_MAX 1023
/* Bitmap granularity limits (a power of two), as for dirty bitmaps. */
#define CKPT_MIN_GRANULARITY ((uint64_t)512)
#define CKPT_MAX_GRANULARITY ((uint64_t)1 << 31)
/* More checkpoints than bitmaps a node may have make no sense. */
#define CKPT_MAX_CHECKPOINTS 65535

/*
 * Why a checkpoint's bitmap cannot be trusted.  The values are stored in
 * the checkpoint table (docs/interop/qcow2-checkpoints.rst, "Damage
 * codes"): do not renumber.
 */
typedef enum CkptDamage {
    CKPT_DAMAGE_NONE = 0,
    CKPT_DAMAGE_MISSING = 1,         /* the bitmap does not exist */
    CKPT_DAMAGE_INCONSISTENT = 2,    /* in-use after a crash, unreadable */
    CKPT_DAMAGE_GRANULARITY = 3,     /* not the granularity it was made with */
    CKPT_DAMAGE_STRAY_RECORDING = 4, /* recording, but not the newest */
    CKPT_DAMAGE_NOT_RECORDING = 5,   /* the newest's bitmap does not record */
    CKPT_DAMAGE_INCOMPLETE = 6,      /* lost a removed damaged child's writes */
} CkptDamage;
#define CKPT_DAMAGE__MAX CKPT_DAMAGE_INCOMPLETE

/*
 * One checkpoint.  Read-only for users: the chain owns it, and every
 * change goes through a plan.
 */
typedef struct Checkpoint {
    char *name;
    char *bitmap;          /* its bitmap's name, never NULL */
    char *parent;          /* the next older checkpoint, NULL for the oldest */
    int64_t ctime_sec;     /* creation time, seconds since the Unix epoch */
    uint32_t ctime_nsec;   /* and nanoseconds, < 1000000000 */
    uint64_t granularity;  /* of its bitmap, in bytes */
    CkptDamage damage;     /* sticky; CKPT_DAMAGE_NONE when sound */
    char *damage_reason;   /* one line naming the bitmap; NULL iff sound */
} Checkpoint;

typedef struct CheckpointChain CheckpointChain;

CheckpointChain *ckpt_chain_new(void);
void ckpt_chain_free(CheckpointChain *chain);
/* A deep copy; plans made for @chain also apply to the copy. */
CheckpointChain *ckpt_chain_copy(const CheckpointChain *chain);
/* Same checkpoints with the same stored fields (not comparing reasons). */
bool ckpt_chain_equal(const CheckpointChain *a, const CheckpointChain *b);

guint ckpt_chain_length(const CheckpointChain *chain);
/* @index 0 is the oldest, length - 1 the newest. */
const Checkpoint *ckpt_chain_nth(const CheckpointChain *chain, guint index);
const Checkpoint *ckpt_chain_head(const CheckpointChain *chain);
const Checkpoint *ckpt_chain_find(const CheckpointChain *chain,
                                  const char *name);
/* The checkpoint owning bitmap @bitmap, or NULL. */
const Checkpoint *ckpt_chain_find_bitmap(const CheckpointChain *chain,
                                         const char *bitmap);
/* Position of checkpoint @name (0 = oldest), or -1. */
int ckpt_chain_index(const CheckpointChain *chain, const char *name);

/*
 * Add a checkpoint as the new newest, for loaders (the table decoder).
 * @c->parent must name the current newest (NULL on an empty chain); its
 * damage_reason is ignored and a generic one made from @c->damage.
 */
bool ckpt_chain_append(CheckpointChain *chain, const Checkpoint *c,
                       GError **errp);

/* Every structural invariant; for tests and debug builds. */
bool ckpt_chain_check_invariants(const CheckpointChain *chain, GError **errp);

/*
 * Does @name follow the naming rules?  @what ("Checkpoint", "Bitmap")
 * starts the error message.
 */
bool ckpt_check_name(const char *what, const char *name, GError **errp);
bool ckpt_check_granularity(uint64_t granularity, GError **errp);

/* ---- Plans ---- */

typedef enum CkptOpKind {
    CKPT_OP_ADD,      /* create persistent bitmap @bitmap, recording */
    CKPT_OP_DISABLE,  /* make @bitmap stop recording */
    CKPT_OP_ENABLE,   /* make @bitmap record */
    CKPT_OP_MERGE,    /* OR bitmap @src into @bitmap */
    CKPT_OP_REMOVE,   /* delete @bitmap and its stored copy */
} CkptOpKind;

typedef struct CkptOp {
    CkptOpKind kind;
    char *bitmap;
    char *src;              /* CKPT_OP_MERGE only */
    uint64_t granularity;   /* CKPT_OP_ADD only */
} CkptOp;

typedef enum CkptPlanKind {
    CKPT_PLAN_CREATE,
    CKPT_PLAN_REMOVE,
} CkptPlanKind;

/*
 * What to do to the node's bitmaps, in order.
 *
 * @quiesce: no guest write may land between the first and the last op
 * (run them in one drained section).  Set when the recording bitmap
 * changes, so that every write is recorded by exactly the right bitmap.
 *
 * Failure handling: the fallible op comes first in a create plan (ADD;
 * on failure nothing changed).  A remove plan is idempotent - merging
 * twice or enabling twice is harmless - so after a failure part-way it
 * can be made again and rerun; until then the parent's bitmap may hold
 * more than its interval, which over-reports but never under-reports.
 */
typedef struct CkptPlan {
    CkptPlanKind kind;
    char *checkpoint;       /* the checkpoint created or removed */
    CkptOp *ops;
    guint n_ops;
    bool quiesce;

    /* Private to block/checkpoint.c. */
    uint64_t generation;    /* of the chain the plan was made for */
    Checkpoint created;     /* CREATE: the new entry */
    bool parent_incomplete; /* REMOVE: the parent loses writes */
} CkptPlan;

void ckpt_plan_free(CkptPlan *plan);
/* "add 'b' (granularity 65536); disable 'a'" - for logs and tests. */
char *ckpt_plan_describe(const CkptPlan *plan);

/*
 * Plan a new newest checkpoint @name with bitmap @bitmap (NULL: same as
 * @name) of @granularity bytes, created at @now_sec/@now_nsec.
 * Ops: ADD the new bitmap (recording), then DISABLE the old newest's
 * (unless it is missing or inconsistent).
 */
CkptPlan *ckpt_plan_create(const CheckpointChain *chain, const char *name,
                           const char *bitmap, uint64_t granularity,
                           int64_t now_sec, uint32_t now_nsec,
                           GError **errp);

/*
 * Plan the removal of checkpoint @name.  Ops: MERGE its bitmap into its
 * parent's (if it has a parent), ENABLE the parent's bitmap (if @name is
 * the newest), REMOVE its bitmap.  Its child is re-linked to its parent.
 * If @name or its parent is damaged, nothing is merged (a damaged bitmap
 * would not make an exact union) and the parent becomes damaged too
 * (CKPT_DAMAGE_INCOMPLETE) unless it already is.  No op touches a
 * missing bitmap, and an inconsistent one is only removed.
 */
CkptPlan *ckpt_plan_remove(const CheckpointChain *chain, const char *name,
                           GError **errp);

/*
 * Record in @chain that every op of @plan succeeded.  Fails (changing
 * nothing) if @chain changed since the plan was made.
 */
bool ckpt_chain_apply(CheckpointChain *chain, const CkptPlan *plan,
                      GError **errp);

/* ---- Queries ---- */

/*
 * The bitmaps whose union is "changed since @name" (from @name to the
 * newest, oldest first), as a NULL-terminated vector (g_strfreev).
 * Fails if @name does not exist or is unusable.
 */
char **ckpt_changed_since(const CheckpointChain *chain, const char *name,
                          GError **errp);

/*
 * The bitmaps whose union is "changed between @older and @newer": from
 * @older up to, not including, @newer.  Equal names give an empty
 * vector.  Fails if @older is newer than @newer, or a bitmap in the
 * range is damaged.
 */
char **ckpt_changed_between(const CheckpointChain *chain, const char *older,
                            const char *newer, GError **errp);

/*
 * NULL if checkpoint @index is usable, else why not: the reason of the
 * nearest damaged checkpoint at or after it.  Valid until @chain changes.
 */
const char *ckpt_chain_unusable_reason(const CheckpointChain *chain,
                                       guint index);

/*
 * The same for every checkpoint at once, in O(n): a new array (g_free) of
 * ckpt_chain_length() borrowed reasons, NULL for usable checkpoints.
 */
const char **ckpt_chain_unusable_reasons(const CheckpointChain *chain);

/* ---- Validation against the node's bitmaps ---- */

/* What the bitmap layer says about one bitmap of the node. */
typedef struct CkptBitmapState {
    const char *name;
    uint64_t granularity;
    bool recording;      /* enabled (qcow2: the "auto" flag) */
    bool inconsistent;   /* in-use after a crash, or unreadable */
} CkptBitmapState;

/*
 * Compare @chain with the @n bitmaps the node has (a bitmap not listed is
 * missing) and mark each checkpoint whose bitmap is missing, inconsistent,
 * of another granularity, recording while not the newest, or not
 * recording while the newest.  A fresh finding replaces an older reason;
 * earlier damage is kept.  Returns how many checkpoints are unusable.
 * Call it when the node is opened, not while a plan is being carried out.
 */
guint ckpt_chain_validate_bitmaps(CheckpointChain *chain,
                                  const CkptBitmapState *bitmaps, size_t n);

G_DEFINE_AUTOPTR_CLEANUP_FUNC(CheckpointChain, ckpt_chain_free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC(CkptPlan, ckpt_plan_free)

#endif
