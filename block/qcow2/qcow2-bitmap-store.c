/*
 * qcow2 persistent bitmaps: writing.  The directory is never rewritten in
 * place: a new one goes to new clusters, the caches and the file are
 * synced, the header is switched to it (one write) and synced, and only
 * then are the old directory and replaced tables freed.  A crash at any
 * point leaves either the old or the new directory, and at worst leaked
 * clusters.  An update that fails leaves the old directory in memory and,
 * as far as the I/O allows, on disk: a failed header write is undone by
 * writing the old header back (switch_header()).  All functions run with
 * the metadata lock held.
 */
#include "qcow2.h"
#include "qcow2-bitmap.h"
#include "qcow2-checkpoint.h"
#include "qapi/error.h"
#include "util/bswap.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Write bitmap data in requests of at most this size. */
#define STORE_CHUNK (4 * 1024 * 1024)

static Qcow2BitmapState *bm_state(BlockDriverState *bs)
{
    return ((Qcow2State *)bs->opaque)->bitmaps;
}

/*
 * Fault injection for tests, at the steps QCOW2_STEP_* of qcow2-bitmap.h:
 * a directory update goes through 1-5, a checkpoint commit that changed
 * no bitmap writes its table alone (6-7, qcow2-checkpoint.c).  Steps are
 * counted over the process, from the moment a variable took its value:
 *   BP_FAULT_BITMAP_STEP=N        the Nth step kills the process
 *                                 (_exit(99): nothing flushed or closed);
 *   BP_FAULT_BITMAP_STEP_ERROR=N  the Nth step fails with ENOSPC instead,
 *                                 once: 1 as if the directory write, 2 the
 *                                 sync, 3 and 6 the sync after the header
 *                                 write (so the new header may be on disk)
 *                                 had failed.  Nothing can fail after the
 *                                 header is synced: at 4, 5 and 7 the step
 *                                 is counted and no error injected.
 * A unit test can set a variable between operations to arm it again.
 */
typedef struct FaultHook {
    const char *var;
    char *value;        /* the value the count started with */
    int seen;
} FaultHook;

static GMutex fault_lock;
static FaultHook crash_hook = { .var = "BP_FAULT_BITMAP_STEP" };
static FaultHook error_hook = { .var = "BP_FAULT_BITMAP_STEP_ERROR" };

static bool fault_hit(FaultHook *h)
{
    const char *e = g_getenv(h->var);

    if (g_strcmp0(e, h->value)) {
        g_free(h->value);
        h->value = g_strdup(e);
        h->seen = 0;
    }
    return e && atoi(e) > 0 && ++h->seen == atoi(e);
}

int qcow2_fault_point(int step)
{
    bool crash, fail;

    g_mutex_lock(&fault_lock);
    crash = fault_hit(&crash_hook);
    fail = fault_hit(&error_hook);
    g_mutex_unlock(&fault_lock);
    if (crash) {
        g_printerr("BP_FAULT_BITMAP_STEP: exiting at step %d\n", step);
        _exit(99);
    }
    if (!fail) {
        return 0;
    }
    if (step == QCOW2_STEP_HEADER_SYNCED || step == QCOW2_STEP_OLD_FREED ||
        step == QCOW2_STEP_TABLE_SYNCED) {
        g_printerr("BP_FAULT_BITMAP_STEP_ERROR: step %d is past the commit "
                   "point, not failing it\n", step);
        return 0;
    }
    g_printerr("BP_FAULT_BITMAP_STEP_ERROR: failing step %d\n", step);
    return -ENOSPC;
}

/* Allocate @size bytes and write @buf there; registers it as metadata. */
static int64_t write_new(BlockDriverState *bs, const void *buf, uint64_t size)
{
    Qcow2State *s = bs->opaque;
    int64_t off = qcow2_alloc_clusters(bs, size);
    int ret;

    if (off < 0) {
        return off;
    }
    ret = qcow2_pre_write_check(bs, QCOW2_META_OTHER, off, size);
    if (ret == 0) {
        ret = bdrv_pwrite(bs->file, off, size, buf, 0);
    }
    if (ret < 0) {
        qcow2_free_clusters(bs, off, size);
        return ret;
    }
    qcow2_meta_add(s, off, size, QCOW2_META_OTHER);
    return off;
}

void qcow2_bitmap_free_clusters(BlockDriverState *bs,
                                const Qcow2BitmapEntry *e)
{
    Qcow2State *s = bs->opaque;
    uint64_t bytes = (uint64_t)e->table_size * 8;
    g_autofree uint64_t *table = g_try_malloc(MAX(bytes, 1));
    Qcow2BitmapGeometry g;

    qcow2_bitmap_geometry(bs, &g);
    if (!table || qcow2_read_host(bs, e->table_offset, bytes, table) < 0) {
        return;     /* leaked; check -r reclaims them */
    }
    for (uint32_t i = 0; i < e->table_size; i++) {
        uint64_t ent = ldq_be(&table[i]);
        uint64_t off = ent & QCOW2_BME_TABLE_OFFSET_MASK;
        if (off && qcow2_bitmap_table_entry_check(ent, i, e->name, &g,
                                                  NULL)) {
            qcow2_free_clusters(bs, off, s->cluster_size);
        }
    }
    qcow2_meta_remove(s, e->table_offset, bytes);
    qcow2_free_clusters(bs, e->table_offset, bytes);
}

/* Release the in-memory bitmaps whose entries a directory write dropped. */
static void release_dropped(BlockDriverState *bs, GPtrArray *dropped)
{
    for (guint i = 0; i < dropped->len; i++) {
        Qcow2BitmapEntry *e = g_ptr_array_index(dropped, i);
        BdrvDirtyBitmap *bm = bdrv_find_dirty_bitmap(bs, e->name);
        if (bm && bdrv_dirty_bitmap_inconsistent(bm) &&
            !bdrv_dirty_bitmap_busy(bm)) {
            bdrv_release_dirty_bitmap(bm);
        }
    }
}

/*
 * Point the header at the new directory (or drop the extension).  On
 * failure our copy of the header is the old one again, and so is the
 * image unless *unsure: a header write that failed may still have reached
 * the disk, so the old header (with the checkpoint table it had) is
 * written back, and *unsure says that failed too.
 */
static int switch_header(BlockDriverState *bs, const Qcow2BitmapExt *ext,
                         bool *unsure)
{
    Qcow2State *s = bs->opaque;
    const Qcow2RawExt *old = qcow2_header_find_ext(&s->hdr,
                                                   QCOW2_EXT_BITMAPS);
    g_autofree uint8_t *saved = old ? g_memdup2(old->data, old->len) : NULL;
    uint32_t saved_len = old ? old->len : 0;
    uint64_t saved_autoclear = s->hdr.autoclear_features;
    uint8_t raw[QCOW2_BME_EXT_SIZE];
    int ret;

    *unsure = false;
    if (ext->nb_bitmaps) {
        qcow2_bitmap_ext_serialize(ext, raw);
        qcow2_header_set_ext(&s->hdr, QCOW2_EXT_BITMAPS, raw, sizeof(raw));
        s->hdr.autoclear_features |= QCOW2_AUTOCLEAR_BITMAPS;
    } else {
        qcow2_header_set_ext(&s->hdr, QCOW2_EXT_BITMAPS, NULL, 0);
        s->hdr.autoclear_features &= ~QCOW2_AUTOCLEAR_BITMAPS;
    }
    ret = qcow2_update_header(bs);
    if (ret == 0) {
        ret = qcow2_fault_point(QCOW2_STEP_HEADER_WRITTEN);
    }
    if (ret == 0) {
        ret = bdrv_flush(bs->file);
    }
    if (ret < 0) {
        qcow2_header_set_ext(&s->hdr, QCOW2_EXT_BITMAPS, saved, saved_len);
        s->hdr.autoclear_features = saved_autoclear;
        qcow2_checkpoints_unstage(bs);
        *unsure = qcow2_update_header(bs) < 0 || bdrv_flush(bs->file) < 0;
        return ret;
    }
    /* The header carried the staged checkpoint table too. */
    qcow2_checkpoints_header_written(bs);
    return 0;
}

int qcow2_bitmap_write_dir(BlockDriverState *bs, GPtrArray *entries,
                           GPtrArray *free_tables, GError **errp)
{
    Qcow2State *s = bs->opaque;
    Qcow2BitmapState *st = bm_state(bs);
    g_autoptr(GPtrArray) keep = g_ptr_array_new_with_free_func(
        (GDestroyNotify)qcow2_bitmap_entry_free);
    g_autoptr(GPtrArray) dropped = g_ptr_array_new();
    Qcow2BitmapExt ext = { 0 }, old = st->ext;
    bool had_dir = st->ext_present && st->trusted && !st->error;
    g_autofree uint8_t *buf = NULL;
    const char *what = "write the bitmap directory";
    bool unsure = false;
    int64_t off = 0;
    int ret;

    st->switch_unsure = false;
    /* Entries of a distrusted directory are dropped the first time. */
    for (guint i = 0; i < entries->len; i++) {
        Qcow2BitmapEntry *e = g_ptr_array_index(entries, i);
        if (e->foreign) {
            g_ptr_array_add(dropped, e);
        } else {
            g_ptr_array_add(keep, qcow2_bitmap_entry_dup(e));
        }
    }
    ext.nb_bitmaps = keep->len;
    buf = qcow2_bitmap_dir_serialize(keep, &ext.dir_size);
    if (keep->len) {
        off = write_new(bs, buf, ext.dir_size);
        if (off < 0) {
            error_setg_errno(errp, (int)-off, "Could not %s", what);
            return (int)off;
        }
        ext.dir_offset = (uint64_t)off;
    }
    ret = qcow2_fault_point(QCOW2_STEP_DIR_WRITTEN);
    /* Everything the new directory references must be stable first. */
    if (ret == 0) {
        what = "sync the new bitmap directory";
        ret = qcow2_write_caches(bs);
    }
    if (ret == 0) {
        ret = bdrv_flush(bs->file);
    }
    if (ret == 0) {
        ret = qcow2_fault_point(QCOW2_STEP_DIR_SYNCED);
    }
    if (ret == 0) {
        what = "update the bitmaps header extension";
        ret = switch_header(bs, &ext, &unsure);
    }
    if (ret < 0) {
        error_setg_errno(errp, -ret, "Could not %s", what);
        if (unsure) {
            /* The image may use the new directory: leak it. */
            st->switch_unsure = true;
            error_append_hint(errp, "The image may hold the old or the new "
                              "bitmaps; 'qemu-img check -r leaks' frees "
                              "the clusters of the other");
        } else if (off > 0) {
            qcow2_meta_remove(s, off, ext.dir_size);
            qcow2_free_clusters(bs, off, ext.dir_size);
        }
        return ret;
    }
    qcow2_fault_point(QCOW2_STEP_HEADER_SYNCED);
    /* The switch is done: what the old directory alone used is garbage. */
    if (had_dir && old.dir_size) {
        qcow2_meta_remove(s, old.dir_offset, old.dir_size);
        qcow2_free_clusters(bs, old.dir_offset, old.dir_size);
    }
    for (guint i = 0; free_tables && i < free_tables->len; i++) {
        Qcow2BitmapEntry *e = g_ptr_array_index(free_tables, i);
        if (!e->foreign && had_dir) {
            qcow2_bitmap_free_clusters(bs, e);
        }
    }
    qcow2_fault_point(QCOW2_STEP_OLD_FREED);
    st->ext = ext;
    st->ext_present = keep->len > 0;
    st->trusted = true;
    release_dropped(bs, dropped);
    qcow2_bitmap_set_dir(st, g_steal_pointer(&keep));
    return 0;
}

/* ---- Storing bitmap data ---- */

typedef enum { CL_ZERO, CL_ONES, CL_DATA } ClusterKind;

/* Stage and write data clusters [first, i) contiguously from @host. */
static int flush_stage(BlockDriverState *bs, uint64_t host, uint8_t *stage,
                       uint64_t bytes)
{
    int ret = qcow2_pre_write_check(bs, QCOW2_META_OTHER, host, bytes);

    return ret < 0 ? ret : bdrv_pwrite(bs->file, host, bytes, stage, 0);
}

/*
 * Write @bm's contents to new clusters and describe them in *out.  All-zero
 * clusters become 0 entries and full all-ones clusters the all-ones flag;
 * the data clusters are allocated as one run.
 */
static int store_data(BlockDriverState *bs, BdrvDirtyBitmap *bm,
                      Qcow2BitmapEntry **out, GError **errp)
{
    Qcow2State *s = bs->opaque;
    const char *name = bdrv_dirty_bitmap_name(bm);
    uint64_t cs = s->cluster_size, gran = bdrv_dirty_bitmap_granularity(bm);
    uint64_t size = bdrv_dirty_bitmap_size(bm);
    int gbits = __builtin_ctzll(gran);
    uint64_t n = qcow2_bitmap_table_entries(size, gbits, cs);
    uint64_t per = cs * 8 * gran, ndata = 0, staged = 0, host = 0;
    uint64_t chunk = MAX(cs, STORE_CHUNK);
    g_autofree uint8_t *kind = g_try_malloc(MAX(n, 1));
    g_autofree uint64_t *table = g_try_new0(uint64_t, MAX(n, 1));
    g_autofree uint8_t *stage = g_try_malloc(chunk);
    g_autoptr(Qcow2BitmapEntry) e = qcow2_bitmap_entry_new(name);
    int64_t data = 0, toff;
    int ret = 0;

    if (!kind || !table || !stage) {
        error_setg(errp, "Not enough memory to store bitmap '%s'", name);
        return -ENOMEM;
    }
    for (uint64_t i = 0; i < n; i++) {
        uint64_t bytes = bdrv_dirty_bitmap_serialization_size(bm, i * per,
                                                              per);
        if (bdrv_dirty_bitmap_range_all_clean(bm, i * per, per)) {
            kind[i] = CL_ZERO;
        } else if (bytes == cs &&
                   bdrv_dirty_bitmap_range_all_dirty(bm, i * per, per)) {
            kind[i] = CL_ONES;
        } else {
            kind[i] = CL_DATA;
            ndata++;
        }
    }
    if (ndata) {
        data = qcow2_alloc_clusters(bs, ndata * cs);
        if (data < 0) {
            error_setg_errno(errp, (int)-data, "Could not allocate clusters "
                             "for bitmap '%s'", name);
            return (int)data;
        }
        host = (uint64_t)data;
    }
    for (uint64_t i = 0, d = 0; i < n && ret == 0; i++) {
        if (kind[i] == CL_ONES) {
            stq_be(&table[i], QCOW2_BME_TABLE_ALL_ONES);
            continue;
        } else if (kind[i] == CL_ZERO) {
            continue;
        }
        if (staged == chunk) {
            ret = flush_stage(bs, host, stage, staged);
            host += staged;
            staged = 0;
        }
        memset(stage + staged, 0, cs);
        bdrv_dirty_bitmap_serialize_part(bm, stage + staged, i * per, per);
        stq_be(&table[i], (uint64_t)data + d * cs);
        staged += cs;
        d++;
    }
    if (ret == 0 && staged) {
        ret = flush_stage(bs, host, stage, staged);
    }
    toff = ret < 0 ? ret : write_new(bs, table, MAX(n, 1) * 8);
    if (toff < 0) {
        if (ndata) {
            qcow2_free_clusters(bs, (uint64_t)data, ndata * cs);
        }
        error_setg_errno(errp, (int)-toff, "Could not write bitmap '%s'",
                         name);
        return (int)toff;
    }
    e->table_offset = (uint64_t)toff;
    e->table_size = (uint32_t)MAX(n, 1);
    e->granularity_bits = (uint8_t)gbits;
    e->flags = bdrv_dirty_bitmap_recording(bm) ? QCOW2_BME_FLAG_AUTO : 0;
    *out = g_steal_pointer(&e);
    return 0;
}

/* An entry for an unchanged stored bitmap: the old table, new flags. */
static Qcow2BitmapEntry *keep_entry(const Qcow2BitmapEntry *old,
                                    BdrvDirtyBitmap *bm)
{
    Qcow2BitmapEntry *e = qcow2_bitmap_entry_dup(old);

    if (old->foreign) {
        /* Left alone until a change rewrites the directory (drops it). */
        return e;
    }
    if (bdrv_dirty_bitmap_inconsistent(bm)) {
        e->flags |= QCOW2_BME_FLAG_IN_USE;
        return e;
    }
    e->flags &= ~(QCOW2_BME_FLAG_IN_USE | QCOW2_BME_FLAG_AUTO);
    if (bdrv_dirty_bitmap_recording(bm)) {
        e->flags |= QCOW2_BME_FLAG_AUTO;
    }
    return e;
}

static bool same_dir(GPtrArray *a, GPtrArray *b)
{
    if (a->len != b->len) {
        return false;
    }
    for (guint i = 0; i < a->len; i++) {
        Qcow2BitmapEntry *x = g_ptr_array_index(a, i);
        Qcow2BitmapEntry *y = g_ptr_array_index(b, i);
        if (x->table_offset != y->table_offset ||
            x->table_size != y->table_size || x->flags != y->flags ||
            x->granularity_bits != y->granularity_bits ||
            x->foreign != y->foreign || strcmp(x->name, y->name)) {
            return false;
        }
    }
    return true;
}

/* Build the new directory; *fresh collects newly written entries. */
static int build_dir(BlockDriverState *bs, GPtrArray *entries,
                     GPtrArray *fresh, GPtrArray *replaced, GError **errp)
{
    Qcow2BitmapState *st = bm_state(bs);
    g_autoptr(GHashTable) seen = g_hash_table_new(g_str_hash, g_str_equal);

    for (BdrvDirtyBitmap *bm = bdrv_dirty_bitmap_first(bs); bm;
         bm = bdrv_dirty_bitmap_next(bm)) {
        const char *name = bdrv_dirty_bitmap_name(bm);
        Qcow2BitmapEntry *old = name ? g_hash_table_lookup(st->by_name,
                                                           name) : NULL;
        Qcow2BitmapEntry *e = NULL;
        int ret;

        if (!bdrv_dirty_bitmap_persistent(bm)) {
            continue;
        }
        g_hash_table_add(seen, (char *)name);
        if (bdrv_dirty_bitmap_get_skip_store(bm)) {
            if (old) {
                g_ptr_array_add(entries, qcow2_bitmap_entry_dup(old));
            }
            continue;
        }
        if (old && (bdrv_dirty_bitmap_inconsistent(bm) ||
                    !bdrv_dirty_bitmap_changed(bm))) {
            g_ptr_array_add(entries, keep_entry(old, bm));
            continue;
        }
        if (bdrv_dirty_bitmap_inconsistent(bm) ||
            !bdrv_dirty_bitmap_load(bm, NULL)) {
            /* Never stored and unusable (no memory): nothing to keep. */
            if (old) {
                g_ptr_array_add(entries, keep_entry(old, bm));
            }
            continue;
        }
        ret = store_data(bs, bm, &e, errp);
        if (ret < 0) {
            return ret;
        }
        g_ptr_array_add(fresh, qcow2_bitmap_entry_dup(e));
        g_ptr_array_add(entries, e);
        if (old) {
            g_ptr_array_add(replaced, qcow2_bitmap_entry_dup(old));
        }
    }
    /* Stored bitmaps that are no longer persistent are deleted. */
    for (guint i = 0; i < st->dir->len; i++) {
        Qcow2BitmapEntry *old = g_ptr_array_index(st->dir, i);
        if (!g_hash_table_contains(seen, old->name)) {
            g_ptr_array_add(replaced, qcow2_bitmap_entry_dup(old));
        }
    }
    return 0;
}

int qcow2_bitmaps_store_locked(BlockDriverState *bs, GError **errp)
{
    Qcow2State *s = bs->opaque;
    Qcow2BitmapState *st = bm_state(bs);
    g_autoptr(GPtrArray) entries = g_ptr_array_new_with_free_func(
        (GDestroyNotify)qcow2_bitmap_entry_free);
    g_autoptr(GPtrArray) fresh = g_ptr_array_new_with_free_func(
        (GDestroyNotify)qcow2_bitmap_entry_free);
    g_autoptr(GPtrArray) replaced = g_ptr_array_new_with_free_func(
        (GDestroyNotify)qcow2_bitmap_entry_free);
    int ret;

    if (!st || !s->writable || st->error) {
        return 0;
    }
    st->switch_unsure = false;
    ret = build_dir(bs, entries, fresh, replaced, errp);
    if (ret == 0 && !same_dir(entries, st->dir)) {
        ret = qcow2_bitmap_write_dir(bs, entries, replaced, errp);
    }
    if (ret < 0) {
        /* Unless the image may hold the new directory, which uses them. */
        for (guint i = 0; !st->switch_unsure && i < fresh->len; i++) {
            qcow2_bitmap_free_clusters(bs, g_ptr_array_index(fresh, i));
        }
        return ret;
    }
    for (BdrvDirtyBitmap *bm = bdrv_dirty_bitmap_first(bs); bm;
         bm = bdrv_dirty_bitmap_next(bm)) {
        if (bdrv_dirty_bitmap_persistent(bm) &&
            !bdrv_dirty_bitmap_inconsistent(bm) &&
            !bdrv_dirty_bitmap_get_skip_store(bm)) {
            bdrv_dirty_bitmap_set_stored(bm);
        }
    }
    /* Everything is clean on disk: the next write starts a new session. */
    g_hash_table_remove_all(st->touched);
    g_atomic_int_set(&st->session, 0);
    return 0;
}
