/*
 * The record of the current (or last) migration, outgoing or incoming:
 * status and its notification, error, timestamps and counters for
 * query-migrate; and the helper that runs a function on the main thread
 * for a worker.
 *
 * Status changes may come from the worker thread; they are recorded at
 * once (query-migrate sees them) and the notifier runs afterwards on the
 * main thread, one idle callback per change, so events keep their order.
 */
#include "migration-int.h"

#include <string.h>

typedef struct MigState {
    GMutex lock;
    MigDirection dir;
    MigrationStatus status;
    char *error;
    gint64 start;              /* monotonic microseconds; 0: not yet */
    gint64 connected;
    gint64 pause_start;
    gint64 pause_end;
    gint64 end;
    MigStats stats;
    MigStream *stream;         /* borrowed while running */
    uint64_t stream_bytes;     /* kept when the stream goes */
} MigState;

static MigState st;

static MigrationStatusNotifier *notifier;
static void *notifier_opaque;

void migration_set_status_notifier(MigrationStatusNotifier *fn, void *opaque)
{
    notifier = fn;
    notifier_opaque = opaque;
}

void mig_state_begin(MigDirection dir)
{
    g_mutex_lock(&st.lock);
    g_clear_pointer(&st.error, g_free);
    st.dir = dir;
    st.start = g_get_monotonic_time();
    st.connected = st.pause_start = st.pause_end = st.end = 0;
    memset(&st.stats, 0, sizeof(st.stats));
    st.stream = NULL;
    st.stream_bytes = 0;
    g_mutex_unlock(&st.lock);
}

MigDirection mig_state_direction(void)
{
    MigDirection d;

    g_mutex_lock(&st.lock);
    d = st.dir;
    g_mutex_unlock(&st.lock);
    return d;
}

MigrationStatus migration_status(void)
{
    MigrationStatus s;

    g_mutex_lock(&st.lock);
    s = st.status;
    g_mutex_unlock(&st.lock);
    return s;
}

bool mig_state_running(void)
{
    MigrationStatus s = migration_status();

    /* A destination that waits for its source may still be configured. */
    if (s == MIGRATION_STATUS_SETUP &&
        mig_state_direction() == MIG_DIR_INCOMING) {
        return false;
    }
    switch (s) {
    case MIGRATION_STATUS_SETUP:
    case MIGRATION_STATUS_ACTIVE:
    case MIGRATION_STATUS_DEVICE:
    case MIGRATION_STATUS_CANCELLING:
        return true;
    default:
        return false;
    }
}

static gboolean notify_cb(gpointer data)
{
    if (notifier) {
        notifier((MigrationStatus)GPOINTER_TO_INT(data), notifier_opaque);
    }
    return G_SOURCE_REMOVE;
}

void mig_set_status(MigrationStatus status)
{
    g_mutex_lock(&st.lock);
    if (st.status == status) {
        g_mutex_unlock(&st.lock);
        return;
    }
    st.status = status;
    g_mutex_unlock(&st.lock);
    g_idle_add(notify_cb, GINT_TO_POINTER(status));
}

void mig_set_error(const char *message)
{
    g_mutex_lock(&st.lock);
    if (!st.error) {
        st.error = g_strdup(message);
    }
    g_mutex_unlock(&st.lock);
}

static uint64_t stream_bytes_locked(void)
{
    if (!st.stream) {
        return st.stream_bytes;
    }
    return st.dir == MIG_DIR_OUTGOING ? mig_stream_bytes_sent(st.stream)
                                      : mig_stream_bytes_received(st.stream);
}

void mig_state_set_stream(MigStream *stream)
{
    g_mutex_lock(&st.lock);
    if (!stream) {
        st.stream_bytes = stream_bytes_locked();
    }
    st.stream = stream;
    g_mutex_unlock(&st.lock);
}

static void stamp(gint64 *field)
{
    g_mutex_lock(&st.lock);
    *field = g_get_monotonic_time();
    g_mutex_unlock(&st.lock);
}

void mig_state_connected(void)
{
    stamp(&st.connected);
}

void mig_state_pause_begin(void)
{
    stamp(&st.pause_start);
}

void mig_state_pause_end(void)
{
    stamp(&st.pause_end);
}

void mig_state_end(void)
{
    stamp(&st.end);
}

void mig_trace(const char *step)
{
    gint64 now = g_get_monotonic_time();
    gint64 pause;

    g_mutex_lock(&st.lock);
    pause = st.pause_start;
    g_mutex_unlock(&st.lock);
    g_debug("migration: %s at %.3f ms%s", step,
            (now - (pause ? pause : st.start)) / 1000.0,
            pause ? " of the pause" : "");
}

void mig_stats_section(size_t bytes, bool paused)
{
    g_mutex_lock(&st.lock);
    st.stats.sections++;
    if (paused) {
        st.stats.downtime_bytes += bytes;
    } else {
        st.stats.precopy_bytes += bytes;
    }
    g_mutex_unlock(&st.lock);
}

void mig_stats_chunk(bool with_data, size_t data_bytes)
{
    g_mutex_lock(&st.lock);
    if (with_data) {
        st.stats.normal++;
        st.stats.normal_bytes += data_bytes;
    } else {
        st.stats.duplicate++;
    }
    g_mutex_unlock(&st.lock);
}

void mig_stats_set_remaining(uint64_t remaining)
{
    g_mutex_lock(&st.lock);
    st.stats.remaining = remaining;
    g_mutex_unlock(&st.lock);
}

/* ---- query-migrate ---- */

static JsonObject *stats_json_locked(gint64 now)
{
    JsonObject *o = json_object_new();
    uint64_t bytes = stream_bytes_locked();
    gint64 span = (st.end ? st.end : now) - (st.connected ? st.connected
                                                          : st.start);
    double secs = span > 0 ? span / 1e6 : 0;

    json_object_set_int_member(o, "transferred", (gint64)bytes);
    json_object_set_int_member(o, "remaining", (gint64)st.stats.remaining);
    json_object_set_int_member(o, "total",
                               (gint64)(bytes + st.stats.remaining));
    json_object_set_int_member(o, "duplicate", (gint64)st.stats.duplicate);
    json_object_set_int_member(o, "skipped", 0);
    json_object_set_int_member(o, "normal", (gint64)st.stats.normal);
    json_object_set_int_member(o, "normal-bytes",
                               (gint64)st.stats.normal_bytes);
    json_object_set_int_member(o, "dirty-pages-rate", 0);
    json_object_set_double_member(o, "mbps",
                                  secs > 0 ? bytes * 8.0 / 1e6 / secs : 0);
    json_object_set_int_member(o, "dirty-sync-count",
                               st.pause_start ? 1 : 0);
    json_object_set_int_member(o, "postcopy-requests", 0);
    json_object_set_int_member(o, "page-size", 1);
    json_object_set_int_member(o, "multifd-bytes", 0);
    json_object_set_int_member(o, "pages-per-second",
                               secs > 0 ? (gint64)(st.stats.sections / secs)
                                        : 0);
    json_object_set_int_member(o, "precopy-bytes",
                               (gint64)st.stats.precopy_bytes);
    json_object_set_int_member(o, "downtime-bytes",
                               (gint64)st.stats.downtime_bytes);
    json_object_set_int_member(o, "postcopy-bytes", 0);
    json_object_set_int_member(o, "dirty-sync-missed-zero-copy", 0);
    return o;
}

JsonObject *migration_query(void)
{
    JsonObject *o = json_object_new();
    gint64 now = g_get_monotonic_time();
    MigrationStatus s;

    g_mutex_lock(&st.lock);
    s = st.status;
    if (s == MIGRATION_STATUS_NONE) {
        g_mutex_unlock(&st.lock);
        return o;
    }
    json_object_set_string_member(o, "status", MigrationStatus_str[s]);
    json_object_set_int_member(o, "total-time",
                               ((st.end ? st.end : now) - st.start) / 1000);
    if (st.connected) {
        json_object_set_int_member(o, "setup-time",
                                   (st.connected - st.start) / 1000);
    }
    if (s == MIGRATION_STATUS_COMPLETED && st.pause_start && st.pause_end) {
        json_object_set_int_member(o, "downtime",
                                   (st.pause_end - st.pause_start) / 1000);
        json_object_set_int_member(o, "x-downtime-us",
                                   st.pause_end - st.pause_start);
    }
    if (s == MIGRATION_STATUS_ACTIVE || s == MIGRATION_STATUS_DEVICE ||
        s == MIGRATION_STATUS_COMPLETED) {
        json_object_set_object_member(o, "ram", stats_json_locked(now));
    }
    if (s == MIGRATION_STATUS_FAILED && st.error) {
        json_object_set_string_member(o, "error-desc", st.error);
    }
    g_mutex_unlock(&st.lock);
    return o;
}

/* ---- Main-thread calls ---- */

struct MigMainCall {
    MigMainFunc *fn;
    void *opaque;
    GError *err;
    bool ok;
    bool done;
    GMutex lock;
    GCond cond;
};

static gboolean main_call_cb(gpointer data)
{
    MigMainCall *c = data;
    GError *err = NULL;
    bool ok = c->fn(c->opaque, &err);

    g_mutex_lock(&c->lock);
    c->ok = ok;
    c->err = err;
    c->done = true;
    g_cond_signal(&c->cond);
    g_mutex_unlock(&c->lock);
    return G_SOURCE_REMOVE;
}

MigMainCall *mig_main_call_begin(MigMainFunc *fn, void *opaque)
{
    MigMainCall *c = g_new0(MigMainCall, 1);

    c->fn = fn;
    c->opaque = opaque;
    g_mutex_init(&c->lock);
    g_cond_init(&c->cond);
    g_main_context_invoke(NULL, main_call_cb, c);
    return c;
}

bool mig_main_call_finish(MigMainCall *c, GError **errp)
{
    bool ok;

    g_mutex_lock(&c->lock);
    while (!c->done) {
        g_cond_wait(&c->cond, &c->lock);
    }
    g_mutex_unlock(&c->lock);
    ok = c->ok;
    if (!ok) {
        g_propagate_error(errp, c->err);
    }
    g_mutex_clear(&c->lock);
    g_cond_clear(&c->cond);
    g_free(c);
    return ok;
}

bool mig_run_on_main(MigMainFunc *fn, void *opaque, GError **errp)
{
    if (g_main_context_is_owner(g_main_context_default())) {
        return fn(opaque, errp);
    }
    return mig_main_call_finish(mig_main_call_begin(fn, opaque), errp);
}

void migration_shutdown(void)
{
    mig_outgoing_shutdown();
    mig_incoming_shutdown();
}
