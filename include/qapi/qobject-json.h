/*
 * JSON helpers on json-glib nodes shared by the monitor and the commands:
 * QEMU-style serialisation (ASCII only, one line, ", " and ": "),
 * argument getters for handlers, and depth/size limits.
 *
 * Parsing of untrusted text goes through the strict framer in
 * monitor/qmp-stream.c (qmp_json_parse()), never json_parser_* directly:
 * json-glib alone accepts comments, single quotes, leading zeros, wraps
 * big integers and silently merges duplicate keys.
 */
#ifndef QAPI_QOBJECT_JSON_H
#define QAPI_QOBJECT_JSON_H

#include <json-glib/json-glib.h>
#include <stdbool.h>
#include <stdint.h>

/* Limits on one QMP message (see docs/devel/qmp.md, "Limits"). */
#define QMP_JSON_MAX_SIZE   (64u * 1024 * 1024)  /* bytes of one value */
#define QMP_JSON_MAX_DEPTH  1024u                /* nested { and [ */
#define QMP_JSON_MAX_TOKENS (2u * 1024 * 1024)   /* scalars + containers */

/*
 * Serialise @node.  Compact form is one line with QEMU's separators; pretty
 * form is indented by four spaces.  Output is ASCII: other characters are
 * written as \uXXXX (UTF-16 surrogate pairs above U+FFFF).  Doubles use
 * %.17g; non-finite doubles become null.  @node may be NULL (-> "null").
 */
char *qobj_to_json(JsonNode *node, bool pretty);
void qobj_to_json_append(GString *out, JsonNode *node, bool pretty);

/* Depth of @node: 0 for a scalar, 1 for an empty container, ... */
unsigned qobj_depth(JsonNode *node);
/* Fail with "JSON nesting depth limit exceeded" when deeper than @max. */
bool qobj_check_depth(JsonNode *node, unsigned max, GError **errp);

/* Total number of object members in @node (recursively). */
size_t qobj_count_members(JsonNode *node);

/* New nodes, handy for return values. */
JsonNode *qobj_new_object(JsonObject *obj);   /* takes ownership */
JsonNode *qobj_new_array(JsonArray *arr);     /* takes ownership */
JsonNode *qobj_new_str(const char *s);
JsonNode *qobj_new_int(int64_t v);
JsonNode *qobj_new_bool(bool v);

/*
 * Getters for handler arguments.  Arguments were validated against the
 * schema before the handler runs, so a present member has the schema type;
 * these only supply the default for an absent optional member.
 */
bool qobj_has(JsonObject *obj, const char *name);
const char *qobj_get_str(JsonObject *obj, const char *name, const char *def);
int64_t qobj_get_int(JsonObject *obj, const char *name, int64_t def);
/* For uint64/size members: validated as 0..INT64_MAX (see README). */
uint64_t qobj_get_uint(JsonObject *obj, const char *name, uint64_t def);
bool qobj_get_bool(JsonObject *obj, const char *name, bool def);
JsonObject *qobj_get_object(JsonObject *obj, const char *name);
JsonArray *qobj_get_array(JsonObject *obj, const char *name);

#endif
