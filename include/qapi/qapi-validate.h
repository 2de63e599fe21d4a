/*
 * Runtime validation of JSON values against the QAPI schema.
 *
 * The schema is the generated validation JSON: QEMU's SchemaInfo format
 * (see qapi/schema/introspect.json) with sized integer builtins kept, so
 * ranges can be checked.  Validation happens before any handler runs; a
 * handler may rely on every present member having its schema type.
 *
 * Error messages follow QEMU and name the member path:
 *   Parameter 'file.filename' is missing
 *   Parameter 'actions[0].type' is unexpected
 *   Invalid parameter type for 'node', expected: string
 *   Parameter 'granularity' expects uint32_t
 *   Parameter 'driver' does not accept value 'nosuch'
 */
#ifndef QAPI_QAPI_VALIDATE_H
#define QAPI_QAPI_VALIDATE_H

#include <json-glib/json-glib.h>
#include <stdbool.h>

typedef struct QapiSchema QapiSchema;

typedef enum QapiValidateFlags {
    QAPI_VALIDATE_DEFAULT = 0,
    /*
     * Values come from a command line in key=value form, so every scalar
     * is a string: convert strings to integers (with k/M/G/T/P/E suffixes
     * for 'size'), numbers and booleans (on/off/yes/no/true/false) in
     * place where the schema wants those.  The nodes must be mutable.
     */
    QAPI_VALIDATE_COERCE_STRINGS = 1 << 0,
} QapiValidateFlags;

/* Load a validation schema (a JSON array of SchemaInfo objects). */
QapiSchema *qapi_schema_new(const char *schema_json, GError **errp);
void qapi_schema_free(QapiSchema *schema);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(QapiSchema, qapi_schema_free)

/* The schema compiled from qapi/schema/ into this program; loaded once. */
const QapiSchema *qapi_schema_builtin(void);

/* The SchemaInfo object of entity @name (type, command or event). */
JsonObject *qapi_schema_lookup(const QapiSchema *schema, const char *name);

/*
 * Check @value against type @type.  @name is the path shown in messages
 * for @value itself; NULL means @value is an argument object whose members
 * are named without prefix.  Returns false and sets @errp on the first
 * problem found (members in schema order, then unexpected members).
 */
bool qapi_validate(const QapiSchema *schema, const char *type,
                   JsonNode *value, const char *name,
                   QapiValidateFlags flags, GError **errp);

/* Shorthand: validate command arguments @args against object type @type. */
bool qapi_validate_args(const QapiSchema *schema, const char *type,
                        JsonObject *args, GError **errp);

#endif
