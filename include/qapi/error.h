/*
 * Error objects: every error above raw I/O travels to the caller as a GError
 * in the BP_ERROR domain whose code is the QMP error class.  Front-ends print
 * them; library code never prints or exits on bad input.
 *
 * Rules (see docs/devel/errors.md):
 *  - the last parameter is `GError **errp`, which may be NULL;
 *  - a function that fails sets *errp exactly once and returns false/NULL/-1;
 *  - messages are one line, no trailing period, and name the object.
 */
#ifndef QAPI_ERROR_H
#define QAPI_ERROR_H

#include <glib.h>
#include <stdbool.h>

/* The QMP error classes, in the order QEMU's schema lists them. */
typedef enum {
    ERROR_CLASS_GENERIC_ERROR = 0,
    ERROR_CLASS_COMMAND_NOT_FOUND,
    ERROR_CLASS_DEVICE_NOT_ACTIVE,
    ERROR_CLASS_DEVICE_NOT_FOUND,
    ERROR_CLASS_KVM_MISSING_CAP,
} ErrorClass;

#define BP_ERROR (bp_error_quark())
GQuark bp_error_quark(void);

/* The QMP name of an error class ("GenericError", ...). */
const char *error_class_name(ErrorClass cls);
/* Class of any GError: BP_ERROR codes map 1:1, others are GenericError. */
ErrorClass error_get_class(const GError *err);

#define error_setg(errp, ...) \
    g_set_error((errp), BP_ERROR, ERROR_CLASS_GENERIC_ERROR, __VA_ARGS__)
#define error_set(errp, cls, ...) g_set_error((errp), BP_ERROR, (cls), __VA_ARGS__)

/* Like error_setg() with ": <strerror(os_errno)>" appended. */
void error_setg_errno(GError **errp, int os_errno, const char *fmt, ...)
    G_GNUC_PRINTF(3, 4);

/* Append a hint line ("\n" + text) to an error that is already set. */
void error_append_hint(GError **errp, const char *fmt, ...) G_GNUC_PRINTF(2, 3);

/* Print "prog: message" to stderr (hints on following lines). */
void error_report_err(GError *err);
void error_report(const char *fmt, ...) G_GNUC_PRINTF(1, 2);

/* The program name used by error_report(); set once by each front-end. */
void error_set_progname(const char *name);
const char *error_get_progname(void);

#endif
