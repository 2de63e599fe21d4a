/*
 * Private to migration/: the shared state record, the main-thread call
 * helper, parameters, alias maps, transports, and the entry points of the
 * outgoing and incoming sides.
 */
#ifndef MIGRATION_MIGRATION_INT_H
#define MIGRATION_MIGRATION_INT_H

#include "block/block.h"
#include "migration/migration.h"
#include "migration/stream.h"

/* ---- state.c: the current (or last) migration ---- */

typedef enum MigDirection {
    MIG_DIR_NONE,
    MIG_DIR_OUTGOING,
    MIG_DIR_INCOMING,
} MigDirection;

/* Counters for query-migrate; updated by the worker thread. */
typedef struct MigStats {
    uint64_t precopy_bytes;
    uint64_t downtime_bytes;
    uint64_t normal;           /* data chunks with bits */
    uint64_t normal_bytes;
    uint64_t duplicate;        /* chunks sent as all-clean/all-dirty */
    uint64_t remaining;        /* live-phase bitmap bytes still to send */
    uint64_t sections;
} MigStats;

/* Start a new record (main thread); the previous one is forgotten. */
void mig_state_begin(MigDirection dir);
MigDirection mig_state_direction(void);
/* Running: setup, active, device or cancelling. */
bool mig_state_running(void);
/* Any thread.  The notifier runs later on the main thread, in order. */
void mig_set_status(MigrationStatus status);
/* Keep the first error message only (any thread). */
void mig_set_error(const char *message);
/* Any thread: the stream whose byte counts query-migrate reports. */
void mig_state_set_stream(MigStream *stream);
void mig_state_connected(void);
void mig_state_pause_begin(void);
void mig_state_pause_end(void);
void mig_state_end(void);
/* Debug message with the time since the pause (or start) began. */
void mig_trace(const char *step);
/* Add a section's bytes to the counters of the current phase. */
void mig_stats_section(size_t bytes, bool paused);
void mig_stats_chunk(bool with_data, size_t data_bytes);
void mig_stats_set_remaining(uint64_t remaining);

/*
 * Run @fn(@opaque) on the main thread and wait for its result (any
 * thread; on the main thread it runs at once).
 */
typedef bool MigMainFunc(void *opaque, GError **errp);
bool mig_run_on_main(MigMainFunc *fn, void *opaque, GError **errp);
/* The same in two steps, so that the worker can go on meanwhile. */
typedef struct MigMainCall MigMainCall;
MigMainCall *mig_main_call_begin(MigMainFunc *fn, void *opaque);
bool mig_main_call_finish(MigMainCall *call, GError **errp);

/* ---- params.c ---- */

uint64_t mig_param_max_bandwidth(void);
/* A new reference to the mapping, or NULL when none was ever set. */
JsonArray *mig_param_bitmap_mapping(void);

/*
 * An alias map built from block-bitmap-mapping.  Outgoing (names to
 * aliases): keys are node names, MigNodeMap.to the node alias, and the
 * bitmap keys bitmap names.  Incoming: the other way round.
 */
typedef struct MigBitmapMap {
    char *to;
    int persistent;            /* transform: -1 keep, 0 off, 1 on */
} MigBitmapMap;

typedef struct MigNodeMap {
    char *to;
    GHashTable *bitmaps;       /* from -> MigBitmapMap * */
} MigNodeMap;

GHashTable *mig_alias_map_new(JsonArray *mapping, bool name_to_alias,
                              GError **errp);

/* QEMU's id_wellformed(): a letter, then letters, digits, '-', '.', '_'. */
bool mig_id_wellformed(const char *id);

/* ---- transport.c ---- */

/* Is @uri one we can use? */
bool mig_transport_check_uri(const char *uri, GError **errp);
/* Connect to @uri; blocking (cancellable). */
GIOStream *mig_transport_connect(const char *uri, GCancellable *cancel,
                                 GError **errp);
/* Listen on @uri (main thread). */
GSocketListener *mig_transport_listen(const char *uri, GError **errp);

/* ---- outgoing.c / incoming.c ---- */

void mig_outgoing_cancel(void);
void mig_outgoing_shutdown(void);
void mig_incoming_shutdown(void);

/* Nodes to drain for a switch-over: every node that is not the protocol
 * child of another, parents before children (outgoing.c). */
GPtrArray *mig_nodes_to_drain(void);

#endif
