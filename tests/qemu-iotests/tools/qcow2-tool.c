/*
 * qcow2-tool: a small driver of the block layer for the qcow2 iotests, so
 * that they do not depend on the qemu-img/qemu-io front-ends.
 *
 *   qcow2-tool create FILE [key=value,...]
 *   qcow2-tool info FILE                  key=value lines
 *   qcow2-tool check FILE [none|leaks|all] exit 0 clean, 2 corrupt, 3 leaks
 *   qcow2-tool io FILE [-r] [-o opts] CMD [; CMD]...
 *       write OFF LEN PAT | read OFF LEN PAT | zero OFF LEN [unmap] |
 *       discard OFF LEN | flush | map | resize SIZE | dump OUT
 *   qcow2-tool crashwriter FILE SEED COUNT LOG [MAXLEN]
 *   qcow2-tool threads FILE NTHREADS NWRITES SEED   (see writer_thread)
 *
 * Numbers accept k/M/G suffixes.  Errors go to stderr, exit code 1.
 */
#include "block/block_int.h"
#include "qapi/error.h"
#include "util/cutils.h"
#include "util/options.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static uint64_t num(const char *s)
{
    uint64_t v;
    g_autoptr(GError) err = NULL;

    if (!parse_size(s, 'B', &v, &err)) {
        fprintf(stderr, "bad number '%s'\n", s);
        exit(1);
    }
    return v;
}

static BlockDriverState *open_img(const char *file, const char *o, int flags)
{
    g_autoptr(JsonObject) opts = NULL;
    g_autoptr(GError) err = NULL;
    BlockDriverState *bs;

    opts = o ? keyval_parse(o, NULL, &err) : json_object_new();
    if (!opts) {
        error_report_err(g_steal_pointer(&err));
        exit(1);
    }
    if (!json_object_has_member(opts, "driver")) {
        json_object_set_string_member(opts, "driver", "qcow2");
    }
    bs = bdrv_open(file, opts, flags, &err);
    if (!bs) {
        error_report("Could not open '%s': %s", file, err->message);
        exit(1);
    }
    return bs;
}

static int cmd_create(int argc, char **argv)
{
    g_autoptr(JsonObject) opts = NULL;
    g_autoptr(GError) err = NULL;

    if (argc < 3) {
        return 1;
    }
    opts = argc > 3 ? keyval_parse(argv[3], NULL, &err) : json_object_new();
    if (!opts || !bdrv_create("qcow2", argv[2], opts, &err)) {
        error_report("%s: %s", argv[2], err->message);
        return 1;
    }
    return 0;
}

static int cmd_info(int argc, char **argv)
{
    BlockDriverState *bs = open_img(argv[2], NULL,
                                    BDRV_O_NO_BACKING | BDRV_O_FORCE_SHARE);
    BlockDriverInfo bdi;
    g_autoptr(GError) err = NULL;
    JsonNode *n = bdrv_get_specific_info(bs, &err);
    g_autofree char *json = n ? json_to_string(n, false) : NULL;

    bdrv_get_info(bs, &bdi);
    printf("virtual-size=%" PRId64 "\n", bdrv_getlength(bs));
    printf("cluster-size=%u\n", bdi.cluster_size);
    printf("dirty=%d\n", bdi.is_dirty);
    printf("specific=%s\n", json ? json : "");
    printf("backing=%s\n", bs->backing_file ? bs->backing_file : "");
    if (n) {
        json_node_unref(n);
    }
    bdrv_unref(bs);
    return 0;
}

static int cmd_check(int argc, char **argv)
{
    const char *mode = argc > 3 ? argv[3] : "none";
    BdrvCheckMode fix = !strcmp(mode, "all") ? BDRV_FIX_LEAKS | BDRV_FIX_ERRORS
                        : !strcmp(mode, "leaks") ? BDRV_FIX_LEAKS
                                                 : BDRV_FIX_NONE;
    BlockDriverState *bs = open_img(argv[2], NULL,
                                    BDRV_O_CHECK | BDRV_O_NO_BACKING |
                                        (fix ? BDRV_O_RDWR : 0));
    BdrvCheckResult r;
    int ret = bdrv_check(bs, &r, fix);

    printf("ret=%d corruptions=%d leaks=%d check_errors=%d "
           "corruptions_fixed=%d leaks_fixed=%d image_end_offset=%" PRId64
           " allocated=%" PRIu64 " total=%" PRIu64 " fragmented=%" PRIu64
           " compressed=%" PRIu64 "\n", ret, r.corruptions, r.leaks,
           r.check_errors, r.corruptions_fixed, r.leaks_fixed,
           r.image_end_offset, r.allocated_clusters, r.total_clusters,
           r.fragmented_clusters, r.compressed_clusters);
    bdrv_unref(bs);
    if (ret < 0 || r.check_errors) {
        return 1;
    }
    return r.corruptions ? 2 : r.leaks ? 3 : 0;
}

static void fill(uint8_t *buf, uint64_t len, int pat)
{
    memset(buf, pat, len);
}

static int io_one(BlockDriverState *bs, char **a, int n)
{
    g_autofree uint8_t *buf = NULL;
    bool numeric = strcmp(a[0], "dump") != 0;
    uint64_t off = numeric && n > 1 ? num(a[1]) : 0;
    uint64_t len = numeric && n > 2 ? num(a[2]) : 0;
    int ret = 0;

    if (!strcmp(a[0], "write") && n >= 4) {
        buf = g_malloc(len);
        fill(buf, len, (int)strtol(a[3], NULL, 0));
        ret = bdrv_pwrite(bs, off, len, buf, 0);
    } else if (!strcmp(a[0], "read") && n >= 4) {
        g_autofree uint8_t *want = g_malloc(len);
        buf = g_malloc(len);
        fill(want, len, (int)strtol(a[3], NULL, 0));
        ret = bdrv_pread(bs, off, len, buf, 0);
        if (ret == 0 && memcmp(buf, want, len)) {
            fprintf(stderr, "Pattern verification failed at %" PRIu64 "\n",
                    off);
            return -EILSEQ;
        }
    } else if (!strcmp(a[0], "zero") && n >= 3) {
        ret = bdrv_pwrite_zeroes(bs, off, len, n > 3 ? BDRV_REQ_MAY_UNMAP
                                                     : 0);
    } else if (!strcmp(a[0], "discard") && n >= 3) {
        ret = bdrv_pdiscard(bs, off, len);
    } else if (!strcmp(a[0], "flush")) {
        ret = bdrv_flush(bs);
    } else if (!strcmp(a[0], "map")) {
        int64_t pos = 0, size = bdrv_getlength(bs);
        while (pos < size) {
            int64_t pnum, map = 0;
            int st = bdrv_block_status(bs, pos, size - pos, &pnum, &map,
                                       NULL);
            if (st < 0) {
                return st;
            }
            printf("%" PRId64 " %" PRId64 " %d %" PRId64 "\n", pos, pnum,
                   st & ~BDRV_BLOCK_EOF, map);
            pos += pnum;
        }
    } else if (!strcmp(a[0], "resize") && n >= 2) {
        g_autoptr(GError) err = NULL;
        ret = bdrv_truncate(bs, off, false, PREALLOC_MODE_OFF, &err);
        if (ret < 0) {
            error_report("%s", err->message);
        }
    } else if (!strcmp(a[0], "dump") && n >= 2) {
        int64_t size = bdrv_getlength(bs);
        FILE *f = fopen(a[1], "wb");
        buf = g_malloc(1 << 20);
        for (int64_t p = 0; f && p < size && ret == 0; p += 1 << 20) {
            int64_t k = MIN(size - p, 1 << 20);
            ret = bdrv_pread(bs, p, k, buf, 0);
            if (ret == 0 && fwrite(buf, 1, k, f) != (size_t)k) {
                ret = -EIO;
            }
        }
        if (!f || fclose(f)) {
            ret = -EIO;
        }
    } else {
        fprintf(stderr, "bad io command '%s'\n", a[0]);
        return -EINVAL;
    }
    return ret;
}

static int cmd_io(int argc, char **argv)
{
    int flags = BDRV_O_RDWR;
    const char *o = NULL;
    int i = 3, ret = 0;
    BlockDriverState *bs;

    for (; i < argc && argv[i][0] == '-'; i++) {
        if (!strcmp(argv[i], "-r")) {
            flags &= ~BDRV_O_RDWR;
        } else if (!strcmp(argv[i], "-o") && i + 1 < argc) {
            o = argv[++i];
        }
    }
    bs = open_img(argv[2], o, flags);
    while (i < argc && ret == 0) {
        int j = i;
        while (j < argc && strcmp(argv[j], ";")) {
            j++;
        }
        ret = io_one(bs, argv + i, j - i);
        if (ret < 0) {
            fprintf(stderr, "%s failed: %s\n", argv[i], strerror(-ret));
        }
        i = j + 1;
    }
    bdrv_unref(bs);
    return ret < 0 ? 1 : 0;
}

/*
 * Random writes (some of them zero writes) with flushes now and then, for
 * crash tests.  The log gets "P off len pat" before a request, "W" once it
 * returned, "F" once a flush returned: every P followed by W before the
 * last F must read back after a crash; later ones may or may not.
 */
static int cmd_crashwriter(int argc, char **argv)
{
    uint32_t seed = (uint32_t)num(argv[3]);
    uint64_t count = num(argv[4]);
    uint64_t maxlen = argc > 6 ? num(argv[6]) : 256 * 1024;
    BlockDriverState *bs = open_img(argv[2], NULL, BDRV_O_RDWR);
    int64_t size = bdrv_getlength(bs);
    FILE *log = fopen(argv[5], "a");
    GRand *r = g_rand_new_with_seed(seed);
    g_autofree uint8_t *buf = g_malloc(maxlen);

    if (!log) {
        return 1;
    }
    setvbuf(log, NULL, _IONBF, 0);
    for (uint64_t i = 0; i < count; i++) {
        uint64_t len = (uint64_t)g_rand_int_range(r, 1, (gint32)(maxlen / 512)
                                                  + 1) * 512;
        uint64_t off = (uint64_t)g_rand_int_range(r, 0, (gint32)(
                           (size - (int64_t)len) / 512)) * 512;
        int pat = g_rand_int_range(r, 0, 10) ? g_rand_int_range(r, 1, 256)
                                             : 0;
        int ret;

        fprintf(log, "P %" PRIu64 " %" PRIu64 " %d\n", off, len, pat);
        if (pat) {
            memset(buf, pat, len);
            ret = bdrv_pwrite(bs, off, len, buf, 0);
        } else {
            ret = bdrv_pwrite_zeroes(bs, off, len, g_rand_boolean(r)
                                     ? BDRV_REQ_MAY_UNMAP : 0);
        }
        if (ret < 0) {
            fprintf(stderr, "write failed: %s\n", strerror(-ret));
            return 1;
        }
        fprintf(log, "W\n");
        if (g_rand_int_range(r, 0, 8) == 0) {
            if (bdrv_flush(bs) < 0) {
                return 1;
            }
            fprintf(log, "F\n");
        }
    }
    bdrv_flush(bs);
    fprintf(log, "F\nDONE\n");
    fclose(log);
    g_rand_free(r);
    bdrv_unref(bs);
    return 0;
}

typedef struct ThreadArg {
    BlockDriverState *bs;
    int id, nthreads;
    uint64_t nwrites;
    uint32_t seed;
    int failed;
} ThreadArg;

/*
 * Each thread owns every nthreads-th 4 KiB block of the first NWRITES *
 * nthreads blocks and writes its id + 1 into each of them, in a random
 * order: afterwards every block of that range must hold its owner's id.
 */
static gpointer writer_thread(gpointer p)
{
    ThreadArg *t = p;
    GRand *r = g_rand_new_with_seed(t->seed + t->id);
    int64_t n = (int64_t)t->nwrites;
    int64_t *order = g_new(int64_t, n);
    uint8_t buf[4096];

    for (int64_t i = 0; i < n; i++) {
        order[i] = i;
    }
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = g_rand_int_range(r, 0, (gint32)i + 1), tmp = order[i];
        order[i] = order[j];
        order[j] = tmp;
    }
    memset(buf, t->id + 1, sizeof(buf));
    for (int64_t i = 0; i < n; i++) {
        int64_t blk = order[i] * t->nthreads + t->id;
        if (bdrv_pwrite(t->bs, blk * 4096, 4096, buf, 0) < 0) {
            t->failed = 1;
        }
    }
    g_free(order);
    g_rand_free(r);
    return NULL;
}

static int cmd_threads(int argc, char **argv)
{
    BlockDriverState *bs = open_img(argv[2], NULL, BDRV_O_RDWR);
    int n = (int)num(argv[3]);
    ThreadArg *args = g_new0(ThreadArg, n);
    GThread **th = g_new0(GThread *, n);
    int failed = 0;

    for (int i = 0; i < n; i++) {
        args[i] = (ThreadArg){ bs, i, n, num(argv[4]),
                               (uint32_t)num(argv[5]), 0 };
        th[i] = g_thread_new("w", writer_thread, &args[i]);
    }
    for (int i = 0; i < n; i++) {
        g_thread_join(th[i]);
        failed |= args[i].failed;
    }
    bdrv_unref(bs);
    g_free(args);
    g_free(th);
    return failed;
}

int main(int argc, char **argv)
{
    error_set_progname("qcow2-tool");
    if (argc < 3) {
        fprintf(stderr, "usage: see the top of qcow2-tool.c\n");
        return 1;
    }
    if (!strcmp(argv[1], "create")) {
        return cmd_create(argc, argv);
    } else if (!strcmp(argv[1], "info")) {
        return cmd_info(argc, argv);
    } else if (!strcmp(argv[1], "check")) {
        return cmd_check(argc, argv);
    } else if (!strcmp(argv[1], "io")) {
        return cmd_io(argc, argv);
    } else if (!strcmp(argv[1], "crashwriter") && argc >= 6) {
        return cmd_crashwriter(argc, argv);
    } else if (!strcmp(argv[1], "threads") && argc >= 6) {
        return cmd_threads(argc, argv);
    }
    fprintf(stderr, "unknown command '%s'\n", argv[1]);
    return 1;
}
