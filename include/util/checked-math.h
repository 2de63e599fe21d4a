/* Overflow-checked arithmetic for sizes that come from files or sockets. */
#ifndef UTIL_CHECKED_MATH_H
#define UTIL_CHECKED_MATH_H

#include <stdbool.h>
#include <stdint.h>

/* Each returns true when the result overflowed (and *res is garbage). */
#define checked_add(a, b, res) __builtin_add_overflow((a), (b), (res))
#define checked_mul(a, b, res) __builtin_mul_overflow((a), (b), (res))
#define checked_sub(a, b, res) __builtin_sub_overflow((a), (b), (res))

#endif
