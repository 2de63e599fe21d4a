/* Strict parsing of numbers and sizes, and size printing. */
#include "util/cutils.h"
#include "qapi/error.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static int suffix_shift(char c)
{
    switch (c) {
    case 'b': case 'B': return 0;
    case 'k': case 'K': return 10;
    case 'm': case 'M': return 20;
    case 'g': case 'G': return 30;
    case 't': case 'T': return 40;
    case 'p': case 'P': return 50;
    case 'e': case 'E': return 60;
    default: return -1;
    }
}

bool parse_size(const char *str, char default_suffix, uint64_t *out,
                GError **errp)
{
    const char *p = str;
    char *end = NULL;
    uint64_t whole;
    double frac = 0;
    int shift;

    if (!str || !*str) {
        error_setg(errp, "Invalid size: empty string");
        return false;
    }
    while (g_ascii_isspace(*p)) {
        p++;
    }
    if (!g_ascii_isdigit(*p)) {
        error_setg(errp, "Invalid size '%s'", str);
        return false;
    }
    errno = 0;
    whole = strtoull(p, &end, 10);
    if (errno == ERANGE) {
        error_setg(errp, "Size '%s' is too large", str);
        return false;
    }
    if (*end == 'x' || *end == 'X') {
        error_setg(errp, "Invalid size '%s': hexadecimal is not accepted",
                   str);
        return false;
    }
    if (*end == '.') {
        char *fend;
        g_autofree char *fs = g_strdup_printf("0%s", end);
        frac = g_ascii_strtod(fs, &fend);
        end += strlen(fs) - 1 - strlen(fend);
        if (end[-1] == '.') {
            error_setg(errp, "Invalid size '%s'", str);
            return false;
        }
    }
    if (*end) {
        shift = suffix_shift(*end);
        if (shift < 0 || end[1]) {
            error_setg(errp, "Invalid size '%s': unknown suffix", str);
            return false;
        }
    } else {
        shift = suffix_shift(default_suffix);
        if (shift < 0) {
            shift = 0;
        }
    }
    if (shift >= 64 || (shift > 0 && whole > (UINT64_MAX >> shift))) {
        error_setg(errp, "Size '%s' is too large", str);
        return false;
    }
    whole <<= shift;
    if (frac > 0) {
        double extra = frac * (double)(UINT64_C(1) << shift);
        if (extra != floor(extra) || whole + (uint64_t)extra < whole) {
            error_setg(errp, "Invalid size '%s': not a whole number of bytes",
                       str);
            return false;
        }
        whole += (uint64_t)extra;
    }
    *out = whole;
    return true;
}

bool parse_uint64(const char *str, uint64_t *out, GError **errp)
{
    char *end = NULL;
    uint64_t v;

    if (!str || !*str || *str == '-' || g_ascii_isspace(*str)) {
        error_setg(errp, "Invalid number '%s'", str ? str : "");
        return false;
    }
    errno = 0;
    v = strtoull(str, &end, 0);
    if (errno == ERANGE) {
        error_setg(errp, "Number '%s' is too large", str);
        return false;
    }
    if (*end || end == str) {
        error_setg(errp, "Invalid number '%s'", str);
        return false;
    }
    *out = v;
    return true;
}

bool parse_int64(const char *str, int64_t *out, GError **errp)
{
    char *end = NULL;
    int64_t v;

    if (!str || !*str || g_ascii_isspace(*str)) {
        error_setg(errp, "Invalid number '%s'", str ? str : "");
        return false;
    }
    errno = 0;
    v = strtoll(str, &end, 0);
    if (errno == ERANGE) {
        error_setg(errp, "Number '%s' is out of range", str);
        return false;
    }
    if (*end || end == str) {
        error_setg(errp, "Invalid number '%s'", str);
        return false;
    }
    *out = v;
    return true;
}

char *size_to_str(uint64_t bytes)
{
    static const char *const units[] = {"B",   "KiB", "MiB", "GiB",
                                        "TiB", "PiB", "EiB"};
    int i = 0;
    double v = bytes;

    /* Same rule as qemu-img: switch unit at 1000 of the smaller one. */
    while (v >= 1000 && i < 6) {
        v /= 1024;
        i++;
    }
    if (i == 0) {
        return g_strdup_printf("%" G_GUINT64_FORMAT " B", bytes);
    }
    /* Three significant digits, like QEMU's output. */
    return g_strdup_printf("%.3g %s", v, units[i]);
}
