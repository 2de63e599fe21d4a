/*
 * Transmission phase, worker side: execute one validated request against
 * the export's block node and send its reply.  Runs on the connection's
 * worker pool, so requests of one client proceed in parallel and finish
 * in any order (replies carry the client's handle).
 *
 * READ with structured replies: short reads (and DF) are one data chunk;
 * longer ones consult block status and send holes as OFFSET_HOLE chunks.
 */
#include "nbd/nbd-internal.h"
#include "util/bswap.h"

#include <errno.h>
#include <string.h>

/* Reads at least this long look for holes (block status costs syscalls). */
#define NBD_SPARSE_READ_MIN (256 * 1024)
#define NBD_CACHE_CHUNK (1024 * 1024)

static int reply_status(NbdClient *c, const NbdRequestHeader *h, int ret,
                        const char *what)
{
    if (ret < 0) {
        return nbd_send_error(c, h->handle, nbd_errno_to_nbd(ret), what);
    }
    return nbd_send_ok(c, h->handle);
}

static int send_data_chunk(NbdClient *c, uint64_t handle, uint16_t flags,
                           uint64_t offset, const uint8_t *data,
                           uint64_t len)
{
    uint8_t off[8];
    struct iovec iov[2] = {
        { .iov_base = off, .iov_len = sizeof(off) },
        { .iov_base = (void *)data, .iov_len = len },
    };

    stq_be(off, offset);
    return nbd_send_chunk(c, handle, flags, NBD_REPLY_TYPE_OFFSET_DATA,
                          iov, 2);
}

static int send_hole_chunk(NbdClient *c, uint64_t handle, uint64_t offset,
                           uint32_t len)
{
    uint8_t p[12];
    struct iovec iov = { .iov_base = p, .iov_len = sizeof(p) };

    stq_be(p, offset);
    stl_be(p + 8, len);
    return nbd_send_chunk(c, handle, 0, NBD_REPLY_TYPE_OFFSET_HOLE, &iov, 1);
}

/* Structured READ that sends zero extents as holes. */
static int read_sparse(NbdClient *c, const NbdRequestHeader *h, uint8_t *buf)
{
    BlockDriverState *bs = c->exp->bs;
    uint64_t pos = 0;

    while (pos < h->len) {
        int64_t pnum = 0;
        int st = bdrv_block_status_above(bs, (int64_t)(h->offset + pos),
                                         (int64_t)(h->len - pos), &pnum,
                                         NULL, NULL, NULL);
        int ret;

        if (st < 0 || pnum <= 0) {
            /* Unknown status: just read the rest. */
            st = BDRV_BLOCK_DATA;
            pnum = (int64_t)(h->len - pos);
        }
        pnum = MIN(pnum, (int64_t)(h->len - pos));
        if (st & BDRV_BLOCK_ZERO) {
            ret = send_hole_chunk(c, h->handle, h->offset + pos,
                                  (uint32_t)pnum);
        } else {
            ret = bdrv_pread(bs, (int64_t)(h->offset + pos), pnum,
                             buf + pos, 0);
            if (ret < 0) {
                return nbd_send_error(c, h->handle, nbd_errno_to_nbd(ret),
                                      "read failed");
            }
            ret = send_data_chunk(c, h->handle, 0, h->offset + pos,
                                  buf + pos, (uint64_t)pnum);
        }
        if (ret < 0) {
            return ret;
        }
        pos += (uint64_t)pnum;
    }
    return nbd_send_done(c, h->handle);
}

static int do_read(NbdClient *c, const NbdRequestHeader *h)
{
    g_autofree uint8_t *buf = NULL;
    int ret;

    if (h->len == 0) {
        return c->structured ? nbd_send_done(c, h->handle)
                             : nbd_send_simple(c, h->handle, 0, NULL, 0);
    }
    buf = g_try_malloc(h->len);
    if (!buf) {
        return nbd_send_error(c, h->handle, NBD_ENOMEM, "out of memory");
    }
    if (c->structured && !(h->flags & NBD_CMD_FLAG_DF) &&
        h->len >= NBD_SPARSE_READ_MIN) {
        return read_sparse(c, h, buf);
    }
    ret = bdrv_pread(c->exp->bs, (int64_t)h->offset, h->len, buf, 0);
    if (ret < 0) {
        return nbd_send_error(c, h->handle, nbd_errno_to_nbd(ret),
                              "read failed");
    }
    if (!c->structured) {
        return nbd_send_simple(c, h->handle, 0, buf, h->len);
    }
    return send_data_chunk(c, h->handle, NBD_REPLY_FLAG_DONE, h->offset,
                           buf, h->len);
}

static int after_write(NbdClient *c, const NbdRequestHeader *h, int ret)
{
    if (ret == 0 && c->exp->writethrough &&
        !(h->flags & NBD_CMD_FLAG_FUA)) {
        ret = bdrv_flush(c->exp->bs);
    }
    return ret;
}

static int do_write(NbdClient *c, NbdRequest *r)
{
    const NbdRequestHeader *h = &r->hdr;
    int flags = (h->flags & NBD_CMD_FLAG_FUA) ? BDRV_REQ_FUA : 0;
    int ret = bdrv_pwrite(c->exp->bs, (int64_t)h->offset, h->len, r->data,
                          flags);

    return reply_status(c, h, after_write(c, h, ret), "write failed");
}

static int do_trim(NbdClient *c, const NbdRequestHeader *h)
{
    int ret = 0;

    if (!c->exp->discard_ignore) {
        ret = bdrv_pdiscard(c->exp->bs, (int64_t)h->offset, h->len);
    }
    if (ret == 0 && (h->flags & NBD_CMD_FLAG_FUA)) {
        ret = bdrv_flush(c->exp->bs);
    }
    return reply_status(c, h, after_write(c, h, ret), "trim failed");
}

static int do_write_zeroes(NbdClient *c, const NbdRequestHeader *h)
{
    int flags = 0;
    int ret;

    if (!(h->flags & NBD_CMD_FLAG_NO_HOLE) && !c->exp->discard_ignore) {
        flags |= BDRV_REQ_MAY_UNMAP;
    }
    if (h->flags & NBD_CMD_FLAG_FAST_ZERO) {
        flags |= BDRV_REQ_NO_FALLBACK;
    }
    if (h->flags & NBD_CMD_FLAG_FUA) {
        flags |= BDRV_REQ_FUA;
    }
    ret = bdrv_pwrite_zeroes(c->exp->bs, (int64_t)h->offset, h->len, flags);
    return reply_status(c, h, after_write(c, h, ret), "write zeroes failed");
}

/* CACHE: read the range (to pull it into the host cache), drop the data. */
static int do_cache(NbdClient *c, const NbdRequestHeader *h)
{
    g_autofree uint8_t *buf = NULL;
    uint64_t pos = 0;
    int ret = 0;

    if (h->len > 0) {
        buf = g_try_malloc(MIN(h->len, NBD_CACHE_CHUNK));
        if (!buf) {
            ret = -ENOMEM;
        }
    }
    while (ret == 0 && pos < h->len) {
        uint64_t n = MIN(h->len - pos, NBD_CACHE_CHUNK);
        ret = bdrv_pread(c->exp->bs, (int64_t)(h->offset + pos), (int64_t)n,
                         buf, 0);
        pos += n;
    }
    return reply_status(c, h, ret, "cache failed");
}

static int send_extents(NbdClient *c, const NbdRequestHeader *h,
                        uint32_t id, NbdExtents *ex, bool last)
{
    uint8_t idbuf[4];
    struct iovec iov[2] = {
        { .iov_base = idbuf, .iov_len = sizeof(idbuf) },
        { .iov_base = ex->pairs, .iov_len = 8 * (size_t)ex->count },
    };

    stl_be(idbuf, id);
    for (uint32_t i = 0; i < 2 * ex->count; i++) {
        stl_be(&ex->pairs[i], ex->pairs[i]);
    }
    return nbd_send_chunk(c, h->handle, last ? NBD_REPLY_FLAG_DONE : 0,
                          NBD_REPLY_TYPE_BLOCK_STATUS, iov, 2);
}

static int do_block_status(NbdClient *c, const NbdRequestHeader *h)
{
    NbdExport *exp = c->exp;
    uint32_t max = (h->flags & NBD_CMD_FLAG_REQ_ONE) ? 1 : NBD_MAX_EXTENTS;
    unsigned remaining = c->n_meta_selected;

    for (unsigned i = 0; i < exp->n_contexts; i++) {
        NbdExtents ex;
        int ret;

        if (!c->meta_selected[i]) {
            continue;
        }
        remaining--;
        nbd_extents_init(&ex, h->len, max);
        ret = nbd_meta_extents(exp, &exp->contexts[i], h->offset, h->len,
                               &ex);
        if (ret == 0 && ex.count == 0) {
            ret = -EIO;
        }
        if (ret < 0) {
            nbd_extents_clear(&ex);
            return nbd_send_error(c, h->handle, nbd_errno_to_nbd(ret),
                                  "block status failed");
        }
        ret = send_extents(c, h, i, &ex, remaining == 0);
        nbd_extents_clear(&ex);
        if (ret < 0) {
            return ret;
        }
    }
    return 0;
}

void nbd_request_execute(gpointer data, gpointer user_data)
{
    NbdRequest *r = data;

    nbd_request_run(r->client, r);
    nbd_request_done(r);
}

void nbd_request_run(NbdClient *c, NbdRequest *r)
{
    const NbdRequestHeader *h = &r->hdr;

    switch (h->type) {
    case NBD_CMD_READ:
        do_read(c, h);
        break;
    case NBD_CMD_WRITE:
        do_write(c, r);
        break;
    case NBD_CMD_FLUSH:
        reply_status(c, h, bdrv_flush(c->exp->bs), "flush failed");
        break;
    case NBD_CMD_TRIM:
        do_trim(c, h);
        break;
    case NBD_CMD_WRITE_ZEROES:
        do_write_zeroes(c, h);
        break;
    case NBD_CMD_CACHE:
        do_cache(c, h);
        break;
    case NBD_CMD_BLOCK_STATUS:
        do_block_status(c, h);
        break;
    default:
        nbd_send_error(c, h->handle, NBD_EINVAL, "unknown command");
        break;
    }
}
