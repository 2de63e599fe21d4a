/*
 * Private to the source side (outgoing.c: control, send.c: sections).
 */
#ifndef MIGRATION_OUTGOING_H
#define MIGRATION_OUTGOING_H

#include "migration-int.h"
#include "block/checkpoint.h"
#include "block/dirty-bitmap.h"

typedef struct OutNode {
    BlockDriverState *bs;      /* referenced */
    uint32_t id;
    char *alias;
    uint64_t size;
    CheckpointChain *chain;    /* NULL: the node has no checkpoint table */
    /*
     * Anonymous bitmap that records every write from the start of the
     * transfer (when a migrated bitmap records): the final phase re-sends
     * only what it marks.
     */
    BdrvDirtyBitmap *tracker;
    BdrvDirtyBitmap *old_tracker;  /* during a catch-up pass */
} OutNode;

typedef struct OutBitmap {
    OutNode *node;
    BdrvDirtyBitmap *bm;
    uint32_t id;
    char *name;
    char *alias;
    uint32_t flags;            /* MIG_BITMAP_*, as sent */
    bool was_loaded;           /* its bits were in memory before */
    bool made_busy;            /* we set it busy */
    BdrvDirtyBitmap *final;    /* frozen copy of the final contents */
} OutBitmap;

typedef struct Outgoing {
    char *uri;
    GThread *thread;
    GCancellable *connect_cancel;
    GMutex lock;               /* stream, cancel_requested */
    MigStream *stream;
    bool cancel_requested;

    bool dirty_bitmaps;        /* the capability, at start */
    uint64_t max_bandwidth;
    GHashTable *alias_map;     /* NULL: names travel as they are */

    GPtrArray *nodes;          /* OutNode * */
    GPtrArray *bitmaps;        /* OutBitmap * */
    GPtrArray *drained;        /* BlockDriverState *, referenced */
    GPtrArray *flushed;        /* nodes flushed before the pause (refs) */
    bool paused;               /* I/O stopped: counts as downtime */
    bool inactivated;
    gint64 live_start;         /* for max-bandwidth */
    uint64_t live_bytes;

    /* Result, for the main thread. */
    bool ok;
    GError *err;
    bool finished;
} Outgoing;

/* pick.c (main thread) */
void out_node_free(gpointer p);
void out_bitmap_free(gpointer p);
/* Choose the nodes and bitmaps, start tracking; status becomes active. */
bool out_setup_main(void *opaque, GError **errp);
/* Fail if a bitmap that would migrate was not picked at the setup. */
bool out_check_no_new_bitmaps(Outgoing *o, GError **errp);

/* send.c */
bool out_send_nodes(Outgoing *o, GError **errp);
/* BITMAP, its contents, and END unless it records. */
bool out_send_bitmap_live(Outgoing *o, OutBitmap *b, GError **errp);
/* Again the parts of @b around every write @tracker recorded. */
bool out_send_changes(Outgoing *o, OutBitmap *b, BdrvDirtyBitmap *tracker,
                      GError **errp);
/* END of @b, whose final contents are @contents (@b's or a copy). */
bool out_send_end(Outgoing *o, OutBitmap *b, BdrvDirtyBitmap *contents,
                  GError **errp);
bool out_send(Outgoing *o, MigSectionType type, MigBuf *b, GError **errp);
uint64_t out_bitmap_bytes(const OutBitmap *b);

#endif
