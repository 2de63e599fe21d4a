/*
 * qemu-img resize: set an image's virtual size, absolutely or relative to
 * the current one ("+1G", "-1G").  Shrinking needs --shrink.
 *
 * Extension point: bitmaps are resized by the block layer's truncate
 * (bdrv_truncate); nothing to do here for them.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "qapi/error.h"
#include "img-cmds.h"
#include "img-size.h"

/* Parse "[+|-]SIZE"; *relative is -1, 0 or +1.  Prints errors. */
static bool img_resize_parse(const char *arg, int *relative, int64_t *size)
{
    uint64_t v;
    int ret;

    *relative = 0;
    if (arg[0] == '+' || arg[0] == '-') {
        *relative = arg[0] == '-' ? -1 : 1;
        arg++;
    }
    ret = fe_strtosz(arg, &v, true);
    if (ret == -ERANGE || (ret == 0 && v > INT64_MAX)) {
        error_report("Value '%s' is out of range for parameter 'size'", arg);
        return false;
    }
    if (ret < 0) {
        error_report("Parameter 'size' expects a non-negative number below "
                     "2^64");
        fprintf(stderr, "Optional suffix k, M, G, T, P or E means kilo-, "
                "mega-, giga-, tera-, peta-\nand exabytes, respectively.\n");
        return false;
    }
    *size = (int64_t)v;
    return true;
}

static int img_resize_run(ImgOpenArgs *oa, const char *size_arg,
                          PreallocMode prealloc, bool shrink)
{
    g_autoptr(BlockDriverState) bs = NULL;
    g_autoptr(GError) err = NULL;
    int64_t size, cur;
    int relative;

    if (!img_resize_parse(size_arg, &relative, &size)) {
        return IMG_EXIT_FAILURE;
    }
    bs = img_open(oa);
    if (!bs) {
        return IMG_EXIT_FAILURE;
    }
    cur = bdrv_getlength(bs);
    if (cur < 0) {
        error_report("Could not get the image size: %s",
                     g_strerror((int)-cur));
        return IMG_EXIT_FAILURE;
    }
    if (relative) {
        if (relative > 0 && size > INT64_MAX - cur) {
            error_report("Image size must be less than 8 EiB!");
            return IMG_EXIT_FAILURE;
        }
        size = cur + relative * size;
    }
    if (size <= 0) {
        error_report("New image size must be positive");
        return IMG_EXIT_FAILURE;
    }
    if (size < cur && !shrink) {
        error_report("Use the --shrink option to perform a shrink "
                     "operation.");
        error_report("warning: Shrinking an image will delete all data "
                     "beyond the shrunken image's end. Before performing "
                     "such an operation, make sure there is no important "
                     "data there.");
        return IMG_EXIT_FAILURE;
    }
    if (size < cur && prealloc != PREALLOC_MODE_OFF) {
        error_report("Preallocation can only be used for growing images");
        return IMG_EXIT_FAILURE;
    }
    if (bdrv_truncate(bs, size, true, prealloc, &err) < 0) {
        error_report("%s", err->message);
        return IMG_EXIT_FAILURE;
    }
    if (!img_finish_writes(bs, oa->filename)) {
        return IMG_EXIT_FAILURE;
    }
    img_printf(oa->quiet, "Image resized.\n");
    return 0;
}

int img_resize(const ImgCmd *cmd, int argc, char **argv)
{
    static const struct option long_opts[] = {
        { "help", no_argument, NULL, 'h' },
        { "object", required_argument, NULL, IMG_OPT_OBJECT },
        { "image-opts", no_argument, NULL, IMG_OPT_IMAGE_OPTS },
        { "preallocation", required_argument, NULL, IMG_OPT_PREALLOCATION },
        { "shrink", no_argument, NULL, IMG_OPT_SHRINK },
        { NULL, 0, NULL, 0 },
    };
    ImgOpenArgs oa = { .writable = true, .flags = BDRV_O_NO_BACKING };
    PreallocMode prealloc = PREALLOC_MODE_OFF;
    const char *size_arg = NULL;
    bool shrink = false;
    int c, r;

    /* A negative size would look like an option to getopt: take it out. */
    if (argc >= 3 && argv[argc - 1][0] == '-' &&
        g_ascii_isdigit(argv[argc - 1][1])) {
        size_arg = argv[--argc];
    }
    while ((c = getopt_long(argc, argv, ":f:hq", long_opts, NULL)) != -1) {
        switch (c) {
        case 'q':
            oa.quiet = true;
            break;
        case IMG_OPT_PREALLOCATION:
            r = prealloc_mode_parse(optarg);
            if (r < 0) {
                error_report("Invalid preallocation mode '%s'", optarg);
                return IMG_EXIT_FAILURE;
            }
            prealloc = (PreallocMode)r;
            break;
        case IMG_OPT_SHRINK:
            shrink = true;
            break;
        default:
            r = img_common_opt(cmd, &oa, c, argv);
            if (r != IMG_OPT_CONTINUE) {
                return r;
            }
            break;
        }
    }
    if (!size_arg && optind < argc) {
        size_arg = argv[--argc];
    }
    if (optind != argc - 1 || !size_arg) {
        return img_usage_error(optind >= argc ? "Not enough arguments"
                               : "Expecting image file name and size");
    }
    oa.filename = argv[optind];
    return img_resize_run(&oa, size_arg, prealloc, shrink);
}
