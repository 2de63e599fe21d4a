/*
 * Parser for QEMU's key=value option syntax (see include/util/keyval.h).
 * Produces a mutable json-glib object tree whose scalars are strings.
 */
#include "util/keyval.h"

#include <stdlib.h>
#include <string.h>

#include "qapi/error.h"

static bool key_valid(const char *key)
{
    const char *p = key;

    if (!*p) {
        return false;
    }
    for (; *p; p++) {
        if (*p == '.') {
            if (p == key || p[1] == '.' || p[1] == 0) {
                return false;
            }
        } else if (!g_ascii_isalnum(*p) && *p != '-' && *p != '_') {
            return false;
        }
    }
    return true;
}

/* Read up to an unescaped ',' (or end); ",," becomes ','. */
static char *read_value(const char **pp)
{
    GString *v = g_string_new(NULL);
    const char *p = *pp;

    while (*p) {
        if (*p == ',') {
            if (p[1] != ',') {
                break;
            }
            p++;
        }
        g_string_append_c(v, *p++);
    }
    *pp = p;
    return g_string_free(v, FALSE);
}

static bool insert(JsonObject *root, const char *key, const char *value,
                   GError **errp)
{
    g_auto(GStrv) parts = g_strsplit(key, ".", -1);
    JsonObject *obj = root;
    guint n = g_strv_length(parts);
    g_autoptr(GString) prefix = g_string_new(NULL);

    for (guint i = 0; i + 1 < n; i++) {
        JsonNode *child = json_object_get_member(obj, parts[i]);

        g_string_append_printf(prefix, "%s%s", i ? "." : "", parts[i]);
        if (child && !JSON_NODE_HOLDS_OBJECT(child)) {
            error_setg(errp, "Parameters '%s.*' used inconsistently",
                       prefix->str);
            return false;
        }
        if (!child) {
            json_object_set_object_member(obj, parts[i], json_object_new());
            child = json_object_get_member(obj, parts[i]);
        }
        obj = json_node_get_object(child);
    }
    if (json_object_has_member(obj, parts[n - 1]) &&
        JSON_NODE_HOLDS_OBJECT(json_object_get_member(obj, parts[n - 1]))) {
        error_setg(errp, "Parameters '%s.*' used inconsistently", key);
        return false;
    }
    json_object_set_string_member(obj, parts[n - 1], value);
    return true;
}

/* Turn objects keyed 0..n-1 into arrays, recursively. */
static JsonNode *listify(JsonNode *node, const char *path, GError **errp)
{
    JsonObject *obj = json_node_get_object(node);
    g_autoptr(GList) names = json_object_get_members(obj);
    guint n = g_list_length(names);
    bool numeric = n > 0;
    JsonArray *arr;

    for (GList *l = names; l; l = l->next) {
        const char *name = l->data;
        JsonNode *child = json_object_get_member(obj, name);
        g_autofree char *sub = *path ? g_strdup_printf("%s.%s", path, name)
                                     : g_strdup(name);

        numeric = numeric && name[strspn(name, "0123456789")] == 0;
        if (JSON_NODE_HOLDS_OBJECT(child)) {
            JsonNode *conv = listify(child, sub, errp);

            if (!conv) {
                return NULL;
            }
            if (conv != child) {
                json_object_set_member(obj, name, conv);
            }
        }
    }
    if (!numeric) {
        return node;
    }
    arr = json_array_new();
    for (guint i = 0; i < n; i++) {
        g_autofree char *idx = g_strdup_printf("%u", i);
        JsonNode *elem = json_object_get_member(obj, idx);

        if (!elem) {
            error_setg(errp, "Parameter '%s%s%s' missing", path,
                       *path ? "." : "", idx);
            json_array_unref(arr);
            return NULL;
        }
        json_array_add_element(arr, json_node_copy(elem));
    }
    node = json_node_new(JSON_NODE_ARRAY);
    json_node_take_array(node, arr);
    return node;
}

JsonObject *keyval_parse(const char *params, const char *implied_key,
                         GError **errp)
{
    g_autoptr(JsonNode) root = json_node_new(JSON_NODE_OBJECT);
    JsonObject *obj = json_object_new();
    const char *p = params;
    bool first = true;

    json_node_take_object(root, obj);
    while (*p) {
        size_t klen = strcspn(p, "=,");
        g_autofree char *key = g_strndup(p, klen);
        g_autofree char *value = NULL;

        if (p[klen] != '=') {
            if (!first || !implied_key) {
                error_setg(errp, "Expected '=' after parameter '%s'", key);
                return NULL;
            }
            g_free(key);
            key = g_strdup(implied_key);
        } else {
            p += klen + 1;
            if (!key_valid(key)) {
                error_setg(errp, "Invalid parameter '%s'", key);
                return NULL;
            }
        }
        value = read_value(&p);
        if (!insert(obj, key, value, errp)) {
            return NULL;
        }
        first = false;
        if (*p == ',') {
            p++;
        }
    }
    if (!listify(root, "", errp)) {
        return NULL;
    }
    return json_object_ref(obj);
}
