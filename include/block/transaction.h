/*
 * Atomic groups of actions (QMP "transaction"): every action is prepared in
 * order; if one fails, the prepared ones are aborted in reverse order and
 * nothing changes; otherwise all are committed.  Used for bitmap and
 * checkpoint actions.
 */
#ifndef BLOCK_TRANSACTION_H
#define BLOCK_TRANSACTION_H

#include <glib.h>
#include <stdbool.h>

typedef struct TransactionActionDrv {
    /* Check and stage the change; must be undoable by abort. */
    bool (*prepare)(void *opaque, GError **errp);
    /* Make the staged change final; cannot fail. */
    void (*commit)(void *opaque);
    /* Undo what prepare did. */
    void (*abort)(void *opaque);
    /* Release @opaque (after commit or abort). */
    void (*clean)(void *opaque);
} TransactionActionDrv;

typedef struct Transaction Transaction;

Transaction *tran_new(void);
/* Queue an action; @opaque is owned by the transaction (freed via clean). */
void tran_add(Transaction *tran, const TransactionActionDrv *drv,
              void *opaque, const char *description);
/*
 * Prepare all actions in order and commit them, or abort all and return
 * false.  The error names the failing action ("Action 2 (...) failed: ...").
 * Frees @tran.
 */
bool tran_run(Transaction *tran, GError **errp);
/* Drop a transaction without running it (cleans every action). */
void tran_free(Transaction *tran);

#endif
