/*
 * Transaction actions for checkpoints (include/block/checkpoint-actions.h).
 * Each action keeps its QMP arguments; the node is looked up at prepare.
 */
#include "block/checkpoint-actions.h"
#include "block/blockdev.h"
#include "block/checkpoint-ops.h"
#include "qapi/error.h"

#include <string.h>

#define KIND_ADD "block-checkpoint-add"
#define KIND_REMOVE "block-checkpoint-remove"

typedef struct {
    JsonObject *args;
    BlockDriverState *bs;
    char *pending;            /* remove: its key in pending_removals */
    bool prepared;
} CheckpointAction;

/*
 * Removals prepared by the running transaction, as "NODE\nNAME": the same
 * checkpoint cannot be removed twice in one transaction.  Main thread.
 */
static GHashTable *pending_removals;

static const char *arg_str(CheckpointAction *a, const char *key)
{
    return json_object_get_string_member_with_default(a->args, key, NULL);
}

static void remove_release(CheckpointAction *a);

static void action_clean(void *opaque)
{
    CheckpointAction *a = opaque;

    remove_release(a);
    json_object_unref(a->args);
    g_free(a);
}

/* --- add --------------------------------------------------------------- */

static bool add_prepare(void *opaque, GError **errp)
{
    CheckpointAction *a = opaque;

    a->bs = blockdev_lookup_node(arg_str(a, "node"), errp);
    if (!a->bs) {
        return false;
    }
    a->prepared = bdrv_checkpoint_create(
        a->bs, arg_str(a, "name"), arg_str(a, "bitmap"),
        json_object_get_int_member_with_default(a->args, "granularity", 0),
        errp);
    return a->prepared;
}

static void add_abort(void *opaque)
{
    CheckpointAction *a = opaque;
    g_autoptr(GError) err = NULL;

    /* The new checkpoint's writes go back to its parent: nothing lost. */
    if (a->prepared &&
        !bdrv_checkpoint_remove(a->bs, arg_str(a, "name"), &err)) {
        g_warning("undoing checkpoint '%s' after an aborted transaction: "
                  "%s", arg_str(a, "name"), err->message);
    }
}

static const TransactionActionDrv add_drv = {
    .prepare = add_prepare,
    .abort = add_abort,
    .clean = action_clean,
};

/* --- remove ------------------------------------------------------------ */

static bool remove_prepare(void *opaque, GError **errp)
{
    CheckpointAction *a = opaque;
    g_autofree char *key = NULL;

    a->bs = blockdev_lookup_node(arg_str(a, "node"), errp);
    if (!a->bs ||
        !bdrv_checkpoint_check_remove(a->bs, arg_str(a, "name"), errp)) {
        return false;
    }
    if (!pending_removals) {
        pending_removals = g_hash_table_new_full(g_str_hash, g_str_equal,
                                                 g_free, NULL);
    }
    key = g_strdup_printf("%s\n%s", bdrv_get_node_name(a->bs),
                          arg_str(a, "name"));
    if (g_hash_table_contains(pending_removals, key)) {
        error_setg(errp, "Checkpoint '%s' is removed twice",
                   arg_str(a, "name"));
        return false;
    }
    a->pending = g_steal_pointer(&key);
    g_hash_table_add(pending_removals, g_strdup(a->pending));
    a->prepared = true;
    return true;
}

static void remove_release(CheckpointAction *a)
{
    if (a->pending) {
        g_hash_table_remove(pending_removals, a->pending);
        g_clear_pointer(&a->pending, g_free);
    }
}

static void remove_commit(void *opaque)
{
    CheckpointAction *a = opaque;
    g_autoptr(GError) err = NULL;

    remove_release(a);
    if (!bdrv_checkpoint_remove(a->bs, arg_str(a, "name"), &err)) {
        g_warning("removing checkpoint '%s' after commit: %s",
                  arg_str(a, "name"), err->message);
    }
}

static void remove_abort(void *opaque)
{
    remove_release(opaque);
}

static const TransactionActionDrv remove_drv = {
    .prepare = remove_prepare,
    .commit = remove_commit,
    .abort = remove_abort,
    .clean = action_clean,
};

/* --- dispatch ---------------------------------------------------------- */

bool checkpoint_action_kind(const char *kind)
{
    return kind && g_str_has_prefix(kind, "block-checkpoint-");
}

bool checkpoint_action_add(Transaction *tran, const char *kind,
                           JsonObject *data, GError **errp)
{
    const TransactionActionDrv *drv = NULL;
    CheckpointAction *a;

    if (!g_strcmp0(kind, KIND_ADD)) {
        drv = &add_drv;
    } else if (!g_strcmp0(kind, KIND_REMOVE)) {
        drv = &remove_drv;
    } else {
        error_setg(errp, "Unknown transaction action '%s'", kind);
        return false;
    }
    a = g_new0(CheckpointAction, 1);
    a->args = json_object_ref(data);
    tran_add(tran, drv, a, kind);
    return true;
}
