/*
 * Shared pieces of the qemu-img subcommands: the command table type,
 * usage errors, opening images from -f/--image-opts/-U/cache options,
 * size arguments, the progress indicator and JSON/human output in QEMU's
 * layout.
 */
#ifndef QEMU_IMG_IMG_COMMON_H
#define QEMU_IMG_IMG_COMMON_H

#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>

#include <glib.h>
#include <json-glib/json-glib.h>

#include "block/block.h"

/*
 * One subcommand.  main.c holds the table; --help and the per-command
 * help are generated from it, so a new command (bitmap, checkpoint, ...)
 * is one function plus one table entry.
 */
typedef struct ImgCmd ImgCmd;
struct ImgCmd {
    const char *name;
    int (*handler)(const ImgCmd *cmd, int argc, char **argv);
    const char *synopsis;   /* options and operands after the name */
    const char *summary;    /* one line, our own words */
    const char *details;    /* option list for `qemu-img CMD --help` */
};

/* Long-option values shared by the subcommands (beyond any short one). */
enum {
    IMG_OPT_OBJECT = 256,
    IMG_OPT_IMAGE_OPTS,
    IMG_OPT_OUTPUT,
    IMG_OPT_BACKING_CHAIN,
    IMG_OPT_PATTERN,
    IMG_OPT_FLUSH_INTERVAL,
    IMG_OPT_NO_DRAIN,
    IMG_OPT_SHRINK,
    IMG_OPT_PREALLOCATION,
    IMG_OPT_START_OFFSET,
    IMG_OPT_MAX_LENGTH,
    IMG_OPT_TARGET_IMAGE_OPTS,
    IMG_OPT_TARGET_IS_ZERO,
    IMG_OPT_BITMAPS,
    IMG_OPT_SKIP_BROKEN,
    IMG_OPT_SALVAGE,
};

typedef enum {
    IMG_OUTPUT_HUMAN,
    IMG_OUTPUT_JSON,
} ImgOutputFormat;

/* Exit code of a subcommand on a usage error or an ordinary failure. */
#define IMG_EXIT_FAILURE 1

/* --- usage errors (all return IMG_EXIT_FAILURE for `return f(...)`) --- */

/* "qemu-img: MSG" and the "Try 'qemu-img --help'" line. */
int img_usage_error(const char *fmt, ...) G_GNUC_PRINTF(1, 2);
/*
 * Report what getopt_long() returned for a bad option ('?' or ':') the
 * way QEMU does.  Call with opterr = 0 and an optstring starting with ':'.
 */
int img_bad_option(int c, char **argv);
/* Print `qemu-img CMD --help` output for @cmd; returns 0. */
int img_cmd_help(const ImgCmd *cmd);

/* --- common options --- */

/* Parse --output; false (message printed) when neither human nor json. */
bool img_parse_output(const char *arg, ImgOutputFormat *out);
/*
 * Parse a cache mode (none, off, writeback, writethrough, directsync,
 * unsafe) into BDRV_O_* flags.  Returns false for an unknown mode.
 */
bool img_parse_cache(const char *mode, int *flags);
/*
 * Whether @mode (may be NULL) wants every write on stable storage before
 * it completes (writethrough, directsync): callers add BDRV_REQ_FUA.
 */
bool img_cache_writethrough(const char *mode);
/*
 * --object: the only user-creatable object type we accept is "secret"
 * (id plus data or file); nothing uses it yet.  Returns -1 to go on, or
 * the exit code to return at once: 0 after "--object help", 1 (message
 * printed) for an unknown type or missing properties.
 */
int img_handle_object(const char *def);

/* --- images --- */

typedef struct ImgOpenArgs {
    const char *filename;
    const char *fmt;         /* -f, or NULL to probe */
    bool image_opts;         /* filename is key=value,... */
    bool writable;
    bool force_share;        /* -U */
    const char *cache;       /* NULL: writeback */
    int flags;               /* extra BDRV_O_* (CHECK, NO_BACKING, ...) */
    bool quiet;
} ImgOpenArgs;

/* img_common_opt() handled the option: go on parsing. */
#define IMG_OPT_CONTINUE (-1)

/*
 * The options the image-opening subcommands share (-f, -h, -U,
 * --image-opts, --object) and the error for an unknown one.  Each command
 * lists in its getopt strings only those it offers, and passes every
 * option it does not handle itself here.  Returns IMG_OPT_CONTINUE or an
 * exit code.
 */
int img_common_opt(const ImgCmd *cmd, ImgOpenArgs *oa, int c, char **argv);

/*
 * Open an image for a subcommand.  Prints "Could not open 'F': why" and
 * returns NULL on failure.  Warns like QEMU when raw was probed for a
 * writable open.
 */
BlockDriverState *img_open(const ImgOpenArgs *a);
/*
 * The end of a command that changed @bs: bitmaps stored, everything
 * flushed, and the node closed for writing, with any failure reported
 * (what closing alone writes could fail unseen).  False after printing
 * the error.
 */
bool img_finish_writes(BlockDriverState *bs, const char *filename);

/*
 * Size argument named @what ("image size", "buffer size", ...).  Prints
 * QEMU's message and returns -1 when malformed or above INT64_MAX.
 */
int64_t img_cvtnum(const char *what, const char *arg);

/*
 * Where the guest-visible data of an extent comes from, as `map` shows
 * it: walking down the backing chain to the first layer that has data or
 * zeroes for it (depth 0 is @bs itself).  An unallocated extent of the
 * bottom layer reads as zeroes with present = false.
 */
typedef struct ImgExtent {
    int64_t start;
    int64_t length;
    bool data;
    bool zero;
    bool present;           /* allocated in the layer at @depth */
    bool has_offset;
    int64_t offset;         /* host offset in @filename's node */
    int depth;
    const char *filename;   /* node holding the data (borrowed), or NULL */
} ImgExtent;

/* Describe the extent at @offset (length <= @bytes); 0 or -errno. */
int img_extent_status(BlockDriverState *bs, int64_t offset, int64_t bytes,
                      ImgExtent *e);

/* Whether @n bytes at @buf are all zero. */
bool img_buf_is_zero(const void *buf, size_t n);

/* --- output --- */

/* printf unless -q was given. */
void img_printf(bool quiet, const char *fmt, ...) G_GNUC_PRINTF(2, 3);

/*
 * Pretty-print @node as QEMU does (4-space indent, "key": value), with
 * object members in the order QEMU's hash table yields them, plus "\n".
 */
void img_json_print(JsonNode *node);
char *img_json_to_string(JsonNode *node);
/* Same for an object (convenience). */
void img_json_print_object(JsonObject *obj);
/*
 * Human dump of a JSON object as in "Format specific information":
 * "key: value" lines with '-' in keys shown as ' ', nested values
 * indented by 4 more spaces per level, list items as "[i]: value".
 */
void img_dump_human(JsonObject *obj, int indent);

/* --- progress (-p) --- */
void img_progress_init(bool enabled);
/* Percentage 0..100; printed when it moved by at least 1 point. */
void img_progress_print(double percent);
/* Ends the progress line (a newline, as QEMU). */
void img_progress_end(void);

#endif
