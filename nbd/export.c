/*
 * Export objects and their registry.  An export pins a block node (its
 * own reference), fixes its size and transmission flags at creation, and
 * lists its metadata contexts (id = index: base:allocation first, then
 * qemu:allocation-depth if enabled, then one per bitmap context).
 *
 * Lifetime: the registry ("user") reference plus one per attached client.
 * Deleting hides the export from new clients (shutting_down) and drops
 * the user reference; whoever drops the last reference, on any thread,
 * queues the export, and the main loop frees it: remove it from the
 * registry, release the contexts, unref the node, report the deletion.
 * So the node is never freed under a client, and graph changes stay on
 * the main thread.
 */
#include "nbd/nbd-internal.h"
#include "qapi/error.h"

#include <string.h>

static GMutex export_lock;          /* registry, shutting_down, clients */
static GPtrArray *exports;          /* NbdExport *, creation order */

static GMutex pending_lock;         /* exports waiting to be freed */
static GSList *pending;
static guint pending_source;

static void (*deleted_hook)(const char *id);

void nbd_export_set_deleted_hook(void (*fn)(const char *id))
{
    deleted_hook = fn;
}

static void registry_init(void)
{
    if (!exports) {
        exports = g_ptr_array_new();
    }
}

/* ---- Creation ---------------------------------------------------------- */

static NbdExport *find_by(const char *name, const char *id, bool live_only)
{
    registry_init();
    for (guint i = 0; i < exports->len; i++) {
        NbdExport *exp = g_ptr_array_index(exports, i);

        if (live_only && exp->shutting_down) {
            continue;
        }
        if (name && strcmp(exp->name, name) == 0) {
            return exp;
        }
        if (id && exp->id && strcmp(exp->id, id) == 0) {
            return exp;
        }
    }
    return NULL;
}

static void add_context(GArray *ctxs, char *name, NbdMetaKind kind,
                        NbdBitmapContext *bitmap)
{
    NbdMetaContext ctx = { .name = name, .kind = kind, .bitmap = bitmap };

    g_array_append_val(ctxs, ctx);
}

static bool has_bitmap_context(GArray *ctxs, const char *name)
{
    for (guint i = 0; i < ctxs->len; i++) {
        NbdMetaContext *ctx = &g_array_index(ctxs, NbdMetaContext, i);
        if (ctx->bitmap && strcmp(ctx->bitmap->name, name) == 0) {
            return true;
        }
    }
    return false;
}

static void free_contexts(NbdMetaContext *ctxs, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        nbd_bitmap_context_free(ctxs[i].bitmap);
        g_free(ctxs[i].name);
    }
    g_free(ctxs);
}

/* Build the context table; takes cfg->bitmap_contexts. */
static bool build_contexts(NbdExport *exp, const NbdExportConfig *cfg,
                           GError **errp)
{
    GArray *ctxs = g_array_new(FALSE, TRUE, sizeof(NbdMetaContext));
    GPtrArray *extra = cfg->bitmap_contexts;
    bool ok = true;

    add_context(ctxs, g_strdup(NBD_CTX_BASE_ALLOCATION),
                NBD_META_BASE_ALLOCATION, NULL);
    if (cfg->allocation_depth) {
        add_context(ctxs, g_strdup(NBD_CTX_ALLOCATION_DEPTH),
                    NBD_META_ALLOCATION_DEPTH, NULL);
    }
    for (unsigned i = 0; ok && cfg->bitmaps && cfg->bitmaps[i]; i++) {
        NbdBitmapContext *b;

        if (has_bitmap_context(ctxs, cfg->bitmaps[i])) {
            continue;
        }
        b = nbd_bitmap_context_for_bitmap(cfg->bs, cfg->bitmaps[i],
                                          cfg->writable, errp);
        if (!b) {
            ok = false;
            break;
        }
        add_context(ctxs, g_strconcat(NBD_CTX_DIRTY_BITMAP_PREFIX,
                                      b->name, NULL),
                    NBD_META_BITMAP, b);
    }
    for (guint i = 0; extra && i < extra->len; i++) {
        NbdBitmapContext *b = g_ptr_array_index(extra, i);

        g_ptr_array_index(extra, i) = NULL;
        if (ok && has_bitmap_context(ctxs, b->name)) {
            error_setg(errp, "Bitmap '%s' is exported twice", b->name);
            ok = false;
        }
        if (!ok) {
            nbd_bitmap_context_free(b);
            continue;
        }
        add_context(ctxs, g_strconcat(NBD_CTX_DIRTY_BITMAP_PREFIX,
                                      b->name, NULL),
                    NBD_META_BITMAP, b);
    }
    exp->n_contexts = ctxs->len;
    exp->contexts = (NbdMetaContext *)g_array_free(ctxs, FALSE);
    return ok;
}

static void drop_extra_contexts(const NbdExportConfig *cfg)
{
    GPtrArray *extra = cfg->bitmap_contexts;

    for (guint i = 0; extra && i < extra->len; i++) {
        nbd_bitmap_context_free(g_ptr_array_index(extra, i));
        g_ptr_array_index(extra, i) = NULL;
    }
}

static bool check_config(const NbdExportConfig *cfg, GError **errp)
{
    if (strlen(cfg->name) > NBD_MAX_STRING_SIZE) {
        error_setg(errp, "export name '%s' too long", cfg->name);
        return false;
    }
    if (cfg->description &&
        strlen(cfg->description) > NBD_MAX_STRING_SIZE) {
        error_setg(errp, "description '%s' too long", cfg->description);
        return false;
    }
    if (cfg->id && find_by(NULL, cfg->id, false)) {
        error_setg(errp, "Block export id '%s' is already in use", cfg->id);
        return false;
    }
    if (find_by(cfg->name, NULL, true)) {
        error_setg(errp, "NBD server already has export named '%s'",
                   cfg->name);
        return false;
    }
    if (cfg->writable && bdrv_is_read_only(cfg->bs)) {
        error_setg(errp, "Cannot export read-only node as writable");
        return false;
    }
    return true;
}

NbdExport *nbd_export_new(const NbdExportConfig *cfg, GError **errp)
{
    NbdExport *exp;
    int64_t size;

    nbd_note_main_thread();
    registry_init();
    if (!check_config(cfg, errp)) {
        drop_extra_contexts(cfg);
        return NULL;
    }
    size = bdrv_getlength(cfg->bs);
    if (size < 0) {
        error_setg_errno(errp, (int)-size,
                         "Failed to determine the NBD export's length");
        drop_extra_contexts(cfg);
        return NULL;
    }
    exp = g_new0(NbdExport, 1);
    exp->refcnt = 1;
    exp->id = g_strdup(cfg->id);
    exp->name = g_strdup(cfg->name);
    exp->description = g_strdup(cfg->description);
    exp->size = (uint64_t)size;
    exp->writable = cfg->writable;
    exp->discard_ignore = cfg->discard_ignore;
    exp->writethrough = cfg->writethrough;
    exp->flags = NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH |
                 NBD_FLAG_SEND_FUA | NBD_FLAG_SEND_CACHE;
    if (exp->writable) {
        exp->flags |= NBD_FLAG_SEND_TRIM | NBD_FLAG_SEND_WRITE_ZEROES |
                      NBD_FLAG_SEND_FAST_ZERO;
    } else {
        exp->flags |= NBD_FLAG_READ_ONLY;
    }
    if (!build_contexts(exp, cfg, errp)) {
        free_contexts(exp->contexts, exp->n_contexts);
        g_free(exp->id);
        g_free(exp->name);
        g_free(exp->description);
        g_free(exp);
        return NULL;
    }
    bdrv_ref(cfg->bs);
    exp->bs = cfg->bs;
    g_mutex_lock(&export_lock);
    g_ptr_array_add(exports, exp);
    g_mutex_unlock(&export_lock);
    return exp;
}

/* ---- References and the deferred free ---------------------------------- */

void nbd_export_ref(NbdExport *exp)
{
    g_atomic_int_inc(&exp->refcnt);
}

static void export_free(NbdExport *exp)
{
    g_mutex_lock(&export_lock);
    g_ptr_array_remove(exports, exp);
    g_mutex_unlock(&export_lock);
    free_contexts(exp->contexts, exp->n_contexts);
    bdrv_unref(exp->bs);
    if (exp->id && deleted_hook) {
        deleted_hook(exp->id);
    }
    g_free(exp->id);
    g_free(exp->name);
    g_free(exp->description);
    g_free(exp);
}

void nbd_export_run_pending(void)
{
    for (;;) {
        NbdExport *exp;

        g_mutex_lock(&pending_lock);
        if (!pending) {
            g_mutex_unlock(&pending_lock);
            return;
        }
        exp = pending->data;
        pending = g_slist_delete_link(pending, pending);
        g_mutex_unlock(&pending_lock);
        export_free(exp);
    }
}

static gboolean pending_cb(gpointer opaque)
{
    g_mutex_lock(&pending_lock);
    pending_source = 0;
    g_mutex_unlock(&pending_lock);
    nbd_export_run_pending();
    return G_SOURCE_REMOVE;
}

void nbd_export_unref(NbdExport *exp)
{
    if (!g_atomic_int_dec_and_test(&exp->refcnt)) {
        return;
    }
    g_mutex_lock(&pending_lock);
    pending = g_slist_append(pending, exp);
    if (!pending_source) {
        pending_source = g_idle_add(pending_cb, NULL);
    }
    g_mutex_unlock(&pending_lock);
}

/* ---- Lookups used by the handshake (any thread) ------------------------- */

NbdExport *nbd_export_lookup(const char *name)
{
    NbdExport *exp;

    g_mutex_lock(&export_lock);
    exp = find_by(name, NULL, true);
    if (exp) {
        nbd_export_ref(exp);
    }
    g_mutex_unlock(&export_lock);
    return exp;
}

void nbd_export_names(GPtrArray *names, GPtrArray *descriptions)
{
    g_mutex_lock(&export_lock);
    registry_init();
    for (guint i = 0; i < exports->len; i++) {
        NbdExport *exp = g_ptr_array_index(exports, i);

        if (!exp->shutting_down) {
            g_ptr_array_add(names, g_strdup(exp->name));
            g_ptr_array_add(descriptions, g_strdup(exp->description));
        }
    }
    g_mutex_unlock(&export_lock);
}

bool nbd_export_attach(NbdExport *exp)
{
    bool ok;

    g_mutex_lock(&export_lock);
    ok = !exp->shutting_down;
    if (ok) {
        exp->clients++;
    }
    g_mutex_unlock(&export_lock);
    return ok;
}

void nbd_export_detach(NbdExport *exp)
{
    g_mutex_lock(&export_lock);
    g_assert(exp->clients > 0);
    exp->clients--;
    g_mutex_unlock(&export_lock);
}

/* ---- Management (main thread) ------------------------------------------- */

NbdExport *nbd_export_find_id(const char *id)
{
    NbdExport *exp;

    g_mutex_lock(&export_lock);
    exp = find_by(NULL, id, false);
    g_mutex_unlock(&export_lock);
    return exp;
}

bool nbd_export_del(NbdExport *exp, NbdExportDelMode mode, GError **errp)
{
    g_mutex_lock(&export_lock);
    if (exp->shutting_down) {
        g_mutex_unlock(&export_lock);
        error_setg(errp, "Export '%s' is already shutting down",
                   exp->id ? exp->id : exp->name);
        return false;
    }
    if (mode == NBD_EXPORT_DEL_SAFE && exp->clients > 0) {
        g_mutex_unlock(&export_lock);
        error_setg(errp, "export '%s' still in use",
                   exp->id ? exp->id : exp->name);
        error_append_hint(errp, "Use mode='hard' to force client "
                          "disconnect");
        return false;
    }
    exp->shutting_down = true;
    g_mutex_unlock(&export_lock);
    if (mode == NBD_EXPORT_DEL_HARD) {
        nbd_server_disconnect_clients(exp);
    }
    nbd_export_unref(exp);
    return true;
}

void nbd_export_del_all(void)
{
    g_autoptr(GPtrArray) all = nbd_export_list();

    for (guint i = 0; i < all->len; i++) {
        NbdExport *exp = g_ptr_array_index(all, i);

        if (!nbd_export_is_shutting_down(exp)) {
            nbd_export_del(exp, NBD_EXPORT_DEL_HARD, NULL);
        }
    }
}

GPtrArray *nbd_export_list(void)
{
    GPtrArray *all = g_ptr_array_new();

    g_mutex_lock(&export_lock);
    registry_init();
    for (guint i = 0; i < exports->len; i++) {
        g_ptr_array_add(all, g_ptr_array_index(exports, i));
    }
    g_mutex_unlock(&export_lock);
    return all;
}

const char *nbd_export_get_id(NbdExport *exp)
{
    return exp->id;
}

const char *nbd_export_get_name(NbdExport *exp)
{
    return exp->name;
}

BlockDriverState *nbd_export_get_bs(NbdExport *exp)
{
    return exp->bs;
}

bool nbd_export_is_shutting_down(NbdExport *exp)
{
    bool ret;

    g_mutex_lock(&export_lock);
    ret = exp->shutting_down;
    g_mutex_unlock(&export_lock);
    return ret;
}

unsigned nbd_export_client_count(NbdExport *exp)
{
    unsigned n;

    g_mutex_lock(&export_lock);
    n = exp->clients;
    g_mutex_unlock(&export_lock);
    return n;
}
