/* Strict number and size parsing shared by every front-end and option. */
#ifndef UTIL_CUTILS_H
#define UTIL_CUTILS_H

#include <glib.h>
#include <stdbool.h>
#include <stdint.h>

/*
 * Parse a size with an optional suffix (b, k/K, M, G, T, P, E; binary
 * multiples).  "1.5G" is accepted when the result is a whole number of
 * bytes.  Rejects negative numbers, overflow, empty strings and junk.
 * @default_suffix is the unit for a bare number ('B' for bytes).
 */
bool parse_size(const char *str, char default_suffix, uint64_t *out,
                GError **errp);

/* Parse a decimal (or 0x hex) unsigned/signed integer; whole string. */
bool parse_uint64(const char *str, uint64_t *out, GError **errp);
bool parse_int64(const char *str, int64_t *out, GError **errp);

/* Human readable size as qemu-img prints it ("1 GiB", "192 KiB", "64 MiB"). */
char *size_to_str(uint64_t bytes);

#endif
