/*
 * Migration capabilities and parameters (migrate-set-capabilities,
 * migrate-set-parameters and their queries), and block-bitmap-mapping:
 * its validation with QEMU's rules and messages, and the alias maps the
 * two sides build from it.
 */
#include "migration-int.h"
#include "qapi/qobject-json.h"

#include <string.h>

/* QEMU's defaults. */
#define DEFAULT_MAX_BANDWIDTH (UINT64_C(128) << 20)
#define DEFAULT_DOWNTIME_LIMIT 300
/* The stream's limits for aliases (QEMU: one length byte). */
#define ALIAS_MAX 255U
/* Node names: 31 bytes (include/block/block.h rules). */
#define NODE_NAME_MAX 31U
#define BITMAP_NAME_MAX 1023U

static bool caps[MIGRATION_CAPABILITY__MAX];
static uint64_t max_bandwidth = DEFAULT_MAX_BANDWIDTH;
static uint64_t downtime_limit = DEFAULT_DOWNTIME_LIMIT;
static JsonArray *bitmap_mapping;   /* NULL: never set */

static bool cap_supported(MigrationCapability cap)
{
    return cap == MIGRATION_CAPABILITY_EVENTS ||
           cap == MIGRATION_CAPABILITY_DIRTY_BITMAPS;
}

static int cap_lookup(const char *name)
{
    for (int i = 0; i < MIGRATION_CAPABILITY__MAX; i++) {
        if (!strcmp(MigrationCapability_str[i], name)) {
            return i;
        }
    }
    return -1;
}

bool migration_capability(MigrationCapability cap)
{
    return caps[cap];
}

bool migration_set_capabilities(JsonArray *list, GError **errp)
{
    bool next[MIGRATION_CAPABILITY__MAX];

    if (mig_state_running()) {
        error_setg(errp, "There's a migration process in progress");
        return false;
    }
    memcpy(next, caps, sizeof(caps));
    for (guint i = 0; i < json_array_get_length(list); i++) {
        JsonObject *o = json_array_get_object_element(list, i);
        const char *name = qobj_get_str(o, "capability", "");
        bool on = qobj_get_bool(o, "state", false);
        int cap = cap_lookup(name);

        if (cap < 0) {
            error_setg(errp, "Invalid migration capability '%s'", name);
            return false;
        }
        if (on && !cap_supported(cap)) {
            error_setg(errp, "Migration capability '%s' is not supported "
                       "by this storage daemon", name);
            return false;
        }
        next[cap] = on;
    }
    memcpy(caps, next, sizeof(caps));
    return true;
}

JsonArray *migration_query_capabilities(void)
{
    JsonArray *list = json_array_new();

    for (int i = 0; i < MIGRATION_CAPABILITY__MAX; i++) {
        JsonObject *o = json_object_new();
        json_object_set_string_member(o, "capability",
                                      MigrationCapability_str[i]);
        json_object_set_boolean_member(o, "state", caps[i]);
        json_array_add_object_element(list, o);
    }
    return list;
}

/* ---- Parameters ---- */

bool migration_set_parameters(JsonObject *params, GError **errp)
{
    JsonArray *mapping = qobj_get_array(params, "block-bitmap-mapping");

    if (mapping && !migration_check_bitmap_mapping(mapping, errp)) {
        return false;
    }
    if (mapping && mig_state_running()) {
        error_setg(errp, "There's a migration process in progress");
        return false;
    }
    /* All checked: apply. */
    max_bandwidth = qobj_get_uint(params, "max-bandwidth", max_bandwidth);
    downtime_limit = qobj_get_uint(params, "downtime-limit",
                                   downtime_limit);
    if (mapping) {
        if (bitmap_mapping) {
            json_array_unref(bitmap_mapping);
        }
        bitmap_mapping = json_array_ref(mapping);
    }
    return true;
}

JsonObject *migration_query_parameters(void)
{
    JsonObject *o = json_object_new();

    json_object_set_int_member(o, "max-bandwidth", (gint64)max_bandwidth);
    json_object_set_int_member(o, "downtime-limit", (gint64)downtime_limit);
    if (bitmap_mapping) {
        json_object_set_array_member(o, "block-bitmap-mapping",
                                     json_array_ref(bitmap_mapping));
    }
    return o;
}

uint64_t mig_param_max_bandwidth(void)
{
    return max_bandwidth;
}

JsonArray *mig_param_bitmap_mapping(void)
{
    return bitmap_mapping ? json_array_ref(bitmap_mapping) : NULL;
}

/* ---- block-bitmap-mapping ---- */

bool mig_id_wellformed(const char *id)
{
    if (!g_ascii_isalpha(id[0])) {
        return false;
    }
    for (size_t i = 1; id[i]; i++) {
        if (!g_ascii_isalnum(id[i]) && !strchr("-._", id[i])) {
            return false;
        }
    }
    return true;
}

static void bitmap_map_free(gpointer p)
{
    MigBitmapMap *m = p;

    g_free(m->to);
    g_free(m);
}

static void node_map_free(gpointer p)
{
    MigNodeMap *m = p;

    g_free(m->to);
    g_hash_table_unref(m->bitmaps);
    g_free(m);
}

/* Check one node's entry; on success returns its (from, to) pair. */
static bool check_node(JsonObject *n, bool name_to_alias, GHashTable *map,
                       GError **errp)
{
    const char *name = qobj_get_str(n, "node-name", "");
    const char *alias = qobj_get_str(n, "alias", "");

    if (!mig_id_wellformed(alias)) {
        error_setg(errp, "The node alias '%s' is not well-formed", alias);
        return false;
    }
    if (strlen(alias) > ALIAS_MAX) {
        error_setg(errp, "The node alias '%s' is longer than %u bytes",
                   alias, ALIAS_MAX);
        return false;
    }
    if (strlen(name) > NODE_NAME_MAX) {
        error_setg(errp, "The node name '%s' is longer than %u bytes",
                   name, NODE_NAME_MAX);
        return false;
    }
    if (name_to_alias && g_hash_table_contains(map, name)) {
        error_setg(errp, "The node name '%s' is mapped twice", name);
        return false;
    }
    if (!name_to_alias && g_hash_table_contains(map, alias)) {
        error_setg(errp, "The node alias '%s' is used twice", alias);
        return false;
    }
    return true;
}

static bool add_bitmaps(JsonObject *n, bool name_to_alias, MigNodeMap *nm,
                        GError **errp)
{
    JsonArray *list = qobj_get_array(n, "bitmaps");
    const char *node = qobj_get_str(n, "node-name", "");
    const char *nalias = qobj_get_str(n, "alias", "");

    for (guint i = 0; list && i < json_array_get_length(list); i++) {
        JsonObject *b = json_array_get_object_element(list, i);
        const char *name = qobj_get_str(b, "name", "");
        const char *alias = qobj_get_str(b, "alias", "");
        JsonObject *tr = qobj_get_object(b, "transform");
        MigBitmapMap *bm;

        if (strlen(alias) > ALIAS_MAX) {
            error_setg(errp, "The bitmap alias '%s' is longer than %u bytes",
                       alias, ALIAS_MAX);
            return false;
        }
        if (strlen(name) > BITMAP_NAME_MAX) {
            error_setg(errp, "The bitmap name '%s' is longer than %u bytes",
                       name, BITMAP_NAME_MAX);
            return false;
        }
        if (g_hash_table_contains(nm->bitmaps, name_to_alias ? name
                                                             : alias)) {
            if (name_to_alias) {
                error_setg(errp, "The bitmap '%s'/'%s' is mapped twice",
                           node, name);
            } else {
                error_setg(errp, "The bitmap alias '%s'/'%s' is used twice",
                           nalias, alias);
            }
            return false;
        }
        bm = g_new0(MigBitmapMap, 1);
        bm->to = g_strdup(name_to_alias ? alias : name);
        bm->persistent = tr && qobj_has(tr, "persistent")
                         ? qobj_get_bool(tr, "persistent", false) : -1;
        g_hash_table_insert(nm->bitmaps,
                            g_strdup(name_to_alias ? name : alias), bm);
    }
    return true;
}

GHashTable *mig_alias_map_new(JsonArray *mapping, bool name_to_alias,
                              GError **errp)
{
    g_autoptr(GHashTable) map = g_hash_table_new_full(g_str_hash,
                                                      g_str_equal, g_free,
                                                      node_map_free);

    for (guint i = 0; i < json_array_get_length(mapping); i++) {
        JsonObject *n = json_array_get_object_element(mapping, i);
        const char *name = qobj_get_str(n, "node-name", "");
        const char *alias = qobj_get_str(n, "alias", "");
        MigNodeMap *nm;

        if (!check_node(n, name_to_alias, map, errp)) {
            return NULL;
        }
        nm = g_new0(MigNodeMap, 1);
        nm->to = g_strdup(name_to_alias ? alias : name);
        nm->bitmaps = g_hash_table_new_full(g_str_hash, g_str_equal, g_free,
                                            bitmap_map_free);
        g_hash_table_insert(map, g_strdup(name_to_alias ? name : alias), nm);
        if (!add_bitmaps(n, name_to_alias, nm, errp)) {
            return NULL;
        }
    }
    return g_steal_pointer(&map);
}

bool migration_check_bitmap_mapping(JsonArray *mapping, GError **errp)
{
    g_autoptr(GHashTable) out = mig_alias_map_new(mapping, true, errp);
    g_autoptr(GHashTable) in = out ? mig_alias_map_new(mapping, false, errp)
                                   : NULL;

    if (!in) {
        g_prefix_error(errp, "Invalid mapping given for "
                       "block-bitmap-mapping: ");
        return false;
    }
    return true;
}
