/*
 * qemu-img info: describe an image (or its whole backing chain) in
 * QEMU's human layout or as ImageInfo JSON.
 *
 * The ImageInfo object comes from bdrv_image_info() (shared with QMP);
 * format-specific members, including the bitmap list, come from the
 * driver.  Images are opened without their backing files, so the backing
 * path is resolved here the way the block layer would.
 */
#include <stdio.h>
#include <string.h>

#include "block/dirty-bitmap.h"
#include "block/qapi-info.h"
#include "qapi/error.h"
#include "util/cutils.h"
#include "img-cmds.h"

typedef struct {
    ImgOpenArgs oa;         /* fmt, image_opts, force_share */
    bool chain;
    ImgOutputFormat output;
} ImgInfoArgs;

/* Where the block layer would look for @backing of image @filename. */
static char *img_info_backing_path(const char *filename, const char *backing)
{
    g_autofree char *dir = NULL;

    if (g_path_is_absolute(backing) || g_str_has_prefix(backing, "json:") ||
        g_str_has_prefix(filename, "json:")) {
        return g_strdup(backing);
    }
    dir = g_path_get_dirname(filename);
    if (!strcmp(dir, ".")) {
        return g_strdup(backing);
    }
    return g_build_filename(dir, backing, NULL);
}

static JsonObject *img_info_collect(const char *filename, const char *fmt,
                                    bool image_opts, bool force_share)
{
    ImgOpenArgs oa = {
        .filename = filename,
        .fmt = fmt,
        .image_opts = image_opts,
        .force_share = force_share,
        .flags = BDRV_O_NO_BACKING | BDRV_O_NO_IO,
    };
    g_autoptr(BlockDriverState) bs = img_open(&oa);
    g_autoptr(GError) err = NULL;
    JsonObject *info;

    if (!bs) {
        return NULL;
    }
    if (!bdrv_dirty_bitmaps_check_stored(bs, &err)) {
        /* The data is fine; say why no bitmap is listed. */
        error_report("warning: bitmaps unusable: %s", err->message);
        g_clear_error(&err);
    }
    info = bdrv_image_info(bs, &err);
    if (!info) {
        error_report("%s", err->message);
        return NULL;
    }
    if (json_object_has_member(info, "backing-filename") &&
        !json_object_has_member(info, "full-backing-filename")) {
        const char *b = json_object_get_string_member(info,
                                                      "backing-filename");
        g_autofree char *full = img_info_backing_path(bdrv_get_filename(bs), b);

        json_object_set_string_member(info, "full-backing-filename", full);
    }
    return info;
}

static void img_info_human(JsonObject *info)
{
    int64_t vsize = json_object_get_int_member(info, "virtual-size");
    g_autofree char *vs = size_to_str(vsize);
    g_autofree char *ds = NULL;

    if (json_object_has_member(info, "actual-size")) {
        ds = size_to_str(json_object_get_int_member(info, "actual-size"));
    } else {
        ds = g_strdup("unavailable");
    }
    printf("image: %s\nfile format: %s\nvirtual size: %s (%" PRId64
           " bytes)\ndisk size: %s\n",
           json_object_get_string_member(info, "filename"),
           json_object_get_string_member(info, "format"), vs, vsize, ds);
    if (json_object_has_member(info, "cluster-size")) {
        printf("cluster_size: %" PRId64 "\n",
               json_object_get_int_member(info, "cluster-size"));
    }
    if (json_object_get_boolean_member_with_default(info, "dirty-flag",
                                                    false)) {
        printf("cleanly shut down: no\n");
    }
    if (json_object_has_member(info, "backing-filename")) {
        const char *b = json_object_get_string_member(info,
                                                      "backing-filename");
        const char *full = json_object_get_string_member_with_default(
            info, "full-backing-filename", NULL);

        printf("backing file: %s", b);
        if (!full) {
            printf(" (cannot determine actual path)");
        } else if (strcmp(b, full)) {
            printf(" (actual path: %s)", full);
        }
        printf("\n");
    }
    if (json_object_has_member(info, "backing-filename-format")) {
        printf("backing file format: %s\n",
               json_object_get_string_member(info,
                                             "backing-filename-format"));
    }
    if (json_object_has_member(info, "format-specific")) {
        JsonObject *fs = json_object_get_object_member(info,
                                                       "format-specific");
        JsonNode *data = json_object_get_member(fs, "data");

        printf("Format specific information:\n");
        if (data && JSON_NODE_HOLDS_OBJECT(data)) {
            img_dump_human(json_node_get_object(data), 1);
        }
    }
}

/* Collect the image and (with --backing-chain) its backing files. */
static JsonArray *img_info_chain(const char *filename, ImgInfoArgs *a)
{
    g_autoptr(JsonArray) list = json_array_new();
    g_autoptr(GHashTable) seen = g_hash_table_new_full(g_str_hash,
                                                       g_str_equal, g_free,
                                                       NULL);
    g_autofree char *name = g_strdup(filename);
    g_autofree char *fmt = g_strdup(a->oa.fmt);
    bool image_opts = a->oa.image_opts;

    while (name) {
        JsonObject *info;

        if (!g_hash_table_add(seen, g_strdup(name))) {
            error_report("Backing file '%s' creates an infinite loop.",
                         name);
            return NULL;
        }
        info = img_info_collect(name, fmt, image_opts, a->oa.force_share);
        if (!info) {
            return NULL;
        }
        json_array_add_object_element(list, info);
        g_clear_pointer(&name, g_free);
        g_clear_pointer(&fmt, g_free);
        image_opts = false;
        if (a->chain) {
            name = g_strdup(json_object_get_string_member_with_default(
                info, "full-backing-filename", NULL));
            fmt = g_strdup(json_object_get_string_member_with_default(
                info, "backing-filename-format", NULL));
        }
    }
    return g_steal_pointer(&list);
}

int img_info(const ImgCmd *cmd, int argc, char **argv)
{
    static const struct option long_opts[] = {
        { "help", no_argument, NULL, 'h' },
        { "format", required_argument, NULL, 'f' },
        { "output", required_argument, NULL, IMG_OPT_OUTPUT },
        { "backing-chain", no_argument, NULL, IMG_OPT_BACKING_CHAIN },
        { "object", required_argument, NULL, IMG_OPT_OBJECT },
        { "image-opts", no_argument, NULL, IMG_OPT_IMAGE_OPTS },
        { "force-share", no_argument, NULL, 'U' },
        { NULL, 0, NULL, 0 },
    };
    ImgInfoArgs a = { .output = IMG_OUTPUT_HUMAN };
    g_autoptr(JsonArray) list = NULL;
    int c, r;

    while ((c = getopt_long(argc, argv, ":f:hU", long_opts, NULL)) != -1) {
        switch (c) {
        case IMG_OPT_OUTPUT:
            if (!img_parse_output(optarg, &a.output)) {
                return IMG_EXIT_FAILURE;
            }
            break;
        case IMG_OPT_BACKING_CHAIN:
            a.chain = true;
            break;
        default:
            r = img_common_opt(cmd, &a.oa, c, argv);
            if (r != IMG_OPT_CONTINUE) {
                return r;
            }
            break;
        }
    }
    if (optind != argc - 1) {
        return img_usage_error("Expecting one image file name");
    }
    list = img_info_chain(argv[optind], &a);
    if (!list) {
        return IMG_EXIT_FAILURE;
    }
    if (a.output == IMG_OUTPUT_JSON) {
        g_autoptr(JsonNode) node = json_node_new(JSON_NODE_ARRAY);

        if (!a.chain) {
            img_json_print_object(json_array_get_object_element(list, 0));
            return 0;
        }
        json_node_set_array(node, list);
        img_json_print(node);
        return 0;
    }
    for (guint i = 0; i < json_array_get_length(list); i++) {
        if (i) {
            printf("\n");
        }
        img_info_human(json_array_get_object_element(list, i));
    }
    return 0;
}
