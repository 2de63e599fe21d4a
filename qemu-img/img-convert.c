/*
 * qemu-img convert: copy the guest-visible contents of one or more images
 * (concatenated) into a new image of any format we can create, or into an
 * existing one with -n.
 *
 * Zero ranges of the source are not written when the target is known to
 * read as zeroes (freshly created without a backing file, or
 * --target-is-zero); data buffers are scanned in -S sized units so that
 * runs of zeroes stay sparse.  With -B, ranges the source leaves to its
 * backing chain are left to the target's backing file.
 *
 * --bitmaps copies persistent bitmaps after the data copy in
 * img_convert_run() (checks first, before the target exists): img-bitmap.c.
 */
#include <stdio.h>
#include <string.h>

#include "qapi/error.h"
#include "img-bitmap.h"
#include "img-cmds.h"
#include "img-create.h"

#define CONV_BUF (2 * 1024 * 1024)

typedef struct {
    /* sources */
    GPtrArray *src_names;
    const char *src_fmt;
    const char *src_cache;
    bool src_image_opts;
    bool force_share;
    /* target */
    const char *out_name;
    const char *out_fmt;
    const char *cache;
    const char *backing;
    const char *backing_fmt;
    GPtrArray *optstrs;
    bool target_image_opts;
    bool no_create;
    bool target_is_zero;
    bool compress;
    int64_t sparse;         /* -S: 0 disables zero detection */
    bool progress;
    bool quiet;
    bool bitmaps;           /* --bitmaps: see img-bitmap.c */
    bool skip_broken;       /* --skip-broken-bitmaps */
} ImgConvertArgs;

typedef struct {
    BlockDriverState *out;
    uint8_t *buf;
    bool out_zero;          /* the target reads as zeroes before we write */
    bool has_backing;       /* -B: keep unallocated ranges unallocated */
    int write_flags;        /* BDRV_REQ_FUA with -t writethrough */
    int64_t sparse;
    int64_t done;
    int64_t total;
} ImgConvertState;

static int img_convert_write(ImgConvertState *s, int64_t off, int64_t n,
                             const uint8_t *buf)
{
    int ret = bdrv_pwrite(s->out, off, n, buf, s->write_flags);

    if (ret < 0) {
        error_report("error while writing at byte %" PRId64 ": %s", off,
                     g_strerror(-ret));
    }
    return ret;
}

static int img_convert_zero(ImgConvertState *s, int64_t off, int64_t n)
{
    int ret;

    if (s->out_zero) {
        return 0;
    }
    ret = bdrv_pwrite_zeroes(s->out, off, n,
                             BDRV_REQ_MAY_UNMAP | s->write_flags);
    if (ret < 0) {
        error_report("error while writing at byte %" PRId64 ": %s", off,
                     g_strerror(-ret));
    }
    return ret;
}

/* Write @buf (@n bytes of data for @off), keeping zero units sparse. */
static int img_convert_data(ImgConvertState *s, int64_t off, int64_t n)
{
    int64_t i = 0;

    if (s->sparse <= 0) {
        return img_convert_write(s, off, n, s->buf);
    }
    while (i < n) {
        int64_t unit = MIN(s->sparse - (off + i) % s->sparse, n - i);
        bool zero = img_buf_is_zero(s->buf + i, unit);
        int64_t j = i + unit;
        int ret;

        /* Extend the run while units keep the same kind. */
        while (j < n) {
            int64_t u = MIN(s->sparse, n - j);
            if (img_buf_is_zero(s->buf + j, u) != zero) {
                break;
            }
            j += u;
        }
        ret = zero ? img_convert_zero(s, off + i, j - i)
                   : img_convert_write(s, off + i, j - i, s->buf + i);
        if (ret < 0) {
            return ret;
        }
        i = j;
    }
    return 0;
}

/* Copy source @bs to the target at @base. */
static int img_convert_one(ImgConvertState *s, BlockDriverState *bs,
                           int64_t base)
{
    int64_t len = bdrv_getlength(bs);

    if (len < 0) {
        error_report("Could not get size of the source: %s",
                     g_strerror((int)-len));
        return -1;
    }
    for (int64_t off = 0; off < len;) {
        int64_t pnum;
        int depth = 0;
        int st = bdrv_block_status_above(bs, off, MIN(len - off, CONV_BUF),
                                         &pnum, NULL, NULL, &depth);
        int ret;

        if (st < 0) {
            error_report("error while reading block status at offset %"
                         PRId64 ": %s", off, g_strerror(-st));
            return -1;
        }
        if (s->has_backing && depth != 1) {
            ret = 0;        /* the target's backing file provides it */
        } else if (st & BDRV_BLOCK_ZERO) {
            ret = img_convert_zero(s, base + off, pnum);
        } else {
            ret = bdrv_pread(bs, off, pnum, s->buf, 0);
            if (ret < 0) {
                error_report("error while reading at byte %" PRId64 ": %s",
                             off, g_strerror(-ret));
                return -1;
            }
            ret = img_convert_data(s, base + off, pnum);
        }
        if (ret < 0) {
            return -1;
        }
        off += pnum;
        s->done += pnum;
        img_progress_print(s->total ? s->done * 100.0 / s->total : 100);
    }
    return 0;
}

/* Read @n bytes at @off of the concatenated sources (zeroes unread). */
static int img_convert_read_concat(GPtrArray *srcs, int64_t off, int64_t n,
                                   uint8_t *buf)
{
    int64_t base = 0;

    for (guint i = 0; i < srcs->len && n > 0; i++) {
        BlockDriverState *bs = srcs->pdata[i];
        int64_t len = bdrv_getlength(bs);

        if (len < 0) {
            return (int)len;
        }
        while (n > 0 && off < base + len) {
            int64_t pnum;
            int depth = 0;
            int st = bdrv_block_status_above(bs, off - base,
                                             MIN(n, base + len - off), &pnum,
                                             NULL, NULL, &depth);
            if (st < 0) {
                return st;
            }
            if (st & BDRV_BLOCK_ZERO) {
                memset(buf, 0, pnum);
            } else {
                st = bdrv_pread(bs, off - base, pnum, buf, 0);
                if (st < 0) {
                    return st;
                }
            }
            off += pnum;
            n -= pnum;
            buf += pnum;
        }
        base += len;
    }
    return 0;
}

/*
 * convert -c: copy whole target clusters, each written compressed (the
 * driver stores it plainly when it does not shrink); zero clusters are
 * left alone on a target that reads as zeroes.
 */
static int img_convert_compressed(ImgConvertState *s, GPtrArray *srcs)
{
    BlockDriverInfo bdi = {0};
    int64_t out_len = bdrv_getlength(s->out);
    int64_t cs, chunk;

    if (bdrv_get_info(s->out, &bdi) < 0 || !bdi.cluster_size) {
        error_report("Compression not supported for this file format");
        return -1;
    }
    cs = bdi.cluster_size;
    chunk = MAX(CONV_BUF / cs * cs, cs);
    if (chunk > CONV_BUF) {
        s->buf = g_realloc(s->buf, chunk);
    }
    for (int64_t off = 0; off < s->total; off += chunk) {
        int64_t n = MIN(chunk, s->total - off);
        int ret = img_convert_read_concat(srcs, off, n, s->buf);

        if (ret < 0) {
            error_report("error while reading at byte %" PRId64 ": %s", off,
                         g_strerror(-ret));
            return -1;
        }
        for (int64_t i = 0; i < n; i += cs) {
            int64_t len = MIN(cs, n - i);

            if (off + i + len == s->total && out_len > s->total &&
                out_len - (off + i) <= cs) {
                /* A partial last cluster must reach the target's end. */
                memset(s->buf + i + len, 0, out_len - s->total);
                len = out_len - (off + i);
            }
            if (img_buf_is_zero(s->buf + i, len)) {
                ret = img_convert_zero(s, off + i, len);
            } else {
                ret = bdrv_pwrite(s->out, off + i, len, s->buf + i,
                                  BDRV_REQ_WRITE_COMPRESSED | s->write_flags);
                if (ret == -ENOTSUP) {
                    error_report("Compression not supported for this file "
                                 "format");
                    return -1;
                }
                if (ret < 0) {
                    error_report("error while compressing sector %" PRId64
                                 ": %s", (off + i) / 512, g_strerror(-ret));
                    return -1;
                }
            }
            if (ret < 0) {
                return -1;
            }
        }
        s->done += n;
        img_progress_print(s->total ? s->done * 100.0 / s->total : 100);
    }
    return 0;
}

/* Create the target (unless -n) with the sources' total size. */
static bool img_convert_create(ImgConvertArgs *a, int64_t total)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(ImgCreateOpts) o = img_create_opts_new(a->out_fmt);
    g_autofree char *size = g_strdup_printf("%" PRId64, total);

    for (guint i = 0; i < a->optstrs->len; i++) {
        if (!img_create_opts_parse(o, a->optstrs->pdata[i], &err)) {
            error_report("%s", err->message);
            return false;
        }
    }
    if (a->backing &&
        (!img_create_opts_set(o, "backing_file", a->backing, &err) ||
         (a->backing_fmt &&
          !img_create_opts_set(o, "backing_fmt", a->backing_fmt, &err)))) {
        error_report("%s", err->message);
        return false;
    }
    if (!img_create_opts_set(o, "size", size, &err) ||
        !img_create_image(o, a->out_name, false, true, &err)) {
        error_report("%s: error while converting %s: %s", a->out_name,
                     a->out_fmt, err->message);
        return false;
    }
    return true;
}

static int img_convert_run(ImgConvertArgs *a)
{
    g_autoptr(GPtrArray) srcs = g_ptr_array_new_with_free_func(
        (GDestroyNotify)bdrv_unref);
    g_autoptr(BlockDriverState) out = NULL;
    ImgConvertState s = { .sparse = a->sparse };
    ImgOpenArgs ta = {
        .filename = a->out_name,
        .fmt = a->target_image_opts ? NULL : a->out_fmt,
        .image_opts = a->target_image_opts,
        .writable = true,
        .cache = a->cache,
        .flags = BDRV_O_NO_BACKING,
    };
    int64_t base = 0;
    int ret = 0;

    for (guint i = 0; i < a->src_names->len; i++) {
        ImgOpenArgs sa = {
            .filename = a->src_names->pdata[i],
            .fmt = a->src_fmt,
            .image_opts = a->src_image_opts,
            .force_share = a->force_share,
            .cache = a->src_cache,
        };
        BlockDriverState *bs = img_open(&sa);
        int64_t len;

        if (!bs) {
            return IMG_EXIT_FAILURE;
        }
        g_ptr_array_add(srcs, bs);
        len = bdrv_getlength(bs);
        if (len < 0) {
            error_report("Could not get size of %s: %s", sa.filename,
                         g_strerror((int)-len));
            return IMG_EXIT_FAILURE;
        }
        s.total += len;
    }
    if (a->bitmaps && srcs->len != 1) {
        error_report("Copying bitmaps only possible with single source");
        return IMG_EXIT_FAILURE;
    }
    if (a->bitmaps && !img_bitmaps_convert_check(srcs->pdata[0], a->out_fmt,
                                                 a->skip_broken)) {
        return IMG_EXIT_FAILURE;
    }
    if (!a->no_create && !img_convert_create(a, s.total)) {
        return IMG_EXIT_FAILURE;
    }
    out = img_open(&ta);
    if (!out) {
        return IMG_EXIT_FAILURE;
    }
    if (a->no_create) {
        int64_t out_len = bdrv_getlength(out);

        if (out_len >= 0 && out_len < s.total) {
            error_report("output file is smaller than input file");
            return IMG_EXIT_FAILURE;
        }
    }
    s.out = out;
    s.has_backing = a->backing != NULL;
    s.write_flags = img_cache_writethrough(a->cache) ? BDRV_REQ_FUA : 0;
    s.out_zero = (!a->no_create && !a->backing) || a->target_is_zero;
    s.buf = g_malloc(CONV_BUF);
    img_progress_init(a->progress && !a->quiet);
    img_progress_print(0);
    if (a->compress) {
        ret = img_convert_compressed(&s, srcs);
    }
    for (guint i = 0; i < srcs->len && ret == 0 && !a->compress; i++) {
        ret = img_convert_one(&s, srcs->pdata[i], base);
        base += bdrv_getlength(srcs->pdata[i]);
    }
    if (ret == 0 && a->bitmaps &&
        !img_bitmaps_convert_copy(srcs->pdata[0], out, a->skip_broken)) {
        ret = -1;
    }
    if (ret == 0 && !img_finish_writes(out, ta.filename)) {
        ret = -1;
    }
    if (ret == 0) {
        img_progress_print(100);
    }
    img_progress_end();
    g_free(s.buf);
    return ret < 0 ? IMG_EXIT_FAILURE : 0;
}

/* Checks that need every option; returns -1 to go on or an exit code. */
static int img_convert_validate(ImgConvertArgs *a)
{
    if (a->src_image_opts && a->src_fmt) {
        error_report("--image-opts and -f are mutually exclusive");
        return IMG_EXIT_FAILURE;
    }
    if (!bdrv_find_format(a->out_fmt) ||
        !img_create_has_opt(a->out_fmt, "size")) {
        error_report("Unknown file format '%s'", a->out_fmt);
        return IMG_EXIT_FAILURE;
    }
    if (a->compress && strcmp(a->out_fmt, "qcow2") != 0) {
        /* Only qcow2 takes BDRV_REQ_WRITE_COMPRESSED. */
        error_report("Compression not supported for this file format");
        return IMG_EXIT_FAILURE;
    }
    if (a->backing && !a->backing_fmt) {
        error_report("Use of backing file requires explicit backing format");
        return IMG_EXIT_FAILURE;
    }
    if (a->backing && a->no_create) {
        error_report("-B makes no sense when skipping image creation (-n)");
        return IMG_EXIT_FAILURE;
    }
    if (a->target_image_opts && !a->no_create) {
        error_report("--target-image-opts requires use of -n flag");
        return IMG_EXIT_FAILURE;
    }
    if (a->target_is_zero && !a->no_create) {
        error_report("--target-is-zero requires use of -n flag");
        return IMG_EXIT_FAILURE;
    }
    if (a->skip_broken && !a->bitmaps) {
        error_report("Use of --skip-broken-bitmaps requires --bitmaps");
        return IMG_EXIT_FAILURE;
    }
    if (a->sparse && a->sparse % 512) {
        error_report("Invalid buffer size for sparse output specified");
        return IMG_EXIT_FAILURE;
    }
    return -1;
}

int img_convert(const ImgCmd *cmd, int argc, char **argv)
{
    static const struct option long_opts[] = {
        { "help", no_argument, NULL, 'h' },
        { "object", required_argument, NULL, IMG_OPT_OBJECT },
        { "image-opts", no_argument, NULL, IMG_OPT_IMAGE_OPTS },
        { "target-image-opts", no_argument, NULL, IMG_OPT_TARGET_IMAGE_OPTS },
        { "target-is-zero", no_argument, NULL, IMG_OPT_TARGET_IS_ZERO },
        { "force-share", no_argument, NULL, 'U' },
        { "bitmaps", no_argument, NULL, IMG_OPT_BITMAPS },
        { "skip-broken-bitmaps", no_argument, NULL, IMG_OPT_SKIP_BROKEN },
        { NULL, 0, NULL, 0 },
    };
    g_autoptr(GPtrArray) optstrs = g_ptr_array_new();
    g_autoptr(GPtrArray) srcs = g_ptr_array_new();
    ImgConvertArgs a = {
        .out_fmt = "raw", .sparse = 4096,
        .optstrs = optstrs, .src_names = srcs,
    };
    int c, r;

    while ((c = getopt_long(argc, argv, ":hf:O:B:Cco:l:S:pt:T:qnm:WUr:F:",
                            long_opts, NULL)) != -1) {
        switch (c) {
        case 'h':
            return img_cmd_help(cmd);
        case 'f':
            a.src_fmt = optarg;
            break;
        case 'O':
            a.out_fmt = optarg;
            break;
        case 'B':
            a.backing = optarg;
            break;
        case 'F':
            a.backing_fmt = optarg;
            break;
        case 'c':
            a.compress = true;
            break;
        case 'o':
            g_ptr_array_add(optstrs, optarg);
            break;
        case 'l':
            error_report("Snapshots are not supported");
            return IMG_EXIT_FAILURE;
        case 'S':
            a.sparse = img_cvtnum("buffer size for sparse output", optarg);
            if (a.sparse < 0) {
                return IMG_EXIT_FAILURE;
            }
            break;
        case 'p':
            a.progress = true;
            break;
        case 't':
            a.cache = optarg;
            break;
        case 'T':
            a.src_cache = optarg;
            break;
        case 'q':
            a.quiet = true;
            break;
        case 'n':
            a.no_create = true;
            break;
        case 'U':
            a.force_share = true;
            break;
        case 'C': case 'W': case 'm': case 'r':
            break;          /* tuning knobs: accepted, no effect */
        case IMG_OPT_IMAGE_OPTS:
            a.src_image_opts = true;
            break;
        case IMG_OPT_TARGET_IMAGE_OPTS:
            a.target_image_opts = true;
            break;
        case IMG_OPT_BITMAPS:
            a.bitmaps = true;
            break;
        case IMG_OPT_SKIP_BROKEN:
            a.skip_broken = true;
            break;
        case IMG_OPT_TARGET_IS_ZERO:
            a.target_is_zero = true;
            break;
        case IMG_OPT_OBJECT:
            r = img_handle_object(optarg);
            if (r >= 0) {
                return r;
            }
            break;
        default:
            return img_bad_option(c, argv);
        }
    }
    for (guint i = 0; i < optstrs->len; i++) {
        if (img_create_wants_help(optstrs->pdata[i])) {
            return img_create_print_help(a.out_fmt);
        }
    }
    if (argc - optind < 2) {
        error_report("Must specify image file name");
        return IMG_EXIT_FAILURE;
    }
    for (int i = optind; i < argc - 1; i++) {
        g_ptr_array_add(srcs, argv[i]);
    }
    a.out_name = argv[argc - 1];
    r = img_convert_validate(&a);
    if (r >= 0) {
        return r;
    }
    return img_convert_run(&a);
}
