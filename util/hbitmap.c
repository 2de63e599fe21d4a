/*
 * Hierarchical dirty bitmap (see include/util/hbitmap.h for the contract).
 *
 * Storage: levels[0] holds one bit per granule in 64-bit words, bit i in
 * word i / 64 at position i % 64.  Each level above holds one bit per word
 * of the level below: bit j of level k + 1 is set exactly when word j of
 * level k is nonzero.  The top level is a single word, so a 1 TiB disk at
 * 64 KiB granularity (16 Mi bits) has levels of 256 Ki, 4 Ki, 64 and 1
 * words: 2 MiB of bits plus about 33 KiB of summaries.
 *
 * Invariants (checked by hbitmap_check_invariants):
 *  - bits at or past nbits[k] in the last word of each level are zero;
 *  - every summary bit agrees with the word it summarises;
 *  - count_bits equals the number of set bits in levels[0].
 *
 * A search climbs while the current word has nothing past the start
 * position and then descends along lowest set bits, so it touches at most
 * two words per level.
 */
#include "util/hbitmap.h"
#include "util/align.h"

#include <assert.h>
#include <string.h>

#define HB_SHIFT 6
#define HB_WORD_BITS 64
/* nb_bits <= 2^54 (INT64_MAX / 512), which needs 10 levels. */
#define HB_MAX_LEVELS 12

struct HBitmap {
    uint64_t size;
    uint64_t nb_bits;
    uint64_t count_bits;
    unsigned gran_bits;
    unsigned nlevels;
    uint64_t nbits[HB_MAX_LEVELS];  /* meaningful bits per level */
    uint64_t nwords[HB_MAX_LEVELS]; /* words allocated per level (>= 1) */
    uint64_t *levels[HB_MAX_LEVELS];
};

/* Bits b..63 of a word. */
static inline uint64_t mask_from(uint64_t b)
{
    return ~0ULL << (b & 63);
}

/* Bits 0..b of a word. */
static inline uint64_t mask_upto(uint64_t b)
{
    return ~0ULL >> (63 - (b & 63));
}

/*
 * The loops that count bits word by word get a hardware popcount where the
 * CPU has one (chosen at load time), without requiring it of every CPU.
 */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define HB_POPCOUNT_CLONES __attribute__((target_clones("popcnt", "default")))
#else
#define HB_POPCOUNT_CLONES
#endif

static inline unsigned popcount64(uint64_t v)
{
    return (unsigned)__builtin_popcountll(v);
}

static inline uint64_t ctz64(uint64_t v)
{
    return (uint64_t)__builtin_ctzll(v);
}

static bool hb_args_valid(uint64_t size, uint64_t granularity)
{
    return size <= INT64_MAX &&
           granularity >= HBITMAP_MIN_GRANULARITY &&
           granularity <= HBITMAP_MAX_GRANULARITY &&
           (granularity & (granularity - 1)) == 0;
}

/* Fill nbits/nwords/nlevels for a bitmap of nb_bits bits. */
static void hb_layout(HBitmap *hb, uint64_t nb_bits)
{
    uint64_t n = nb_bits;
    unsigned k = 0;

    for (;;) {
        assert(k < HB_MAX_LEVELS);
        hb->nbits[k] = n;
        hb->nwords[k] = n ? (n + HB_WORD_BITS - 1) >> HB_SHIFT : 1;
        if (hb->nwords[k] == 1) {
            break;
        }
        n = hb->nwords[k];
        k++;
    }
    hb->nlevels = k + 1;
    hb->nb_bits = nb_bits;
}

static void hb_free_levels(uint64_t **levels)
{
    for (unsigned k = 0; k < HB_MAX_LEVELS; k++) {
        g_free(levels[k]);
        levels[k] = NULL;
    }
}

/* Allocate zeroed levels for hb's layout into `levels`. */
static bool hb_alloc_levels(const HBitmap *hb, uint64_t **levels, bool try)
{
    for (unsigned k = 0; k < hb->nlevels; k++) {
        if (try) {
            levels[k] = g_try_new0(uint64_t, hb->nwords[k]);
        } else {
            levels[k] = g_new0(uint64_t, hb->nwords[k]);
        }
        if (!levels[k]) {
            hb_free_levels(levels);
            return false;
        }
    }
    return true;
}

static HBitmap *hb_create(uint64_t size, uint64_t granularity, bool try)
{
    HBitmap *hb;

    if (!hb_args_valid(size, granularity)) {
        return NULL;
    }
    hb = try ? g_try_new0(HBitmap, 1) : g_new0(HBitmap, 1);
    if (!hb) {
        return NULL;
    }
    hb->size = size;
    hb->gran_bits = (unsigned)ctz64(granularity);
    hb_layout(hb, (size >> hb->gran_bits) +
                  ((size & (granularity - 1)) != 0));
    if (!hb_alloc_levels(hb, hb->levels, try)) {
        g_free(hb);
        return NULL;
    }
    return hb;
}

HBitmap *hbitmap_try_new(uint64_t size, uint64_t granularity)
{
    return hb_create(size, granularity, true);
}

HBitmap *hbitmap_new(uint64_t size, uint64_t granularity)
{
    return hb_create(size, granularity, false);
}

void hbitmap_free(HBitmap *hb)
{
    if (hb) {
        hb_free_levels(hb->levels);
        g_free(hb);
    }
}

uint64_t hbitmap_size(const HBitmap *hb)
{
    return hb->size;
}

uint64_t hbitmap_granularity(const HBitmap *hb)
{
    return (uint64_t)1 << hb->gran_bits;
}

uint64_t hbitmap_nb_bits(const HBitmap *hb)
{
    return hb->nb_bits;
}

size_t hbitmap_mem_usage(const HBitmap *hb)
{
    size_t total = sizeof(*hb);

    for (unsigned k = 0; k < hb->nlevels; k++) {
        total += hb->nwords[k] * sizeof(uint64_t);
    }
    return total;
}

/*
 * Convert a byte range to the inclusive bit range it touches, clamped to
 * the disk.  Returns false if nothing of the disk is touched.
 */
static bool hb_bit_range(const HBitmap *hb, uint64_t offset, uint64_t bytes,
                         uint64_t *first, uint64_t *last)
{
    uint64_t end;

    if (bytes == 0 || offset >= hb->size) {
        return false;
    }
    end = bytes > hb->size - offset ? hb->size : offset + bytes;
    *first = offset >> hb->gran_bits;
    *last = (end - 1) >> hb->gran_bits;
    return true;
}

static inline bool hb_test_bit(const HBitmap *hb, uint64_t bit)
{
    return (hb->levels[0][bit >> HB_SHIFT] >> (bit & 63)) & 1;
}

/*
 * Set bits [s, e] of one level.  Returns how many were clear before, and
 * sets *woke if some touched word was zero (its summary bit must be set).
 */
static uint64_t bits_set(uint64_t *words, uint64_t s, uint64_t e, bool *woke)
{
    uint64_t ws = s >> HB_SHIFT, we = e >> HB_SHIFT, added = 0;

    for (uint64_t i = ws; i <= we; i++) {
        uint64_t mask = ~0ULL, old = words[i];

        if (i == ws) {
            mask &= mask_from(s);
        }
        if (i == we) {
            mask &= mask_upto(e);
        }
        *woke |= old == 0;
        added += popcount64(mask & ~old);
        words[i] = old | mask;
    }
    return added;
}

/* Clear bits [s, e] of one level; returns how many were set before. */
static uint64_t bits_clear(uint64_t *words, uint64_t s, uint64_t e)
{
    uint64_t ws = s >> HB_SHIFT, we = e >> HB_SHIFT, removed = 0;

    for (uint64_t i = ws; i <= we; i++) {
        uint64_t mask = ~0ULL;

        if (i == ws) {
            mask &= mask_from(s);
        }
        if (i == we) {
            mask &= mask_upto(e);
        }
        removed += popcount64(words[i] & mask);
        words[i] &= ~mask;
    }
    return removed;
}

/* Set bits [s, e] of level 0 and the summaries above them. */
static void hb_set_bits(HBitmap *hb, uint64_t s, uint64_t e)
{
    for (unsigned k = 0; k < hb->nlevels; k++) {
        bool woke = false;
        uint64_t added = bits_set(hb->levels[k], s, e, &woke);

        if (k == 0) {
            hb->count_bits += added;
        }
        /* Words that were already nonzero have their summary bit set. */
        if (!woke) {
            break;
        }
        s >>= HB_SHIFT;
        e >>= HB_SHIFT;
    }
}

/* Clear bits [s, e] of level 0 and the summaries that became stale. */
static void hb_reset_bits(HBitmap *hb, uint64_t s, uint64_t e)
{
    for (unsigned k = 0; k < hb->nlevels; k++) {
        const uint64_t *words = hb->levels[k];
        uint64_t removed = bits_clear(hb->levels[k], s, e);
        uint64_t ps = s >> HB_SHIFT, pe = e >> HB_SHIFT;

        if (k == 0) {
            hb->count_bits -= removed;
        }
        /*
         * Every word strictly inside [ps, pe] is now zero; the two end
         * words may still hold bits outside [s, e] and then keep their
         * summary bit.  What is left is one contiguous run to clear.
         */
        if (words[ps]) {
            ps++;
        }
        if (ps > pe) {
            break;
        }
        if (words[pe]) {
            pe--;
        }
        if (ps > pe) {
            break;
        }
        s = ps;
        e = pe;
    }
}

/*
 * Recompute the summaries of level-0 words [ws, we] after direct writes.
 * Each summary word is built from its 64 words at once (no branch per
 * word): loading a stored bitmap of a 1 TiB disk refreshes 256 Ki words.
 */
static void hb_refresh_upper(HBitmap *hb, uint64_t ws, uint64_t we)
{
    for (unsigned k = 0; k + 1 < hb->nlevels; k++) {
        const uint64_t *words = hb->levels[k];
        uint64_t *up = hb->levels[k + 1];

        for (uint64_t u = ws >> HB_SHIFT; u <= we >> HB_SHIFT; u++) {
            uint64_t first = MAX(u << HB_SHIFT, ws);
            uint64_t last = MIN((u << HB_SHIFT) + 63, we);
            uint64_t bits = 0, mask;

            for (uint64_t i = first; i <= last; i++) {
                bits |= (uint64_t)(words[i] != 0) << (i & 63);
            }
            mask = mask_from(first) & mask_upto(last);
            up[u] = (up[u] & ~mask) | bits;
        }
        ws >>= HB_SHIFT;
        we >>= HB_SHIFT;
    }
}

/*
 * Summaries of level-0 words changed one at a time, in increasing order:
 * the changed words of one 64-word group are refreshed together, and only
 * groups that changed are touched (a sparse stored bitmap of a 1 TiB disk
 * changes a few hundred of its 256 Ki words).
 */
typedef struct HbChanged {
    HBitmap *hb;
    uint64_t lo, hi;                 /* pending words (one group); lo > hi: none */
} HbChanged;

static void hb_changed_flush(HbChanged *ch)
{
    if (ch->lo <= ch->hi) {
        hb_refresh_upper(ch->hb, ch->lo, ch->hi);
    }
    ch->lo = 1;
    ch->hi = 0;
}

static inline void hb_changed(HbChanged *ch, uint64_t i)
{
    if (ch->lo <= ch->hi && (i >> HB_SHIFT) == (ch->lo >> HB_SHIFT)) {
        ch->hi = i;
        return;
    }
    hb_changed_flush(ch);
    ch->lo = ch->hi = i;
}

/* First set bit of level 0 at index >= pos, or -1. */
static int64_t hb_find_set(const HBitmap *hb, uint64_t pos)
{
    unsigned k = 0;

    for (;;) {
        uint64_t w = pos >> HB_SHIFT, word;

        if (pos >= hb->nbits[k]) {
            return -1;
        }
        word = hb->levels[k][w] & mask_from(pos);
        if (word) {
            pos = (w << HB_SHIFT) + ctz64(word);
            break;
        }
        if (k + 1 == hb->nlevels) {
            return -1;
        }
        /* Nothing left in this word: ask the summary for the next one. */
        pos = w + 1;
        k++;
    }
    while (k > 0) {
        k--;
        pos = (pos << HB_SHIFT) + ctz64(hb->levels[k][pos]);
    }
    return (int64_t)pos;
}

/* First clear bit of level 0 in [pos, last], or -1.  Linear in words. */
static int64_t hb_find_clear(const HBitmap *hb, uint64_t pos, uint64_t last)
{
    const uint64_t *words = hb->levels[0];
    uint64_t w = pos >> HB_SHIFT, lw = last >> HB_SHIFT;
    uint64_t word = ~words[w] & mask_from(pos);
    uint64_t bit;

    while (!word) {
        if (++w > lw) {
            return -1;
        }
        word = ~words[w];
    }
    bit = (w << HB_SHIFT) + ctz64(word);
    return bit <= last ? (int64_t)bit : -1;
}

void hbitmap_set(HBitmap *hb, uint64_t offset, uint64_t bytes)
{
    uint64_t first, last;

    if (hb_bit_range(hb, offset, bytes, &first, &last)) {
        hb_set_bits(hb, first, last);
    }
}

void hbitmap_reset(HBitmap *hb, uint64_t offset, uint64_t bytes)
{
    uint64_t first, last;

    if (hb_bit_range(hb, offset, bytes, &first, &last)) {
        hb_reset_bits(hb, first, last);
    }
}

void hbitmap_set_all(HBitmap *hb)
{
    if (hb->nb_bits) {
        hb_set_bits(hb, 0, hb->nb_bits - 1);
    }
}

void hbitmap_reset_all(HBitmap *hb)
{
    for (unsigned k = 0; k < hb->nlevels; k++) {
        memset(hb->levels[k], 0, hb->nwords[k] * sizeof(uint64_t));
    }
    hb->count_bits = 0;
}

bool hbitmap_get(const HBitmap *hb, uint64_t offset)
{
    return offset < hb->size && hb_test_bit(hb, offset >> hb->gran_bits);
}

uint64_t hbitmap_count_bits(const HBitmap *hb)
{
    return hb->count_bits;
}

uint64_t hbitmap_count(const HBitmap *hb)
{
    uint64_t bytes = hb->count_bits << hb->gran_bits;

    /* The last bit covers only the bytes below size. */
    if (hb->nb_bits && hb_test_bit(hb, hb->nb_bits - 1)) {
        bytes -= (hb->nb_bits << hb->gran_bits) - hb->size;
    }
    return bytes;
}

bool hbitmap_is_empty(const HBitmap *hb)
{
    return hb->count_bits == 0;
}

int64_t hbitmap_next_dirty(const HBitmap *hb, uint64_t offset, uint64_t bytes)
{
    uint64_t first, last;
    int64_t bit;

    if (!hb_bit_range(hb, offset, bytes, &first, &last)) {
        return -1;
    }
    bit = hb_find_set(hb, first);
    if (bit < 0 || (uint64_t)bit > last) {
        return -1;
    }
    return (int64_t)MAX(offset, (uint64_t)bit << hb->gran_bits);
}

int64_t hbitmap_next_clean(const HBitmap *hb, uint64_t offset, uint64_t bytes)
{
    uint64_t first, last;
    int64_t bit;

    if (!hb_bit_range(hb, offset, bytes, &first, &last)) {
        return -1;
    }
    bit = hb_find_clear(hb, first, last);
    if (bit < 0) {
        return -1;
    }
    return (int64_t)MAX(offset, (uint64_t)bit << hb->gran_bits);
}

bool hbitmap_next_dirty_area(const HBitmap *hb, uint64_t offset, uint64_t end,
                             uint64_t max_bytes, uint64_t *dirty_start,
                             uint64_t *dirty_bytes)
{
    uint64_t first, last, start, limit, stop;
    int64_t bit, clean;

    if (max_bytes == 0 || end <= offset ||
        !hb_bit_range(hb, offset, end - offset, &first, &last)) {
        return false;
    }
    bit = hb_find_set(hb, first);
    if (bit < 0 || (uint64_t)bit > last) {
        return false;
    }
    start = MAX(offset, (uint64_t)bit << hb->gran_bits);
    limit = MIN(end, hb->size);
    /* Do not look for the end of the run further than max_bytes. */
    if (max_bytes < limit - start) {
        limit = start + max_bytes;
        last = (limit - 1) >> hb->gran_bits;
    }
    clean = hb_find_clear(hb, (uint64_t)bit, last);
    stop = clean < 0 ? limit : (uint64_t)clean << hb->gran_bits;
    *dirty_start = start;
    *dirty_bytes = stop - start;
    return true;
}

void hbitmap_walk_dirty_areas(const HBitmap *hb, uint64_t offset,
                              uint64_t end, HBitmapAreaFn fn, void *opaque)
{
    const uint64_t *words = hb->levels[0];
    uint64_t first, last, lw, limit, bit;

    if (end <= offset || !hb_bit_range(hb, offset, end - offset, &first,
                                       &last)) {
        return;
    }
    lw = last >> HB_SHIFT;
    limit = MIN(end, hb->size);
    bit = first;
    while (bit <= last) {
        uint64_t w = bit >> HB_SHIFT;
        uint64_t word = words[w] & mask_from(bit);
        uint64_t run_end, start, stop;

        /*
         * Areas of a sparse bitmap are usually a word or two apart: look
         * at the next word before asking the summary levels.
         */
        if (!word && w < lw && words[w + 1]) {
            word = words[++w];
        }
        if (!word && w < lw && hb->nlevels > 1) {
            /* The summary word above says which of the next words is set. */
            uint64_t up = hb->levels[1][(w + 1) >> HB_SHIFT] &
                          mask_from(w + 1);
            if (up) {
                w = ((w + 1) & ~(uint64_t)63) + ctz64(up);
                word = words[w];
            }
        }
        if (!word) {
            int64_t next = hb_find_set(hb, (w + 1) << HB_SHIFT);
            if (next < 0 || (uint64_t)next > last) {
                return;
            }
            w = (uint64_t)next >> HB_SHIFT;
            word = words[w] & mask_from((uint64_t)next);
        }
        bit = (w << HB_SHIFT) + ctz64(word);
        if (bit > last) {
            return;
        }
        /* The run usually ends in the same word. */
        word = ~words[w] & mask_from(bit);
        while (!word && w < lw) {
            word = ~words[++w];
        }
        run_end = word ? (w << HB_SHIFT) + ctz64(word) : last + 1;
        start = MAX(offset, bit << hb->gran_bits);
        stop = run_end > last ? limit : run_end << hb->gran_bits;
        if (!fn(start, stop - start, opaque)) {
            return;
        }
        bit = run_end + 1;      /* run_end itself is clean */
    }
}

bool hbitmap_range_all_clean(const HBitmap *hb, uint64_t offset,
                             uint64_t bytes)
{
    return hbitmap_next_dirty(hb, offset, bytes) < 0;
}

bool hbitmap_range_all_dirty(const HBitmap *hb, uint64_t offset,
                             uint64_t bytes)
{
    return hbitmap_next_clean(hb, offset, bytes) < 0;
}

bool hbitmap_can_merge(const HBitmap *a, const HBitmap *b)
{
    return a->size == b->size && a->gran_bits == b->gran_bits;
}

HB_POPCOUNT_CLONES
bool hbitmap_merge(HBitmap *dst, const HBitmap *src)
{
    uint64_t *d = dst->levels[0];
    const uint64_t *s = src->levels[0];
    uint64_t added = 0;
    HbChanged ch = { .hb = dst, .lo = 1, .hi = 0 };

    if (!hbitmap_can_merge(dst, src)) {
        return false;
    }
    if (src->nlevels > 1) {
        /* Only the words the source's summary says are not empty. */
        const uint64_t *sum = src->levels[1];

        for (uint64_t u = 0; u < src->nwords[1]; u++) {
            for (uint64_t bits = sum[u]; bits; bits &= bits - 1) {
                uint64_t i = (u << HB_SHIFT) + ctz64(bits);
                uint64_t add = s[i] & ~d[i];

                if (add) {
                    added += popcount64(add);
                    d[i] |= add;
                    hb_changed(&ch, i);
                }
            }
        }
    } else if (s[0] & ~d[0]) {
        added = popcount64(s[0] & ~d[0]);
        d[0] |= s[0];
        hb_changed(&ch, 0);
    }
    hb_changed_flush(&ch);
    dst->count_bits += added;
    return true;
}

HBitmap *hbitmap_copy(const HBitmap *hb)
{
    HBitmap *copy = g_new0(HBitmap, 1);

    *copy = *hb;
    for (unsigned k = 0; k < hb->nlevels; k++) {
        copy->levels[k] = g_memdup2(hb->levels[k],
                                    hb->nwords[k] * sizeof(uint64_t));
    }
    return copy;
}

void hbitmap_truncate(HBitmap *hb, uint64_t new_size)
{
    uint64_t gran = (uint64_t)1 << hb->gran_bits;
    uint64_t keep, count = 0;
    HBitmap shape = { .gran_bits = hb->gran_bits, .size = new_size };
    uint64_t **levels = shape.levels;

    g_return_if_fail(new_size <= INT64_MAX);

    hb_layout(&shape, (new_size >> hb->gran_bits) +
                      ((new_size & (gran - 1)) != 0));
    hb_alloc_levels(&shape, levels, false);
    keep = MIN(hb->nwords[0], shape.nwords[0]);
    memcpy(levels[0], hb->levels[0], keep * sizeof(uint64_t));
    if (shape.nb_bits < hb->nb_bits) {
        /* Drop the bits that fell off the end of the last kept word. */
        if (shape.nb_bits & 63) {
            levels[0][keep - 1] &= mask_upto(shape.nb_bits - 1);
        } else if (shape.nb_bits == 0) {
            levels[0][0] = 0;
        }
    }
    for (uint64_t i = 0; i < keep; i++) {
        count += popcount64(levels[0][i]);
    }

    hb_free_levels(hb->levels);
    shape.count_bits = count;
    *hb = shape;
    hb_refresh_upper(hb, 0, hb->nwords[0] - 1);
}

/* Serialization ------------------------------------------------------- */

uint64_t hbitmap_serialization_align(const HBitmap *hb)
{
    return (uint64_t)8 << hb->gran_bits;
}

/* Bit range of a serialized byte range; false if empty. */
static bool hb_ser_range(const HBitmap *hb, uint64_t offset, uint64_t bytes,
                         uint64_t *first, uint64_t *nbits)
{
    uint64_t last;

    assert((offset & (hbitmap_serialization_align(hb) - 1)) == 0);
    if (!hb_bit_range(hb, offset, bytes, first, &last)) {
        return false;
    }
    *nbits = last - *first + 1;
    return true;
}

/* Write bits [first, first + nbits) (first % 8 == 0) as qcow2 bytes. */
static void hb_serialize_bits(const HBitmap *hb, uint8_t *buf, uint64_t first,
                              uint64_t nbits)
{
    const uint64_t *words = hb->levels[0];
    uint64_t nbytes = (nbits + 7) / 8, b = first / 8;

    for (uint64_t j = 0; j < nbytes;) {
        if ((b & 7) == 0 && nbytes - j >= 8) {
            uint64_t le = GUINT64_TO_LE(words[b >> 3]);

            memcpy(buf + j, &le, sizeof(le));
            j += 8;
            b += 8;
        } else {
            buf[j++] = (uint8_t)(words[b >> 3] >> ((b & 7) * 8));
            b++;
        }
    }
    if (nbits & 7) {
        buf[nbytes - 1] &= (uint8_t)((1u << (nbits & 7)) - 1);
    }
}

/* Overwrite bits [first, first + nbits) (first % 8 == 0) from qcow2 bytes. */
HB_POPCOUNT_CLONES
static void hb_deserialize_bits(HBitmap *hb, const uint8_t *buf,
                                uint64_t first, uint64_t nbits)
{
    uint64_t *words = hb->levels[0];
    uint64_t nbytes = (nbits + 7) / 8, b = first / 8;
    HbChanged ch = { .hb = hb, .lo = 1, .hi = 0 };

    for (uint64_t j = 0; j < nbytes;) {
        uint64_t *w = &words[b >> 3];
        uint64_t old = *w, mask, val;

        /* Whole words at a time, unless they hold the partial last byte. */
        if ((b & 7) == 0 &&
            (nbytes - j > 8 || (nbytes - j == 8 && (nbits & 7) == 0))) {
            memcpy(&val, buf + j, sizeof(val));
            val = GUINT64_FROM_LE(val);
            j += 8;
            b += 8;
            if (val == old) {
                continue;           /* most words of a sparse bitmap */
            }
            mask = ~0ULL;
        } else {
            unsigned shift = (unsigned)(b & 7) * 8;
            uint64_t keep = 0xff;

            if (j == nbytes - 1 && (nbits & 7)) {
                keep = (1u << (nbits & 7)) - 1;
            }
            mask = keep << shift;
            val = (uint64_t)buf[j] << shift;
            j++;
            b++;
        }
        *w = (old & ~mask) | (val & mask);
        if (*w != old) {
            hb->count_bits += popcount64(*w);
            hb->count_bits -= popcount64(old);
            hb_changed(&ch, (uint64_t)(w - words));
        }
    }
    hb_changed_flush(&ch);
}

uint64_t hbitmap_serialization_size(const HBitmap *hb, uint64_t offset,
                                    uint64_t bytes)
{
    uint64_t first, nbits;

    if (!hb_ser_range(hb, offset, bytes, &first, &nbits)) {
        return 0;
    }
    return (nbits + 7) / 8;
}

void hbitmap_serialize_part(const HBitmap *hb, uint8_t *buf, uint64_t offset,
                            uint64_t bytes)
{
    uint64_t first, nbits;

    if (hb_ser_range(hb, offset, bytes, &first, &nbits)) {
        hb_serialize_bits(hb, buf, first, nbits);
    }
}

void hbitmap_deserialize_part(HBitmap *hb, const uint8_t *buf,
                              uint64_t offset, uint64_t bytes, bool finish)
{
    uint64_t first, nbits;

    if (hb_ser_range(hb, offset, bytes, &first, &nbits)) {
        hb_deserialize_bits(hb, buf, first, nbits);
    }
}

void hbitmap_deserialize_zeroes(HBitmap *hb, uint64_t offset, uint64_t bytes)
{
    uint64_t first, nbits;

    if (hb_ser_range(hb, offset, bytes, &first, &nbits)) {
        hb_reset_bits(hb, first, first + nbits - 1);
    }
}

void hbitmap_deserialize_ones(HBitmap *hb, uint64_t offset, uint64_t bytes)
{
    uint64_t first, nbits;

    if (hb_ser_range(hb, offset, bytes, &first, &nbits)) {
        hb_set_bits(hb, first, first + nbits - 1);
    }
}

void hbitmap_sha256(const HBitmap *hb, char out[65])
{
    enum { CHUNK = 4096 };
    g_autoptr(GChecksum) sum = g_checksum_new(G_CHECKSUM_SHA256);
    uint8_t buf[CHUNK];

    for (uint64_t bit = 0; bit < hb->nb_bits; bit += CHUNK * 8) {
        uint64_t nbits = MIN((uint64_t)CHUNK * 8, hb->nb_bits - bit);

        hb_serialize_bits(hb, buf, bit, nbits);
        g_checksum_update(sum, buf, (gssize)((nbits + 7) / 8));
    }
    /*
     * QEMU hashes whole 64-bit words; pad the same way so that the
     * x-debug-block-dirty-bitmap-sha256 answers of both agree.
     */
    {
        static const uint8_t zeroes[8];
        uint64_t pad = DIV_ROUND_UP(hb->nb_bits, 64) * 8 -
                       DIV_ROUND_UP(hb->nb_bits, 8);
        g_checksum_update(sum, zeroes, (gssize)pad);
    }
    g_strlcpy(out, g_checksum_get_string(sum), 65);
}

/* Invariants ---------------------------------------------------------- */

static bool hb_check_padding(const HBitmap *hb, unsigned k)
{
    uint64_t n = hb->nbits[k];
    uint64_t lastw = hb->levels[k][hb->nwords[k] - 1];

    if (n == 0) {
        return lastw == 0;
    }
    return (n & 63) == 0 || (lastw & ~mask_upto(n - 1)) == 0;
}

bool hbitmap_check_invariants(const HBitmap *hb)
{
    uint64_t count = 0;

    if (hb->nwords[hb->nlevels - 1] != 1) {
        g_debug("hbitmap: top level has %" G_GUINT64_FORMAT " words",
                hb->nwords[hb->nlevels - 1]);
        return false;
    }
    for (unsigned k = 0; k < hb->nlevels; k++) {
        if (!hb_check_padding(hb, k)) {
            g_debug("hbitmap: padding bits set at level %u", k);
            return false;
        }
        if (k + 1 == hb->nlevels) {
            break;
        }
        for (uint64_t i = 0; i < hb->nwords[k]; i++) {
            bool nonzero = hb->levels[k][i] != 0;
            bool summary = (hb->levels[k + 1][i >> HB_SHIFT] >> (i & 63)) & 1;

            if (nonzero != summary) {
                g_debug("hbitmap: level %u word %" G_GUINT64_FORMAT
                        " disagrees with its summary bit", k, i);
                return false;
            }
        }
    }
    for (uint64_t i = 0; i < hb->nwords[0]; i++) {
        count += popcount64(hb->levels[0][i]);
    }
    if (count != hb->count_bits) {
        g_debug("hbitmap: count %" G_GUINT64_FORMAT " but %" G_GUINT64_FORMAT
                " bits set", hb->count_bits, count);
        return false;
    }
    return true;
}
