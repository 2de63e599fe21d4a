/*
 * qemu-img checkpoint: the checkpoints of an image, offline (ours; QEMU
 * has no such command).
 *
 *   -l [--output=human|json] FILE      list, with the bytes changed since
 *   -c NAME [-g GRANULARITY] [-b BITMAP] FILE   create the newest
 *   -d NAME FILE                       remove
 *   --diff NAME [--to NAME2] [--output=human|json] FILE
 *                                      extents changed since NAME (or
 *                                      between NAME and NAME2)
 *
 * The node operations are the daemon's (block/checkpoint-ops.c), so the
 * rules and messages are the same.  Also the convert --bitmaps hook
 * (img-checkpoint.h).
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "block/checkpoint-ops.h"
#include "qapi/error.h"
#include "img-checkpoint.h"
#include "img-cmds.h"

typedef enum {
    CKPT_CMD_NONE,
    CKPT_CMD_LIST,
    CKPT_CMD_CREATE,
    CKPT_CMD_DELETE,
    CKPT_CMD_DIFF,
} CkptCmdKind;

enum {
    OPT_DIFF = 1000,
    OPT_TO,
};

typedef struct {
    ImgOpenArgs oa;
    CkptCmdKind kind;
    const char *name;        /* -c, -d, --diff */
    const char *to;          /* --to */
    const char *bitmap;      /* -b */
    uint64_t granularity;    /* -g; 0: default */
    ImgOutputFormat output;
} CkptArgs;

/* ---- -l ---- */

static const char *member_str(JsonObject *o, const char *key)
{
    return json_object_get_string_member_with_default(o, key, NULL);
}

static char *date_str(JsonObject *o)
{
    time_t t = (time_t)json_object_get_int_member(o, "date-sec");
    struct tm tm;
    char buf[32];

    if (!localtime_r(&t, &tm) ||
        !strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M:%S", &tm)) {
        return g_strdup("-");
    }
    return g_strdup(buf);
}

static void list_human(JsonArray *arr)
{
    guint n = json_array_get_length(arr);
    int wn = 4, wp = 6, wb = 6;

    for (guint i = 0; i < n; i++) {
        JsonObject *o = json_array_get_object_element(arr, i);
        const char *p = member_str(o, "parent");
        wn = MAX(wn, (int)strlen(member_str(o, "name")));
        wp = MAX(wp, p ? (int)strlen(p) : 1);
        wb = MAX(wb, (int)strlen(member_str(o, "bitmap")));
    }
    printf("%-*s  %-*s  %-*s  %11s  %-19s  %13s  %s\n", wn, "NAME", wp,
           "PARENT", wb, "BITMAP", "GRANULARITY", "CREATED",
           "CHANGED BYTES", "STATE");
    for (guint i = 0; i < n; i++) {
        JsonObject *o = json_array_get_object_element(arr, i);
        const char *p = member_str(o, "parent");
        const char *why = member_str(o, "reason");
        g_autofree char *date = date_str(o);
        g_autofree char *changed = json_object_has_member(o, "changed-bytes")
            ? g_strdup_printf("%" G_GINT64_FORMAT,
                              json_object_get_int_member(o, "changed-bytes"))
            : g_strdup("-");
        g_autofree char *state = why
            ? g_strdup_printf("unusable: %s", why)
            : g_strdup(json_object_get_boolean_member(o, "recording")
                       ? "ok, recording" : "ok");

        printf("%-*s  %-*s  %-*s  %11" G_GINT64_FORMAT "  %-19s  %13s  %s\n",
               wn, member_str(o, "name"), wp, p ? p : "-", wb,
               member_str(o, "bitmap"),
               json_object_get_int_member(o, "granularity"), date, changed,
               state);
    }
}

static int ckpt_list(CkptArgs *a)
{
    g_autoptr(BlockDriverState) bs = img_open(&a->oa);
    g_autoptr(GError) err = NULL;
    g_autoptr(JsonNode) node = NULL;
    JsonArray *arr;

    if (!bs) {
        return IMG_EXIT_FAILURE;
    }
    arr = bdrv_checkpoint_query(bs, true, &err);
    if (!arr) {
        error_report("%s", err->message);
        return IMG_EXIT_FAILURE;
    }
    node = json_node_new(JSON_NODE_ARRAY);
    json_node_take_array(node, arr);
    if (a->output == IMG_OUTPUT_JSON) {
        img_json_print(node);
    } else if (json_array_get_length(arr)) {
        list_human(arr);
    }
    return 0;
}

/* ---- -c, -d ---- */

static int ckpt_change(CkptArgs *a)
{
    g_autoptr(BlockDriverState) bs = NULL;
    g_autoptr(GError) err = NULL;
    bool ok;

    a->oa.writable = true;
    bs = img_open(&a->oa);
    if (!bs) {
        return IMG_EXIT_FAILURE;
    }
    ok = a->kind == CKPT_CMD_CREATE
        ? bdrv_checkpoint_create(bs, a->name, a->bitmap, a->granularity,
                                 &err)
        : bdrv_checkpoint_remove(bs, a->name, &err);
    if (!ok) {
        error_report("%s", err->message);
        return IMG_EXIT_FAILURE;
    }
    return img_finish_writes(bs, a->oa.filename) ? 0 : IMG_EXIT_FAILURE;
}

/* ---- --diff ---- */

static int ckpt_diff(CkptArgs *a)
{
    g_autoptr(BlockDriverState) bs = img_open(&a->oa);
    g_autoptr(BdrvDirtyBitmap) bm = NULL;
    g_autoptr(GError) err = NULL;
    int64_t size, off = 0, total = 0;
    guint extents = 0;
    bool first = true;

    if (!bs) {
        return IMG_EXIT_FAILURE;
    }
    bm = bdrv_checkpoint_changes(bs, a->name, a->to, &err);
    if (!bm) {
        error_report("%s", err->message);
        return IMG_EXIT_FAILURE;
    }
    size = (int64_t)bdrv_dirty_bitmap_size(bm);
    if (a->output == IMG_OUTPUT_HUMAN) {
        printf("%-16s%-16s%s\n", "Offset", "Length", "Changed");
    }
    while (off < size) {
        int64_t n = 0;
        bool dirty = bdrv_dirty_bitmap_status(bm, off, size - off, &n);

        if (n <= 0) {
            break;
        }
        if (a->output == IMG_OUTPUT_JSON) {
            printf("%s{ \"start\": %" PRId64 ", \"length\": %" PRId64
                   ", \"dirty\": %s}", first ? "[" : ",\n", off, n,
                   dirty ? "true" : "false");
            first = false;
        } else if (dirty) {
            printf("%#-16" PRIx64 "%#-16" PRIx64 "yes\n", (uint64_t)off,
                   (uint64_t)n);
        }
        if (dirty) {
            total += n;
            extents++;
        }
        off += n;
    }
    if (a->output == IMG_OUTPUT_JSON) {
        printf(first ? "[]\n" : "]\n");
    } else {
        printf("%" PRId64 " bytes changed in %u extents\n", total, extents);
    }
    return 0;
}

/* ---- Options ---- */

static bool set_kind(CkptArgs *a, CkptCmdKind kind, const char *name)
{
    if (a->kind != CKPT_CMD_NONE) {
        img_usage_error("Only one of -l, -c, -d and --diff may be given");
        return false;
    }
    a->kind = kind;
    a->name = name;
    return true;
}

/* Returns -1 to go on, or an exit code. */
static int parse_opt(CkptArgs *a, const ImgCmd *cmd, int c, char **argv)
{
    int64_t g;

    switch (c) {
    case 'l':
        return set_kind(a, CKPT_CMD_LIST, NULL) ? -1 : IMG_EXIT_FAILURE;
    case 'c':
        return set_kind(a, CKPT_CMD_CREATE, optarg) ? -1 : IMG_EXIT_FAILURE;
    case 'd':
        return set_kind(a, CKPT_CMD_DELETE, optarg) ? -1 : IMG_EXIT_FAILURE;
    case OPT_DIFF:
        return set_kind(a, CKPT_CMD_DIFF, optarg) ? -1 : IMG_EXIT_FAILURE;
    case OPT_TO:
        a->to = optarg;
        return -1;
    case 'b':
        a->bitmap = optarg;
        return -1;
    case 'g':
        g = img_cvtnum("granularity", optarg);
        if (g < 0) {
            return IMG_EXIT_FAILURE;
        }
        if (g == 0 || g > UINT32_MAX) {
            error_report("Granularity must be power of 2 between 512 and "
                         "2147483648");
            return IMG_EXIT_FAILURE;
        }
        a->granularity = (uint64_t)g;
        return -1;
    case IMG_OPT_OUTPUT:
        return img_parse_output(optarg, &a->output) ? -1 : IMG_EXIT_FAILURE;
    default:
        return img_common_opt(cmd, &a->oa, c, argv);
    }
}

/* Option combinations that make no sense for the chosen operation. */
static bool check_args(const CkptArgs *a)
{
    bool change = a->kind == CKPT_CMD_CREATE || a->kind == CKPT_CMD_DELETE;

    if (a->kind == CKPT_CMD_NONE) {
        img_usage_error("Need one of -l, -c NAME, -d NAME or --diff NAME");
        return false;
    }
    if (a->to && a->kind != CKPT_CMD_DIFF) {
        img_usage_error("--to only goes with --diff");
        return false;
    }
    if ((a->granularity || a->bitmap) && a->kind != CKPT_CMD_CREATE) {
        img_usage_error("-g and -b only go with -c");
        return false;
    }
    if (change && a->output == IMG_OUTPUT_JSON) {
        img_usage_error("--output only goes with -l and --diff");
        return false;
    }
    if (change && a->oa.force_share) {
        img_usage_error("-U cannot be used to change an image");
        return false;
    }
    return true;
}

int img_checkpoint(const ImgCmd *cmd, int argc, char **argv)
{
    static const struct option long_opts[] = {
        { "help", no_argument, NULL, 'h' },
        { "list", no_argument, NULL, 'l' },
        { "create", required_argument, NULL, 'c' },
        { "delete", required_argument, NULL, 'd' },
        { "diff", required_argument, NULL, OPT_DIFF },
        { "to", required_argument, NULL, OPT_TO },
        { "bitmap", required_argument, NULL, 'b' },
        { "granularity", required_argument, NULL, 'g' },
        { "format", required_argument, NULL, 'f' },
        { "force-share", no_argument, NULL, 'U' },
        { "image-opts", no_argument, NULL, IMG_OPT_IMAGE_OPTS },
        { "output", required_argument, NULL, IMG_OPT_OUTPUT },
        { "object", required_argument, NULL, IMG_OPT_OBJECT },
        { NULL, 0, NULL, 0 },
    };
    CkptArgs a = { .output = IMG_OUTPUT_HUMAN };
    int c;

    while ((c = getopt_long(argc, argv, ":hlc:d:b:g:f:U", long_opts,
                            NULL)) != -1) {
        int r = parse_opt(&a, cmd, c, argv);
        if (r >= 0) {
            return r;
        }
    }
    if (!check_args(&a)) {
        return IMG_EXIT_FAILURE;
    }
    if (optind != argc - 1) {
        return img_usage_error("Expecting one image file name");
    }
    a.oa.filename = argv[optind];
    switch (a.kind) {
    case CKPT_CMD_LIST:
        return ckpt_list(&a);
    case CKPT_CMD_DIFF:
        return ckpt_diff(&a);
    case CKPT_CMD_CREATE:
    case CKPT_CMD_DELETE:
        return ckpt_change(&a);
    case CKPT_CMD_NONE:
        break;
    }
    return IMG_EXIT_FAILURE;
}

/* ---- Hooks ---- */

bool img_checkpoints_convert_copy(BlockDriverState *src,
                                  BlockDriverState *dst)
{
    g_autoptr(GError) err = NULL;

    if (!bdrv_checkpoint_copy_chain(src, dst, &err)) {
        error_report("warning: %s", err->message);
    }
    return true;
}

GHashTable *img_checkpoint_owners(BlockDriverState *bs)
{
    g_autoptr(CheckpointChain) chain = NULL;
    GHashTable *owners;

    if (!bdrv_supports_checkpoints(bs)) {
        return NULL;
    }
    chain = bdrv_checkpoint_chain(bs, NULL);
    if (!chain || !ckpt_chain_length(chain)) {
        return NULL;
    }
    owners = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
    for (guint i = 0; i < ckpt_chain_length(chain); i++) {
        const Checkpoint *c = ckpt_chain_nth(chain, i);
        g_hash_table_insert(owners, g_strdup(c->bitmap), g_strdup(c->name));
    }
    return owners;
}
