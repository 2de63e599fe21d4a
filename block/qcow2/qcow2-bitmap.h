/*
 * qcow2 persistent bitmaps: the on-disk layout of the bitmaps extension,
 * the bitmap directory and bitmap tables (docs/interop/bitmaps.md,
 * "On-disk rules"), the pure codec (qcow2-bitmap-dir.c), and the hooks the
 * rest of the qcow2 driver calls (qcow2-bitmap.c, qcow2-bitmap-store.c,
 * qcow2-bitmap-check.c).
 */
#ifndef BLOCK_QCOW2_BITMAP_H
#define BLOCK_QCOW2_BITMAP_H

#include "block/block_int.h"
#include "block/dirty-bitmap.h"

#include <stdbool.h>
#include <stdint.h>

/* "Bitmaps extension": 24 bytes. */
#define QCOW2_BME_EXT_SIZE 24
/* Limits, as QEMU's. */
#define QCOW2_MAX_BITMAPS 65535
#define QCOW2_MAX_BITMAP_DIRECTORY_SIZE (1024 * QCOW2_MAX_BITMAPS)
#define QCOW2_BME_MAX_TABLE_SIZE 0x8000000U
#define QCOW2_BME_MAX_PHYS_SIZE 0x20000000U
#define QCOW2_BME_MIN_GRANULARITY_BITS 9
#define QCOW2_BME_MAX_GRANULARITY_BITS 31
#define QCOW2_BME_MAX_NAME_SIZE 1023u

/* "Bitmap directory": fixed part of an entry, then extra data and name. */
#define QCOW2_BME_ENTRY_FIXED 24
#define QCOW2_BME_FLAG_IN_USE (1U << 0)
#define QCOW2_BME_FLAG_AUTO (1U << 1)
#define QCOW2_BME_FLAG_EXTRA_DATA_COMPATIBLE (1U << 2)
#define QCOW2_BME_RESERVED_FLAGS 0xfffffff8U
#define QCOW2_BME_TYPE_DIRTY_TRACKING 1

/* "Bitmap table": entry layout. */
#define QCOW2_BME_TABLE_OFFSET_MASK UINT64_C(0x00fffffffffffe00)
#define QCOW2_BME_TABLE_RESERVED_MASK UINT64_C(0xff000000000001fe)
#define QCOW2_BME_TABLE_ALL_ONES UINT64_C(1)

typedef struct Qcow2BitmapExt {
    uint32_t nb_bitmaps;
    uint64_t dir_size;
    uint64_t dir_offset;
} Qcow2BitmapExt;

/* One directory entry, host-endian. */
typedef struct Qcow2BitmapEntry {
    uint64_t table_offset;
    uint32_t table_size;        /* entries */
    uint32_t flags;             /* QCOW2_BME_FLAG_* */
    uint8_t type;
    uint8_t granularity_bits;
    char *name;                 /* NUL-terminated; no NUL inside */
    /*
     * In memory only: the entry came from a directory whose autoclear bit
     * was clear, so its clusters may belong to someone else by now.
     */
    bool foreign;
} Qcow2BitmapEntry;

/* What the codec needs to know about the image. */
typedef struct Qcow2BitmapGeometry {
    uint64_t cluster_size;
    uint64_t disk_size;         /* virtual size */
    uint64_t file_size;         /* host file length: offsets stay below */
} Qcow2BitmapGeometry;

/* ---- qcow2-bitmap-dir.c: pure codec ---- */

Qcow2BitmapEntry *qcow2_bitmap_entry_new(const char *name);
Qcow2BitmapEntry *qcow2_bitmap_entry_dup(const Qcow2BitmapEntry *e);
void qcow2_bitmap_entry_free(Qcow2BitmapEntry *e);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(Qcow2BitmapEntry, qcow2_bitmap_entry_free)

/* Bytes the entry takes in the directory (padded to 8). */
uint64_t qcow2_bitmap_entry_size(size_t name_len);
/* Bytes of serialized bitmap data for a disk of @disk_size. */
uint64_t qcow2_bitmap_data_bytes(uint64_t disk_size, int granularity_bits);
/* Bitmap table entries a bitmap needs. */
uint64_t qcow2_bitmap_table_entries(uint64_t disk_size, int granularity_bits,
                                    uint64_t cluster_size);

/*
 * Parse and validate the extension data (QCOW2_BME_EXT_SIZE bytes).
 * Errors are "bitmaps_ext: ..." messages naming the field and value.
 */
bool qcow2_bitmap_ext_parse(const uint8_t *data, size_t len,
                            const Qcow2BitmapGeometry *g, Qcow2BitmapExt *ext,
                            GError **errp);
void qcow2_bitmap_ext_serialize(const Qcow2BitmapExt *ext,
                                uint8_t out[QCOW2_BME_EXT_SIZE]);

/*
 * Parse the directory @buf (ext->dir_size bytes) into Qcow2BitmapEntry *
 * (a new GPtrArray that frees them).  Validates the count and size against
 * @ext, every entry (flags, type, granularity, name, table placement and
 * size), duplicate names, and overlaps between the tables, the directory
 * and the header cluster.  Errors name the bitmap where there is one.
 */
GPtrArray *qcow2_bitmap_dir_parse(const uint8_t *buf,
                                  const Qcow2BitmapExt *ext,
                                  const Qcow2BitmapGeometry *g,
                                  GError **errp);
/* Serialize @entries; *size gets the byte count (may be 0). */
uint8_t *qcow2_bitmap_dir_serialize(GPtrArray *entries, uint64_t *size);

/*
 * Check one bitmap table entry (index @i of bitmap @name): reserved bits,
 * alignment, all-ones flag with an offset, offset past the end of the
 * file.  Returns false with an error naming the bitmap and index.
 */
bool qcow2_bitmap_table_entry_check(uint64_t entry, uint64_t i,
                                    const char *name,
                                    const Qcow2BitmapGeometry *g,
                                    GError **errp);

/*
 * Can bitmap @name of @granularity be stored for this geometry?  Checks
 * QEMU's limits (granularity bits, name length, bitmap size).
 */
bool qcow2_bitmap_check_constraints(const char *name, uint64_t granularity,
                                    const Qcow2BitmapGeometry *g,
                                    GError **errp);

/* ---- The driver's bitmap state (Qcow2State.bitmaps) ---- */

typedef struct Qcow2BitmapState {
    /*
     * Protects dir and by_name.  Innermost: taken under Qcow2State.lock
     * or alone, never held across I/O.
     */
    GMutex lock;
    /* Serializes the start of a write session (first write). */
    GMutex session_lock;
    /*
     * A write session is active: every stored bitmap that may change
     * (recording, or touched) is flagged in-use on disk.  Atomic.
     */
    gint session;
    bool ext_present;       /* the image had a bitmaps extension */
    /*
     * The autoclear bit was set at open: the directory describes clusters
     * that are really the bitmaps'.  If not, every bitmap is inconsistent
     * and their clusters are never freed (another program may own them).
     */
    bool trusted;
    GError *error;          /* the directory is unusable: why */
    Qcow2BitmapExt ext;     /* as on disk now (if dir->len) */
    GPtrArray *dir;         /* Qcow2BitmapEntry *: the directory on disk */
    GHashTable *by_name;    /* name -> entry of dir */
    GHashTable *touched;    /* names changed in this session (owned) */
    /*
     * The last directory update failed after writing the header and could
     * not write the old one back: the image may hold either directory, so
     * the clusters of the new one were left allocated (leaked).
     */
    bool switch_unsure;
} Qcow2BitmapState;

/* qcow2-bitmap.c (hooks for the driver: see qcow2.h) */
/* Replace the in-memory directory (takes @dir); metadata lock held. */
void qcow2_bitmap_set_dir(Qcow2BitmapState *st, GPtrArray *dir);
/* The image's geometry for the codec. */
void qcow2_bitmap_geometry(BlockDriverState *bs, Qcow2BitmapGeometry *g);
/* Copy of the on-disk entry of @name (NULL if none); st->lock not held. */
Qcow2BitmapEntry *qcow2_bitmap_find_entry(BlockDriverState *bs,
                                          const char *name);

/* qcow2-bitmap-store.c (metadata lock held) */
/*
 * Make @entries the image's directory (crash-safe: new clusters, sync,
 * header switch, sync), then free the clusters of the old directory and
 * of the tables in @free_tables (Qcow2BitmapEntry *) if they are ours.
 */
int qcow2_bitmap_write_dir(BlockDriverState *bs, GPtrArray *entries,
                           GPtrArray *free_tables, GError **errp);
/*
 * Test fault injection at the sync points of a metadata update (see
 * qcow2-bitmap-store.c and docs/interop/bitmaps.md, "Testing hooks"):
 * returns 0, or -ENOSPC for an injected failure; an injected crash does
 * not return.
 */
enum {
    QCOW2_STEP_DIR_WRITTEN = 1,     /* new bitmap directory written */
    QCOW2_STEP_DIR_SYNCED = 2,      /* ... and synced */
    QCOW2_STEP_HEADER_WRITTEN = 3,  /* header switched to it */
    QCOW2_STEP_HEADER_SYNCED = 4,   /* ... and synced: the commit point */
    QCOW2_STEP_OLD_FREED = 5,       /* old clusters freed */
    QCOW2_STEP_TABLE_WRITTEN = 6,   /* checkpoint table alone written */
    QCOW2_STEP_TABLE_SYNCED = 7,    /* ... and synced */
};
int qcow2_fault_point(int step);
/* Free a bitmap's table and data clusters (valid entries only). */
void qcow2_bitmap_free_clusters(BlockDriverState *bs,
                                const Qcow2BitmapEntry *e);
/* Store every persistent bitmap that changed; ends the write session. */
int qcow2_bitmaps_store_locked(BlockDriverState *bs, GError **errp);

#endif
