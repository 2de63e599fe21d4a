/*
 * For drivers only: the BlockDriver vtable and the fields of a node.
 * Front-ends and servers use include/block/block.h.
 */
#ifndef BLOCK_BLOCK_INT_H
#define BLOCK_BLOCK_INT_H

#include "block/block.h"
#include "qapi/error.h"

struct BlockDriver {
    const char *format_name;
    size_t instance_size;         /* bytes of bs->opaque, zeroed at open */
    bool is_protocol;             /* accesses the host (file) */
    bool is_format;               /* sits on a protocol child "file" */
    bool supports_backing;
    /*
     * Format drivers whose metadata would break if another process wrote
     * or resized the file (qcow2) set this: they take the "resize"
     * permission when writable and refuse to share "write" and "resize".
     */
    bool needs_exclusive_file;
    /* pwrite accepts BDRV_REQ_WRITE_COMPRESSED. */
    bool supports_compressed_writes;

    /* Score 0..100 that @buf (the first bytes) is this format. */
    int (*probe)(const uint8_t *buf, int buf_size, const char *filename);

    /*
     * Open: take the options the driver understands from @opts (see
     * util/options.h); the core rejects whatever is left.  A format
     * driver's bs->file is already open when this is called.
     */
    int (*open)(BlockDriverState *bs, JsonObject *opts, int flags,
                GError **errp);
    void (*close)(BlockDriverState *bs);

    /*
     * Data path.  The core guarantees: offset/bytes within the node (for
     * reads and writes), aligned to bs->request_alignment, bytes <=
     * bs->max_transfer (if set), node writable for writes.
     */
    int (*pread)(BlockDriverState *bs, int64_t offset, int64_t bytes,
                 void *buf, int flags);
    int (*pwrite)(BlockDriverState *bs, int64_t offset, int64_t bytes,
                  const void *buf, int flags);
    int (*pwrite_zeroes)(BlockDriverState *bs, int64_t offset, int64_t bytes,
                         int flags);
    int (*pdiscard)(BlockDriverState *bs, int64_t offset, int64_t bytes);
    int (*flush)(BlockDriverState *bs);           /* to stable storage */
    /*
     * Status of the extent at @offset (length <= @bytes, may be shorter).
     * Returns BDRV_BLOCK_* or -errno and sets *pnum (> 0), and when
     * OFFSET_VALID is returned, *map and *file.  A format driver may return
     * BDRV_BLOCK_RAW (with OFFSET_VALID) to let the core ask *file.
     * Unallocated extents in an image with a backing file return 0.
     */
    int (*block_status)(BlockDriverState *bs, bool want_zero, int64_t offset,
                        int64_t bytes, int64_t *pnum, int64_t *map,
                        BlockDriverState **file);

    int64_t (*getlength)(BlockDriverState *bs);
    /*
     * Optional: a length the request path may check against without a
     * system call.  It may lag behind growth by other processes but never
     * exceeds the real length; a request beyond it falls back to
     * getlength, which refreshes it.
     */
    int64_t (*cached_length)(BlockDriverState *bs);
    int64_t (*get_allocated_file_size)(BlockDriverState *bs);
    int (*truncate)(BlockDriverState *bs, int64_t offset, bool exact,
                    PreallocMode prealloc, GError **errp);
    int (*get_info)(BlockDriverState *bs, BlockDriverInfo *bdi);
    JsonNode *(*get_specific_info)(BlockDriverState *bs, GError **errp);
    int (*check)(BlockDriverState *bs, BdrvCheckResult *res,
                 BdrvCheckMode fix);

    /* Image creation: consume @opts keys, fail on bad values. */
    bool (*create)(const char *filename, JsonObject *opts, GError **errp);

    /*
     * Called before the node is closed or goes inactive (migration): store
     * persistent state (e.g. bitmaps).  Optional.
     */
    int (*inactivate)(BlockDriverState *bs);

    /* Persistent dirty bitmaps: see include/block/dirty-bitmap.h. */
    const struct BdrvBitmapDriverOps *bitmap_ops;
    /* Checkpoints: see include/block/checkpoint-ops.h. */
    const struct BdrvCheckpointDriverOps *checkpoint_ops;

    /*
     * Protocol drivers: take the permissions @perm (BLK_PERM_*) and let
     * other processes have only @shared, using file locks that QEMU
     * understands.  Fails if another process conflicts.
     */
    bool (*set_perm)(BlockDriverState *bs, uint64_t perm, uint64_t shared,
                     GError **errp);
};

/* Permissions, with QEMU's bit numbers (they select the lock bytes). */
#define BLK_PERM_CONSISTENT_READ 0x01
#define BLK_PERM_WRITE 0x02
#define BLK_PERM_WRITE_UNCHANGED 0x04
#define BLK_PERM_RESIZE 0x08
#define BLK_PERM_ALL 0x0f

typedef struct BdrvDirtyBitmap BdrvDirtyBitmap;

struct BlockDriverState {
    const BlockDriver *drv;
    void *opaque;
    int refcnt;
    int open_flags;            /* BDRV_O_* */
    bool read_only;
    bool named;                /* node_name was given by the user */
    char *node_name;
    char *filename;            /* what the user gave, or the child's */
    char *exact_filename;      /* plain path when there is one */
    JsonObject *full_options;  /* options used to open (for display) */

    BlockDriverState *file;    /* protocol child of a format node */
    BlockDriverState *backing; /* backing node, if any */
    char *backing_file;        /* as recorded in the image */
    char *backing_format;

    /* I/O limits set by the driver at open time. */
    uint32_t request_alignment; /* power of two, >= 1 */
    uint64_t max_transfer;      /* 0: no limit */

    /*
     * Dirty bitmaps attached to this node; each write marks the recording
     * ones.  Protected by dirty_bitmap_lock (which also guards their bits).
     */
    GMutex dirty_bitmap_lock;
    GPtrArray *dirty_bitmaps;   /* BdrvDirtyBitmap * */
    GPtrArray *recording_bitmaps; /* the recording ones (dirty-bitmap.c) */

    /* Counts requests in flight, so graph changes can wait for them. */
    gint in_flight;
    /* > 0 inside bdrv_drained_begin/end: new requests wait (io.c). */
    gint quiesce_counter;
};

/* Registration of the built-in drivers (called once by the core). */
extern const BlockDriver bdrv_file;
extern const BlockDriver bdrv_raw;
extern const BlockDriver bdrv_qcow2;

/* Helpers for drivers. */
void bdrv_set_read_only_error(BlockDriverState *bs, GError **errp);

/*
 * Called by io.c after a successful write/zero/discard to mark every
 * recording bitmap of @bs (implemented in block/dirty-bitmap.c).
 */
void bdrv_dirty_bitmaps_mark(BlockDriverState *bs, int64_t offset,
                             int64_t bytes);

#endif
