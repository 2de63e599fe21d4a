/*
 * The BP_FAULT parser and the per-rule counting of util/fault.c: which
 * events fail, with what, and what the counters say afterwards.
 */
#include "util/fault.h"

#include <errno.h>
#include <stdlib.h>

static FaultConfig *parse_ok(const char *spec)
{
    g_autoptr(GError) err = NULL;
    FaultConfig *cfg = fault_config_parse(spec, &err);

    g_assert_no_error(err);
    g_assert_nonnull(cfg);
    fault_config_set_verbose(cfg, false);
    return cfg;
}

/* One event of @bytes at @offset; the errno (or 0) and the bytes left. */
static int ev(FaultConfig *cfg, FaultOp op, uint64_t offset, uint64_t *bytes)
{
    return fault_config_check(cfg, op, offset, bytes);
}

static int ev_write(FaultConfig *cfg, uint64_t offset)
{
    uint64_t n = 4096;
    int ret = ev(cfg, FAULT_OP_WRITE, offset, &n);

    g_assert_cmpuint(n, ==, 4096);
    return ret;
}

static void test_parse_valid(void)
{
    static const char *const specs[] = {
        "write:eio",
        "read:enospc:after=3",
        "write:short:count=inf",
        "flush:eio:count=2:after=1",
        "alloc:enospc:from=1M:to=2M",
        "truncate:eio:from=4096",
        "any:log",
        "write:eio, read:short ;flush:eio",
        "write:eio,",
        " write:eio:after=0x10 ",
    };

    for (size_t i = 0; i < G_N_ELEMENTS(specs); i++) {
        g_autoptr(FaultConfig) cfg = parse_ok(specs[i]);
        g_assert_cmpuint(fault_config_rules(cfg), >=, 1);
    }
    {
        g_autoptr(FaultConfig) cfg = parse_ok("write:eio,read:short;any:log");
        g_assert_cmpuint(fault_config_rules(cfg), ==, 3);
        g_assert_cmpuint(fault_config_events(cfg, 2), ==, 0);
        g_assert_cmpuint(fault_config_injected(cfg, 2), ==, 0);
    }
}

static void test_parse_invalid(void)
{
    static const char *const specs[] = {
        "",
        " , ;",
        "write",
        "write:",
        "write:boom",
        "bogus:eio",
        "WRITE:eio",
        "write:eio:after",
        "write:eio:after=",
        "write:eio:after=x",
        "write:eio:after=-1",
        "write:eio:count=0",
        "write:eio:count=infinite",
        "write:eio:from=1Q",
        "write:eio:from=2M:to=1M",
        "write:eio:from=1M:to=1M",
        "write:eio:colour=red",
        "flush:short",
        "alloc:short",
        "write:eio,read",
    };

    for (size_t i = 0; i < G_N_ELEMENTS(specs); i++) {
        g_autoptr(GError) err = NULL;
        FaultConfig *cfg = fault_config_parse(specs[i], &err);
        if (cfg) {
            g_error("'%s' was accepted", specs[i]);
        }
        g_assert_nonnull(err);
        g_assert_nonnull(err->message);
    }
}

static void test_parse_too_many(void)
{
    g_autoptr(GString) spec = g_string_new("write:log");
    g_autoptr(GError) err = NULL;
    FaultConfig *cfg;

    for (int i = 1; i < 16; i++) {
        g_string_append(spec, ",read:log");
    }
    cfg = fault_config_parse(spec->str, NULL);
    g_assert_nonnull(cfg);
    g_assert_cmpuint(fault_config_rules(cfg), ==, 16);
    fault_config_free(cfg);
    g_string_append(spec, ",flush:log");
    g_assert_null(fault_config_parse(spec->str, &err));
    g_assert_nonnull(err);
}

static void test_after_count(void)
{
    g_autoptr(FaultConfig) cfg = parse_ok("write:eio:after=3:count=2");

    for (int i = 0; i < 10; i++) {
        int ret = ev_write(cfg, i * 4096);
        g_assert_cmpint(ret, ==, (i == 3 || i == 4) ? -EIO : 0);
    }
    g_assert_cmpuint(fault_config_events(cfg, 0), ==, 10);
    g_assert_cmpuint(fault_config_injected(cfg, 0), ==, 2);
}

static void test_default_is_first_event(void)
{
    g_autoptr(FaultConfig) cfg = parse_ok("write:enospc");

    g_assert_cmpint(ev_write(cfg, 0), ==, -ENOSPC);
    g_assert_cmpint(ev_write(cfg, 0), ==, 0);
    g_assert_cmpint(ev_write(cfg, 0), ==, 0);
}

static void test_count_inf(void)
{
    g_autoptr(FaultConfig) cfg = parse_ok("write:eio:after=2:count=inf");

    for (int i = 0; i < 1000; i++) {
        g_assert_cmpint(ev_write(cfg, 0), ==, i < 2 ? 0 : -EIO);
    }
    g_assert_cmpuint(fault_config_injected(cfg, 0), ==, 998);
}

static void test_ops(void)
{
    g_autoptr(FaultConfig) cfg = parse_ok("flush:eio:after=1:count=inf");
    uint64_t n = 512;

    /* Other operations neither fail nor count. */
    g_assert_cmpint(ev(cfg, FAULT_OP_READ, 0, &n), ==, 0);
    g_assert_cmpint(ev(cfg, FAULT_OP_WRITE, 0, &n), ==, 0);
    g_assert_cmpint(ev(cfg, FAULT_OP_ALLOC, 0, &n), ==, 0);
    g_assert_cmpint(ev(cfg, FAULT_OP_TRUNCATE, 0, &n), ==, 0);
    g_assert_cmpuint(fault_config_events(cfg, 0), ==, 0);
    n = 0;
    g_assert_cmpint(ev(cfg, FAULT_OP_FLUSH, 0, &n), ==, 0);
    g_assert_cmpint(ev(cfg, FAULT_OP_FLUSH, 0, &n), ==, -EIO);
    g_assert_cmpint(ev(cfg, FAULT_OP_WRITE, 0, &n), ==, 0);
    g_assert_cmpuint(fault_config_events(cfg, 0), ==, 2);
}

static void test_any(void)
{
    g_autoptr(FaultConfig) cfg = parse_ok("any:eio:after=4");
    uint64_t n = 512;
    FaultOp ops[] = {FAULT_OP_READ, FAULT_OP_WRITE, FAULT_OP_FLUSH,
                     FAULT_OP_ALLOC, FAULT_OP_TRUNCATE, FAULT_OP_READ};

    for (size_t i = 0; i < G_N_ELEMENTS(ops); i++) {
        g_assert_cmpint(ev(cfg, ops[i], 0, &n), ==, i == 4 ? -EIO : 0);
    }
}

static void test_range(void)
{
    g_autoptr(FaultConfig) cfg = parse_ok("any:eio:from=4k:to=8k:count=inf");
    uint64_t n;

    n = 4096;
    g_assert_cmpint(ev(cfg, FAULT_OP_WRITE, 0, &n), ==, 0);
    n = 4097;
    g_assert_cmpint(ev(cfg, FAULT_OP_WRITE, 0, &n), ==, -EIO);
    n = 1;
    g_assert_cmpint(ev(cfg, FAULT_OP_READ, 8191, &n), ==, -EIO);
    g_assert_cmpint(ev(cfg, FAULT_OP_READ, 8192, &n), ==, 0);
    /* ftruncate to a length: a zero-length event at that offset. */
    n = 0;
    g_assert_cmpint(ev(cfg, FAULT_OP_TRUNCATE, 4096, &n), ==, -EIO);
    g_assert_cmpint(ev(cfg, FAULT_OP_TRUNCATE, 4095, &n), ==, 0);
    g_assert_cmpint(ev(cfg, FAULT_OP_TRUNCATE, 8192, &n), ==, 0);
    /* A flush has no range. */
    g_assert_cmpint(ev(cfg, FAULT_OP_FLUSH, 0, &n), ==, 0);
    g_assert_cmpuint(fault_config_events(cfg, 0), ==, 3);
    /* Overflowing ends are fine. */
    n = UINT64_MAX;
    g_assert_cmpint(ev(cfg, FAULT_OP_WRITE, 1, &n), ==, -EIO);
}

static void test_full_disk(void)
{
    /* Everything that reaches byte 1 MiB or later fails. */
    g_autoptr(FaultConfig) cfg = parse_ok("write:enospc:from=1M:count=inf");
    uint64_t n = 65536;

    g_assert_cmpint(ev(cfg, FAULT_OP_WRITE, 0, &n), ==, 0);
    g_assert_cmpint(ev(cfg, FAULT_OP_WRITE, 1048576 - 65536, &n), ==, 0);
    g_assert_cmpint(ev(cfg, FAULT_OP_WRITE, 1048576 - 512, &n), ==,
                    -ENOSPC);
    g_assert_cmpint(ev(cfg, FAULT_OP_WRITE, UINT64_C(1) << 40, &n), ==,
                    -ENOSPC);
}

static void check_short(FaultConfig *cfg, uint64_t offset, uint64_t bytes,
                        uint64_t expect)
{
    uint64_t n = bytes;

    g_assert_cmpint(ev(cfg, FAULT_OP_WRITE, offset, &n), ==, 0);
    g_assert_cmpuint(n, ==, expect);
}

static void test_short(void)
{
    g_autoptr(FaultConfig) cfg = parse_ok("write:short:count=inf");

    check_short(cfg, 0, 4096, 2048);
    check_short(cfg, 0, 1024, 512);
    check_short(cfg, 4096, 3 * 512, 512);
    /* The cut is a sector boundary of the file, not of the request. */
    check_short(cfg, 100, 1000, 412);
    check_short(cfg, 1000, 100, 24);
    /* Inside one sector: no boundary to stop at, the request is whole. */
    check_short(cfg, 0, 512, 512);
    check_short(cfg, 600, 300, 300);
    check_short(cfg, 12320, 8, 8);
    check_short(cfg, 0, 1, 1);
    g_assert_cmpuint(fault_config_events(cfg, 0), ==, 9);
    g_assert_cmpuint(fault_config_injected(cfg, 0), ==, 5);
}

static void test_short_reads_only(void)
{
    g_autoptr(FaultConfig) cfg = parse_ok("read:short:after=1:count=1");
    uint64_t n = 8192;

    g_assert_cmpint(ev(cfg, FAULT_OP_WRITE, 0, &n), ==, 0);
    g_assert_cmpuint(n, ==, 8192);
    g_assert_cmpint(ev(cfg, FAULT_OP_READ, 0, &n), ==, 0);
    g_assert_cmpuint(n, ==, 8192);
    g_assert_cmpint(ev(cfg, FAULT_OP_READ, 0, &n), ==, 0);
    g_assert_cmpuint(n, ==, 4096);
    n = 8192;
    g_assert_cmpint(ev(cfg, FAULT_OP_READ, 0, &n), ==, 0);
    g_assert_cmpuint(n, ==, 8192);
}

static void test_rules_combine(void)
{
    /* Each rule counts on its own; the first that fires decides. */
    g_autoptr(FaultConfig) cfg =
        parse_ok("write:eio:after=1,write:enospc:count=2,write:log");

    g_assert_cmpint(ev_write(cfg, 0), ==, -ENOSPC);
    g_assert_cmpint(ev_write(cfg, 0), ==, -EIO);
    g_assert_cmpint(ev_write(cfg, 0), ==, 0);
    for (unsigned i = 0; i < 3; i++) {
        g_assert_cmpuint(fault_config_events(cfg, i), ==, 3);
    }
    g_assert_cmpuint(fault_config_injected(cfg, 0), ==, 1);
    /* Its second event was decided by the first rule. */
    g_assert_cmpuint(fault_config_injected(cfg, 1), ==, 1);
    g_assert_cmpuint(fault_config_injected(cfg, 2), ==, 0);
}

static void test_short_then_error(void)
{
    /* What a filling disk does: part of the write, then ENOSPC. */
    g_autoptr(FaultConfig) cfg = parse_ok("write:short,write:enospc:after=1");
    uint64_t n = 65536;

    g_assert_cmpint(ev(cfg, FAULT_OP_WRITE, 0, &n), ==, 0);
    g_assert_cmpuint(n, ==, 32768);
    n = 32768;
    g_assert_cmpint(ev(cfg, FAULT_OP_WRITE, 32768, &n), ==, -ENOSPC);
}

static void test_log_never_fails(void)
{
    g_autoptr(FaultConfig) cfg = parse_ok("any:log");
    uint64_t n = 4096;

    for (int i = 0; i < 50; i++) {
        g_assert_cmpint(ev(cfg, (FaultOp)(i % FAULT_OP__MAX), i, &n), ==, 0);
        g_assert_cmpuint(n, ==, 4096);
    }
    g_assert_cmpuint(fault_config_events(cfg, 0), ==, 50);
    g_assert_cmpuint(fault_config_injected(cfg, 0), ==, 0);
}

#define THREADS 8
#define PER_THREAD 20000

static gpointer hammer(gpointer opaque)
{
    FaultConfig *cfg = opaque;
    gsize failed = 0;

    for (int i = 0; i < PER_THREAD; i++) {
        failed += ev_write(cfg, 0) == -EIO;
    }
    return GSIZE_TO_POINTER(failed);
}

static void test_threads(void)
{
    g_autoptr(FaultConfig) cfg = parse_ok("write:eio:after=1000:count=777");
    GThread *th[THREADS];
    gsize failed = 0;

    for (int i = 0; i < THREADS; i++) {
        th[i] = g_thread_new("hammer", hammer, cfg);
    }
    for (int i = 0; i < THREADS; i++) {
        failed += GPOINTER_TO_SIZE(g_thread_join(th[i]));
    }
    /* Exactly count failures, whatever the interleaving. */
    g_assert_cmpuint(failed, ==, 777);
    g_assert_cmpuint(fault_config_events(cfg, 0), ==, THREADS * PER_THREAD);
    g_assert_cmpuint(fault_config_injected(cfg, 0), ==, 777);
}

static void test_messages(void)
{
    if (g_test_subprocess()) {
        g_autoptr(FaultConfig) cfg =
            fault_config_parse("write:eio:after=1,read:log", NULL);
        uint64_t n = 512;

        ev(cfg, FAULT_OP_WRITE, 0, &n);
        ev(cfg, FAULT_OP_WRITE, 1024, &n);
        ev(cfg, FAULT_OP_READ, 4096, &n);
        fault_config_set_verbose(cfg, false);
        ev(cfg, FAULT_OP_WRITE, 2048, &n);
        ev(cfg, FAULT_OP_READ, 8192, &n);
        return;
    }
    g_test_trap_subprocess(NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
    g_test_trap_assert_passed();
    g_test_trap_assert_stderr("BP_FAULT: write #1 offset=1024 bytes=512: "
                              "injected EIO\n"
                              "BP_FAULT: read #0 offset=4096 bytes=512: "
                              "event\n");
}

static void test_unset(void)
{
    uint64_t n = 4096;

    /* The test runs without BP_FAULT: the hook lets everything through. */
    if (getenv("BP_FAULT")) {
        g_test_skip("BP_FAULT is set");
        return;
    }
    g_assert_null(fault_active);
    g_assert_false(fault_armed());
    g_assert_cmpint(fault_inject(FAULT_OP_WRITE, 0, &n), ==, 0);
    g_assert_cmpuint(n, ==, 4096);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/fault/parse/valid", test_parse_valid);
    g_test_add_func("/fault/parse/invalid", test_parse_invalid);
    g_test_add_func("/fault/parse/too-many", test_parse_too_many);
    g_test_add_func("/fault/count/after-count", test_after_count);
    g_test_add_func("/fault/count/default", test_default_is_first_event);
    g_test_add_func("/fault/count/inf", test_count_inf);
    g_test_add_func("/fault/match/ops", test_ops);
    g_test_add_func("/fault/match/any", test_any);
    g_test_add_func("/fault/match/range", test_range);
    g_test_add_func("/fault/match/full-disk", test_full_disk);
    g_test_add_func("/fault/short/lengths", test_short);
    g_test_add_func("/fault/short/reads-only", test_short_reads_only);
    g_test_add_func("/fault/short/then-error", test_short_then_error);
    g_test_add_func("/fault/rules/combine", test_rules_combine);
    g_test_add_func("/fault/rules/log", test_log_never_fails);
    g_test_add_func("/fault/threads", test_threads);
    g_test_add_func("/fault/messages", test_messages);
    g_test_add_func("/fault/unset", test_unset);
    return g_test_run();
}
