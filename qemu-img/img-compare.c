/*
 * qemu-img compare: whether two images show the same guest data.
 * Exit status 0 identical, 1 different, 2 error (usage errors: 1, as
 * QEMU).  Ranges both images report as zero are skipped; ranges only one
 * image allocates must read as zeroes there; a size difference is only a
 * warning unless -s, provided the longer image's tail reads as zeroes.
 * Mismatch offsets are reported at 512-byte granularity like QEMU.
 */
#include <stdio.h>
#include <string.h>

#include "qapi/error.h"
#include "img-cmds.h"

#define CMP_BUF (2 * 1024 * 1024)
#define CMP_SECTOR 512
#define CMP_DIFFERENT 1
#define CMP_ERROR 2

typedef struct {
    BlockDriverState *bs[2];
    const char *name[2];
    uint8_t *buf[2];
    bool quiet;
    bool strict;
} ImgCmp;

/* Offset of the first differing 512-byte block, or -1. */
static int64_t img_cmp_first_diff(const uint8_t *a, const uint8_t *b,
                                  int64_t n)
{
    for (int64_t i = 0; i < n; i += CMP_SECTOR) {
        int64_t k = MIN(CMP_SECTOR, n - i);

        if (a ? memcmp(a + i, b + i, k) : !img_buf_is_zero(b + i, k)) {
            return i;
        }
    }
    return -1;
}

static int img_cmp_read(ImgCmp *c, int which, int64_t off, int64_t n)
{
    int ret = bdrv_pread(c->bs[which], off, n, c->buf[which], 0);

    if (ret < 0) {
        error_report("Error while reading offset %" PRId64 " of %s: %s",
                     off, c->name[which], g_strerror(-ret));
        return CMP_ERROR;
    }
    return 0;
}

/* [off, off + n) of image @which must read as zeroes. */
static int img_cmp_zero(ImgCmp *c, int which, int64_t off, int64_t n)
{
    while (n > 0) {
        int64_t k = MIN(n, CMP_BUF);
        int64_t d;
        int ret = img_cmp_read(c, which, off, k);

        if (ret) {
            return ret;
        }
        d = img_cmp_first_diff(NULL, c->buf[which], k);
        if (d >= 0) {
            img_printf(c->quiet, "Content mismatch at offset %" PRId64 "!\n",
                       off + d);
            return CMP_DIFFERENT;
        }
        off += k;
        n -= k;
    }
    return 0;
}

static int img_cmp_data(ImgCmp *c, int64_t off, int64_t n)
{
    int64_t d;
    int ret = img_cmp_read(c, 0, off, n);

    if (!ret) {
        ret = img_cmp_read(c, 1, off, n);
    }
    if (ret) {
        return ret;
    }
    d = img_cmp_first_diff(c->buf[0], c->buf[1], n);
    if (d >= 0) {
        img_printf(c->quiet, "Content mismatch at offset %" PRId64 "!\n",
                   off + d);
        return CMP_DIFFERENT;
    }
    return 0;
}

static int img_cmp_status(ImgCmp *c, int which, int64_t off, int64_t n,
                          int64_t *pnum)
{
    int ret = bdrv_block_status_above(c->bs[which], off, n, pnum, NULL,
                                      NULL, NULL);

    if (ret < 0) {
        error_report("Sector allocation test failed for %s",
                     c->name[which]);
    }
    return ret;
}

/* Compare [0, size) where both images exist. */
static int img_cmp_common(ImgCmp *c, int64_t size, int64_t total)
{
    for (int64_t off = 0; off < size;) {
        int64_t p0, p1, chunk;
        int s0 = img_cmp_status(c, 0, off, size - off, &p0);
        int s1 = s0 < 0 ? s0 : img_cmp_status(c, 1, off, size - off, &p1);
        int ret = 0;
        bool a0, a1;

        if (s0 < 0 || s1 < 0) {
            return CMP_ERROR;
        }
        chunk = MIN(MIN(p0, p1), CMP_BUF);
        a0 = s0 & BDRV_BLOCK_ALLOCATED;
        a1 = s1 & BDRV_BLOCK_ALLOCATED;
        if (c->strict && (a0 != a1 ||
                          (s0 & BDRV_BLOCK_ZERO) != (s1 & BDRV_BLOCK_ZERO))) {
            img_printf(c->quiet, "Strict mode: Offset %" PRId64
                       " block status mismatch!\n", off);
            return CMP_DIFFERENT;
        }
        if ((s0 & BDRV_BLOCK_ZERO) && (s1 & BDRV_BLOCK_ZERO)) {
            /* both read as zeroes */
        } else if (s0 & BDRV_BLOCK_ZERO) {
            ret = img_cmp_zero(c, 1, off, chunk);
        } else if (s1 & BDRV_BLOCK_ZERO) {
            ret = img_cmp_zero(c, 0, off, chunk);
        } else {
            ret = img_cmp_data(c, off, chunk);
        }
        if (ret) {
            return ret;
        }
        off += chunk;
        img_progress_print(off * 100.0 / total);
    }
    return 0;
}

/* The part of the longer image (@which) past the shorter one's end. */
static int img_cmp_tail(ImgCmp *c, int which, int64_t from, int64_t to)
{
    for (int64_t off = from; off < to;) {
        int64_t pnum;
        int s = img_cmp_status(c, which, off, to - off, &pnum);
        int ret;

        if (s < 0) {
            return CMP_ERROR;
        }
        if ((s & BDRV_BLOCK_ALLOCATED) && !(s & BDRV_BLOCK_ZERO)) {
            ret = img_cmp_zero(c, which, off, pnum);
            if (ret) {
                return ret;
            }
        }
        off += pnum;
        img_progress_print(off * 100.0 / to);
    }
    return 0;
}

static int img_cmp_run(ImgCmp *c)
{
    int64_t len0 = bdrv_getlength(c->bs[0]);
    int64_t len1 = bdrv_getlength(c->bs[1]);
    int ret;

    if (len0 < 0 || len1 < 0) {
        error_report("Can't get size of %s: %s",
                     c->name[len0 < 0 ? 0 : 1],
                     g_strerror((int)-(len0 < 0 ? len0 : len1)));
        return CMP_ERROR;
    }
    if (c->strict && len0 != len1) {
        img_printf(c->quiet, "Strict mode: Image size mismatch!\n");
        return CMP_DIFFERENT;
    }
    c->buf[0] = g_malloc(CMP_BUF);
    c->buf[1] = g_malloc(CMP_BUF);
    ret = img_cmp_common(c, MIN(len0, len1), MAX(len0, len1));
    if (!ret && len0 != len1) {
        img_printf(c->quiet, "Warning: Image size mismatch!\n");
        ret = img_cmp_tail(c, len0 > len1 ? 0 : 1, MIN(len0, len1),
                           MAX(len0, len1));
    }
    g_free(c->buf[0]);
    g_free(c->buf[1]);
    if (!ret) {
        img_printf(c->quiet, "Images are identical.\n");
    }
    return ret;
}

int img_compare(const ImgCmd *cmd, int argc, char **argv)
{
    static const struct option long_opts[] = {
        { "help", no_argument, NULL, 'h' },
        { "object", required_argument, NULL, IMG_OPT_OBJECT },
        { "image-opts", no_argument, NULL, IMG_OPT_IMAGE_OPTS },
        { "force-share", no_argument, NULL, 'U' },
        { NULL, 0, NULL, 0 },
    };
    ImgOpenArgs oa[2] = { { 0 }, { 0 } };
    g_autoptr(BlockDriverState) bs0 = NULL;
    g_autoptr(BlockDriverState) bs1 = NULL;
    ImgCmp cmp = { 0 };
    bool progress = false;
    const char *cache = NULL;
    int c, r, ret;

    while ((c = getopt_long(argc, argv, ":hf:F:T:pqsU", long_opts,
                            NULL)) != -1) {
        switch (c) {
        case 'h':
            return img_cmd_help(cmd);
        case 'f':
            oa[0].fmt = optarg;
            break;
        case 'F':
            oa[1].fmt = optarg;
            break;
        case 'T':
            cache = optarg;
            break;
        case 'p':
            progress = true;
            break;
        case 'q':
            cmp.quiet = true;
            break;
        case 's':
            cmp.strict = true;
            break;
        case 'U':
            oa[0].force_share = oa[1].force_share = true;
            break;
        case IMG_OPT_IMAGE_OPTS:
            oa[0].image_opts = oa[1].image_opts = true;
            break;
        case IMG_OPT_OBJECT:
            r = img_handle_object(optarg);
            if (r >= 0) {
                return r ? CMP_ERROR : 0;
            }
            break;
        default:
            return img_bad_option(c, argv);
        }
    }
    if (optind != argc - 2) {
        return img_usage_error("Expecting two image file names");
    }
    if (cache) {
        int flags = 0;

        if (!img_parse_cache(cache, &flags)) {
            error_report("Invalid source cache option: %s", cache);
            return CMP_ERROR;
        }
    }
    for (int i = 0; i < 2; i++) {
        oa[i].filename = cmp.name[i] = argv[optind + i];
        oa[i].cache = cache;
    }
    bs0 = img_open(&oa[0]);
    bs1 = bs0 ? img_open(&oa[1]) : NULL;
    if (!bs0 || !bs1) {
        return CMP_ERROR;
    }
    cmp.bs[0] = bs0;
    cmp.bs[1] = bs1;
    img_progress_init(progress && !cmp.quiet);
    img_progress_print(0);
    ret = img_cmp_run(&cmp);
    img_progress_end();
    return ret;
}
