/*
 * Handlers for qapi/schema/control.json and introspect.json: negotiation,
 * version, command list, schema introspection and quit.
 */
#include "monitor/monitor-internal.h"

#include <stdio.h>
#include <string.h>

#include "bp-config.h"
#include "monitor/monitor.h"
#include "qapi/qobject-json.h"
#include "qmp-commands.h"

JsonNode *qmp_version_info(void)
{
    JsonObject *info = json_object_new();
    JsonObject *qemu = json_object_new();
    int major = 0, minor = 0, micro = 0;

    sscanf(BP_QEMU_VERSION, "%d.%d.%d", &major, &minor, &micro);
    json_object_set_int_member(qemu, "major", major);
    json_object_set_int_member(qemu, "minor", minor);
    json_object_set_int_member(qemu, "micro", micro);
    json_object_set_object_member(info, "qemu", qemu);
    json_object_set_string_member(info, "package", "blockpoint " BP_VERSION);
    return qobj_new_object(info);
}

bool qmp_qmp_capabilities(JsonObject *args, JsonNode **ret, GError **errp)
{
    JsonArray *enable = qobj_get_array(args, "enable");

    /* The greeting offers no capability, so none can be enabled. */
    if (enable && json_array_get_length(enable)) {
        error_setg(errp, "Capability '%s' not available",
                   json_array_get_string_element(enable, 0));
        return false;
    }
    return true;
}

bool qmp_query_version(JsonObject *args, JsonNode **ret, GError **errp)
{
    *ret = qmp_version_info();
    return true;
}

bool qmp_query_commands(JsonObject *args, JsonNode **ret, GError **errp)
{
    JsonArray *list = json_array_new();

    for (size_t i = 0; i < qmp_commands_count; i++) {
        JsonObject *info = json_object_new();

        json_object_set_string_member(info, "name", qmp_commands[i].name);
        json_array_add_object_element(list, info);
    }
    *ret = qobj_new_array(list);
    return true;
}

bool qmp_query_qmp_schema(JsonObject *args, JsonNode **ret, GError **errp)
{
    static JsonNode *schema;

    if (!schema) {
        g_autoptr(JsonParser) parser = json_parser_new_immutable();
        g_autoptr(GError) err = NULL;

        if (!json_parser_load_from_data(parser, qapi_introspection_json, -1,
                                        &err)) {
            /* Generated at build time: cannot happen in a good build. */
            error_setg(errp, "internal error: bad introspection data: %s",
                       err->message);
            return false;
        }
        schema = json_parser_steal_root(parser);
    }
    *ret = json_node_ref(schema);
    return true;
}

bool qmp_quit(JsonObject *args, JsonNode **ret, GError **errp)
{
    qemu_system_shutdown_request(SHUTDOWN_CAUSE_HOST_QMP_QUIT);
    return true;
}
