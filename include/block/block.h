/*
 * Public block layer API: open and close nodes of the node graph, and the
 * I/O entry points every front-end, the NBD server and the QMP handlers use.
 *
 * Threading: every I/O function may be called from any thread, concurrently
 * on the same node; drivers protect their own metadata.  Opening, closing
 * and graph changes happen on the main thread only.
 *
 * I/O functions return 0 (or a non-negative value where documented) on
 * success and -errno on failure.  Functions that can fail for reasons a
 * user must read take GError **errp instead.
 */
#ifndef BLOCK_BLOCK_H
#define BLOCK_BLOCK_H

#include <glib.h>
#include <json-glib/json-glib.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct BlockDriverState BlockDriverState;
typedef struct BlockDriver BlockDriver;

/* Open flags. */
#define BDRV_O_RDWR 0x0002         /* open read-write */
#define BDRV_O_NOCACHE 0x0004      /* cache.direct=on (O_DIRECT) */
#define BDRV_O_NO_FLUSH 0x0008     /* cache.no-flush=on */
#define BDRV_O_NO_BACKING 0x0010   /* do not open the backing chain */
#define BDRV_O_FORCE_SHARE 0x0020  /* -U: share every permission */
#define BDRV_O_PROTOCOL 0x0040     /* filename names a protocol node only */
#define BDRV_O_INACTIVE 0x0080     /* incoming migration: no metadata writes */
#define BDRV_O_CHECK 0x0100        /* opened by `check`: tolerate corruption */
#define BDRV_O_NO_IO 0x0200        /* metadata only (info): skip heavy loads */

/* Request flags. */
#define BDRV_REQ_FUA 0x1          /* write through to stable storage */
#define BDRV_REQ_MAY_UNMAP 0x2    /* zeroes may deallocate */
#define BDRV_REQ_NO_FALLBACK 0x4  /* zeroes: fail with -ENOTSUP if slow */
/*
 * Writes: store whole clusters of the format node compressed.  The
 * request must be cluster-aligned (the last cluster of the image may be
 * partial); drivers without support fail it with -ENOTSUP.
 */
#define BDRV_REQ_WRITE_COMPRESSED 0x8

/* Block status flags (bdrv_block_status return value). */
#define BDRV_BLOCK_DATA 0x01         /* reads come from this node's data */
#define BDRV_BLOCK_ZERO 0x02         /* reads return zeroes */
#define BDRV_BLOCK_OFFSET_VALID 0x04 /* *map is the offset in *file */
#define BDRV_BLOCK_RAW 0x08          /* for format drivers: ask *file */
#define BDRV_BLOCK_ALLOCATED 0x10    /* defined by this layer, not backing */
#define BDRV_BLOCK_EOF 0x20          /* the extent reaches end of node */
/*
 * Set by a format driver on data whose host range may be a hole (e.g.
 * qcow2 metadata preallocation): the core then asks the protocol layer
 * and reports holes there as zero, as QEMU does.
 */
#define BDRV_BLOCK_RECURSE 0x40

/* Largest request the core accepts from a caller. */
#define BDRV_REQUEST_MAX_BYTES (INT64_C(1) << 31)
/* Largest supported node size (QEMU's limit: 2^63 - 512). */
#define BDRV_MAX_LENGTH (INT64_MAX - 511)

typedef enum {
    PREALLOC_MODE_OFF = 0,
    PREALLOC_MODE_METADATA,
    PREALLOC_MODE_FALLOC,
    PREALLOC_MODE_FULL,
} PreallocMode;

/* Parse "off|metadata|falloc|full"; returns -1 if unknown. */
int prealloc_mode_parse(const char *s);
const char *prealloc_mode_name(PreallocMode m);

typedef struct BlockDriverInfo {
    uint32_t cluster_size;   /* 0 if not applicable */
    bool is_dirty;           /* the image's dirty flag (lazy refcounts) */
} BlockDriverInfo;

/*
 * Open a node (and its children).  @filename may be NULL, a path, or a
 * "json:{...}" pseudo-filename; @options (may be NULL, not consumed: it is
 * copied) holds QEMU-style options ("driver", "file", "node-name",
 * "read-only", "cache.direct", "locking", ...).  Without a "driver" the
 * format is probed from the file's first bytes.  @flags are BDRV_O_*.
 */
BlockDriverState *bdrv_open(const char *filename, JsonObject *options,
                            int flags, GError **errp);

/* Reference counting; the last unref flushes and closes the node. */
void bdrv_ref(BlockDriverState *bs);
void bdrv_unref(BlockDriverState *bs);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(BlockDriverState, bdrv_unref)

/* The node graph: named nodes (main thread only). */
BlockDriverState *bdrv_find_node(const char *node_name);
/* Iterate every node that has a node-name: pass NULL first. */
BlockDriverState *bdrv_next_node(BlockDriverState *prev);
/* Close every node the graph still holds (at shutdown). */
void bdrv_close_all(void);

/* Byte-granular I/O; the core splits and aligns as the driver needs. */
int bdrv_pread(BlockDriverState *bs, int64_t offset, int64_t bytes,
               void *buf, int flags);
int bdrv_pwrite(BlockDriverState *bs, int64_t offset, int64_t bytes,
                const void *buf, int flags);
int bdrv_pwrite_zeroes(BlockDriverState *bs, int64_t offset, int64_t bytes,
                       int flags);
int bdrv_pdiscard(BlockDriverState *bs, int64_t offset, int64_t bytes);
int bdrv_flush(BlockDriverState *bs);

/*
 * Drained section (main thread): wait until no request is in flight on
 * @bs and hold back new reads and writes until bdrv_drained_end().  The
 * caller must not issue requests on @bs itself meanwhile (its children
 * are not drained).  Sections nest.
 */
void bdrv_drained_begin(BlockDriverState *bs);
void bdrv_drained_end(BlockDriverState *bs);

/*
 * Status of [offset, offset + bytes): returns BDRV_BLOCK_* flags (>= 0) and
 * sets *pnum to the length of the extent that shares them.  For a format
 * node, DATA/ZERO are resolved through the protocol layer (so a raw image's
 * holes read as ZERO).  @map/@file may be NULL.
 */
int bdrv_block_status(BlockDriverState *bs, int64_t offset, int64_t bytes,
                      int64_t *pnum, int64_t *map, BlockDriverState **file);
/*
 * Like bdrv_block_status() but follows the backing chain: the result is
 * the status of the first layer that defines the range, and *depth (may be
 * NULL) is 1 for @bs itself, 2 for its backing file, ..., 0 if unallocated.
 */
int bdrv_block_status_above(BlockDriverState *bs, int64_t offset,
                            int64_t bytes, int64_t *pnum, int64_t *map,
                            BlockDriverState **file, int *depth);

int64_t bdrv_getlength(BlockDriverState *bs);
int bdrv_truncate(BlockDriverState *bs, int64_t offset, bool exact,
                  PreallocMode prealloc, GError **errp);
int bdrv_get_info(BlockDriverState *bs, BlockDriverInfo *bdi);
/* Format-specific info as QEMU's ImageInfoSpecific ({"type","data"}). */
JsonNode *bdrv_get_specific_info(BlockDriverState *bs, GError **errp);
/* Bytes the image occupies on the host (st_blocks * 512), or -errno. */
int64_t bdrv_get_allocated_file_size(BlockDriverState *bs);

bool bdrv_is_read_only(BlockDriverState *bs);
const char *bdrv_get_node_name(BlockDriverState *bs);
const char *bdrv_get_format_name(BlockDriverState *bs);
const char *bdrv_get_filename(BlockDriverState *bs);
BlockDriverState *bdrv_get_file(BlockDriverState *bs);
BlockDriverState *bdrv_get_backing(BlockDriverState *bs);

/* Driver registry. */
BlockDriver *bdrv_find_format(const char *name);
/* Whether @bs's driver (or, for a filter, its child's) is @name. */
bool bdrv_is_format(BlockDriverState *bs, const char *name);

/*
 * Create an image of format @fmt.  @opts holds the creation options
 * ("size", "cluster_size", "backing_file", ...); keys are consumed and an
 * unknown one is an error.
 */
bool bdrv_create(const char *fmt, const char *filename, JsonObject *opts,
                 GError **errp);

/* Consistency check (qemu-img check); see block-check.h for results. */
typedef struct BdrvCheckResult BdrvCheckResult;
typedef enum {
    BDRV_FIX_NONE = 0,
    BDRV_FIX_LEAKS = 1,
    BDRV_FIX_ERRORS = 2,
} BdrvCheckMode;

struct BdrvCheckResult {
    int corruptions;
    int leaks;
    int check_errors;
    int corruptions_fixed;
    int leaks_fixed;
    int64_t image_end_offset;
    uint64_t allocated_clusters;
    uint64_t total_clusters;
    uint64_t fragmented_clusters;
    uint64_t compressed_clusters;
};

/* Returns 0 if the check ran (results in *res), -ENOTSUP or -errno. */
int bdrv_check(BlockDriverState *bs, BdrvCheckResult *res, BdrvCheckMode fix);

#endif
