/*
 * The qcow2 checkpoint table codec (block/qcow2/qcow2-checkpoint-format.c):
 * the byte layout of docs/interop/qcow2-checkpoints.rst, round trips,
 * the room in the header cluster, and crafted bad tables that must be
 * refused with an error naming the problem.
 */
#include "block/checkpoint.h"
#include "block/qcow2/qcow2-checkpoint-format.h"
#include "qapi/error.h"
#include "util/bswap.h"

#include <string.h>
#include <zlib.h>

static void add(CheckpointChain *chain, const char *name, const char *bitmap,
                uint64_t gran, int64_t sec, uint32_t nsec)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(CkptPlan) plan = ckpt_plan_create(chain, name, bitmap, gran,
                                                sec, nsec, &err);

    g_assert_no_error(err);
    g_assert_true(ckpt_chain_apply(chain, plan, &err));
}

static uint8_t *encode(const CheckpointChain *chain, size_t *len)
{
    g_autoptr(GError) err = NULL;
    uint8_t *buf = NULL;

    g_assert_true(qcow2_ckpt_table_encode(chain, 0, 0, &buf, len, &err));
    g_assert_no_error(err);
    return buf;
}

/* CRC-32 computed here independently of the codec. */
static uint32_t crc_of(const uint8_t *buf, size_t len)
{
    g_autofree uint8_t *copy = g_memdup2(buf, len);

    memset(copy + 12, 0, 4);
    return (uint32_t)crc32(crc32(0, Z_NULL, 0), copy, len);
}

static void fix_crc(uint8_t *buf, size_t len)
{
    stl_be(buf + 12, crc_of(buf, len));
}

static void test_golden_bytes(void)
{
    g_autoptr(CheckpointChain) chain = ckpt_chain_new();
    g_autofree uint8_t *buf = NULL;
    size_t len;
    static const uint8_t expect[80] = {
        /* header: version 1, reserved, 2 entries, 80 bytes, crc */
        0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02,
        0x00, 0x00, 0x00, 0x50, 0x00, 0x00, 0x00, 0x00,
        /* "a": no parent, name 1, bitmap same, 1.5 s, 64 KiB */
        0xff, 0xff, 0xff, 0xff, 0x00, 0x01, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01,
        0x1d, 0xcd, 0x65, 0x00, 0x10, 0x00, 0x00, 0x00,
        'a', 0, 0, 0, 0, 0, 0, 0,
        /* "b": parent 0, name 1, bitmap "bm-b", 2 s, 512, recording */
        0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x04,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02,
        0x00, 0x00, 0x00, 0x00, 0x09, 0x01, 0x00, 0x00,
        'b', 'b', 'm', '-', 'b', 0, 0, 0,
    };
    uint8_t want[80];

    add(chain, "a", NULL, 65536, 1, 500000000);
    add(chain, "b", "bm-b", 512, 2, 0);
    buf = encode(chain, &len);
    g_assert_cmpuint(len, ==, sizeof(expect));
    g_assert_cmpuint(qcow2_ckpt_table_size(chain), ==, 80);
    memcpy(want, expect, sizeof(want));
    fix_crc(want, sizeof(want));
    g_assert_cmpmem(buf, len, want, sizeof(want));
    g_assert_cmphex(qcow2_ckpt_table_crc(buf, len), ==, ldl_be(want + 12));
    /* The same value Python's zlib.crc32() gives (docs example). */
    g_assert_cmphex(ldl_be(buf + 12), ==, 0x4a1a2d13);
}

static void test_empty(void)
{
    g_autoptr(CheckpointChain) chain = ckpt_chain_new();
    g_autoptr(CheckpointChain) back = NULL;
    g_autofree uint8_t *buf = NULL;
    size_t len;

    buf = encode(chain, &len);
    g_assert_cmpuint(len, ==, QCOW2_CKPT_HEADER_SIZE);
    back = qcow2_ckpt_table_decode(buf, len, NULL);
    g_assert_nonnull(back);
    g_assert_cmpuint(ckpt_chain_length(back), ==, 0);
}

static void assert_round_trip(const CheckpointChain *chain)
{
    g_autofree uint8_t *buf = NULL, *again = NULL;
    g_autoptr(CheckpointChain) back = NULL;
    g_autoptr(GError) err = NULL;
    size_t len, len2;

    buf = encode(chain, &len);
    g_assert_cmpuint(len % 8, ==, 0);
    back = qcow2_ckpt_table_decode(buf, len, &err);
    g_assert_no_error(err);
    g_assert_true(ckpt_chain_equal(chain, back));
    g_assert_true(ckpt_chain_check_invariants(back, NULL));
    again = encode(back, &len2);
    g_assert_cmpmem(buf, len, again, len2);
}

static void test_round_trip_edges(void)
{
    g_autoptr(CheckpointChain) chain = ckpt_chain_new();
    g_autofree char *max = g_strnfill(1023, 'n');
    g_autofree char *max_bm = g_strnfill(1023, 'b');
    CkptBitmapState bm[] = {
        { .name = "b\xc3\xa4r", .granularity = 512 },
    };

    add(chain, "b\xc3\xa4r", NULL, 512, -5, 999999999);
    add(chain, max, max_bm, (uint64_t)1 << 31, INT64_MAX, 0);
    add(chain, "x y\tz", "bm", 4096, INT64_MIN, 1);
    add(chain, "same-as-other", "b\xc3\xa4rx", 65536, 0, 0);
    /* Damage codes are stored. */
    ckpt_chain_validate_bitmaps(chain, bm, G_N_ELEMENTS(bm));
    g_assert_cmpint(ckpt_chain_nth(chain, 1)->damage, ==,
                    CKPT_DAMAGE_MISSING);
    assert_round_trip(chain);
}

static void test_round_trip_random(void)
{
    GRand *r = g_rand_new_with_seed(42);

    for (int iter = 0; iter < 300; iter++) {
        g_autoptr(CheckpointChain) chain = ckpt_chain_new();
        int n = g_rand_int_range(r, 0, 40);

        for (int i = 0; i < n; i++) {
            g_autofree char *fill = g_strnfill(g_rand_int_range(r, 1, 60),
                                               'a' + i % 26);
            g_autofree char *name = g_strdup_printf("%d-%s", i, fill);
            g_autofree char *bitmap = NULL;

            if (g_rand_boolean(r)) {
                bitmap = g_strdup_printf("bm%d", i);
            }
            add(chain, name, bitmap,
                (uint64_t)1 << g_rand_int_range(r, 9, 32),
                (int64_t)g_rand_int(r) - G_MAXINT32,
                g_rand_int_range(r, 0, 1000000000));
        }
        assert_round_trip(chain);
    }
    g_rand_free(r);
}

/* Entries may be stored in any order; the parent links decide. */
static void test_any_order(void)
{
    g_autoptr(CheckpointChain) chain = ckpt_chain_new();
    g_autoptr(CheckpointChain) back = NULL;
    g_autoptr(GError) err = NULL;
    g_autofree uint8_t *buf = NULL;
    uint8_t *swapped;
    size_t len;

    add(chain, "a", NULL, 65536, 1, 0);   /* each entry is 32 bytes */
    add(chain, "b", NULL, 65536, 2, 0);
    add(chain, "c", NULL, 65536, 3, 0);
    buf = encode(chain, &len);
    /* Store c, a, b: c's parent is b (2), b's parent is a (1). */
    swapped = g_memdup2(buf, len);
    memcpy(swapped + 16, buf + 16 + 64, 32);
    memcpy(swapped + 48, buf + 16, 32);
    memcpy(swapped + 80, buf + 48, 32);
    stl_be(swapped + 16, 2);
    stl_be(swapped + 80, 1);
    fix_crc(swapped, len);
    back = qcow2_ckpt_table_decode(swapped, len, &err);
    g_assert_no_error(err);
    g_assert_true(ckpt_chain_equal(chain, back));
    g_free(swapped);
}

/* ---- Room in the header cluster ---- */

static void test_capacity(void)
{
    /* 64 KiB image as QEMU 7.2 writes it: 544 bytes of other header. */
    g_assert_cmpuint(qcow2_ckpt_table_capacity(512, 152, 8, 0), ==, 10);
    g_assert_cmpuint(qcow2_ckpt_table_capacity(4096, 152, 8, 0), ==, 122);
    g_assert_cmpuint(qcow2_ckpt_table_capacity(2097152, 544, 8, 0), ==,
                     65518);
    g_assert_cmpuint(qcow2_ckpt_table_room(65536, 544), ==, 64984);
    g_assert_cmpuint(qcow2_ckpt_table_capacity(65536, 544, 1, 0), ==,
                     (64984 - 16) / 32);
    g_assert_cmpuint(qcow2_ckpt_table_capacity(65536, 544, 1023, 0), ==, 61);
    g_assert_cmpuint(qcow2_ckpt_table_capacity(65536, 544, 1023, 1023), ==,
                     31);
    /* The room is a multiple of 8 and leaves the 8-byte extension header. */
    g_assert_cmpuint(qcow2_ckpt_table_room(4096, 545), ==, 3536);
    g_assert_cmpuint(qcow2_ckpt_table_room(512, 504), ==, 0);
    g_assert_cmpuint(qcow2_ckpt_table_room(512, 600), ==, 0);
    g_assert_cmpuint(qcow2_ckpt_table_capacity(512, 480, 1, 0), ==, 0);
    g_assert_cmpuint(qcow2_ckpt_table_capacity(512, 456, 1, 0), ==, 1);
    g_assert_cmpuint(qcow2_ckpt_table_room(0, 0), ==,
                     QCOW2_CKPT_TABLE_MAX_SIZE);
    g_assert_cmpuint(qcow2_ckpt_entry_size(1, 0), ==, 32);
    g_assert_cmpuint(qcow2_ckpt_entry_size(8, 0), ==, 32);
    g_assert_cmpuint(qcow2_ckpt_entry_size(9, 0), ==, 40);
    g_assert_cmpuint(qcow2_ckpt_entry_size(1023, 1023), ==, 2072);
}

/*
 * QEMU 7.2's header layout, checked against qemu-io: with exactly the
 * room computed from these numbers it rewrites the header; 8 bytes more
 * and it refuses to open the image read-write.
 */
static void test_other_bytes(void)
{
    Qcow2CkptHeaderUse use = { .cluster_size = 4096, .header_length = 112 };

    /* Header, bitmaps extension, end marker; no feature table at 4 KiB. */
    g_assert_cmpuint(qcow2_ckpt_other_bytes(&use), ==, 152);
    use.cluster_size = 512;
    use.header_length = 104;    /* rewritten as 112 */
    g_assert_cmpuint(qcow2_ckpt_other_bytes(&use), ==, 152);
    use.cluster_size = 8192;
    g_assert_cmpuint(qcow2_ckpt_other_bytes(&use), ==, 544);
    use.cluster_size = 65536;
    g_assert_cmpuint(qcow2_ckpt_other_bytes(&use), ==, 544);
    use.header_length = 120;
    use.backing_fmt_len = 5;    /* "qcow2": 8 + 8 */
    use.backing_file_len = 21;
    use.data_file_len = 9;      /* 8 + 16 */
    use.crypto = true;          /* 8 + 16 */
    use.unknown_ext_bytes = 40;
    g_assert_cmpuint(qcow2_ckpt_other_bytes(&use), ==,
                     120 + 16 + 24 + 24 + 392 + 32 + 40 + 8 + 21);
}

static void test_table_full(void)
{
    g_autoptr(CheckpointChain) chain = ckpt_chain_new();
    g_autoptr(GError) err = NULL;
    g_autofree uint8_t *buf = NULL;
    Qcow2CkptHeaderUse use = { .cluster_size = 4096, .header_length = 112 };
    uint64_t other = qcow2_ckpt_other_bytes(&use);
    size_t cap = qcow2_ckpt_table_capacity(4096, other, 8, 0);
    size_t len;

    g_assert_cmpuint(cap, ==, 122);
    for (size_t i = 0; i < cap; i++) {
        g_autofree char *name = g_strdup_printf("ckpt%04zu", i);

        add(chain, name, NULL, 65536, i, 0);
    }
    g_assert_true(qcow2_ckpt_table_encode(chain, 4096, other, &buf, &len,
                                          &err));
    g_assert_cmpuint(other + 8 + len, <=, 4096);
    g_clear_pointer(&buf, g_free);

    add(chain, "ckpt0122", NULL, 65536, 122, 0);
    g_assert_false(qcow2_ckpt_table_encode(chain, 4096, other, &buf, &len,
                                           &err));
    g_assert_null(buf);
    g_assert_cmpstr(err->message, ==, "checkpoint table full: 122 "
                    "checkpoints with these names fit in the header area "
                    "of a 4096-byte cluster image, 123 requested\n"
                    "Remove old checkpoints or use shorter names; images "
                    "with larger clusters hold more");
    g_clear_error(&err);
    /* A header with no room at all. */
    g_assert_false(qcow2_ckpt_table_encode(chain, 512, 504, &buf, &len,
                                           &err));
    g_assert_true(g_str_has_prefix(err->message, "checkpoint table full: 0 "
                                   "checkpoints"));
}

/* ---- Crafted bad tables ---- */

/* A valid table of @n one-letter checkpoints a, b, c... (32 bytes each). */
static uint8_t *valid_table(int n, size_t *len)
{
    g_autoptr(CheckpointChain) chain = ckpt_chain_new();

    for (int i = 0; i < n; i++) {
        char name[2] = { (char)('a' + i), 0 };

        add(chain, name, NULL, 65536, i, 0);
    }
    return encode(chain, len);
}

static void assert_refused(const uint8_t *buf, size_t len,
                           const char *expect)
{
    g_autoptr(GError) err = NULL;
    CheckpointChain *chain = qcow2_ckpt_table_decode(buf, len, &err);

    g_assert_null(chain);
    g_assert_nonnull(err);
    if (!strstr(err->message, expect)) {
        g_printerr("got: %s\nwant: %s\n", err->message, expect);
        g_assert_not_reached();
    }
}

/* Entry @i of a valid_table(). */
static uint8_t *ent(uint8_t *buf, int i)
{
    return buf + QCOW2_CKPT_HEADER_SIZE + 32 * i;
}

static void test_bad_header(void)
{
    size_t len;
    g_autofree uint8_t *buf = valid_table(2, &len);
    g_autofree uint8_t *big = g_malloc0(QCOW2_CKPT_TABLE_MAX_SIZE + 8);
    uint8_t b[80];

    g_assert_cmpuint(len, ==, 80);
    assert_refused(buf, 0, "checkpoint table too short: 0 bytes, at least "
                   "16 needed");
    assert_refused(buf, 15, "too short: 15 bytes");
    assert_refused(big, QCOW2_CKPT_TABLE_MAX_SIZE + 8,
                   "checkpoint table too large: 2097160 bytes, the limit "
                   "is 2097152");

    memcpy(b, buf, len);
    b[40] ^= 1;
    assert_refused(b, len, "checkpoint table checksum mismatch: stored 0x");

    memcpy(b, buf, len);
    stw_be(b, 2);
    assert_refused(b, len, "unsupported checkpoint table version 2");
    memcpy(b, buf, len);
    stw_be(b + 2, 0x8000);
    fix_crc(b, len);
    assert_refused(b, len, "reserved field is 0x8000, not zero");

    /* The size field must match the extension length. */
    assert_refused(buf, 72, "checkpoint table size 80 does not match its "
                   "extension length 72");
    memcpy(b, buf, len);
    stl_be(b + 8, 88);
    fix_crc(b, len);
    assert_refused(b, len, "checkpoint table size 88 does not match");
}

static void test_bad_counts(void)
{
    size_t len;
    g_autofree uint8_t *buf = valid_table(3, &len);
    uint8_t b[112];

    g_assert_cmpuint(len, ==, sizeof(b));
    /* Far too many: refused before anything is allocated. */
    memcpy(b, buf, len);
    stl_be(b + 4, 0xffffffff);
    fix_crc(b, len);
    assert_refused(b, len, "checkpoint table claims 4294967295 entries, "
                   "but 112 bytes hold at most 4 (limit 65535)");
    stl_be(b + 4, 5);
    fix_crc(b, len);
    assert_refused(b, len, "claims 5 entries, but 112 bytes hold at most 4");
    /* One more than stored: the last one is truncated. */
    stl_be(b + 4, 4);
    fix_crc(b, len);
    assert_refused(b, len, "checkpoint table entry 3 at offset 112 is "
                   "truncated");
    /* Fewer than stored: bytes left over. */
    stl_be(b + 4, 2);
    fix_crc(b, len);
    assert_refused(b, len, "checkpoint table has 32 bytes after its 2 "
                   "entries");
    stl_be(b + 4, 0);
    fix_crc(b, len);
    assert_refused(b, len, "checkpoint table has 96 bytes after its 0 "
                   "entries");
}

/*
 * A table with one entry whose names are @name_len and @bitmap_len bytes
 * of 'x' and 'y' (the bitmap name differs from the checkpoint name).
 */
static uint8_t *one_entry(size_t name_len, size_t bitmap_len, size_t *len)
{
    size_t size = QCOW2_CKPT_HEADER_SIZE +
                  qcow2_ckpt_entry_size(name_len, bitmap_len);
    uint8_t *t = g_malloc0(size);
    uint8_t *e = t + QCOW2_CKPT_HEADER_SIZE;

    stw_be(t + QCOW2_CKPT_HDR_VERSION, 1);
    stl_be(t + QCOW2_CKPT_HDR_NB_ENTRIES, 1);
    stl_be(t + QCOW2_CKPT_HDR_TABLE_SIZE, size);
    stl_be(e + QCOW2_CKPT_ENT_PARENT, QCOW2_CKPT_PARENT_NONE);
    stw_be(e + QCOW2_CKPT_ENT_NAME_SIZE, name_len);
    stw_be(e + QCOW2_CKPT_ENT_BITMAP_SIZE, bitmap_len);
    e[QCOW2_CKPT_ENT_GRAN_BITS] = 16;
    e[QCOW2_CKPT_ENT_FLAGS] = QCOW2_CKPT_FLAG_RECORDING;
    memset(e + QCOW2_CKPT_ENTRY_FIXED_SIZE, 'x', name_len);
    memset(e + QCOW2_CKPT_ENTRY_FIXED_SIZE + name_len, 'y', bitmap_len);
    fix_crc(t, size);
    *len = size;
    return t;
}

static void test_bad_lengths(void)
{
    size_t len;
    g_autofree uint8_t *buf = valid_table(2, &len);
    uint8_t b[80];
    size_t hlen;

    memcpy(b, buf, len);
    stw_be(ent(b, 1) + 4, 0);
    fix_crc(b, len);
    assert_refused(b, len, "checkpoint table entry 1: checkpoint name is "
                   "empty");

    /* A name running past the end of the table. */
    memcpy(b, buf, len);
    stw_be(ent(b, 1) + 4, 9);
    fix_crc(b, len);
    assert_refused(b, len, "checkpoint table entry 1 at offset 48 is "
                   "truncated: it needs 40 bytes, 32 are left");
    memcpy(b, buf, len);
    stw_be(ent(b, 0) + 6, 0xffff);
    fix_crc(b, len);
    assert_refused(b, len, "entry 0 at offset 16 is truncated");

    /* Long names, with the bytes really there. */
    {
        g_autofree uint8_t *t = one_entry(1024, 0, &hlen);

        assert_refused(t, hlen, "checkpoint table entry 0: checkpoint name "
                       "is 1024 bytes long, the limit is 1023");
    }
    {
        g_autofree uint8_t *t = one_entry(1, 1024, &hlen);

        assert_refused(t, hlen, "checkpoint table entry 0: bitmap name is "
                       "1024 bytes long, the limit is 1023");
    }
    {
        g_autofree uint8_t *t = one_entry(1023, 1023, &hlen);
        g_autoptr(CheckpointChain) chain = qcow2_ckpt_table_decode(t, hlen,
                                                                   NULL);

        g_assert_nonnull(chain);
        g_assert_cmpuint(strlen(ckpt_chain_nth(chain, 0)->bitmap), ==, 1023);
    }
    {
        g_autofree uint8_t *t = one_entry(1, 5, &hlen);

        t[16 + 24 + 3] = 0;
        fix_crc(t, hlen);
        assert_refused(t, hlen, "checkpoint table entry 0: bitmap name "
                       "contains a NUL byte");
    }
}

static void test_bad_fields(void)
{
    size_t len;
    g_autofree uint8_t *buf = valid_table(2, &len);
    static const struct {
        int entry, offset, value;
        const char *msg;
    } cases[] = {
        { 0, 20, 8, "entry 0: granularity bits 8 out of range 9..31" },
        { 1, 20, 32, "entry 1: granularity bits 32 out of range 9..31" },
        { 0, 21, 0x82, "entry 0: unknown flags 0x82" },
        { 1, 22, 7, "entry 1: unknown damage code 7" },
        { 0, 23, 1, "entry 0: reserved byte is not zero" },
        { 0, 25, 'q', "entry 0: padding is not zero" },
        { 0, 24, 0, "entry 0: checkpoint name contains a NUL byte" },
        { 0, 21, QCOW2_CKPT_FLAG_RECORDING, "entry 0: the recording flag is "
          "set but the checkpoint is not the newest" },
        { 1, 21, 0, "entry 1: the recording flag is clear but the "
          "checkpoint is the newest" },
    };

    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        uint8_t b[80];

        memcpy(b, buf, len);
        ent(b, cases[i].entry)[cases[i].offset] = cases[i].value;
        fix_crc(b, len);
        assert_refused(b, len, cases[i].msg);
    }
    {
        uint8_t b[80];

        memcpy(b, buf, len);
        stl_be(ent(b, 1) + 16, 1000000000);
        fix_crc(b, len);
        assert_refused(b, len, "entry 1: creation time nanoseconds "
                       "1000000000 out of range");
    }
}

static void test_bad_names(void)
{
    size_t len;
    g_autofree uint8_t *buf = valid_table(3, &len);
    uint8_t *b = g_malloc(len);

    /* Duplicate names. */
    memcpy(b, buf, len);
    ent(b, 2)[24] = 'a';
    fix_crc(b, len);
    assert_refused(b, len, "checkpoint table entries 0 and 2 have the same "
                   "name 'a'");
    /* A control character is shown escaped. */
    ent(b, 0)[24] = '\n';
    ent(b, 2)[24] = '\n';
    fix_crc(b, len);
    assert_refused(b, len, "have the same name '\\n'");
    g_free(b);

    /* An explicit bitmap name equal to another's implicit one. */
    {
        g_autoptr(CheckpointChain) chain = ckpt_chain_new();
        g_autofree uint8_t *t = NULL;

        add(chain, "a", NULL, 65536, 1, 0);
        add(chain, "b", "bm", 65536, 2, 0);   /* 24 + 1 + 2 -> 32 bytes */
        t = encode(chain, &len);
        memcpy(ent(t, 1) + 25, "a\0", 2);
        stw_be(ent(t, 1) + 6, 1);
        fix_crc(t, len);
        assert_refused(t, len, "checkpoint table entries 0 and 1 use the "
                       "same bitmap 'a'");
    }
}

static void test_bad_links(void)
{
    size_t len;
    g_autofree uint8_t *buf = valid_table(3, &len);
    uint8_t *b = g_malloc(len);
    static const struct {
        uint32_t p0, p1, p2;
        const char *msg;
    } cases[] = {
        /* A dangling parent. */
        { -1, 0, 7, "entry 2: parent index 7 out of range (3 entries)" },
        { -1, 1, 1, "entry 1 is its own parent" },
        /* Two roots: two chains, two newest checkpoints. */
        { -1, -1, 1, "entries 0 and 1 both have no parent" },
        /* A fork: the chain must be linear. */
        { -1, 0, 0, "entries 1 and 2 both have parent 0" },
        /* Cycles, with or without a root. */
        { 2, 0, 1, "no oldest checkpoint: the parent links form a cycle" },
        { -1, 2, 1, "2 of 3 entries are not linked to the oldest" },
    };

    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        memcpy(b, buf, len);
        stl_be(ent(b, 0), cases[i].p0);
        stl_be(ent(b, 1), cases[i].p1);
        stl_be(ent(b, 2), cases[i].p2);
        fix_crc(b, len);
        assert_refused(b, len, cases[i].msg);
    }
    g_free(b);
}

/*
 * Random corruption with a recomputed checksum: the decoder either
 * refuses or returns a chain that is sound and stores the same way.
 */
static void test_mutations(void)
{
    GRand *r = g_rand_new_with_seed(7);
    size_t len;
    g_autofree uint8_t *buf = valid_table(6, &len);
    uint8_t *b = g_malloc(len);
    guint accepted = 0;

    for (int iter = 0; iter < 50000; iter++) {
        g_autoptr(CheckpointChain) chain = NULL;
        size_t cut = len;

        memcpy(b, buf, len);
        for (int k = g_rand_int_range(r, 1, 4); k > 0; k--) {
            size_t at = g_rand_int_range(r, 4, len);

            b[at] = g_rand_boolean(r) ? (uint8_t)g_rand_int(r) :
                    b[at] ^ (1 << g_rand_int_range(r, 0, 8));
        }
        if (g_rand_int_range(r, 0, 8) == 0) {
            cut = g_rand_int_range(r, 16, len);
            stl_be(b + 8, cut);
        }
        fix_crc(b, cut);
        chain = qcow2_ckpt_table_decode(b, cut, NULL);
        if (chain) {
            g_autoptr(CheckpointChain) again = NULL;
            g_autofree uint8_t *enc = NULL;
            size_t elen;

            accepted++;
            g_assert_true(ckpt_chain_check_invariants(chain, NULL));
            enc = encode(chain, &elen);
            again = qcow2_ckpt_table_decode(enc, elen, NULL);
            g_assert_true(ckpt_chain_equal(chain, again));
        }
    }
    g_test_message("%u of 50000 mutated tables were valid", accepted);
    g_assert_cmpuint(accepted, >, 0);
    g_free(b);
    g_rand_free(r);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/qcow2-ckpt-table/golden-bytes", test_golden_bytes);
    g_test_add_func("/qcow2-ckpt-table/empty", test_empty);
    g_test_add_func("/qcow2-ckpt-table/round-trip-edges",
                    test_round_trip_edges);
    g_test_add_func("/qcow2-ckpt-table/round-trip-random",
                    test_round_trip_random);
    g_test_add_func("/qcow2-ckpt-table/any-order", test_any_order);
    g_test_add_func("/qcow2-ckpt-table/capacity", test_capacity);
    g_test_add_func("/qcow2-ckpt-table/other-bytes", test_other_bytes);
    g_test_add_func("/qcow2-ckpt-table/table-full", test_table_full);
    g_test_add_func("/qcow2-ckpt-table/bad-header", test_bad_header);
    g_test_add_func("/qcow2-ckpt-table/bad-counts", test_bad_counts);
    g_test_add_func("/qcow2-ckpt-table/bad-lengths", test_bad_lengths);
    g_test_add_func("/qcow2-ckpt-table/bad-fields", test_bad_fields);
    g_test_add_func("/qcow2-ckpt-table/bad-names", test_bad_names);
    g_test_add_func("/qcow2-ckpt-table/bad-links", test_bad_links);
    g_test_add_func("/qcow2-ckpt-table/mutations", test_mutations);
    return g_test_run();
}
