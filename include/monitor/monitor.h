/*
 * Public monitor API: QMP listeners for front-ends, events for everyone,
 * and the shutdown request path.  See monitor/README.md.
 */
#ifndef MONITOR_MONITOR_H
#define MONITOR_MONITOR_H

#include <json-glib/json-glib.h>
#include <stdbool.h>

#include "qapi/error.h"
#include "qapi-types.h"

/* --- QMP server (monitor/qmp-server.c) ---------------------------------- */

/*
 * Listen for QMP clients on the Unix socket @path (created; a stale socket
 * left there is replaced, any other file is an error).  @id names the
 * monitor in messages and must be unique.  Each client gets a greeting and
 * its own negotiation state; up to MONITOR_MAX_CLIENTS clients per listener
 * are served at the same time.  @pretty pretty-prints replies and events.
 */
#define MONITOR_MAX_CLIENTS 32
bool monitor_add_unix_listener(const char *id, const char *path, bool pretty,
                               GError **errp);

/* True if a listener named @id exists. */
bool monitor_has_listener(const char *id);

/*
 * Send what is still queued to each client (waiting at most a second per
 * client), close every connection and listener and unlink the socket
 * files.  Safe to call more than once.
 */
void monitor_cleanup(void);

/* --- events (monitor/qmp-events.c) -------------------------------------- */

/*
 * Send event @event (a name from the schema, e.g. QAPI_EVENT_SHUTDOWN)
 * with @data to every client that has completed negotiation.  Takes
 * ownership of @data, which may be NULL for events without data.  The
 * data is checked against the schema; a mismatch is a programming error
 * reported with g_critical() (the event is still sent).
 */
void qmp_event_emit(const char *event, JsonObject *data);

/* Receivers of events; the QMP server registers one.  @event is borrowed. */
typedef void QmpEventSinkFunc(JsonNode *event, void *opaque);
void qmp_event_add_sink(QmpEventSinkFunc *fn, void *opaque);
void qmp_event_remove_sink(QmpEventSinkFunc *fn, void *opaque);

/* --- shutdown (monitor/runstate.c) -------------------------------------- */

/*
 * Ask the process to shut down cleanly (quit command, signals).  Only
 * records the first request and calls the notifier set by the front-end
 * (which typically quits its GMainLoop); the front-end then emits SHUTDOWN,
 * runs the exit hooks and cleans up.  Safe to call from a handler.
 */
void qemu_system_shutdown_request(ShutdownCause cause);

/* SHUTDOWN_CAUSE_NONE until a shutdown was requested. */
ShutdownCause qemu_system_shutdown_cause(void);

/* Set by the front-end: called once, on the first shutdown request. */
void qemu_system_set_shutdown_notifier(void (*fn)(void *opaque),
                                       void *opaque);

/*
 * Exit hooks run by the front-end during clean shutdown, newest first,
 * after SHUTDOWN was sent and before the monitors close.  Subsystems use
 * them to flush and close block nodes, stop NBD servers, ...
 */
void qemu_add_exit_hook(void (*fn)(void *opaque), void *opaque);
void qemu_run_exit_hooks(void);

#endif
