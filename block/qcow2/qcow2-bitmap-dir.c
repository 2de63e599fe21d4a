/*
 * qcow2 bitmaps: pure codec for the bitmaps extension, the bitmap
 * directory and bitmap table entries.  No I/O: every function works on
 * buffers, so tests/unit/test-qcow2-bitmap-dir.c can feed it crafted
 * bytes.  Rules: docs/interop/bitmaps.md "On-disk rules"; every value read
 * from the image is checked before it is used as a size or an offset.
 */
#include "qcow2-bitmap.h"
#include "qapi/error.h"
#include "util/align.h"
#include "util/bswap.h"

#include <string.h>

Qcow2BitmapEntry *qcow2_bitmap_entry_new(const char *name)
{
    Qcow2BitmapEntry *e = g_new0(Qcow2BitmapEntry, 1);

    e->name = g_strdup(name);
    e->type = QCOW2_BME_TYPE_DIRTY_TRACKING;
    return e;
}

Qcow2BitmapEntry *qcow2_bitmap_entry_dup(const Qcow2BitmapEntry *e)
{
    Qcow2BitmapEntry *d = g_memdup2(e, sizeof(*e));

    d->name = g_strdup(e->name);
    return d;
}

void qcow2_bitmap_entry_free(Qcow2BitmapEntry *e)
{
    if (e) {
        g_free(e->name);
        g_free(e);
    }
}

uint64_t qcow2_bitmap_entry_size(size_t name_len)
{
    return qemu_align_up(QCOW2_BME_ENTRY_FIXED + (uint64_t)name_len, 8);
}

uint64_t qcow2_bitmap_data_bytes(uint64_t disk_size, int granularity_bits)
{
    uint64_t bits = (disk_size >> granularity_bits) +
                    ((disk_size & ((UINT64_C(1) << granularity_bits) - 1))
                     != 0);

    return (bits + 7) / 8;
}

uint64_t qcow2_bitmap_table_entries(uint64_t disk_size, int granularity_bits,
                                    uint64_t cluster_size)
{
    uint64_t bytes = qcow2_bitmap_data_bytes(disk_size, granularity_bits);

    return (bytes + cluster_size - 1) / cluster_size;
}

/* ---- Extension ---- */

bool qcow2_bitmap_ext_parse(const uint8_t *data, size_t len,
                            const Qcow2BitmapGeometry *g, Qcow2BitmapExt *ext,
                            GError **errp)
{
    uint32_t reserved;

    if (len != QCOW2_BME_EXT_SIZE) {
        error_setg(errp, "bitmaps_ext: Invalid extension length %zu "
                   "(expected %d)", len, QCOW2_BME_EXT_SIZE);
        return false;
    }
    ext->nb_bitmaps = ldl_be(data);
    reserved = ldl_be(data + 4);
    ext->dir_size = ldq_be(data + 8);
    ext->dir_offset = ldq_be(data + 16);
    if (reserved) {
        error_setg(errp, "bitmaps_ext: Reserved field is not zero "
                   "(0x%" PRIx32 ")", reserved);
        return false;
    }
    if (ext->nb_bitmaps == 0) {
        error_setg(errp, "found bitmaps extension with zero bitmaps");
        return false;
    }
    if (ext->nb_bitmaps > QCOW2_MAX_BITMAPS) {
        error_setg(errp, "bitmaps_ext: Image has %" PRIu32 " bitmaps, "
                   "exceeding the supported maximum of %d", ext->nb_bitmaps,
                   QCOW2_MAX_BITMAPS);
        return false;
    }
    if (ext->dir_size > QCOW2_MAX_BITMAP_DIRECTORY_SIZE) {
        error_setg(errp, "bitmaps_ext: bitmap directory size (%" PRIu64
                   ") exceeds the maximum supported size (%d)",
                   ext->dir_size, QCOW2_MAX_BITMAP_DIRECTORY_SIZE);
        return false;
    }
    if (ext->dir_size < (uint64_t)ext->nb_bitmaps * QCOW2_BME_ENTRY_FIXED) {
        error_setg(errp, "Bitmap directory is broken: the header extension "
                   "says %" PRIu32 " bitmaps, but %" PRIu64 " bytes cannot "
                   "hold them", ext->nb_bitmaps, ext->dir_size);
        return false;
    }
    if (ext->dir_offset == 0 || ext->dir_offset % g->cluster_size) {
        error_setg(errp, "bitmaps_ext: invalid bitmap directory offset "
                   "0x%" PRIx64, ext->dir_offset);
        return false;
    }
    if (ext->dir_offset > g->file_size ||
        ext->dir_size > g->file_size - ext->dir_offset) {
        error_setg(errp, "bitmaps_ext: bitmap directory at 0x%" PRIx64
                   " (%" PRIu64 " bytes) lies beyond the end of the file",
                   ext->dir_offset, ext->dir_size);
        return false;
    }
    return true;
}

void qcow2_bitmap_ext_serialize(const Qcow2BitmapExt *ext,
                                uint8_t out[QCOW2_BME_EXT_SIZE])
{
    stl_be(out, ext->nb_bitmaps);
    stl_be(out + 4, 0);
    stq_be(out + 8, ext->dir_size);
    stq_be(out + 16, ext->dir_offset);
}

/* ---- Constraints ---- */

static bool check_size_limits(const char *name, int gbits, uint64_t cs,
                              uint64_t disk_size, GError **errp)
{
    uint64_t entries = qcow2_bitmap_table_entries(disk_size, gbits, cs);

    if (entries > QCOW2_BME_MAX_TABLE_SIZE ||
        entries * cs > QCOW2_BME_MAX_PHYS_SIZE) {
        error_setg(errp, "Too much space will be occupied by the bitmap. "
                   "Use larger granularity");
        return false;
    }
    return true;
}

bool qcow2_bitmap_check_constraints(const char *name, uint64_t granularity,
                                    const Qcow2BitmapGeometry *g,
                                    GError **errp)
{
    int gbits = granularity ? __builtin_ctzll(granularity) : 0;

    if (gbits > QCOW2_BME_MAX_GRANULARITY_BITS) {
        error_setg(errp, "Granularity exceeds maximum (%llu bytes)",
                   1ULL << QCOW2_BME_MAX_GRANULARITY_BITS);
        return false;
    }
    if (gbits < QCOW2_BME_MIN_GRANULARITY_BITS) {
        error_setg(errp, "Granularity is under minimum (%llu bytes)",
                   1ULL << QCOW2_BME_MIN_GRANULARITY_BITS);
        return false;
    }
    if (strlen(name) > QCOW2_BME_MAX_NAME_SIZE) {
        error_setg(errp, "Name length exceeds maximum (%u characters)",
                   QCOW2_BME_MAX_NAME_SIZE);
        return false;
    }
    return check_size_limits(name, gbits, g->cluster_size, g->disk_size,
                             errp);
}

/* ---- Directory ---- */

/* Validate one decoded entry (its name is already checked). */
static bool check_entry(const Qcow2BitmapEntry *e,
                        const Qcow2BitmapGeometry *g, GError **errp)
{
    uint64_t cs = g->cluster_size, need;

    if (e->flags & QCOW2_BME_RESERVED_FLAGS) {
        error_setg(errp, "Bitmap '%s' has reserved flags set (0x%" PRIx32
                   ")", e->name, e->flags);
        return false;
    }
    if (e->type != QCOW2_BME_TYPE_DIRTY_TRACKING) {
        error_setg(errp, "Bitmap '%s' has unknown type %u", e->name,
                   e->type);
        return false;
    }
    if (e->granularity_bits < QCOW2_BME_MIN_GRANULARITY_BITS ||
        e->granularity_bits > QCOW2_BME_MAX_GRANULARITY_BITS) {
        error_setg(errp, "Bitmap '%s' has granularity bits %u, outside "
                   "the supported range %d-%d", e->name, e->granularity_bits,
                   QCOW2_BME_MIN_GRANULARITY_BITS,
                   QCOW2_BME_MAX_GRANULARITY_BITS);
        return false;
    }
    if (e->table_size == 0 || e->table_size > QCOW2_BME_MAX_TABLE_SIZE ||
        (uint64_t)e->table_size * cs > QCOW2_BME_MAX_PHYS_SIZE) {
        error_setg(errp, "Bitmap '%s' has an invalid table size %" PRIu32,
                   e->name, e->table_size);
        return false;
    }
    if (e->table_offset == 0 || e->table_offset % cs) {
        error_setg(errp, "Bitmap '%s' has a misaligned table offset 0x%"
                   PRIx64, e->name, e->table_offset);
        return false;
    }
    if (e->table_offset > g->file_size ||
        (uint64_t)e->table_size * 8 > g->file_size - e->table_offset) {
        error_setg(errp, "Bitmap '%s' table at 0x%" PRIx64 " (%" PRIu32
                   " entries) lies beyond the end of the file", e->name,
                   e->table_offset, e->table_size);
        return false;
    }
    /*
     * A bitmap that was stored cleanly covers the whole disk.  An in-use
     * one may have the wrong size (QEMU too lets it through): it is
     * never loaded anyway.
     */
    need = qcow2_bitmap_table_entries(g->disk_size, e->granularity_bits, cs);
    if (!(e->flags & QCOW2_BME_FLAG_IN_USE) && e->table_size < need) {
        error_setg(errp, "Bitmap '%s' table has %" PRIu32 " entries, the "
                   "disk needs %" PRIu64, e->name, e->table_size, need);
        return false;
    }
    return true;
}

/* Decode the entry at @p (@avail bytes left); *len gets its padded size. */
static Qcow2BitmapEntry *decode_entry(const uint8_t *p, uint64_t avail,
                                      uint32_t index, uint64_t *len,
                                      GError **errp)
{
    uint32_t extra;
    uint16_t name_size;
    Qcow2BitmapEntry *e;

    if (avail < QCOW2_BME_ENTRY_FIXED) {
        error_setg(errp, "Bitmap directory is broken: entry %" PRIu32
                   " is truncated (%" PRIu64 " bytes left)", index, avail);
        return NULL;
    }
    name_size = ldw_be(p + 18);
    extra = ldl_be(p + 20);
    if (extra) {
        error_setg(errp, "Bitmap directory entry %" PRIu32 " has %" PRIu32
                   " bytes of extra data, which is not supported", index,
                   extra);
        return NULL;
    }
    *len = qcow2_bitmap_entry_size(name_size);
    if (*len > avail) {
        error_setg(errp, "Bitmap directory is broken: entry %" PRIu32
                   " (%" PRIu64 " bytes) crosses the end of the directory",
                   index, *len);
        return NULL;
    }
    if (name_size == 0 || name_size > QCOW2_BME_MAX_NAME_SIZE) {
        error_setg(errp, "Bitmap directory entry %" PRIu32 " has a name of "
                   "%u bytes (must be 1-%d)", index, name_size,
                   QCOW2_BME_MAX_NAME_SIZE);
        return NULL;
    }
    if (memchr(p + QCOW2_BME_ENTRY_FIXED, 0, name_size)) {
        error_setg(errp, "Bitmap directory entry %" PRIu32 " has a NUL "
                   "byte in its name", index);
        return NULL;
    }
    e = g_new0(Qcow2BitmapEntry, 1);
    e->table_offset = ldq_be(p);
    e->table_size = ldl_be(p + 8);
    e->flags = ldl_be(p + 12);
    e->type = p[16];
    e->granularity_bits = p[17];
    e->name = g_strndup((const char *)p + QCOW2_BME_ENTRY_FIXED, name_size);
    return e;
}

typedef struct {
    uint64_t start, end;
    const char *what;      /* borrowed */
} Extent;

static gint extent_cmp(gconstpointer a, gconstpointer b)
{
    const Extent *x = a, *y = b;

    return x->start < y->start ? -1 : x->start > y->start;
}

/* The header cluster, the directory and every table must be disjoint. */
static bool check_overlaps(GPtrArray *entries, const Qcow2BitmapExt *ext,
                           const Qcow2BitmapGeometry *g, GError **errp)
{
    g_autoptr(GArray) ex = g_array_sized_new(FALSE, FALSE, sizeof(Extent),
                                             entries->len + 2);
    uint64_t cs = g->cluster_size;
    Extent hdr = { 0, cs, "the image header" };
    Extent dir = { ext->dir_offset,
                   ext->dir_offset + qemu_align_up(ext->dir_size, cs),
                   "the bitmap directory" };

    g_array_append_val(ex, hdr);
    g_array_append_val(ex, dir);
    for (guint i = 0; i < entries->len; i++) {
        const Qcow2BitmapEntry *e = g_ptr_array_index(entries, i);
        Extent t = { e->table_offset,
                     e->table_offset +
                         qemu_align_up((uint64_t)e->table_size * 8, cs),
                     e->name };
        g_array_append_val(ex, t);
    }
    g_array_sort(ex, extent_cmp);
    for (guint i = 1; i < ex->len; i++) {
        const Extent *a = &g_array_index(ex, Extent, i - 1);
        const Extent *b = &g_array_index(ex, Extent, i);
        if (b->start < a->end) {
            g_autofree char *wa = a->what == hdr.what || a->what == dir.what
                ? g_strdup(a->what)
                : g_strdup_printf("the table of bitmap '%s'", a->what);
            g_autofree char *wb = b->what == hdr.what || b->what == dir.what
                ? g_strdup(b->what)
                : g_strdup_printf("the table of bitmap '%s'", b->what);
            error_setg(errp, "Bitmap directory is broken: %s overlaps %s "
                       "at 0x%" PRIx64, wb, wa, b->start);
            return false;
        }
    }
    return true;
}

/* How many entries a directory really holds (for the message). */
static uint32_t count_more(const uint8_t *buf, uint64_t pos, uint64_t size,
                           uint32_t n)
{
    while (size - pos >= QCOW2_BME_ENTRY_FIXED && n < UINT32_MAX) {
        uint64_t len = qcow2_bitmap_entry_size(ldw_be(buf + pos + 18)) +
                       qemu_align_up(ldl_be(buf + pos + 20), 8);
        if (len > size - pos) {
            break;
        }
        pos += len;
        n++;
    }
    return n + (pos < size);
}

GPtrArray *qcow2_bitmap_dir_parse(const uint8_t *buf,
                                  const Qcow2BitmapExt *ext,
                                  const Qcow2BitmapGeometry *g,
                                  GError **errp)
{
    g_autoptr(GPtrArray) entries =
        g_ptr_array_new_with_free_func((GDestroyNotify)
                                       qcow2_bitmap_entry_free);
    g_autoptr(GHashTable) names = g_hash_table_new(g_str_hash, g_str_equal);
    uint64_t pos = 0;

    for (uint32_t i = 0; i < ext->nb_bitmaps; i++) {
        uint64_t len;
        Qcow2BitmapEntry *e;

        if (pos == ext->dir_size) {
            error_setg(errp, "Bitmap directory is broken: the header "
                       "extension says %" PRIu32 " bitmaps, the directory "
                       "holds only %" PRIu32, ext->nb_bitmaps, i);
            return NULL;
        }
        e = decode_entry(buf + pos, ext->dir_size - pos, i, &len, errp);
        if (!e) {
            return NULL;
        }
        g_ptr_array_add(entries, e);
        if (!check_entry(e, g, errp)) {
            return NULL;
        }
        if (!g_hash_table_add(names, e->name)) {
            error_setg(errp, "Bitmap directory has two bitmaps named '%s'",
                       e->name);
            return NULL;
        }
        pos += len;
    }
    if (pos != ext->dir_size) {
        error_setg(errp, "Bitmap directory is broken: the header extension "
                   "says %" PRIu32 " bitmaps in %" PRIu64 " bytes, but they "
                   "take %" PRIu64 " bytes and the directory holds %" PRIu32
                   " or more", ext->nb_bitmaps, ext->dir_size, pos,
                   count_more(buf, pos, ext->dir_size, ext->nb_bitmaps));
        return NULL;
    }
    if (!check_overlaps(entries, ext, g, errp)) {
        return NULL;
    }
    return g_steal_pointer(&entries);
}

uint8_t *qcow2_bitmap_dir_serialize(GPtrArray *entries, uint64_t *size)
{
    uint64_t total = 0, pos = 0;
    uint8_t *buf;

    for (guint i = 0; i < entries->len; i++) {
        const Qcow2BitmapEntry *e = g_ptr_array_index(entries, i);
        total += qcow2_bitmap_entry_size(strlen(e->name));
    }
    buf = g_malloc0(MAX(total, 1));
    for (guint i = 0; i < entries->len; i++) {
        const Qcow2BitmapEntry *e = g_ptr_array_index(entries, i);
        size_t nlen = strlen(e->name);

        stq_be(buf + pos, e->table_offset);
        stl_be(buf + pos + 8, e->table_size);
        stl_be(buf + pos + 12, e->flags);
        buf[pos + 16] = e->type;
        buf[pos + 17] = e->granularity_bits;
        stw_be(buf + pos + 18, (uint16_t)nlen);
        stl_be(buf + pos + 20, 0);
        memcpy(buf + pos + QCOW2_BME_ENTRY_FIXED, e->name, nlen);
        pos += qcow2_bitmap_entry_size(nlen);
    }
    *size = total;
    return buf;
}

/* ---- Table entries ---- */

bool qcow2_bitmap_table_entry_check(uint64_t entry, uint64_t i,
                                    const char *name,
                                    const Qcow2BitmapGeometry *g,
                                    GError **errp)
{
    uint64_t off = entry & QCOW2_BME_TABLE_OFFSET_MASK;

    if (entry & QCOW2_BME_TABLE_RESERVED_MASK) {
        error_setg(errp, "Bitmap '%s' table entry %" PRIu64 " has reserved "
                   "bits set (0x%016" PRIx64 ")", name, i, entry);
        return false;
    }
    if (!off) {
        return true;
    }
    if (entry & QCOW2_BME_TABLE_ALL_ONES) {
        error_setg(errp, "Bitmap '%s' table entry %" PRIu64 " has both an "
                   "offset and the all-ones flag", name, i);
        return false;
    }
    if (off % g->cluster_size) {
        error_setg(errp, "Bitmap '%s' table entry %" PRIu64 " has a "
                   "misaligned offset 0x%" PRIx64, name, i, off);
        return false;
    }
    if (off < g->cluster_size || off > g->file_size ||
        g->cluster_size > g->file_size - off) {
        error_setg(errp, "Bitmap '%s' table entry %" PRIu64 " points to "
                   "0x%" PRIx64 ", outside the image file", name, i, off);
        return false;
    }
    return true;
}
