/*
 * The source's choice of what migrates (main thread): the nodes, their
 * named bitmaps and checkpoint tables as block-bitmap-mapping selects
 * them, with QEMU's refusals (inconsistent, busy, auto-generated node
 * names), the trackers of recording bitmaps, and, at the pause, the check
 * that no bitmap appeared meanwhile.
 */
#include "outgoing.h"
#include "block/block_int.h"
#include "block/checkpoint-ops.h"
#include "qapi/error.h"

#include <string.h>

/* ---- Nodes ---- */

static bool is_protocol_child(BlockDriverState *bs)
{
    for (BlockDriverState *p = bdrv_next_node(NULL); p;
         p = bdrv_next_node(p)) {
        if (p->file == bs) {
            return true;
        }
    }
    return false;
}

GPtrArray *mig_nodes_to_drain(void)
{
    GPtrArray *all = g_ptr_array_new();
    GPtrArray *out = g_ptr_array_new();

    /* Opening order has children first: go backwards for parents first. */
    for (BlockDriverState *bs = bdrv_next_node(NULL); bs;
         bs = bdrv_next_node(bs)) {
        g_ptr_array_add(all, bs);
    }
    for (guint i = all->len; i-- > 0;) {
        BlockDriverState *bs = g_ptr_array_index(all, i);
        if (!is_protocol_child(bs)) {
            g_ptr_array_add(out, bs);
        }
    }
    g_ptr_array_unref(all);
    return out;
}

/* ---- Setup (main thread) ---- */

void out_node_free(gpointer p)
{
    OutNode *n = p;

    if (n->tracker) {
        bdrv_release_dirty_bitmap(n->tracker);
    }
    if (n->old_tracker) {
        bdrv_release_dirty_bitmap(n->old_tracker);
    }
    if (n->chain) {
        ckpt_chain_free(n->chain);
    }
    bdrv_unref(n->bs);
    g_free(n->alias);
    g_free(n);
}

void out_bitmap_free(gpointer p)
{
    OutBitmap *b = p;

    if (b->made_busy) {
        bdrv_dirty_bitmap_set_busy(b->bm, false);
    }
    bdrv_dirty_bitmap_skip_store(b->bm, false);
    if (!b->was_loaded) {
        bdrv_dirty_bitmap_unload(b->bm);
    }
    bdrv_dirty_bitmap_free_copy(b->final);
    g_free(b->name);
    g_free(b->alias);
    g_free(b);
}

/* The named bitmaps of @bs that migrate; false on a refusal. */
static bool pick_bitmaps(Outgoing *o, OutNode *n, MigNodeMap *nm,
                         GError **errp)
{
    for (BdrvDirtyBitmap *bm = bdrv_dirty_bitmap_first(n->bs); bm;
         bm = bdrv_dirty_bitmap_next(bm)) {
        const char *name = bdrv_dirty_bitmap_name(bm);
        MigBitmapMap *bmm = NULL;
        bool persistent = bdrv_dirty_bitmap_persistent(bm);
        OutBitmap *b;

        /* Bitmaps of read-only nodes cannot change: the image has them. */
        if (!name || bdrv_is_read_only(n->bs)) {
            continue;
        }
        if (nm) {
            bmm = g_hash_table_lookup(nm->bitmaps, name);
            if (!bmm) {
                continue;
            }
            persistent = bmm->persistent < 0 ? persistent : bmm->persistent;
        }
        if (!bdrv_dirty_bitmap_check(bm, BDRV_BITMAP_INCONSISTENT |
                                         BDRV_BITMAP_RO, errp)) {
            return false;
        }
        if (bdrv_dirty_bitmap_busy(bm)) {
            error_setg(errp, "Bitmap '%s' is currently in use by another "
                       "operation and cannot be used", name);
            return false;
        }
        b = g_new0(OutBitmap, 1);
        b->node = n;
        b->bm = bm;
        b->id = o->bitmaps->len;
        b->name = g_strdup(name);
        b->alias = g_strdup(bmm ? bmm->to : name);
        b->flags = (bdrv_dirty_bitmap_recording(bm) ? MIG_BITMAP_RECORDING
                                                    : 0) |
                   (persistent ? MIG_BITMAP_PERSISTENT : 0);
        b->was_loaded = bdrv_dirty_bitmap_loaded(bm);
        g_ptr_array_add(o->bitmaps, b);
    }
    return true;
}

/* Every checkpoint's bitmap must travel, and stay persistent. */
static bool check_chain_bitmaps(Outgoing *o, OutNode *n, GError **errp)
{
    for (guint i = 0; i < ckpt_chain_length(n->chain); i++) {
        const Checkpoint *c = ckpt_chain_nth(n->chain, i);
        OutBitmap *found = NULL;

        for (guint j = 0; j < o->bitmaps->len && !found; j++) {
            OutBitmap *b = g_ptr_array_index(o->bitmaps, j);
            if (b->node == n && !strcmp(b->name, c->bitmap)) {
                found = b;
            }
        }
        if (!found) {
            error_setg(errp, "Cannot migrate checkpoint '%s' of node '%s': "
                       "its bitmap '%s' does not migrate", c->name,
                       bdrv_get_node_name(n->bs), c->bitmap);
            error_append_hint(errp, "Add the bitmap to "
                              "block-bitmap-mapping");
            return false;
        }
        if (!(found->flags & MIG_BITMAP_PERSISTENT)) {
            error_setg(errp, "Cannot migrate checkpoint '%s' of node '%s': "
                       "its bitmap '%s' would not be persistent", c->name,
                       bdrv_get_node_name(n->bs), c->bitmap);
            return false;
        }
    }
    return true;
}

static bool add_node(Outgoing *o, BlockDriverState *bs, GError **errp)
{
    const char *name = bdrv_get_node_name(bs);
    MigNodeMap *nm = NULL;
    OutNode *n;
    guint first = o->bitmaps->len;

    if (o->alias_map) {
        nm = g_hash_table_lookup(o->alias_map, name);
        if (!nm) {
            return true;   /* unmapped nodes stay */
        }
    }
    n = g_new0(OutNode, 1);
    n->bs = bs;
    bdrv_ref(bs);
    n->alias = g_strdup(nm ? nm->to : name);
    n->size = (uint64_t)MAX(bdrv_getlength(bs), 0);
    n->id = o->nodes->len;
    g_ptr_array_add(o->nodes, n);
    if (!pick_bitmaps(o, n, nm, errp)) {
        return false;
    }
    if (bdrv_supports_checkpoints(bs)) {
        n->chain = bdrv_checkpoint_chain(bs, errp);
        if (!n->chain) {
            g_prefix_error(errp, "Cannot migrate the checkpoints of node "
                           "'%s': ", name);
            return false;
        }
        if (!check_chain_bitmaps(o, n, errp)) {
            return false;
        }
    }
    if (o->bitmaps->len == first &&
        (!n->chain || !ckpt_chain_length(n->chain))) {
        g_ptr_array_remove_index(o->nodes, o->nodes->len - 1);
        return true;   /* nothing to send */
    }
    if (n->alias[0] == '#' && o->bitmaps->len > first) {
        OutBitmap *b = g_ptr_array_index(o->bitmaps, first);
        error_setg(errp, "Bitmap '%s' in a node with auto-generated name "
                   "'%s' can't be migrated", b->name, name);
        return false;
    }
    return true;
}

/* Trackers, then busy flags: nothing may change a migrating bitmap. */
static bool start_tracking(Outgoing *o, GError **errp)
{
    for (guint i = 0; i < o->bitmaps->len; i++) {
        OutBitmap *b = g_ptr_array_index(o->bitmaps, i);
        OutNode *n = b->node;
        uint64_t gran = bdrv_dirty_bitmap_granularity(b->bm);

        if (!(b->flags & MIG_BITMAP_RECORDING)) {
            continue;
        }
        if (n->tracker && bdrv_dirty_bitmap_granularity(n->tracker) > gran) {
            bdrv_release_dirty_bitmap(n->tracker);
            n->tracker = NULL;
        }
        if (!n->tracker) {
            n->tracker = bdrv_create_dirty_bitmap(n->bs, gran, NULL, errp);
            if (!n->tracker) {
                return false;
            }
        }
    }
    for (guint i = 0; i < o->bitmaps->len; i++) {
        OutBitmap *b = g_ptr_array_index(o->bitmaps, i);
        bdrv_dirty_bitmap_set_busy(b->bm, true);
        b->made_busy = true;
    }
    return true;
}

bool out_setup_main(void *opaque, GError **errp)
{
    Outgoing *o = opaque;
    g_autoptr(GPtrArray) all = g_ptr_array_new();
    g_autoptr(GPtrArray) flush = mig_nodes_to_drain();

    for (guint i = 0; i < flush->len; i++) {
        BlockDriverState *bs = g_ptr_array_index(flush, i);
        bdrv_ref(bs);
        g_ptr_array_add(o->flushed, bs);
    }
    if (o->dirty_bitmaps) {
        for (BlockDriverState *bs = bdrv_next_node(NULL); bs;
             bs = bdrv_next_node(bs)) {
            g_ptr_array_add(all, bs);
        }
        for (guint i = 0; i < all->len; i++) {
            if (!add_node(o, g_ptr_array_index(all, i), errp)) {
                return false;
            }
        }
        if (!start_tracking(o, errp)) {
            return false;
        }
    }
    mig_set_status(MIGRATION_STATUS_ACTIVE);
    return true;
}

static bool bitmap_sent(Outgoing *o, BlockDriverState *bs, const char *name)
{
    for (guint i = 0; i < o->bitmaps->len; i++) {
        OutBitmap *b = g_ptr_array_index(o->bitmaps, i);
        if (b->node->bs == bs && !strcmp(b->name, name)) {
            return true;
        }
    }
    return false;
}

/* A bitmap that would migrate but appeared after the setup. */
bool out_check_no_new_bitmaps(Outgoing *o, GError **errp)
{
    for (BlockDriverState *bs = bdrv_next_node(NULL); bs;
         bs = bdrv_next_node(bs)) {
        MigNodeMap *nm = NULL;

        if (bdrv_is_read_only(bs)) {
            continue;
        }
        if (o->alias_map) {
            nm = g_hash_table_lookup(o->alias_map, bdrv_get_node_name(bs));
            if (!nm) {
                continue;
            }
        }
        for (BdrvDirtyBitmap *bm = bdrv_dirty_bitmap_first(bs); bm;
             bm = bdrv_dirty_bitmap_next(bm)) {
            const char *name = bdrv_dirty_bitmap_name(bm);
            if (name && (!nm || g_hash_table_contains(nm->bitmaps, name)) &&
                !bitmap_sent(o, bs, name)) {
                error_setg(errp, "Bitmap '%s' of node '%s' was added during "
                           "the migration", name, bdrv_get_node_name(bs));
                return false;
            }
        }
    }
    return true;
}

