/*
 * Open options: a JSON object tree, whatever their source.  Dotted keys
 * ("driver=raw,file.filename=x") become nested objects whose leaves are
 * strings; QMP and json: pseudo-filenames give typed leaves.  Consumers
 * "take" the keys they understand (removing them), so whatever is left at
 * the end is an unknown option and is reported as such.
 */
#ifndef UTIL_OPTIONS_H
#define UTIL_OPTIONS_H

#include <glib.h>
#include <json-glib/json-glib.h>
#include <stdbool.h>
#include <stdint.h>

/* keyval_parse() (dotted keys to a JSON tree) lives in util/keyval.h. */
#include "util/keyval.h"

/* Parse a JSON text that must be an object ("json:" pseudo-filenames). */
JsonObject *options_parse_json(const char *text, GError **errp);

/* Deep copy of an options object. */
JsonObject *options_copy(JsonObject *o);

/* Flatten nested objects to dotted keys with string values (for display). */
JsonObject *options_flatten(JsonObject *o);

/*
 * Take a string option.  Returns a newly allocated string (NULL when the
 * key is absent).  Numbers and booleans are converted to their text.  An
 * object or array sets @errp and returns NULL; check *errp to distinguish.
 */
char *opts_take_str(JsonObject *o, const char *key, GError **errp);

/* Take a boolean: JSON true/false or "on"/"off"/"true"/"false". */
bool opts_take_bool(JsonObject *o, const char *key, bool def, bool *out,
                    GError **errp);

/* Take an unsigned integer; strings may use k/M/G/T/P/E suffixes. */
bool opts_take_size(JsonObject *o, const char *key, uint64_t def,
                    uint64_t *out, GError **errp);

/* Take a signed integer (no suffixes). */
bool opts_take_int(JsonObject *o, const char *key, int64_t def, int64_t *out,
                   GError **errp);

/*
 * Take a nested object (a new reference, or NULL if absent).  A string
 * value is left in place and NULL returned, so callers can treat it as a
 * node-name reference.
 */
JsonObject *opts_take_object(JsonObject *o, const char *key);

/* Whether @key is present. */
bool opts_has(JsonObject *o, const char *key);

/*
 * Fail if any key is left: "<what> does not support the option '<key>'"
 * (nested keys are shown dotted).
 */
bool opts_check_empty(JsonObject *o, const char *what, GError **errp);

/* The first key left in @o, dotted (NULL when empty). */
char *opts_first_key(JsonObject *o);

#endif
