/*
 * The source's sections (docs/interop/migration-stream.rst, "Sections"):
 * nodes and their checkpoint tables, bitmap starts, contents in chunks
 * (all-clean and all-dirty chunks without data), the final re-send of
 * what changed while the transfer ran, and the bitmap ends with their
 * SHA-256.  Runs on the worker thread; bitmaps are read under their
 * node's lock by the bitmap layer, so I/O may go on meanwhile.
 */
#include "outgoing.h"
#include "qapi/error.h"
#include "util/align.h"

#include <string.h>

/*
 * Serialized bytes of a recording bitmap re-sent around each tracked
 * write (256 bytes: 2048 granules): small, so that the pause depends on
 * how much was written meanwhile, not on the size of the bitmap.
 */
#define FINAL_UNIT 256
/* Longest sleep of the bandwidth limit before looking at cancellation. */
#define THROTTLE_SLICE_US 10000

bool out_send(Outgoing *o, MigSectionType type, MigBuf *b, GError **errp)
{
    size_t len = b ? b->data->len : 0;
    bool ok;

    ok = b ? mig_stream_send_buf(o->stream, type, b, errp)
           : mig_stream_send(o->stream, type, NULL, 0, errp);
    if (ok) {
        mig_stats_section(len + MIG_SECTION_HEADER_SIZE, o->paused);
    }
    return ok;
}

/* The section type and a payload built by the caller, then freed. */
static bool send_buf(Outgoing *o, MigSectionType type, MigBuf *b,
                     GError **errp)
{
    bool ok = out_send(o, type, b, errp);

    mig_buf_free(b);
    return ok;
}

uint64_t out_bitmap_bytes(const OutBitmap *b)
{
    return bdrv_dirty_bitmap_serialization_size(
        b->bm, 0, bdrv_dirty_bitmap_size(b->bm));
}

static const char *bitmap_alias(OutNode *n, GPtrArray *bitmaps,
                                const char *name)
{
    for (guint i = 0; i < bitmaps->len; i++) {
        OutBitmap *b = g_ptr_array_index(bitmaps, i);
        if (b->node == n && !strcmp(b->name, name)) {
            return b->alias;
        }
    }
    return NULL;
}

static bool send_checkpoints(Outgoing *o, OutNode *n, GError **errp)
{
    guint count = ckpt_chain_length(n->chain);
    MigBuf b;

    for (guint i = 0; i < count; i++) {
        const Checkpoint *c = ckpt_chain_nth(n->chain, i);
        const char *alias = bitmap_alias(n, o->bitmaps, c->bitmap);
        int parent = c->parent ? ckpt_chain_index(n->chain, c->parent) : -1;

        g_assert(alias);   /* setup made sure */
        mig_buf_init(&b);
        mig_put_u32(&b, n->id);
        mig_put_u32(&b, i);
        mig_put_u32(&b, parent < 0 ? MIG_CKPT_NO_PARENT : (uint32_t)parent);
        mig_put_u64(&b, (uint64_t)c->ctime_sec);
        mig_put_u32(&b, c->ctime_nsec);
        mig_put_u64(&b, c->granularity);
        mig_put_u8(&b, (uint8_t)c->damage);
        mig_put_str(&b, c->name);
        mig_put_str(&b, alias);
        if (!send_buf(o, MIG_SEC_CHECKPOINT, &b, errp)) {
            return false;
        }
    }
    mig_buf_init(&b);
    mig_put_u32(&b, n->id);
    mig_put_u32(&b, count);
    return send_buf(o, MIG_SEC_CHECKPOINTS_END, &b, errp);
}

bool out_send_nodes(Outgoing *o, GError **errp)
{
    for (guint i = 0; i < o->nodes->len; i++) {
        OutNode *n = g_ptr_array_index(o->nodes, i);
        MigBuf b;

        mig_buf_init(&b);
        mig_put_u32(&b, n->id);
        mig_put_u64(&b, n->size);
        mig_put_u8(&b, n->chain ? 1 : 0);
        mig_put_str(&b, n->alias);
        if (!send_buf(o, MIG_SEC_NODE, &b, errp)) {
            return false;
        }
        if (n->chain && !send_checkpoints(o, n, errp)) {
            return false;
        }
    }
    return true;
}

/* max-bandwidth: sleep while the live phase is ahead of its budget. */
static void throttle(Outgoing *o, size_t bytes)
{
    gint64 now, due;

    if (o->paused || !o->max_bandwidth) {
        return;
    }
    o->live_bytes += bytes;
    due = o->live_start + (gint64)(o->live_bytes * 1e6 / o->max_bandwidth);
    while ((now = g_get_monotonic_time()) < due &&
           !mig_stream_cancelled(o->stream)) {
        g_usleep(MIN(due - now, THROTTLE_SLICE_US));
    }
}

static bool send_chunk(Outgoing *o, OutBitmap *b, uint64_t off, uint64_t len,
                       GError **errp)
{
    BdrvDirtyBitmap *bm = b->bm;
    uint8_t enc = MIG_DATA_RAW;
    size_t data = 0;
    MigBuf buf;

    mig_buf_init(&buf);
    mig_put_u32(&buf, b->id);
    mig_put_u64(&buf, off);
    mig_put_u64(&buf, len);
    if (bdrv_dirty_bitmap_next_dirty(bm, (int64_t)off, (int64_t)len) < 0) {
        enc = MIG_DATA_ZEROES;
    } else if (bdrv_dirty_bitmap_next_zero(bm, (int64_t)off,
                                           (int64_t)len) < 0) {
        enc = MIG_DATA_ONES;
    }
    mig_put_u8(&buf, enc);
    if (enc == MIG_DATA_RAW) {
        guint pos = buf.data->len;
        data = bdrv_dirty_bitmap_serialization_size(bm, off, len);
        g_byte_array_set_size(buf.data, pos + (guint)data);
        bdrv_dirty_bitmap_serialize_part(bm, buf.data->data + pos, off, len);
    }
    mig_stats_chunk(enc == MIG_DATA_RAW, data);
    throttle(o, buf.data->len);
    return send_buf(o, MIG_SEC_BITMAP_DATA, &buf, errp);
}

/* [start, end) of the disk, start aligned to the serialization. */
static bool send_range(Outgoing *o, OutBitmap *b, uint64_t start,
                       uint64_t end, GError **errp)
{
    uint64_t cover = (uint64_t)MIG_DATA_CHUNK * 8 *
                     bdrv_dirty_bitmap_granularity(b->bm);

    for (uint64_t off = start; off < end;) {
        uint64_t len = MIN(cover, end - off);
        if (!send_chunk(o, b, off, len, errp)) {
            return false;
        }
        off += len;
    }
    return true;
}

static bool hex_to_bytes(const char *hex, uint8_t *out, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int hi = g_ascii_xdigit_value(hex[2 * i]);
        int lo = hi < 0 ? -1 : g_ascii_xdigit_value(hex[2 * i + 1]);
        if (lo < 0) {
            return false;
        }
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return true;
}

bool out_send_end(Outgoing *o, OutBitmap *b, BdrvDirtyBitmap *contents,
                  GError **errp)
{
    g_autofree char *hex = bdrv_dirty_bitmap_sha256(contents, errp);
    uint8_t sha[32];
    MigBuf buf;

    if (!hex) {
        g_prefix_error(errp, "Cannot migrate bitmap '%s': ", b->name);
        return false;
    }
    g_assert(strlen(hex) == 64 && hex_to_bytes(hex, sha, sizeof(sha)));
    mig_buf_init(&buf);
    mig_put_u32(&buf, b->id);
    mig_put_u32(&buf, b->flags);
    mig_put_u64(&buf, bdrv_get_dirty_count(contents));
    mig_put_bytes(&buf, sha, sizeof(sha));
    return send_buf(o, MIG_SEC_BITMAP_END, &buf, errp);
}

bool out_send_bitmap_live(Outgoing *o, OutBitmap *b, GError **errp)
{
    uint64_t size = bdrv_dirty_bitmap_size(b->bm);
    MigBuf buf;

    mig_buf_init(&buf);
    mig_put_u32(&buf, b->id);
    mig_put_u32(&buf, b->node->id);
    mig_put_u64(&buf, bdrv_dirty_bitmap_granularity(b->bm));
    mig_put_u64(&buf, size);
    mig_put_u32(&buf, b->flags);
    mig_put_str(&buf, b->alias);
    if (!send_buf(o, MIG_SEC_BITMAP, &buf, errp) ||
        !send_range(o, b, 0, size, errp)) {
        return false;
    }
    if (!(b->flags & MIG_BITMAP_RECORDING)) {
        return out_send_end(o, b, b->bm, errp);
    }
    return true;
}

bool out_send_changes(Outgoing *o, OutBitmap *b, BdrvDirtyBitmap *tracker,
                      GError **errp)
{
    uint64_t size = bdrv_dirty_bitmap_size(b->bm);
    uint64_t unit = (uint64_t)FINAL_UNIT * 8 *
                    bdrv_dirty_bitmap_granularity(b->bm);
    uint64_t rs = 0, re = 0;
    int64_t off = 0, ds, dc;

    /* Whole units around each tracked write, merged when they touch. */
    while (bdrv_dirty_bitmap_next_dirty_area(tracker, off, (int64_t)size,
                                             INT64_MAX, &ds, &dc)) {
        uint64_t us = ROUND_DOWN((uint64_t)ds, unit);
        uint64_t ue = MIN(ROUND_UP((uint64_t)(ds + dc), unit), size);

        if (re && us <= re) {
            re = MAX(re, ue);
        } else {
            if (re && !send_range(o, b, rs, re, errp)) {
                return false;
            }
            rs = us;
            re = ue;
        }
        off = ds + dc;
    }
    return !re || send_range(o, b, rs, re, errp);
}
