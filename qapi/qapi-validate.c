/*
 * Schema-driven validation of JSON values (see include/qapi/qapi-validate.h).
 * Walks the SchemaInfo entries of the generated validation schema; knows
 * the builtin types by name and checks sized integer ranges.
 */
#include "qapi/qapi-validate.h"

#include <errno.h>
#include <inttypes.h>
#include <string.h>

#include "qapi/error.h"
#include "qapi-types.h"

struct QapiSchema {
    JsonNode *root;
    GHashTable *entities;   /* name -> JsonObject (borrowed from root) */
};

typedef struct Ctx {
    const QapiSchema *schema;
    QapiValidateFlags flags;
    GString *path;
    unsigned depth;
} Ctx;

/* Guards against a schema that recurses through itself without data. */
#define VALIDATE_MAX_RECURSION 4096

QapiSchema *qapi_schema_new(const char *schema_json, GError **errp)
{
    g_autoptr(JsonParser) parser = json_parser_new();
    QapiSchema *schema;
    JsonArray *arr;

    if (!json_parser_load_from_data(parser, schema_json, -1, errp)) {
        return NULL;
    }
    if (!JSON_NODE_HOLDS_ARRAY(json_parser_get_root(parser))) {
        error_setg(errp, "schema must be a JSON array");
        return NULL;
    }
    schema = g_new0(QapiSchema, 1);
    schema->root = json_node_copy(json_parser_get_root(parser));
    schema->entities = g_hash_table_new(g_str_hash, g_str_equal);
    arr = json_node_get_array(schema->root);
    for (guint i = 0; i < json_array_get_length(arr); i++) {
        JsonObject *info = json_array_get_object_element(arr, i);
        const char *name = info ?
            json_object_get_string_member_with_default(info, "name", NULL) :
            NULL;

        if (!name) {
            error_setg(errp, "schema entry %u has no name", i);
            qapi_schema_free(schema);
            return NULL;
        }
        g_hash_table_insert(schema->entities, (gpointer)name, info);
    }
    return schema;
}

void qapi_schema_free(QapiSchema *schema)
{
    if (schema) {
        g_hash_table_destroy(schema->entities);
        json_node_unref(schema->root);
        g_free(schema);
    }
}

const QapiSchema *qapi_schema_builtin(void)
{
    static QapiSchema *builtin;

    if (!builtin) {
        g_autoptr(GError) err = NULL;

        builtin = qapi_schema_new(qapi_validation_json, &err);
        /* The text is generated at build time: failing is a build bug. */
        g_assert_no_error(err);
    }
    return builtin;
}

JsonObject *qapi_schema_lookup(const QapiSchema *schema, const char *name)
{
    return g_hash_table_lookup(schema->entities, name);
}

/* --- messages ----------------------------------------------------------- */

static const char *path_str(Ctx *c)
{
    return c->path->len ? c->path->str : "null";
}

static bool type_error(Ctx *c, const char *expected, GError **errp)
{
    error_setg(errp, "Invalid parameter type for '%s', expected: %s",
               path_str(c), expected);
    return false;
}

static bool range_error(Ctx *c, const char *what, GError **errp)
{
    error_setg(errp, "Parameter '%s' expects %s", path_str(c), what);
    return false;
}

/* Append ".name" (or "name" at the root); returns the old length. */
static gsize path_push_member(Ctx *c, const char *name)
{
    gsize old = c->path->len;

    if (old) {
        g_string_append_c(c->path, '.');
    }
    g_string_append(c->path, name);
    return old;
}

/* --- builtins ----------------------------------------------------------- */

typedef struct IntRange {
    const char *name;
    const char *what;      /* QEMU's wording for range errors */
    int64_t min;
    int64_t max;
} IntRange;

static const IntRange int_ranges[] = {
    { "int", "int64", INT64_MIN, INT64_MAX },
    { "int64", "int64", INT64_MIN, INT64_MAX },
    { "int8", "int8_t", INT8_MIN, INT8_MAX },
    { "int16", "int16_t", INT16_MIN, INT16_MAX },
    { "int32", "int32_t", INT32_MIN, INT32_MAX },
    { "uint8", "uint8_t", 0, UINT8_MAX },
    { "uint16", "uint16_t", 0, UINT16_MAX },
    { "uint32", "uint32_t", 0, UINT32_MAX },
    /* JSON integers above INT64_MAX are not representable here. */
    { "uint64", "uint64", 0, INT64_MAX },
    { "size", "size", 0, INT64_MAX },
};

static bool parse_bool_str(const char *s, bool *out)
{
    static const char *const yes[] = { "on", "yes", "true", "y" };
    static const char *const no[] = { "off", "no", "false", "n" };

    for (size_t i = 0; i < G_N_ELEMENTS(yes); i++) {
        if (!strcmp(s, yes[i])) {
            *out = true;
            return true;
        }
        if (!strcmp(s, no[i])) {
            *out = false;
            return true;
        }
    }
    return false;
}

/* Strict integer parse of a command-line string; sizes take suffixes. */
static bool parse_int_str(const char *s, bool is_size, int64_t *out)
{
    static const char suffixes[] = "kmgtpe";
    char *end;
    int64_t v;

    if (!*s || g_ascii_isspace(*s)) {
        return false;
    }
    errno = 0;
    if (is_size) {
        guint64 u;
        const char *suf;

        if (*s == '-') {
            return false;
        }
        u = g_ascii_strtoull(s, &end, 0);
        if (errno) {
            return false;
        }
        if (*end) {
            suf = strchr(suffixes, g_ascii_tolower(*end));
            if (!suf || end[1] || *end == 'b' || *end == 'B') {
                return false;
            }
            for (long i = 0; i <= suf - suffixes; i++) {
                if (u > (guint64)INT64_MAX / 1024) {
                    return false;
                }
                u *= 1024;
            }
        }
        if (u > (guint64)INT64_MAX) {
            return false;
        }
        *out = (int64_t)u;
        return true;
    }
    v = g_ascii_strtoll(s, &end, 0);
    if (errno || *end) {
        return false;
    }
    *out = v;
    return true;
}

static bool check_int(Ctx *c, const IntRange *r, JsonNode *v, GError **errp)
{
    int64_t n;

    if (JSON_NODE_HOLDS_VALUE(v) &&
        json_node_get_value_type(v) == G_TYPE_STRING &&
        (c->flags & QAPI_VALIDATE_COERCE_STRINGS)) {
        if (!parse_int_str(json_node_get_string(v),
                           !strcmp(r->name, "size"), &n)) {
            return range_error(c, strcmp(r->name, "size") ? "integer" :
                               "a size value", errp);
        }
        json_node_set_int(v, n);
    }
    if (!JSON_NODE_HOLDS_VALUE(v) ||
        json_node_get_value_type(v) != G_TYPE_INT64) {
        return type_error(c, "integer", errp);
    }
    n = json_node_get_int(v);
    if (n < r->min || n > r->max) {
        return range_error(c, r->what, errp);
    }
    return true;
}

static bool check_builtin(Ctx *c, const char *name, JsonNode *v,
                          GError **errp)
{
    bool coerce = c->flags & QAPI_VALIDATE_COERCE_STRINGS;
    bool is_str = JSON_NODE_HOLDS_VALUE(v) &&
                  json_node_get_value_type(v) == G_TYPE_STRING;

    for (size_t i = 0; i < G_N_ELEMENTS(int_ranges); i++) {
        if (!strcmp(name, int_ranges[i].name)) {
            return check_int(c, &int_ranges[i], v, errp);
        }
    }
    if (!strcmp(name, "str")) {
        return is_str || type_error(c, "string", errp);
    }
    if (!strcmp(name, "any")) {
        return true;
    }
    if (!strcmp(name, "null")) {
        return JSON_NODE_HOLDS_NULL(v) || type_error(c, "null", errp);
    }
    if (!strcmp(name, "bool")) {
        bool b;

        if (is_str && coerce) {
            if (!parse_bool_str(json_node_get_string(v), &b)) {
                return range_error(c, "'on' or 'off'", errp);
            }
            json_node_set_boolean(v, b);
        }
        return (JSON_NODE_HOLDS_VALUE(v) &&
                json_node_get_value_type(v) == G_TYPE_BOOLEAN) ||
               type_error(c, "boolean", errp);
    }
    if (!strcmp(name, "number")) {
        GType t;

        if (is_str && coerce) {
            char *end;
            double d = g_ascii_strtod(json_node_get_string(v), &end);

            if (*end || end == json_node_get_string(v)) {
                return range_error(c, "a number", errp);
            }
            json_node_set_double(v, d);
        }
        t = JSON_NODE_HOLDS_VALUE(v) ? json_node_get_value_type(v) : 0;
        return t == G_TYPE_INT64 || t == G_TYPE_DOUBLE ||
               type_error(c, "number", errp);
    }
    error_setg(errp, "internal error: unknown builtin type '%s'", name);
    return false;
}

/* --- compound types ----------------------------------------------------- */

static bool check_type(Ctx *c, const char *type, JsonNode *v, GError **errp);

static bool check_enum(Ctx *c, JsonObject *info, JsonNode *v, GError **errp)
{
    JsonArray *values = json_object_get_array_member(info, "values");
    const char *s;

    if (!JSON_NODE_HOLDS_VALUE(v) ||
        json_node_get_value_type(v) != G_TYPE_STRING) {
        return type_error(c, "string", errp);
    }
    s = json_node_get_string(v);
    for (guint i = 0; i < json_array_get_length(values); i++) {
        if (!strcmp(s, json_array_get_string_element(values, i))) {
            return true;
        }
    }
    error_setg(errp, "Parameter '%s' does not accept value '%s'",
               path_str(c), s);
    return false;
}

static bool check_array(Ctx *c, const char *elem, JsonNode *v, GError **errp)
{
    JsonArray *arr;

    if (!JSON_NODE_HOLDS_ARRAY(v)) {
        return type_error(c, "array", errp);
    }
    arr = json_node_get_array(v);
    for (guint i = 0; i < json_array_get_length(arr); i++) {
        gsize old = c->path->len;
        bool ok;

        g_string_append_printf(c->path, "[%u]", i);
        ok = check_type(c, elem, json_array_get_element(arr, i), errp);
        g_string_truncate(c->path, old);
        if (!ok) {
            return false;
        }
    }
    return true;
}

/* Check the members @info declares (and those of the selected variant). */
static bool check_members(Ctx *c, JsonObject *info, JsonObject *obj,
                          GHashTable *seen, GError **errp)
{
    JsonArray *members = json_object_get_array_member(info, "members");
    const char *tag;

    for (guint i = 0; i < json_array_get_length(members); i++) {
        JsonObject *m = json_array_get_object_element(members, i);
        const char *name = json_object_get_string_member(m, "name");
        JsonNode *v = json_object_get_member(obj, name);
        gsize old;
        bool ok;

        if (!v) {
            if (!json_object_has_member(m, "default")) {
                old = path_push_member(c, name);
                error_setg(errp, "Parameter '%s' is missing", c->path->str);
                g_string_truncate(c->path, old);
                return false;
            }
            continue;
        }
        g_hash_table_add(seen, (gpointer)name);
        old = path_push_member(c, name);
        ok = check_type(c, json_object_get_string_member(m, "type"), v,
                        errp);
        g_string_truncate(c->path, old);
        if (!ok) {
            return false;
        }
    }
    tag = json_object_get_string_member_with_default(info, "tag", NULL);
    if (tag) {
        const char *value = json_object_get_string_member(obj, tag);
        JsonArray *variants = json_object_get_array_member(info, "variants");

        for (guint i = 0; i < json_array_get_length(variants); i++) {
            JsonObject *var = json_array_get_object_element(variants, i);
            JsonObject *vinfo;

            if (strcmp(json_object_get_string_member(var, "case"), value)) {
                continue;
            }
            vinfo = qapi_schema_lookup(c->schema,
                                       json_object_get_string_member(var,
                                                                     "type"));
            if (!vinfo) {
                error_setg(errp, "internal error: unknown variant type");
                return false;
            }
            return check_members(c, vinfo, obj, seen, errp);
        }
    }
    return true;
}

static bool check_object(Ctx *c, JsonObject *info, JsonNode *v,
                         GError **errp)
{
    g_autoptr(GHashTable) seen = NULL;
    JsonObjectIter iter;
    const char *name;
    JsonNode *member;
    JsonObject *obj;

    if (!JSON_NODE_HOLDS_OBJECT(v)) {
        return type_error(c, "object", errp);
    }
    obj = json_node_get_object(v);
    seen = g_hash_table_new(g_str_hash, g_str_equal);
    if (!check_members(c, info, obj, seen, errp)) {
        return false;
    }
    json_object_iter_init_ordered(&iter, obj);
    while (json_object_iter_next_ordered(&iter, &name, &member)) {
        if (!g_hash_table_contains(seen, name)) {
            gsize old = path_push_member(c, name);

            error_setg(errp, "Parameter '%s' is unexpected", c->path->str);
            g_string_truncate(c->path, old);
            return false;
        }
    }
    return true;
}

/* The JSON kind a value of schema type @type has on the wire. */
static const char *kind_of_type(Ctx *c, const char *type)
{
    JsonObject *info = qapi_schema_lookup(c->schema, type);
    const char *meta;

    if (!info) {
        return "";
    }
    meta = json_object_get_string_member(info, "meta-type");
    if (!strcmp(meta, "builtin")) {
        const char *j = json_object_get_string_member(info, "json-type");

        return strcmp(j, "int") ? j : "number";
    }
    if (!strcmp(meta, "enum")) {
        return "string";
    }
    return meta;    /* object, array, alternate */
}

static const char *kind_of_value(JsonNode *v)
{
    GType t;

    switch (json_node_get_node_type(v)) {
    case JSON_NODE_OBJECT:
        return "object";
    case JSON_NODE_ARRAY:
        return "array";
    case JSON_NODE_NULL:
        return "null";
    default:
        break;
    }
    t = json_node_get_value_type(v);
    if (t == G_TYPE_STRING) {
        return "string";
    }
    if (t == G_TYPE_BOOLEAN) {
        return "boolean";
    }
    return "number";
}

static bool check_alternate(Ctx *c, const char *type, JsonObject *info,
                            JsonNode *v, GError **errp)
{
    JsonArray *members = json_object_get_array_member(info, "members");
    const char *kind = kind_of_value(v);
    const char *fallback = NULL;

    for (guint i = 0; i < json_array_get_length(members); i++) {
        JsonObject *m = json_array_get_object_element(members, i);
        const char *mt = json_object_get_string_member(m, "type");
        const char *mk = kind_of_type(c, mt);

        if (!strcmp(mk, kind)) {
            return check_type(c, mt, v, errp);
        }
        if (!fallback && (c->flags & QAPI_VALIDATE_COERCE_STRINGS) &&
            !strcmp(kind, "string") &&
            (!strcmp(mk, "number") || !strcmp(mk, "boolean"))) {
            fallback = mt;
        }
    }
    if (fallback) {
        return check_type(c, fallback, v, errp);
    }
    return type_error(c, type, errp);
}

static bool check_type(Ctx *c, const char *type, JsonNode *v, GError **errp)
{
    JsonObject *info = qapi_schema_lookup(c->schema, type);
    const char *meta;
    bool ok;

    if (!info) {
        error_setg(errp, "internal error: unknown schema type '%s'", type);
        return false;
    }
    if (++c->depth > VALIDATE_MAX_RECURSION) {
        c->depth--;
        error_setg(errp, "JSON nesting depth limit exceeded");
        return false;
    }
    meta = json_object_get_string_member(info, "meta-type");
    if (!strcmp(meta, "builtin")) {
        ok = check_builtin(c, type, v, errp);
    } else if (!strcmp(meta, "enum")) {
        ok = check_enum(c, info, v, errp);
    } else if (!strcmp(meta, "array")) {
        ok = check_array(c, json_object_get_string_member(info,
                                                          "element-type"),
                         v, errp);
    } else if (!strcmp(meta, "object")) {
        ok = check_object(c, info, v, errp);
    } else if (!strcmp(meta, "alternate")) {
        ok = check_alternate(c, type, info, v, errp);
    } else {
        error_setg(errp, "internal error: '%s' is not a type", type);
        ok = false;
    }
    c->depth--;
    return ok;
}

bool qapi_validate(const QapiSchema *schema, const char *type,
                   JsonNode *value, const char *name,
                   QapiValidateFlags flags, GError **errp)
{
    g_autoptr(GString) path = g_string_new(name ? name : "");
    Ctx c = { .schema = schema, .flags = flags, .path = path };

    return check_type(&c, type, value, errp);
}

bool qapi_validate_args(const QapiSchema *schema, const char *type,
                        JsonObject *args, GError **errp)
{
    g_autoptr(JsonNode) node = json_node_new(JSON_NODE_OBJECT);

    json_node_set_object(node, args);
    return qapi_validate(schema, type, node, NULL, QAPI_VALIDATE_DEFAULT,
                         errp);
}
