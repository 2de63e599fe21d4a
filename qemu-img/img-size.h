/*
 * Size arguments of the command-line front-ends (qemu-img, qemu-io), with
 * the rules QEMU's tools apply so that existing scripts keep working:
 * decimal with an optional binary suffix (k, M, G, T, P, E; b/B for bytes),
 * a fraction only together with a suffix larger than a byte ("1.5k"),
 * hexadecimal integers ("0x200"), leading blanks and '+' tolerated, and
 * nothing negative.
 */
#ifndef QEMU_IMG_IMG_SIZE_H
#define QEMU_IMG_IMG_SIZE_H

#include <stdbool.h>
#include <stdint.h>

/*
 * Parse @str.  Returns 0 and sets *out, -EINVAL for a malformed string
 * (junk, unknown suffix, fraction of a byte, negative) or -ERANGE when the
 * value does not fit in 64 bits.  A suffix on a hexadecimal number is
 * accepted with a deprecation warning printed through warn_report-style
 * output when @warn is true.
 */
int fe_strtosz(const char *str, uint64_t *out, bool warn);

#endif
