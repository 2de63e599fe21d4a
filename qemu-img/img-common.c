/*
 * Helpers shared by every qemu-img subcommand: usage errors, opening
 * images, size arguments, QEMU-shaped JSON and human output, progress.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "block/activation.h"
#include "qapi/error.h"
#include "util/options.h"
#include "img-common.h"
#include "img-size.h"

int img_usage_error(const char *fmt, ...)
{
    va_list ap;
    g_autofree char *msg = NULL;

    va_start(ap, fmt);
    msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    error_report("%s", msg);
    fprintf(stderr, "Try '%s --help' for more information\n",
            error_get_progname());
    return IMG_EXIT_FAILURE;
}

int img_bad_option(int c, char **argv)
{
    const char *opt = argv[optind - 1];

    if (c == ':') {
        return img_usage_error("missing argument for option '%s'", opt);
    }
    if (optopt && optopt != '?' && opt[0] == '-' && opt[1] != '-') {
        return img_usage_error("unrecognized option '-%c'", optopt);
    }
    return img_usage_error("unrecognized option '%s'", opt);
}

int img_cmd_help(const ImgCmd *cmd)
{
    printf("Usage: %s %s %s\n\n%s\n", error_get_progname(), cmd->name,
           cmd->synopsis, cmd->summary);
    if (cmd->details && *cmd->details) {
        printf("\n%s", cmd->details);
    }
    return 0;
}

bool img_parse_output(const char *arg, ImgOutputFormat *out)
{
    if (!strcmp(arg, "json")) {
        *out = IMG_OUTPUT_JSON;
    } else if (!strcmp(arg, "human")) {
        *out = IMG_OUTPUT_HUMAN;
    } else {
        error_report("--output must be used with human or json as argument.");
        return false;
    }
    return true;
}

bool img_parse_cache(const char *mode, int *flags)
{
    *flags &= ~(BDRV_O_NOCACHE | BDRV_O_NO_FLUSH);
    if (!strcmp(mode, "none") || !strcmp(mode, "off") ||
        !strcmp(mode, "directsync")) {
        *flags |= BDRV_O_NOCACHE;
    } else if (!strcmp(mode, "unsafe")) {
        *flags |= BDRV_O_NO_FLUSH;
    } else if (strcmp(mode, "writeback") && strcmp(mode, "writethrough")) {
        return false;
    }
    return true;
}

bool img_cache_writethrough(const char *mode)
{
    return mode && (!strcmp(mode, "writethrough") ||
                    !strcmp(mode, "directsync"));
}

int img_handle_object(const char *def)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(JsonObject) o = NULL;
    g_autofree char *type = NULL;

    if (!strcmp(def, "help")) {
        printf("List of user creatable objects:\n  secret\n");
        return 0;
    }
    o = keyval_parse(def, "qom-type", &err);
    if (!o) {
        error_report("%s", err->message);
        return IMG_EXIT_FAILURE;
    }
    type = opts_take_str(o, "qom-type", NULL);
    if (!type || strcmp(type, "secret")) {
        error_report("Parameter 'qom-type' does not accept value '%s'",
                     type ? type : "");
        return IMG_EXIT_FAILURE;
    }
    if (!opts_has(o, "id")) {
        error_report("Parameter 'id' is missing");
        return IMG_EXIT_FAILURE;
    }
    if (!opts_has(o, "data") && !opts_has(o, "file")) {
        error_report("Either 'file' or 'data' must be provided");
        return IMG_EXIT_FAILURE;
    }
    return -1;
}

/* Options for bdrv_open() built from -f / --image-opts / cache / -U. */
static JsonObject *img_open_options(const ImgOpenArgs *a, GError **errp)
{
    JsonObject *o;

    if (a->image_opts) {
        o = keyval_parse(a->filename, NULL, errp);
        if (!o) {
            return NULL;
        }
    } else {
        o = json_object_new();
        if (a->fmt) {
            json_object_set_string_member(o, "driver", a->fmt);
        }
    }
    return o;
}

BlockDriverState *img_open(const ImgOpenArgs *a)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(JsonObject) opts = NULL;
    BlockDriverState *bs;
    int flags = a->flags;

    if (a->image_opts && a->fmt) {
        error_report("--image-opts and --format are mutually exclusive");
        return NULL;
    }
    if (a->cache && !img_parse_cache(a->cache, &flags)) {
        error_report("Invalid cache option: %s", a->cache);
        return NULL;
    }
    if (a->writable) {
        flags |= BDRV_O_RDWR;
    }
    if (a->force_share) {
        flags |= BDRV_O_FORCE_SHARE;
    }
    opts = img_open_options(a, &err);
    if (opts) {
        bs = bdrv_open(a->image_opts ? NULL : a->filename, opts, flags,
                       &err);
    } else {
        bs = NULL;
    }
    if (!bs) {
        error_report("Could not open '%s': %s", a->filename, err->message);
        return NULL;
    }
    if (!a->fmt && !a->image_opts && a->writable &&
        bdrv_is_format(bs, "raw")) {
        fprintf(stderr,
                "WARNING: Image format was not specified for '%s' and "
                "probing guessed raw.\n"
                "         Automatically detecting the format is dangerous "
                "for raw images, write operations on block 0 will be "
                "restricted.\n"
                "         Specify the 'raw' format explicitly to remove the "
                "restrictions.\n", a->filename);
    }
    return bs;
}

int64_t img_cvtnum(const char *what, const char *arg)
{
    uint64_t v;
    int ret = fe_strtosz(arg, &v, true);

    if (ret == -ERANGE || (ret == 0 && v > INT64_MAX)) {
        error_report("Invalid %s specified. Must be between 0 and %" PRId64
                     ".", what, INT64_MAX);
        return -1;
    }
    if (ret < 0) {
        error_report("Invalid %s specified. You may use k, M, G, T, P or E "
                     "suffixes for", what);
        error_report("kilobytes, megabytes, gigabytes, terabytes, petabytes "
                     "and exabytes.");
        return -1;
    }
    return (int64_t)v;
}

bool img_finish_writes(BlockDriverState *bs, const char *filename)
{
    g_autoptr(GError) err = NULL;

    if (bdrv_is_read_only(bs) || bdrv_inactivate(bs, &err)) {
        return true;
    }
    error_report("%s: %s", filename, err->message);
    return false;
}

int img_extent_status(BlockDriverState *bs, int64_t offset, int64_t bytes,
                      ImgExtent *e)
{
    BlockDriverState *cur = bs;
    BlockDriverState *file = NULL;
    int64_t map = 0;
    int depth = 0;
    int ret;

    for (;;) {
        BlockDriverState *backing;
        int64_t n = 0;
        int64_t blen;

        ret = bdrv_block_status(cur, offset, bytes, &n, &map, &file);
        if (ret < 0) {
            return ret;
        }
        bytes = n;
        if (ret & (BDRV_BLOCK_DATA | BDRV_BLOCK_ZERO)) {
            break;
        }
        backing = bdrv_get_backing(cur);
        blen = backing ? bdrv_getlength(backing) : 0;
        if (blen < 0) {
            return (int)blen;
        }
        if (!backing || offset >= blen) {
            /* Nothing below, or past the end of a shorter backing file. */
            ret |= BDRV_BLOCK_ZERO;
            break;
        }
        cur = backing;
        depth++;
    }
    *e = (ImgExtent) {
        .start = offset,
        .length = bytes,
        .data = !!(ret & BDRV_BLOCK_DATA),
        .zero = !!(ret & BDRV_BLOCK_ZERO),
        .present = !!(ret & BDRV_BLOCK_ALLOCATED),
        .has_offset = !!(ret & BDRV_BLOCK_OFFSET_VALID),
        .offset = map,
        .depth = depth,
        .filename = (file && (ret & BDRV_BLOCK_OFFSET_VALID))
                    ? bdrv_get_filename(file) : NULL,
    };
    return 0;
}

bool img_buf_is_zero(const void *buf, size_t n)
{
    const uint8_t *p = buf;

    /* Zero first byte, and every byte equal to its successor. */
    return n == 0 || (p[0] == 0 && memcmp(p, p + 1, n - 1) == 0);
}

void img_printf(bool quiet, const char *fmt, ...)
{
    va_list ap;

    if (quiet) {
        return;
    }
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
}

/* --- progress --- */

static bool progress_on;
static double progress_last;

void img_progress_init(bool enabled)
{
    progress_on = enabled;
    progress_last = -1;
}

void img_progress_print(double percent)
{
    if (!progress_on) {
        return;
    }
    if (percent > 100) {
        percent = 100;
    }
    if (progress_last >= 0 && percent - progress_last < 1.0 &&
        percent < 100) {
        return;
    }
    progress_last = percent;
    printf("    (%.2f/100%%)\r", percent);
    fflush(stdout);
}

void img_progress_end(void)
{
    if (!progress_on) {
        return;
    }
    printf("\n");
    fflush(stdout);
    progress_on = false;
}

int img_common_opt(const ImgCmd *cmd, ImgOpenArgs *oa, int c, char **argv)
{
    switch (c) {
    case 'f':
        oa->fmt = optarg;
        return IMG_OPT_CONTINUE;
    case 'h':
        return img_cmd_help(cmd);
    case 'U':
        oa->force_share = true;
        return IMG_OPT_CONTINUE;
    case IMG_OPT_IMAGE_OPTS:
        oa->image_opts = true;
        return IMG_OPT_CONTINUE;
    case IMG_OPT_OBJECT: {
        int r = img_handle_object(optarg);
        return r >= 0 ? r : IMG_OPT_CONTINUE;
    }
    default:
        return img_bad_option(c, argv);
    }
}
