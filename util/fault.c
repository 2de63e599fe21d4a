/*
 * Host I/O fault injection for tests: the BP_FAULT parser, the per-rule
 * event counters and the decision for one event.  The syntax is described
 * in include/util/fault.h and docs/devel/testing.md.
 *
 * The only process-wide state is fault_active, set once by a constructor
 * before main() (no thread exists yet) and never changed; the counters of
 * a configuration are atomics, so I/O threads may share it freely.
 */
#include "util/fault.h"
#include "util/cutils.h"
#include "qapi/error.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* More rules than a test needs; a longer list is a typo, not a plan. */
#define FAULT_MAX_RULES 16
/* Short transfers end on a boundary of this many bytes. */
#define FAULT_SECTOR 512

typedef enum {
    FAULT_ACT_EIO,
    FAULT_ACT_ENOSPC,
    FAULT_ACT_SHORT,
    FAULT_ACT_LOG,
    FAULT_ACT_EXIT,
} FaultAction;

typedef struct {
    int op;                 /* FaultOp, or -1 for any */
    FaultAction action;
    uint64_t after;
    uint64_t count;         /* UINT64_MAX: inf */
    uint64_t from;
    uint64_t to;            /* UINT64_MAX: to the end */
    bool ranged;            /* from or to given */
    uint64_t events;        /* atomic */
    uint64_t injected;      /* atomic */
} FaultRule;

struct FaultConfig {
    FaultRule rules[FAULT_MAX_RULES];
    unsigned n;
    bool verbose;
};

FaultConfig *fault_active;

static const char *const op_names[FAULT_OP__MAX] = {
    [FAULT_OP_READ] = "read",
    [FAULT_OP_WRITE] = "write",
    [FAULT_OP_FLUSH] = "flush",
    [FAULT_OP_ALLOC] = "alloc",
    [FAULT_OP_TRUNCATE] = "truncate",
};

static const char *const action_names[] = {
    [FAULT_ACT_EIO] = "eio",
    [FAULT_ACT_ENOSPC] = "enospc",
    [FAULT_ACT_SHORT] = "short",
    [FAULT_ACT_LOG] = "log",
    [FAULT_ACT_EXIT] = "exit",
};

static bool parse_op(const char *s, int *op)
{
    if (!strcmp(s, "any")) {
        *op = -1;
        return true;
    }
    for (int i = 0; i < FAULT_OP__MAX; i++) {
        if (!strcmp(s, op_names[i])) {
            *op = i;
            return true;
        }
    }
    return false;
}

static bool parse_action(const char *s, FaultAction *act)
{
    for (size_t i = 0; i < G_N_ELEMENTS(action_names); i++) {
        if (!strcmp(s, action_names[i])) {
            *act = (FaultAction)i;
            return true;
        }
    }
    return false;
}

/* One "key=value" parameter of a rule. */
static bool parse_param(FaultRule *r, const char *param, GError **errp)
{
    const char *eq = strchr(param, '=');
    g_autofree char *key = NULL;
    const char *val;

    if (!eq) {
        error_setg(errp, "expected key=value, got '%s'", param);
        return false;
    }
    key = g_strndup(param, eq - param);
    val = eq + 1;
    if (!strcmp(key, "after")) {
        return parse_uint64(val, &r->after, errp);
    } else if (!strcmp(key, "count")) {
        if (!strcmp(val, "inf")) {
            r->count = UINT64_MAX;
            return true;
        }
        if (!parse_uint64(val, &r->count, errp)) {
            return false;
        }
        if (r->count == 0) {
            error_setg(errp, "count must be at least 1 (or inf)");
            return false;
        }
        return true;
    } else if (!strcmp(key, "from")) {
        r->ranged = true;
        return parse_size(val, 'B', &r->from, errp);
    } else if (!strcmp(key, "to")) {
        r->ranged = true;
        return parse_size(val, 'B', &r->to, errp);
    }
    error_setg(errp, "unknown parameter '%s'", key);
    return false;
}

static bool parse_rule(FaultRule *r, const char *text, GError **errp)
{
    g_auto(GStrv) parts = g_strsplit(text, ":", -1);
    guint n = g_strv_length(parts);

    memset(r, 0, sizeof(*r));
    r->count = 1;
    r->to = UINT64_MAX;
    if (n < 2) {
        error_setg(errp, "rule '%s' needs OP:ACTION", text);
        return false;
    }
    if (!parse_op(parts[0], &r->op)) {
        error_setg(errp, "unknown operation '%s' (read, write, flush, "
                   "alloc, truncate, any)", parts[0]);
        return false;
    }
    if (!parse_action(parts[1], &r->action)) {
        error_setg(errp, "unknown action '%s' (eio, enospc, short, log, exit)",
                   parts[1]);
        return false;
    }
    if (r->action == FAULT_ACT_SHORT && r->op != FAULT_OP_READ &&
        r->op != FAULT_OP_WRITE) {
        error_setg(errp, "'short' applies to read and write only");
        return false;
    }
    for (guint i = 2; i < n; i++) {
        g_autoptr(GError) err = NULL;
        if (!parse_param(r, parts[i], &err)) {
            error_setg(errp, "rule '%s': %s", text, err->message);
            return false;
        }
    }
    if (r->from >= r->to) {
        error_setg(errp, "rule '%s': empty range (from >= to)", text);
        return false;
    }
    return true;
}

FaultConfig *fault_config_parse(const char *spec, GError **errp)
{
    g_autoptr(FaultConfig) cfg = g_new0(FaultConfig, 1);
    g_auto(GStrv) rules = g_strsplit_set(spec, ",;", -1);

    cfg->verbose = true;
    for (guint i = 0; rules[i]; i++) {
        g_autofree char *text = g_strstrip(g_strdup(rules[i]));
        if (!*text) {
            continue;
        }
        if (cfg->n == FAULT_MAX_RULES) {
            error_setg(errp, "more than %d rules", FAULT_MAX_RULES);
            return NULL;
        }
        if (!parse_rule(&cfg->rules[cfg->n], text, errp)) {
            return NULL;
        }
        cfg->n++;
    }
    if (cfg->n == 0) {
        error_setg(errp, "no rules");
        return NULL;
    }
    return g_steal_pointer(&cfg);
}

void fault_config_free(FaultConfig *cfg)
{
    g_free(cfg);
}

void fault_config_set_verbose(FaultConfig *cfg, bool verbose)
{
    cfg->verbose = verbose;
}

unsigned fault_config_rules(const FaultConfig *cfg)
{
    return cfg->n;
}

uint64_t fault_config_events(const FaultConfig *cfg, unsigned i)
{
    g_assert(i < cfg->n);
    return __atomic_load_n(&cfg->rules[i].events, __ATOMIC_RELAXED);
}

uint64_t fault_config_injected(const FaultConfig *cfg, unsigned i)
{
    g_assert(i < cfg->n);
    return __atomic_load_n(&cfg->rules[i].injected, __ATOMIC_RELAXED);
}

static bool rule_matches(const FaultRule *r, FaultOp op, uint64_t offset,
                         uint64_t bytes)
{
    uint64_t end;

    if (r->op >= 0 && r->op != (int)op) {
        return false;
    }
    if (!r->ranged) {
        return true;
    }
    if (op == FAULT_OP_FLUSH) {
        return false;
    }
    /* A zero-length event (ftruncate to @offset) touches its offset. */
    if (__builtin_add_overflow(offset, MAX(bytes, 1), &end)) {
        end = UINT64_MAX;
    }
    return offset < r->to && end > r->from;
}

/*
 * Bytes a short transfer moves: up to a sector boundary of the file near
 * the middle of the request (the kernel and disks never split a sector),
 * or all of them when the request lies inside one sector.
 */
static uint64_t short_len(uint64_t offset, uint64_t bytes)
{
    uint64_t cut = (offset + bytes / 2) / FAULT_SECTOR * FAULT_SECTOR;

    if (cut <= offset) {
        cut = (offset / FAULT_SECTOR + 1) * FAULT_SECTOR;
    }
    return cut - offset < bytes ? cut - offset : bytes;
}

int fault_config_check(FaultConfig *cfg, FaultOp op, uint64_t offset,
                       uint64_t *bytes)
{
    int result = 0;
    bool decided = false;

    for (unsigned i = 0; i < cfg->n; i++) {
        FaultRule *r = &cfg->rules[i];
        uint64_t idx;
        const char *what = NULL;

        if (!rule_matches(r, op, offset, *bytes)) {
            continue;
        }
        idx = __atomic_fetch_add(&r->events, 1, __ATOMIC_RELAXED);
        if (r->action == FAULT_ACT_LOG) {
            what = "event";
        } else if (!decided && idx >= r->after &&
                   idx - r->after < r->count &&
                   (r->action != FAULT_ACT_SHORT ||
                    short_len(offset, *bytes) < *bytes)) {
            decided = true;
            __atomic_fetch_add(&r->injected, 1, __ATOMIC_RELAXED);
            switch (r->action) {
            case FAULT_ACT_EIO:
                result = -EIO;
                what = "injected EIO";
                break;
            case FAULT_ACT_ENOSPC:
                result = -ENOSPC;
                what = "injected ENOSPC";
                break;
            case FAULT_ACT_EXIT:
                what = "process ends here (injected crash)";
                break;
            default:
                what = "injected short transfer";
                break;
            }
        }
        if (what && cfg->verbose) {
            fprintf(stderr, "BP_FAULT: %s #%" PRIu64 " offset=%" PRIu64
                    " bytes=%" PRIu64 ": %s\n", op_names[op], idx, offset,
                    *bytes, what);
        }
        if (what && r->action == FAULT_ACT_SHORT) {
            *bytes = short_len(offset, *bytes);
        }
        if (what && r->action == FAULT_ACT_EXIT) {
            /* A crash before the call: nothing of it reaches the file. */
            fflush(stderr);
            _exit(FAULT_EXIT_STATUS);
        }
    }
    return result;
}

/* Read BP_FAULT once, before main() and before any thread exists. */
__attribute__((constructor))
static void fault_init_from_env(void)
{
    const char *spec = getenv("BP_FAULT");
    g_autoptr(GError) err = NULL;

    if (!spec || !*spec) {
        return;
    }
    fault_active = fault_config_parse(spec, &err);
    if (!fault_active) {
        fprintf(stderr, "warning: BP_FAULT ignored: %s\n", err->message);
    }
}
