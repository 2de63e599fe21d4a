/*
 * Node lifecycle and the node graph: open a node (and its children) from
 * QEMU-style options, probe formats, name nodes, reference counting and
 * close ordering.  The graph is only changed from the main thread.
 */
#include "block/activation.h"
#include "block/block_int.h"
#include "block/dirty-bitmap.h"
#include "util/options.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

static const BlockDriver *const block_drivers[] = {
    &bdrv_file,
    &bdrv_raw,
    &bdrv_qcow2,
};

/* The node graph: every open node, in opening order. */
static GPtrArray *all_nodes;
static unsigned auto_node_counter;

#define NODE_NAME_MAX 31
#define PROBE_BUF_SIZE 2048

BlockDriver *bdrv_find_format(const char *name)
{
    for (size_t i = 0; i < G_N_ELEMENTS(block_drivers); i++) {
        if (!strcmp(block_drivers[i]->format_name, name)) {
            return (BlockDriver *)block_drivers[i];
        }
    }
    return NULL;
}

static bool node_name_valid(const char *name)
{
    size_t len = strlen(name);

    if (len == 0 || len > NODE_NAME_MAX || !g_ascii_isalpha(name[0])) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        char c = name[i];
        if (!g_ascii_isalnum(c) && c != '-' && c != '.' && c != '_') {
            return false;
        }
    }
    return true;
}

BlockDriverState *bdrv_find_node(const char *node_name)
{
    if (!all_nodes || !node_name) {
        return NULL;
    }
    for (guint i = 0; i < all_nodes->len; i++) {
        BlockDriverState *bs = all_nodes->pdata[i];
        if (!strcmp(bs->node_name, node_name)) {
            return bs;
        }
    }
    return NULL;
}

BlockDriverState *bdrv_next_node(BlockDriverState *prev)
{
    guint idx = 0;

    if (!all_nodes) {
        return NULL;
    }
    if (prev) {
        if (!g_ptr_array_find(all_nodes, prev, &idx)) {
            return NULL;
        }
        idx++;
    }
    return idx < all_nodes->len ? all_nodes->pdata[idx] : NULL;
}

static bool bdrv_assign_node_name(BlockDriverState *bs, const char *name,
                                  GError **errp)
{
    if (name) {
        if (!node_name_valid(name)) {
            error_setg(errp, "Invalid node-name: '%s'", name);
            return false;
        }
        if (bdrv_find_node(name)) {
            error_setg(errp, "Duplicate nodes with node-name='%s'", name);
            return false;
        }
        bs->node_name = g_strdup(name);
        bs->named = true;
    } else {
        /* '#' cannot start a user name, so generated ones never clash. */
        bs->node_name = g_strdup_printf("#block%03u", auto_node_counter++);
    }
    return true;
}

/* Pick a format for @filename from its first bytes. */
static const BlockDriver *bdrv_probe(BlockDriverState *file,
                                     const char *filename, GError **errp)
{
    uint8_t buf[PROBE_BUF_SIZE] = {0};
    int64_t len = bdrv_getlength(file);
    int64_t n = MIN(len, (int64_t)sizeof(buf));
    const BlockDriver *best = &bdrv_raw;
    int best_score = 0;
    int ret;

    if (len < 0) {
        error_setg_errno(errp, (int)-len, "Could not get the size of '%s'",
                         filename);
        return NULL;
    }
    if (n > 0) {
        ret = bdrv_pread(file, 0, n, buf, 0);
        if (ret < 0) {
            error_setg_errno(errp, -ret, "Could not read image for "
                             "determining its format");
            return NULL;
        }
    }
    for (size_t i = 0; i < G_N_ELEMENTS(block_drivers); i++) {
        const BlockDriver *drv = block_drivers[i];
        if (drv->probe && !drv->is_protocol) {
            int score = drv->probe(buf, (int)n, filename);
            if (score > best_score) {
                best_score = score;
                best = drv;
            }
        }
    }
    return best;
}

/* Options that every node understands; the rest goes to the driver. */
typedef struct {
    char *driver;
    char *node_name;
    int flags;
} CommonOpts;

static bool take_common_opts(JsonObject *opts, int flags, CommonOpts *c,
                             GError **errp)
{
    g_autoptr(GError) local_err = NULL;
    g_autoptr(JsonObject) cache = NULL;
    bool ro, force_share, direct, no_flush, auto_ro;
    g_autofree char *discard = NULL;
    g_autofree char *detect_zeroes = NULL;

    c->driver = opts_take_str(opts, "driver", &local_err);
    if (!local_err) {
        c->node_name = opts_take_str(opts, "node-name", &local_err);
    }
    if (local_err) {
        g_propagate_error(errp, g_steal_pointer(&local_err));
        return false;
    }
    if (!opts_take_bool(opts, "read-only", !(flags & BDRV_O_RDWR), &ro,
                        errp) ||
        !opts_take_bool(opts, "auto-read-only", false, &auto_ro, errp) ||
        !opts_take_bool(opts, "force-share", !!(flags & BDRV_O_FORCE_SHARE),
                        &force_share, errp)) {
        return false;
    }
    cache = opts_take_object(opts, "cache");
    if (!opts_take_bool(cache, "direct", !!(flags & BDRV_O_NOCACHE), &direct,
                        errp) ||
        !opts_take_bool(cache, "no-flush", !!(flags & BDRV_O_NO_FLUSH),
                        &no_flush, errp)) {
        return false;
    }
    if (cache && !opts_check_empty(cache, "cache", errp)) {
        return false;
    }
    discard = opts_take_str(opts, "discard", errp);
    if (discard && strcmp(discard, "ignore") && strcmp(discard, "off") &&
        strcmp(discard, "unmap") && strcmp(discard, "on")) {
        error_setg(errp, "Invalid discard option '%s'", discard);
        return false;
    }
    detect_zeroes = opts_take_str(opts, "detect-zeroes", errp);
    if (detect_zeroes && strcmp(detect_zeroes, "off") &&
        strcmp(detect_zeroes, "on") && strcmp(detect_zeroes, "unmap")) {
        error_setg(errp, "Invalid detect-zeroes option '%s'", detect_zeroes);
        return false;
    }
    if (force_share && !ro) {
        error_setg(errp, "force-share=on can only be used with read-only "
                   "images");
        return false;
    }
    flags &= ~(BDRV_O_RDWR | BDRV_O_NOCACHE | BDRV_O_NO_FLUSH |
               BDRV_O_FORCE_SHARE);
    flags |= ro ? 0 : BDRV_O_RDWR;
    flags |= direct ? BDRV_O_NOCACHE : 0;
    flags |= no_flush ? BDRV_O_NO_FLUSH : 0;
    flags |= force_share ? BDRV_O_FORCE_SHARE : 0;
    c->flags = flags;
    return true;
}

static int child_flags(int flags)
{
    return flags & (BDRV_O_RDWR | BDRV_O_NOCACHE | BDRV_O_NO_FLUSH |
                    BDRV_O_FORCE_SHARE | BDRV_O_INACTIVE | BDRV_O_CHECK);
}

static BlockDriverState *bdrv_open_inherit(const char *filename,
                                           JsonObject *opts, int flags,
                                           GError **errp);

/*
 * Lock the protocol node for what @drv (its parent, or NULL when the
 * protocol node is used directly) will do with it, the way QEMU does.
 */
static bool apply_file_perm(BlockDriverState *file, const BlockDriver *drv,
                            int flags, GError **errp)
{
    uint64_t perm = BLK_PERM_CONSISTENT_READ;
    uint64_t shared = BLK_PERM_ALL;
    bool exclusive = drv && drv->needs_exclusive_file;

    if (!file->drv->set_perm) {
        return true;
    }
    /* Inactive (incoming migration): read only, let the owner write. */
    if ((flags & BDRV_O_RDWR) && !(flags & BDRV_O_INACTIVE)) {
        perm |= BLK_PERM_WRITE | (exclusive ? BLK_PERM_RESIZE : 0);
    }
    if (exclusive && !(flags & (BDRV_O_FORCE_SHARE | BDRV_O_INACTIVE))) {
        shared = BLK_PERM_CONSISTENT_READ | BLK_PERM_WRITE_UNCHANGED;
    }
    return file->drv->set_perm(file, perm, shared, errp);
}

bool bdrv_apply_file_perm(BlockDriverState *file, const BlockDriver *drv,
                          int flags, GError **errp)
{
    return apply_file_perm(file, drv, flags, errp);
}

/*
 * Open the "file" child of a format node: an object of options, a
 * reference to an existing node by name, or the plain filename.
 */
static BlockDriverState *open_file_child(const char *filename,
                                         JsonObject *opts, int flags,
                                         GError **errp)
{
    g_autoptr(JsonObject) child = opts_take_object(opts, "file");
    g_autofree char *ref = NULL;

    if (child) {
        return bdrv_open_inherit(NULL, child, child_flags(flags) |
                                 BDRV_O_PROTOCOL, errp);
    }
    ref = opts_take_str(opts, "file", errp);
    if (ref) {
        BlockDriverState *bs = bdrv_find_node(ref);
        if (!bs) {
            error_set(errp, ERROR_CLASS_DEVICE_NOT_FOUND,
                      "Cannot find device='' nor node-name='%s'", ref);
            return NULL;
        }
        bdrv_ref(bs);
        return bs;
    }
    if (!filename) {
        error_setg(errp, "A block device must be specified for \"file\"");
        return NULL;
    }
    return bdrv_open_inherit(filename, NULL,
                             child_flags(flags) | BDRV_O_PROTOCOL, errp);
}

/* Resolve a backing file name relative to the directory of @bs. */
static char *backing_path(BlockDriverState *bs)
{
    const char *base = bs->exact_filename ? bs->exact_filename
                                          : bs->filename;

    if (g_path_is_absolute(bs->backing_file) || !base ||
        g_str_has_prefix(bs->backing_file, "json:") || !strchr(base, '/')) {
        /* Like QEMU, a base without a directory adds no "./" prefix. */
        return g_strdup(bs->backing_file);
    }
    g_autofree char *dir = g_path_get_dirname(base);
    return g_build_filename(dir, bs->backing_file, NULL);
}

static bool open_backing(BlockDriverState *bs, JsonObject *opts, int flags,
                         GError **errp)
{
    g_autoptr(JsonObject) child = opts_take_object(opts, "backing");
    g_autoptr(JsonObject) bopts = NULL;
    g_autofree char *ref = NULL;
    g_autofree char *path = NULL;
    int bflags = child_flags(flags) & ~BDRV_O_RDWR;

    if (opts_has(opts, "backing") &&
        JSON_NODE_HOLDS_NULL(json_object_get_member(opts, "backing"))) {
        json_object_remove_member(opts, "backing");
        return true;
    }
    if (child) {
        bs->backing = bdrv_open_inherit(NULL, child, bflags, errp);
        return bs->backing != NULL;
    }
    ref = opts_take_str(opts, "backing", errp);
    if (ref) {
        bs->backing = bdrv_find_node(ref);
        if (!bs->backing) {
            error_set(errp, ERROR_CLASS_DEVICE_NOT_FOUND,
                      "Cannot find device='' nor node-name='%s'", ref);
            return false;
        }
        bdrv_ref(bs->backing);
        return true;
    }
    if (!bs->backing_file || !bs->backing_file[0] ||
        (flags & BDRV_O_NO_BACKING)) {
        return true;
    }
    path = backing_path(bs);
    bopts = json_object_new();
    if (bs->backing_format) {
        json_object_set_string_member(bopts, "driver", bs->backing_format);
    }
    bs->backing = bdrv_open(path, bopts, bflags, errp);
    if (!bs->backing) {
        g_prefix_error(errp, "Could not open backing file: ");
        return false;
    }
    return true;
}

static void bdrv_free(BlockDriverState *bs)
{
    bdrv_release_all_dirty_bitmaps(bs);
    if (bs->dirty_bitmaps) {
        g_ptr_array_unref(bs->dirty_bitmaps);
    }
    g_mutex_clear(&bs->dirty_bitmap_lock);
    if (bs->full_options) {
        json_object_unref(bs->full_options);
    }
    g_free(bs->opaque);
    g_free(bs->node_name);
    g_free(bs->filename);
    g_free(bs->exact_filename);
    g_free(bs->backing_file);
    g_free(bs->backing_format);
    g_free(bs);
}

static BlockDriverState *bdrv_new(void)
{
    BlockDriverState *bs = g_new0(BlockDriverState, 1);

    bs->refcnt = 1;
    bs->request_alignment = 1;
    g_mutex_init(&bs->dirty_bitmap_lock);
    bs->dirty_bitmaps = g_ptr_array_new();
    return bs;
}

static const char *driver_kind(const BlockDriver *drv)
{
    return drv->is_protocol ? "protocol" : "format";
}

static BlockDriverState *bdrv_open_inherit(const char *filename,
                                           JsonObject *in_opts, int flags,
                                           GError **errp)
{
    g_autoptr(JsonObject) opts = in_opts ? options_copy(in_opts)
                                         : json_object_new();
    g_autoptr(JsonObject) saved = NULL;
    CommonOpts c = {0};
    const BlockDriver *drv = NULL;
    BlockDriverState *bs = NULL;
    BlockDriverState *file = NULL;
    g_autofree char *left = NULL;
    int ret;

    if (filename && g_str_has_prefix(filename, "json:")) {
        g_autoptr(JsonObject) j = options_parse_json(filename + 5, errp);
        g_autoptr(GList) members = NULL;
        if (!j) {
            return NULL;
        }
        members = json_object_get_members(j);
        for (GList *l = members; l; l = l->next) {
            if (!json_object_has_member(opts, l->data)) {
                json_object_set_member(opts, l->data,
                    json_node_copy(json_object_get_member(j, l->data)));
            }
        }
        filename = NULL;
    }
    saved = options_copy(opts);
    if (!take_common_opts(opts, flags, &c, errp)) {
        goto fail;
    }
    flags = c.flags;
    /* Like QEMU, refuse a bad or taken name before touching any file. */
    if (c.node_name && !node_name_valid(c.node_name)) {
        error_setg(errp, "Invalid node-name: '%s'", c.node_name);
        goto fail;
    }
    if (c.node_name && bdrv_find_node(c.node_name)) {
        error_setg(errp, "Duplicate nodes with node-name='%s'", c.node_name);
        goto fail;
    }
    if (!filename && opts_has(opts, "filename") && !c.driver &&
        (flags & BDRV_O_PROTOCOL)) {
        c.driver = g_strdup("file");
    }
    if (c.driver) {
        drv = bdrv_find_format(c.driver);
        if (!drv) {
            error_setg(errp, "Unknown driver '%s'", c.driver);
            goto fail;
        }
    } else if (flags & BDRV_O_PROTOCOL) {
        drv = &bdrv_file;
    } else if (!filename && !opts_has(opts, "file")) {
        error_setg(errp, "Must specify either driver or file");
        goto fail;
    }

    if (!drv || drv->is_format) {
        file = open_file_child(filename, opts, flags, errp);
        if (!file) {
            goto fail;
        }
        if (!drv) {
            drv = bdrv_probe(file, filename, errp);
            if (!drv) {
                goto fail;
            }
        }
        if (!apply_file_perm(file, drv, flags, errp)) {
            goto fail;
        }
    } else if (filename) {
        if (opts_has(opts, "filename")) {
            error_setg(errp, "Cannot give both a filename and the "
                       "'filename' option");
            goto fail;
        }
        json_object_set_string_member(opts, "filename", filename);
    }

    bs = bdrv_new();
    bs->drv = drv;
    bs->open_flags = flags;
    bs->read_only = !(flags & BDRV_O_RDWR);
    bs->file = g_steal_pointer(&file);
    if (drv->is_protocol) {
        bs->filename = g_strdup(filename ? filename :
                           json_object_get_string_member_with_default(
                               opts, "filename", ""));
        bs->exact_filename = g_strdup(bs->filename);
    } else if (bs->file) {
        bs->filename = g_strdup(bs->file->filename);
        bs->exact_filename = g_strdup(bs->file->exact_filename);
    }
    if (!bdrv_assign_node_name(bs, c.node_name, errp)) {
        goto fail_open;
    }
    if (drv->instance_size) {
        bs->opaque = g_malloc0(drv->instance_size);
    }
    ret = drv->open(bs, opts, flags, errp);
    if (ret < 0) {
        g_free(bs->node_name);
        bs->node_name = NULL;
        goto fail_open;
    }
    if (drv->supports_backing && !open_backing(bs, opts, flags, errp)) {
        drv->close(bs);
        goto fail_open;
    }
    left = opts_first_key(opts);
    if (left) {
        error_setg(errp, "Block %s '%s' %s the option '%s'", driver_kind(drv),
                   drv->format_name,
                   drv->is_protocol ? "doesn't support" : "does not support",
                   left);
        if (drv->close) {
            drv->close(bs);
        }
        goto fail_open;
    }
    bs->full_options = g_steal_pointer(&saved);
    if (!all_nodes) {
        all_nodes = g_ptr_array_new();
    }
    g_ptr_array_add(all_nodes, bs);
    g_free(c.driver);
    g_free(c.node_name);
    return bs;

fail_open:
    if (bs->backing) {
        bdrv_unref(bs->backing);
    }
    if (bs->file) {
        bdrv_unref(bs->file);
    }
    bdrv_free(bs);
fail:
    if (file) {
        bdrv_unref(file);
    }
    g_free(c.driver);
    g_free(c.node_name);
    return NULL;
}

BlockDriverState *bdrv_open(const char *filename, JsonObject *options,
                            int flags, GError **errp)
{
    BlockDriverState *bs = bdrv_open_inherit(filename, options, flags, errp);

    if (bs && bs->drv->is_protocol &&
        !apply_file_perm(bs, NULL, bs->open_flags, errp)) {
        bdrv_unref(bs);
        return NULL;
    }
    return bs;
}

void bdrv_ref(BlockDriverState *bs)
{
    g_atomic_int_inc(&bs->refcnt);
}

void bdrv_unref(BlockDriverState *bs)
{
    if (!bs || !g_atomic_int_dec_and_test(&bs->refcnt)) {
        return;
    }
    if (!bs->read_only && !(bs->open_flags & BDRV_O_INACTIVE)) {
        if (bs->drv->inactivate) {
            bs->drv->inactivate(bs);
        }
        bdrv_flush(bs);
    }
    if (bs->drv->close) {
        bs->drv->close(bs);
    }
    if (all_nodes) {
        g_ptr_array_remove(all_nodes, bs);
    }
    if (bs->backing) {
        bdrv_unref(bs->backing);
    }
    if (bs->file) {
        bdrv_unref(bs->file);
    }
    bdrv_free(bs);
}

void bdrv_close_all(void)
{
    /* Drop the graph's reference to every named top node, newest first. */
    while (all_nodes && all_nodes->len) {
        BlockDriverState *bs = all_nodes->pdata[all_nodes->len - 1];
        guint before = all_nodes->len;
        bdrv_unref(bs);
        if (all_nodes->len == before) {
            /* Still referenced (by a parent): remove it from the list. */
            g_ptr_array_remove(all_nodes, bs);
        }
    }
}

bool bdrv_is_read_only(BlockDriverState *bs)
{
    return bs->read_only;
}

const char *bdrv_get_node_name(BlockDriverState *bs)
{
    return bs->node_name;
}

const char *bdrv_get_format_name(BlockDriverState *bs)
{
    return bs->drv->format_name;
}

const char *bdrv_get_filename(BlockDriverState *bs)
{
    return bs->filename;
}

BlockDriverState *bdrv_get_file(BlockDriverState *bs)
{
    return bs->file;
}

BlockDriverState *bdrv_get_backing(BlockDriverState *bs)
{
    return bs->backing;
}

bool bdrv_is_format(BlockDriverState *bs, const char *name)
{
    return !strcmp(bs->drv->format_name, name);
}

void bdrv_set_read_only_error(BlockDriverState *bs, GError **errp)
{
    error_setg(errp, "Node '%s' is read only", bs->node_name);
}

bool bdrv_create(const char *fmt, const char *filename, JsonObject *opts,
                 GError **errp)
{
    const BlockDriver *drv = bdrv_find_format(fmt);
    g_autoptr(JsonObject) o = opts ? options_copy(opts) : json_object_new();

    if (!drv) {
        error_setg(errp, "Unknown file format '%s'", fmt);
        return false;
    }
    if (!drv->create) {
        error_setg(errp, "Format driver '%s' does not support image creation",
                   fmt);
        return false;
    }
    if (!drv->create(filename, o, errp)) {
        return false;
    }
    return opts_check_empty(o, "Image creation", errp);
}

int bdrv_check(BlockDriverState *bs, BdrvCheckResult *res, BdrvCheckMode fix)
{
    memset(res, 0, sizeof(*res));
    if (!bs->drv->check) {
        return -ENOTSUP;
    }
    return bs->drv->check(bs, res, fix);
}

int bdrv_get_info(BlockDriverState *bs, BlockDriverInfo *bdi)
{
    memset(bdi, 0, sizeof(*bdi));
    if (!bs->drv->get_info) {
        return -ENOTSUP;
    }
    return bs->drv->get_info(bs, bdi);
}

JsonNode *bdrv_get_specific_info(BlockDriverState *bs, GError **errp)
{
    if (!bs->drv->get_specific_info) {
        return NULL;
    }
    return bs->drv->get_specific_info(bs, errp);
}

int64_t bdrv_get_allocated_file_size(BlockDriverState *bs)
{
    if (bs->drv->get_allocated_file_size) {
        return bs->drv->get_allocated_file_size(bs);
    }
    if (bs->file) {
        return bdrv_get_allocated_file_size(bs->file);
    }
    return -ENOTSUP;
}

int bdrv_truncate(BlockDriverState *bs, int64_t offset, bool exact,
                  PreallocMode prealloc, GError **errp)
{
    int ret;

    if (offset < 0 || offset > BDRV_MAX_LENGTH) {
        error_setg(errp, "Image size must be less than 8 EiB!");
        return -EINVAL;
    }
    if (bs->read_only) {
        error_setg(errp, "Image is read-only");
        return -EACCES;
    }
    if (!bs->drv->truncate) {
        error_setg(errp, "Image format driver does not support resize");
        return -ENOTSUP;
    }
    if (!bdrv_dirty_bitmaps_prepare_truncate(bs, errp)) {
        return -EBUSY;
    }
    ret = bs->drv->truncate(bs, offset, exact, prealloc, errp);
    if (ret >= 0) {
        bdrv_dirty_bitmaps_truncate(bs, bdrv_getlength(bs));
    }
    return ret;
}

int prealloc_mode_parse(const char *s)
{
    static const char *const names[] = {"off", "metadata", "falloc", "full"};

    for (size_t i = 0; i < G_N_ELEMENTS(names); i++) {
        if (!strcmp(s, names[i])) {
            return (int)i;
        }
    }
    return -1;
}

const char *prealloc_mode_name(PreallocMode m)
{
    static const char *const names[] = {"off", "metadata", "falloc", "full"};
    return names[m];
}
