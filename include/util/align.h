/* Alignment helpers; alignments are powers of two unless noted. */
#ifndef UTIL_ALIGN_H
#define UTIL_ALIGN_H

#include <stdbool.h>
#include <stdint.h>

#define ROUND_DOWN(n, a) ((n) & ~((__typeof__(n))(a) - 1))
#define ROUND_UP(n, a) ROUND_DOWN((n) + (a) - 1, (a))
#define IS_ALIGNED(n, a) (((n) & ((__typeof__(n))(a) - 1)) == 0)
#define DIV_ROUND_UP(n, d) (((n) + (d) - 1) / (d))

static inline bool is_power_of_2(uint64_t v)
{
    return v && !(v & (v - 1));
}

/* Any alignment, not only powers of two. */
static inline uint64_t qemu_align_up(uint64_t n, uint64_t a)
{
    return (n + a - 1) / a * a;
}

#endif
