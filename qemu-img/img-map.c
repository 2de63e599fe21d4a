/*
 * qemu-img map: the allocation of an image's guest-visible range, layer by
 * layer, as QEMU prints it (a table of data extents, or one JSON object
 * per extent with start/length/depth/present/zero/data[/offset]).
 * Adjacent extents that differ in nothing but position are merged.
 *
 * `map --bitmap NAME` prints the dirty extents of a bitmap instead
 * (img_bitmap_map() in img-bitmap.c).
 */
#include <stdio.h>
#include <string.h>

#include "qapi/error.h"
#include "img-bitmap.h"
#include "img-cmds.h"

/* Largest extent asked for at once. */
#define IMG_MAP_CHUNK (INT64_C(1) << 30)

static bool img_map_mergeable(const ImgExtent *a, const ImgExtent *b)
{
    if (a->zero != b->zero || a->data != b->data || a->depth != b->depth ||
        a->present != b->present || a->has_offset != b->has_offset ||
        g_strcmp0(a->filename, b->filename)) {
        return false;
    }
    return !a->has_offset || a->offset + a->length == b->offset;
}

/* Print @e; @next (may be NULL) is the following extent.  0 or -1. */
static int img_map_dump(ImgOutputFormat out, const ImgExtent *e,
                        ImgExtent *next)
{
    if (out == IMG_OUTPUT_HUMAN) {
        if (e->data && !e->has_offset) {
            error_report("File contains external, encrypted or compressed "
                         "clusters.");
            return -1;
        }
        if (e->data && !e->zero) {
            printf("%#-16" PRIx64 "%#-16" PRIx64 "%#-16" PRIx64 "%s\n",
                   (uint64_t)e->start, (uint64_t)e->length,
                   (uint64_t)(e->has_offset ? e->offset : 0),
                   e->filename ? e->filename : "");
        }
        /* Holes and zeroes look alike here: let them merge. */
        if (next && (!next->data || next->zero)) {
            next->data = false;
            next->zero = true;
        }
        return 0;
    }
    printf("{ \"start\": %" PRId64 ", \"length\": %" PRId64 ", \"depth\": %d"
           ", \"present\": %s, \"zero\": %s, \"data\": %s", e->start,
           e->length, e->depth, e->present ? "true" : "false",
           e->zero ? "true" : "false", e->data ? "true" : "false");
    if (e->has_offset) {
        printf(", \"offset\": %" PRId64, e->offset);
    }
    printf("}");
    if (next) {
        printf(",\n");
    }
    return 0;
}

static int img_map_run(BlockDriverState *bs, int64_t start, int64_t end,
                       ImgOutputFormat out)
{
    /* A zero-length start entry, printed as is if nothing follows. */
    ImgExtent cur = { .start = start }, next;

    if (out == IMG_OUTPUT_HUMAN) {
        printf("%-16s%-16s%-16s%s\n", "Offset", "Length", "Mapped to",
               "File");
    } else {
        printf("[");
    }
    while (cur.start + cur.length < end) {
        int64_t off = cur.start + cur.length;
        int ret = img_extent_status(bs, off, MIN(end - off, IMG_MAP_CHUNK),
                                    &next);

        if (ret < 0) {
            error_report("Could not read file metadata: %s",
                         g_strerror(-ret));
            return IMG_EXIT_FAILURE;
        }
        if (img_map_mergeable(&cur, &next)) {
            cur.length += next.length;
            continue;
        }
        if (cur.length > 0 && img_map_dump(out, &cur, &next) < 0) {
            return IMG_EXIT_FAILURE;
        }
        cur = next;
    }
    if (img_map_dump(out, &cur, NULL) < 0) {
        return IMG_EXIT_FAILURE;
    }
    if (out == IMG_OUTPUT_JSON) {
        printf("]\n");
    }
    return 0;
}

int img_map(const ImgCmd *cmd, int argc, char **argv)
{
    static const struct option long_opts[] = {
        { "help", no_argument, NULL, 'h' },
        { "format", required_argument, NULL, 'f' },
        { "output", required_argument, NULL, IMG_OPT_OUTPUT },
        { "object", required_argument, NULL, IMG_OPT_OBJECT },
        { "image-opts", no_argument, NULL, IMG_OPT_IMAGE_OPTS },
        { "force-share", no_argument, NULL, 'U' },
        { "start-offset", required_argument, NULL, 's' },
        { "max-length", required_argument, NULL, 'l' },
        { "bitmap", required_argument, NULL, IMG_OPT_BITMAPS },
        { NULL, 0, NULL, 0 },
    };
    const char *bitmap = NULL;      /* --bitmap NAME: see img-bitmap.c */
    ImgOpenArgs oa = { 0 };
    ImgOutputFormat out = IMG_OUTPUT_HUMAN;
    g_autoptr(BlockDriverState) bs = NULL;
    int64_t start = 0, max_len = -1, len;
    int c, r;

    while ((c = getopt_long(argc, argv, ":f:hUs:l:", long_opts,
                            NULL)) != -1) {
        switch (c) {
        case 's':
            start = img_cvtnum("start offset", optarg);
            if (start < 0) {
                return IMG_EXIT_FAILURE;
            }
            break;
        case 'l':
            max_len = img_cvtnum("max length", optarg);
            if (max_len < 0) {
                return IMG_EXIT_FAILURE;
            }
            break;
        case IMG_OPT_OUTPUT:
            if (!img_parse_output(optarg, &out)) {
                return IMG_EXIT_FAILURE;
            }
            break;
        case IMG_OPT_BITMAPS:
            bitmap = optarg;
            break;
        default:
            r = img_common_opt(cmd, &oa, c, argv);
            if (r != IMG_OPT_CONTINUE) {
                return r;
            }
            break;
        }
    }
    if (optind != argc - 1) {
        return img_usage_error("Expecting one image file name");
    }
    oa.filename = argv[optind];
    bs = img_open(&oa);
    if (!bs) {
        return IMG_EXIT_FAILURE;
    }
    len = bdrv_getlength(bs);
    if (len < 0) {
        error_report("Failed to get size for '%s'", oa.filename);
        return IMG_EXIT_FAILURE;
    }
    if (max_len >= 0 && start <= len && max_len < len - start) {
        len = start + max_len;
    }
    if (bitmap) {
        return img_bitmap_map(bs, bitmap, start, len - start, out);
    }
    return img_map_run(bs, start, len, out);
}
