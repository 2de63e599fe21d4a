/*
 * QMP events: build {"timestamp", "event", "data"}, check the data against
 * the schema, and hand the event to every registered sink (the QMP server
 * forwards it to negotiated clients).
 */
#include "monitor/monitor.h"

#include <string.h>

#include "monitor/qmp-dispatch.h"
#include "qapi/qapi-validate.h"
#include "qapi/qobject-json.h"

typedef struct EventSink {
    QmpEventSinkFunc *fn;
    void *opaque;
} EventSink;

static GArray *sinks;

void qmp_event_add_sink(QmpEventSinkFunc *fn, void *opaque)
{
    EventSink sink = { fn, opaque };

    if (!sinks) {
        sinks = g_array_new(FALSE, FALSE, sizeof(EventSink));
    }
    g_array_append_val(sinks, sink);
}

void qmp_event_remove_sink(QmpEventSinkFunc *fn, void *opaque)
{
    for (guint i = 0; sinks && i < sinks->len; i++) {
        EventSink *s = &g_array_index(sinks, EventSink, i);

        if (s->fn == fn && s->opaque == opaque) {
            g_array_remove_index(sinks, i);
            return;
        }
    }
}

static void check_event(const char *event, JsonNode *data)
{
    const QapiSchema *schema = qapi_schema_builtin();
    g_autoptr(GError) err = NULL;
    JsonObject *info = qapi_schema_lookup(schema, event);

    if (!info || strcmp(json_object_get_string_member(info, "meta-type"),
                        "event")) {
        g_critical("event %s is not in the schema", event);
        return;
    }
    if (!qapi_validate(schema,
                       json_object_get_string_member(info, "arg-type"),
                       data, "data", QAPI_VALIDATE_DEFAULT, &err)) {
        g_critical("event %s: data does not match the schema: %s",
                   event, err->message);
    }
}

void qmp_event_emit(const char *event, JsonObject *data)
{
    g_autoptr(JsonNode) msg = NULL;
    g_autoptr(JsonNode) data_node = NULL;
    JsonObject *obj = json_object_new();
    JsonObject *ts = json_object_new();
    gint64 now = g_get_real_time();

    data_node = qobj_new_object(data ? data : json_object_new());
    check_event(event, data_node);

    json_object_set_int_member(ts, "seconds", now / G_USEC_PER_SEC);
    json_object_set_int_member(ts, "microseconds", now % G_USEC_PER_SEC);
    json_object_set_object_member(obj, "timestamp", ts);
    json_object_set_string_member(obj, "event", event);
    if (data) {
        json_object_set_member(obj, "data", json_node_ref(data_node));
    }
    msg = qobj_new_object(obj);
    for (guint i = 0; sinks && i < sinks->len; i++) {
        EventSink *s = &g_array_index(sinks, EventSink, i);

        s->fn(msg, s->opaque);
    }
}
