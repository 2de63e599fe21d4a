/*
 * QEMU-shaped output of JSON trees: the pretty layout of qemu-img's
 * --output=json and the indented "key: value" dump used for
 * "Format specific information".
 *
 * Member order: QEMU keeps dictionaries in a 512-bucket hash table keyed
 * by the TDB string hash and prints them bucket by bucket, the newest
 * entry of a bucket first.  Scripts and golden files depend on that
 * order, so we sort members the same way (insertion order of our objects
 * stands for QEMU's, which follows its schema).
 */
#include <stdio.h>
#include <string.h>

#include "img-common.h"

#define QDICT_BUCKETS 512

/* The TDB hash QEMU uses for dictionary keys. */
static unsigned img_key_bucket(const char *key)
{
    uint32_t v = 0x238F13AFu * (uint32_t)strlen(key);

    for (uint32_t i = 0; key[i]; i++) {
        v += (uint32_t)(unsigned char)key[i] << (i * 5 % 24);
    }
    return (1103515243u * v + 12345u) % QDICT_BUCKETS;
}

typedef struct {
    const char *key;
    unsigned bucket;
    guint pos;          /* insertion position */
} ImgMember;

static gint img_member_cmp(gconstpointer a, gconstpointer b)
{
    const ImgMember *x = a;
    const ImgMember *y = b;

    if (x->bucket != y->bucket) {
        return x->bucket < y->bucket ? -1 : 1;
    }
    /* Same bucket: the later insertion comes first. */
    return x->pos > y->pos ? -1 : (x->pos < y->pos ? 1 : 0);
}

/* Members of @obj in QEMU's print order (free with g_array_unref). */
static GArray *img_ordered_members(JsonObject *obj)
{
    GArray *arr = g_array_new(FALSE, FALSE, sizeof(ImgMember));
    GList *members = json_object_get_members(obj);
    guint pos = 0;

    for (GList *l = members; l; l = l->next) {
        ImgMember m = { l->data, img_key_bucket(l->data), pos++ };
        g_array_append_val(arr, m);
    }
    g_list_free(members);
    g_array_sort(arr, img_member_cmp);
    return arr;
}

static void img_json_string(GString *s, const char *str)
{
    const char *p = str;

    g_string_append_c(s, '"');
    while (*p) {
        gunichar c = g_utf8_get_char_validated(p, -1);

        if (c == (gunichar)-1 || c == (gunichar)-2) {
            c = 0xFFFD;     /* invalid UTF-8: replacement character */
            p++;
        } else {
            p = g_utf8_next_char(p);
        }
        switch (c) {
        case '"':
            g_string_append(s, "\\\"");
            break;
        case '\\':
            g_string_append(s, "\\\\");
            break;
        case '\b':
            g_string_append(s, "\\b");
            break;
        case '\f':
            g_string_append(s, "\\f");
            break;
        case '\n':
            g_string_append(s, "\\n");
            break;
        case '\r':
            g_string_append(s, "\\r");
            break;
        case '\t':
            g_string_append(s, "\\t");
            break;
        default:
            if (c >= 0x20 && c <= 0x7e) {
                g_string_append_c(s, (char)c);
            } else if (c > 0xFFFF) {
                c -= 0x10000;
                g_string_append_printf(s, "\\u%04X\\u%04X",
                                       0xD800 | (c >> 10),
                                       0xDC00 | (c & 0x3FF));
            } else {
                g_string_append_printf(s, "\\u%04X", c);
            }
        }
    }
    g_string_append_c(s, '"');
}

static void img_json_newline(GString *s, int level)
{
    g_string_append_printf(s, "\n%*s", 4 * level, "");
}

static void img_json_value(GString *s, JsonNode *node, int level)
{
    switch (JSON_NODE_TYPE(node)) {
    case JSON_NODE_OBJECT: {
        JsonObject *obj = json_node_get_object(node);
        g_autoptr(GArray) order = img_ordered_members(obj);

        g_string_append_c(s, '{');
        for (guint i = 0; i < order->len; i++) {
            ImgMember *m = &g_array_index(order, ImgMember, i);

            if (i) {
                g_string_append_c(s, ',');
            }
            img_json_newline(s, level + 1);
            img_json_string(s, m->key);
            g_string_append(s, ": ");
            img_json_value(s, json_object_get_member(obj, m->key),
                           level + 1);
        }
        img_json_newline(s, level);
        g_string_append_c(s, '}');
        break;
    }
    case JSON_NODE_ARRAY: {
        JsonArray *arr = json_node_get_array(node);

        g_string_append_c(s, '[');
        for (guint i = 0; i < json_array_get_length(arr); i++) {
            if (i) {
                g_string_append_c(s, ',');
            }
            img_json_newline(s, level + 1);
            img_json_value(s, json_array_get_element(arr, i), level + 1);
        }
        img_json_newline(s, level);
        g_string_append_c(s, ']');
        break;
    }
    case JSON_NODE_NULL:
        g_string_append(s, "null");
        break;
    case JSON_NODE_VALUE:
        switch (json_node_get_value_type(node)) {
        case G_TYPE_BOOLEAN:
            g_string_append(s, json_node_get_boolean(node) ? "true"
                                                           : "false");
            break;
        case G_TYPE_DOUBLE:
            g_string_append_printf(s, "%.17g", json_node_get_double(node));
            break;
        case G_TYPE_STRING:
            img_json_string(s, json_node_get_string(node));
            break;
        default:
            g_string_append_printf(s, "%" G_GINT64_FORMAT,
                                   json_node_get_int(node));
        }
        break;
    }
}

char *img_json_to_string(JsonNode *node)
{
    GString *s = g_string_new(NULL);

    img_json_value(s, node, 0);
    return g_string_free(s, FALSE);
}

void img_json_print(JsonNode *node)
{
    g_autofree char *text = img_json_to_string(node);

    printf("%s\n", text);
}

void img_json_print_object(JsonObject *obj)
{
    g_autoptr(JsonNode) node = json_node_new(JSON_NODE_OBJECT);

    json_node_set_object(node, obj);
    img_json_print(node);
}

static void img_dump_node(JsonNode *node, int indent);

static void img_dump_scalar(JsonNode *node)
{
    if (JSON_NODE_HOLDS_NULL(node)) {
        printf("null");
        return;
    }
    switch (json_node_get_value_type(node)) {
    case G_TYPE_BOOLEAN:
        printf("%s", json_node_get_boolean(node) ? "true" : "false");
        break;
    case G_TYPE_DOUBLE:
        printf("%g", json_node_get_double(node));
        break;
    case G_TYPE_STRING:
        printf("%s", json_node_get_string(node));
        break;
    default:
        printf("%" G_GINT64_FORMAT, json_node_get_int(node));
    }
}

static bool img_is_container(JsonNode *node)
{
    return JSON_NODE_HOLDS_OBJECT(node) || JSON_NODE_HOLDS_ARRAY(node);
}

/* One "label: value" entry; containers continue on the next lines. */
static void img_dump_entry(const char *label, JsonNode *value, int indent)
{
    printf("%*s%s:", indent * 4, "", label);
    if (img_is_container(value)) {
        printf("\n");
        img_dump_node(value, indent + 1);
    } else {
        printf(" ");
        img_dump_scalar(value);
        printf("\n");
    }
}

static void img_dump_node(JsonNode *node, int indent)
{
    if (JSON_NODE_HOLDS_OBJECT(node)) {
        img_dump_human(json_node_get_object(node), indent);
    } else if (JSON_NODE_HOLDS_ARRAY(node)) {
        JsonArray *arr = json_node_get_array(node);

        for (guint i = 0; i < json_array_get_length(arr); i++) {
            g_autofree char *label = g_strdup_printf("[%u]", i);

            img_dump_entry(label, json_array_get_element(arr, i), indent);
        }
    }
}

void img_dump_human(JsonObject *obj, int indent)
{
    g_autoptr(GArray) order = img_ordered_members(obj);

    for (guint i = 0; i < order->len; i++) {
        ImgMember *m = &g_array_index(order, ImgMember, i);
        g_autofree char *label = g_strdup(m->key);

        g_strdelimit(label, "-", ' ');
        img_dump_entry(label, json_object_get_member(obj, m->key), indent);
    }
}
