/*
 * qemu-img bitmap: change the persistent bitmaps of an image offline with
 * QEMU's interface (--add, --remove, --clear, --enable, --disable,
 * --merge SOURCE [-b FILE [-F FMT]], applied in the order given), and list
 * them (--list [--output=human|json], ours).  Also the bitmap hooks of
 * convert (--bitmaps) and map (--bitmap NAME), see img-bitmap.h.
 *
 * Changes are stored when the image is closed; an operation that fails
 * stops the list, and the ones before it are kept (as QEMU does).
 */
#include <stdio.h>
#include <string.h>

#include "block/dirty-bitmap.h"
#include "qapi/error.h"
#include "img-bitmap.h"
#include "img-checkpoint.h"
#include "img-cmds.h"

typedef enum {
    BITMAP_ADD,
    BITMAP_REMOVE,
    BITMAP_CLEAR,
    BITMAP_ENABLE,
    BITMAP_DISABLE,
    BITMAP_MERGE,
} BitmapOpKind;

static const char *const op_names[] = {
    "add", "remove", "clear", "enable", "disable", "merge",
};

typedef struct {
    BitmapOpKind kind;
    const char *src;        /* --merge SOURCE */
} BitmapOp;

enum {
    OPT_ADD = 1000,
    OPT_REMOVE,
    OPT_CLEAR,
    OPT_ENABLE,
    OPT_DISABLE,
    OPT_MERGE,
    OPT_LIST,
};

typedef struct {
    ImgOpenArgs oa;
    GArray *ops;             /* BitmapOp */
    const char *src_file;    /* -b */
    const char *src_fmt;     /* -F */
    uint64_t granularity;    /* -g; 0: default */
    bool list;
    ImgOutputFormat output;
} BitmapArgs;

/* ---- Changes ---- */

static bool run_op(BlockDriverState *bs, BlockDriverState *src_bs,
                   const BitmapArgs *a, const BitmapOp *op,
                   const char *bitmap, GError **errp)
{
    BlockDirtyBitmapSource src = { src_bs ? src_bs : bs, op->src };

    switch (op->kind) {
    case BITMAP_ADD:
        if (a->granularity > UINT32_MAX) {
            /* QEMU's granularity is 32 bits wide: same answer as QEMU. */
            error_setg(errp, "Granularity must be power of 2 and at least "
                       "512");
            return false;
        }
        return block_dirty_bitmap_add(bs, bitmap, a->granularity, true,
                                      false, errp) != NULL;
    case BITMAP_REMOVE:
        return block_dirty_bitmap_remove(bs, bitmap, errp);
    case BITMAP_CLEAR:
        return block_dirty_bitmap_clear(bs, bitmap, NULL, errp);
    case BITMAP_ENABLE:
        return block_dirty_bitmap_enable(bs, bitmap, errp);
    case BITMAP_DISABLE:
        return block_dirty_bitmap_disable(bs, bitmap, errp);
    case BITMAP_MERGE:
        return block_dirty_bitmap_merge(bs, bitmap, &src, 1, NULL, errp);
    }
    g_assert_not_reached();
}

static int bitmap_change(BitmapArgs *a, const char *bitmap)
{
    g_autoptr(BlockDriverState) bs = NULL;
    g_autoptr(BlockDriverState) src_bs = NULL;
    g_autoptr(GError) err = NULL;
    int ret = 0;

    a->oa.writable = true;
    bs = img_open(&a->oa);
    if (!bs) {
        return IMG_EXIT_FAILURE;
    }
    if (a->src_file) {
        ImgOpenArgs so = { .filename = a->src_file, .fmt = a->src_fmt };
        src_bs = img_open(&so);
        if (!src_bs) {
            return IMG_EXIT_FAILURE;
        }
    }
    for (guint i = 0; i < a->ops->len; i++) {
        const BitmapOp *op = &g_array_index(a->ops, BitmapOp, i);
        if (!run_op(bs, src_bs, a, op, bitmap, &err)) {
            error_report("Operation %s on bitmap %s failed: %s",
                         op_names[op->kind], bitmap, err->message);
            ret = IMG_EXIT_FAILURE;
            break;
        }
    }
    /* Store and flush now, so that a failure is reported. */
    if (!img_finish_writes(bs, a->oa.filename)) {
        ret = IMG_EXIT_FAILURE;
    }
    return ret;
}

/* ---- --list ---- */

typedef struct {
    const char *name;
    uint64_t granularity;
    bool recording, persistent, busy, inconsistent;
    uint64_t count;
    const char *checkpoint;     /* the checkpoint owning it, or NULL */
} ListRow;

static void list_human(GArray *rows)
{
    int w = 4;
    bool owned = false;

    for (guint i = 0; i < rows->len; i++) {
        w = MAX(w, (int)strlen(g_array_index(rows, ListRow, i).name));
        owned |= g_array_index(rows, ListRow, i).checkpoint != NULL;
    }
    printf("%-*s  %11s  %-9s  %-10s  %-6s  %s%s\n", w, "NAME", "GRANULARITY",
           "RECORDING", "PERSISTENT", "STATE", "DIRTY BYTES",
           owned ? "  CHECKPOINT" : "");
    for (guint i = 0; i < rows->len; i++) {
        const ListRow *r = &g_array_index(rows, ListRow, i);
        g_autofree char *count = r->inconsistent
            ? g_strdup("-") : g_strdup_printf("%" PRIu64, r->count);

        printf("%-*s  %11" PRIu64 "  %-9s  %-10s  %-6s  %s", w, r->name,
               r->granularity, r->recording ? "yes" : "no",
               r->persistent ? "yes" : "no",
               r->inconsistent ? "in-use" : (r->busy ? "busy" : "ok"),
               count);
        if (owned) {
            printf("%*s%s", MAX(13 - (int)strlen(count), 2), "",
                   r->checkpoint ? r->checkpoint : "-");
        }
        printf("\n");
    }
}

static void list_json(GArray *rows)
{
    g_autoptr(JsonNode) node = json_node_new(JSON_NODE_ARRAY);
    JsonArray *arr = json_array_new();

    for (guint i = 0; i < rows->len; i++) {
        const ListRow *r = &g_array_index(rows, ListRow, i);
        JsonObject *o = json_object_new();

        json_object_set_string_member(o, "name", r->name);
        json_object_set_int_member(o, "granularity", (gint64)r->granularity);
        json_object_set_boolean_member(o, "recording", r->recording);
        json_object_set_boolean_member(o, "persistent", r->persistent);
        json_object_set_boolean_member(o, "busy", r->busy);
        json_object_set_boolean_member(o, "inconsistent", r->inconsistent);
        json_object_set_boolean_member(o, "in-use", r->inconsistent);
        if (!r->inconsistent) {
            json_object_set_int_member(o, "count", (gint64)r->count);
        }
        if (r->checkpoint) {
            json_object_set_string_member(o, "checkpoint", r->checkpoint);
        }
        json_array_add_object_element(arr, o);
    }
    json_node_take_array(node, arr);
    img_json_print(node);
}

static int bitmap_list(BitmapArgs *a)
{
    g_autoptr(BlockDriverState) bs = NULL;
    g_autoptr(GArray) rows = g_array_new(FALSE, TRUE, sizeof(ListRow));
    g_autoptr(GError) err = NULL;
    g_autoptr(GHashTable) owners = NULL;
    int ret = 0;

    bs = img_open(&a->oa);
    if (!bs) {
        return IMG_EXIT_FAILURE;
    }
    owners = img_checkpoint_owners(bs);
    if (!bdrv_dirty_bitmaps_check_stored(bs, &err)) {
        error_report("%s", err->message);
        return IMG_EXIT_FAILURE;
    }
    for (BdrvDirtyBitmap *bm = bdrv_dirty_bitmap_first(bs); bm;
         bm = bdrv_dirty_bitmap_next(bm)) {
        ListRow r = {
            .name = bdrv_dirty_bitmap_name(bm),
            .granularity = bdrv_dirty_bitmap_granularity(bm),
            .persistent = bdrv_dirty_bitmap_persistent(bm),
            .busy = bdrv_dirty_bitmap_busy(bm),
        };
        r.checkpoint = owners && r.name ? g_hash_table_lookup(owners, r.name)
                                        : NULL;
        if (!r.name) {
            continue;
        }
        if (!bdrv_dirty_bitmap_inconsistent(bm) &&
            !bdrv_dirty_bitmap_count_checked(bm, &r.count, &err)) {
            error_report("%s", err->message);
            g_clear_error(&err);
            ret = IMG_EXIT_FAILURE;
        }
        r.recording = bdrv_dirty_bitmap_recording(bm);
        r.inconsistent = bdrv_dirty_bitmap_inconsistent(bm);
        g_array_append_val(rows, r);
    }
    if (a->output == IMG_OUTPUT_JSON) {
        list_json(rows);
    } else if (rows->len) {
        list_human(rows);
    }
    return ret;
}

/* ---- Option parsing ---- */

static void add_op(BitmapArgs *a, BitmapOpKind kind, const char *src)
{
    BitmapOp op = { kind, src };

    g_array_append_val(a->ops, op);
}

static bool has_op(const BitmapArgs *a, BitmapOpKind kind)
{
    for (guint i = 0; i < a->ops->len; i++) {
        if (g_array_index(a->ops, BitmapOp, i).kind == kind) {
            return true;
        }
    }
    return false;
}

/* Returns -1 to go on, or an exit code. */
static int parse_opt(BitmapArgs *a, const ImgCmd *cmd, int c, char **argv)
{
    int64_t g;

    switch (c) {
    case 'b':
        a->src_file = optarg;
        break;
    case 'F':
        a->src_fmt = optarg;
        break;
    case 'g':
        g = img_cvtnum("granularity", optarg);
        if (g < 0) {
            return IMG_EXIT_FAILURE;
        }
        a->granularity = (uint64_t)g;
        break;
    case OPT_ADD: case OPT_REMOVE: case OPT_CLEAR: case OPT_ENABLE:
    case OPT_DISABLE:
        add_op(a, (BitmapOpKind)(c - OPT_ADD), NULL);
        break;
    case OPT_MERGE:
        add_op(a, BITMAP_MERGE, optarg);
        break;
    case OPT_LIST:
        a->list = true;
        break;
    case IMG_OPT_OUTPUT:
        if (!img_parse_output(optarg, &a->output)) {
            return IMG_EXIT_FAILURE;
        }
        break;
    default:
        return img_common_opt(cmd, &a->oa, c, argv);
    }
    return IMG_OPT_CONTINUE;
}

/* QEMU's checks, in QEMU's order. */
static int check_args(BitmapArgs *a, int argc)
{
    if (a->list) {
        if (a->ops->len || a->src_file || a->granularity) {
            return img_usage_error("--list cannot be combined with "
                                   "changes");
        }
        if (optind != argc - 1) {
            return img_usage_error("Expecting one filename with --list");
        }
        return -1;
    }
    if (!a->ops->len) {
        error_report("Need at least one of --add, --remove, --clear, "
                     "--enable, --disable, or --merge");
        return IMG_EXIT_FAILURE;
    }
    if (a->granularity && !has_op(a, BITMAP_ADD)) {
        error_report("granularity only supported with --add");
        return IMG_EXIT_FAILURE;
    }
    if (a->src_fmt && !a->src_file) {
        error_report("-F only supported with -b");
        return IMG_EXIT_FAILURE;
    }
    if (a->src_file && !has_op(a, BITMAP_MERGE)) {
        error_report("Merge bitmap source file only supported with --merge");
        return IMG_EXIT_FAILURE;
    }
    if (a->oa.force_share) {
        error_report("-U is only supported with --list");
        return IMG_EXIT_FAILURE;
    }
    if (optind != argc - 2) {
        error_report("Expecting filename and bitmap name");
        return IMG_EXIT_FAILURE;
    }
    return -1;
}

int img_bitmap(const ImgCmd *cmd, int argc, char **argv)
{
    static const struct option long_opts[] = {
        { "help", no_argument, NULL, 'h' },
        { "object", required_argument, NULL, IMG_OPT_OBJECT },
        { "image-opts", no_argument, NULL, IMG_OPT_IMAGE_OPTS },
        { "add", no_argument, NULL, OPT_ADD },
        { "remove", no_argument, NULL, OPT_REMOVE },
        { "clear", no_argument, NULL, OPT_CLEAR },
        { "enable", no_argument, NULL, OPT_ENABLE },
        { "disable", no_argument, NULL, OPT_DISABLE },
        { "merge", required_argument, NULL, OPT_MERGE },
        { "list", no_argument, NULL, OPT_LIST },
        { "output", required_argument, NULL, IMG_OPT_OUTPUT },
        { "force-share", no_argument, NULL, 'U' },
        { NULL, 0, NULL, 0 },
    };
    g_autoptr(GArray) ops = g_array_new(FALSE, TRUE, sizeof(BitmapOp));
    BitmapArgs a = { .ops = ops, .output = IMG_OUTPUT_HUMAN };
    int c, r;

    while ((c = getopt_long(argc, argv, ":b:f:F:g:hU", long_opts,
                            NULL)) != -1) {
        r = parse_opt(&a, cmd, c, argv);
        if (r >= 0) {
            return r;
        }
    }
    r = check_args(&a, argc);
    if (r >= 0) {
        return r;
    }
    a.oa.filename = argv[optind];
    if (a.list) {
        return bitmap_list(&a);
    }
    return bitmap_change(&a, argv[optind + 1]);
}

/* ---- Hooks for convert and map ---- */

bool img_bitmaps_convert_check(BlockDriverState *src, const char *out_fmt,
                               bool skip_broken)
{
    g_autoptr(GError) err = NULL;

    if (!bdrv_supports_persistent_dirty_bitmap(src)) {
        error_report("Source lacks bitmap support");
        return false;
    }
    if (!bdrv_format_supports_persistent_dirty_bitmap(out_fmt)) {
        error_report("Format driver '%s' does not support bitmaps",
                     out_fmt ? out_fmt : "raw");
        return false;
    }
    if (!bdrv_dirty_bitmaps_check_stored(src, &err)) {
        error_report("%s", err->message);
        return false;
    }
    for (BdrvDirtyBitmap *bm = bdrv_dirty_bitmap_first(src); bm;
         bm = bdrv_dirty_bitmap_next(bm)) {
        if (!bdrv_dirty_bitmap_persistent(bm) || skip_broken) {
            continue;
        }
        if (bdrv_dirty_bitmap_inconsistent(bm) ||
            !bdrv_dirty_bitmap_load(bm, &err)) {
            error_report("Cannot copy inconsistent bitmap '%s'",
                         bdrv_dirty_bitmap_name(bm));
            fprintf(stderr, "Try --skip-broken-bitmaps, or use 'qemu-img "
                    "bitmap --remove' to delete it\n");
            return false;
        }
    }
    return true;
}

bool img_bitmaps_convert_copy(BlockDriverState *src, BlockDriverState *dst,
                              bool skip_broken)
{
    for (BdrvDirtyBitmap *bm = bdrv_dirty_bitmap_first(src); bm;
         bm = bdrv_dirty_bitmap_next(bm)) {
        const char *name = bdrv_dirty_bitmap_name(bm);
        BlockDirtyBitmapSource s = { src, name };
        g_autoptr(GError) err = NULL;

        if (!bdrv_dirty_bitmap_persistent(bm)) {
            continue;
        }
        if (skip_broken && (bdrv_dirty_bitmap_inconsistent(bm) ||
                            !bdrv_dirty_bitmap_load(bm, NULL))) {
            error_report("warning: Skipping inconsistent bitmap '%s'", name);
            continue;
        }
        if (!block_dirty_bitmap_add(dst, name,
                                    bdrv_dirty_bitmap_granularity(bm), true,
                                    !bdrv_dirty_bitmap_recording(bm),
                                    &err)) {
            error_report("Failed to create bitmap %s: %s", name,
                         err->message);
            return false;
        }
        if (!block_dirty_bitmap_merge(dst, name, &s, 1, NULL, &err)) {
            error_report("Failed to populate bitmap %s: %s", name,
                         err->message);
            block_dirty_bitmap_remove(dst, name, NULL);
            return false;
        }
    }
    return img_checkpoints_convert_copy(src, dst);
}

static void map_print(ImgOutputFormat out, int64_t start, int64_t len,
                      bool dirty, bool first)
{
    if (out == IMG_OUTPUT_JSON) {
        printf("%s{ \"start\": %" PRId64 ", \"length\": %" PRId64
               ", \"dirty\": %s}", first ? "[" : ",\n", start, len,
               dirty ? "true" : "false");
    } else {
        printf("%#-16" PRIx64 "%#-16" PRIx64 "%s\n", (uint64_t)start,
               (uint64_t)len, dirty ? "dirty" : "clean");
    }
}

int img_bitmap_map(BlockDriverState *bs, const char *name, int64_t start,
                   int64_t length, ImgOutputFormat out)
{
    g_autoptr(GError) err = NULL;
    BdrvDirtyBitmap *bm = block_dirty_bitmap_lookup(bs, name, &err);
    int64_t size = bdrv_getlength(bs), end;
    bool first = true;

    if (!bm ||
        !bdrv_dirty_bitmap_check(bm, BDRV_BITMAP_INCONSISTENT, &err) ||
        !bdrv_dirty_bitmap_load(bm, &err)) {
        error_report("%s", err->message);
        return IMG_EXIT_FAILURE;
    }
    size = MIN(size, (int64_t)bdrv_dirty_bitmap_size(bm));
    end = length < 0 || length > size - start ? size : start + length;
    if (out == IMG_OUTPUT_HUMAN) {
        printf("%-16s%-16s%s\n", "Offset", "Length", "Bitmap");
    }
    while (start < end) {
        int64_t n;
        bool dirty = bdrv_dirty_bitmap_status(bm, start, end - start, &n);

        if (n <= 0) {
            break;
        }
        map_print(out, start, n, dirty, first);
        first = false;
        start += n;
    }
    if (out == IMG_OUTPUT_JSON) {
        printf("%s]\n", first ? "[" : "");
    }
    return 0;
}
