/*
 * Private to the destination side (incoming.c: lifecycle and take-over,
 * receive.c: the section reader).
 */
#ifndef MIGRATION_INCOMING_H
#define MIGRATION_INCOMING_H

#include "migration-int.h"
#include "block/checkpoint.h"
#include "block/dirty-bitmap.h"
#include "util/hbitmap.h"

/* Limits on what a stream may declare. */
#define MIG_IN_MAX_NODES 4096
#define MIG_IN_MAX_BITMAPS (4 * 65535)

typedef struct InNode {
    uint32_t id;
    char *alias;
    char *name;                /* on this side */
    MigNodeMap *map;           /* its bitmap aliases; NULL: identity */
    uint64_t size;
    CheckpointChain *chain;    /* NULL: the source sends none */
    uint32_t chain_next;       /* index of the next CHECKPOINT */
    bool chain_done;
    BlockDriverState *bs;      /* found by the checks (main thread) */
} InNode;

typedef struct InBitmap {
    uint32_t id;
    InNode *node;
    char *alias;
    char *name;                /* on this side */
    uint64_t granularity;
    uint64_t size;
    uint32_t flags;            /* MIG_BITMAP_* of BITMAP */
    uint32_t end_flags;        /* of BITMAP_END */
    bool persistent;           /* after the mapping's transform */
    HBitmap *hb;               /* the contents so far */
    BdrvDirtyBitmap *bm;       /* adopted by its node, not installed yet */
    bool ended;
} InBitmap;

typedef struct Incoming {
    GSocketListener *listener;
    GCancellable *accept_cancel;
    bool accepting;
    GThread *thread;
    GMutex lock;               /* stream */
    MigStream *stream;
    GHashTable *alias_map;     /* NULL: names travel as they are */
    GPtrArray *nodes;          /* InNode * */
    GPtrArray *bitmaps;        /* InBitmap * */
    bool ok;
    GError *err;
    bool finished;
} Incoming;

/* receive.c: the whole stream, on the worker thread. */
bool mig_in_receive(Incoming *in, GError **errp);

/* incoming.c, main thread (through mig_run_on_main). */
bool mig_in_validate_main(void *opaque, GError **errp);
bool mig_in_activate_main(void *opaque, GError **errp);

#endif
