/*
 * qcow2 driver: private state and the prototypes shared by the files of
 * block/qcow2/.  See block/qcow2/README.md for who owns what and
 * docs/interop/qcow2.md for the on-disk format.
 *
 * Locking: Qcow2State.lock protects every piece of metadata (header copy,
 * L1 table, refcount table, both caches, the metadata map and the list of
 * in-flight allocations).  Functions documented "lock held" must be called
 * with it taken; guest data moves to and from the host file without it.
 */
#ifndef BLOCK_QCOW2_H
#define BLOCK_QCOW2_H

#include "block/block_int.h"
#include "qcow2-format.h"

#include <stdbool.h>
#include <stdint.h>

/* A header extension kept as raw bytes (bitmaps, unknown ones). */
typedef struct Qcow2RawExt {
    uint32_t magic;
    uint32_t len;
    uint8_t *data;
} Qcow2RawExt;

typedef struct Qcow2FeatureName {
    uint8_t type;                              /* QCOW2_FEATURE_TYPE_* */
    uint8_t bit;
    char name[QCOW2_FEATURE_NAME_SIZE + 1];    /* NUL-terminated copy */
} Qcow2FeatureName;

/* The parsed header and extensions, host-endian. */
typedef struct Qcow2Header {
    uint32_t version;
    uint64_t backing_file_offset;
    uint32_t backing_file_size;
    uint32_t cluster_bits;
    uint64_t size;
    uint32_t crypt_method;
    uint32_t l1_size;
    uint64_t l1_table_offset;
    uint64_t refcount_table_offset;
    uint32_t refcount_table_clusters;
    uint32_t nb_snapshots;
    uint64_t snapshots_offset;
    uint64_t incompatible_features;
    uint64_t compatible_features;
    uint64_t autoclear_features;
    uint32_t refcount_order;
    uint32_t header_length;
    uint8_t compression_type;
    /* Additional header fields we do not know, bytes [112, header_length). */
    uint8_t *extra_fields;
    uint32_t extra_fields_len;

    char *backing_file;        /* NULL without a backing file */
    char *backing_fmt;         /* NULL without the extension */
    GArray *features;          /* Qcow2FeatureName, from the image's table */
    /*
     * Every other extension in on-disk order, kept byte for byte: the
     * bitmaps extension (QCOW2_EXT_BITMAPS), the future checkpoint
     * extension and unknown ones.  Use qcow2_header_find_ext() and
     * qcow2_header_set_ext() to read and replace them.
     */
    GPtrArray *exts;           /* Qcow2RawExt * */
} Qcow2Header;

typedef enum {
    QCOW2_CLUSTER_UNALLOCATED,
    QCOW2_CLUSTER_ZERO_PLAIN,   /* zero flag, no host cluster */
    QCOW2_CLUSTER_ZERO_ALLOC,   /* zero flag with a preallocated cluster */
    QCOW2_CLUSTER_NORMAL,
    QCOW2_CLUSTER_COMPRESSED,
} Qcow2ClusterType;

/* Kinds of metadata, for the overlap check. */
typedef enum {
    QCOW2_META_NONE = 0,
    QCOW2_META_HEADER,
    QCOW2_META_L1,
    QCOW2_META_REFTABLE,
    QCOW2_META_REFBLOCK,
    QCOW2_META_L2,
    QCOW2_META_SNAPSHOTS,
    QCOW2_META_OTHER,          /* bitmap directory/tables, ... */
} Qcow2MetaKind;

typedef struct Qcow2Cache Qcow2Cache;

/* A guest range whose clusters are being allocated (data not yet linked). */
typedef struct Qcow2Inflight {
    uint64_t start;
    uint64_t end;
} Qcow2Inflight;

typedef struct Qcow2State {
    GMutex lock;
    GCond alloc_cond;           /* an in-flight allocation ended */
    Qcow2Header hdr;

    int cluster_bits;
    uint64_t cluster_size;
    int l2_bits;                /* log2(entries per L2 table) */
    uint64_t l2_entries;
    /*
     * The L2 cache holds slices of L2 tables (l2-cache-entry-size bytes,
     * a power of two up to the cluster size): scattered writes cache one
     * slice each, not a whole table.
     */
    uint64_t l2_slice_entries;
    int refcount_order;
    uint64_t refcount_max;
    int refblock_bits;          /* log2(entries per refcount block) */
    uint64_t refblock_entries;
    int csize_shift;            /* compressed descriptor split */
    uint64_t csize_mask;
    uint64_t cluster_offset_mask;
    uint64_t size;              /* virtual disk size */

    uint64_t *l1_table;         /* host-endian copy of the active L1 */
    uint32_t l1_size;
    uint64_t l1_offset;
    uint64_t *reftable;         /* host-endian copy of the refcount table */
    uint64_t reftable_size;     /* entries */
    uint64_t reftable_offset;

    uint64_t free_cluster_index; /* no free cluster below this one */
    uint64_t file_len;          /* host file length (we grow it) */
    uint64_t alloc_end;         /* end of what the image uses in the file */
    uint64_t fresh_offset;      /* host clusters from here never written */
    /* Next free byte for compressed data inside a host cluster, or 0. */
    uint64_t compressed_cursor;

    Qcow2Cache *l2_cache;
    Qcow2Cache *refblock_cache;
    GArray *meta;               /* sorted (cluster << 3 | kind), see overlap */
    GArray *meta_other;         /* same for QCOW2_META_OTHER (bitmaps...) */
    GPtrArray *inflight;        /* Qcow2Inflight * */

    bool writable;
    bool lazy_refcounts;        /* compatible bit set: skip ordering syncs */
    bool dirty_on_disk;         /* dirty bit currently set in the file */
    bool corrupt_reported;
    bool pass_discard;          /* punch holes for freed clusters */
    int compression_type;
    struct Qcow2BitmapState *bitmaps;   /* qcow2-bitmap.c */
    struct Qcow2CkptState *checkpoints; /* qcow2-checkpoint.c */
} Qcow2State;

/* Size helpers. */
static inline uint64_t qcow2_offset_in_cluster(Qcow2State *s, uint64_t off)
{
    return off & (s->cluster_size - 1);
}

static inline uint64_t qcow2_size_to_clusters(Qcow2State *s, uint64_t size)
{
    return (size >> s->cluster_bits) +
           ((size & (s->cluster_size - 1)) != 0);
}

/* qcow2-header.c: parse, validate, serialize; pure functions. */
void qcow2_header_clear(Qcow2Header *h);
/*
 * Parse the first @len bytes of an image (the first cluster or the whole
 * file if shorter) into @h.  @file_size bounds table offsets.  Every
 * problem sets @errp with a message naming the field.
 */
bool qcow2_header_parse(const uint8_t *buf, size_t len, uint64_t file_size,
                        Qcow2Header *h, GError **errp);
/*
 * Serialize @h (header, extensions, end marker, backing file name) into
 * @buf of @buf_size bytes (zero-filled first).  Updates
 * h->backing_file_offset.  Returns the bytes used or -ENOSPC with @errp
 * set when they do not fit.
 */
int qcow2_header_serialize(Qcow2Header *h, uint8_t *buf, size_t buf_size,
                           GError **errp);
const Qcow2RawExt *qcow2_header_find_ext(const Qcow2Header *h,
                                         uint32_t magic);
/* Replace or add (at the end) extension @magic; @data NULL removes it. */
void qcow2_header_set_ext(Qcow2Header *h, uint32_t magic, const void *data,
                          uint32_t len);
/* "name (incompatible bit N)" or "Unknown incompatible feature bit N". */
char *qcow2_feature_describe(const Qcow2Header *h, int type, int bit);
void qcow2_header_set_std_features(Qcow2Header *h);

/* qcow2-header.c: I/O on the header of an open image (lock held). */
/* Rewrite the whole header cluster from s->hdr; -ENOSPC if too big. */
int qcow2_update_header(BlockDriverState *bs);
int qcow2_write_header_field(BlockDriverState *bs, int offset, int width,
                             uint64_t value);
int qcow2_mark_dirty(BlockDriverState *bs);
int qcow2_mark_clean(BlockDriverState *bs);
/* Set the corrupt bit (once), report why, and make the image read-only. */
void qcow2_signal_corruption(BlockDriverState *bs, const char *fmt, ...)
    G_GNUC_PRINTF(2, 3);
void qcow2_geometry_from_header(Qcow2State *s);

/* qcow2-overlap.c: the map of metadata clusters (lock held). */
void qcow2_meta_reset(Qcow2State *s);
void qcow2_meta_add(Qcow2State *s, uint64_t offset, uint64_t size,
                    Qcow2MetaKind kind);
void qcow2_meta_remove(Qcow2State *s, uint64_t offset, uint64_t size);
/*
 * Which metadata (other than @self at exactly @offset) intersects
 * [offset, offset + size); QCOW2_META_NONE if nothing.
 */
Qcow2MetaKind qcow2_meta_overlap(Qcow2State *s, Qcow2MetaKind self,
                                 uint64_t offset, uint64_t size);
const char *qcow2_meta_name(Qcow2MetaKind kind);
/* Overlap check before a write: marks the image corrupt, returns -EIO. */
int qcow2_pre_write_check(BlockDriverState *bs, Qcow2MetaKind self,
                          uint64_t offset, uint64_t size);
/* Write entry @i of an 8-byte-entry table (L1, refcount table) at
 * @table_offset, big-endian, after the overlap check for @kind. */
int qcow2_write_table_entry(BlockDriverState *bs, Qcow2MetaKind kind,
                            uint64_t table_offset, uint64_t i, uint64_t value);
/* Rebuild the map from the L1 and refcount tables. */
void qcow2_meta_build(Qcow2State *s);

/* qcow2-cache.c (lock held). */
Qcow2Cache *qcow2_cache_new(int tables, uint64_t table_size,
                            Qcow2MetaKind kind);
void qcow2_cache_free(Qcow2Cache *c);
int qcow2_cache_get(BlockDriverState *bs, Qcow2Cache *c, uint64_t offset,
                    void **table);
int qcow2_cache_get_empty(BlockDriverState *bs, Qcow2Cache *c,
                          uint64_t offset, void **table);
void qcow2_cache_put(Qcow2Cache *c, void **table);
void qcow2_cache_mark_dirty(Qcow2Cache *c, void *table);
/* Write dirty tables (dependencies first); no sync of our own. */
int qcow2_cache_write(BlockDriverState *bs, Qcow2Cache *c);
/* Write dirty tables and sync the host file. */
int qcow2_cache_flush(BlockDriverState *bs, Qcow2Cache *c);
/* Tables of @c may only reach the disk after those of @dep are synced. */
int qcow2_cache_set_dependency(BlockDriverState *bs, Qcow2Cache *c,
                               Qcow2Cache *dep);
/* Forget the tables in [offset, offset + bytes) (their cluster was freed
 * or rewritten behind the cache); their changes are dropped. */
void qcow2_cache_discard(Qcow2Cache *c, uint64_t offset, uint64_t bytes);
/* Drop every clean table; fails with -EBUSY if some are dirty or in use. */
int qcow2_cache_empty(BlockDriverState *bs, Qcow2Cache *c);
int qcow2_cache_num_tables(Qcow2Cache *c);
/* Whether some table of @c has changes not yet written. */
bool qcow2_cache_has_dirty(Qcow2Cache *c);

/* qcow2-refcount.c (lock held). */
int qcow2_refcount_init(BlockDriverState *bs, GError **errp);
void qcow2_refcount_close(BlockDriverState *bs);
uint64_t qcow2_refblock_get(const void *block, uint64_t index, int order);
void qcow2_refblock_set(void *block, uint64_t index, int order,
                        uint64_t value);
int qcow2_get_refcount(BlockDriverState *bs, uint64_t cluster_index,
                       uint64_t *refcount);
/* Allocate @size bytes of contiguous clusters; returns the host offset. */
int64_t qcow2_alloc_clusters(BlockDriverState *bs, uint64_t size);
/* Same; *fresh says whether the clusters were never written (read zero). */
int64_t qcow2_alloc_clusters_fresh(BlockDriverState *bs, uint64_t size,
                                   bool *fresh);
/* At least one and up to @max contiguous clusters; *count says how many. */
int64_t qcow2_alloc_clusters_upto(BlockDriverState *bs, uint64_t max,
                                  uint64_t *count, bool *fresh);
/* Add @addend (may be negative) to the refcount of every cluster touched. */
int qcow2_update_refcount(BlockDriverState *bs, uint64_t offset,
                          uint64_t length, int64_t addend);
int qcow2_free_clusters(BlockDriverState *bs, uint64_t offset,
                        uint64_t size);
/* Release whatever host clusters an L2 entry references. */
int qcow2_free_any_cluster(BlockDriverState *bs, uint64_t l2_entry);
/*
 * Grow the host file so that it covers @end (under the lock).  The file
 * grows in chunks (one ftruncate per many allocations); qcow2_trim_file()
 * cuts the unused tail again when the image is closed.
 */
int qcow2_grow_file(BlockDriverState *bs, uint64_t end);
int qcow2_trim_file(BlockDriverState *bs);

/* qcow2-cluster.c (lock held). */
int qcow2_l1_load(BlockDriverState *bs, GError **errp);
Qcow2ClusterType qcow2_l2_entry_type(Qcow2State *s, uint64_t l2_entry);
/* Host byte range a compressed descriptor covers. */
void qcow2_compressed_range(Qcow2State *s, uint64_t l2_entry,
                            uint64_t *offset, uint64_t *bytes);
/*
 * Map [offset, offset + bytes): the type of the cluster at @offset, how
 * many bytes from @offset share it (host-contiguous for NORMAL, one
 * cluster for COMPRESSED), the host offset for @offset and its L2 entry.
 * Checks the entry; a bad one marks the image corrupt and gives -EIO.
 */
int qcow2_get_mapping(BlockDriverState *bs, uint64_t offset, uint64_t bytes,
                      uint64_t *pnum, uint64_t *host, uint64_t *l2_entry,
                      Qcow2ClusterType *type);
/*
 * From @offset's cluster, count up to @max clusters (same L2 slice) that
 * a write must allocate; 0 if the first one is NORMAL with COPIED.
 */
int qcow2_count_alloc_clusters(BlockDriverState *bs, uint64_t offset,
                               uint64_t max, uint64_t *count);
/* Make sure the L2 table for guest @offset exists (allocate it). */
int qcow2_prepare_l2(BlockDriverState *bs, uint64_t offset);
/* Point @count guest clusters from @offset at host clusters from @host. */
int qcow2_link_clusters(BlockDriverState *bs, uint64_t offset,
                        uint64_t count, uint64_t host);
/* Whole clusters only: make them read as zero (or unallocated). */
int qcow2_zero_clusters(BlockDriverState *bs, uint64_t offset,
                        uint64_t count, bool unmap);
int qcow2_discard_clusters(BlockDriverState *bs, uint64_t offset,
                           uint64_t count, bool full);
int qcow2_grow_l1(BlockDriverState *bs, uint64_t min_size);
/* Preallocate metadata and data clusters for [offset, end). */
int qcow2_preallocate(BlockDriverState *bs, uint64_t offset, uint64_t end);
uint64_t qcow2_l1_size_for(Qcow2State *s, uint64_t size);

/* qcow2-io.c: the data path (takes the lock itself). */
int qcow2_pread(BlockDriverState *bs, int64_t offset, int64_t bytes,
                void *buf, int flags);
int qcow2_pwrite(BlockDriverState *bs, int64_t offset, int64_t bytes,
                 const void *buf, int flags);
int qcow2_pwrite_zeroes(BlockDriverState *bs, int64_t offset, int64_t bytes,
                        int flags);
int qcow2_pdiscard(BlockDriverState *bs, int64_t offset, int64_t bytes);
int qcow2_block_status(BlockDriverState *bs, bool want_zero, int64_t offset,
                       int64_t bytes, int64_t *pnum, int64_t *map,
                       BlockDriverState **file);
/* Write dirty L2 tables and refcount blocks, in dependency order. */
int qcow2_write_caches(BlockDriverState *bs);
/* Read host bytes, zero-filling past the end of the file. */
int qcow2_read_host(BlockDriverState *bs, uint64_t offset, uint64_t bytes,
                    void *buf);

/* qcow2-compress.c */
int qcow2_decompress(int type, uint8_t *dest, size_t dest_size,
                     const uint8_t *src, size_t src_size);

/* qcow2-compress-write.c: BDRV_REQ_WRITE_COMPRESSED (takes the lock). */
int qcow2_pwrite_compressed(BlockDriverState *bs, int64_t offset,
                            int64_t bytes, const void *buf, int flags);

/* qcow2-check.c */
typedef struct Qcow2CheckRefs Qcow2CheckRefs;
/* The repair mode of the running check (for the bitmap walker). */
BdrvCheckMode qcow2_check_fix_mode(Qcow2CheckRefs *r);
/* For the check walkers: one more reference to each cluster touched. */
int qcow2_check_inc_refs(Qcow2CheckRefs *r, uint64_t offset, uint64_t size);
int qcow2_check(BlockDriverState *bs, BdrvCheckResult *res,
                BdrvCheckMode fix);
/* Rebuild refcounts after an unclean shutdown (dirty bit); lock held. */
int qcow2_repair_dirty(BlockDriverState *bs, GError **errp);

/*
 * qcow2-bitmap.c: persistent dirty bitmaps (bitmaps extension, autoclear
 * bit 0).  The hooks below are what the rest of the driver calls.
 */
/* After the header is parsed and tables are loaded (open). */
int qcow2_bitmaps_open(BlockDriverState *bs, GError **errp);
/* Before close or inactivation: store what must be stored. */
int qcow2_bitmaps_store(BlockDriverState *bs);
/* Add "bitmaps" to the format-specific info (between lazy-refcounts and
 * refcount-bits, where qemu-img shows it). */
void qcow2_bitmaps_info(BlockDriverState *bs, JsonObject *data);
/* Before close (after the store): free the bitmap state. */
void qcow2_bitmaps_close(BlockDriverState *bs);
/*
 * First thing in every guest write, write-zeroes, discard and resize,
 * without the lock: flags bitmaps in-use on disk before the first change.
 */
int qcow2_bitmaps_before_write(BlockDriverState *bs);
/* BlockDriver.bitmap_ops. */
extern const struct BdrvBitmapDriverOps qcow2_bitmap_ops;
/* qemu-img check: count the clusters bitmaps use. */
int qcow2_bitmaps_check_refs(BlockDriverState *bs, Qcow2CheckRefs *r,
                             BdrvCheckResult *res);

/* qcow2-create.c */
bool qcow2_create(const char *filename, JsonObject *opts, GError **errp);

#endif
