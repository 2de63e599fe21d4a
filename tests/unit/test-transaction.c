/* The transaction runner: all-or-nothing with reverse-order rollback. */
#include "block/transaction.h"
#include "qapi/error.h"

typedef struct {
    int *state;     /* shared "world" */
    int value;      /* what this action adds */
    bool fail;
    GString *log;
} Act;

static bool act_prepare(void *o, GError **errp)
{
    Act *a = o;
    if (a->fail) {
        error_setg(errp, "refused %d", a->value);
        return false;
    }
    *a->state += a->value;
    g_string_append_printf(a->log, "p%d ", a->value);
    return true;
}

static void act_commit(void *o)
{
    Act *a = o;
    g_string_append_printf(a->log, "c%d ", a->value);
}

static void act_abort(void *o)
{
    Act *a = o;
    if (!a->fail) {
        *a->state -= a->value;
    }
    g_string_append_printf(a->log, "a%d ", a->value);
}

static const TransactionActionDrv act_drv = {
    .prepare = act_prepare,
    .commit = act_commit,
    .abort = act_abort,
    .clean = g_free,
};

static Act *new_act(int *state, int v, bool fail, GString *log)
{
    Act *a = g_new0(Act, 1);
    a->state = state;
    a->value = v;
    a->fail = fail;
    a->log = log;
    return a;
}

static void test_all_commit(void)
{
    int state = 0;
    g_autoptr(GString) log = g_string_new(NULL);
    Transaction *t = tran_new();

    for (int i = 1; i <= 3; i++) {
        tran_add(t, &act_drv, new_act(&state, i, false, log), "add");
    }
    g_assert_true(tran_run(t, NULL));
    g_assert_cmpint(state, ==, 6);
    g_assert_cmpstr(log->str, ==, "p1 p2 p3 c1 c2 c3 ");
}

static void test_third_fails(void)
{
    int state = 0;
    g_autoptr(GString) log = g_string_new(NULL);
    g_autoptr(GError) err = NULL;
    Transaction *t = tran_new();

    tran_add(t, &act_drv, new_act(&state, 1, false, log), "one");
    tran_add(t, &act_drv, new_act(&state, 2, false, log), "two");
    tran_add(t, &act_drv, new_act(&state, 4, true, log), "three");
    tran_add(t, &act_drv, new_act(&state, 8, false, log), "four");
    g_assert_false(tran_run(t, &err));
    g_assert_cmpint(state, ==, 0);
    g_assert_cmpstr(log->str, ==, "p1 p2 a4 a2 a1 ");
    g_assert_cmpstr(err->message, ==, "Action 3 (three) failed: refused 4");
}

static void test_empty(void)
{
    g_assert_true(tran_run(tran_new(), NULL));
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/transaction/all-commit", test_all_commit);
    g_test_add_func("/transaction/third-fails", test_third_fails);
    g_test_add_func("/transaction/empty", test_empty);
    return g_test_run();
}
