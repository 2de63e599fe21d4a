/*
 * Hierarchical dirty bitmap: one bit per `granularity` bytes of a disk of
 * `size` bytes, with summary levels above the bits so that searching for the
 * next dirty bit skips clean regions in O(levels) time, and an exact count of
 * dirty bits kept up to date on every change.
 *
 * Conventions shared by every function below:
 *  - Offsets and lengths are in BYTES of the disk.  Bit i covers the bytes
 *    [i * granularity, min((i + 1) * granularity, size)); the last bit may
 *    cover less than a full granule.
 *  - A byte range [offset, offset + bytes) is rounded OUT to whole bits:
 *    setting one byte dirties the whole granule that holds it.
 *  - offset + bytes may exceed the disk size or even overflow uint64_t; the
 *    range is clamped to [0, size).  bytes == UINT64_MAX means "to the end".
 *  - The granularity is a power of two from 512 B to 2 GiB; the size is at
 *    most INT64_MAX so that every offset fits the int64_t search results.
 *  - Not thread-safe: callers hold whatever lock protects the bitmap.
 *
 * Serialization uses the qcow2 bitmap data layout (docs/interop/qcow2.txt,
 * "Bitmap data"): bit i of the bitmap is bit (i % 8), counted from the least
 * significant bit, of byte i / 8.  Unused bits of the last byte are zero.
 */
#ifndef UTIL_HBITMAP_H
#define UTIL_HBITMAP_H

#include <glib.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct HBitmap HBitmap;

#define HBITMAP_MIN_GRANULARITY ((uint64_t)512)
#define HBITMAP_MAX_GRANULARITY ((uint64_t)1 << 31)

/*
 * Create an all-clean bitmap.  Returns NULL if the granularity is not a
 * power of two in [512, 2 GiB], if size > INT64_MAX, or if memory is short.
 */
HBitmap *hbitmap_try_new(uint64_t size, uint64_t granularity);
/* Like hbitmap_try_new(), but aborts if memory is short.  Still returns
 * NULL for invalid arguments. */
HBitmap *hbitmap_new(uint64_t size, uint64_t granularity);
void hbitmap_free(HBitmap *hb);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(HBitmap, hbitmap_free)

uint64_t hbitmap_size(const HBitmap *hb);
uint64_t hbitmap_granularity(const HBitmap *hb);
/* Number of bits: ceil(size / granularity). */
uint64_t hbitmap_nb_bits(const HBitmap *hb);
/* Heap bytes held by the bitmap (structure plus every level). */
size_t hbitmap_mem_usage(const HBitmap *hb);

/* Mark dirty / clean every granule that overlaps [offset, offset + bytes). */
void hbitmap_set(HBitmap *hb, uint64_t offset, uint64_t bytes);
void hbitmap_reset(HBitmap *hb, uint64_t offset, uint64_t bytes);
void hbitmap_set_all(HBitmap *hb);
void hbitmap_reset_all(HBitmap *hb);

/* Whether the granule holding byte `offset` is dirty; false past the end. */
bool hbitmap_get(const HBitmap *hb, uint64_t offset);

/* Dirty bytes: dirty bits * granularity, with the last bit counting only
 * the bytes it covers below size.  O(1). */
uint64_t hbitmap_count(const HBitmap *hb);
/* Dirty bits.  O(1). */
uint64_t hbitmap_count_bits(const HBitmap *hb);
bool hbitmap_is_empty(const HBitmap *hb);

/*
 * First dirty (resp. clean) byte at or after `offset` inside
 * [offset, offset + bytes) clamped to the disk, or -1 if there is none.
 * The result is `offset` itself when its granule qualifies, else the start
 * of the first qualifying granule.  Bytes past `size` are neither dirty nor
 * clean.  next_dirty costs O(levels) however much clean space it skips;
 * next_clean walks the dirty run 64 bits per step.
 */
int64_t hbitmap_next_dirty(const HBitmap *hb, uint64_t offset, uint64_t bytes);
int64_t hbitmap_next_clean(const HBitmap *hb, uint64_t offset, uint64_t bytes);

/*
 * Find the first dirty extent that overlaps [offset, end) (end clamped to
 * size).  On success stores its start (at least `offset`) and its length
 * (cut at `end` and at `max_bytes`) and returns true.  Returns false, with
 * the outputs untouched, if the range holds no dirty byte or max_bytes == 0.
 */
bool hbitmap_next_dirty_area(const HBitmap *hb, uint64_t offset, uint64_t end,
                             uint64_t max_bytes, uint64_t *dirty_start,
                             uint64_t *dirty_bytes);

/*
 * Call @fn(start, bytes, opaque) for each maximal dirty area overlapping
 * [offset, end), in order, clamped to that range and to the size; @fn
 * returns false to stop.  The same areas as repeated
 * hbitmap_next_dirty_area() calls, a few times faster on sparse bitmaps.
 */
typedef bool (*HBitmapAreaFn)(uint64_t start, uint64_t bytes, void *opaque);
void hbitmap_walk_dirty_areas(const HBitmap *hb, uint64_t offset,
                              uint64_t end, HBitmapAreaFn fn, void *opaque);

/* True if [offset, offset + bytes) (clamped) has no dirty (resp. no clean)
 * granule.  An empty range is vacuously both. */
bool hbitmap_range_all_clean(const HBitmap *hb, uint64_t offset,
                             uint64_t bytes);
bool hbitmap_range_all_dirty(const HBitmap *hb, uint64_t offset,
                             uint64_t bytes);

/* Same size and granularity. */
bool hbitmap_can_merge(const HBitmap *a, const HBitmap *b);
/* dst |= src.  Returns false and leaves dst alone if they cannot merge. */
bool hbitmap_merge(HBitmap *dst, const HBitmap *src);
HBitmap *hbitmap_copy(const HBitmap *hb);

/*
 * Change the disk size.  Bits wholly beyond the new size are dropped;
 * growing adds clean bits.  A bit that stays (even if it becomes or stops
 * being the partial last bit) keeps its value.  new_size > INT64_MAX is
 * ignored with a critical warning.
 */
void hbitmap_truncate(HBitmap *hb, uint64_t new_size);

/*
 * Serialization in the qcow2 layout.  A serialized range must start at a
 * multiple of hbitmap_serialization_align() (= granularity * 8, so that it
 * starts on a byte of the serialized data); its length may be anything.
 * The bits of the range are those of the clamped, rounded-out byte range,
 * i.e. bits [offset / gran, ceil(min(offset + bytes, size) / gran)).
 *
 * serialization_size: bytes of serialized data for that range
 *     (ceil(bits / 8)); 0 for an empty range.
 * serialize_part: writes that many bytes to buf; bits of the last byte
 *     past the range are written as zero.
 * deserialize_part: OVERWRITES the bits of the range from buf (it does not
 *     OR); bits of the last byte past the range, including any past the
 *     disk size, are ignored.  The bitmap is consistent after every call;
 *     `finish` is accepted for callers that batch, and has no effect.
 * deserialize_zeroes / _ones: the range becomes clean / dirty (the
 *     counterpart of an all-zeroes / all-ones qcow2 bitmap cluster).
 *
 * A misaligned offset is a programming error and fails an assertion.
 */
uint64_t hbitmap_serialization_align(const HBitmap *hb);
uint64_t hbitmap_serialization_size(const HBitmap *hb, uint64_t offset,
                                    uint64_t bytes);
void hbitmap_serialize_part(const HBitmap *hb, uint8_t *buf, uint64_t offset,
                            uint64_t bytes);
void hbitmap_deserialize_part(HBitmap *hb, const uint8_t *buf,
                              uint64_t offset, uint64_t bytes, bool finish);
void hbitmap_deserialize_zeroes(HBitmap *hb, uint64_t offset, uint64_t bytes);
void hbitmap_deserialize_ones(HBitmap *hb, uint64_t offset, uint64_t bytes);

/* SHA-256 of the whole serialized bitmap, zero-padded to whole 64-bit
 * words as QEMU hashes it, as 64 lowercase hex digits and a NUL. */
void hbitmap_sha256(const HBitmap *hb, char out[65]);

/* For tests: every summary bit matches the level below, padding bits are
 * clear and the dirty count is exact.  Logs the first mismatch (g_debug). */
bool hbitmap_check_invariants(const HBitmap *hb);

#endif /* UTIL_HBITMAP_H */
