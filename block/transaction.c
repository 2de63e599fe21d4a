/* Generic prepare/commit/abort runner with rollback on the first failure. */
#include "block/transaction.h"
#include "qapi/error.h"

typedef struct {
    const TransactionActionDrv *drv;
    void *opaque;
    char *description;
} TranAction;

struct Transaction {
    GPtrArray *actions; /* TranAction * */
};

static void tran_action_free(gpointer p)
{
    TranAction *a = p;

    if (a->drv->clean) {
        a->drv->clean(a->opaque);
    }
    g_free(a->description);
    g_free(a);
}

Transaction *tran_new(void)
{
    Transaction *t = g_new0(Transaction, 1);
    t->actions = g_ptr_array_new_with_free_func(tran_action_free);
    return t;
}

void tran_add(Transaction *tran, const TransactionActionDrv *drv,
              void *opaque, const char *description)
{
    TranAction *a = g_new0(TranAction, 1);

    a->drv = drv;
    a->opaque = opaque;
    a->description = g_strdup(description);
    g_ptr_array_add(tran->actions, a);
}

void tran_free(Transaction *tran)
{
    if (tran) {
        g_ptr_array_unref(tran->actions);
        g_free(tran);
    }
}

bool tran_run(Transaction *tran, GError **errp)
{
    guint prepared = 0;
    GError *local_err = NULL;

    for (; prepared < tran->actions->len; prepared++) {
        TranAction *a = tran->actions->pdata[prepared];
        if (!a->drv->prepare(a->opaque, &local_err)) {
            break;
        }
    }
    if (prepared < tran->actions->len) {
        TranAction *failed = tran->actions->pdata[prepared];
        /* The failing action undoes its own partial work, if any. */
        if (failed->drv->abort) {
            failed->drv->abort(failed->opaque);
        }
        for (guint i = prepared; i-- > 0;) {
            TranAction *a = tran->actions->pdata[i];
            if (a->drv->abort) {
                a->drv->abort(a->opaque);
            }
        }
        if (tran->actions->len > 1 && failed->description) {
            g_prefix_error(&local_err, "Action %u (%s) failed: ",
                           prepared + 1, failed->description);
        }
        g_propagate_error(errp, local_err);
        tran_free(tran);
        return false;
    }
    for (guint i = 0; i < tran->actions->len; i++) {
        TranAction *a = tran->actions->pdata[i];
        if (a->drv->commit) {
            a->drv->commit(a->opaque);
        }
    }
    tran_free(tran);
    return true;
}
