/*
 * qcow2 persistent bitmaps: open (read and validate the directory, create
 * one lazily-loaded bitmap per entry), lazy data load, format-specific
 * info, the in-use protocol (flag before the first write, or before a
 * change once writes started), adding and removing persistent bitmaps.
 * Storing lives in qcow2-bitmap-store.c, check in qcow2-bitmap-check.c,
 * the byte layout in qcow2-bitmap-dir.c.  Rules: docs/interop/bitmaps.md.
 *
 * Never fatal: a broken directory leaves the image openable (data stays
 * readable); the error is kept in st->error and returned by the bitmap
 * operations, and a read-write session clears the autoclear bit so that
 * no program trusts the directory afterwards.
 */
#include "qcow2.h"
#include "qcow2-bitmap.h"
#include "qapi/error.h"
#include "util/bswap.h"

#include <errno.h>
#include <string.h>

/* Read at most this much bitmap data per request while loading. */
#define LOAD_CHUNK (1024 * 1024)

static Qcow2BitmapState *bm_state(BlockDriverState *bs)
{
    return ((Qcow2State *)bs->opaque)->bitmaps;
}

void qcow2_bitmap_geometry(BlockDriverState *bs, Qcow2BitmapGeometry *g)
{
    Qcow2State *s = bs->opaque;

    g->cluster_size = s->cluster_size;
    g->disk_size = s->size;
    g->file_size = __atomic_load_n(&s->file_len, __ATOMIC_ACQUIRE);
}

/* Replace the directory copy (takes ownership of @dir). */
void qcow2_bitmap_set_dir(Qcow2BitmapState *st, GPtrArray *dir)
{
    g_mutex_lock(&st->lock);
    if (st->dir) {
        g_ptr_array_unref(st->dir);
    }
    st->dir = dir;
    g_hash_table_remove_all(st->by_name);
    for (guint i = 0; i < dir->len; i++) {
        Qcow2BitmapEntry *e = g_ptr_array_index(dir, i);
        g_hash_table_insert(st->by_name, e->name, e);
    }
    g_mutex_unlock(&st->lock);
}

Qcow2BitmapEntry *qcow2_bitmap_find_entry(BlockDriverState *bs,
                                          const char *name)
{
    Qcow2BitmapState *st = bm_state(bs);
    Qcow2BitmapEntry *e, *copy = NULL;

    if (!st) {
        return NULL;
    }
    g_mutex_lock(&st->lock);
    e = g_hash_table_lookup(st->by_name, name);
    if (e) {
        copy = qcow2_bitmap_entry_dup(e);
    }
    g_mutex_unlock(&st->lock);
    return copy;
}

/* ---- Open and close ---- */

static GPtrArray *read_directory(BlockDriverState *bs, const Qcow2RawExt *raw,
                                 Qcow2BitmapExt *ext, GError **errp)
{
    Qcow2BitmapGeometry g;
    g_autofree uint8_t *buf = NULL;
    int ret;

    qcow2_bitmap_geometry(bs, &g);
    if (!qcow2_bitmap_ext_parse(raw->data, raw->len, &g, ext, errp)) {
        return NULL;
    }
    buf = g_try_malloc(ext->dir_size);
    if (!buf) {
        error_setg(errp, "Not enough memory for a bitmap directory of %"
                   PRIu64 " bytes", ext->dir_size);
        return NULL;
    }
    ret = qcow2_read_host(bs, ext->dir_offset, ext->dir_size, buf);
    if (ret < 0) {
        error_setg_errno(errp, -ret, "Failed to read bitmap directory");
        return NULL;
    }
    return qcow2_bitmap_dir_parse(buf, ext, &g, errp);
}

/*
 * One bitmap object per entry (collected in @created); false if the node
 * refused one.  A name the node already has is skipped: that object was
 * kept through a reopen of the driver (block/activation.c, migration)
 * and memory has the truth about it.
 */
static bool create_bitmaps(BlockDriverState *bs, Qcow2BitmapState *st,
                           GPtrArray *created, GError **errp)
{
    Qcow2State *s = bs->opaque;

    for (guint i = 0; i < st->dir->len; i++) {
        Qcow2BitmapEntry *e = g_ptr_array_index(st->dir, i);
        bool inconsistent = !st->trusted || (e->flags & QCOW2_BME_FLAG_IN_USE);
        BdrvDirtyBitmap *bm;

        e->foreign = !st->trusted;
        if (bdrv_find_dirty_bitmap(bs, e->name)) {
            continue;
        }
        bm = bdrv_create_stored_dirty_bitmap(
            bs, UINT64_C(1) << e->granularity_bits, e->name,
            e->flags & QCOW2_BME_FLAG_AUTO, inconsistent, errp);
        if (!bm) {
            g_prefix_error(errp, "Cannot load bitmap '%s': ", e->name);
            return false;
        }
        g_ptr_array_add(created, bm);
        if (!s->writable) {
            bdrv_dirty_bitmap_set_readonly(bm, true);
        }
    }
    return true;
}

int qcow2_bitmaps_open(BlockDriverState *bs, GError **errp)
{
    Qcow2State *s = bs->opaque;
    Qcow2BitmapState *st = g_new0(Qcow2BitmapState, 1);
    const Qcow2RawExt *raw;
    GPtrArray *dir;
    g_autoptr(GPtrArray) created = NULL;

    g_mutex_init(&st->lock);
    g_mutex_init(&st->session_lock);
    st->by_name = g_hash_table_new(g_str_hash, g_str_equal);
    st->touched = g_hash_table_new_full(g_str_hash, g_str_equal, g_free,
                                        NULL);
    qcow2_bitmap_set_dir(st, g_ptr_array_new_with_free_func(
                    (GDestroyNotify)qcow2_bitmap_entry_free));
    s->bitmaps = st;
    raw = qcow2_header_find_ext(&s->hdr, QCOW2_EXT_BITMAPS);
    if (!raw) {
        return 0;
    }
    st->ext_present = true;
    st->trusted = s->hdr.version >= 3 &&
                  (s->hdr.autoclear_features & QCOW2_AUTOCLEAR_BITMAPS);
    dir = read_directory(bs, raw, &st->ext, &st->error);
    if (!dir) {
        return 0;
    }
    qcow2_bitmap_set_dir(st, dir);
    created = g_ptr_array_new();
    if (!create_bitmaps(bs, st, created, &st->error)) {
        /* Undo: a directory we cannot mirror is treated as broken. */
        for (guint i = 0; i < created->len; i++) {
            bdrv_release_dirty_bitmap(g_ptr_array_index(created, i));
        }
        return 0;
    }
    g_mutex_lock(&s->lock);
    qcow2_meta_add(s, st->ext.dir_offset, st->ext.dir_size,
                   QCOW2_META_OTHER);
    for (guint i = 0; i < st->dir->len; i++) {
        Qcow2BitmapEntry *e = g_ptr_array_index(st->dir, i);
        qcow2_meta_add(s, e->table_offset, (uint64_t)e->table_size * 8,
                       QCOW2_META_OTHER);
    }
    g_mutex_unlock(&s->lock);
    return 0;
}

void qcow2_bitmaps_close(BlockDriverState *bs)
{
    Qcow2State *s = bs->opaque;
    Qcow2BitmapState *st = s->bitmaps;

    if (!st) {
        return;
    }
    s->bitmaps = NULL;
    g_ptr_array_unref(st->dir);
    g_hash_table_unref(st->by_name);
    g_hash_table_unref(st->touched);
    g_clear_error(&st->error);
    g_mutex_clear(&st->lock);
    g_mutex_clear(&st->session_lock);
    g_free(st);
}

/* ---- Info (metadata lock held) ---- */

void qcow2_bitmaps_info(BlockDriverState *bs, JsonObject *data)
{
    Qcow2BitmapState *st = bm_state(bs);
    JsonArray *list;

    if (!st || !st->dir->len) {
        return;
    }
    list = json_array_new();
    g_mutex_lock(&st->lock);
    for (guint i = 0; i < st->dir->len; i++) {
        Qcow2BitmapEntry *e = g_ptr_array_index(st->dir, i);
        JsonObject *o = json_object_new();
        JsonArray *flags = json_array_new();

        /* Same order as QEMU: in-use, then auto. */
        if ((e->flags & QCOW2_BME_FLAG_IN_USE) || e->foreign) {
            json_array_add_string_element(flags, "in-use");
        }
        if (e->flags & QCOW2_BME_FLAG_AUTO) {
            json_array_add_string_element(flags, "auto");
        }
        json_object_set_array_member(o, "flags", flags);
        json_object_set_string_member(o, "name", e->name);
        json_object_set_int_member(o, "granularity",
                                   (gint64)1 << e->granularity_bits);
        json_array_add_object_element(list, o);
    }
    g_mutex_unlock(&st->lock);
    json_object_set_array_member(data, "bitmaps", list);
}

/* ---- Reading stored contents (no metadata lock) ---- */

/* What to do with each part of a stored bitmap, in table order. */
typedef struct {
    /* Table entry @i is an all-ones cluster. */
    void (*ones)(void *opaque, uint64_t i);
    /* Entries [first, first + n) are data clusters, contents in @buf. */
    void (*data)(void *opaque, uint64_t first, uint64_t n,
                 const uint8_t *buf);
    void *opaque;
} StoredWalk;

static bool read_run(BlockDriverState *bs, const char *name, uint64_t host,
                     uint64_t first, uint64_t n, uint8_t *buf,
                     const StoredWalk *w, GError **errp)
{
    Qcow2State *s = bs->opaque;
    int ret = qcow2_read_host(bs, host, n * s->cluster_size, buf);

    if (ret < 0) {
        error_setg_errno(errp, -ret, "Could not read bitmap '%s' data", name);
        return false;
    }
    w->data(w->opaque, first, n, buf);
    return true;
}

/*
 * Walk the table entries a bitmap of @size bytes needs, checking each,
 * reading runs of contiguous data clusters with one request each.
 */
static bool walk_stored(BlockDriverState *bs, const char *name,
                        uint64_t size, const StoredWalk *w, GError **errp)
{
    g_autoptr(Qcow2BitmapEntry) e = qcow2_bitmap_find_entry(bs, name);
    g_autofree uint64_t *table = NULL;
    g_autofree uint8_t *buf = NULL;
    uint64_t n, run_start = 0, run_len = 0, run_host = 0, chunk;
    Qcow2BitmapGeometry g;
    int ret;

    if (!e) {
        error_setg(errp, "Bitmap '%s' is not stored in the image", name);
        return false;
    }
    qcow2_bitmap_geometry(bs, &g);
    n = qcow2_bitmap_table_entries(size, e->granularity_bits,
                                   g.cluster_size);
    if (n > e->table_size) {
        error_setg(errp, "Bitmap '%s' table has %" PRIu32 " entries, the "
                   "disk needs %" PRIu64, name, e->table_size, n);
        return false;
    }
    chunk = MAX(g.cluster_size, LOAD_CHUNK);
    table = g_try_new(uint64_t, MAX(n, 1));
    buf = g_try_malloc(chunk);
    if (!table || !buf) {
        error_setg(errp, "Not enough memory to read bitmap '%s'", name);
        return false;
    }
    ret = qcow2_read_host(bs, e->table_offset, n * 8, table);
    if (ret < 0) {
        error_setg_errno(errp, -ret, "Could not read bitmap '%s' table",
                         name);
        return false;
    }
    for (uint64_t i = 0; i <= n; i++) {
        uint64_t ent = i < n ? ldq_be(&table[i]) : 0;
        uint64_t off = ent & QCOW2_BME_TABLE_OFFSET_MASK;

        if (i < n && !qcow2_bitmap_table_entry_check(ent, i, name, &g,
                                                     errp)) {
            return false;
        }
        /* Extend the current run of contiguous data clusters, or flush. */
        if (off && run_len && off == run_host + run_len * g.cluster_size &&
            (run_len + 1) * g.cluster_size <= chunk) {
            run_len++;
            continue;
        }
        if (run_len && !read_run(bs, name, run_host, run_start, run_len,
                                 buf, w, errp)) {
            return false;
        }
        run_len = 0;
        if (off) {
            run_start = i;
            run_host = off;
            run_len = 1;
        } else if (ent & QCOW2_BME_TABLE_ALL_ONES) {
            w->ones(w->opaque, i);
        }
    }
    return true;
}

typedef struct {
    HBitmap *hb;
    uint64_t cs;
    uint64_t per;        /* disk bytes one bitmap cluster covers */
} LoadCtx;

static void load_ones(void *opaque, uint64_t i)
{
    LoadCtx *c = opaque;

    hbitmap_deserialize_ones(c->hb, i * c->per, c->per);
}

static void load_data(void *opaque, uint64_t first, uint64_t n,
                      const uint8_t *buf)
{
    LoadCtx *c = opaque;

    for (uint64_t k = 0; k < n; k++) {
        hbitmap_deserialize_part(c->hb, buf + k * c->cs,
                                 (first + k) * c->per, c->per, false);
    }
}

static bool qcow2_bitmap_load(BlockDriverState *bs, BdrvDirtyBitmap *bm,
                              HBitmap *hb, GError **errp)
{
    Qcow2State *s = bs->opaque;
    LoadCtx c = { hb, s->cluster_size,
                  s->cluster_size * 8 * hbitmap_granularity(hb) };
    StoredWalk w = { load_ones, load_data, &c };

    return walk_stored(bs, bdrv_dirty_bitmap_name(bm), hbitmap_size(hb), &w,
                       errp);
}

/* Population count of whole 64-bit words, with the CPU's instruction. */
#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("popcnt")))
static uint64_t popcount_words_hw(const uint64_t *w, size_t n)
{
    uint64_t sum = 0;

    for (size_t i = 0; i < n; i++) {
        sum += (uint64_t)__builtin_popcountll(w[i]);
    }
    return sum;
}
#endif

static uint64_t popcount_words(const uint64_t *w, size_t n)
{
    uint64_t sum = 0;

#if defined(__x86_64__) && defined(__GNUC__)
    if (__builtin_cpu_supports("popcnt")) {
        return popcount_words_hw(w, n);
    }
#endif
    for (size_t i = 0; i < n; i++) {
        uint64_t v = w[i];
        v = v - ((v >> 1) & UINT64_C(0x5555555555555555));
        v = (v & UINT64_C(0x3333333333333333)) +
            ((v >> 2) & UINT64_C(0x3333333333333333));
        v = (v + (v >> 4)) & UINT64_C(0x0f0f0f0f0f0f0f0f);
        sum += (v * UINT64_C(0x0101010101010101)) >> 56;
    }
    return sum;
}

typedef struct {
    uint64_t cs;
    uint64_t nbits;      /* bits of the whole bitmap */
    uint64_t bits;       /* dirty bits seen */
    bool last;           /* the last bit is dirty */
} CountCtx;

static void count_ones(void *opaque, uint64_t i)
{
    CountCtx *c = opaque;
    uint64_t first = i * c->cs * 8;

    c->bits += MIN(c->cs * 8, c->nbits - first);
    c->last |= first + c->cs * 8 >= c->nbits;
}

static void count_data(void *opaque, uint64_t first, uint64_t n,
                       const uint8_t *buf)
{
    CountCtx *c = opaque;
    uint64_t start_bit = first * c->cs * 8;
    uint64_t bits = MIN(n * c->cs * 8, c->nbits - start_bit);
    uint64_t words = bits / 64;

    /* buf comes from g_malloc: aligned for uint64_t. */
    c->bits += popcount_words((const uint64_t *)buf, words);
    for (uint64_t b = words * 64; b < bits; b++) {
        c->bits += (buf[b / 8] >> (b % 8)) & 1;
    }
    if (start_bit + bits == c->nbits && bits) {
        uint64_t b = bits - 1;
        c->last = (buf[b / 8] >> (b % 8)) & 1;
    }
}

static bool qcow2_bitmap_stored_count(BlockDriverState *bs,
                                      BdrvDirtyBitmap *bm, uint64_t *bytes,
                                      GError **errp)
{
    Qcow2State *s = bs->opaque;
    uint64_t size = bdrv_dirty_bitmap_size(bm);
    uint64_t gran = bdrv_dirty_bitmap_granularity(bm);
    CountCtx c = { s->cluster_size, (size + gran - 1) / gran, 0, false };
    StoredWalk w = { count_ones, count_data, &c };

    if (!walk_stored(bs, bdrv_dirty_bitmap_name(bm), size, &w, errp)) {
        return false;
    }
    *bytes = c.bits * gran;
    if (c.last && size % gran) {
        /* The last bit covers only the bytes up to the end of the disk. */
        *bytes -= gran - size % gran;
    }
    return true;
}

/* ---- The in-use protocol ---- */

/* Is @bm a stored, trusted bitmap that may change in this session? */
static bool may_change(Qcow2BitmapState *st, BdrvDirtyBitmap *bm)
{
    const char *name = bdrv_dirty_bitmap_name(bm);

    return bdrv_dirty_bitmap_persistent(bm) &&
           !bdrv_dirty_bitmap_inconsistent(bm) &&
           (bdrv_dirty_bitmap_recording(bm) ||
            g_hash_table_contains(st->touched, name));
}

/*
 * Flag in-use on disk every entry named in @names (or, with @names NULL,
 * every entry whose bitmap may change).  Metadata lock held.
 */
static int flag_in_use(BlockDriverState *bs, GHashTable *names,
                       GError **errp)
{
    Qcow2BitmapState *st = bm_state(bs);
    g_autoptr(GPtrArray) entries = g_ptr_array_new_with_free_func(
        (GDestroyNotify)qcow2_bitmap_entry_free);
    g_autoptr(GHashTable) want = NULL;
    bool changed = false;

    if (!names) {
        want = g_hash_table_new(g_str_hash, g_str_equal);
        g_mutex_lock(&bs->dirty_bitmap_lock);
        for (guint i = 0; i < bs->dirty_bitmaps->len; i++) {
            BdrvDirtyBitmap *bm = g_ptr_array_index(bs->dirty_bitmaps, i);
            if (may_change(st, bm)) {
                g_hash_table_add(want, (char *)bdrv_dirty_bitmap_name(bm));
            }
        }
        g_mutex_unlock(&bs->dirty_bitmap_lock);
        names = want;
    }
    for (guint i = 0; i < st->dir->len; i++) {
        Qcow2BitmapEntry *e = qcow2_bitmap_entry_dup(
            g_ptr_array_index(st->dir, i));
        if (!e->foreign && !(e->flags & QCOW2_BME_FLAG_IN_USE) &&
            g_hash_table_contains(names, e->name)) {
            e->flags |= QCOW2_BME_FLAG_IN_USE;
            changed = true;
        }
        g_ptr_array_add(entries, e);
    }
    if (!changed) {
        return 0;
    }
    return qcow2_bitmap_write_dir(bs, entries, NULL, errp);
}

/* A broken directory must not be trusted once we write: clear the bit. */
static int distrust_directory(BlockDriverState *bs)
{
    Qcow2State *s = bs->opaque;
    int ret;

    if (!(s->hdr.autoclear_features & QCOW2_AUTOCLEAR_BITMAPS)) {
        return 0;
    }
    s->hdr.autoclear_features &= ~QCOW2_AUTOCLEAR_BITMAPS;
    ret = qcow2_write_header_field(bs, QCOW2_HDR_AUTOCLEAR, 8,
                                   s->hdr.autoclear_features);
    return ret < 0 ? ret : bdrv_flush(bs->file);
}

int qcow2_bitmaps_before_write(BlockDriverState *bs)
{
    Qcow2State *s = bs->opaque;
    Qcow2BitmapState *st = bm_state(bs);
    g_autoptr(GError) err = NULL;
    int ret = 0;

    if (!st || g_atomic_int_get(&st->session)) {
        return 0;
    }
    g_mutex_lock(&st->session_lock);
    if (!g_atomic_int_get(&st->session)) {
        g_mutex_lock(&s->lock);
        if (!s->writable) {
            ret = 0;
        } else if (st->error) {
            ret = distrust_directory(bs);
        } else if (st->dir->len) {
            ret = flag_in_use(bs, NULL, &err);
        }
        g_mutex_unlock(&s->lock);
        if (ret == 0) {
            g_atomic_int_set(&st->session, 1);
        }
    }
    g_mutex_unlock(&st->session_lock);
    return ret;
}

static bool qcow2_bitmap_before_change(BlockDriverState *bs,
                                       BdrvDirtyBitmap *bm, GError **errp)
{
    Qcow2State *s = bs->opaque;
    Qcow2BitmapState *st = bm_state(bs);
    const char *name = bdrv_dirty_bitmap_name(bm);
    g_autoptr(GHashTable) one = NULL;
    int ret;

    if (!st || !name || !s->writable) {
        return true;
    }
    g_mutex_lock(&st->session_lock);
    g_hash_table_add(st->touched, g_strdup(name));
    if (!g_atomic_int_get(&st->session)) {
        /* Flagged at the first write, if one comes before the store. */
        g_mutex_unlock(&st->session_lock);
        return true;
    }
    one = g_hash_table_new(g_str_hash, g_str_equal);
    g_hash_table_add(one, (char *)name);
    g_mutex_lock(&s->lock);
    ret = flag_in_use(bs, one, errp);
    g_mutex_unlock(&s->lock);
    g_mutex_unlock(&st->session_lock);
    return ret == 0;
}

/* ---- Adding and removing ---- */

static bool can_store_new(BlockDriverState *bs, const char *name,
                          uint64_t granularity, GError **errp)
{
    Qcow2State *s = bs->opaque;
    Qcow2BitmapState *st = bm_state(bs);
    Qcow2BitmapGeometry g;
    uint64_t dir_size = qcow2_bitmap_entry_size(strlen(name));
    guint count = 1;

    if (s->hdr.version < 3) {
        error_setg(errp, "Cannot store dirty bitmaps in qcow2 v2 files");
        return false;
    }
    if (!s->writable) {
        error_setg(errp, "The image is opened read-only");
        return false;
    }
    if (st->error) {
        error_setg(errp, "%s", st->error->message);
        return false;
    }
    for (BdrvDirtyBitmap *bm = bdrv_dirty_bitmap_first(bs); bm;
         bm = bdrv_dirty_bitmap_next(bm)) {
        if (bdrv_dirty_bitmap_persistent(bm)) {
            count++;
            dir_size += qcow2_bitmap_entry_size(
                strlen(bdrv_dirty_bitmap_name(bm)));
        }
    }
    if (count > QCOW2_MAX_BITMAPS) {
        error_setg(errp, "Maximum number of persistent bitmaps is already "
                   "reached");
        return false;
    }
    if (dir_size > QCOW2_MAX_BITMAP_DIRECTORY_SIZE) {
        error_setg(errp, "Not enough space in the bitmap directory");
        return false;
    }
    qcow2_bitmap_geometry(bs, &g);
    return qcow2_bitmap_check_constraints(name, granularity, &g, errp);
}

static bool qcow2_bitmap_can_store_new(BlockDriverState *bs, const char *name,
                                       uint64_t granularity, GError **errp)
{
    if (!can_store_new(bs, name, granularity, errp)) {
        g_prefix_error(errp, "Can't make bitmap '%s' persistent in '%s': ",
                       name, bdrv_get_node_name(bs));
        return false;
    }
    return true;
}

static bool qcow2_bitmap_remove(BlockDriverState *bs, const char *name,
                                GError **errp)
{
    Qcow2State *s = bs->opaque;
    Qcow2BitmapState *st = bm_state(bs);
    g_autoptr(GPtrArray) entries = g_ptr_array_new_with_free_func(
        (GDestroyNotify)qcow2_bitmap_entry_free);
    g_autoptr(GPtrArray) gone = g_ptr_array_new_with_free_func(
        (GDestroyNotify)qcow2_bitmap_entry_free);
    int ret;

    if (st->error) {
        error_setg(errp, "%s", st->error->message);
        return false;
    }
    g_mutex_lock(&st->session_lock);
    g_hash_table_remove(st->touched, name);
    g_mutex_lock(&s->lock);
    for (guint i = 0; i < st->dir->len; i++) {
        Qcow2BitmapEntry *e = g_ptr_array_index(st->dir, i);
        g_ptr_array_add(strcmp(e->name, name) ? entries : gone,
                        qcow2_bitmap_entry_dup(e));
    }
    ret = gone->len ? qcow2_bitmap_write_dir(bs, entries, gone, errp) : 0;
    g_mutex_unlock(&s->lock);
    g_mutex_unlock(&st->session_lock);
    return ret == 0;
}

static bool qcow2_bitmap_store(BlockDriverState *bs, GError **errp)
{
    Qcow2State *s = bs->opaque;
    Qcow2BitmapState *st = bm_state(bs);
    int ret;

    if (!st) {
        return true;
    }
    g_mutex_lock(&st->session_lock);
    g_mutex_lock(&s->lock);
    ret = qcow2_bitmaps_store_locked(bs, errp);
    g_mutex_unlock(&s->lock);
    g_mutex_unlock(&st->session_lock);
    return ret == 0;
}

static bool qcow2_bitmap_check_stored(BlockDriverState *bs, GError **errp)
{
    Qcow2BitmapState *st = bm_state(bs);

    if (st && st->error) {
        error_setg(errp, "%s", st->error->message);
        return false;
    }
    return true;
}

/* The hook qcow2_quiesce() calls (metadata lock held; errors dropped). */
int qcow2_bitmaps_store(BlockDriverState *bs)
{
    g_autoptr(GError) err = NULL;

    return qcow2_bitmaps_store_locked(bs, &err);
}

const BdrvBitmapDriverOps qcow2_bitmap_ops = {
    .can_store_new = qcow2_bitmap_can_store_new,
    .remove_persistent = qcow2_bitmap_remove,
    .load = qcow2_bitmap_load,
    .stored_count = qcow2_bitmap_stored_count,
    .before_change = qcow2_bitmap_before_change,
    .store = qcow2_bitmap_store,
    .check_stored = qcow2_bitmap_check_stored,
};
