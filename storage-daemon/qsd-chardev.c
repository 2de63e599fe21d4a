/* --chardev option parsing and the table of defined character devices. */
#include "storage-daemon/qsd-chardev.h"

#include <string.h>

#include "qapi/error.h"
#include "util/keyval.h"
#include "qapi/qobject-json.h"

static GPtrArray *chardevs;

static void chardev_free(gpointer p)
{
    QsdChardev *chr = p;

    g_free(chr->id);
    g_free(chr->path);
    g_free(chr);
}

const QsdChardev *qsd_chardev_find(const char *id)
{
    for (guint i = 0; chardevs && i < chardevs->len; i++) {
        QsdChardev *chr = g_ptr_array_index(chardevs, i);

        if (!strcmp(chr->id, id)) {
            return chr;
        }
    }
    return NULL;
}

static bool check_bool(JsonObject *opts, const char *name, bool want,
                       GError **errp)
{
    const char *v = qobj_get_str(opts, name, NULL);
    bool on;

    if (!v) {
        v = "off";
    }
    if (!strcmp(v, "on") || !strcmp(v, "yes") || !strcmp(v, "true")) {
        on = true;
    } else if (!strcmp(v, "off") || !strcmp(v, "no") ||
               !strcmp(v, "false")) {
        on = false;
    } else {
        error_setg(errp, "Parameter '%s' expects 'on' or 'off'", name);
        return false;
    }
    if (on != want) {
        error_setg(errp, "only server=on,wait=off socket character devices "
                   "are supported");
        return false;
    }
    return true;
}

bool qsd_chardev_add(const char *arg, GError **errp)
{
    static const char *const known[] = {
        "backend", "id", "path", "server", "wait", NULL
    };
    g_autoptr(JsonObject) opts = keyval_parse(arg, "backend", errp);
    JsonObjectIter iter;
    const char *key;
    JsonNode *val;
    const char *id, *path, *backend;
    QsdChardev *chr;

    if (!opts) {
        return false;
    }
    json_object_iter_init(&iter, opts);
    while (json_object_iter_next(&iter, &key, &val)) {
        if (!g_strv_contains(known, key) || !JSON_NODE_HOLDS_VALUE(val)) {
            error_setg(errp, "Invalid parameter '%s'", key);
            return false;
        }
    }
    backend = qobj_get_str(opts, "backend", NULL);
    id = qobj_get_str(opts, "id", NULL);
    path = qobj_get_str(opts, "path", NULL);
    if (!backend) {
        error_setg(errp, "chardev: \"%s\" missing backend", arg);
        return false;
    }
    if (strcmp(backend, "socket")) {
        error_setg(errp, "chardev backend '%s' is not supported; only "
                   "'socket' is", backend);
        return false;
    }
    if (!id || !*id) {
        error_setg(errp, "Parameter 'id' is missing");
        return false;
    }
    if (!path || !*path) {
        error_setg(errp, "chardev: socket: only Unix sockets (path=) are "
                   "supported");
        return false;
    }
    if (!check_bool(opts, "server", true, errp)) {
        return false;
    }
    if (qobj_has(opts, "wait") && !check_bool(opts, "wait", false, errp)) {
        return false;
    }
    if (qsd_chardev_find(id)) {
        error_setg(errp, "attempt to add duplicate property '%s' to object "
                   "(type 'container')", id);
        return false;
    }
    if (!chardevs) {
        chardevs = g_ptr_array_new_with_free_func(chardev_free);
    }
    chr = g_new0(QsdChardev, 1);
    chr->id = g_strdup(id);
    chr->path = g_strdup(path);
    g_ptr_array_add(chardevs, chr);
    return true;
}

void qsd_chardev_cleanup(void)
{
    g_clear_pointer(&chardevs, g_ptr_array_unref);
}
