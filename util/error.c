/* Error objects (GError in the BP_ERROR domain) and their reporting. */
#include "qapi/error.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

G_DEFINE_QUARK(blockpoint-error-quark, bp_error)

static const char *progname = "blockpoint";

static const char *const class_names[] = {
    [ERROR_CLASS_GENERIC_ERROR] = "GenericError",
    [ERROR_CLASS_COMMAND_NOT_FOUND] = "CommandNotFound",
    [ERROR_CLASS_DEVICE_NOT_ACTIVE] = "DeviceNotActive",
    [ERROR_CLASS_DEVICE_NOT_FOUND] = "DeviceNotFound",
    [ERROR_CLASS_KVM_MISSING_CAP] = "KVMMissingCap",
};

const char *error_class_name(ErrorClass cls)
{
    if ((unsigned)cls >= G_N_ELEMENTS(class_names)) {
        return class_names[ERROR_CLASS_GENERIC_ERROR];
    }
    return class_names[cls];
}

ErrorClass error_get_class(const GError *err)
{
    if (err && err->domain == BP_ERROR &&
        (unsigned)err->code < G_N_ELEMENTS(class_names)) {
        return (ErrorClass)err->code;
    }
    return ERROR_CLASS_GENERIC_ERROR;
}

void error_setg_errno(GError **errp, int os_errno, const char *fmt, ...)
{
    va_list ap;
    g_autofree char *msg = NULL;

    if (!errp) {
        return;
    }
    va_start(ap, fmt);
    msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    g_set_error(errp, BP_ERROR, ERROR_CLASS_GENERIC_ERROR, "%s: %s", msg,
                g_strerror(os_errno));
}

void error_append_hint(GError **errp, const char *fmt, ...)
{
    va_list ap;
    g_autofree char *hint = NULL;
    char *joined;

    if (!errp || !*errp) {
        return;
    }
    va_start(ap, fmt);
    hint = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    joined = g_strconcat((*errp)->message, "\n", hint, NULL);
    g_free((*errp)->message);
    (*errp)->message = joined;
}

void error_set_progname(const char *name)
{
    progname = name;
}

const char *error_get_progname(void)
{
    return progname;
}

void error_report_err(GError *err)
{
    if (!err) {
        return;
    }
    fprintf(stderr, "%s: %s\n", progname, err->message);
    g_error_free(err);
}

void error_report(const char *fmt, ...)
{
    va_list ap;
    g_autofree char *msg = NULL;

    va_start(ap, fmt);
    msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s: %s\n", progname, msg);
}
