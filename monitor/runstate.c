/*
 * Shutdown requests and exit hooks.  The front-end owns the main loop: it
 * sets a notifier that stops the loop, then performs the clean shutdown
 * (SHUTDOWN event, exit hooks, monitor cleanup) itself.
 */
#include "monitor/monitor.h"

typedef struct ExitHook {
    void (*fn)(void *opaque);
    void *opaque;
} ExitHook;

static ShutdownCause shutdown_cause = SHUTDOWN_CAUSE_NONE;
static void (*shutdown_notify)(void *opaque);
static void *shutdown_opaque;
static GArray *exit_hooks;

void qemu_system_set_shutdown_notifier(void (*fn)(void *opaque),
                                       void *opaque)
{
    shutdown_notify = fn;
    shutdown_opaque = opaque;
}

void qemu_system_shutdown_request(ShutdownCause cause)
{
    if (shutdown_cause != SHUTDOWN_CAUSE_NONE) {
        return;
    }
    shutdown_cause = cause == SHUTDOWN_CAUSE_NONE ? SHUTDOWN_CAUSE_HOST_ERROR
                                                  : cause;
    if (shutdown_notify) {
        shutdown_notify(shutdown_opaque);
    }
}

ShutdownCause qemu_system_shutdown_cause(void)
{
    return shutdown_cause;
}

void qemu_add_exit_hook(void (*fn)(void *opaque), void *opaque)
{
    ExitHook hook = { fn, opaque };

    if (!exit_hooks) {
        exit_hooks = g_array_new(FALSE, FALSE, sizeof(ExitHook));
    }
    g_array_append_val(exit_hooks, hook);
}

void qemu_run_exit_hooks(void)
{
    while (exit_hooks && exit_hooks->len) {
        ExitHook hook = g_array_index(exit_hooks, ExitHook,
                                      exit_hooks->len - 1);

        g_array_remove_index(exit_hooks, exit_hooks->len - 1);
        hook.fn(hook.opaque);
    }
}
