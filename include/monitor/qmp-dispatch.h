/*
 * QMP command dispatch: the command table generated from qapi/schema/ and
 * the request -> reply function the monitor server calls.
 *
 * Every handler has the same signature (prototypes are generated into
 * qmp-commands.h):
 *
 *   bool qmp_<name>(JsonObject *args, JsonNode **ret, GError **errp);
 *
 * - <name> is the command name with '-' replaced by '_';
 * - @args has already been validated against the command's argument type:
 *   every member present has its schema type, no unknown member exists.
 *   It is never NULL (an empty object when the client sent no arguments)
 *   and is borrowed: do not keep it past the call;
 * - on success set *ret to a new node (ownership passes to the caller) or
 *   leave it NULL, which means the empty object {};
 * - on failure return false and set *errp (error class from
 *   include/qapi/error.h; GenericError unless QEMU uses another class).
 *
 * Handlers run on the main loop thread, one at a time.
 */
#ifndef MONITOR_QMP_DISPATCH_H
#define MONITOR_QMP_DISPATCH_H

#include <json-glib/json-glib.h>
#include <stdbool.h>
#include <stddef.h>

#include "qapi/error.h"

typedef bool QmpCommandFunc(JsonObject *args, JsonNode **ret, GError **errp);

typedef enum QmpCommandFlags {
    QMP_CMD_ALLOW_PRECONFIG = 1 << 0,   /* recorded from the schema */
} QmpCommandFlags;

typedef struct QmpCommand {
    const char *name;
    const char *arg_type;       /* schema type of the arguments object */
    const char *ret_type;       /* schema type of the return value */
    QmpCommandFunc *fn;
    unsigned flags;             /* QmpCommandFlags */
} QmpCommand;

/* Generated from the schema (qmp-commands.c). */
extern const QmpCommand qmp_commands[];
extern const size_t qmp_commands_count;
extern const char *const qmp_events[];      /* NULL-terminated */

const QmpCommand *qmp_command_lookup(const char *name);

/* Per-connection protocol state. */
typedef struct QmpDispatchState {
    bool negotiated;            /* qmp_capabilities has succeeded */
} QmpDispatchState;

/*
 * Handle one request (any JSON value) and return the reply object:
 * {"return": ..., "id": ...} or {"id": ..., "error": {"class", "desc"}}.
 * The id, when the request is an object with one, is copied verbatim.
 */
JsonNode *qmp_dispatch(QmpDispatchState *state, JsonNode *request);

/* {"error": {"class": ..., "desc": ...}} with @id (may be NULL) added. */
JsonNode *qmp_error_reply(const GError *err, JsonNode *id);

#endif
