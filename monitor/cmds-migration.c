/*
 * QMP handlers for qapi/schema/migration.json, and the storage daemon's
 * --incoming option.  Thin: the work is in migration/ (see
 * include/migration/migration.h).  The first use registers the MIGRATION
 * event source and an exit hook that cancels a running migration (the
 * source resumes, the destination discards) before the nodes close.
 */
#include "migration/migration.h"
#include "monitor/monitor.h"
#include "qapi/error.h"
#include "qapi/qobject-json.h"
#include "qmp-commands.h"

static void emit_migration(MigrationStatus status, void *opaque)
{
    JsonObject *data;

    if (!migration_capability(MIGRATION_CAPABILITY_EVENTS)) {
        return;
    }
    data = json_object_new();
    json_object_set_string_member(data, "status", MigrationStatus_str[status]);
    qmp_event_emit(QAPI_EVENT_MIGRATION, data);
}

static void migration_exit_hook(void *opaque)
{
    migration_shutdown();
}

static void migration_monitor_init(void)
{
    static bool done;

    if (!done) {
        done = true;
        migration_set_status_notifier(emit_migration, NULL);
        qemu_add_exit_hook(migration_exit_hook, NULL);
    }
}

bool qmp_migrate_set_capabilities(JsonObject *args, JsonNode **ret,
                                  GError **errp)
{
    migration_monitor_init();
    return migration_set_capabilities(qobj_get_array(args, "capabilities"),
                                      errp);
}

bool qmp_query_migrate_capabilities(JsonObject *args, JsonNode **ret,
                                    GError **errp)
{
    *ret = qobj_new_array(migration_query_capabilities());
    return true;
}

bool qmp_migrate_set_parameters(JsonObject *args, JsonNode **ret,
                                GError **errp)
{
    return migration_set_parameters(args, errp);
}

bool qmp_query_migrate_parameters(JsonObject *args, JsonNode **ret,
                                  GError **errp)
{
    *ret = qobj_new_object(migration_query_parameters());
    return true;
}

bool qmp_migrate(JsonObject *args, JsonNode **ret, GError **errp)
{
    if (qobj_get_bool(args, "blk", false) ||
        qobj_get_bool(args, "inc", false)) {
        error_setg(errp, "Block migration is not supported");
        error_append_hint(errp, "The images stay where they are: both "
                          "daemons must open the same files");
        return false;
    }
    if (qobj_get_bool(args, "resume", false)) {
        error_setg(errp, "Postcopy recovery is not supported");
        return false;
    }
    migration_monitor_init();
    return migration_start_outgoing(qobj_get_str(args, "uri", ""), errp);
}

bool qmp_migrate_incoming(JsonObject *args, JsonNode **ret, GError **errp)
{
    migration_monitor_init();
    return migration_start_incoming(qobj_get_str(args, "uri", ""), errp);
}

bool qmp_migrate_cancel(JsonObject *args, JsonNode **ret, GError **errp)
{
    migration_cancel();
    return true;
}

bool qmp_query_migrate(JsonObject *args, JsonNode **ret, GError **errp)
{
    *ret = qobj_new_object(migration_query());
    return true;
}

bool migration_cmdline_incoming(const char *uri, GError **errp)
{
    migration_monitor_init();
    return migration_expect_incoming(uri, errp);
}
