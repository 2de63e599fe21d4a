/*
 * hbitmap-scan: how fast can we walk the dirty extents of a big bitmap?
 *
 * Builds a 1 TiB bitmap at 64 KiB granularity (16 Mi bits), dirties 1% of
 * it in one of two patterns, and times full scans of the disk:
 *
 *   scattered  single granules at uniformly random positions (xorshift64*,
 *              fixed seed) until exactly 1% of the bits are set, so almost
 *              every dirty granule is its own extent;
 *   runs       runs of 16 granules (1 MiB) starting at random granules
 *              until at least 1% of the bits are set;
 *   empty/full the two extremes, for reference.
 *
 * Methods timed per pattern:
 *   next_dirty_area          one call per extent;
 *   next_dirty+next_clean    two calls per extent;
 *   next_dirty per granule   one call per dirty granule (skip by granule);
 *   flat scan (baseline)     the same extents found by scanning a plain
 *                            bit array (the serialized bitmap) word by
 *                            word, i.e. without summary levels: baseline.
 *
 * Every method must report the same dirty byte total as hbitmap_count().
 * Timings are the minimum and median of REPEATS scans.
 */
#include "util/hbitmap.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DISK_SIZE ((uint64_t)1 << 40)
#define GRANULARITY ((uint64_t)64 << 10)
#define RUN_GRANULES 16
#define REPEATS 7

typedef struct {
    uint64_t extents; /* extents (or granules) visited */
    uint64_t bytes;   /* dirty bytes seen, for cross-checking */
} ScanResult;

typedef ScanResult (*ScanFn)(const HBitmap *hb, const uint64_t *flat);

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static uint64_t rng_next(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545f4914f6cdd1dULL;
}

static uint64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static ScanResult scan_area(const HBitmap *hb, const uint64_t *flat)
{
    ScanResult r = { 0, 0 };
    uint64_t off = 0, start, len;

    while (hbitmap_next_dirty_area(hb, off, DISK_SIZE, UINT64_MAX,
                                   &start, &len)) {
        r.extents++;
        r.bytes += len;
        off = start + len;
    }
    return r;
}

static ScanResult scan_dirty_clean(const HBitmap *hb, const uint64_t *flat)
{
    ScanResult r = { 0, 0 };
    int64_t d, c;
    uint64_t off = 0;

    while ((d = hbitmap_next_dirty(hb, off, UINT64_MAX)) >= 0) {
        c = hbitmap_next_clean(hb, (uint64_t)d, UINT64_MAX);
        off = c < 0 ? DISK_SIZE : (uint64_t)c;
        r.extents++;
        r.bytes += off - (uint64_t)d;
    }
    return r;
}

static ScanResult scan_granules(const HBitmap *hb, const uint64_t *flat)
{
    ScanResult r = { 0, 0 };
    int64_t d;
    uint64_t off = 0;

    while ((d = hbitmap_next_dirty(hb, off, UINT64_MAX)) >= 0) {
        r.extents++;
        r.bytes += GRANULARITY;
        off = (uint64_t)d + GRANULARITY;
    }
    return r;
}

/* Baseline: extents of a plain bit array, skipping zero words. */
static ScanResult scan_flat(const HBitmap *hb, const uint64_t *flat)
{
    ScanResult r = { 0, 0 };
    uint64_t nwords = DISK_SIZE / GRANULARITY / 64;
    uint64_t run_start = 0;
    bool in_run = false;

    for (uint64_t w = 0; w < nwords; w++) {
        uint64_t word = flat[w];

        if (in_run ? word == ~0ULL : word == 0) {
            continue;
        }
        for (unsigned b = 0; b < 64; b++) {
            bool set = (word >> b) & 1;

            if (set != in_run) {
                uint64_t bit = w * 64 + b;

                if (set) {
                    run_start = bit;
                } else {
                    r.extents++;
                    r.bytes += (bit - run_start) * GRANULARITY;
                }
                in_run = set;
            }
        }
    }
    if (in_run) {
        r.extents++;
        r.bytes += (nwords * 64 - run_start) * GRANULARITY;
    }
    return r;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return x < y ? -1 : x > y;
}

static void fill_scattered(HBitmap *hb)
{
    uint64_t nbits = hbitmap_nb_bits(hb), target = nbits / 100;

    while (hbitmap_count_bits(hb) < target) {
        hbitmap_set(hb, (rng_next() % nbits) * GRANULARITY, 1);
    }
}

static void fill_runs(HBitmap *hb)
{
    uint64_t nbits = hbitmap_nb_bits(hb), target = nbits / 100;

    while (hbitmap_count_bits(hb) < target) {
        uint64_t bit = rng_next() % (nbits - RUN_GRANULES + 1);

        hbitmap_set(hb, bit * GRANULARITY, RUN_GRANULES * GRANULARITY);
    }
}

static void fill_full(HBitmap *hb)
{
    hbitmap_set_all(hb);
}

static void fill_empty(HBitmap *hb)
{
}

static bool run_method(const char *pattern, const HBitmap *hb,
                       const uint64_t *flat, const char *name, ScanFn fn,
                       bool per_granule)
{
    uint64_t t[REPEATS];
    ScanResult r = { 0, 0 };
    uint64_t want = per_granule ? hbitmap_count_bits(hb) * GRANULARITY
                                : hbitmap_count(hb);
    double min_ms, med_ms, per;

    for (int i = 0; i < REPEATS; i++) {
        uint64_t t0 = now_ns();

        r = fn(hb, flat);
        t[i] = now_ns() - t0;
    }
    qsort(t, REPEATS, sizeof(t[0]), cmp_u64);
    min_ms = t[0] / 1e6;
    med_ms = t[REPEATS / 2] / 1e6;
    per = r.extents ? (double)t[REPEATS / 2] / (double)r.extents : 0;
    printf("%-10s %-24s %10" PRIu64 " %10.3f %10.3f %10.1f\n", pattern,
           name, r.extents, min_ms, med_ms, per);
    if (r.bytes != want) {
        fprintf(stderr, "hbitmap-scan: %s/%s saw %" PRIu64
                " dirty bytes, expected %" PRIu64 "\n",
                pattern, name, r.bytes, want);
        return false;
    }
    return true;
}

static bool run_pattern(const char *pattern, void (*fill)(HBitmap *))
{
    g_autoptr(HBitmap) hb = hbitmap_new(DISK_SIZE, GRANULARITY);
    g_autofree uint64_t *flat = NULL;
    uint64_t nbytes, t0, fill_ns;
    bool ok = true;

    t0 = now_ns();
    fill(hb);
    fill_ns = now_ns() - t0;

    nbytes = hbitmap_serialization_size(hb, 0, DISK_SIZE);
    flat = g_malloc(nbytes);
    hbitmap_serialize_part(hb, (uint8_t *)flat, 0, DISK_SIZE);
    for (uint64_t i = 0; i < nbytes / 8; i++) {
        flat[i] = GUINT64_FROM_LE(flat[i]);
    }

    printf("%-10s %-24s %10" PRIu64 " (%.2f%% dirty, filled in %.1f ms)\n",
           pattern, "dirty granules", hbitmap_count_bits(hb),
           100.0 * (double)hbitmap_count_bits(hb) /
               (double)hbitmap_nb_bits(hb),
           fill_ns / 1e6);
    ok &= run_method(pattern, hb, flat, "next_dirty_area", scan_area,
                     false);
    ok &= run_method(pattern, hb, flat, "next_dirty+next_clean",
                     scan_dirty_clean, false);
    if (hbitmap_count_bits(hb) < hbitmap_nb_bits(hb)) {
        ok &= run_method(pattern, hb, flat, "next_dirty per granule",
                         scan_granules, true);
    }
    ok &= run_method(pattern, hb, flat, "flat scan (baseline)",
                     scan_flat, false);
    return ok;
}

int main(void)
{
    g_autoptr(HBitmap) probe = hbitmap_new(DISK_SIZE, GRANULARITY);
    bool ok = true;

    printf("hbitmap-scan: %" PRIu64 " TiB disk, %" PRIu64
           " KiB granularity, %" PRIu64 " bits, %d scans per row\n",
           DISK_SIZE >> 40, GRANULARITY >> 10, hbitmap_nb_bits(probe),
           REPEATS);
    printf("bitmap memory: %zu bytes (%.2f MiB; plain bit array: %" PRIu64
           " bytes)\n\n",
           hbitmap_mem_usage(probe),
           (double)hbitmap_mem_usage(probe) / (1024.0 * 1024.0),
           hbitmap_nb_bits(probe) / 8);
    printf("%-10s %-24s %10s %10s %10s %10s\n", "pattern", "method",
           "found", "min ms", "median ms", "ns/found");
    printf("%-10s %-24s %10s %10s %10s %10s\n", "-------", "------",
           "-----", "------", "---------", "--------");
    ok &= run_pattern("scattered", fill_scattered);
    ok &= run_pattern("runs", fill_runs);
    ok &= run_pattern("empty", fill_empty);
    ok &= run_pattern("full", fill_full);
    return ok ? 0 : 1;
}
