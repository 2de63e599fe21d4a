/* Builders of QEMU-shaped node descriptions (ImageInfo, BlockDeviceInfo). */
#include "block/qapi-info.h"
#include "block/block_int.h"
#include "block/dirty-bitmap.h"

JsonObject *bdrv_image_info(BlockDriverState *bs, GError **errp)
{
    g_autoptr(JsonObject) info = json_object_new();
    int64_t size = bdrv_getlength(bs);
    int64_t actual = bdrv_get_allocated_file_size(bs);
    BlockDriverInfo bdi;
    JsonNode *specific;
    bool dirty = false;

    if (size < 0) {
        error_setg_errno(errp, (int)-size, "Can't get image size '%s'",
                         bs->filename);
        return NULL;
    }
    json_object_set_int_member(info, "virtual-size", size);
    json_object_set_string_member(info, "filename", bs->filename);
    if (bdrv_get_info(bs, &bdi) == 0) {
        if (bdi.cluster_size) {
            json_object_set_int_member(info, "cluster-size",
                                       bdi.cluster_size);
        }
        dirty = bdi.is_dirty;
    }
    json_object_set_string_member(info, "format", bs->drv->format_name);
    if (actual >= 0) {
        json_object_set_int_member(info, "actual-size", actual);
    }
    specific = bdrv_get_specific_info(bs, NULL);
    if (specific) {
        json_object_set_member(info, "format-specific", specific);
    }
    json_object_set_boolean_member(info, "dirty-flag", dirty);
    if (bs->backing_file) {
        json_object_set_string_member(info, "backing-filename",
                                      bs->backing_file);
        if (bs->backing) {
            json_object_set_string_member(info, "full-backing-filename",
                                          bs->backing->filename);
        }
        if (bs->backing_format) {
            json_object_set_string_member(info, "backing-filename-format",
                                          bs->backing_format);
        }
    }
    return g_steal_pointer(&info);
}

static int backing_depth(BlockDriverState *bs)
{
    int depth = 0;

    for (BlockDriverState *b = bs->backing; b; b = b->backing) {
        depth++;
    }
    return depth;
}

/* BlockDirtyInfo of every named bitmap of @bs (NULL when it has none). */
static JsonArray *dirty_bitmaps_info(BlockDriverState *bs)
{
    JsonArray *arr;

    if (!bdrv_dirty_bitmap_first(bs)) {
        return NULL;
    }
    arr = json_array_new();
    for (BdrvDirtyBitmap *bm = bdrv_dirty_bitmap_first(bs); bm;
         bm = bdrv_dirty_bitmap_next(bm)) {
        JsonObject *o = json_object_new();
        bool inconsistent = bdrv_dirty_bitmap_inconsistent(bm);

        json_object_set_string_member(o, "name", bdrv_dirty_bitmap_name(bm));
        json_object_set_boolean_member(o, "recording",
                                       bdrv_dirty_bitmap_recording(bm));
        json_object_set_boolean_member(o, "persistent",
                                       bdrv_dirty_bitmap_persistent(bm));
        json_object_set_boolean_member(o, "busy",
                                       bdrv_dirty_bitmap_busy(bm));
        json_object_set_int_member(o, "granularity",
                                   bdrv_dirty_bitmap_granularity(bm));
        json_object_set_int_member(o, "count",
                                   inconsistent ? 0 : bdrv_get_dirty_count(bm));
        if (inconsistent) {
            json_object_set_boolean_member(o, "inconsistent", true);
        }
        json_array_add_object_element(arr, o);
    }
    return arr;
}

JsonObject *bdrv_block_device_info(BlockDriverState *bs, GError **errp)
{
    g_autoptr(JsonObject) info = json_object_new();
    JsonObject *image = bdrv_image_info(bs, errp);
    JsonObject *cache;
    static const char *const zero_limits[] = {
        "bps", "bps_rd", "bps_wr", "iops", "iops_rd", "iops_wr",
    };

    if (!image) {
        return NULL;
    }
    json_object_set_string_member(info, "file", bs->filename);
    json_object_set_string_member(info, "node-name", bs->node_name);
    json_object_set_boolean_member(info, "ro", bs->read_only);
    json_object_set_string_member(info, "drv", bs->drv->format_name);
    if (bs->backing) {
        json_object_set_string_member(info, "backing_file",
                                      bs->backing->filename);
    }
    json_object_set_int_member(info, "backing_file_depth", backing_depth(bs));
    json_object_set_boolean_member(info, "encrypted", false);
    json_object_set_string_member(info, "detect_zeroes", "off");
    for (size_t i = 0; i < G_N_ELEMENTS(zero_limits); i++) {
        json_object_set_int_member(info, zero_limits[i], 0);
    }
    json_object_set_object_member(info, "image", image);
    json_object_set_int_member(info, "write_threshold", 0);
    cache = json_object_new();
    json_object_set_boolean_member(cache, "writeback", true);
    json_object_set_boolean_member(cache, "direct",
                                   !!(bs->open_flags & BDRV_O_NOCACHE));
    json_object_set_boolean_member(cache, "no-flush",
                                   !!(bs->open_flags & BDRV_O_NO_FLUSH));
    json_object_set_object_member(info, "cache", cache);
    {
        JsonArray *bitmaps = dirty_bitmaps_info(bs);
        if (bitmaps) {
            json_object_set_array_member(info, "dirty-bitmaps", bitmaps);
        }
    }
    return g_steal_pointer(&info);
}

JsonArray *bdrv_query_named_nodes(bool flat, GError **errp)
{
    g_autoptr(JsonArray) arr = json_array_new();

    for (BlockDriverState *bs = bdrv_next_node(NULL); bs;
         bs = bdrv_next_node(bs)) {
        JsonObject *info = bdrv_block_device_info(bs, errp);
        if (!info) {
            return NULL;
        }
        json_array_add_object_element(arr, info);
    }
    return g_steal_pointer(&arr);
}
