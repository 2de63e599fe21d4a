/*
 * qemu-io data commands: read, write, discard, truncate, and the
 * "wrote N/N bytes at offset O" + timing report they print.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "qapi/error.h"
#include "io-int.h"

/* Elapsed time between two CLOCK_MONOTONIC samples, as a timeval. */
static struct timeval io_elapsed(const struct timespec *a,
                                 const struct timespec *b)
{
    int64_t ns = (b->tv_sec - a->tv_sec) * INT64_C(1000000000) +
                 (b->tv_nsec - a->tv_nsec);
    struct timeval tv = {
        .tv_sec = ns / 1000000000,
        .tv_usec = (ns % 1000000000) / 1000,
    };
    return tv;
}

static double io_per_sec(double value, const struct timeval *tv)
{
    return value / ((double)tv->tv_sec + (double)tv->tv_usec / 1000000.0);
}

/* "00.12 sec" below a second, "H:MM:SS.hh" above (always with -C). */
static void io_timestr(const struct timeval *tv, char *ts, size_t size,
                       bool fixed)
{
    unsigned hundredths = (unsigned)(tv->tv_usec / 10000);
    unsigned sec = (unsigned)tv->tv_sec;

    if (fixed || sec) {
        snprintf(ts, size, "%u:%02u:%02u.%02u", sec / 3600,
                 (sec % 3600) / 60, sec % 60, hundredths);
    } else {
        snprintf(ts, size, "%02u.%02u sec", sec, hundredths);
    }
}

static void io_report(const char *op, const struct timeval *tv,
                      int64_t offset, int64_t count, int64_t total, int cnt,
                      bool machine)
{
    char s1[64], s2[64], ts[64];

    io_timestr(tv, ts, sizeof(ts), machine);
    if (machine) {
        /* bytes,ops,time,bytes/sec,ops/sec */
        printf("%" PRId64 ",%d,%s,%.3f,%.3f\n", total, cnt, ts,
               io_per_sec((double)total, tv), io_per_sec((double)cnt, tv));
        return;
    }
    io_cvtstr((double)total, s1, sizeof(s1));
    io_cvtstr(io_per_sec((double)total, tv), s2, sizeof(s2));
    printf("%s %" PRId64 "/%" PRId64 " bytes at offset %" PRId64 "\n", op,
           total, count, offset);
    printf("%s, %d ops; %s (%s/sec and %.4f ops/sec)\n", s1, cnt, ts, s2,
           io_per_sec((double)cnt, tv));
}

/* A pattern byte: 0..255, decimal or 0x hex, whole string. */
static int io_parse_pattern(const char *arg)
{
    char *end = NULL;
    long v = strtol(arg, &end, 0);

    if (v < 0 || v > 0xff || *end || end == arg) {
        printf("%s is not a valid pattern byte\n", arg);
        return -1;
    }
    return (int)v;
}

/* Parse "OFFSET LEN" at argv[optind]; prints errors. */
static int io_parse_range(char **argv, int64_t *offset, int64_t *count)
{
    *offset = io_cvtnum(argv[optind]);
    if (*offset < 0) {
        io_print_cvtnum_err(*offset, argv[optind]);
        return (int)*offset;
    }
    optind++;
    *count = io_cvtnum(argv[optind]);
    if (*count < 0) {
        io_print_cvtnum_err(*count, argv[optind]);
        return (int)*count;
    }
    if (*count > IO_MAX_REQUEST) {
        printf("length cannot exceed %" PRId64 ", given %s\n",
               IO_MAX_REQUEST, argv[optind]);
        return -EINVAL;
    }
    return 0;
}

/* The node's length, checked so out-of-range requests fail like QEMU. */
static int io_check_range(IoState *s, int64_t offset, int64_t count)
{
    int64_t len = bdrv_getlength(s->bs);

    if (len < 0) {
        return (int)len;
    }
    if (offset > len || count > len - offset) {
        return -EIO;
    }
    return 0;
}

static uint8_t *io_alloc(int64_t count, int pattern)
{
    void *buf = NULL;

    if (posix_memalign(&buf, 4096, count ? (size_t)count : 1)) {
        return NULL;
    }
    memset(buf, pattern, count);
    return buf;
}

typedef struct {
    bool machine, quiet, verbose, pflag;
    int pattern;
    int64_t poff, plen;
    bool has_poff, has_plen;
} IoReadOpts;

static int io_read_opts(int argc, char **argv, IoReadOpts *o)
{
    int c;

    while ((c = getopt(argc, argv, "bCl:pP:qs:v")) != -1) {
        switch (c) {
        case 'b':
            printf("reading the VM state is not supported\n");
            return -ENOTSUP;
        case 'C':
            o->machine = true;
            break;
        case 'l':
            o->has_plen = true;
            o->plen = io_cvtnum(optarg);
            if (o->plen < 0) {
                io_print_cvtnum_err(o->plen, optarg);
                return -EINVAL;
            }
            break;
        case 'p':
            break;          /* ignored, as in QEMU */
        case 'P':
            o->pflag = true;
            o->pattern = io_parse_pattern(optarg);
            if (o->pattern < 0) {
                return -EINVAL;
            }
            break;
        case 'q':
            o->quiet = true;
            break;
        case 's':
            o->has_poff = true;
            o->poff = io_cvtnum(optarg);
            if (o->poff < 0) {
                io_print_cvtnum_err(o->poff, optarg);
                return -EINVAL;
            }
            break;
        case 'v':
            o->verbose = true;
            break;
        default:
            return io_usage("read");
        }
    }
    if (optind != argc - 2 || (!o->pflag && (o->has_plen || o->has_poff))) {
        return io_usage("read");
    }
    return 0;
}

static void io_dump_buffer(const uint8_t *buf, int64_t offset, int64_t len)
{
    for (int64_t i = 0; i < len; i += 16) {
        int64_t n = MIN(16, len - i);

        printf("%08" PRIx64 ":  ", (uint64_t)(offset + i));
        for (int64_t j = 0; j < n; j++) {
            printf("%02x ", buf[i + j]);
        }
        printf(" ");
        for (int64_t j = 0; j < n; j++) {
            printf("%c", g_ascii_isalnum(buf[i + j]) ? buf[i + j] : '.');
        }
        printf("\n");
    }
}

int io_read_f(IoState *s, int argc, char **argv)
{
    IoReadOpts o = { 0 };
    struct timespec t1, t2;
    struct timeval tv;
    g_autofree uint8_t *cmp = NULL;
    int64_t offset, count;
    uint8_t *buf;
    int ret = io_read_opts(argc, argv, &o);

    if (ret < 0 || (ret = io_parse_range(argv, &offset, &count)) < 0) {
        return ret;
    }
    if (!o.has_plen) {
        o.plen = count - o.poff;
    }
    if (o.plen < 0 || o.plen + o.poff > count) {
        printf("pattern verification range exceeds end of read data\n");
        return -EINVAL;
    }
    buf = io_alloc(count, 0xab);
    if (!buf) {
        printf("read failed: %s\n", g_strerror(ENOMEM));
        return -ENOMEM;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    ret = io_check_range(s, offset, count);
    if (ret == 0 && count) {
        ret = bdrv_pread(s->bs, offset, count, buf, 0);
    }
    clock_gettime(CLOCK_MONOTONIC, &t2);
    if (ret < 0) {
        printf("read failed: %s\n", g_strerror(-ret));
        free(buf);
        return ret;
    }
    if (o.pflag) {
        cmp = g_malloc(o.plen ? o.plen : 1);
        memset(cmp, o.pattern, o.plen);
        if (memcmp(buf + o.poff, cmp, o.plen)) {
            printf("Pattern verification failed at offset %" PRId64 ", %"
                   PRId64 " bytes\n", offset + o.poff, o.plen);
            ret = -EINVAL;
        }
    }
    if (!o.quiet) {
        if (o.verbose) {
            io_dump_buffer(buf, offset, count);
        }
        tv = io_elapsed(&t1, &t2);
        io_report("read", &tv, offset, count, count, 1, o.machine);
    }
    free(buf);
    return ret;
}

typedef struct {
    bool machine, quiet, zero, pflag;
    int flags;
    int pattern;
} IoWriteOpts;

static int io_write_opts(int argc, char **argv, IoWriteOpts *o)
{
    int c;

    o->pattern = 0xcd;
    while ((c = getopt(argc, argv, "bcCfnpP:qs:uz")) != -1) {
        switch (c) {
        case 'b':
            printf("writing the VM state is not supported\n");
            return -ENOTSUP;
        case 'c':
            printf("compressed writes are not supported\n");
            return -ENOTSUP;
        case 's':
            printf("writing from a pattern file is not supported\n");
            return -ENOTSUP;
        case 'C':
            o->machine = true;
            break;
        case 'f':
            o->flags |= BDRV_REQ_FUA;
            break;
        case 'n':
            o->flags |= BDRV_REQ_NO_FALLBACK;
            break;
        case 'p':
            break;          /* ignored, as in QEMU */
        case 'P':
            o->pflag = true;
            o->pattern = io_parse_pattern(optarg);
            if (o->pattern < 0) {
                return -EINVAL;
            }
            break;
        case 'q':
            o->quiet = true;
            break;
        case 'u':
            o->flags |= BDRV_REQ_MAY_UNMAP;
            break;
        case 'z':
            o->zero = true;
            break;
        default:
            return io_usage("write");
        }
    }
    if (optind != argc - 2) {
        return io_usage("write");
    }
    if ((o->flags & BDRV_REQ_NO_FALLBACK) && !o->zero) {
        printf("-n requires -z to be specified\n");
        return -EINVAL;
    }
    if ((o->flags & BDRV_REQ_MAY_UNMAP) && !o->zero) {
        printf("-u requires -z to be specified\n");
        return -EINVAL;
    }
    if (o->zero && o->pflag) {
        printf("Only one of -z, -P, and -s can be specified at the same "
               "time\n");
        return -EINVAL;
    }
    return 0;
}

int io_write_f(IoState *s, int argc, char **argv)
{
    IoWriteOpts o = { 0 };
    struct timespec t1, t2;
    struct timeval tv;
    int64_t offset, count;
    uint8_t *buf = NULL;
    int ret = io_write_opts(argc, argv, &o);

    if (ret < 0 || (ret = io_parse_range(argv, &offset, &count)) < 0) {
        return ret;
    }
    if (!o.zero) {
        buf = io_alloc(count, o.pattern);
        if (!buf) {
            printf("write failed: %s\n", g_strerror(ENOMEM));
            return -ENOMEM;
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    ret = io_check_range(s, offset, count);
    if (ret == 0 && count && o.zero) {
        ret = bdrv_pwrite_zeroes(s->bs, offset, count,
                                 o.flags | s->write_flags);
    } else if (ret == 0 && count) {
        ret = bdrv_pwrite(s->bs, offset, count, buf,
                          o.flags | s->write_flags);
    }
    clock_gettime(CLOCK_MONOTONIC, &t2);
    free(buf);
    if (ret < 0) {
        printf("write failed: %s\n", g_strerror(-ret));
        return ret;
    }
    if (!o.quiet) {
        tv = io_elapsed(&t1, &t2);
        io_report("wrote", &tv, offset, count, count, 1, o.machine);
    }
    return 0;
}

int io_discard_f(IoState *s, int argc, char **argv)
{
    bool machine = false, quiet = false;
    struct timespec t1, t2;
    struct timeval tv;
    int64_t offset, count;
    int c, ret;

    while ((c = getopt(argc, argv, "Cq")) != -1) {
        switch (c) {
        case 'C':
            machine = true;
            break;
        case 'q':
            quiet = true;
            break;
        default:
            return io_usage("discard");
        }
    }
    if (optind != argc - 2) {
        return io_usage("discard");
    }
    ret = io_parse_range(argv, &offset, &count);
    if (ret < 0) {
        return ret;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    ret = io_check_range(s, offset, count);
    if (ret == 0 && count) {
        ret = bdrv_pdiscard(s->bs, offset, count);
    }
    clock_gettime(CLOCK_MONOTONIC, &t2);
    if (ret < 0) {
        printf("discard failed: %s\n", g_strerror(-ret));
        return ret;
    }
    if (!quiet) {
        tv = io_elapsed(&t1, &t2);
        io_report("discard", &tv, offset, count, count, 1, machine);
    }
    return 0;
}

int io_truncate_f(IoState *s, int argc, char **argv)
{
    g_autoptr(GError) err = NULL;
    int prealloc = PREALLOC_MODE_OFF;
    int64_t offset;
    int c;

    while ((c = getopt(argc, argv, "m:")) != -1) {
        switch (c) {
        case 'm':
            prealloc = prealloc_mode_parse(optarg);
            if (prealloc < 0) {
                error_report("Invalid preallocation mode '%s'", optarg);
                return -EINVAL;
            }
            break;
        default:
            return io_usage("truncate");
        }
    }
    if (optind != argc - 1) {
        return io_usage("truncate");
    }
    offset = io_cvtnum(argv[optind]);
    if (offset < 0) {
        io_print_cvtnum_err(offset, argv[optind]);
        return (int)offset;
    }
    if (bdrv_truncate(s->bs, offset, false, (PreallocMode)prealloc,
                      &err) < 0) {
        error_report("%s", err->message);
        return -EIO;
    }
    return 0;
}
