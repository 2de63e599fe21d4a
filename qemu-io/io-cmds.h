/*
 * qemu-io commands: the table, argument parsing and the output each
 * command prints (in the layout of QEMU's qemu-io, so that scripts and
 * iotests written for it keep working).
 */
#ifndef QEMU_IO_IO_CMDS_H
#define QEMU_IO_IO_CMDS_H

#include <stdbool.h>

#include "block/block.h"

/* What the commands operate on. */
typedef struct IoState {
    BlockDriverState *bs;       /* the open image, or NULL */
    int write_flags;            /* BDRV_REQ_FUA for writethrough caching */
    bool quit;                  /* set by `quit` */
} IoState;

/*
 * Open @filename (or an option string with @image_opts) into @s.
 * @flags are BDRV_O_*; @fmt may be NULL to probe; @extra (may be NULL)
 * holds further open options.  Prints "can't open ..." on failure.
 */
bool io_open_image(IoState *s, const char *filename, const char *fmt,
                   bool image_opts, int flags, JsonObject *extra);

/*
 * Parse a cache mode into BDRV_O_NOCACHE / BDRV_O_NO_FLUSH flags;
 * *writethrough (may be NULL) is set for writethrough and directsync,
 * whose writes must reach stable storage before they complete.
 */
bool io_parse_cache(const char *mode, int *flags, bool *writethrough);

/*
 * Split @line at spaces and run the command.  Returns 0 on success and a
 * negative value when the command failed (the caller turns any failure
 * into exit status 1).
 */
int io_run_line(IoState *s, const char *line);

#endif
