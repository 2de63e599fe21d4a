/*
 * Internal to qemu-io: the command descriptor and helpers shared by the
 * command files (io-cmds.c: table and metadata commands; io-rw.c: data
 * commands and their reports).
 */
#ifndef QEMU_IO_IO_INT_H
#define QEMU_IO_IO_INT_H

#include <stdint.h>
#include <sys/time.h>

#include "io-cmds.h"

/* QEMU's largest request (INT_MAX rounded down to a sector). */
#define IO_MAX_REQUEST INT64_C(2147483136)

typedef struct IoCmd {
    const char *name;
    const char *altname;        /* short alias, or NULL */
    int (*func)(IoState *s, int argc, char **argv);
    int argmin;
    int argmax;                 /* -1: no limit */
    bool needs_file;
    bool needs_write;           /* refused on a read-only image */
    const char *args;           /* synopsis of the arguments */
    const char *oneline;        /* our own one-line description */
    const char *help;           /* extended help (our words), or NULL */
} IoCmd;

/* Data commands (io-rw.c). */
int io_read_f(IoState *s, int argc, char **argv);
int io_write_f(IoState *s, int argc, char **argv);
int io_discard_f(IoState *s, int argc, char **argv);
int io_truncate_f(IoState *s, int argc, char **argv);

/* Print the usage line of the command named @name; returns -EINVAL. */
int io_usage(const char *name);

/*
 * Sizes and offsets: QEMU's rules (suffixes, hex).  Returns >= 0, or
 * -EINVAL / -ERANGE (print it with io_print_cvtnum_err()).
 */
int64_t io_cvtnum(const char *arg);
/* "Parsing error: ..." for a failed io_cvtnum-style parse. */
void io_print_cvtnum_err(int64_t rc, const char *arg);

/* QEMU's compact sizes: "4 KiB", "1.329 MiB", "512 bytes". */
void io_cvtstr(double value, char *str, size_t size);

#endif
