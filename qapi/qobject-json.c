/*
 * JSON output in QEMU's wire style and small json-glib helpers.  The
 * output side of QMP: every reply and event passes through
 * qobj_to_json_append().
 */
#include "qapi/qobject-json.h"

#include "qapi/error.h"

#include <math.h>
#include <string.h>

static void append_string(GString *out, const char *s)
{
    const unsigned char *p = (const unsigned char *)s;

    g_string_append_c(out, '"');
    while (*p) {
        gunichar c;
        const char *next;

        if (*p < 0x80) {
            switch (*p) {
            case '"':
                g_string_append(out, "\\\"");
                break;
            case '\\':
                g_string_append(out, "\\\\");
                break;
            case '\b':
                g_string_append(out, "\\b");
                break;
            case '\f':
                g_string_append(out, "\\f");
                break;
            case '\n':
                g_string_append(out, "\\n");
                break;
            case '\r':
                g_string_append(out, "\\r");
                break;
            case '\t':
                g_string_append(out, "\\t");
                break;
            default:
                if (*p < 0x20 || *p == 0x7f) {
                    g_string_append_printf(out, "\\u%04X", *p);
                } else {
                    g_string_append_c(out, (char)*p);
                }
            }
            p++;
            continue;
        }
        c = g_utf8_get_char_validated((const char *)p, -1);
        if (c == (gunichar)-1 || c == (gunichar)-2) {
            /* Not UTF-8 (cannot come from the parser): replace the byte. */
            g_string_append(out, "\\uFFFD");
            p++;
            continue;
        }
        if (c > 0xffff) {
            c -= 0x10000;
            g_string_append_printf(out, "\\u%04X\\u%04X",
                                   0xd800 + (c >> 10), 0xdc00 + (c & 0x3ff));
        } else {
            g_string_append_printf(out, "\\u%04X", c);
        }
        next = g_utf8_next_char((const char *)p);
        p = (const unsigned char *)next;
    }
    g_string_append_c(out, '"');
}

static void append_value(GString *out, JsonNode *node)
{
    char buf[G_ASCII_DTOSTR_BUF_SIZE];
    GType t = json_node_get_value_type(node);

    if (t == G_TYPE_INT64) {
        g_string_append_printf(out, "%" G_GINT64_FORMAT,
                               json_node_get_int(node));
    } else if (t == G_TYPE_DOUBLE) {
        double d = json_node_get_double(node);

        if (!isfinite(d)) {
            g_string_append(out, "null");
        } else {
            g_string_append(out, g_ascii_formatd(buf, sizeof(buf),
                                                 "%.17g", d));
        }
    } else if (t == G_TYPE_BOOLEAN) {
        g_string_append(out, json_node_get_boolean(node) ? "true" : "false");
    } else if (t == G_TYPE_STRING) {
        append_string(out, json_node_get_string(node));
    } else {
        g_string_append(out, "null");
    }
}

static void newline(GString *out, bool pretty, unsigned level)
{
    if (pretty) {
        g_string_append_c(out, '\n');
        for (unsigned i = 0; i < level; i++) {
            g_string_append(out, "    ");
        }
    }
}

static void append_node(GString *out, JsonNode *node, bool pretty,
                        unsigned level)
{
    if (!node) {
        g_string_append(out, "null");
        return;
    }
    switch (json_node_get_node_type(node)) {
    case JSON_NODE_OBJECT: {
        JsonObjectIter iter;
        const char *name;
        JsonNode *member;
        bool first = true;

        g_string_append_c(out, '{');
        json_object_iter_init_ordered(&iter, json_node_get_object(node));
        while (json_object_iter_next_ordered(&iter, &name, &member)) {
            g_string_append(out, first ? "" : ",");
            if (!pretty && !first) {
                g_string_append_c(out, ' ');
            }
            newline(out, pretty, level + 1);
            append_string(out, name);
            g_string_append(out, ": ");
            append_node(out, member, pretty, level + 1);
            first = false;
        }
        newline(out, pretty, level);
        g_string_append_c(out, '}');
        break;
    }
    case JSON_NODE_ARRAY: {
        JsonArray *arr = json_node_get_array(node);
        guint n = json_array_get_length(arr);

        g_string_append_c(out, '[');
        for (guint i = 0; i < n; i++) {
            g_string_append(out, i ? (pretty ? "," : ", ") : "");
            newline(out, pretty, level + 1);
            append_node(out, json_array_get_element(arr, i), pretty,
                        level + 1);
        }
        newline(out, pretty, level);
        g_string_append_c(out, ']');
        break;
    }
    case JSON_NODE_VALUE:
        append_value(out, node);
        break;
    case JSON_NODE_NULL:
    default:
        g_string_append(out, "null");
        break;
    }
}

void qobj_to_json_append(GString *out, JsonNode *node, bool pretty)
{
    append_node(out, node, pretty, 0);
}

char *qobj_to_json(JsonNode *node, bool pretty)
{
    GString *out = g_string_new(NULL);

    append_node(out, node, pretty, 0);
    return g_string_free(out, FALSE);
}

unsigned qobj_depth(JsonNode *node)
{
    unsigned max = 0;

    if (!node) {
        return 0;
    }
    if (JSON_NODE_HOLDS_OBJECT(node)) {
        JsonObjectIter iter;
        const char *name;
        JsonNode *member;

        json_object_iter_init(&iter, json_node_get_object(node));
        while (json_object_iter_next(&iter, &name, &member)) {
            max = MAX(max, qobj_depth(member));
        }
        return max + 1;
    }
    if (JSON_NODE_HOLDS_ARRAY(node)) {
        JsonArray *arr = json_node_get_array(node);

        for (guint i = 0; i < json_array_get_length(arr); i++) {
            max = MAX(max, qobj_depth(json_array_get_element(arr, i)));
        }
        return max + 1;
    }
    return 0;
}

bool qobj_check_depth(JsonNode *node, unsigned max, GError **errp)
{
    if (qobj_depth(node) > max) {
        error_setg(errp, "JSON nesting depth limit exceeded");
        return false;
    }
    return true;
}

size_t qobj_count_members(JsonNode *node)
{
    size_t n = 0;

    if (!node) {
        return 0;
    }
    if (JSON_NODE_HOLDS_OBJECT(node)) {
        JsonObjectIter iter;
        const char *name;
        JsonNode *member;

        json_object_iter_init(&iter, json_node_get_object(node));
        while (json_object_iter_next(&iter, &name, &member)) {
            n += 1 + qobj_count_members(member);
        }
    } else if (JSON_NODE_HOLDS_ARRAY(node)) {
        JsonArray *arr = json_node_get_array(node);

        for (guint i = 0; i < json_array_get_length(arr); i++) {
            n += qobj_count_members(json_array_get_element(arr, i));
        }
    }
    return n;
}

JsonNode *qobj_new_object(JsonObject *obj)
{
    JsonNode *node = json_node_new(JSON_NODE_OBJECT);

    json_node_take_object(node, obj);
    return node;
}

JsonNode *qobj_new_array(JsonArray *arr)
{
    JsonNode *node = json_node_new(JSON_NODE_ARRAY);

    json_node_take_array(node, arr);
    return node;
}

JsonNode *qobj_new_str(const char *s)
{
    return json_node_init_string(json_node_alloc(), s);
}

JsonNode *qobj_new_int(int64_t v)
{
    return json_node_init_int(json_node_alloc(), v);
}

JsonNode *qobj_new_bool(bool v)
{
    return json_node_init_boolean(json_node_alloc(), v);
}

bool qobj_has(JsonObject *obj, const char *name)
{
    return obj && json_object_has_member(obj, name);
}

static JsonNode *member_value(JsonObject *obj, const char *name, GType type)
{
    JsonNode *node = obj ? json_object_get_member(obj, name) : NULL;

    if (!node || !JSON_NODE_HOLDS_VALUE(node) ||
        json_node_get_value_type(node) != type) {
        return NULL;
    }
    return node;
}

const char *qobj_get_str(JsonObject *obj, const char *name, const char *def)
{
    JsonNode *node = member_value(obj, name, G_TYPE_STRING);

    return node ? json_node_get_string(node) : def;
}

int64_t qobj_get_int(JsonObject *obj, const char *name, int64_t def)
{
    JsonNode *node = member_value(obj, name, G_TYPE_INT64);

    return node ? json_node_get_int(node) : def;
}

uint64_t qobj_get_uint(JsonObject *obj, const char *name, uint64_t def)
{
    JsonNode *node = member_value(obj, name, G_TYPE_INT64);

    if (!node || json_node_get_int(node) < 0) {
        return def;
    }
    return (uint64_t)json_node_get_int(node);
}

bool qobj_get_bool(JsonObject *obj, const char *name, bool def)
{
    JsonNode *node = member_value(obj, name, G_TYPE_BOOLEAN);

    return node ? json_node_get_boolean(node) : def;
}

JsonObject *qobj_get_object(JsonObject *obj, const char *name)
{
    JsonNode *node = obj ? json_object_get_member(obj, name) : NULL;

    return node && JSON_NODE_HOLDS_OBJECT(node) ?
           json_node_get_object(node) : NULL;
}

JsonArray *qobj_get_array(JsonObject *obj, const char *name)
{
    JsonNode *node = obj ? json_object_get_member(obj, name) : NULL;

    return node && JSON_NODE_HOLDS_ARRAY(node) ?
           json_node_get_array(node) : NULL;
}
