/*
 * The checkpoint actions of QMP "transaction" (block-checkpoint-add and
 * block-checkpoint-remove).  Adding runs at prepare time and is undone
 * on abort by removing the new checkpoint again, which hands its writes
 * back to its parent; removing is checked at prepare time and runs at
 * commit, because a merged and deleted bitmap cannot be restored.
 */
#ifndef BLOCK_CHECKPOINT_ACTIONS_H
#define BLOCK_CHECKPOINT_ACTIONS_H

#include "block/transaction.h"
#include <json-glib/json-glib.h>

/* Whether @kind is a checkpoint action ("block-checkpoint-..."). */
bool checkpoint_action_kind(const char *kind);

/*
 * Queue the action @kind with arguments @data on @tran.  Returns false
 * for an unknown kind.
 */
bool checkpoint_action_add(Transaction *tran, const char *kind,
                           JsonObject *data, GError **errp);

#endif
