/*
 * qemu-img bench: issue COUNT reads (or writes) of BUFFER_SIZE bytes with
 * DEPTH requests in flight and report the elapsed time.
 *
 * DEPTH worker threads (a GThreadPool) each take the next request from a
 * shared sequence and run it with the blocking bdrv_pread/bdrv_pwrite; the
 * block layer is thread-safe, so DEPTH requests really are in flight at
 * once.  Offsets follow QEMU's sequence: the first request at OFFSET, each
 * next one STEP further, wrapping at the image size.  With
 * --flush-interval=N a flush follows every N completed requests; unless
 * --no-drain, it waits for the requests in flight and holds back new ones
 * (a reader/writer lock: requests are readers, the flush is the writer).
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qapi/error.h"
#include "img-cmds.h"

typedef struct {
    BlockDriverState *bs;
    bool write;
    int64_t bufsize;
    int64_t step;
    int64_t image_size;
    int pattern;
    int write_flags;        /* BDRV_REQ_FUA with -t writethrough */
    int64_t flush_interval;
    bool drain;

    GMutex lock;            /* protects the fields below */
    int64_t issued;
    int64_t count;
    int64_t next_offset;
    int64_t completed;
    int error;              /* first failure (-errno), 0 if none */

    GRWLock drain_lock;     /* requests read-locked, drained flush writes */
    void **bufs;            /* one filled buffer per worker, made untimed */
} ImgBench;

/* Claim the next request; false when none is left or one failed. */
static bool img_bench_next(ImgBench *b, int64_t *offset)
{
    bool ok;

    g_mutex_lock(&b->lock);
    ok = b->issued < b->count && !b->error;
    if (ok) {
        *offset = b->next_offset;
        b->issued++;
        b->next_offset += b->step;
        if (b->image_size > 0) {
            b->next_offset %= b->image_size;
        } else {
            b->next_offset = 0;
        }
    }
    g_mutex_unlock(&b->lock);
    return ok;
}

static void img_bench_fail(ImgBench *b, int ret)
{
    g_mutex_lock(&b->lock);
    if (!b->error) {
        b->error = ret;
    }
    g_mutex_unlock(&b->lock);
}

/* Count a completion; flush when the interval is reached. */
static void img_bench_done(ImgBench *b)
{
    bool flush;
    int ret;

    g_mutex_lock(&b->lock);
    b->completed++;
    flush = b->flush_interval && b->completed % b->flush_interval == 0;
    g_mutex_unlock(&b->lock);
    if (!flush) {
        return;
    }
    if (b->drain) {
        g_rw_lock_writer_lock(&b->drain_lock);
    }
    ret = bdrv_flush(b->bs);
    if (b->drain) {
        g_rw_lock_writer_unlock(&b->drain_lock);
    }
    if (ret < 0) {
        img_bench_fail(b, ret);
    }
}

static void img_bench_worker(gpointer data, gpointer user_data)
{
    ImgBench *b = user_data;
    void *buf = b->bufs[GPOINTER_TO_INT(data) - 1];
    int64_t offset;

    while (img_bench_next(b, &offset)) {
        int ret;

        g_rw_lock_reader_lock(&b->drain_lock);
        if (b->write) {
            ret = bdrv_pwrite(b->bs, offset, b->bufsize, buf,
                              b->write_flags);
        } else {
            ret = bdrv_pread(b->bs, offset, b->bufsize, buf, 0);
        }
        g_rw_lock_reader_unlock(&b->drain_lock);
        if (ret < 0) {
            img_bench_fail(b, ret);
            break;
        }
        img_bench_done(b);
    }
}

/* Like QEMU's bench, buffers are allocated and filled before the clock. */
static bool img_bench_alloc_bufs(ImgBench *b, int workers)
{
    b->bufs = g_new0(void *, workers);
    for (int i = 0; i < workers; i++) {
        if (posix_memalign(&b->bufs[i], 4096, MAX(b->bufsize, 1)) != 0) {
            return false;
        }
        memset(b->bufs[i], b->pattern, b->bufsize);
    }
    return true;
}

static void img_bench_free_bufs(ImgBench *b, int workers)
{
    for (int i = 0; b->bufs && i < workers; i++) {
        free(b->bufs[i]);
    }
    g_free(b->bufs);
    b->bufs = NULL;
}

static int img_bench_run(ImgBench *b, int depth, bool quiet)
{
    g_autoptr(GError) err = NULL;
    GThreadPool *pool;
    int64_t t0, t1;
    int workers = (int)MIN((int64_t)depth, MAX(b->count, 1));

    printf("Sending %" PRId64 " %s requests, %" PRId64 " bytes each, %d in "
           "parallel (starting at offset %" PRId64 ", step size %" PRId64
           ")\n", b->count, b->write ? "write" : "read", b->bufsize, depth,
           b->next_offset, b->step);
    if (b->flush_interval) {
        printf("Sending flush every %" PRId64 " requests\n",
               b->flush_interval);
    }
    fflush(stdout);
    if (!img_bench_alloc_bufs(b, workers)) {
        img_bench_free_bufs(b, workers);
        error_report("Could not allocate the request buffers");
        return IMG_EXIT_FAILURE;
    }
    t0 = g_get_monotonic_time();
    pool = g_thread_pool_new(img_bench_worker, b, workers, TRUE, &err);
    if (!pool) {
        img_bench_free_bufs(b, workers);
        error_report("Could not start worker threads: %s", err->message);
        return IMG_EXIT_FAILURE;
    }
    for (int i = 0; i < workers; i++) {
        g_thread_pool_push(pool, GINT_TO_POINTER(i + 1), NULL);
    }
    g_thread_pool_free(pool, FALSE, TRUE);
    t1 = g_get_monotonic_time();
    img_bench_free_bufs(b, workers);
    if (b->error) {
        error_report("Failed request: %s", g_strerror(-b->error));
        return IMG_EXIT_FAILURE;
    }
    printf("Run completed in %3.3f seconds.\n", (t1 - t0) / 1e6);
    return 0;
}

/* A positive (or, with @zero_ok, non-negative) int; -1 if malformed. */
static int64_t img_bench_int(const char *arg, bool zero_ok)
{
    char *end = NULL;
    int64_t v;

    errno = 0;
    v = g_ascii_strtoll(arg, &end, 0);
    if (!*arg || *end || errno || v < (zero_ok ? 0 : 1) || v > INT_MAX) {
        return -1;
    }
    return v;
}

typedef struct {
    ImgOpenArgs oa;
    ImgBench b;
    int depth;
    bool quiet;
    bool no_drain;
    int64_t offset;
} ImgBenchArgs;

/* Apply one option; returns -1 to go on or an exit code. */
static int img_bench_opt(ImgBenchArgs *a, const ImgCmd *cmd, int c,
                         char **argv)
{
    int r;

    switch (c) {
    case 'c':
        a->b.count = img_bench_int(optarg, true);
        if (a->b.count < 0) {
            error_report("Invalid request count specified");
            return IMG_EXIT_FAILURE;
        }
        break;
    case 'd':
        a->depth = (int)img_bench_int(optarg, false);
        if (a->depth < 0) {
            error_report("Invalid queue depth specified");
            return IMG_EXIT_FAILURE;
        }
        break;
    case 'i':
        if (strcmp(optarg, "threads") && strcmp(optarg, "native") &&
            strcmp(optarg, "io_uring")) {
            error_report("Invalid aio option: %s", optarg);
            return IMG_EXIT_FAILURE;
        }
        break;
    case 'n':
        a->oa.cache = "none";
        break;
    case 'o':
        a->offset = img_cvtnum("offset", optarg);
        if (a->offset < 0) {
            return IMG_EXIT_FAILURE;
        }
        break;
    case 'q':
        a->quiet = true;
        break;
    case 's':
        a->b.bufsize = img_cvtnum("buffer size", optarg);
        if (a->b.bufsize < 0) {
            return IMG_EXIT_FAILURE;
        }
        if (a->b.bufsize > INT_MAX) {
            error_report("Invalid buffer size specified");
            return IMG_EXIT_FAILURE;
        }
        break;
    case 'S':
        a->b.step = img_cvtnum("step_size", optarg);
        if (a->b.step < 0) {
            return IMG_EXIT_FAILURE;
        }
        break;
    case 't':
        a->oa.cache = optarg;
        if (!img_parse_cache(optarg, &r)) {
            error_report("Invalid cache mode");
            return IMG_EXIT_FAILURE;
        }
        break;
    case 'w':
        a->b.write = true;
        a->oa.writable = true;
        break;
    case IMG_OPT_PATTERN:
        r = (int)img_bench_int(optarg, true);
        if (r < 0 || r > 0xff) {
            error_report("Invalid pattern byte specified");
            return IMG_EXIT_FAILURE;
        }
        a->b.pattern = r;
        break;
    case IMG_OPT_FLUSH_INTERVAL:
        a->b.flush_interval = img_bench_int(optarg, true);
        if (a->b.flush_interval < 0) {
            error_report("Invalid flush interval specified");
            return IMG_EXIT_FAILURE;
        }
        break;
    case IMG_OPT_NO_DRAIN:
        a->no_drain = true;
        break;
    default:
        return img_common_opt(cmd, &a->oa, c, argv);
    }
    return IMG_OPT_CONTINUE;
}

int img_bench(const ImgCmd *cmd, int argc, char **argv)
{
    static const struct option long_opts[] = {
        { "help", no_argument, NULL, 'h' },
        { "flush-interval", required_argument, NULL, IMG_OPT_FLUSH_INTERVAL },
        { "image-opts", no_argument, NULL, IMG_OPT_IMAGE_OPTS },
        { "pattern", required_argument, NULL, IMG_OPT_PATTERN },
        { "no-drain", no_argument, NULL, IMG_OPT_NO_DRAIN },
        { "force-share", no_argument, NULL, 'U' },
        { "object", required_argument, NULL, IMG_OPT_OBJECT },
        { NULL, 0, NULL, 0 },
    };
    g_autoptr(BlockDriverState) bs = NULL;
    ImgBenchArgs a = { .depth = 64 };
    int c, r;

    a.b.count = 75000;
    a.b.bufsize = 4096;
    while ((c = getopt_long(argc, argv, ":hc:d:f:ni:o:qs:S:t:wU", long_opts,
                            NULL)) != -1) {
        r = img_bench_opt(&a, cmd, c, argv);
        if (r >= 0) {
            return r;
        }
    }
    if (optind != argc - 1) {
        return img_usage_error("Expecting one image file name");
    }
    if (a.b.flush_interval && !a.b.write) {
        error_report("--flush-interval is only available in write tests");
        return IMG_EXIT_FAILURE;
    }
    if (a.b.flush_interval && a.b.flush_interval < a.depth) {
        error_report("Flush interval can't be smaller than depth");
        return IMG_EXIT_FAILURE;
    }
    a.oa.filename = argv[optind];
    a.oa.quiet = a.quiet;
    bs = img_open(&a.oa);
    if (!bs) {
        return IMG_EXIT_FAILURE;
    }
    a.b.bs = bs;
    a.b.image_size = bdrv_getlength(bs);
    if (a.b.image_size < 0) {
        error_report("Could not get file length: %s",
                     g_strerror((int)-a.b.image_size));
        return IMG_EXIT_FAILURE;
    }
    a.b.step = a.b.step ? a.b.step : a.b.bufsize;
    a.b.next_offset = a.offset;
    a.b.drain = !a.no_drain;
    a.b.write_flags = img_cache_writethrough(a.oa.cache) ? BDRV_REQ_FUA : 0;
    g_mutex_init(&a.b.lock);
    g_rw_lock_init(&a.b.drain_lock);
    r = img_bench_run(&a.b, a.depth, a.quiet);
    g_rw_lock_clear(&a.b.drain_lock);
    g_mutex_clear(&a.b.lock);
    return r;
}
