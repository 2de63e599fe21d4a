/*
 * Monitor-owned nodes: blockdev-add opens a node tree and keeps one
 * reference; blockdev-del drops it when nothing else uses the node.
 */
#include "block/blockdev.h"
#include "block/activation.h"
#include "block/block_int.h"
#include "util/options.h"

/* Nodes the monitor created, in creation order (part of the graph). */
static GPtrArray *monitor_nodes;

BlockDriverState *blockdev_add(JsonObject *opts, GError **errp)
{
    BlockDriverState *bs;
    bool ro = false;
    g_autoptr(JsonObject) copy = options_copy(opts);

    if (!opts_has(copy, "node-name")) {
        error_setg(errp, "'node-name' must be specified for the root node");
        return NULL;
    }
    /* blockdev-add defaults to read-write, unlike the image tools. */
    if (!opts_take_bool(copy, "read-only", false, &ro, errp)) {
        return NULL;
    }
    json_object_set_boolean_member(copy, "read-only", ro);
    bs = bdrv_open(NULL, copy, (ro ? 0 : BDRV_O_RDWR) |
                   (bdrv_incoming_migration() ? BDRV_O_INACTIVE : 0), errp);
    if (!bs) {
        return NULL;
    }
    if (!monitor_nodes) {
        monitor_nodes = g_ptr_array_new();
    }
    g_ptr_array_add(monitor_nodes, bs);
    return bs;
}

bool blockdev_is_monitor_owned(BlockDriverState *bs)
{
    return monitor_nodes && g_ptr_array_find(monitor_nodes, bs, NULL);
}

bool blockdev_del(const char *node_name, GError **errp)
{
    BlockDriverState *bs = bdrv_find_node(node_name);

    if (!bs) {
        error_setg(errp, "Failed to find node with node-name='%s'",
                   node_name);
        return false;
    }
    if (!blockdev_is_monitor_owned(bs)) {
        error_setg(errp, "Node %s is not owned by the monitor", node_name);
        return false;
    }
    if (g_atomic_int_get(&bs->refcnt) > 1) {
        error_setg(errp, "Node %s is in use", node_name);
        return false;
    }
    g_ptr_array_remove(monitor_nodes, bs);
    bdrv_unref(bs);
    return true;
}

void blockdev_close_all(void)
{
    while (monitor_nodes && monitor_nodes->len) {
        BlockDriverState *bs = monitor_nodes->pdata[monitor_nodes->len - 1];
        g_ptr_array_remove_index(monitor_nodes, monitor_nodes->len - 1);
        bdrv_unref(bs);
    }
}

BlockDriverState *blockdev_lookup_node(const char *name, GError **errp)
{
    BlockDriverState *bs = name ? bdrv_find_node(name) : NULL;

    if (!bs) {
        error_setg(errp, "Cannot find device='%s' nor node-name='%s'",
                   name ? name : "", name ? name : "");
    }
    return bs;
}
