/*
 * QEMU-shaped descriptions of nodes: ImageInfo (qemu-img info,
 * query-named-block-nodes "image") and BlockDeviceInfo
 * (query-named-block-nodes entries).
 */
#ifndef BLOCK_QAPI_INFO_H
#define BLOCK_QAPI_INFO_H

#include "block/block.h"

/*
 * ImageInfo of @bs: virtual-size, filename, cluster-size, format,
 * actual-size, format-specific, dirty-flag, backing-filename(s).
 * Returns NULL with @errp set if the size cannot be read.
 */
JsonObject *bdrv_image_info(BlockDriverState *bs, GError **errp);

/* BlockDeviceInfo of @bs, as one element of query-named-block-nodes. */
JsonObject *bdrv_block_device_info(BlockDriverState *bs, GError **errp);

/* query-named-block-nodes: every node (@flat: no backing image chains). */
JsonArray *bdrv_query_named_nodes(bool flat, GError **errp);

#endif
