/*
 * QMP request handling: envelope checks (execute/arguments/id), the
 * negotiation gate, command lookup, schema validation of the arguments,
 * the handler call and the reply with the id echoed verbatim.
 * Reply and error shapes follow QEMU's QMP specification, section 2.4.
 */
#include "monitor/qmp-dispatch.h"

#include <string.h>

#include "qapi/qapi-validate.h"
#include "qapi/qobject-json.h"

const QmpCommand *qmp_command_lookup(const char *name)
{
    for (size_t i = 0; i < qmp_commands_count; i++) {
        if (!strcmp(qmp_commands[i].name, name)) {
            return &qmp_commands[i];
        }
    }
    return NULL;
}

JsonNode *qmp_error_reply(const GError *err, JsonNode *id)
{
    JsonObject *reply = json_object_new();
    JsonObject *error = json_object_new();

    json_object_set_string_member(error, "class",
                                  error_class_name(error_get_class(err)));
    json_object_set_string_member(error, "desc", err->message);
    /* QEMU puts the id first in error replies. */
    if (id) {
        json_object_set_member(reply, "id", json_node_copy(id));
    }
    json_object_set_object_member(reply, "error", error);
    return qobj_new_object(reply);
}

static JsonNode *error_reply(JsonNode *id, ErrorClass cls, const char *fmt,
                             ...) G_GNUC_PRINTF(3, 4);

static JsonNode *error_reply(JsonNode *id, ErrorClass cls, const char *fmt,
                             ...)
{
    g_autoptr(GError) err = NULL;
    g_autofree char *msg = NULL;
    va_list ap;

    va_start(ap, fmt);
    msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    err = g_error_new_literal(BP_ERROR, cls, msg);
    return qmp_error_reply(err, id);
}

/*
 * Check the request envelope.  Returns NULL and sets the out parameters,
 * or returns an error reply.
 */
static JsonNode *check_envelope(JsonObject *req, JsonNode *id,
                                const char **name, JsonObject **args)
{
    JsonObjectIter iter;
    const char *key;
    JsonNode *member;

    json_object_iter_init_ordered(&iter, req);
    while (json_object_iter_next_ordered(&iter, &key, &member)) {
        if (!strcmp(key, "execute")) {
            if (!JSON_NODE_HOLDS_VALUE(member) ||
                json_node_get_value_type(member) != G_TYPE_STRING) {
                return error_reply(id, ERROR_CLASS_GENERIC_ERROR,
                                   "QMP input member 'execute' must be a "
                                   "string");
            }
            *name = json_node_get_string(member);
        } else if (!strcmp(key, "arguments")) {
            if (!JSON_NODE_HOLDS_OBJECT(member)) {
                return error_reply(id, ERROR_CLASS_GENERIC_ERROR,
                                   "QMP input member 'arguments' must be "
                                   "an object");
            }
            *args = json_node_get_object(member);
        } else if (strcmp(key, "id")) {
            /* Includes "exec-oob": the oob capability is never offered. */
            return error_reply(id, ERROR_CLASS_GENERIC_ERROR,
                               "QMP input member '%s' is unexpected", key);
        }
    }
    if (!*name) {
        return error_reply(id, ERROR_CLASS_GENERIC_ERROR,
                           "QMP input lacks member 'execute'");
    }
    return NULL;
}

/* A handler's result must match its schema type: a bug otherwise. */
static void check_return(const QmpCommand *cmd, JsonNode *ret)
{
    g_autoptr(GError) err = NULL;

    if (!qapi_validate(qapi_schema_builtin(), cmd->ret_type, ret, "return",
                       QAPI_VALIDATE_DEFAULT, &err)) {
        g_critical("command %s returned a value that does not match its "
                   "schema: %s", cmd->name, err->message);
    }
}

static JsonNode *run_command(const QmpCommand *cmd, JsonObject *args,
                             JsonNode *id)
{
    g_autoptr(GError) err = NULL;
    JsonNode *ret = NULL;
    JsonObject *reply;

    if (!qapi_validate_args(qapi_schema_builtin(), cmd->arg_type, args,
                            &err)) {
        return qmp_error_reply(err, id);
    }
    if (!cmd->fn(args, &ret, &err)) {
        if (ret) {
            json_node_unref(ret);
        }
        if (!err) {
            g_critical("command %s failed without setting an error",
                       cmd->name);
            err = g_error_new_literal(BP_ERROR, ERROR_CLASS_GENERIC_ERROR,
                                      "internal error");
        }
        return qmp_error_reply(err, id);
    }
    if (!ret) {
        ret = qobj_new_object(json_object_new());
    }
    check_return(cmd, ret);
    reply = json_object_new();
    json_object_set_member(reply, "return", ret);
    if (id) {
        json_object_set_member(reply, "id", json_node_copy(id));
    }
    return qobj_new_object(reply);
}

JsonNode *qmp_dispatch(QmpDispatchState *state, JsonNode *request)
{
    const char *name = NULL;
    JsonObject *args = NULL;
    g_autoptr(JsonObject) empty = NULL;
    const QmpCommand *cmd;
    JsonObject *req;
    JsonNode *id;
    JsonNode *reply;

    if (!JSON_NODE_HOLDS_OBJECT(request)) {
        return error_reply(NULL, ERROR_CLASS_GENERIC_ERROR,
                           "QMP input must be a JSON object");
    }
    req = json_node_get_object(request);
    id = json_object_get_member(req, "id");
    reply = check_envelope(req, id, &name, &args);
    if (reply) {
        return reply;
    }
    if (!state->negotiated && strcmp(name, "qmp_capabilities")) {
        return error_reply(id, ERROR_CLASS_COMMAND_NOT_FOUND,
                           "Expecting capabilities negotiation with "
                           "'qmp_capabilities'");
    }
    cmd = qmp_command_lookup(name);
    if (!cmd) {
        return error_reply(id, ERROR_CLASS_COMMAND_NOT_FOUND,
                           "The command %s has not been found", name);
    }
    if (state->negotiated && !strcmp(name, "qmp_capabilities")) {
        return error_reply(id, ERROR_CLASS_COMMAND_NOT_FOUND,
                           "Capabilities negotiation is already complete, "
                           "command ignored");
    }
    if (!args) {
        empty = json_object_new();
        args = empty;
    }
    reply = run_command(cmd, args, id);
    if (!state->negotiated &&
        json_object_has_member(json_node_get_object(reply), "return")) {
        state->negotiated = true;
    }
    return reply;
}
