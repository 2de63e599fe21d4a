/*
 * Host I/O fault injection for tests.  The "file" protocol driver asks
 * fault_inject() before each pread, pwrite, fdatasync, fallocate and
 * ftruncate; with BP_FAULT unset that is one test of a pointer that is
 * NULL for the whole life of the process.
 *
 * BP_FAULT holds rules separated by ',' (or ';'); each rule is
 *
 *     OP:ACTION[:after=N][:count=K|count=inf][:from=SIZE][:to=SIZE]
 *
 * OP      read, write, flush (fdatasync), alloc (fallocate that allocates,
 *         posix_fallocate), truncate (ftruncate), or any.
 * ACTION  eio or enospc: fail the call with that errno;
 *         short: a read or write transfers only the bytes up to a 512-byte
 *         boundary of the file near the middle of the request, as the
 *         kernel may do (a request inside one sector goes through whole,
 *         though it counts as an event);
 *         log: inject nothing, print every matching event;
 *         exit: end the process at once with status 99, before the call
 *         (a crash at that point: used to stop at each sync point).
 * after   the first N matching events pass (default 0).
 * count   then K events fail (default 1); inf: every later one.
 * from/to only events touching bytes [from, to) of the file match (sizes
 *         take k/M/G suffixes).  flush has no range: a rule with from/to
 *         never matches it.
 *
 * Every rule counts the events that match it, from 0, independently of
 * the others; the first rule that fires decides the outcome.  Each
 * injected fault (and each logged event) is printed on stderr as
 * "BP_FAULT: <op> #<index> offset=<o> bytes=<n>: <what>".  The variable is
 * read once, before main(); a malformed value is reported and ignored.
 * See docs/devel/testing.md.
 */
#ifndef UTIL_FAULT_H
#define UTIL_FAULT_H

#include <glib.h>
#include <stdbool.h>
#include <stdint.h>

#define FAULT_EXIT_STATUS 99

typedef enum FaultOp {
    FAULT_OP_READ,
    FAULT_OP_WRITE,
    FAULT_OP_FLUSH,
    FAULT_OP_ALLOC,
    FAULT_OP_TRUNCATE,
    FAULT_OP__MAX,
} FaultOp;

typedef struct FaultConfig FaultConfig;

/* Parse a BP_FAULT value; NULL with @errp set when it is malformed. */
FaultConfig *fault_config_parse(const char *spec, GError **errp);
void fault_config_free(FaultConfig *cfg);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(FaultConfig, fault_config_free)

/* Whether injected faults and logged events are printed (default yes). */
void fault_config_set_verbose(FaultConfig *cfg, bool verbose);

/*
 * Count one event of @op on [offset, offset + *bytes) against every rule
 * of @cfg.  Returns 0 to go ahead (with *bytes possibly lowered for a
 * short transfer) or the -errno the call must fail with.  Thread-safe.
 */
int fault_config_check(FaultConfig *cfg, FaultOp op, uint64_t offset,
                       uint64_t *bytes);

/* Number of rules, and how many events rule @i saw and how many failed. */
unsigned fault_config_rules(const FaultConfig *cfg);
uint64_t fault_config_events(const FaultConfig *cfg, unsigned i);
uint64_t fault_config_injected(const FaultConfig *cfg, unsigned i);

/* The configuration from BP_FAULT, or NULL (set once, before main()). */
extern FaultConfig *fault_active;

/* Whether BP_FAULT is in effect: the one branch on the fast path. */
static inline bool fault_armed(void)
{
    return G_UNLIKELY(fault_active != NULL);
}

/* The hook for host I/O; see fault_config_check(). */
static inline int fault_inject(FaultOp op, uint64_t offset, uint64_t *bytes)
{
    if (!fault_armed()) {
        return 0;
    }
    return fault_config_check(fault_active, op, offset, bytes);
}

#endif
