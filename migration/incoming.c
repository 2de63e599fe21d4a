/*
 * The destination side of a migration: listen, accept one connection,
 * read and check every section on a worker thread (receive.c), and at
 * the end activate the nodes and install what was received, on the main
 * thread, with I/O held back so that no write escapes the bitmaps.
 *
 * Nothing received touches a node before COMPLETE: bitmaps are assembled
 * in private HBitmaps and checkpoint chains in private chains.  If the
 * stream fails at any point, all of it is dropped, the nodes stay
 * inactive (the source resumes), and migrate-incoming may be tried again.
 */
#include "incoming.h"
#include "block/activation.h"
#include "block/block_int.h"
#include "block/checkpoint-ops.h"
#include "qapi/error.h"

#include <string.h>

static Incoming *cur;

/* ---- Checks against the nodes (main thread) ---- */

/* The bitmap layer stores a bitmap only if it knows it changed. */
static void mark_changed(BdrvDirtyBitmap *bm)
{
    uint64_t align = bdrv_dirty_bitmap_serialization_align(bm);
    uint8_t byte = 0;

    bdrv_dirty_bitmap_serialize_part(bm, &byte, 0, align);
    bdrv_dirty_bitmap_deserialize_part(bm, &byte, 0, align);
}

static bool check_bitmap(InBitmap *b, BlockDriverState *bs, GError **errp)
{
    BdrvDirtyBitmap *old = bdrv_find_dirty_bitmap(bs, b->name);

    if (old && old == b->bm) {
        return true;   /* adopted already */
    }
    if (old && !bdrv_dirty_bitmap_persistent(old)) {
        /* Persistent ones came from the image: they are replaced. */
        error_setg(errp, "Bitmap with the same name ('%s') already exists "
                   "on destination", b->name);
        return false;
    }
    if (old && bdrv_dirty_bitmap_busy(old)) {
        error_setg(errp, "Bitmap '%s' is currently in use by another "
                   "operation and cannot be used", b->name);
        return false;
    }
    if (b->persistent && !bdrv_supports_persistent_dirty_bitmap(bs)) {
        error_setg(errp, "Cannot make bitmap '%s' persistent on node '%s': "
                   "its format cannot store bitmaps", b->name,
                   bdrv_get_node_name(bs));
        return false;
    }
    return true;
}

static bool check_node(InNode *n, GError **errp)
{
    BlockDriverState *bs = bdrv_find_node(n->name);
    int64_t len;

    if (!bs) {
        error_setg(errp, "Cannot find node '%s' for the incoming migration",
                   n->name);
        return false;
    }
    if (n->bs && n->bs != bs) {
        error_setg(errp, "Node '%s' was replaced during the migration",
                   n->name);
        return false;
    }
    if (!bdrv_is_inactive(bs)) {
        error_setg(errp, "Node '%s' is active on the destination", n->name);
        error_append_hint(errp, "Add the nodes while the daemon waits for "
                          "the migration (--incoming)");
        return false;
    }
    len = bdrv_getlength(bs);
    if (len < 0 || (uint64_t)len != n->size) {
        error_setg(errp, "Node '%s' has %" PRIu64 " bytes on the source but "
                   "%" PRId64 " on the destination", n->name, n->size, len);
        return false;
    }
    if (n->chain && !bdrv_supports_checkpoints(bs)) {
        error_setg(errp, "Node '%s' cannot store the checkpoints of the "
                   "source", n->name);
        return false;
    }
    if (!n->bs) {
        n->bs = bs;
        bdrv_ref(bs);
    }
    return true;
}

static bool validate_main(void *opaque, GError **errp)
{
    Incoming *in = opaque;

    for (guint i = 0; i < in->nodes->len; i++) {
        if (!check_node(g_ptr_array_index(in->nodes, i), errp)) {
            return false;
        }
    }
    for (guint i = 0; i < in->bitmaps->len; i++) {
        InBitmap *b = g_ptr_array_index(in->bitmaps, i);
        if (!check_bitmap(b, b->node->bs, errp)) {
            return false;
        }
    }
    return true;
}

/*
 * Attach the complete bitmaps to their (inactive) nodes, busy until the
 * take-over: the frozen ones at the end of the live phase, the recording
 * ones when the stream is complete, before the nodes are activated.  So
 * the activation sees the migrated bitmaps rather than the copies in the
 * image (which the source did not store, and may be flagged in use), and
 * taking over in the pause costs nothing per bitmap.  The stale copies
 * the nodes read from the image while inactive go: an inactive node never
 * stores anything.
 */
static bool adopt_ended(Incoming *in, GError **errp)
{
    for (guint i = 0; i < in->bitmaps->len; i++) {
        InBitmap *b = g_ptr_array_index(in->bitmaps, i);
        BlockDriverState *bs = b->node->bs;
        BdrvDirtyBitmap *old;

        if (!b->ended || b->bm) {
            continue;
        }
        old = bdrv_find_dirty_bitmap(bs, b->name);
        if (old) {
            bdrv_release_dirty_bitmap(old);
        }
        b->bm = bdrv_create_dirty_bitmap(bs, b->granularity, b->name, errp);
        if (!b->bm) {
            return false;
        }
        if (!(b->end_flags & MIG_BITMAP_RECORDING)) {
            bdrv_disable_dirty_bitmap(b->bm);
        }
        bdrv_dirty_bitmap_set_busy(b->bm, true);
        bdrv_restore_dirty_bitmap(b->bm, g_steal_pointer(&b->hb));
        mark_changed(b->bm);
        bdrv_dirty_bitmap_set_persistence(b->bm, b->persistent);
    }
    return true;
}

/* ---- Taking over (main thread) ---- */

static void install_bitmap(InBitmap *b)
{
    bdrv_dirty_bitmap_set_busy(b->bm, false);
    b->bm = NULL;
}

/* The chain as the source had it, unless the image already has it. */
static bool install_chain(InNode *n, GError **errp)
{
    g_autoptr(CheckpointChain) now = bdrv_checkpoint_chain(n->bs, NULL);
    const BdrvCheckpointDriverOps *ops = n->bs->drv->checkpoint_ops;

    if (now && ckpt_chain_equal(now, n->chain)) {
        return true;
    }
    g_debug("migration: node '%s' gets the source's checkpoint table",
            n->name);
    if (!ops || !ops->commit || !ops->commit(n->bs, n->chain, errp)) {
        g_prefix_error(errp, "Could not store the checkpoints of node "
                       "'%s': ", n->name);
        return false;
    }
    return true;
}

static bool take_over(Incoming *in, GError **errp)
{
    mig_trace("draining done");
    if (!bdrv_activate_all(false, errp)) {
        g_prefix_error(errp, "Could not activate the images: ");
        /* Give the locks back: the source takes its images again. */
        bdrv_inactivate_all(NULL);
        return false;
    }
    mig_trace("nodes active");
    for (guint i = 0; i < in->bitmaps->len; i++) {
        install_bitmap(g_ptr_array_index(in->bitmaps, i));
    }
    for (guint i = 0; i < in->nodes->len; i++) {
        InNode *n = g_ptr_array_index(in->nodes, i);
        if (n->chain && !install_chain(n, errp)) {
            return false;
        }
    }
    return true;
}

bool mig_in_activate_main(void *opaque, GError **errp)
{
    Incoming *in = opaque;
    g_autoptr(GPtrArray) nodes = NULL;
    bool ok;

    mig_trace("COMPLETE received");
    if (!validate_main(in, errp) || !adopt_ended(in, errp)) {
        return false;
    }
    /* No request may reach a node between activation and the bitmaps. */
    nodes = mig_nodes_to_drain();
    for (guint i = 0; i < nodes->len; i++) {
        bdrv_drained_begin(g_ptr_array_index(nodes, i));
    }
    ok = take_over(in, errp);
    if (ok) {
        bdrv_set_incoming_migration(false);
    }
    for (guint i = 0; i < nodes->len; i++) {
        bdrv_drained_end(g_ptr_array_index(nodes, i));
    }
    return ok;
}

bool mig_in_validate_main(void *opaque, GError **errp)
{
    return validate_main(opaque, errp) && adopt_ended(opaque, errp);
}

/* ---- Lifecycle ---- */

static void in_node_free(gpointer p)
{
    InNode *n = p;

    if (n->bs) {
        bdrv_unref(n->bs);
    }
    if (n->chain) {
        ckpt_chain_free(n->chain);
    }
    g_free(n->alias);
    g_free(n->name);
    g_free(n);
}

static void in_bitmap_free(gpointer p)
{
    InBitmap *b = p;

    if (b->bm) {
        /* Adopted but never installed: the migration failed. */
        bdrv_dirty_bitmap_set_busy(b->bm, false);
        bdrv_release_dirty_bitmap(b->bm);
    }
    if (b->hb) {
        hbitmap_free(b->hb);
    }
    g_free(b->alias);
    g_free(b->name);
    g_free(b);
}

static bool finish_main(void *opaque, GError **errp)
{
    Incoming *in = opaque;

    /* Whatever was not installed is dropped here. */
    g_ptr_array_set_size(in->bitmaps, 0);
    g_ptr_array_set_size(in->nodes, 0);
    g_mutex_lock(&in->lock);
    mig_state_set_stream(NULL);
    g_clear_pointer(&in->stream, mig_stream_free);
    g_mutex_unlock(&in->lock);
    mig_state_end();
    if (in->ok) {
        mig_set_status(MIGRATION_STATUS_COMPLETED);
    } else {
        mig_set_error(in->err->message);
        mig_set_status(MIGRATION_STATUS_FAILED);
    }
    in->finished = true;
    return true;
}

static gpointer incoming_thread(gpointer opaque)
{
    Incoming *in = opaque;

    in->ok = mig_in_receive(in, &in->err);
    mig_run_on_main(finish_main, in, NULL);
    return NULL;
}

static void accept_cb(GObject *source, GAsyncResult *res, gpointer opaque)
{
    Incoming *in = opaque;
    g_autoptr(GError) err = NULL;
    g_autoptr(JsonArray) mapping = NULL;
    GSocketConnection *conn;

    in->accepting = false;
    conn = g_socket_listener_accept_finish(G_SOCKET_LISTENER(source), res,
                                           NULL, &err);
    if (!conn) {
        if (!g_error_matches(err, G_IO_ERROR, G_IO_ERROR_CANCELLED)) {
            in->err = g_error_copy(err);
            in->ok = false;
            finish_main(in, NULL);
        }
        return;
    }
    /* One migration per listener, as QEMU. */
    g_socket_listener_close(in->listener);
    /* The parameters in force when the source connects apply. */
    mapping = mig_param_bitmap_mapping();
    if (mapping) {
        in->alias_map = mig_alias_map_new(mapping, false, NULL);
        g_assert(in->alias_map);   /* checked when it was set */
    }
    g_mutex_lock(&in->lock);
    in->stream = mig_stream_new(G_IO_STREAM(conn));
    g_mutex_unlock(&in->lock);
    g_object_unref(conn);
    mig_state_set_stream(in->stream);
    mig_state_connected();
    mig_set_status(MIGRATION_STATUS_ACTIVE);
    in->thread = g_thread_new("migration-in", incoming_thread, in);
}

static void incoming_free(Incoming *in)
{
    if (in->thread) {
        g_thread_join(in->thread);
    }
    if (in->listener) {
        g_socket_listener_close(in->listener);
        g_object_unref(in->listener);
    }
    g_ptr_array_unref(in->nodes);
    g_ptr_array_unref(in->bitmaps);
    if (in->alias_map) {
        g_hash_table_unref(in->alias_map);
    }
    g_clear_error(&in->err);
    g_object_unref(in->accept_cancel);
    g_mutex_clear(&in->lock);
    g_free(in);
}

bool migration_start_incoming(const char *uri, GError **errp)
{
    Incoming *in;

    if (!bdrv_incoming_migration()) {
        error_setg(errp, "'-incoming' was not specified on the command "
                   "line");
        return false;
    }
    if (cur && !cur->finished) {
        error_setg(errp, "The incoming migration has already been started");
        return false;
    }
    if (mig_state_running()) {
        error_setg(errp, "There's a migration process in progress");
        return false;
    }
    in = g_new0(Incoming, 1);
    in->accept_cancel = g_cancellable_new();
    g_mutex_init(&in->lock);
    in->nodes = g_ptr_array_new_with_free_func(in_node_free);
    in->bitmaps = g_ptr_array_new_with_free_func(in_bitmap_free);
    in->listener = mig_transport_listen(uri, errp);
    if (!in->listener) {
        incoming_free(in);
        return false;
    }
    if (cur) {
        incoming_free(cur);
    }
    cur = in;
    mig_state_begin(MIG_DIR_INCOMING);
    mig_set_status(MIGRATION_STATUS_SETUP);
    in->accepting = true;
    g_socket_listener_accept_async(in->listener, in->accept_cancel,
                                   accept_cb, in);
    return true;
}

bool migration_expect_incoming(const char *uri, GError **errp)
{
    bdrv_set_incoming_migration(true);
    if (!strcmp(uri, "defer")) {
        return true;
    }
    return migration_start_incoming(uri, errp);
}

void mig_incoming_shutdown(void)
{
    if (!cur) {
        return;
    }
    g_cancellable_cancel(cur->accept_cancel);
    g_mutex_lock(&cur->lock);
    if (cur->stream) {
        mig_stream_cancel(cur->stream);
    }
    g_mutex_unlock(&cur->lock);
    while (cur->accepting || (cur->thread && !cur->finished)) {
        g_main_context_iteration(NULL, TRUE);
    }
    incoming_free(cur);
    cur = NULL;
}
