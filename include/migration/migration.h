/*
 * Migration of a storage daemon's images to another storage daemon that
 * opens the same image files: the dirty bitmaps and checkpoints travel in
 * the stream (docs/interop/migration-stream.rst), the data stays where it
 * is, and the ownership of the images moves with node activation
 * (include/block/activation.h).  User guide: docs/migration.md.
 *
 * The entry points for QMP (monitor/cmds-migration.c) and the daemon's
 * command line.  All run on the main thread; arguments were validated
 * against qapi/schema/migration.json.  The transfer itself runs on a
 * worker thread per migration and comes back to the main thread for
 * everything that touches the node graph.
 */
#ifndef MIGRATION_MIGRATION_H
#define MIGRATION_MIGRATION_H

#include <json-glib/json-glib.h>
#include <stdbool.h>

#include "qapi/error.h"
#include "qapi-types.h"

/* ---- Capabilities and parameters ---- */

/* migrate-set-capabilities: @caps is [MigrationCapabilityStatus]. */
bool migration_set_capabilities(JsonArray *caps, GError **errp);
/* query-migrate-capabilities: a new [MigrationCapabilityStatus]. */
JsonArray *migration_query_capabilities(void);
bool migration_capability(MigrationCapability cap);

/* migrate-set-parameters: @params is MigrateSetParameters. */
bool migration_set_parameters(JsonObject *params, GError **errp);
/* query-migrate-parameters: a new MigrationParameters. */
JsonObject *migration_query_parameters(void);

/*
 * Check a block-bitmap-mapping value the way QEMU does, in both
 * directions, with QEMU's messages ("Invalid mapping given for
 * block-bitmap-mapping: ...").
 */
bool migration_check_bitmap_mapping(JsonArray *mapping, GError **errp);

/* ---- Outgoing ---- */

/* migrate: start migrating to @uri ("tcp:HOST:PORT", "unix:PATH"). */
bool migration_start_outgoing(const char *uri, GError **errp);
/* migrate_cancel. */
void migration_cancel(void);

/* ---- Incoming ---- */

/*
 * --incoming: from now on, nodes open inactive and an incoming migration
 * is expected; with @uri not "defer", start listening at once.
 */
bool migration_expect_incoming(const char *uri, GError **errp);
/* migrate-incoming. */
bool migration_start_incoming(const char *uri, GError **errp);

/*
 * The storage daemon's --incoming option (migration_expect_incoming()
 * plus the monitor's event and exit hooks).  Implemented in
 * monitor/cmds-migration.c.
 */
bool migration_cmdline_incoming(const char *uri, GError **errp);

/* ---- State ---- */

/* query-migrate: a new MigrationInfo. */
JsonObject *migration_query(void);
MigrationStatus migration_status(void);

/*
 * Called on the main thread after each status change, whatever the
 * capabilities (the monitor sends the MIGRATION event when "events" is
 * on).  One notifier.
 */
typedef void MigrationStatusNotifier(MigrationStatus status, void *opaque);
void migration_set_status_notifier(MigrationStatusNotifier *fn,
                                   void *opaque);

/*
 * Process exit: cancel a running migration and wait for its thread (the
 * source resumes, the destination discards).  Safe to call twice.
 */
void migration_shutdown(void);

#endif
