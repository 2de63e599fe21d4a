/*
 * Size parsing shared by qemu-img and qemu-io (see img-size.h for the
 * accepted syntax).
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <glib.h>

#include "qapi/error.h"
#include "img-size.h"

static int fe_suffix_shift(char c)
{
    switch (c) {
    case 'b': case 'B':
        return 0;
    case 'k': case 'K':
        return 10;
    case 'm': case 'M':
        return 20;
    case 'g': case 'G':
        return 30;
    case 't': case 'T':
        return 40;
    case 'p': case 'P':
        return 50;
    case 'e': case 'E':
        return 60;
    default:
        return -1;
    }
}

/* Scale @whole + @frac (0 <= frac < 1) by 2^shift; false on overflow. */
static bool fe_scale(uint64_t whole, double frac, int shift, uint64_t *out)
{
    uint64_t v;
    double extra;

    if (shift > 0 && whole > (UINT64_MAX >> shift)) {
        return false;
    }
    v = whole << shift;
    extra = frac * (double)(UINT64_C(1) << shift);
    if (extra >= 18446744073709551616.0 ||
        v + (uint64_t)extra < v) {
        return false;
    }
    *out = v + (uint64_t)extra;
    return true;
}

int fe_strtosz(const char *str, uint64_t *out, bool warn)
{
    const char *p = str;
    char *end = NULL;
    uint64_t whole;
    double frac = 0;
    bool hex = false;
    int shift = 0;

    while (*p == ' ' || *p == '\t' || *p == '\n') {
        p++;
    }
    if (*p == '+') {
        p++;
    }
    if (!g_ascii_isdigit(*p)) {
        return -EINVAL;
    }
    hex = p[0] == '0' && (p[1] == 'x' || p[1] == 'X');
    errno = 0;
    whole = g_ascii_strtoull(p, &end, hex ? 16 : 10);
    if (hex && end == p + 2) {
        return -EINVAL;                 /* "0x" with no digits */
    }
    if (errno == ERANGE) {
        return -ERANGE;
    }
    if (*end == '.') {
        const char *f = end + 1;
        double scale = 0.1;

        if (hex) {
            return -EINVAL;
        }
        while (g_ascii_isdigit(*f)) {
            frac += (*f - '0') * scale;
            scale /= 10;
            f++;
        }
        end = (char *)f;
    }
    if (*end) {
        shift = fe_suffix_shift(*end);
        if (shift < 0 || end[1]) {
            return -EINVAL;
        }
        if (hex && warn) {
            fprintf(stderr, "%s: warning: Using a multiplier suffix on hex "
                    "numbers is deprecated: %s\n", error_get_progname(), str);
        }
    }
    if (frac > 0 && shift == 0) {
        return -EINVAL;                 /* a fraction of a byte */
    }
    if (!fe_scale(whole, frac, shift, out)) {
        return -ERANGE;
    }
    return 0;
}
