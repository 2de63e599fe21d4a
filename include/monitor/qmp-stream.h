/*
 * Incremental JSON framing for QMP byte streams.
 *
 * Bytes arrive in arbitrary pieces; the stream finds each complete
 * top-level JSON value, checks it strictly (RFC 8259 tokens, valid UTF-8,
 * no duplicate keys, limits on size, nesting and token count), parses it
 * with json-glib and hands it to the emit callback.  Anything wrong yields
 * exactly one error per bad value (or per run of stray bytes between
 * values) and the stream carries on with the next value.
 *
 * Resynchronisation: a byte that cannot appear at its position (a control
 * character, invalid UTF-8, 0xFF, a stray '/' ...) ends the current value
 * with an error and the stream restarts at the next byte.  A client that
 * lost track can therefore send 0xFF followed by a newline.
 *
 * Extension kept from QEMU: 'single-quoted' strings, and the escape \'.
 * Not accepted: comments, leading zeros, NaN/Infinity, trailing commas,
 * \u0000 (json-glib strings are NUL-terminated), numbers that overflow a
 * double.  Integers beyond the int64 range become doubles.
 */
#ifndef MONITOR_QMP_STREAM_H
#define MONITOR_QMP_STREAM_H

#include <json-glib/json-glib.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct QmpStream QmpStream;

/*
 * Called once per complete value: either @value (owned by the callee) or
 * @err (owned by the callee) is non-NULL.  The callback must not free the
 * stream; it may call qmp_stream_reset().
 */
typedef void QmpStreamEmitFunc(void *opaque, JsonNode *value, GError *err);

QmpStream *qmp_stream_new(QmpStreamEmitFunc *emit, void *opaque);
void qmp_stream_free(QmpStream *s);

/* Override QMP_JSON_MAX_SIZE / _DEPTH / _TOKENS (0 keeps the current). */
void qmp_stream_set_limits(QmpStream *s, size_t max_size, unsigned max_depth,
                           size_t max_tokens);

/* Consume @len bytes; emits every value they complete. */
void qmp_stream_feed(QmpStream *s, const void *buf, size_t len);

/* End of input: completes a trailing top-level number or keyword, and
 * reports an unfinished value as an error. */
void qmp_stream_finish(QmpStream *s);

/* Drop any partial value. */
void qmp_stream_reset(QmpStream *s);

/* True when no partial value is buffered. */
bool qmp_stream_idle(const QmpStream *s);

/*
 * Parse @len bytes that must hold exactly one JSON value, with the same
 * strictness and limits.  Use this (not json_parser_*) for untrusted text,
 * e.g. JSON given on a command line.
 */
JsonNode *qmp_json_parse(const char *text, size_t len, GError **errp);

#endif
