/*
 * Open options as JSON object trees: parsing of QEMU's dotted-key syntax
 * and json: texts, and the "take" accessors that let each consumer remove
 * the keys it understands so leftovers can be reported.
 */
#include "util/options.h"
#include "util/cutils.h"
#include "qapi/error.h"

#include <string.h>

JsonObject *options_parse_json(const char *text, GError **errp)
{
    g_autoptr(JsonParser) parser = json_parser_new_immutable();
    g_autoptr(GError) local_err = NULL;
    JsonNode *root;

    if (!json_parser_load_from_data(parser, text, -1, &local_err)) {
        error_setg(errp, "Could not parse JSON: %s", local_err->message);
        return NULL;
    }
    root = json_parser_get_root(parser);
    if (!root || !JSON_NODE_HOLDS_OBJECT(root)) {
        error_setg(errp, "Invalid JSON object given");
        return NULL;
    }
    return options_copy(json_node_get_object(root));
}

JsonObject *options_copy(JsonObject *o)
{
    g_autoptr(JsonNode) n = json_node_new(JSON_NODE_OBJECT);
    g_autoptr(JsonNode) copy = NULL;

    json_node_set_object(n, o);
    copy = json_node_copy(n);
    /* json_node_copy shares sealed objects; build a real deep copy. */
    g_autofree char *text = json_to_string(copy, FALSE);
    g_autoptr(JsonParser) parser = json_parser_new();
    json_parser_load_from_data(parser, text, -1, NULL);
    return json_object_ref(json_node_get_object(json_parser_get_root(parser)));
}

static void flatten_into(JsonObject *dst, JsonObject *src, const char *prefix)
{
    g_autoptr(GList) members = json_object_get_members(src);

    for (GList *l = members; l; l = l->next) {
        const char *k = l->data;
        JsonNode *v = json_object_get_member(src, k);
        g_autofree char *full =
            prefix ? g_strdup_printf("%s.%s", prefix, k) : g_strdup(k);

        if (JSON_NODE_HOLDS_OBJECT(v)) {
            flatten_into(dst, json_node_get_object(v), full);
        } else {
            json_object_set_member(dst, full, json_node_copy(v));
        }
    }
}

JsonObject *options_flatten(JsonObject *o)
{
    JsonObject *dst = json_object_new();
    flatten_into(dst, o, NULL);
    return dst;
}

bool opts_has(JsonObject *o, const char *key)
{
    return o && json_object_has_member(o, key);
}

char *opts_take_str(JsonObject *o, const char *key, GError **errp)
{
    JsonNode *n;
    char *ret = NULL;

    if (!opts_has(o, key)) {
        return NULL;
    }
    n = json_object_get_member(o, key);
    if (JSON_NODE_HOLDS_VALUE(n)) {
        GType t = json_node_get_value_type(n);
        if (t == G_TYPE_STRING) {
            ret = g_strdup(json_node_get_string(n));
        } else if (t == G_TYPE_INT64) {
            ret = g_strdup_printf("%" G_GINT64_FORMAT, json_node_get_int(n));
        } else if (t == G_TYPE_BOOLEAN) {
            ret = g_strdup(json_node_get_boolean(n) ? "on" : "off");
        } else if (t == G_TYPE_DOUBLE) {
            ret = g_strdup_printf("%g", json_node_get_double(n));
        }
    }
    if (!ret) {
        error_setg(errp, "Invalid parameter type for '%s', expected: string",
                   key);
        return NULL;
    }
    json_object_remove_member(o, key);
    return ret;
}

/*
 * The scalar type of @key's value: G_TYPE_NONE when absent, G_TYPE_INVALID
 * for an object, array or null.
 */
static GType scalar_type(JsonObject *o, const char *key)
{
    JsonNode *n;

    if (!opts_has(o, key)) {
        return G_TYPE_NONE;
    }
    n = json_object_get_member(o, key);
    return JSON_NODE_HOLDS_VALUE(n) ? json_node_get_value_type(n)
                                    : G_TYPE_INVALID;
}

static const char *member_string(JsonObject *o, const char *key)
{
    return json_node_get_string(json_object_get_member(o, key));
}

bool opts_take_bool(JsonObject *o, const char *key, bool def, bool *out,
                    GError **errp)
{
    GType t = scalar_type(o, key);

    *out = def;
    if (t == G_TYPE_NONE) {
        return true;
    }
    if (t == G_TYPE_BOOLEAN) {
        *out = json_object_get_boolean_member(o, key);
    } else if (t == G_TYPE_STRING) {
        const char *s = member_string(o, key);
        if (!strcmp(s, "on") || !strcmp(s, "true") || !strcmp(s, "yes")) {
            *out = true;
        } else if (!strcmp(s, "off") || !strcmp(s, "false") ||
                   !strcmp(s, "no")) {
            *out = false;
        } else {
            error_setg(errp, "Parameter '%s' expects 'on' or 'off'", key);
            return false;
        }
    } else {
        error_setg(errp, "Invalid parameter type for '%s', expected: boolean",
                   key);
        return false;
    }
    json_object_remove_member(o, key);
    return true;
}

/*
 * Take an integer member: JSON integers as they are, strings through
 * @parse (which may accept suffixes).  @min is the smallest JSON integer
 * accepted.
 */
static bool take_integer(JsonObject *o, const char *key, int64_t min,
                         bool (*parse)(JsonObject *o, const char *key,
                                       int64_t *out, GError **errp),
                         int64_t *out, GError **errp)
{
    GType t = scalar_type(o, key);

    if (t == G_TYPE_NONE) {
        return true;
    }
    if (t == G_TYPE_INT64) {
        int64_t v = json_object_get_int_member(o, key);
        if (v < min) {
            error_setg(errp, "Parameter '%s' expects a non-negative value",
                       key);
            return false;
        }
        *out = v;
    } else if (t == G_TYPE_STRING) {
        if (!parse(o, key, out, errp)) {
            return false;
        }
    } else {
        error_setg(errp, "Invalid parameter type for '%s', expected: integer",
                   key);
        return false;
    }
    json_object_remove_member(o, key);
    return true;
}

static bool parse_size_member(JsonObject *o, const char *key, int64_t *out,
                              GError **errp)
{
    g_autoptr(GError) local_err = NULL;
    uint64_t v;

    if (!parse_size(member_string(o, key), 'B', &v, &local_err)) {
        error_setg(errp, "Parameter '%s' expects a size value: %s", key,
                   local_err->message);
        return false;
    }
    *out = (int64_t)v;
    return true;
}

static bool parse_int_member(JsonObject *o, const char *key, int64_t *out,
                             GError **errp)
{
    if (!parse_int64(member_string(o, key), out, NULL)) {
        error_setg(errp, "Parameter '%s' expects a number", key);
        return false;
    }
    return true;
}

bool opts_take_size(JsonObject *o, const char *key, uint64_t def,
                    uint64_t *out, GError **errp)
{
    int64_t v = (int64_t)def;
    bool ok = take_integer(o, key, 0, parse_size_member, &v, errp);

    *out = (uint64_t)v;
    return ok;
}

bool opts_take_int(JsonObject *o, const char *key, int64_t def, int64_t *out,
                   GError **errp)
{
    *out = def;
    return take_integer(o, key, INT64_MIN, parse_int_member, out, errp);
}

JsonObject *opts_take_object(JsonObject *o, const char *key)
{
    JsonNode *n;
    JsonObject *ret;

    if (!opts_has(o, key)) {
        return NULL;
    }
    n = json_object_get_member(o, key);
    if (!JSON_NODE_HOLDS_OBJECT(n)) {
        return NULL;
    }
    ret = json_object_ref(json_node_get_object(n));
    json_object_remove_member(o, key);
    return ret;
}

static char *first_key(JsonObject *o, const char *prefix)
{
    g_autoptr(GList) members = json_object_get_members(o);

    for (GList *l = members; l; l = l->next) {
        const char *k = l->data;
        JsonNode *v = json_object_get_member(o, k);
        g_autofree char *full =
            prefix ? g_strdup_printf("%s.%s", prefix, k) : g_strdup(k);
        if (JSON_NODE_HOLDS_OBJECT(v) &&
            json_object_get_size(json_node_get_object(v)) > 0) {
            return first_key(json_node_get_object(v), full);
        }
        return g_steal_pointer(&full);
    }
    return NULL;
}

char *opts_first_key(JsonObject *o)
{
    return o ? first_key(o, NULL) : NULL;
}

bool opts_check_empty(JsonObject *o, const char *what, GError **errp)
{
    g_autofree char *k = NULL;

    if (!o || json_object_get_size(o) == 0) {
        return true;
    }
    k = first_key(o, NULL);
    error_setg(errp, "%s does not support the option '%s'", what, k);
    return false;
}
