/*
 * Encode and decode the qcow2 checkpoint table (header extension "CKPT",
 * docs/interop/qcow2-checkpoints.rst) from and to byte buffers.  The
 * decoder treats its input as hostile: it checks every size before using
 * it, allocates nothing larger than the input and names the offending
 * entry in each error.
 */
#include "block/qcow2/qcow2-checkpoint-format.h"
#include "qapi/error.h"
#include "util/bswap.h"

#include <inttypes.h>
#include <string.h>
#include <zlib.h>

static size_t pad8(size_t n)
{
    return (n + 7) & ~(size_t)7;
}

size_t qcow2_ckpt_entry_size(size_t name_len, size_t bitmap_len)
{
    return pad8(QCOW2_CKPT_ENTRY_FIXED_SIZE + name_len + bitmap_len);
}

/* Bytes of the bitmap name stored for @c: 0 when it is the same. */
static size_t stored_bitmap_len(const Checkpoint *c)
{
    return strcmp(c->name, c->bitmap) ? strlen(c->bitmap) : 0;
}

static size_t entry_size(const Checkpoint *c)
{
    return qcow2_ckpt_entry_size(strlen(c->name), stored_bitmap_len(c));
}

size_t qcow2_ckpt_table_size(const CheckpointChain *chain)
{
    size_t size = QCOW2_CKPT_HEADER_SIZE;

    for (guint i = 0; i < ckpt_chain_length(chain); i++) {
        size += entry_size(ckpt_chain_nth(chain, i));
    }
    return size;
}

/* An extension with @len data bytes: header, data, padding. */
static uint64_t ext_bytes(uint64_t len)
{
    return QCOW2_CKPT_EXT_HEADER_SIZE + pad8(len);
}

uint64_t qcow2_ckpt_other_bytes(const Qcow2CkptHeaderUse *use)
{
    uint64_t n = MAX(use->header_length, QCOW2_CKPT_QEMU_HEADER_SIZE);

    if (use->backing_fmt_len) {
        n += ext_bytes(use->backing_fmt_len);
    }
    if (use->data_file_len) {
        n += ext_bytes(use->data_file_len);
    }
    if (use->crypto) {
        n += ext_bytes(QCOW2_CKPT_QEMU_CRYPTO_EXT_SIZE);
    }
    if (use->cluster_size >= QCOW2_CKPT_QEMU_FEATURE_TABLE_MIN_CLUSTER) {
        n += ext_bytes(QCOW2_CKPT_QEMU_FEATURE_TABLE_SIZE);
    }
    n += ext_bytes(QCOW2_CKPT_QEMU_BITMAPS_EXT_SIZE);
    n += use->unknown_ext_bytes;
    n += QCOW2_CKPT_EXT_HEADER_SIZE;        /* the end marker */
    return n + use->backing_file_len;
}

size_t qcow2_ckpt_table_room(uint64_t cluster_size, uint64_t other_bytes)
{
    uint64_t room;

    if (cluster_size == 0) {
        return QCOW2_CKPT_TABLE_MAX_SIZE;
    }
    if (other_bytes > cluster_size ||
        cluster_size - other_bytes < QCOW2_CKPT_EXT_HEADER_SIZE) {
        return 0;
    }
    /* The extension's data is padded to 8 bytes in the header area. */
    room = (cluster_size - other_bytes - QCOW2_CKPT_EXT_HEADER_SIZE) &
           ~(uint64_t)7;
    return MIN(room, QCOW2_CKPT_TABLE_MAX_SIZE);
}

size_t qcow2_ckpt_table_capacity(uint64_t cluster_size, uint64_t other_bytes,
                                 size_t name_len, size_t bitmap_len)
{
    size_t room = qcow2_ckpt_table_room(cluster_size, other_bytes);

    if (room < QCOW2_CKPT_HEADER_SIZE) {
        return 0;
    }
    return (room - QCOW2_CKPT_HEADER_SIZE) /
           qcow2_ckpt_entry_size(name_len, bitmap_len);
}

uint32_t qcow2_ckpt_table_crc(const uint8_t *buf, size_t len)
{
    static const uint8_t zero[4];
    uLong crc = crc32(0, Z_NULL, 0);

    g_assert(len >= QCOW2_CKPT_HEADER_SIZE && len <= UINT32_MAX);
    crc = crc32(crc, buf, QCOW2_CKPT_HDR_CRC);
    crc = crc32(crc, zero, sizeof(zero));
    crc = crc32(crc, buf + QCOW2_CKPT_HEADER_SIZE,
                len - QCOW2_CKPT_HEADER_SIZE);
    return (uint32_t)crc;
}

/* How many checkpoints, oldest first, fit in @room bytes. */
static guint count_fitting(const CheckpointChain *chain, size_t room)
{
    size_t used = QCOW2_CKPT_HEADER_SIZE;
    guint n = 0;

    if (room < used) {
        return 0;
    }
    while (n < ckpt_chain_length(chain)) {
        size_t es = entry_size(ckpt_chain_nth(chain, n));

        if (es > room - used) {
            break;
        }
        used += es;
        n++;
    }
    return n;
}

static void encode_entry(uint8_t *p, const Checkpoint *c, guint index,
                         bool newest)
{
    size_t name_len = strlen(c->name);
    size_t bitmap_len = stored_bitmap_len(c);

    stl_be(p + QCOW2_CKPT_ENT_PARENT,
           index ? index - 1 : QCOW2_CKPT_PARENT_NONE);
    stw_be(p + QCOW2_CKPT_ENT_NAME_SIZE, name_len);
    stw_be(p + QCOW2_CKPT_ENT_BITMAP_SIZE, bitmap_len);
    stq_be(p + QCOW2_CKPT_ENT_CTIME_SEC, (uint64_t)c->ctime_sec);
    stl_be(p + QCOW2_CKPT_ENT_CTIME_NSEC, c->ctime_nsec);
    p[QCOW2_CKPT_ENT_GRAN_BITS] = (uint8_t)g_bit_nth_lsf(c->granularity, -1);
    p[QCOW2_CKPT_ENT_FLAGS] = newest ? QCOW2_CKPT_FLAG_RECORDING : 0;
    p[QCOW2_CKPT_ENT_DAMAGE] = (uint8_t)c->damage;
    p[QCOW2_CKPT_ENT_RESERVED] = 0;
    memcpy(p + QCOW2_CKPT_ENTRY_FIXED_SIZE, c->name, name_len);
    memcpy(p + QCOW2_CKPT_ENTRY_FIXED_SIZE + name_len, c->bitmap, bitmap_len);
}

bool qcow2_ckpt_table_encode(const CheckpointChain *chain,
                             uint64_t cluster_size, uint64_t other_bytes,
                             uint8_t **buf, size_t *len, GError **errp)
{
    guint n = ckpt_chain_length(chain);
    size_t size = qcow2_ckpt_table_size(chain);
    size_t room = qcow2_ckpt_table_room(cluster_size, other_bytes);
    size_t off = QCOW2_CKPT_HEADER_SIZE;
    uint8_t *out;

    if (size > room) {
        uint64_t shown = cluster_size ? cluster_size :
                         (uint64_t)QCOW2_CKPT_TABLE_MAX_SIZE;

        error_setg(errp, "checkpoint table full: %u checkpoints with these "
                   "names fit in the header area of a %" PRIu64 "-byte "
                   "cluster image, %u requested",
                   count_fitting(chain, room), shown, n);
        error_append_hint(errp, "Remove old checkpoints or use shorter "
                          "names; images with larger clusters hold more");
        return false;
    }

    out = g_malloc0(size);
    stw_be(out + QCOW2_CKPT_HDR_VERSION, QCOW2_CKPT_TABLE_VERSION);
    stl_be(out + QCOW2_CKPT_HDR_NB_ENTRIES, n);
    stl_be(out + QCOW2_CKPT_HDR_TABLE_SIZE, (uint32_t)size);
    for (guint i = 0; i < n; i++) {
        const Checkpoint *c = ckpt_chain_nth(chain, i);

        encode_entry(out + off, c, i, i + 1 == n);
        off += entry_size(c);
    }
    g_assert(off == size);
    stl_be(out + QCOW2_CKPT_HDR_CRC, qcow2_ckpt_table_crc(out, size));
    *buf = out;
    *len = size;
    return true;
}

/* ---- Decoding ---- */

/* One entry as stored, before the links are checked. */
typedef struct RawEntry {
    uint32_t parent;
    uint8_t flags;
    Checkpoint c;           /* parent left NULL */
} RawEntry;

static void raw_entries_free(RawEntry *e, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        g_free(e[i].c.name);
        g_free(e[i].c.bitmap);
    }
    g_free(e);
}

/* A name from the image, printable in a one-line message. */
static char *shown(const char *name)
{
    char high[129];

    /* Escape control characters, keep UTF-8 sequences as they are. */
    for (int i = 0; i < 128; i++) {
        high[i] = (char)(0x80 + i);
    }
    high[128] = 0;
    return g_strescape(name, high);
}

/* Read a name of @len bytes at @p: no NUL, 1..1023 bytes. */
static char *decode_name(const uint8_t *p, size_t len, uint32_t index,
                         const char *what, GError **errp)
{
    if (len == 0) {
        error_setg(errp, "checkpoint table entry %u: %s name is empty",
                   index, what);
        return NULL;
    }
    if (len > CKPT_NAME_MAX) {
        error_setg(errp, "checkpoint table entry %u: %s name is %zu bytes "
                   "long, the limit is %d", index, what, len, CKPT_NAME_MAX);
        return NULL;
    }
    if (memchr(p, 0, len)) {
        error_setg(errp, "checkpoint table entry %u: %s name contains a NUL "
                   "byte", index, what);
        return NULL;
    }
    return g_strndup((const char *)p, len);
}

/* Check the fixed fields of entry @index at @p. */
static bool decode_fixed(const uint8_t *p, uint32_t index, RawEntry *e,
                         GError **errp)
{
    unsigned gbits = p[QCOW2_CKPT_ENT_GRAN_BITS];

    e->parent = ldl_be(p + QCOW2_CKPT_ENT_PARENT);
    e->flags = p[QCOW2_CKPT_ENT_FLAGS];
    e->c.ctime_sec = (int64_t)ldq_be(p + QCOW2_CKPT_ENT_CTIME_SEC);
    e->c.ctime_nsec = ldl_be(p + QCOW2_CKPT_ENT_CTIME_NSEC);
    e->c.damage = p[QCOW2_CKPT_ENT_DAMAGE];

    if (gbits < 9 || gbits > 31) {
        error_setg(errp, "checkpoint table entry %u: granularity bits %u "
                   "out of range 9..31", index, gbits);
        return false;
    }
    e->c.granularity = (uint64_t)1 << gbits;
    if (e->c.ctime_nsec >= 1000000000) {
        error_setg(errp, "checkpoint table entry %u: creation time "
                   "nanoseconds %u out of range", index, e->c.ctime_nsec);
        return false;
    }
    if (e->flags & ~QCOW2_CKPT_FLAGS_KNOWN) {
        error_setg(errp, "checkpoint table entry %u: unknown flags 0x%02x",
                   index, e->flags & ~QCOW2_CKPT_FLAGS_KNOWN);
        return false;
    }
    if (p[QCOW2_CKPT_ENT_DAMAGE] > CKPT_DAMAGE__MAX) {
        error_setg(errp, "checkpoint table entry %u: unknown damage code %u",
                   index, p[QCOW2_CKPT_ENT_DAMAGE]);
        return false;
    }
    if (p[QCOW2_CKPT_ENT_RESERVED]) {
        error_setg(errp, "checkpoint table entry %u: reserved byte is not "
                   "zero", index);
        return false;
    }
    return true;
}

/* Decode entry @index at @buf[*off], which must end by @end. */
static bool decode_entry(const uint8_t *buf, size_t *off, size_t end,
                         uint32_t index, RawEntry *e, GError **errp)
{
    const uint8_t *p = buf + *off;
    size_t name_len, bitmap_len, size, names_end;

    if (end - *off < QCOW2_CKPT_ENTRY_FIXED_SIZE) {
        error_setg(errp, "checkpoint table entry %u at offset %zu is "
                   "truncated", index, *off);
        return false;
    }
    name_len = ldw_be(p + QCOW2_CKPT_ENT_NAME_SIZE);
    bitmap_len = ldw_be(p + QCOW2_CKPT_ENT_BITMAP_SIZE);
    /* Both are below 2^16, so this cannot overflow. */
    size = qcow2_ckpt_entry_size(name_len, bitmap_len);
    if (size > end - *off) {
        error_setg(errp, "checkpoint table entry %u at offset %zu is "
                   "truncated: it needs %zu bytes, %zu are left", index,
                   *off, size, end - *off);
        return false;
    }
    if (!decode_fixed(p, index, e, errp)) {
        return false;
    }
    e->c.name = decode_name(p + QCOW2_CKPT_ENTRY_FIXED_SIZE, name_len, index,
                            "checkpoint", errp);
    if (!e->c.name) {
        return false;
    }
    if (bitmap_len == 0) {
        e->c.bitmap = g_strdup(e->c.name);
    } else {
        e->c.bitmap = decode_name(p + QCOW2_CKPT_ENTRY_FIXED_SIZE + name_len,
                                  bitmap_len, index, "bitmap", errp);
        if (!e->c.bitmap) {
            return false;
        }
    }
    names_end = QCOW2_CKPT_ENTRY_FIXED_SIZE + name_len + bitmap_len;
    for (size_t i = names_end; i < size; i++) {
        if (p[i]) {
            error_setg(errp, "checkpoint table entry %u: padding is not "
                       "zero", index);
            return false;
        }
    }
    *off += size;
    return true;
}

/* The table header: version, sizes, checksum.  Sets *@n. */
static bool decode_header(const uint8_t *buf, size_t len, uint32_t *n,
                          GError **errp)
{
    uint32_t size, crc, want;
    size_t max_entries;

    if (len < QCOW2_CKPT_HEADER_SIZE) {
        error_setg(errp, "checkpoint table too short: %zu bytes, at least "
                   "%d needed", len, QCOW2_CKPT_HEADER_SIZE);
        return false;
    }
    if (len > QCOW2_CKPT_TABLE_MAX_SIZE) {
        error_setg(errp, "checkpoint table too large: %zu bytes, the limit "
                   "is %zu", len, QCOW2_CKPT_TABLE_MAX_SIZE);
        return false;
    }
    if (ldw_be(buf + QCOW2_CKPT_HDR_VERSION) != QCOW2_CKPT_TABLE_VERSION) {
        error_setg(errp, "unsupported checkpoint table version %u",
                   ldw_be(buf + QCOW2_CKPT_HDR_VERSION));
        return false;
    }
    if (ldw_be(buf + QCOW2_CKPT_HDR_RESERVED)) {
        error_setg(errp, "checkpoint table: reserved field is 0x%04x, not "
                   "zero", ldw_be(buf + QCOW2_CKPT_HDR_RESERVED));
        return false;
    }
    size = ldl_be(buf + QCOW2_CKPT_HDR_TABLE_SIZE);
    if (size != len) {
        error_setg(errp, "checkpoint table size %" PRIu32 " does not match "
                   "its extension length %zu", size, len);
        return false;
    }
    crc = ldl_be(buf + QCOW2_CKPT_HDR_CRC);
    want = qcow2_ckpt_table_crc(buf, len);
    if (crc != want) {
        error_setg(errp, "checkpoint table checksum mismatch: stored "
                   "0x%08" PRIx32 ", computed 0x%08" PRIx32, crc, want);
        return false;
    }
    *n = ldl_be(buf + QCOW2_CKPT_HDR_NB_ENTRIES);
    max_entries = (len - QCOW2_CKPT_HEADER_SIZE) /
                  QCOW2_CKPT_ENTRY_FIXED_SIZE;
    if (*n > max_entries || *n > CKPT_MAX_CHECKPOINTS) {
        error_setg(errp, "checkpoint table claims %" PRIu32 " entries, but "
                   "%zu bytes hold at most %zu (limit %d)", *n, len,
                   max_entries, CKPT_MAX_CHECKPOINTS);
        return false;
    }
    return true;
}

/* Names and bitmap names are unique. */
static bool check_unique(const RawEntry *e, uint32_t n, GError **errp)
{
    g_autoptr(GHashTable) names = g_hash_table_new(g_str_hash, g_str_equal);
    g_autoptr(GHashTable) bitmaps = g_hash_table_new(g_str_hash,
                                                     g_str_equal);

    for (uint32_t i = 0; i < n; i++) {
        gpointer prev;

        if (g_hash_table_lookup_extended(names, e[i].c.name, NULL, &prev)) {
            g_autofree char *s = shown(e[i].c.name);

            error_setg(errp, "checkpoint table entries %u and %u have the "
                       "same name '%s'", GPOINTER_TO_UINT(prev), i, s);
            return false;
        }
        g_hash_table_insert(names, e[i].c.name, GUINT_TO_POINTER(i));
        if (g_hash_table_lookup_extended(bitmaps, e[i].c.bitmap, NULL,
                                         &prev)) {
            g_autofree char *s = shown(e[i].c.bitmap);

            error_setg(errp, "checkpoint table entries %u and %u use the "
                       "same bitmap '%s'", GPOINTER_TO_UINT(prev), i, s);
            return false;
        }
        g_hash_table_insert(bitmaps, e[i].c.bitmap, GUINT_TO_POINTER(i));
    }
    return true;
}

/*
 * The parent links must form one linear chain.  Fills @order (n entries)
 * with the entry indexes, oldest first.
 */
static bool link_chain(const RawEntry *e, uint32_t n, uint32_t *order,
                       GError **errp)
{
    g_autofree uint32_t *child = NULL;
    uint32_t root = QCOW2_CKPT_PARENT_NONE;
    uint32_t k = 0;

    if (n == 0) {
        return true;
    }
    child = g_new(uint32_t, n);
    memset(child, 0xff, n * sizeof(*child));
    for (uint32_t i = 0; i < n; i++) {
        uint32_t p = e[i].parent;

        if (p == QCOW2_CKPT_PARENT_NONE) {
            if (root != QCOW2_CKPT_PARENT_NONE) {
                error_setg(errp, "checkpoint table entries %u and %u both "
                           "have no parent: two chains, two newest "
                           "checkpoints", root, i);
                return false;
            }
            root = i;
            continue;
        }
        if (p >= n) {
            error_setg(errp, "checkpoint table entry %u: parent index %u "
                       "out of range (%u entries)", i, p, n);
            return false;
        }
        if (p == i) {
            error_setg(errp, "checkpoint table entry %u is its own parent", i);
            return false;
        }
        if (child[p] != QCOW2_CKPT_PARENT_NONE) {
            error_setg(errp, "checkpoint table entries %u and %u both have "
                       "parent %u: the chain must be linear", child[p], i, p);
            return false;
        }
        child[p] = i;
    }
    if (root == QCOW2_CKPT_PARENT_NONE) {
        error_setg(errp, "checkpoint table has no oldest checkpoint: the "
                   "parent links form a cycle");
        return false;
    }
    for (uint32_t i = root; k < n && i != QCOW2_CKPT_PARENT_NONE;
         i = child[i]) {
        order[k++] = i;     /* each entry has one parent: k stays <= n */
    }
    if (k != n) {
        error_setg(errp, "checkpoint table: %u of %u entries are not linked "
                   "to the oldest checkpoint (the parent links form a "
                   "cycle)", n - k, n);
        return false;
    }
    return true;
}

/* Build the chain in @order, checking the recording flags. */
static CheckpointChain *build_chain(RawEntry *e, uint32_t n,
                                    const uint32_t *order, GError **errp)
{
    g_autoptr(CheckpointChain) chain = ckpt_chain_new();

    for (uint32_t k = 0; k < n; k++) {
        RawEntry *r = &e[order[k]];
        bool newest = k + 1 == n;
        const Checkpoint *head = ckpt_chain_head(chain);

        if (!!(r->flags & QCOW2_CKPT_FLAG_RECORDING) != newest) {
            error_setg(errp, "checkpoint table entry %u: the recording flag "
                       "is %s but the checkpoint is %sthe newest", order[k],
                       newest ? "clear" : "set", newest ? "" : "not ");
            return NULL;
        }
        r->c.parent = head ? head->name : NULL;
        if (!ckpt_chain_append(chain, &r->c, errp)) {
            r->c.parent = NULL;
            g_prefix_error(errp, "checkpoint table entry %u: ", order[k]);
            return NULL;
        }
        r->c.parent = NULL;
    }
    return g_steal_pointer(&chain);
}

CheckpointChain *qcow2_ckpt_table_decode(const uint8_t *buf, size_t len,
                                         GError **errp)
{
    RawEntry *e;
    g_autofree uint32_t *order = NULL;
    CheckpointChain *chain = NULL;
    size_t off = QCOW2_CKPT_HEADER_SIZE;
    uint32_t n, i;

    if (!decode_header(buf, len, &n, errp)) {
        return NULL;
    }
    /* n * 24 <= len <= 2 MiB: bounded by the input. */
    e = g_new0(RawEntry, n);
    for (i = 0; i < n; i++) {
        if (!decode_entry(buf, &off, len, i, &e[i], errp)) {
            goto out;
        }
    }
    if (off != len) {
        error_setg(errp, "checkpoint table has %zu bytes after its %u "
                   "entries", len - off, n);
        goto out;
    }
    order = g_new(uint32_t, n);
    if (check_unique(e, n, errp) && link_chain(e, n, order, errp)) {
        chain = build_chain(e, n, order, errp);
    }
out:
    raw_entries_free(e, n);
    return chain;
}
