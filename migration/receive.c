/*
 * The destination's reader: every section of the stream, checked before
 * it is used (docs/interop/migration-stream.rst, "Rules for receivers").
 * The stream is untrusted input: lengths, indexes, alignments, sizes,
 * names and the order of sections are all checked, bitmaps are assembled
 * in private HBitmaps, and each bitmap's SHA-256 is compared at its end.
 * The first problem ends the migration with an error naming the section
 * and the bitmap or node; the source hears of it in an ERROR section.
 */
#include "incoming.h"
#include "qapi/error.h"

#include <stdio.h>
#include <string.h>

typedef enum RxPhase {
    RX_LIVE,            /* nodes, checkpoints, bitmaps, until LIVE_DONE */
    RX_WAIT_SWITCHOVER, /* LIVE_OK sent */
    RX_FINAL,           /* the source's I/O is stopped */
} RxPhase;

static InNode *node_by_id(Incoming *in, uint32_t id, const char *what,
                          GError **errp)
{
    if (id >= in->nodes->len) {
        error_setg(errp, "%s section of the migration stream names unknown "
                   "node %" PRIu32, what, id);
        return NULL;
    }
    return g_ptr_array_index(in->nodes, id);
}

static InBitmap *bitmap_by_id(Incoming *in, uint32_t id, const char *what,
                              GError **errp)
{
    if (id >= in->bitmaps->len) {
        error_setg(errp, "%s section of the migration stream names unknown "
                   "bitmap %" PRIu32, what, id);
        return NULL;
    }
    return g_ptr_array_index(in->bitmaps, id);
}

static bool rx_node(Incoming *in, MigReader *r, GError **errp)
{
    uint32_t id = mig_get_u32(r);
    uint64_t size = mig_get_u64(r);
    uint8_t flags = mig_get_u8(r);
    g_autofree char *alias = mig_get_str(r);
    MigNodeMap *map = NULL;
    const char *name = alias;
    InNode *n;

    if (!mig_rd_finish(r, errp)) {
        return false;
    }
    if (id != in->nodes->len || id >= MIG_IN_MAX_NODES || flags & ~1) {
        error_setg(errp, "Invalid NODE section for '%s' in the migration "
                   "stream", alias);
        return false;
    }
    if (in->alias_map) {
        map = g_hash_table_lookup(in->alias_map, alias);
        if (!map) {
            error_setg(errp, "Unknown node alias '%s' in the migration "
                       "stream", alias);
            error_append_hint(errp, "Map it in block-bitmap-mapping");
            return false;
        }
        name = map->to;
    }
    for (guint i = 0; i < in->nodes->len; i++) {
        InNode *o = g_ptr_array_index(in->nodes, i);
        if (!strcmp(o->name, name)) {
            error_setg(errp, "Node '%s' appears twice in the migration "
                       "stream", name);
            return false;
        }
    }
    n = g_new0(InNode, 1);
    n->id = id;
    n->alias = g_steal_pointer(&alias);
    n->name = g_strdup(name);
    n->map = map;
    n->size = size;
    n->chain = (flags & 1) ? ckpt_chain_new() : NULL;
    g_ptr_array_add(in->nodes, n);
    return true;
}

/* The name on this side of bitmap @alias of node @n; NULL if unmapped. */
static const char *map_bitmap(InNode *n, const char *alias, int *persistent)
{
    MigBitmapMap *bm;

    if (!n->map) {
        return alias;
    }
    bm = g_hash_table_lookup(n->map->bitmaps, alias);
    if (bm && persistent) {
        *persistent = bm->persistent;
    }
    return bm ? bm->to : NULL;
}

static bool rx_checkpoint(Incoming *in, MigReader *r, GError **errp)
{
    uint32_t node_id = mig_get_u32(r);
    uint32_t index = mig_get_u32(r);
    uint32_t parent = mig_get_u32(r);
    Checkpoint c = {0};
    g_autofree char *name = NULL;
    g_autofree char *alias = NULL;
    InNode *n;

    c.ctime_sec = (int64_t)mig_get_u64(r);
    c.ctime_nsec = mig_get_u32(r);
    c.granularity = mig_get_u64(r);
    c.damage = (CkptDamage)mig_get_u8(r);
    name = mig_get_str(r);
    alias = mig_get_str(r);
    if (!mig_rd_finish(r, errp) ||
        !(n = node_by_id(in, node_id, "CHECKPOINT", errp))) {
        return false;
    }
    if (!n->chain || n->chain_done || index != n->chain_next ||
        parent != (index ? index - 1 : MIG_CKPT_NO_PARENT) ||
        c.damage > CKPT_DAMAGE__MAX) {
        error_setg(errp, "Invalid CHECKPOINT section for '%s' of node '%s' "
                   "in the migration stream", name, n->name);
        return false;
    }
    c.name = name;
    c.bitmap = (char *)map_bitmap(n, alias, NULL);
    if (!c.bitmap) {
        error_setg(errp, "Checkpoint '%s' of node '%s' uses bitmap alias "
                   "'%s', which block-bitmap-mapping does not map", name,
                   n->name, alias);
        return false;
    }
    c.parent = index ? (char *)ckpt_chain_nth(n->chain, index - 1)->name
                     : NULL;
    if (!ckpt_chain_append(n->chain, &c, errp)) {
        g_prefix_error(errp, "Invalid checkpoint '%s' of node '%s' in the "
                       "migration stream: ", name, n->name);
        return false;
    }
    n->chain_next++;
    return true;
}

static bool rx_checkpoints_end(Incoming *in, MigReader *r, GError **errp)
{
    uint32_t node_id = mig_get_u32(r);
    uint32_t count = mig_get_u32(r);
    InNode *n;

    if (!mig_rd_finish(r, errp) ||
        !(n = node_by_id(in, node_id, "CHECKPOINTS_END", errp))) {
        return false;
    }
    if (!n->chain || n->chain_done || count != n->chain_next) {
        error_setg(errp, "Invalid CHECKPOINTS_END section for node '%s' in "
                   "the migration stream", n->name);
        return false;
    }
    n->chain_done = true;
    return true;
}

static bool new_bitmap_checks(Incoming *in, InNode *n, const char *name,
                              uint64_t gran, uint64_t size, uint32_t flags,
                              GError **errp)
{
    if (in->bitmaps->len >= MIG_IN_MAX_BITMAPS) {
        error_setg(errp, "Too many bitmaps in the migration stream");
        return false;
    }
    if (size != n->size) {
        error_setg(errp, "Bitmap '%s' covers %" PRIu64 " bytes but node "
                   "'%s' has %" PRIu64, name, size, n->name, n->size);
        return false;
    }
    if (flags & ~MIG_BITMAP_KNOWN_FLAGS) {
        error_setg(errp, "Bitmap '%s' has unknown flags 0x%" PRIx32
                   " in the migration stream", name, flags);
        return false;
    }
    if (gran < HBITMAP_MIN_GRANULARITY || gran > HBITMAP_MAX_GRANULARITY ||
        (gran & (gran - 1)) || size > INT64_MAX) {
        error_setg(errp, "Bitmap '%s' has granularity %" PRIu64 " and size %"
                   PRIu64 ", which are not supported", name, gran, size);
        return false;
    }
    for (guint i = 0; i < in->bitmaps->len; i++) {
        InBitmap *o = g_ptr_array_index(in->bitmaps, i);
        if (o->node == n && !strcmp(o->name, name)) {
            error_setg(errp, "Bitmap '%s' of node '%s' appears twice in the "
                       "migration stream", name, n->name);
            return false;
        }
    }
    return true;
}

static bool rx_bitmap(Incoming *in, MigReader *r, GError **errp)
{
    uint32_t id = mig_get_u32(r);
    uint32_t node_id = mig_get_u32(r);
    uint64_t gran = mig_get_u64(r);
    uint64_t size = mig_get_u64(r);
    uint32_t flags = mig_get_u32(r);
    g_autofree char *alias = mig_get_str(r);
    int persistent = -1;
    const char *name;
    InNode *n;
    InBitmap *b;

    if (!mig_rd_finish(r, errp) ||
        !(n = node_by_id(in, node_id, "BITMAP", errp))) {
        return false;
    }
    if (id != in->bitmaps->len) {
        error_setg(errp, "BITMAP section for '%s' out of order in the "
                   "migration stream", alias);
        return false;
    }
    name = map_bitmap(n, alias, &persistent);
    if (!name) {
        error_setg(errp, "Unknown bitmap alias '%s' on node alias '%s' in "
                   "the migration stream", alias, n->alias);
        error_append_hint(errp, "Map it in block-bitmap-mapping");
        return false;
    }
    if (!new_bitmap_checks(in, n, name, gran, size, flags, errp)) {
        return false;
    }
    b = g_new0(InBitmap, 1);
    b->id = id;
    b->node = n;
    b->alias = g_steal_pointer(&alias);
    b->name = g_strdup(name);
    b->granularity = gran;
    b->size = size;
    b->flags = flags;
    b->persistent = persistent < 0 ? !!(flags & MIG_BITMAP_PERSISTENT)
                                   : persistent;
    g_ptr_array_add(in->bitmaps, b);
    b->hb = hbitmap_try_new(size, gran);
    if (!b->hb) {
        error_setg(errp, "Not enough memory for bitmap '%s' of node '%s'",
                   b->name, n->name);
        return false;
    }
    return true;
}

/* In the live phase any unfinished bitmap; then only recording ones. */
static InBitmap *open_bitmap(Incoming *in, uint32_t id, RxPhase phase,
                             const char *what, GError **errp)
{
    InBitmap *b = bitmap_by_id(in, id, what, errp);

    if (!b) {
        return NULL;
    }
    if (b->ended || (phase == RX_FINAL &&
                     !(b->flags & MIG_BITMAP_RECORDING))) {
        error_setg(errp, "%s section for bitmap '%s' of node '%s' after its "
                   "end", what, b->name, b->node->name);
        return NULL;
    }
    return b;
}

static bool rx_data(Incoming *in, MigReader *r, RxPhase phase, GError **errp)
{
    uint32_t id = mig_get_u32(r);
    uint64_t off = mig_get_u64(r);
    uint64_t len = mig_get_u64(r);
    uint8_t enc = mig_get_u8(r);
    size_t rest_len;
    const uint8_t *rest = mig_get_rest(r, &rest_len);
    InBitmap *b;
    uint64_t want;

    if (!mig_rd_finish(r, errp) ||
        !(b = open_bitmap(in, id, phase, "BITMAP_DATA", errp))) {
        return false;
    }
    if (off % hbitmap_serialization_align(b->hb) || off >= b->size ||
        len == 0 || len > b->size - off) {
        error_setg(errp, "Bitmap '%s' of node '%s': invalid range %" PRIu64
                   "+%" PRIu64 " in the migration stream", b->name,
                   b->node->name, off, len);
        return false;
    }
    want = enc == MIG_DATA_RAW ? hbitmap_serialization_size(b->hb, off, len)
                               : 0;
    if (enc > MIG_DATA_ONES || rest_len != want) {
        error_setg(errp, "Bitmap '%s' of node '%s': %zu bytes of data with "
                   "encoding %u where %" PRIu64 " were expected", b->name,
                   b->node->name, rest_len, enc, want);
        return false;
    }
    if (enc == MIG_DATA_ZEROES) {
        hbitmap_deserialize_zeroes(b->hb, off, len);
    } else if (enc == MIG_DATA_ONES) {
        hbitmap_deserialize_ones(b->hb, off, len);
    } else {
        hbitmap_deserialize_part(b->hb, rest, off, len, true);
    }
    return true;
}

static bool rx_end(Incoming *in, MigReader *r, RxPhase phase, GError **errp)
{
    uint32_t id = mig_get_u32(r);
    uint32_t flags = mig_get_u32(r);
    uint64_t count = mig_get_u64(r);
    const uint8_t *sha = mig_get_bytes(r, 32);
    char hex[65], want[65];
    InBitmap *b;

    if (!mig_rd_finish(r, errp) ||
        !(b = open_bitmap(in, id, phase, "BITMAP_END", errp))) {
        return false;
    }
    if (phase == RX_LIVE && (b->flags & MIG_BITMAP_RECORDING)) {
        error_setg(errp, "Recording bitmap '%s' of node '%s' ended before "
                   "the switch-over", b->name, b->node->name);
        return false;
    }
    if (flags & ~MIG_BITMAP_KNOWN_FLAGS) {
        error_setg(errp, "Bitmap '%s' has unknown flags 0x%" PRIx32
                   " in the migration stream", b->name, flags);
        return false;
    }
    for (int i = 0; i < 32; i++) {
        snprintf(want + 2 * i, 3, "%02x", sha[i]);
    }
    hbitmap_sha256(b->hb, hex);
    if (strcmp(hex, want) || count != hbitmap_count(b->hb)) {
        error_setg(errp, "Bitmap '%s' of node '%s' does not match the "
                   "source's (SHA-256 or dirty count differs)", b->name,
                   b->node->name);
        return false;
    }
    b->ended = true;
    b->end_flags = flags;
    return true;
}

/* Everything the live phase must have completed. */
static bool live_complete(Incoming *in, GError **errp)
{
    for (guint i = 0; i < in->nodes->len; i++) {
        InNode *n = g_ptr_array_index(in->nodes, i);
        if (n->chain && !n->chain_done) {
            error_setg(errp, "The checkpoints of node '%s' are incomplete "
                       "in the migration stream", n->name);
            return false;
        }
    }
    for (guint i = 0; i < in->bitmaps->len; i++) {
        InBitmap *b = g_ptr_array_index(in->bitmaps, i);
        if (!b->ended && !(b->flags & MIG_BITMAP_RECORDING)) {
            error_setg(errp, "Bitmap '%s' of node '%s' is incomplete in the "
                       "migration stream", b->name, b->node->name);
            return false;
        }
    }
    return true;
}

static bool all_ended(Incoming *in, GError **errp)
{
    for (guint i = 0; i < in->bitmaps->len; i++) {
        InBitmap *b = g_ptr_array_index(in->bitmaps, i);
        if (!b->ended) {
            error_setg(errp, "Bitmap '%s' of node '%s' is incomplete at the "
                       "end of the migration stream", b->name,
                       b->node->name);
            return false;
        }
    }
    return true;
}

static bool send_reply(Incoming *in, MigSectionType type, GError **errp)
{
    return mig_stream_send(in->stream, type, NULL, 0, errp);
}

/* One section; *done once the destination owns the images. */
static bool rx_section(Incoming *in, MigSection *sec, RxPhase *phase,
                       bool *done, GError **errp)
{
    const char *what = mig_section_name(sec->type);
    MigReader r;

    mig_rd_init(&r, what, sec->payload, sec->len);
    mig_stats_section(sec->len + MIG_SECTION_HEADER_SIZE,
                      *phase == RX_FINAL);
    if (sec->type == MIG_SEC_ERROR) {
        g_autofree char *msg = mig_get_str(&r);
        error_setg(errp, "The source failed: %s",
                   msg ? msg : "(no reason given)");
        return false;
    }
    if (*phase == RX_LIVE) {
        switch (sec->type) {
        case MIG_SEC_NODE: return rx_node(in, &r, errp);
        case MIG_SEC_CHECKPOINT: return rx_checkpoint(in, &r, errp);
        case MIG_SEC_CHECKPOINTS_END: return rx_checkpoints_end(in, &r, errp);
        case MIG_SEC_BITMAP: return rx_bitmap(in, &r, errp);
        case MIG_SEC_BITMAP_DATA: return rx_data(in, &r, *phase, errp);
        case MIG_SEC_BITMAP_END: return rx_end(in, &r, *phase, errp);
        case MIG_SEC_LIVE_DONE:
            if (!mig_rd_finish(&r, errp) || !live_complete(in, errp) ||
                !mig_run_on_main(mig_in_validate_main, in, errp)) {
                return false;
            }
            *phase = RX_WAIT_SWITCHOVER;
            return send_reply(in, MIG_SEC_LIVE_OK, errp);
        default:
            break;
        }
    } else if (*phase == RX_WAIT_SWITCHOVER) {
        if (sec->type == MIG_SEC_SWITCHOVER) {
            *phase = RX_FINAL;
            return mig_rd_finish(&r, errp);
        }
    } else {
        switch (sec->type) {
        case MIG_SEC_BITMAP_DATA: return rx_data(in, &r, *phase, errp);
        case MIG_SEC_BITMAP_END: return rx_end(in, &r, *phase, errp);
        case MIG_SEC_COMPLETE:
            if (!mig_rd_finish(&r, errp) || !all_ended(in, errp) ||
                !mig_run_on_main(mig_in_activate_main, in, errp)) {
                return false;
            }
            *done = true;
            /* We own the images now, whether or not the source hears it. */
            send_reply(in, MIG_SEC_ACTIVATED, NULL);
            return true;
        default:
            break;
        }
    }
    error_setg(errp, "Unexpected %s section (type %u) in the migration "
               "stream", what, sec->type);
    return false;
}

bool mig_in_receive(Incoming *in, GError **errp)
{
    RxPhase phase = RX_LIVE;
    bool done = false;
    bool from_source = false;

    if (!mig_stream_send_preamble(in->stream, MIG_STREAM_MAGIC_DEST, errp)) {
        return false;
    }
    if (mig_stream_recv_preamble(in->stream, MIG_STREAM_MAGIC_SOURCE,
                                 errp)) {
        while (!done) {
            MigSection sec;
            bool ok;

            if (!mig_stream_recv(in->stream, &sec, errp)) {
                break;
            }
            from_source = sec.type == MIG_SEC_ERROR;
            ok = rx_section(in, &sec, &phase, &done, errp);
            mig_section_clear(&sec);
            if (!ok) {
                break;
            }
        }
    }
    if (!done && !from_source && !mig_stream_cancelled(in->stream)) {
        mig_stream_send_error(in->stream, (*errp)->message);
    }
    return done;
}
