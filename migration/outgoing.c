/*
 * The source side of a migration (docs/migration.md, "How it works"):
 *
 *   setup     connect, exchange preambles, pick the nodes and bitmaps
 *             (block-bitmap-mapping), mark the bitmaps busy, start a
 *             tracker on each node with a recording bitmap;
 *   live      send nodes, checkpoint tables and every bitmap while I/O
 *             goes on; bitmaps that do not record are complete now;
 *             wait until the destination accepted all of it;
 *   pause     stop I/O (drain), check nothing changed the set of bitmaps
 *             or checkpoints, send what the trackers saw for the
 *             recording bitmaps, store and flush everything and make the
 *             nodes inactive (releasing the write locks), send COMPLETE;
 *   handover  the destination takes the locks and answers ACTIVATED.
 *
 * Any failure, or migrate_cancel, before ACTIVATED arrives makes the
 * nodes active again (their bitmap objects never left memory) and I/O
 * resumes.  If the destination took the locks meanwhile, reactivation
 * fails and the nodes stay inactive: the file locks decide who owns the
 * images, never both.
 *
 * The transfer runs on a worker thread; every step that touches the node
 * graph runs on the main thread through mig_run_on_main().
 */
#include "outgoing.h"
#include "block/activation.h"
#include "block/block_int.h"
#include "block/checkpoint-ops.h"
#include "qapi/error.h"

#include <string.h>

/* How long the source waits for an ERROR after the stream broke. */
#define PEER_ERROR_TIMEOUT_S 2
/* Catch-up passes before the pause: at most, and when one is short. */
#define CATCH_UP_MAX_PASSES 6
#define CATCH_UP_CONVERGED_US 4000

static Outgoing *cur;

/* ---- Catching up while I/O goes on (main thread) ---- */

/* New trackers for what comes next; the old ones say what came since. */
static bool swap_trackers_main(void *opaque, GError **errp)
{
    Outgoing *o = opaque;

    for (guint i = 0; i < o->nodes->len; i++) {
        OutNode *n = g_ptr_array_index(o->nodes, i);
        BdrvDirtyBitmap *t;

        if (!n->tracker) {
            continue;
        }
        t = bdrv_create_dirty_bitmap(n->bs,
                                     bdrv_dirty_bitmap_granularity(n->tracker),
                                     NULL, errp);
        if (!t) {
            return false;
        }
        n->old_tracker = n->tracker;
        n->tracker = t;
    }
    return true;
}

static bool drop_old_trackers_main(void *opaque, GError **errp)
{
    Outgoing *o = opaque;

    for (guint i = 0; i < o->nodes->len; i++) {
        OutNode *n = g_ptr_array_index(o->nodes, i);
        g_clear_pointer(&n->old_tracker, bdrv_release_dirty_bitmap);
    }
    return true;
}

static void release_nodes(GPtrArray *nodes)
{
    for (guint i = 0; i < nodes->len; i++) {
        bdrv_unref(g_ptr_array_index(nodes, i));
    }
    g_ptr_array_set_size(nodes, 0);
}

/* ---- Switch-over (main thread) ---- */

static bool pause_main(void *opaque, GError **errp)
{
    Outgoing *o = opaque;
    g_autoptr(GPtrArray) nodes = mig_nodes_to_drain();

    mig_state_pause_begin();
    for (guint i = 0; i < nodes->len; i++) {
        BlockDriverState *bs = g_ptr_array_index(nodes, i);
        bdrv_ref(bs);
        bdrv_drained_begin(bs);
        g_ptr_array_add(o->drained, bs);
    }
    o->paused = true;
    mig_set_status(MIGRATION_STATUS_DEVICE);
    return true;
}

static void resume_io(Outgoing *o)
{
    for (guint i = 0; i < o->drained->len; i++) {
        BlockDriverState *bs = g_ptr_array_index(o->drained, i);
        bdrv_drained_end(bs);
        bdrv_unref(bs);
    }
    g_ptr_array_set_size(o->drained, 0);
}

/* What was sent must still describe the nodes. */
static bool final_check_main(void *opaque, GError **errp)
{
    Outgoing *o = opaque;

    if (o->dirty_bitmaps && !out_check_no_new_bitmaps(o, errp)) {
        return false;
    }

    for (guint i = 0; i < o->bitmaps->len; i++) {
        OutBitmap *b = g_ptr_array_index(o->bitmaps, i);
        bool rec = bdrv_dirty_bitmap_recording(b->bm);
        if (rec != !!(b->flags & MIG_BITMAP_RECORDING)) {
            error_setg(errp, "Bitmap '%s' of node '%s' was %s during the "
                       "migration", b->name, bdrv_get_node_name(b->node->bs),
                       rec ? "enabled" : "disabled");
            return false;
        }
    }
    for (guint i = 0; i < o->nodes->len; i++) {
        OutNode *n = g_ptr_array_index(o->nodes, i);
        g_autoptr(CheckpointChain) now = NULL;

        if (!n->chain) {
            continue;
        }
        now = bdrv_checkpoint_chain(n->bs, errp);
        if (!now) {
            return false;
        }
        if (!ckpt_chain_equal(now, n->chain)) {
            error_setg(errp, "The checkpoints of node '%s' changed during "
                       "the migration", bdrv_get_node_name(n->bs));
            return false;
        }
    }
    return true;
}

static bool inactivate_main(void *opaque, GError **errp)
{
    Outgoing *o = opaque;

    /* The final changes are sent: the trackers have done their job. */
    for (guint i = 0; i < o->nodes->len; i++) {
        OutNode *n = g_ptr_array_index(o->nodes, i);
        g_clear_pointer(&n->tracker, bdrv_release_dirty_bitmap);
    }
    /* The destination owns and stores the bitmaps that migrate. */
    for (guint i = 0; i < o->bitmaps->len; i++) {
        OutBitmap *b = g_ptr_array_index(o->bitmaps, i);
        bdrv_dirty_bitmap_skip_store(b->bm, true);
    }
    mig_trace("trackers released");
    if (!bdrv_inactivate_all(errp)) {
        g_prefix_error(errp, "Could not hand over the images: ");
        return false;
    }
    o->inactivated = true;
    return true;
}

/* ---- The worker ---- */

/* The next section must be @type (with an empty payload). */
static bool expect_reply(Outgoing *o, MigSectionType type, GError **errp)
{
    MigSection sec;
    g_autoptr(GError) err = NULL;

    if (!mig_stream_recv(o->stream, &sec, &err)) {
        error_setg(errp, "No answer from the destination: %s", err->message);
        return false;
    }
    if (sec.type == MIG_SEC_ERROR) {
        MigReader r;
        g_autofree char *msg = NULL;

        mig_rd_init(&r, "ERROR", sec.payload, sec.len);
        msg = mig_get_str(&r);
        error_setg(errp, "The destination failed: %s",
                   msg ? msg : "(no reason given)");
    } else if (sec.type != type || sec.len) {
        error_setg(errp, "Unexpected %s section from the destination "
                   "(expected %s)", mig_section_name(sec.type),
                   mig_section_name(type));
    }
    mig_section_clear(&sec);
    return !(errp && *errp);
}

/*
 * After a failed write the destination may have said why: give it a
 * moment, and prefer its reason to "broken pipe".
 */
static void take_peer_error(Outgoing *o, GError **errp)
{
    MigSection sec;

    mig_stream_set_timeout(o->stream, PEER_ERROR_TIMEOUT_S);
    while (mig_stream_recv(o->stream, &sec, NULL)) {
        if (sec.type == MIG_SEC_ERROR) {
            MigReader r;
            g_autofree char *msg = NULL;

            mig_rd_init(&r, "ERROR", sec.payload, sec.len);
            msg = mig_get_str(&r);
            if (msg) {
                g_clear_error(errp);
                error_setg(errp, "The destination failed: %s", msg);
            }
            mig_section_clear(&sec);
            return;
        }
        mig_section_clear(&sec);
    }
}

static void flush_all(Outgoing *o)
{
    for (guint i = 0; i < o->flushed->len; i++) {
        /* Errors come back at the flush in the pause. */
        bdrv_flush(g_ptr_array_index(o->flushed, i));
    }
}

/* One pass: send again what changed since the last tracker swap. */
static bool catch_up_pass(Outgoing *o, GError **errp)
{
    bool ok = true;

    if (!mig_run_on_main(swap_trackers_main, o, errp)) {
        return false;
    }
    for (guint i = 0; i < o->bitmaps->len && ok; i++) {
        OutBitmap *b = g_ptr_array_index(o->bitmaps, i);
        if (b->flags & MIG_BITMAP_RECORDING) {
            ok = out_send_changes(o, b, b->node->old_tracker, errp);
        }
    }
    mig_run_on_main(drop_old_trackers_main, o, NULL);
    return ok;
}

/*
 * While I/O still goes on, write to disk what is cached, and send again
 * what changed during the previous pass, until a flush finds little to
 * do.  The pause then only has to deal with what happens during the
 * last, short pass, whatever the length of the first pass (which grows
 * with the number of bitmaps) and however much was written meanwhile.
 */
static bool catch_up(Outgoing *o, GError **errp)
{
    for (int pass = 0; pass < CATCH_UP_MAX_PASSES; pass++) {
        gint64 start = g_get_monotonic_time();

        flush_all(o);
        if (!catch_up_pass(o, errp)) {
            return false;
        }
        mig_trace("caught up");
        if (g_get_monotonic_time() - start < CATCH_UP_CONVERGED_US) {
            break;
        }
    }
    return true;
}

static bool send_live(Outgoing *o, GError **errp)
{
    uint64_t remaining = 0;

    for (guint i = 0; i < o->bitmaps->len; i++) {
        remaining += out_bitmap_bytes(g_ptr_array_index(o->bitmaps, i));
    }
    mig_stats_set_remaining(remaining);
    o->live_start = g_get_monotonic_time();
    if (!out_send_nodes(o, errp)) {
        return false;
    }
    for (guint i = 0; i < o->bitmaps->len; i++) {
        OutBitmap *b = g_ptr_array_index(o->bitmaps, i);
        if (!out_send_bitmap_live(o, b, errp)) {
            return false;
        }
        remaining -= out_bitmap_bytes(b);
        mig_stats_set_remaining(remaining);
    }
    mig_trace("bitmaps sent");
    return catch_up(o, errp) && out_send(o, MIG_SEC_LIVE_DONE, NULL, errp) &&
           expect_reply(o, MIG_SEC_LIVE_OK, errp);
}

/*
 * In the pause: the changes since the catch-up, then the ends of the
 * recording bitmaps.  Their SHA-256 is computed on frozen copies while
 * the main thread stores, flushes and inactivates the nodes.
 */
static bool send_final(Outgoing *o, GError **errp)
{
    MigMainCall *call;
    GError *err = NULL;
    bool ok = true;

    mig_trace("I/O stopped");
    if (!out_send(o, MIG_SEC_SWITCHOVER, NULL, errp) ||
        !mig_run_on_main(final_check_main, o, errp)) {
        return false;
    }
    mig_trace("checked");
    for (guint i = 0; i < o->bitmaps->len; i++) {
        OutBitmap *b = g_ptr_array_index(o->bitmaps, i);
        if (!(b->flags & MIG_BITMAP_RECORDING)) {
            continue;
        }
        if (!out_send_changes(o, b, b->node->tracker, errp)) {
            return false;
        }
        b->final = bdrv_dirty_bitmap_copy(b->bm, errp);
        if (!b->final) {
            return false;
        }
    }
    mig_trace("final changes sent");
    call = mig_main_call_begin(inactivate_main, o);
    for (guint i = 0; i < o->bitmaps->len && ok; i++) {
        OutBitmap *b = g_ptr_array_index(o->bitmaps, i);
        if (b->final) {
            ok = out_send_end(o, b, b->final, &err);
        }
    }
    mig_trace("bitmap ends sent");
    if (!mig_main_call_finish(call, ok ? &err : NULL)) {
        ok = false;
    }
    mig_trace("inactive");
    if (!ok) {
        g_propagate_error(errp, err);
    }
    return ok;
}

static bool connect_stream(Outgoing *o, GError **errp)
{
    GIOStream *io = mig_transport_connect(o->uri, o->connect_cancel, errp);
    bool cancelled;

    if (!io) {
        return false;
    }
    g_mutex_lock(&o->lock);
    o->stream = mig_stream_new(io);
    cancelled = o->cancel_requested;
    g_mutex_unlock(&o->lock);
    g_object_unref(io);
    if (cancelled) {
        mig_stream_cancel(o->stream);
    }
    mig_state_set_stream(o->stream);
    return mig_stream_send_preamble(o->stream, MIG_STREAM_MAGIC_SOURCE,
                                    errp) &&
           mig_stream_recv_preamble(o->stream, MIG_STREAM_MAGIC_DEST, errp);
}

static bool outgoing_run(Outgoing *o, GError **errp)
{
    if (!connect_stream(o, errp)) {
        return false;
    }
    mig_state_connected();
    if (!mig_run_on_main(out_setup_main, o, errp) || !send_live(o, errp) ||
        !mig_run_on_main(pause_main, o, errp) || !send_final(o, errp) ||
        !out_send(o, MIG_SEC_COMPLETE, NULL, errp)) {
        /* Tell the destination, and see whether it told us first. */
        if (o->stream && !mig_stream_cancelled(o->stream)) {
            mig_stream_send_error(o->stream, *errp ? (*errp)->message
                                                   : "Migration failed");
            take_peer_error(o, errp);
        }
        return false;
    }
    if (!expect_reply(o, MIG_SEC_ACTIVATED, errp)) {
        return false;
    }
    mig_trace("destination active");
    return true;
}

/* ---- The end (main thread) ---- */

static void cleanup(Outgoing *o)
{
    g_ptr_array_set_size(o->bitmaps, 0);
    g_ptr_array_set_size(o->nodes, 0);
    release_nodes(o->flushed);
    g_mutex_lock(&o->lock);
    mig_state_set_stream(NULL);
    g_clear_pointer(&o->stream, mig_stream_free);
    g_mutex_unlock(&o->lock);
}

static bool finish_main(void *opaque, GError **errp)
{
    Outgoing *o = opaque;
    g_autoptr(GError) back = NULL;

    if (o->ok) {
        /* Waiting writers now fail: the images belong to the destination. */
        resume_io(o);
        mig_state_pause_end();
        cleanup(o);
        mig_state_end();
        mig_set_status(MIGRATION_STATUS_COMPLETED);
        o->finished = true;
        return true;
    }
    if (o->inactivated && !bdrv_activate_all(true, &back)) {
        GError *e = NULL;

        /* Most likely the destination has taken over: it owns them now. */
        error_setg(&e, "%s; the source could not take its images back "
                   "(%s)", o->err->message, back->message);
        g_error_free(o->err);
        o->err = e;
        o->cancel_requested = false;
    }
    resume_io(o);
    cleanup(o);
    mig_state_end();
    mig_set_error(o->err->message);
    mig_set_status(o->cancel_requested ? MIGRATION_STATUS_CANCELLED
                                       : MIGRATION_STATUS_FAILED);
    o->finished = true;
    return true;
}

static gpointer outgoing_thread(gpointer opaque)
{
    Outgoing *o = opaque;

    o->ok = outgoing_run(o, &o->err);
    mig_run_on_main(finish_main, o, NULL);
    return NULL;
}

static void outgoing_free(Outgoing *o)
{
    if (o->thread) {
        g_thread_join(o->thread);
    }
    g_ptr_array_unref(o->bitmaps);
    g_ptr_array_unref(o->nodes);
    g_ptr_array_unref(o->drained);
    g_ptr_array_unref(o->flushed);
    if (o->alias_map) {
        g_hash_table_unref(o->alias_map);
    }
    g_clear_error(&o->err);
    g_object_unref(o->connect_cancel);
    g_mutex_clear(&o->lock);
    g_free(o->uri);
    g_free(o);
}

bool migration_start_outgoing(const char *uri, GError **errp)
{
    g_autoptr(JsonArray) mapping = mig_param_bitmap_mapping();
    Outgoing *o;

    if (mig_state_running()) {
        error_setg(errp, "There's a migration process in progress");
        return false;
    }
    if (bdrv_incoming_migration()) {
        error_setg(errp, "Guest is waiting for an incoming migration");
        return false;
    }
    if (!mig_transport_check_uri(uri, errp)) {
        return false;
    }
    for (BlockDriverState *bs = bdrv_next_node(NULL); bs;
         bs = bdrv_next_node(bs)) {
        /* Name a node the user named, if one is inactive. */
        if (bdrv_is_inactive(bs) && bdrv_get_node_name(bs)[0] != '#') {
            error_setg(errp, "Node '%s' is inactive: its image belongs to "
                       "another daemon", bdrv_get_node_name(bs));
            return false;
        }
    }
    if (cur) {
        outgoing_free(cur);
        cur = NULL;
    }
    o = g_new0(Outgoing, 1);
    o->uri = g_strdup(uri);
    o->connect_cancel = g_cancellable_new();
    g_mutex_init(&o->lock);
    o->dirty_bitmaps = migration_capability(MIGRATION_CAPABILITY_DIRTY_BITMAPS);
    o->max_bandwidth = mig_param_max_bandwidth();
    o->nodes = g_ptr_array_new_with_free_func(out_node_free);
    o->bitmaps = g_ptr_array_new_with_free_func(out_bitmap_free);
    o->drained = g_ptr_array_new();
    o->flushed = g_ptr_array_new();
    if (mapping) {
        o->alias_map = mig_alias_map_new(mapping, true, errp);
        if (!o->alias_map) {
            outgoing_free(o);
            return false;
        }
    }
    cur = o;
    mig_state_begin(MIG_DIR_OUTGOING);
    mig_set_status(MIGRATION_STATUS_SETUP);
    o->thread = g_thread_new("migration-out", outgoing_thread, o);
    return true;
}

void migration_cancel(void)
{
    Outgoing *o = cur;

    if (!o || o->finished || mig_state_direction() != MIG_DIR_OUTGOING) {
        return;
    }
    g_mutex_lock(&o->lock);
    o->cancel_requested = true;
    g_cancellable_cancel(o->connect_cancel);
    if (o->stream) {
        mig_stream_cancel(o->stream);
    }
    g_mutex_unlock(&o->lock);
    mig_set_status(MIGRATION_STATUS_CANCELLING);
}

void mig_outgoing_shutdown(void)
{
    if (!cur) {
        return;
    }
    migration_cancel();
    /* The worker may be waiting for the main thread: keep serving it. */
    while (!cur->finished) {
        g_main_context_iteration(NULL, TRUE);
    }
    outgoing_free(cur);
    cur = NULL;
}
