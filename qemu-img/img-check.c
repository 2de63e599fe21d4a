/*
 * qemu-img check: run the format driver's consistency check (and repair
 * with -r), print the result as QEMU does and map it to the exit codes
 * 0 clean, 1 check not completed, 2 corruptions, 3 leaks, 63 unsupported.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "qapi/error.h"
#include "img-cmds.h"

#define IMG_CHECK_UNSUPPORTED 63

/* ImageCheck as JSON: members present only when non-zero, like QEMU. */
static JsonObject *img_check_json(const BdrvCheckResult *r,
                                  const char *filename, const char *format)
{
    JsonObject *o = json_object_new();

    json_object_set_string_member(o, "filename", filename);
    json_object_set_string_member(o, "format", format);
    json_object_set_int_member(o, "check-errors", r->check_errors);
    if (r->image_end_offset) {
        json_object_set_int_member(o, "image-end-offset",
                                   r->image_end_offset);
    }
    if (r->corruptions) {
        json_object_set_int_member(o, "corruptions", r->corruptions);
    }
    if (r->leaks) {
        json_object_set_int_member(o, "leaks", r->leaks);
    }
    if (r->corruptions_fixed) {
        json_object_set_int_member(o, "corruptions-fixed",
                                   r->corruptions_fixed);
    }
    if (r->leaks_fixed) {
        json_object_set_int_member(o, "leaks-fixed", r->leaks_fixed);
    }
    if (r->total_clusters) {
        json_object_set_int_member(o, "total-clusters",
                                   (int64_t)r->total_clusters);
    }
    if (r->allocated_clusters) {
        json_object_set_int_member(o, "allocated-clusters",
                                   (int64_t)r->allocated_clusters);
    }
    if (r->fragmented_clusters) {
        json_object_set_int_member(o, "fragmented-clusters",
                                   (int64_t)r->fragmented_clusters);
    }
    if (r->compressed_clusters) {
        json_object_set_int_member(o, "compressed-clusters",
                                   (int64_t)r->compressed_clusters);
    }
    return o;
}

static void img_check_human(const BdrvCheckResult *r, bool quiet)
{
    if (!r->corruptions && !r->leaks && !r->check_errors) {
        img_printf(quiet, "No errors were found on the image.\n");
    }
    if (r->corruptions) {
        img_printf(quiet, "\n%d errors were found on the image.\n"
                   "Data may be corrupted, or further writes to the image "
                   "may corrupt it.\n", r->corruptions);
    }
    if (r->leaks) {
        img_printf(quiet, "\n%d leaked clusters were found on the image.\n"
                   "This means waste of disk space, but no harm to data.\n",
                   r->leaks);
    }
    if (r->check_errors) {
        img_printf(quiet, "\n%d internal errors have occurred during the "
                   "check.\n", r->check_errors);
    }
    if (r->total_clusters && r->allocated_clusters) {
        img_printf(quiet, "%" PRIu64 "/%" PRIu64 " = %0.2f%% allocated, "
                   "%0.2f%% fragmented, %0.2f%% compressed clusters\n",
                   r->allocated_clusters, r->total_clusters,
                   r->allocated_clusters * 100.0 / r->total_clusters,
                   r->fragmented_clusters * 100.0 / r->allocated_clusters,
                   r->compressed_clusters * 100.0 / r->allocated_clusters);
    }
    if (r->image_end_offset) {
        img_printf(quiet, "Image end offset: %" PRId64 "\n",
                   r->image_end_offset);
    }
}

/* Check (and repair), print, and return the exit code. */
static int img_check_run(BlockDriverState *bs, const char *filename,
                         BdrvCheckMode fix, ImgOutputFormat output,
                         bool quiet)
{
    BdrvCheckResult r;
    int ret = bdrv_check(bs, &r, fix);

    if (ret == -ENOTSUP) {
        error_report("This image format does not support checks");
        return IMG_CHECK_UNSUPPORTED;
    }
    if (ret == 0 && (r.corruptions_fixed || r.leaks_fixed)) {
        int leaks_fixed = r.leaks_fixed;
        int corruptions_fixed = r.corruptions_fixed;

        if (output == IMG_OUTPUT_HUMAN) {
            img_printf(quiet, "The following inconsistencies were found and "
                       "repaired:\n\n    %d leaked clusters\n"
                       "    %d corruptions\n\n"
                       "Double checking the fixed image now...\n",
                       leaks_fixed, corruptions_fixed);
        }
        ret = bdrv_check(bs, &r, BDRV_FIX_NONE);
        r.leaks_fixed = leaks_fixed;
        r.corruptions_fixed = corruptions_fixed;
    }
    if (ret == 0) {
        if (output == IMG_OUTPUT_JSON) {
            g_autoptr(JsonObject) o = img_check_json(
                &r, filename, bdrv_get_format_name(bs));
            if (!quiet) {
                img_json_print_object(o);
            }
        } else {
            img_check_human(&r, quiet);
        }
    }
    if (ret < 0 || r.check_errors) {
        if (ret < 0) {
            error_report("Check failed: %s", g_strerror(-ret));
        } else {
            error_report("Check failed");
        }
        return IMG_EXIT_FAILURE;
    }
    return r.corruptions ? 2 : r.leaks ? 3 : 0;
}

int img_check(const ImgCmd *cmd, int argc, char **argv)
{
    static const struct option long_opts[] = {
        { "help", no_argument, NULL, 'h' },
        { "format", required_argument, NULL, 'f' },
        { "image-opts", no_argument, NULL, IMG_OPT_IMAGE_OPTS },
        { "cache", required_argument, NULL, 'T' },
        { "repair", required_argument, NULL, 'r' },
        { "force-share", no_argument, NULL, 'U' },
        { "output", required_argument, NULL, IMG_OPT_OUTPUT },
        { "quiet", no_argument, NULL, 'q' },
        { "object", required_argument, NULL, IMG_OPT_OBJECT },
        { NULL, 0, NULL, 0 },
    };
    ImgOpenArgs oa = { .flags = BDRV_O_CHECK };
    ImgOutputFormat output = IMG_OUTPUT_HUMAN;
    BdrvCheckMode fix = BDRV_FIX_NONE;
    g_autoptr(BlockDriverState) bs = NULL;
    int c, r;

    while ((c = getopt_long(argc, argv, ":f:hT:r:Uq", long_opts,
                            NULL)) != -1) {
        switch (c) {
        case 'T':
            oa.cache = optarg;
            break;
        case 'r':
            oa.writable = true;
            if (!strcmp(optarg, "leaks")) {
                fix = BDRV_FIX_LEAKS;
            } else if (!strcmp(optarg, "all")) {
                fix = BDRV_FIX_LEAKS | BDRV_FIX_ERRORS;
            } else {
                return img_usage_error("Unknown option value for -r "
                                       "(expecting 'leaks' or 'all'): %s",
                                       optarg);
            }
            break;
        case 'q':
            oa.quiet = true;
            break;
        case IMG_OPT_OUTPUT:
            if (!img_parse_output(optarg, &output)) {
                return IMG_EXIT_FAILURE;
            }
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
    if (oa.cache) {
        int flags = 0;

        if (!img_parse_cache(oa.cache, &flags)) {
            error_report("Invalid source cache option: %s", oa.cache);
            return IMG_EXIT_FAILURE;
        }
    }
    bs = img_open(&oa);
    if (!bs) {
        return IMG_EXIT_FAILURE;
    }
    return img_check_run(bs, oa.filename, fix, output, oa.quiet);
}
