/*
 * Activation and inactivation of nodes for migration (see
 * include/block/activation.h): store and flush, reopen the format driver
 * with or without BDRV_O_INACTIVE while keeping the node's dirty bitmap
 * objects, and move the file locks.
 *
 * Reopening a driver is close + open on the same BlockDriverState with
 * the options it was opened with.  The node's bitmap objects stay
 * attached: a format driver creates objects at open only for the image's
 * bitmaps the node does not have yet, so everything the open checks
 * (checkpoint chains against bitmaps) sees the objects that are the
 * truth, not copies the image may hold in an older state.
 */
#include "block/activation.h"
#include "block/block_int.h"
#include "block/dirty-bitmap.h"
#include "util/options.h"

#include <errno.h>
#include <string.h>

static bool incoming_migration;

void bdrv_set_incoming_migration(bool incoming)
{
    incoming_migration = incoming;
}

bool bdrv_incoming_migration(void)
{
    return incoming_migration;
}

bool bdrv_is_inactive(BlockDriverState *bs)
{
    return bs->open_flags & BDRV_O_INACTIVE;
}

/* ---- Bitmap objects across a reopen ---- */

/*
 * Before a node opened inactive takes over: the persistent bitmaps its
 * driver loaded while inactive describe the image as it was then; drop
 * them so that the reopen loads them again.  Bitmaps created meanwhile
 * (a migration's, or in memory only) stay.
 */
static void drop_stale_bitmaps(BlockDriverState *bs)
{
    g_autoptr(GPtrArray) stale = g_ptr_array_new();

    for (BdrvDirtyBitmap *bm = bdrv_dirty_bitmap_first(bs); bm;
         bm = bdrv_dirty_bitmap_next(bm)) {
        if (bdrv_dirty_bitmap_persistent(bm) &&
            bdrv_dirty_bitmap_readonly(bm) && !bdrv_dirty_bitmap_busy(bm)) {
            g_ptr_array_add(stale, bm);
        }
    }
    for (guint i = 0; i < stale->len; i++) {
        bdrv_release_dirty_bitmap(g_ptr_array_index(stale, i));
    }
}

/* Inactive nodes' bitmaps are read-only: nothing may change or store them. */
static void set_bitmaps_readonly(BlockDriverState *bs)
{
    bool ro = bdrv_is_read_only(bs) || bdrv_is_inactive(bs);

    for (BdrvDirtyBitmap *bm = bdrv_dirty_bitmap_first(bs); bm;
         bm = bdrv_dirty_bitmap_next(bm)) {
        bdrv_dirty_bitmap_set_readonly(bm, ro);
    }
}

/* ---- Reopening the format driver ---- */

static bool open_driver(BlockDriverState *bs, int flags, GError **errp)
{
    const BlockDriver *drv = bs->drv;
    g_autoptr(JsonObject) opts = options_copy(bs->full_options);

    if (drv->instance_size) {
        memset(bs->opaque, 0, drv->instance_size);
    }
    g_clear_pointer(&bs->backing_file, g_free);
    g_clear_pointer(&bs->backing_format, g_free);
    /* The driver takes its own options and leaves the generic ones. */
    if (drv->open(bs, opts, flags, errp) < 0) {
        if (drv->instance_size) {
            memset(bs->opaque, 0, drv->instance_size);
        }
        return false;
    }
    bs->open_flags = flags;
    return true;
}

/*
 * Close and open the driver again with @flags.  The node's bitmap objects
 * stay attached throughout: the close stores what it must, and the open
 * adds objects only for the bitmaps of the image the node does not have.
 */
static bool reopen_driver(BlockDriverState *bs, int flags, GError **errp)
{
    int old_flags = bs->open_flags;
    g_autoptr(GError) again = NULL;
    bool ok;

    bs->drv->close(bs);
    ok = open_driver(bs, flags, errp);
    if (!ok) {
        g_prefix_error(errp, "Could not reopen node '%s': ",
                       bdrv_get_node_name(bs));
        if (!open_driver(bs, old_flags, &again)) {
            /* The node now reads as empty and refuses writes. */
            g_warning("node '%s' is unusable: %s", bdrv_get_node_name(bs),
                      again->message);
        }
    }
    set_bitmaps_readonly(bs);
    return ok;
}

/* ---- File locks of protocol children ---- */

/* Give @file the locks of an (in)active child of @parent (may be NULL). */
static bool set_file_active(BlockDriverState *file, BlockDriverState *parent,
                            bool active, GError **errp)
{
    int flags = active ? file->open_flags & ~BDRV_O_INACTIVE
                       : file->open_flags | BDRV_O_INACTIVE;
    int pflags = flags;

    if (parent) {
        pflags = active ? parent->open_flags & ~BDRV_O_INACTIVE
                        : parent->open_flags | BDRV_O_INACTIVE;
    }
    if (!bdrv_apply_file_perm(file, parent ? parent->drv : NULL, pflags,
                              errp)) {
        return false;
    }
    file->open_flags = flags;
    return true;
}

/* ---- Nodes ---- */

static bool format_needs_reopen(BlockDriverState *bs)
{
    return !bs->drv->is_protocol && !bdrv_is_read_only(bs);
}

/* Store and flush everything of an active, writable format node. */
static bool store_all(BlockDriverState *bs, GError **errp)
{
    int ret;

    if (!bdrv_store_persistent_dirty_bitmaps(bs, errp)) {
        g_prefix_error(errp, "Could not store the bitmaps of node '%s': ",
                       bdrv_get_node_name(bs));
        return false;
    }
    g_debug("inactivate %s: bitmaps stored", bdrv_get_node_name(bs));
    /*
     * A driver's inactivate hook flushes.  Without one, flush the driver
     * and its file directly: @bs is drained, and bdrv_flush() would wait
     * for the drained section to end.
     */
    if (bs->drv->inactivate) {
        ret = bs->drv->inactivate(bs);
    } else {
        ret = bs->drv->flush ? bs->drv->flush(bs) : 0;
        if (ret == 0 && bs->file) {
            ret = bdrv_flush(bs->file);
        }
    }
    if (ret < 0) {
        error_setg_errno(errp, -ret, "Could not flush node '%s'",
                         bdrv_get_node_name(bs));
        return false;
    }
    return true;
}

bool bdrv_inactivate(BlockDriverState *bs, GError **errp)
{
    bool ok = true;

    if (bdrv_is_inactive(bs)) {
        return true;
    }
    if (bs->drv->is_protocol) {
        /* Used directly (an export of the file): its data first. */
        int ret = bs->drv->flush ? bs->drv->flush(bs) : 0;
        if (ret < 0) {
            error_setg_errno(errp, -ret, "Could not flush node '%s'",
                             bdrv_get_node_name(bs));
            return false;
        }
        return set_file_active(bs, NULL, false, errp);
    }
    bdrv_drained_begin(bs);
    if (format_needs_reopen(bs)) {
        ok = store_all(bs, errp);
        g_debug("inactivate %s: stored", bdrv_get_node_name(bs));
        ok = ok && reopen_driver(bs, bs->open_flags | BDRV_O_INACTIVE, errp);
        g_debug("inactivate %s: reopened", bdrv_get_node_name(bs));
    } else {
        bs->open_flags |= BDRV_O_INACTIVE;
        set_bitmaps_readonly(bs);
    }
    bdrv_drained_end(bs);
    if (!ok) {
        return false;
    }
    /* Children last: the parent wrote through them until now. */
    if (bs->file && !bdrv_is_inactive(bs->file) &&
        !set_file_active(bs->file, bs, false, errp)) {
        return false;
    }
    return !bs->backing || bdrv_inactivate(bs->backing, errp);
}

bool bdrv_activate(BlockDriverState *bs, bool keep_bitmaps, GError **errp)
{
    bool ok = true;

    if (!bdrv_is_inactive(bs)) {
        return true;
    }
    if (bs->drv->is_protocol) {
        return set_file_active(bs, NULL, true, errp);
    }
    /* Children first: the parent reads its metadata through them. */
    if (bs->backing && !bdrv_activate(bs->backing, keep_bitmaps, errp)) {
        return false;
    }
    if (bs->file && bdrv_is_inactive(bs->file) &&
        !set_file_active(bs->file, bs, true, errp)) {
        return false;
    }
    bdrv_drained_begin(bs);
    if (format_needs_reopen(bs)) {
        if (!keep_bitmaps) {
            drop_stale_bitmaps(bs);
        }
        ok = reopen_driver(bs, bs->open_flags & ~BDRV_O_INACTIVE, errp);
    } else {
        bs->open_flags &= ~BDRV_O_INACTIVE;
        set_bitmaps_readonly(bs);
    }
    bdrv_drained_end(bs);
    if (!ok && bs->file) {
        /* Do not keep write locks we cannot use. */
        set_file_active(bs->file, bs, false, NULL);
    }
    return ok;
}

/* ---- The whole graph ---- */

static bool is_child(BlockDriverState *bs)
{
    for (BlockDriverState *p = bdrv_next_node(NULL); p;
         p = bdrv_next_node(p)) {
        if (p->file == bs || p->backing == bs) {
            return true;
        }
    }
    return false;
}

/* Nodes nobody else uses, in opening order. */
static GPtrArray *root_nodes(void)
{
    GPtrArray *roots = g_ptr_array_new();

    for (BlockDriverState *bs = bdrv_next_node(NULL); bs;
         bs = bdrv_next_node(bs)) {
        if (!is_child(bs)) {
            g_ptr_array_add(roots, bs);
        }
    }
    return roots;
}

bool bdrv_inactivate_all(GError **errp)
{
    g_autoptr(GPtrArray) roots = root_nodes();

    for (guint i = 0; i < roots->len; i++) {
        if (!bdrv_inactivate(g_ptr_array_index(roots, i), errp)) {
            /* Give back what was done: the caller still owns the images. */
            bdrv_activate_all(true, NULL);
            return false;
        }
    }
    return true;
}

bool bdrv_activate_all(bool keep_bitmaps, GError **errp)
{
    g_autoptr(GPtrArray) roots = root_nodes();
    GError *first = NULL;

    /* Every node, even after a failure, so that as much as possible works. */
    for (guint i = 0; i < roots->len; i++) {
        GError *err = NULL;
        if (!bdrv_activate(g_ptr_array_index(roots, i), keep_bitmaps,
                           &err)) {
            if (first) {
                g_error_free(err);
            } else {
                first = err;
            }
        }
    }
    if (first) {
        g_propagate_error(errp, first);
        return false;
    }
    return true;
}
