/*
 * Nodes created by the monitor (blockdev-add, --blockdev) and their
 * removal.  The monitor holds one reference to each node it created.
 */
#ifndef BLOCK_BLOCKDEV_H
#define BLOCK_BLOCKDEV_H

#include "block/block.h"

/* Open a node from BlockdevOptions; the root must have a node-name. */
BlockDriverState *blockdev_add(JsonObject *opts, GError **errp);

/* Drop the monitor's node; refused while anything else uses it. */
bool blockdev_del(const char *node_name, GError **errp);

/* Whether the monitor created @bs (so blockdev-del may remove it). */
bool blockdev_is_monitor_owned(BlockDriverState *bs);

/*
 * Find a node for a QMP command's "node" argument, or fail with QEMU's
 * "Cannot find device='X' nor node-name='X'".
 */
BlockDriverState *blockdev_lookup_node(const char *name, GError **errp);

/* Close every monitor-owned node, newest first (daemon shutdown). */
void blockdev_close_all(void);

#endif
