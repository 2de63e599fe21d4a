/*
 * Request entry points: range and overflow checks, read-only enforcement,
 * alignment (read-modify-write) and splitting to the driver's limits,
 * block status through protocol and backing layers, and marking dirty
 * bitmaps after successful writes.
 */
#include "block/block_int.h"
#include "util/align.h"

#include <errno.h>
#include <string.h>

/* Validate a request against the node size; -EIO like QEMU otherwise. */
static int check_request(BlockDriverState *bs, int64_t offset, int64_t bytes)
{
    int64_t len, end;

    if (offset < 0 || bytes < 0 || __builtin_add_overflow(offset, bytes, &end)) {
        return -EIO;
    }
    /* The hot path avoids a system call per request on protocol nodes. */
    if (bs->drv->cached_length && end <= bs->drv->cached_length(bs)) {
        return 0;
    }
    len = bdrv_getlength(bs);
    if (len < 0) {
        return (int)len;
    }
    if (end > len) {
        return -EIO;
    }
    return 0;
}

/*
 * Drained sections (bdrv_drained_begin/end): requests entering a node
 * whose quiesce_counter is positive wait until it drops to zero, and the
 * drainer waits until in_flight is zero.  A request counts itself in
 * in_flight before it looks at the counter, so no request slips past a
 * drainer that already saw in_flight == 0.
 */
static GMutex drain_lock;
static GCond drain_cond;

static void req_exit(BlockDriverState *bs)
{
    if (g_atomic_int_dec_and_test(&bs->in_flight) &&
        g_atomic_int_get(&bs->quiesce_counter)) {
        g_mutex_lock(&drain_lock);
        g_cond_broadcast(&drain_cond);
        g_mutex_unlock(&drain_lock);
    }
}

static void req_enter(BlockDriverState *bs)
{
    for (;;) {
        g_atomic_int_inc(&bs->in_flight);
        if (G_LIKELY(!g_atomic_int_get(&bs->quiesce_counter))) {
            return;
        }
        req_exit(bs);
        g_mutex_lock(&drain_lock);
        while (g_atomic_int_get(&bs->quiesce_counter)) {
            g_cond_wait(&drain_cond, &drain_lock);
        }
        g_mutex_unlock(&drain_lock);
    }
}

void bdrv_drained_begin(BlockDriverState *bs)
{
    g_atomic_int_inc(&bs->quiesce_counter);
    g_mutex_lock(&drain_lock);
    while (g_atomic_int_get(&bs->in_flight) > 0) {
        g_cond_wait(&drain_cond, &drain_lock);
    }
    g_mutex_unlock(&drain_lock);
}

void bdrv_drained_end(BlockDriverState *bs)
{
    g_mutex_lock(&drain_lock);
    g_atomic_int_add(&bs->quiesce_counter, -1);
    g_cond_broadcast(&drain_cond);
    g_mutex_unlock(&drain_lock);
}

static int check_write(BlockDriverState *bs, int64_t offset, int64_t bytes);

static int64_t max_chunk(BlockDriverState *bs)
{
    int64_t max = BDRV_REQUEST_MAX_BYTES;

    if (bs->max_transfer && (int64_t)bs->max_transfer < max) {
        max = bs->max_transfer;
    }
    return ROUND_DOWN(max, (int64_t)bs->request_alignment);
}

/* Pass a request to the driver in chunks of at most its max transfer. */
static int drv_rw_split(BlockDriverState *bs, int64_t offset, int64_t bytes,
                        uint8_t *rbuf, const uint8_t *wbuf, int flags)
{
    int64_t chunk = max_chunk(bs);

    for (int64_t done = 0; done < bytes;) {
        int64_t n = MIN(bytes - done, chunk);
        int ret = wbuf ? bs->drv->pwrite(bs, offset + done, n, wbuf + done,
                                         flags)
                       : bs->drv->pread(bs, offset + done, n, rbuf + done,
                                        flags);
        if (ret < 0) {
            return ret;
        }
        done += n;
    }
    return 0;
}

static int drv_pread_split(BlockDriverState *bs, int64_t offset,
                           int64_t bytes, uint8_t *buf, int flags)
{
    return drv_rw_split(bs, offset, bytes, buf, NULL, flags);
}

static int drv_pwrite_split(BlockDriverState *bs, int64_t offset,
                            int64_t bytes, const uint8_t *buf, int flags)
{
    return drv_rw_split(bs, offset, bytes, NULL, buf, flags);
}

/* Read into @buf, widening to the alignment with a bounce buffer. */
static int aligned_pread(BlockDriverState *bs, int64_t offset, int64_t bytes,
                         uint8_t *buf, int flags)
{
    int64_t align = bs->request_alignment;
    int64_t start = ROUND_DOWN(offset, align);
    int64_t end = ROUND_UP(offset + bytes, align);
    g_autofree uint8_t *bounce = NULL;
    int ret;

    if (start == offset && end == offset + bytes) {
        return drv_pread_split(bs, offset, bytes, buf, flags);
    }
    bounce = g_try_malloc(end - start);
    if (!bounce) {
        return -ENOMEM;
    }
    ret = drv_pread_split(bs, start, end - start, bounce, flags);
    if (ret == 0) {
        memcpy(buf, bounce + (offset - start), bytes);
    }
    return ret;
}

/*
 * Enter @bs (waiting out a drained section, during which the driver may be
 * reopened) and only then check the request against it.  Returns 0 with
 * the request counted in flight, or -errno (or 1 for an empty request)
 * with nothing to undo.
 */
static int enter_checked(BlockDriverState *bs, int64_t offset, int64_t bytes,
                         bool write)
{
    int ret;

    req_enter(bs);
    ret = write ? check_write(bs, offset, bytes)
                : check_request(bs, offset, bytes);
    if (ret < 0 || bytes == 0) {
        req_exit(bs);
        return ret < 0 ? ret : 1;
    }
    return 0;
}

int bdrv_pread(BlockDriverState *bs, int64_t offset, int64_t bytes,
               void *buf, int flags)
{
    int ret = enter_checked(bs, offset, bytes, false);

    if (ret != 0) {
        return MIN(ret, 0);
    }
    ret = bs->drv->pread ? aligned_pread(bs, offset, bytes, buf, flags)
                         : -ENOTSUP;
    req_exit(bs);
    return ret;
}

static int check_write(BlockDriverState *bs, int64_t offset, int64_t bytes)
{
    if (bs->read_only) {
        return -EPERM;
    }
    if (bs->open_flags & BDRV_O_INACTIVE) {
        return -EPERM;
    }
    return check_request(bs, offset, bytes);
}

/*
 * Unaligned writes read the surrounding blocks first.  Such writes are
 * rare (alignment is 1 except with O_DIRECT), so one lock per node
 * serializing them is enough to keep two of them from racing.
 */
static GMutex rmw_lock;

static int aligned_pwrite(BlockDriverState *bs, int64_t offset,
                          int64_t bytes, const uint8_t *buf, int flags)
{
    int64_t align = bs->request_alignment;
    int64_t start = ROUND_DOWN(offset, align);
    int64_t end = ROUND_UP(offset + bytes, align);
    g_autofree uint8_t *bounce = NULL;
    int ret;

    if (start == offset && end == offset + bytes) {
        return drv_pwrite_split(bs, offset, bytes, buf, flags);
    }
    bounce = g_try_malloc(end - start);
    if (!bounce) {
        return -ENOMEM;
    }
    g_mutex_lock(&rmw_lock);
    ret = drv_pread_split(bs, start, align, bounce, 0);
    if (ret == 0 && end - align > start) {
        ret = drv_pread_split(bs, end - align, align,
                              bounce + (end - align - start), 0);
    }
    if (ret == 0) {
        memcpy(bounce + (offset - start), buf, bytes);
        ret = drv_pwrite_split(bs, start, end - start, bounce, flags);
    }
    g_mutex_unlock(&rmw_lock);
    return ret;
}

static void mark_dirty(BlockDriverState *bs, int64_t offset, int64_t bytes)
{
    if (bs->dirty_bitmaps->len) {
        bdrv_dirty_bitmaps_mark(bs, offset, bytes);
    }
}

int bdrv_pwrite(BlockDriverState *bs, int64_t offset, int64_t bytes,
                const void *buf, int flags)
{
    int ret;

    if (!bs->drv->pwrite || ((flags & BDRV_REQ_WRITE_COMPRESSED) &&
                             !bs->drv->supports_compressed_writes)) {
        return -ENOTSUP;
    }
    ret = enter_checked(bs, offset, bytes, true);
    if (ret != 0) {
        return MIN(ret, 0);
    }
    ret = aligned_pwrite(bs, offset, bytes, buf, flags);
    if (ret == 0) {
        mark_dirty(bs, offset, bytes);
    }
    req_exit(bs);
    return ret;
}

/* Zeroes through plain writes, for drivers or ranges without a fast path. */
static int write_zeroes_fallback(BlockDriverState *bs, int64_t offset,
                                 int64_t bytes, int flags)
{
    const int64_t chunk_max = 1 << 20;
    g_autofree uint8_t *zeroes = g_try_malloc0(MIN(bytes, chunk_max));

    if (!zeroes) {
        return -ENOMEM;
    }
    while (bytes > 0) {
        int64_t n = MIN(bytes, chunk_max);
        int ret = aligned_pwrite(bs, offset, n, zeroes, flags & BDRV_REQ_FUA);
        if (ret < 0) {
            return ret;
        }
        offset += n;
        bytes -= n;
    }
    return 0;
}

int bdrv_pwrite_zeroes(BlockDriverState *bs, int64_t offset, int64_t bytes,
                       int flags)
{
    int64_t align = bs->request_alignment;
    int ret = enter_checked(bs, offset, bytes, true);

    if (ret != 0) {
        return MIN(ret, 0);
    }
    ret = -ENOTSUP;
    if (bs->drv->pwrite_zeroes && IS_ALIGNED(offset, align) &&
        IS_ALIGNED(bytes, align)) {
        ret = bs->drv->pwrite_zeroes(bs, offset, bytes, flags);
    }
    if (ret == -ENOTSUP && !(flags & BDRV_REQ_NO_FALLBACK)) {
        ret = write_zeroes_fallback(bs, offset, bytes, flags);
    }
    if (ret == 0) {
        mark_dirty(bs, offset, bytes);
    }
    req_exit(bs);
    return ret;
}

int bdrv_pdiscard(BlockDriverState *bs, int64_t offset, int64_t bytes)
{
    int64_t align = bs->request_alignment;
    int64_t start, end;
    int ret = enter_checked(bs, offset, bytes, true);

    if (ret != 0) {
        return MIN(ret, 0);
    }
    /* Discard is advisory: shrink the range to whole aligned blocks. */
    start = ROUND_UP(offset, align);
    end = ROUND_DOWN(offset + bytes, align);
    ret = 0;
    if (bs->drv->pdiscard && end > start) {
        ret = bs->drv->pdiscard(bs, start, end - start);
        if (ret == -ENOTSUP) {
            ret = 0;
        }
    }
    if (ret == 0) {
        mark_dirty(bs, offset, bytes);
    }
    req_exit(bs);
    return ret;
}

int bdrv_flush(BlockDriverState *bs)
{
    int ret = 0;

    if (!bs || (bs->open_flags & BDRV_O_NO_FLUSH)) {
        return 0;
    }
    if (bs->drv->flush) {
        req_enter(bs);      /* a drained driver may be reopening */
        ret = bs->drv->flush(bs);
        req_exit(bs);
    }
    if (ret == 0 && bs->file) {
        ret = bdrv_flush(bs->file);
    }
    return ret;
}

int64_t bdrv_getlength(BlockDriverState *bs)
{
    if (!bs->drv->getlength) {
        return -ENOTSUP;
    }
    return bs->drv->getlength(bs);
}

/*
 * One step of block status at @bs: ask the driver, then resolve
 * BDRV_BLOCK_RAW and the zero-ness of data through the protocol child.
 */
int bdrv_block_status(BlockDriverState *bs, int64_t offset, int64_t bytes,
                      int64_t *pnum, int64_t *map, BlockDriverState **file)
{
    int64_t len = bdrv_getlength(bs);
    int64_t local_map = 0;
    BlockDriverState *local_file = NULL;
    int ret;

    if (len < 0) {
        return (int)len;
    }
    if (offset < 0 || bytes <= 0 || offset >= len) {
        *pnum = 0;
        return offset == len ? BDRV_BLOCK_EOF : -EINVAL;
    }
    bytes = MIN(bytes, len - offset);
    if (!bs->drv->block_status) {
        *pnum = bytes;
        ret = BDRV_BLOCK_DATA | BDRV_BLOCK_ALLOCATED;
        goto out;
    }
    ret = bs->drv->block_status(bs, true, offset, bytes, pnum, &local_map,
                                &local_file);
    if (ret < 0) {
        return ret;
    }
    g_assert(*pnum > 0 && *pnum <= bytes);
    if (ret & BDRV_BLOCK_RAW) {
        g_assert(local_file && (ret & BDRV_BLOCK_OFFSET_VALID));
        return bdrv_block_status(local_file, local_map, *pnum, pnum, map,
                                 file);
    }
    if (bs->drv->is_protocol && (ret & (BDRV_BLOCK_DATA | BDRV_BLOCK_ZERO))) {
        ret |= BDRV_BLOCK_ALLOCATED;
    }
    if ((ret & BDRV_BLOCK_RECURSE) && (ret & BDRV_BLOCK_DATA) &&
        !(ret & BDRV_BLOCK_ZERO) && (ret & BDRV_BLOCK_OFFSET_VALID) &&
        local_file && local_file != bs) {
        /* Data that the protocol layer knows to be a hole reads as zero. */
        int64_t fnum;
        int fret = bdrv_block_status(local_file, local_map, *pnum, &fnum,
                                     NULL, NULL);
        if (fret >= 0) {
            /* Report only the part that shares the protocol's answer. */
            *pnum = MIN(*pnum, fnum);
            if (fret & BDRV_BLOCK_ZERO) {
                ret |= BDRV_BLOCK_ZERO;
            }
        }
    }
out:
    ret &= ~BDRV_BLOCK_RECURSE;
    if (offset + *pnum == len) {
        ret |= BDRV_BLOCK_EOF;
    }
    if (map) {
        *map = local_map;
    }
    if (file) {
        *file = local_file;
    }
    return ret;
}

static int block_status_above(BlockDriverState *bs, int64_t offset,
                              int64_t bytes, int64_t *pnum, int64_t *map,
                              BlockDriverState **file, int *depth)
{
    int d = 1;
    int64_t want = bytes;

    for (BlockDriverState *cur = bs; cur; cur = cur->backing, d++) {
        int64_t n = 0;
        int64_t clen = bdrv_getlength(cur);
        int ret;

        if (clen >= 0 && offset >= clen && cur != bs) {
            /* Past the end of a shorter backing file: reads as zeroes. */
            *pnum = want;
            if (depth) {
                *depth = 0;
            }
            return BDRV_BLOCK_ZERO;
        }
        ret = bdrv_block_status(cur, offset, want, &n, map, file);
        if (ret < 0) {
            return ret;
        }
        if (ret & (BDRV_BLOCK_ALLOCATED | BDRV_BLOCK_ZERO | BDRV_BLOCK_DATA) ||
            !cur->backing) {
            *pnum = n;
            if (depth) {
                *depth = (ret & BDRV_BLOCK_ALLOCATED) ? d : 0;
            }
            if (!(ret & BDRV_BLOCK_ALLOCATED) && !cur->backing &&
                cur != bs) {
                ret |= BDRV_BLOCK_ZERO;
            }
            if (cur != bs) {
                ret &= ~BDRV_BLOCK_EOF;
                if (offset + n == bdrv_getlength(bs)) {
                    ret |= BDRV_BLOCK_EOF;
                }
            }
            return ret;
        }
        /* Unallocated here: narrow to this extent and look below. */
        want = n;
    }
    *pnum = want;
    if (depth) {
        *depth = 0;
    }
    return 0;
}

int bdrv_block_status_above(BlockDriverState *bs, int64_t offset,
                            int64_t bytes, int64_t *pnum, int64_t *map,
                            BlockDriverState **file, int *depth)
{
    int ret;

    req_enter(bs);          /* a drained driver may be reopening */
    ret = block_status_above(bs, offset, bytes, pnum, map, file, depth);
    req_exit(bs);
    return ret;
}
