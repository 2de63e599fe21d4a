/*
 * QEMU's key=value command-line syntax ("keyval"), as used by --blockdev,
 * --nbd-server, --export, --object and --chardev:
 *
 *   driver=qcow2,file.driver=file,file.filename=a,,b.qcow2
 *
 * - ",," stands for a literal comma inside a value;
 * - dotted keys build nested objects ("file.filename");
 * - an object whose keys are exactly 0, 1, ... n-1 becomes an array;
 * - the first element may omit "key=" when an implied key is given
 *   ("qcow2,..." with implied key "driver");
 * - a repeated key keeps its last value, like QEMU.
 *
 * Every scalar is a JSON string; validate the result with
 * qapi_validate(..., QAPI_VALIDATE_COERCE_STRINGS, ...) to turn them into
 * the schema's integers and booleans.
 */
#ifndef QAPI_KEYVAL_H
#define QAPI_KEYVAL_H

#include <json-glib/json-glib.h>

JsonObject *keyval_parse(const char *params, const char *implied_key,
                         GError **errp);

#endif
