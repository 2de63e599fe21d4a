/*
 * Unit tests for util/hbitmap.c.
 *
 * The core is a shadow-model test: random operations go to an HBitmap and
 * to a naive array of bools at once, and every answer is compared.  The
 * model works out which granules a byte range touches by testing each
 * granule for overlap, so it shares no rounding code with the bitmap.
 * Around it are hand-written edge cases: empty and one-bit bitmaps, partial
 * last granules, the extreme granularities, ranges that overflow uint64_t,
 * merge, copy, truncate and the qcow2 serialization layout.
 *
 * The random seed is fixed; set HBITMAP_TEST_SEED to try another one.
 */
#include "util/hbitmap.h"

#include <glib.h>
#include <string.h>

#define KiB ((uint64_t)1024)
#define MiB (KiB * 1024)
#define GiB (MiB * 1024)

/* Shadow model ------------------------------------------------------- */

typedef struct {
    uint64_t size;
    uint64_t gran;
    uint64_t nbits;
    bool *bit;
} Model;

static void model_init(Model *m, uint64_t size, uint64_t gran)
{
    m->size = size;
    m->gran = gran;
    m->nbits = (size + gran - 1) / gran;
    m->bit = g_new0(bool, m->nbits + 1);
}

static void model_clear(Model *m)
{
    g_free(m->bit);
    m->bit = NULL;
}

static uint64_t sat_end(uint64_t offset, uint64_t bytes)
{
    return bytes > UINT64_MAX - offset ? UINT64_MAX : offset + bytes;
}

static uint64_t span_start(const Model *m, uint64_t i)
{
    return i * m->gran;
}

static uint64_t span_end(const Model *m, uint64_t i)
{
    return MIN(i * m->gran + m->gran, m->size);
}

/* Does granule i share a byte with [s, e)? */
static bool overlaps(const Model *m, uint64_t i, uint64_t s, uint64_t e)
{
    return s < e && span_start(m, i) < e && span_end(m, i) > s;
}

/*
 * Granules before offset / gran end at or before offset, so the loops below
 * may start there; they still test every candidate for overlap.
 */
static uint64_t scan_from(const Model *m, uint64_t offset)
{
    return offset / m->gran;
}

static void model_fill(Model *m, uint64_t offset, uint64_t bytes, bool v)
{
    uint64_t e = sat_end(offset, bytes);

    for (uint64_t i = scan_from(m, offset);
         i < m->nbits && span_start(m, i) < e; i++) {
        if (overlaps(m, i, offset, e)) {
            m->bit[i] = v;
        }
    }
}

static int64_t model_next(const Model *m, uint64_t offset, uint64_t bytes,
                          bool want)
{
    uint64_t e = sat_end(offset, bytes);

    for (uint64_t i = scan_from(m, offset);
         i < m->nbits && span_start(m, i) < e; i++) {
        if (m->bit[i] == want && overlaps(m, i, offset, e)) {
            return (int64_t)MAX(span_start(m, i), offset);
        }
    }
    return -1;
}

static bool model_area(const Model *m, uint64_t offset, uint64_t end,
                       uint64_t max, uint64_t *start, uint64_t *len)
{
    for (uint64_t i = scan_from(m, offset);
         max && i < m->nbits && span_start(m, i) < end; i++) {
        if (m->bit[i] && overlaps(m, i, offset, end)) {
            uint64_t stop = MIN(span_end(m, i), end);

            *start = MAX(span_start(m, i), offset);
            /* Once max is reached, growing the run changes nothing. */
            while (stop - *start < max && i + 1 < m->nbits &&
                   m->bit[i + 1] && span_start(m, i + 1) < end) {
                i++;
                stop = MIN(span_end(m, i), end);
            }
            *len = MIN(stop - *start, max);
            return true;
        }
    }
    return false;
}

static uint64_t model_count(const Model *m, uint64_t *bits)
{
    uint64_t bytes = 0;

    *bits = 0;
    for (uint64_t i = 0; i < m->nbits; i++) {
        if (m->bit[i]) {
            bytes += span_end(m, i) - span_start(m, i);
            (*bits)++;
        }
    }
    return bytes;
}

/* Granules touched by [offset, offset + bytes): first index and number. */
static uint64_t model_touched(const Model *m, uint64_t offset, uint64_t bytes,
                              uint64_t *first)
{
    uint64_t e = sat_end(offset, bytes), n = 0;

    for (uint64_t i = scan_from(m, offset);
         i < m->nbits && span_start(m, i) < e; i++) {
        if (overlaps(m, i, offset, e)) {
            if (n++ == 0) {
                *first = i;
            }
        }
    }
    return n;
}

static void model_truncate(Model *m, uint64_t new_size)
{
    uint64_t nbits = (new_size + m->gran - 1) / m->gran;
    bool *bit = g_new0(bool, nbits + 1);

    memcpy(bit, m->bit, MIN(nbits, m->nbits) * sizeof(bool));
    g_free(m->bit);
    m->bit = bit;
    m->nbits = nbits;
    m->size = new_size;
}

/* Compare everything cheap, plus every bit when `full`. */
static void check_model(const HBitmap *hb, const Model *m, bool full)
{
    uint64_t bits, bytes = model_count(m, &bits);

    g_assert_true(hbitmap_check_invariants(hb));
    g_assert_cmpuint(hbitmap_size(hb), ==, m->size);
    g_assert_cmpuint(hbitmap_nb_bits(hb), ==, m->nbits);
    g_assert_cmpuint(hbitmap_count_bits(hb), ==, bits);
    g_assert_cmpuint(hbitmap_count(hb), ==, bytes);
    g_assert_cmpint(hbitmap_is_empty(hb), ==, bits == 0);
    if (!full) {
        return;
    }
    for (uint64_t i = 0; i < m->nbits; i++) {
        g_assert_cmpint(hbitmap_get(hb, span_start(m, i)), ==, m->bit[i]);
        g_assert_cmpint(hbitmap_get(hb, span_end(m, i) - 1), ==, m->bit[i]);
    }
    g_assert_false(hbitmap_get(hb, m->size));
}

typedef struct Areas {
    GArray *a;              /* start, bytes pairs */
    guint stop_after;       /* 0: never stop */
} Areas;

static bool collect_area(uint64_t start, uint64_t bytes, void *opaque)
{
    Areas *w = opaque;

    g_array_append_val(w->a, start);
    g_array_append_val(w->a, bytes);
    return w->a->len / 2 != w->stop_after;
}

/*
 * hbitmap_walk_dirty_areas() over [off, end) gives the areas a
 * model_area() loop gives, and stops when its callback says so.
 */
static void check_walk(const HBitmap *hb, const Model *m, uint64_t off,
                       uint64_t end, guint stop_after)
{
    g_autoptr(GArray) a = g_array_new(FALSE, FALSE, sizeof(uint64_t));
    Areas w = { .a = a, .stop_after = stop_after };
    uint64_t s, l;
    guint i = 0;

    hbitmap_walk_dirty_areas(hb, off, end, collect_area, &w);
    while (model_area(m, off, end, UINT64_MAX, &s, &l)) {
        if (stop_after && i / 2 == stop_after) {
            break;
        }
        g_assert_cmpuint(i + 1, <, a->len);
        g_assert_cmpuint(g_array_index(a, uint64_t, i), ==, s);
        g_assert_cmpuint(g_array_index(a, uint64_t, i + 1), ==, l);
        i += 2;
        off = s + l;
    }
    g_assert_cmpuint(i, ==, a->len);
}

/* Walk every dirty extent with next_dirty_area and compare. */
static void check_extents(const HBitmap *hb, const Model *m, uint64_t max)
{
    uint64_t off = 0, s1, l1, s2, l2;
    bool f1, f2;

    do {
        f1 = hbitmap_next_dirty_area(hb, off, UINT64_MAX, max, &s1, &l1);
        f2 = model_area(m, off, UINT64_MAX, max, &s2, &l2);
        g_assert_cmpint(f1, ==, f2);
        if (f1) {
            g_assert_cmpuint(s1, ==, s2);
            g_assert_cmpuint(l1, ==, l2);
            g_assert_cmpuint(l1, >, 0);
            off = s1 + l1;
        }
    } while (f1);
    if (max == UINT64_MAX) {
        check_walk(hb, m, 0, UINT64_MAX, 0);
    }
}

static void check_serialized(const HBitmap *hb, const Model *m)
{
    uint64_t n = hbitmap_serialization_size(hb, 0, UINT64_MAX);
    g_autofree uint8_t *buf = g_malloc0(n + 1);
    /* Room for the hash's padding to whole 64-bit words. */
    uint64_t padded = (m->nbits + 63) / 64 * 8;
    g_autofree uint8_t *want = g_malloc0(padded + 1);
    g_autofree gchar *sum = NULL;
    char hex[65];

    g_assert_cmpuint(n, ==, (m->nbits + 7) / 8);
    for (uint64_t i = 0; i < m->nbits; i++) {
        want[i / 8] |= (uint8_t)(m->bit[i] << (i % 8));
    }
    hbitmap_serialize_part(hb, buf, 0, UINT64_MAX);
    g_assert_cmpmem(buf, n, want, n);
    sum = g_compute_checksum_for_data(G_CHECKSUM_SHA256, want, padded);
    hbitmap_sha256(hb, hex);
    g_assert_cmpstr(hex, ==, sum);
}

/* Random operations -------------------------------------------------- */

static uint64_t rand_u64(GRand *r, uint64_t n)
{
    uint64_t v = ((uint64_t)g_rand_int(r) << 32) | g_rand_int(r);

    return n ? v % n : 0;
}

static uint64_t rand_offset(GRand *r, const Model *m)
{
    uint64_t k;

    switch (g_rand_int_range(r, 0, 10)) {
    case 0:
        return 0;
    case 1:
        return m->size ? m->size - 1 : 0;
    case 2:
        return m->size;
    case 3:
        return UINT64_MAX - rand_u64(r, 1000);
    case 4:
    case 5:
        /* Near a granule boundary. */
        k = rand_u64(r, m->nbits + 2) * m->gran;
        return k + rand_u64(r, 5) - MIN(k, 2);
    default:
        return rand_u64(r, m->size + 2 * m->gran);
    }
}

static uint64_t rand_bytes(GRand *r, const Model *m)
{
    switch (g_rand_int_range(r, 0, 12)) {
    case 0:
        return 0;
    case 1:
        return UINT64_MAX;
    case 2:
        return UINT64_MAX - rand_u64(r, 1000);
    case 3:
    case 4:
        return 1 + rand_u64(r, 2 * m->gran);
    case 5:
        /* Whole granules, often crossing 64-bit words. */
        return m->gran * (1 + rand_u64(r, 130));
    case 6:
        return 1 + rand_u64(r, m->size / 4 + 1);
    default:
        return 1 + rand_u64(r, 200 * m->gran);
    }
}

/* An offset the serialization functions accept. */
static uint64_t rand_ser_offset(GRand *r, const HBitmap *hb, const Model *m)
{
    uint64_t align = hbitmap_serialization_align(hb);

    return rand_u64(r, m->size / align + 2) * align;
}

static void op_query(GRand *r, HBitmap *hb, Model *m)
{
    uint64_t off = rand_offset(r, m), bytes = rand_bytes(r, m);
    uint64_t max = g_rand_boolean(r) ? UINT64_MAX : rand_bytes(r, m);
    uint64_t s1 = 7, l1 = 7, s2 = 7, l2 = 7;
    bool f1, f2;

    g_assert_cmpint(hbitmap_next_dirty(hb, off, bytes), ==,
                    model_next(m, off, bytes, true));
    g_assert_cmpint(hbitmap_next_clean(hb, off, bytes), ==,
                    model_next(m, off, bytes, false));
    g_assert_cmpint(hbitmap_range_all_clean(hb, off, bytes), ==,
                    model_next(m, off, bytes, true) < 0);
    g_assert_cmpint(hbitmap_range_all_dirty(hb, off, bytes), ==,
                    model_next(m, off, bytes, false) < 0);
    g_assert_cmpint(hbitmap_get(hb, off), ==,
                    off < m->size && m->bit[off / m->gran]);

    f1 = hbitmap_next_dirty_area(hb, off, sat_end(off, bytes), max, &s1, &l1);
    f2 = model_area(m, off, sat_end(off, bytes), max, &s2, &l2);
    g_assert_cmpint(f1, ==, f2);
    g_assert_cmpuint(s1, ==, s2);
    g_assert_cmpuint(l1, ==, l2);
    check_walk(hb, m, off, sat_end(off, bytes),
               (guint)g_rand_int_range(r, 0, 4));
}

static void op_serialize_part(GRand *r, HBitmap *hb, Model *m)
{
    uint64_t off = rand_ser_offset(r, hb, m), bytes = rand_bytes(r, m);
    uint64_t first = 0, n = model_touched(m, off, bytes, &first);
    uint64_t len = hbitmap_serialization_size(hb, off, bytes);
    g_autofree uint8_t *buf = g_malloc(len + 1);
    g_autofree uint8_t *want = g_malloc0(len + 1);

    g_assert_cmpuint(len, ==, (n + 7) / 8);
    if (n) {
        g_assert_cmpuint(first * m->gran, ==, off);
    }
    for (uint64_t i = 0; i < n; i++) {
        want[i / 8] |= (uint8_t)(m->bit[first + i] << (i % 8));
    }
    memset(buf, 0xa5, len + 1);
    hbitmap_serialize_part(hb, buf, off, bytes);
    g_assert_cmpmem(buf, len, want, len);
    g_assert_cmpuint(buf[len], ==, 0xa5);
}

static void op_deserialize_part(GRand *r, HBitmap *hb, Model *m)
{
    uint64_t off = rand_ser_offset(r, hb, m), bytes = rand_bytes(r, m);
    uint64_t first = 0, n = model_touched(m, off, bytes, &first);
    uint64_t len = hbitmap_serialization_size(hb, off, bytes);
    g_autofree uint8_t *buf = g_malloc(len + 1);

    for (uint64_t i = 0; i < len; i++) {
        buf[i] = (uint8_t)g_rand_int(r);
    }
    hbitmap_deserialize_part(hb, buf, off, bytes, g_rand_boolean(r));
    for (uint64_t i = 0; i < n; i++) {
        m->bit[first + i] = (buf[i / 8] >> (i % 8)) & 1;
    }
}

/* Merge a sparse random bitmap of the same shape into hb. */
static void op_merge(GRand *r, HBitmap *hb, Model *m)
{
    g_autoptr(HBitmap) other = hbitmap_new(m->size, m->gran);
    Model m2;

    model_init(&m2, m->size, m->gran);
    for (int i = 0; i < 4; i++) {
        uint64_t off = rand_offset(r, m), bytes = rand_bytes(r, m) / 8;

        hbitmap_set(other, off, bytes);
        model_fill(&m2, off, bytes, true);
    }
    g_assert_true(hbitmap_merge(hb, other));
    for (uint64_t i = 0; i < m->nbits; i++) {
        m->bit[i] |= m2.bit[i];
    }
    model_clear(&m2);
}

static void op_mutate(GRand *r, HBitmap *hb, Model *m, bool favour_set)
{
    uint64_t off = rand_offset(r, m), bytes = rand_bytes(r, m);
    unsigned pick = (unsigned)g_rand_int_range(r, 0, 1000);

    if (pick < 4) {
        uint64_t new_size = rand_u64(r, 2 * m->size + 3 * m->gran);

        hbitmap_truncate(hb, new_size);
        model_truncate(m, new_size);
    } else if (pick < 6) {
        hbitmap_set_all(hb);
        model_fill(m, 0, UINT64_MAX, true);
    } else if (pick < 8) {
        hbitmap_reset_all(hb);
        model_fill(m, 0, UINT64_MAX, false);
    } else if (pick < 30) {
        op_merge(r, hb, m);
    } else if (pick < 60) {
        op_deserialize_part(r, hb, m);
    } else if (pick < 70) {
        off = rand_ser_offset(r, hb, m);
        hbitmap_deserialize_zeroes(hb, off, bytes);
        model_fill(m, off, bytes, false);
    } else if (pick < 80) {
        off = rand_ser_offset(r, hb, m);
        hbitmap_deserialize_ones(hb, off, bytes);
        model_fill(m, off, bytes, true);
    } else if (pick < (favour_set ? 800u : 280u)) {
        hbitmap_set(hb, off, bytes);
        model_fill(m, off, bytes, true);
    } else {
        hbitmap_reset(hb, off, bytes);
        model_fill(m, off, bytes, false);
    }
}

typedef struct {
    uint64_t gran;
    uint64_t size;
    unsigned ops;
} RandomCase;

static guint32 test_seed(void)
{
    const char *env = g_getenv("HBITMAP_TEST_SEED");

    return env ? (guint32)g_ascii_strtoull(env, NULL, 0) : 0x5eed1234u;
}

static void test_random(gconstpointer data)
{
    const RandomCase *tc = data;
    guint32 seed = test_seed() ^ (guint32)(tc->size * 31 + tc->gran);
    g_autoptr(GRand) r = g_rand_new_with_seed(seed);
    g_autoptr(HBitmap) hb = hbitmap_new(tc->size, tc->gran);
    Model m;

    g_test_message("seed %u", seed);
    g_assert_nonnull(hb);
    model_init(&m, tc->size, tc->gran);
    for (unsigned i = 0; i < tc->ops; i++) {
        /* Alternate phases so the density swings between sparse and full. */
        bool favour_set = (i / 300) % 2 == 0;

        op_mutate(r, hb, &m, favour_set);
        check_model(hb, &m, i % 97 == 0);
        op_query(r, hb, &m);
        if (i % 13 == 0) {
            op_serialize_part(r, hb, &m);
        }
        if (i % 101 == 0) {
            check_extents(hb, &m, UINT64_MAX);
            check_extents(hb, &m, m.gran * 3 + 1);
            check_serialized(hb, &m);
        }
    }
    check_model(hb, &m, true);
    check_extents(hb, &m, UINT64_MAX);
    check_serialized(hb, &m);
    model_clear(&m);
}

static const RandomCase random_cases[] = {
    { 512, 512 * 1000 + 1, 5000 },            /* 1-byte last granule */
    { 512, 511, 1000 },                       /* one partial bit */
    { 4 * KiB, 4 * KiB * 8195 - 7, 4000 },    /* three levels */
    { 64 * KiB, 64 * KiB * 64, 3000 },        /* exactly one word */
    { 64 * KiB, 64 * KiB * 65 + 100, 3000 },  /* one bit into word 2 */
    { 1 * MiB, 1 * MiB * 4097, 1500 },        /* 65 level-1 bits */
    { 2 * GiB, 2 * GiB * 130 + 12345, 3000 }, /* largest granularity */
    { 512, 512 * 270000 + 3, 600 },           /* four levels */
};

/* Edge cases --------------------------------------------------------- */

static void test_bad_args(void)
{
    static const uint64_t bad_gran[] = {
        0, 1, 256, 511, 513, 1536, 4 * GiB, (uint64_t)1 << 63,
    };

    for (size_t i = 0; i < G_N_ELEMENTS(bad_gran); i++) {
        g_assert_null(hbitmap_try_new(MiB, bad_gran[i]));
        g_assert_null(hbitmap_new(MiB, bad_gran[i]));
    }
    g_assert_null(hbitmap_try_new((uint64_t)INT64_MAX + 1, 2 * GiB));
    g_assert_null(hbitmap_try_new(UINT64_MAX, 512));
}

static void test_empty(void)
{
    g_autoptr(HBitmap) hb = hbitmap_new(0, 4096);
    uint64_t s = 1, l = 1;
    char hex[65];
    uint8_t buf[1] = { 0xff };

    g_assert_nonnull(hb);
    g_assert_cmpuint(hbitmap_nb_bits(hb), ==, 0);
    hbitmap_set(hb, 0, UINT64_MAX);
    hbitmap_set_all(hb);
    g_assert_true(hbitmap_is_empty(hb));
    g_assert_cmpuint(hbitmap_count(hb), ==, 0);
    g_assert_false(hbitmap_get(hb, 0));
    g_assert_cmpint(hbitmap_next_dirty(hb, 0, UINT64_MAX), ==, -1);
    g_assert_cmpint(hbitmap_next_clean(hb, 0, UINT64_MAX), ==, -1);
    g_assert_false(hbitmap_next_dirty_area(hb, 0, UINT64_MAX, UINT64_MAX,
                                           &s, &l));
    g_assert_cmpuint(s, ==, 1);
    g_assert_true(hbitmap_range_all_clean(hb, 0, UINT64_MAX));
    g_assert_true(hbitmap_range_all_dirty(hb, 0, UINT64_MAX));
    g_assert_cmpuint(hbitmap_serialization_size(hb, 0, UINT64_MAX), ==, 0);
    hbitmap_deserialize_part(hb, buf, 0, UINT64_MAX, true);
    hbitmap_sha256(hb, hex);
    g_assert_cmpstr(hex, ==, "e3b0c44298fc1c149afbf4c8996fb924"
                             "27ae41e4649b934ca495991b7852b855");
    g_assert_true(hbitmap_check_invariants(hb));

    hbitmap_truncate(hb, 10000);
    g_assert_cmpuint(hbitmap_nb_bits(hb), ==, 3);
    g_assert_true(hbitmap_is_empty(hb));
    hbitmap_set_all(hb);
    g_assert_cmpuint(hbitmap_count(hb), ==, 10000);
    hbitmap_truncate(hb, 0);
    g_assert_true(hbitmap_is_empty(hb));
    g_assert_true(hbitmap_check_invariants(hb));
}

static void test_partial_last(void)
{
    uint64_t size = 3 * 4096 + 100;
    g_autoptr(HBitmap) hb = hbitmap_new(size, 4096);
    uint64_t s, l;

    g_assert_cmpuint(hbitmap_nb_bits(hb), ==, 4);
    hbitmap_set(hb, size - 1, 1);
    g_assert_cmpuint(hbitmap_count_bits(hb), ==, 1);
    g_assert_cmpuint(hbitmap_count(hb), ==, 100);
    g_assert_true(hbitmap_get(hb, 3 * 4096));
    g_assert_true(hbitmap_get(hb, size - 1));
    g_assert_false(hbitmap_get(hb, size));
    g_assert_false(hbitmap_get(hb, 4 * 4096 - 1));
    g_assert_cmpint(hbitmap_next_dirty(hb, 0, UINT64_MAX), ==, 3 * 4096);
    g_assert_cmpint(hbitmap_next_dirty(hb, size - 5, 2), ==, size - 5);
    g_assert_cmpint(hbitmap_next_dirty(hb, size, UINT64_MAX), ==, -1);
    g_assert_cmpint(hbitmap_next_clean(hb, 3 * 4096, UINT64_MAX), ==, -1);
    g_assert_true(hbitmap_next_dirty_area(hb, 0, UINT64_MAX, UINT64_MAX,
                                          &s, &l));
    g_assert_cmpuint(s, ==, 3 * 4096);
    g_assert_cmpuint(l, ==, 100);
    hbitmap_set_all(hb);
    g_assert_cmpuint(hbitmap_count(hb), ==, size);
    g_assert_cmpuint(hbitmap_count_bits(hb), ==, 4);
    /* A range that starts inside the last granule and runs far past. */
    hbitmap_reset(hb, size - 10, 1000);
    g_assert_cmpuint(hbitmap_count(hb), ==, 3 * 4096);
    g_assert_true(hbitmap_check_invariants(hb));
}

static void test_granularity_extremes(void)
{
    g_autoptr(HBitmap) big = hbitmap_new(5 * 2 * GiB, 2 * GiB);
    g_autoptr(HBitmap) small = hbitmap_new(64 * KiB + 1, 512);

    hbitmap_set(big, 2 * GiB + 5, 1);
    g_assert_true(hbitmap_get(big, 2 * GiB));
    g_assert_true(hbitmap_get(big, 4 * GiB - 1));
    g_assert_false(hbitmap_get(big, 4 * GiB));
    g_assert_cmpint(hbitmap_next_dirty(big, 0, UINT64_MAX), ==, 2 * GiB);
    g_assert_cmpint(hbitmap_next_dirty(big, 3 * GiB, 1), ==, 3 * GiB);
    g_assert_cmpint(hbitmap_next_clean(big, 3 * GiB, UINT64_MAX), ==,
                    4 * GiB);
    g_assert_cmpuint(hbitmap_count(big), ==, 2 * GiB);
    g_assert_cmpuint(hbitmap_serialization_align(big), ==, 16 * GiB);

    hbitmap_set(small, 64 * KiB, 1);
    hbitmap_set(small, 511, 2);
    g_assert_cmpuint(hbitmap_count_bits(small), ==, 3);
    g_assert_cmpuint(hbitmap_count(small), ==, 1025);
    g_assert_cmpint(hbitmap_next_dirty(small, 1024, UINT64_MAX), ==,
                    64 * KiB);
    g_assert_true(hbitmap_check_invariants(big));
    g_assert_true(hbitmap_check_invariants(small));
}

static void test_overflow(void)
{
    g_autoptr(HBitmap) hb = hbitmap_new(MiB, 512);
    uint64_t s, l;

    /* Wrapping ranges are clamped to the disk, never wrapped to 0. */
    hbitmap_set(hb, UINT64_MAX - 5, 100);
    hbitmap_set(hb, MiB, UINT64_MAX);
    g_assert_true(hbitmap_is_empty(hb));
    hbitmap_set(hb, 1000, UINT64_MAX);
    g_assert_cmpuint(hbitmap_count(hb), ==, MiB - 512);
    g_assert_cmpint(hbitmap_next_clean(hb, 0, UINT64_MAX), ==, 0);
    g_assert_cmpint(hbitmap_next_clean(hb, 10, UINT64_MAX - 5), ==, 10);
    g_assert_cmpint(hbitmap_next_clean(hb, 512, UINT64_MAX - 5), ==, -1);
    g_assert_cmpint(hbitmap_next_dirty(hb, UINT64_MAX, UINT64_MAX), ==, -1);
    g_assert_cmpint(hbitmap_next_dirty(hb, 1, UINT64_MAX - 1), ==, 512);
    g_assert_false(hbitmap_next_dirty_area(hb, UINT64_MAX - 1, UINT64_MAX,
                                           UINT64_MAX, &s, &l));
    g_assert_true(hbitmap_next_dirty_area(hb, 700, UINT64_MAX, UINT64_MAX,
                                          &s, &l));
    g_assert_cmpuint(s, ==, 700);
    g_assert_cmpuint(l, ==, MiB - 700);
    /* max_bytes cuts the extent; 0 finds nothing. */
    g_assert_true(hbitmap_next_dirty_area(hb, 0, MiB, 1, &s, &l));
    g_assert_cmpuint(s, ==, 512);
    g_assert_cmpuint(l, ==, 1);
    g_assert_false(hbitmap_next_dirty_area(hb, 0, MiB, 0, &s, &l));
    /* end inside a granule cuts the extent there. */
    g_assert_true(hbitmap_next_dirty_area(hb, 0, 1500, UINT64_MAX, &s, &l));
    g_assert_cmpuint(s, ==, 512);
    g_assert_cmpuint(l, ==, 988);
    g_assert_false(hbitmap_next_dirty_area(hb, 600, 600, UINT64_MAX,
                                           &s, &l));
    g_assert_false(hbitmap_next_dirty_area(hb, 600, 10, UINT64_MAX, &s, &l));
    hbitmap_reset(hb, 0, UINT64_MAX);
    g_assert_true(hbitmap_is_empty(hb));
    g_assert_true(hbitmap_check_invariants(hb));
}

/* Single bits at word and summary-word boundaries of a 4-level bitmap. */
static void test_boundaries(void)
{
    static const uint64_t bits[] = {
        0, 63, 64, 4095, 4096, 4097, 262143, 262144, 269999,
    };
    g_autoptr(HBitmap) hb = hbitmap_new(512 * 270000, 512);

    for (size_t i = 0; i < G_N_ELEMENTS(bits); i++) {
        uint64_t off = bits[i] * 512;

        hbitmap_set(hb, off + 17, 1);
        g_assert_true(hbitmap_check_invariants(hb));
        g_assert_cmpint(hbitmap_next_dirty(hb, 0, UINT64_MAX), ==, off);
        g_assert_cmpint(hbitmap_next_dirty(hb, off + 511, UINT64_MAX), ==,
                        off + 511);
        g_assert_cmpint(hbitmap_next_dirty(hb, off + 512, UINT64_MAX), ==,
                        -1);
        g_assert_cmpint(hbitmap_next_clean(hb, off, UINT64_MAX), ==,
                        bits[i] == 269999 ? -1 : (int64_t)(off + 512));
        hbitmap_reset(hb, off, 1);
        g_assert_true(hbitmap_is_empty(hb));
        g_assert_true(hbitmap_check_invariants(hb));
    }
    /* Reset a hole in the middle of a long run. */
    hbitmap_set_all(hb);
    hbitmap_reset(hb, 512 * 100, 512 * 200000);
    g_assert_true(hbitmap_check_invariants(hb));
    g_assert_cmpuint(hbitmap_count_bits(hb), ==, 70000);
    g_assert_cmpint(hbitmap_next_clean(hb, 0, UINT64_MAX), ==, 512 * 100);
    g_assert_cmpint(hbitmap_next_dirty(hb, 512 * 100, UINT64_MAX), ==,
                    512 * 200100);
}

static void test_merge_copy(void)
{
    g_autoptr(HBitmap) a = hbitmap_new(10 * MiB + 3, 64 * KiB);
    g_autoptr(HBitmap) b = hbitmap_new(10 * MiB + 3, 64 * KiB);
    g_autoptr(HBitmap) other_size = hbitmap_new(10 * MiB, 64 * KiB);
    g_autoptr(HBitmap) other_gran = hbitmap_new(10 * MiB + 3, 128 * KiB);
    g_autoptr(HBitmap) c = NULL;
    char before[65], after[65];

    hbitmap_set(a, 0, 64 * KiB);
    hbitmap_set(a, 5 * MiB, MiB);
    hbitmap_set(b, 5 * MiB + 512 * KiB, MiB);
    hbitmap_set(b, 10 * MiB, 1);

    g_assert_true(hbitmap_can_merge(a, b));
    g_assert_false(hbitmap_can_merge(a, other_size));
    g_assert_false(hbitmap_can_merge(a, other_gran));
    hbitmap_set_all(other_size);
    hbitmap_sha256(a, before);
    g_assert_false(hbitmap_merge(a, other_size));
    g_assert_false(hbitmap_merge(a, other_gran));
    hbitmap_sha256(a, after);
    g_assert_cmpstr(before, ==, after);

    c = hbitmap_copy(a);
    g_assert_true(hbitmap_merge(a, b));
    g_assert_true(hbitmap_check_invariants(a));
    g_assert_cmpuint(hbitmap_count_bits(a), ==, 1 + 24 + 1);
    g_assert_cmpuint(hbitmap_count(a), ==, 25 * 64 * KiB + 3);
    g_assert_true(hbitmap_merge(a, a));
    g_assert_cmpuint(hbitmap_count_bits(a), ==, 26);

    /* The copy kept the old contents and is independent. */
    g_assert_cmpuint(hbitmap_count_bits(c), ==, 17);
    hbitmap_reset_all(c);
    g_assert_true(hbitmap_get(a, 0));
    g_assert_true(hbitmap_check_invariants(c));
    g_assert_cmpuint(hbitmap_mem_usage(c), ==, hbitmap_mem_usage(a));
}

static void test_truncate(void)
{
    g_autoptr(HBitmap) hb = hbitmap_new(512 * 270000, 512);

    hbitmap_set_all(hb);
    /* Shrink so that the last bit becomes partial: it keeps its value. */
    hbitmap_truncate(hb, 512 * 100 + 7);
    g_assert_true(hbitmap_check_invariants(hb));
    g_assert_cmpuint(hbitmap_nb_bits(hb), ==, 101);
    g_assert_cmpuint(hbitmap_count(hb), ==, 512 * 100 + 7);
    /* Growing brings back clean bits only, not the old ones. */
    hbitmap_truncate(hb, 512 * 5000);
    g_assert_true(hbitmap_check_invariants(hb));
    g_assert_cmpuint(hbitmap_count_bits(hb), ==, 101);
    g_assert_cmpint(hbitmap_next_clean(hb, 0, UINT64_MAX), ==, 512 * 101);
    g_assert_cmpint(hbitmap_next_dirty(hb, 512 * 101, UINT64_MAX), ==, -1);
    /* Shrink to a word boundary, then to nothing. */
    hbitmap_truncate(hb, 512 * 64);
    g_assert_true(hbitmap_check_invariants(hb));
    g_assert_cmpuint(hbitmap_count_bits(hb), ==, 64);
    hbitmap_truncate(hb, 1);
    g_assert_cmpuint(hbitmap_count(hb), ==, 1);
    hbitmap_truncate(hb, 0);
    g_assert_true(hbitmap_is_empty(hb));
    g_assert_true(hbitmap_check_invariants(hb));
}

/* The qcow2 layout worked out by hand: bit i is bit i % 8 of byte i / 8. */
static void test_serialize_layout(void)
{
    static const uint8_t want[] = { 0x09, 0x02, 0x0f };
    g_autoptr(HBitmap) hb = hbitmap_new(512 * 20, 512);
    g_autoptr(HBitmap) back = hbitmap_new(512 * 20, 512);
    g_autofree gchar *sum = NULL;
    uint8_t buf[8];
    char hex[65];

    hbitmap_set(hb, 0, 1);
    hbitmap_set(hb, 3 * 512, 512);
    hbitmap_set(hb, 9 * 512 + 100, 1);
    hbitmap_set(hb, 16 * 512, 4 * 512);
    g_assert_cmpuint(hbitmap_serialization_size(hb, 0, UINT64_MAX), ==, 3);
    memset(buf, 0xee, sizeof(buf));
    hbitmap_serialize_part(hb, buf, 0, UINT64_MAX);
    g_assert_cmpmem(buf, 3, want, 3);
    g_assert_cmpuint(buf[3], ==, 0xee);
    /* The hash covers whole 64-bit words, as QEMU's does. */
    {
        uint8_t word[8] = {0};
        memcpy(word, want, 3);
        sum = g_compute_checksum_for_data(G_CHECKSUM_SHA256, word, 8);
    }
    hbitmap_sha256(hb, hex);
    g_assert_cmpstr(hex, ==, sum);

    /* A part starting at bit 8; bits past its end read as zero. */
    g_assert_cmpuint(hbitmap_serialization_size(hb, 8 * 512, 10 * 512), ==,
                     2);
    hbitmap_serialize_part(hb, buf, 8 * 512, 10 * 512);
    g_assert_cmpuint(buf[0], ==, 0x02);
    g_assert_cmpuint(buf[1], ==, 0x03);
    g_assert_cmpuint(hbitmap_serialization_size(hb, 0, 1), ==, 1);
    hbitmap_serialize_part(hb, buf, 0, 4 * 512 - 1);
    g_assert_cmpuint(buf[0], ==, 0x09);
    hbitmap_serialize_part(hb, buf, 0, 3 * 512);
    g_assert_cmpuint(buf[0], ==, 0x01);

    /* Round trip, and deserialization overwrites rather than ORs. */
    hbitmap_set(back, 512, 512);
    hbitmap_deserialize_part(back, want, 0, UINT64_MAX, true);
    g_assert_true(hbitmap_check_invariants(back));
    g_assert_cmpuint(hbitmap_count_bits(back), ==, 7);
    g_assert_false(hbitmap_get(back, 512));
    hbitmap_sha256(back, hex);
    g_assert_cmpstr(hex, ==, sum);

    /* Bits past the disk size in the last byte are ignored. */
    buf[0] = 0xff;
    buf[1] = 0xff;
    buf[2] = 0xff;
    hbitmap_deserialize_part(back, buf, 0, UINT64_MAX, false);
    g_assert_cmpuint(hbitmap_count_bits(back), ==, 20);
    g_assert_true(hbitmap_check_invariants(back));
    /* A part that ends mid-byte leaves the bits after it alone. */
    buf[0] = 0x00;
    hbitmap_deserialize_part(back, buf, 8 * 512, 3 * 512, true);
    g_assert_cmpuint(hbitmap_count_bits(back), ==, 17);
    g_assert_true(hbitmap_get(back, 11 * 512));

    hbitmap_deserialize_zeroes(back, 8 * 512, UINT64_MAX);
    g_assert_cmpuint(hbitmap_count_bits(back), ==, 8);
    hbitmap_deserialize_ones(back, 16 * 512, 512);
    g_assert_cmpuint(hbitmap_count_bits(back), ==, 9);
    g_assert_true(hbitmap_check_invariants(back));
}

/* Word-sized fast paths of (de)serialization, against a byte pattern. */
static void test_serialize_words(void)
{
    uint64_t nbits = 64 * 70 + 13, n = (nbits + 7) / 8;
    g_autoptr(HBitmap) hb = hbitmap_new(4096 * nbits, 4096);
    g_autofree uint8_t *pat = g_malloc(n);
    g_autofree uint8_t *out = g_malloc(n);
    uint64_t want = 0;

    for (uint64_t i = 0; i < n; i++) {
        pat[i] = (uint8_t)(i * 37 + 11);
    }
    pat[n - 1] &= (1u << (nbits % 8)) - 1;
    for (uint64_t i = 0; i < n; i++) {
        want += (uint64_t)__builtin_popcount(pat[i]);
    }
    /* From bit 8 onwards: byte-wise until word aligned, then words. */
    hbitmap_deserialize_part(hb, pat, 0, 4096 * 8, false);
    hbitmap_deserialize_part(hb, pat + 1, 4096 * 8, UINT64_MAX, true);
    g_assert_true(hbitmap_check_invariants(hb));
    g_assert_cmpuint(hbitmap_count_bits(hb), ==, want);
    hbitmap_serialize_part(hb, out, 0, UINT64_MAX);
    g_assert_cmpmem(out, n, pat, n);
    hbitmap_serialize_part(hb, out, 4096 * 8 * 3, UINT64_MAX);
    g_assert_cmpmem(out, n - 3, pat + 3, n - 3);
    for (uint64_t i = 0; i < nbits; i++) {
        g_assert_cmpint(hbitmap_get(hb, i * 4096), ==,
                        (pat[i / 8] >> (i % 8)) & 1);
    }
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);

    g_test_add_func("/hbitmap/bad-args", test_bad_args);
    g_test_add_func("/hbitmap/empty", test_empty);
    g_test_add_func("/hbitmap/partial-last", test_partial_last);
    g_test_add_func("/hbitmap/granularity-extremes",
                    test_granularity_extremes);
    g_test_add_func("/hbitmap/overflow", test_overflow);
    g_test_add_func("/hbitmap/boundaries", test_boundaries);
    g_test_add_func("/hbitmap/merge-copy", test_merge_copy);
    g_test_add_func("/hbitmap/truncate", test_truncate);
    g_test_add_func("/hbitmap/serialize-layout", test_serialize_layout);
    g_test_add_func("/hbitmap/serialize-words", test_serialize_words);
    for (size_t i = 0; i < G_N_ELEMENTS(random_cases); i++) {
        const RandomCase *tc = &random_cases[i];
        g_autofree char *name = g_strdup_printf(
            "/hbitmap/random/gran-%" G_GUINT64_FORMAT "/size-%"
            G_GUINT64_FORMAT, tc->gran, tc->size);

        g_test_add_data_func(name, tc, test_random);
    }
    return g_test_run();
}
