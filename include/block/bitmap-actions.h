/*
 * The dirty-bitmap actions of QMP "transaction" (and of the plain
 * block-dirty-bitmap-* commands, which run as one-action transactions):
 * each parses its QMP arguments and queues a prepare/commit/abort triple.
 */
#ifndef BLOCK_BITMAP_ACTIONS_H
#define BLOCK_BITMAP_ACTIONS_H

#include "block/transaction.h"
#include <json-glib/json-glib.h>

/*
 * Queue the action @kind ("block-dirty-bitmap-add", ...) with arguments
 * @data on @tran.  Returns false for an unknown kind.
 */
bool bitmap_action_add(Transaction *tran, const char *kind, JsonObject *data,
                       GError **errp);

#endif
