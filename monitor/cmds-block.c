/* QMP handlers for qapi/schema/block-core.json: node creation and queries. */
#include "block/blockdev.h"
#include "block/qapi-info.h"
#include "qapi/error.h"
#include "qapi/qobject-json.h"
#include "qmp-commands.h"

bool qmp_blockdev_add(JsonObject *args, JsonNode **ret, GError **errp)
{
    return blockdev_add(args, errp) != NULL;
}

bool qmp_blockdev_del(JsonObject *args, JsonNode **ret, GError **errp)
{
    return blockdev_del(qobj_get_str(args, "node-name", NULL), errp);
}

bool qmp_query_named_block_nodes(JsonObject *args, JsonNode **ret,
                                 GError **errp)
{
    JsonArray *arr = bdrv_query_named_nodes(qobj_get_bool(args, "flat",
                                                          false), errp);
    if (!arr) {
        return false;
    }
    *ret = json_node_init_array(json_node_alloc(), arr);
    json_array_unref(arr);
    return true;
}
