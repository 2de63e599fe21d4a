/*
 * qemu-io command table and dispatch, plus the commands that describe the
 * image (info, length, map, alloc), flush, open/close, help and quit.
 * Data commands live in io-rw.c.
 *
 * Error channels follow QEMU's qemu-io: command results and most argument
 * errors go to stdout, dispatch errors ("command not found", argument
 * counts, read-only image) to stderr.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "block/dirty-bitmap.h"
#include "qapi/error.h"
#include "util/options.h"
#include "io-int.h"
#include "../qemu-img/img-common.h"
#include "../qemu-img/img-size.h"

static int io_alloc_f(IoState *s, int argc, char **argv);
static int io_close_f(IoState *s, int argc, char **argv);
static int io_flush_f(IoState *s, int argc, char **argv);
static int io_help_f(IoState *s, int argc, char **argv);
static int io_info_f(IoState *s, int argc, char **argv);
static int io_length_f(IoState *s, int argc, char **argv);
static int io_map_f(IoState *s, int argc, char **argv);
static int io_open_f(IoState *s, int argc, char **argv);
static int io_quit_f(IoState *s, int argc, char **argv);

/* Sorted by name, as `help` lists them. */
static const IoCmd io_cmds[] = {
    { "alloc", NULL, io_alloc_f, 1, 2, true, false, "offset [count]",
      "reports how much of a range this image itself allocates", NULL },
    { "close", "c", io_close_f, 0, 0, true, false, "",
      "closes the open image", NULL },
    { "discard", "d", io_discard_f, 2, -1, true, true, "[-Cq] off len",
      "discards (unmaps) a range of bytes",
      " -C, -- print statistics as bytes,ops,time,bytes/sec,ops/sec\n"
      " -q, -- do not print statistics\n" },
    { "flush", "f", io_flush_f, 0, 0, true, false, "",
      "flushes the image to stable storage", NULL },
    { "help", "?", io_help_f, 0, 1, false, false, "[command]",
      "lists the commands, or explains one", NULL },
    { "info", "i", io_info_f, 0, 0, true, false, "",
      "describes the open image", NULL },
    { "length", "l", io_length_f, 0, 0, true, false, "",
      "prints the virtual size of the image", NULL },
    { "map", NULL, io_map_f, 0, 0, true, false, "",
      "lists allocated and unallocated ranges of this image", NULL },
    { "open", "o", io_open_f, 1, -1, false, false,
      "[-rnU] [-t cache] [-o options] [path]",
      "opens an image",
      " -r, -- read-only\n"
      " -n, -- bypass the host page cache (cache=none)\n"
      " -t, -- cache mode (none, writeback, writethrough, directsync, "
      "unsafe)\n"
      " -U, -- do not take the image lock\n"
      " -o, -- further open options as key=value,...\n" },
    { "quit", "q", io_quit_f, 0, 0, false, false, "",
      "leaves qemu-io", NULL },
    { "read", "r", io_read_f, 2, -1, true, false,
      "[-Cqv] [-P pattern [-s off] [-l len]] off len",
      "reads a range of bytes",
      " -C, -- print statistics as bytes,ops,time,bytes/sec,ops/sec\n"
      " -P, -- check that every byte read equals the pattern byte\n"
      " -s, -- with -P: where the checked part starts (from off)\n"
      " -l, -- with -P: how long the checked part is\n"
      " -q, -- do not print statistics\n"
      " -v, -- hex dump of the data read\n" },
    { "truncate", "t", io_truncate_f, 1, 3, true, true,
      "[-m prealloc_mode] off",
      "changes the virtual size of the image",
      " -m, -- preallocation of new space: off, metadata, falloc, full\n" },
    { "write", "w", io_write_f, 2, -1, true, true,
      "[-Cfnquz] [-P pattern] off len",
      "writes a range of bytes",
      " -C, -- print statistics as bytes,ops,time,bytes/sec,ops/sec\n"
      " -P, -- byte to fill the data with (default 0xcd)\n"
      " -f, -- force unit access (write through to stable storage)\n"
      " -z, -- write zeroes without sending a data buffer\n"
      " -u, -- with -z: the range may be deallocated\n"
      " -n, -- with -z: fail rather than write zeroes slowly\n"
      " -q, -- do not print statistics\n" },
};

static const IoCmd *io_find_cmd(const char *name)
{
    for (size_t i = 0; i < G_N_ELEMENTS(io_cmds); i++) {
        if (!strcmp(io_cmds[i].name, name) ||
            (io_cmds[i].altname && !strcmp(io_cmds[i].altname, name))) {
            return &io_cmds[i];
        }
    }
    return NULL;
}

int io_usage(const char *name)
{
    const IoCmd *ct = io_find_cmd(name);

    printf("%s %s -- %s\n", ct->name, ct->args, ct->oneline);
    return -EINVAL;
}

int64_t io_cvtnum(const char *arg)
{
    uint64_t v;
    int ret = fe_strtosz(arg, &v, true);

    if (ret < 0) {
        return ret;
    }
    return v > INT64_MAX ? -ERANGE : (int64_t)v;
}

void io_print_cvtnum_err(int64_t rc, const char *arg)
{
    if (rc == -ERANGE) {
        printf("Parsing error: argument too large -- %s\n", arg);
    } else if (rc == -EINVAL) {
        printf("Parsing error: non-numeric argument, or extraneous/"
               "unrecognized suffix -- %s\n", arg);
    } else {
        printf("Parsing error: %s\n", arg);
    }
}

void io_cvtstr(double value, char *str, size_t size)
{
    static const char *const units[] = {
        " KiB", " MiB", " GiB", " TiB", " PiB", " EiB",
    };
    const char *suffix = " bytes";
    char *trim;
    int u = -1;

    while (u < 5 && value >= (double)(UINT64_C(1) << (10 * (u + 2)))) {
        u++;
    }
    if (u >= 0) {
        suffix = units[u];
        snprintf(str, size - 4, "%.3f",
                 value / (double)(UINT64_C(1) << (10 * (u + 1))));
    } else {
        snprintf(str, size - 6, "%f", value);
    }
    /* "2.000 KiB" reads better as "2 KiB". */
    trim = strstr(str, ".000");
    if (trim) {
        strcpy(trim, suffix);
    } else {
        strcat(str, suffix);
    }
}

bool io_parse_cache(const char *mode, int *flags, bool *writethrough)
{
    if (writethrough) {
        *writethrough = !strcmp(mode, "writethrough") ||
                        !strcmp(mode, "directsync");
    }
    *flags &= ~(BDRV_O_NOCACHE | BDRV_O_NO_FLUSH);
    if (!strcmp(mode, "none") || !strcmp(mode, "off") ||
        !strcmp(mode, "directsync")) {
        *flags |= BDRV_O_NOCACHE;
    } else if (!strcmp(mode, "unsafe")) {
        *flags |= BDRV_O_NO_FLUSH;
    } else if (strcmp(mode, "writeback") && strcmp(mode, "writethrough")) {
        return false;
    }
    return true;
}

bool io_open_image(IoState *s, const char *filename, const char *fmt,
                   bool image_opts, int flags, JsonObject *extra)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(JsonObject) opts = NULL;

    if (image_opts) {
        opts = keyval_parse(filename, NULL, &err);
    } else {
        opts = extra ? options_copy(extra) : json_object_new();
        if (fmt) {
            json_object_set_string_member(opts, "driver", fmt);
        }
    }
    if (opts) {
        s->bs = bdrv_open(image_opts ? NULL : filename, opts, flags, &err);
    }
    if (!s->bs) {
        if (image_opts) {
            error_report("can't open: %s", err->message);
        } else {
            error_report("can't open device %s: %s", filename, err->message);
        }
        return false;
    }
    if (!fmt && !image_opts && (flags & BDRV_O_RDWR) &&
        bdrv_is_format(s->bs, "raw") && !opts_has(opts, "driver")) {
        fprintf(stderr,
                "WARNING: Image format was not specified for '%s' and "
                "probing guessed raw.\n"
                "         Automatically detecting the format is dangerous "
                "for raw images, write operations on block 0 will be "
                "restricted.\n"
                "         Specify the 'raw' format explicitly to remove the "
                "restrictions.\n", filename);
    }
    return true;
}

static int io_open_f(IoState *s, int argc, char **argv)
{
    g_autoptr(JsonObject) extra = json_object_new();
    int flags = BDRV_O_RDWR;
    bool wt = false;
    int c;

    while ((c = getopt(argc, argv, "rnUt:o:")) != -1) {
        switch (c) {
        case 'r':
            flags &= ~BDRV_O_RDWR;
            break;
        case 'n':
            flags |= BDRV_O_NOCACHE;
            break;
        case 'U':
            flags |= BDRV_O_FORCE_SHARE;
            break;
        case 't':
            if (!io_parse_cache(optarg, &flags, &wt)) {
                error_report("Invalid cache option: %s", optarg);
                return -EINVAL;
            }
            break;
        case 'o': {
            g_autoptr(GError) err = NULL;
            g_autoptr(JsonObject) o = keyval_parse(optarg, NULL, &err);
            g_autoptr(GList) keys = NULL;

            if (!o) {
                error_report("%s", err->message);
                return -EINVAL;
            }
            keys = json_object_get_members(o);
            for (GList *l = keys; l; l = l->next) {
                json_object_set_member(extra, l->data, json_node_copy(
                    json_object_get_member(o, l->data)));
            }
            break;
        }
        default:
            return io_usage("open");
        }
    }
    if (s->bs) {
        fprintf(stderr, "file open already, try 'help close'\n");
        return -EBUSY;
    }
    if (optind != argc - 1) {
        return io_usage("open");
    }
    if (!io_open_image(s, argv[optind], NULL, false, flags, extra)) {
        return -EINVAL;
    }
    s->write_flags = wt ? BDRV_REQ_FUA : 0;
    return 0;
}

static int io_close_f(IoState *s, int argc, char **argv)
{
    g_clear_pointer(&s->bs, bdrv_unref);
    return 0;
}

static int io_quit_f(IoState *s, int argc, char **argv)
{
    s->quit = true;
    return 0;
}

static int io_flush_f(IoState *s, int argc, char **argv)
{
    g_autoptr(GError) err = NULL;
    int ret = bdrv_flush(s->bs);

    if (ret < 0) {
        printf("flush failed: %s\n", g_strerror(-ret));
        return ret;
    }
    /*
     * A flush is the front-end's request to make the image durable: store
     * the persistent bitmaps too, so a crash after it leaves them
     * consistent (qemu-io runs one request at a time, so none is in
     * flight here).
     */
    if (!bdrv_is_read_only(s->bs) &&
        !bdrv_store_persistent_dirty_bitmaps(s->bs, &err)) {
        printf("flush failed: %s\n", err->message);
        return -EIO;
    }
    return 0;
}

static int io_length_f(IoState *s, int argc, char **argv)
{
    int64_t size = bdrv_getlength(s->bs);
    char s1[64];

    if (size < 0) {
        printf("getlength: %s\n", g_strerror((int)-size));
        return (int)size;
    }
    io_cvtstr((double)size, s1, sizeof(s1));
    printf("%s\n", s1);
    return 0;
}

/* Where QEMU would put the VM state of a qcow2 image (after the L1 span). */
static int64_t io_vm_state_offset(BlockDriverState *bs, uint32_t cluster,
                                  JsonObject *data)
{
    int64_t size = bdrv_getlength(bs);
    bool ext = data && json_object_get_boolean_member_with_default(
        data, "extended-l2", false);
    int64_t span;

    if (!bdrv_is_format(bs, "qcow2") || !cluster || size < 0) {
        return 0;
    }
    span = (int64_t)cluster * (cluster / (ext ? 16 : 8));
    return (size + span - 1) / span * span;
}

static int io_info_f(IoState *s, int argc, char **argv)
{
    BlockDriverInfo bdi;
    g_autoptr(JsonNode) spec = bdrv_get_specific_info(s->bs, NULL);
    JsonObject *data = NULL;
    char s1[64], s2[64];

    printf("format name: %s\n", bdrv_get_format_name(s->bs));
    if (bdrv_get_info(s->bs, &bdi) < 0) {
        memset(&bdi, 0, sizeof(bdi));
    }
    if (spec && JSON_NODE_HOLDS_OBJECT(spec)) {
        JsonNode *d = json_object_get_member(json_node_get_object(spec),
                                             "data");
        data = d && JSON_NODE_HOLDS_OBJECT(d) ? json_node_get_object(d)
                                              : NULL;
    }
    io_cvtstr(bdi.cluster_size, s1, sizeof(s1));
    io_cvtstr((double)io_vm_state_offset(s->bs, bdi.cluster_size, data),
              s2, sizeof(s2));
    printf("cluster size: %s\n", s1);
    printf("vm state offset: %s\n", s2);
    if (data) {
        printf("Format specific information:\n");
        img_dump_human(data, 1);
    }
    return 0;
}

/* Top-layer allocation of the run at @offset (pnum > 0 unless EOF). */
static int io_is_allocated(IoState *s, int64_t offset, int64_t bytes,
                           int64_t *pnum)
{
    int ret = bdrv_block_status(s->bs, offset, bytes, pnum, NULL, NULL);

    if (ret < 0) {
        return ret;
    }
    return !!(ret & BDRV_BLOCK_ALLOCATED);
}

static int io_alloc_f(IoState *s, int argc, char **argv)
{
    int64_t offset, start, count = 512, remaining, sum = 0;
    char s1[64];

    start = offset = io_cvtnum(argv[1]);
    if (offset < 0) {
        io_print_cvtnum_err(offset, argv[1]);
        return (int)offset;
    }
    if (argc == 3) {
        count = io_cvtnum(argv[2]);
        if (count < 0) {
            io_print_cvtnum_err(count, argv[2]);
            return (int)count;
        }
    }
    remaining = count;
    while (remaining) {
        int64_t num = 0;
        int ret = io_is_allocated(s, offset, remaining, &num);

        if (ret < 0) {
            printf("is_allocated failed: %s\n", g_strerror(-ret));
            return ret;
        }
        offset += num;
        remaining -= num;
        sum += ret ? num : 0;
        if (num == 0) {
            count -= remaining;
            remaining = 0;
        }
    }
    io_cvtstr((double)start, s1, sizeof(s1));
    printf("%" PRId64 "/%" PRId64 " bytes allocated at offset %s\n", sum,
           count, s1);
    return 0;
}

/* Like io_is_allocated() but merges following runs of the same kind. */
static int io_map_run(IoState *s, int64_t offset, int64_t bytes,
                      int64_t *pnum)
{
    int64_t num;
    int first = io_is_allocated(s, offset, bytes, &num);

    *pnum = 0;
    while (first >= 0 && num > 0) {
        int next;

        *pnum += num;
        offset += num;
        bytes -= num;
        if (!bytes) {
            break;
        }
        next = io_is_allocated(s, offset, bytes, &num);
        if (next != first) {
            break;
        }
    }
    return first;
}

static int io_map_f(IoState *s, int argc, char **argv)
{
    int64_t offset = 0, bytes = bdrv_getlength(s->bs);

    if (bytes < 0) {
        error_report("Failed to query image length: %s",
                     g_strerror((int)-bytes));
        return (int)bytes;
    }
    while (bytes) {
        char s1[64], s2[64];
        int64_t num;
        int ret = io_map_run(s, offset, bytes, &num);

        if (ret < 0) {
            error_report("Failed to get allocation status: %s",
                         g_strerror(-ret));
            return ret;
        } else if (!num) {
            error_report("Unexpected end of image");
            return -EIO;
        }
        io_cvtstr((double)num, s1, sizeof(s1));
        io_cvtstr((double)offset, s2, sizeof(s2));
        printf("%s (0x%" PRIx64 ") bytes %s at offset %s (0x%" PRIx64 ")\n",
               s1, (uint64_t)num, ret ? "    allocated" : "not allocated",
               s2, (uint64_t)offset);
        offset += num;
        bytes -= num;
    }
    return 0;
}

static int io_help_f(IoState *s, int argc, char **argv)
{
    const IoCmd *ct;

    if (argc == 1) {
        for (size_t i = 0; i < G_N_ELEMENTS(io_cmds); i++) {
            printf("%s %s -- %s\n", io_cmds[i].name, io_cmds[i].args,
                   io_cmds[i].oneline);
        }
        printf("\nUse 'help commandname' for extended help.\n");
        return 0;
    }
    ct = io_find_cmd(argv[1]);
    if (!ct) {
        printf("command %s not found\n", argv[1]);
        return -EINVAL;
    }
    printf("%s %s -- %s\n", ct->name, ct->args, ct->oneline);
    if (ct->help) {
        printf("\n%s\n", ct->help);
    }
    return 0;
}

static int io_dispatch(IoState *s, int argc, char **argv)
{
    const IoCmd *ct = io_find_cmd(argv[0]);
    int nargs = argc - 1;

    if (!ct) {
        fprintf(stderr, "command \"%s\" not found\n", argv[0]);
        return -EINVAL;
    }
    if (ct->needs_file && !s->bs) {
        fprintf(stderr, "no file open, try 'help open'\n");
        return -EINVAL;
    }
    if (ct->needs_write && bdrv_is_read_only(s->bs)) {
        error_report("Block node is read-only");
        return -EPERM;
    }
    if (nargs < ct->argmin || (ct->argmax != -1 && nargs > ct->argmax)) {
        if (ct->argmax == -1) {
            fprintf(stderr, "bad argument count %d to %s, expected at least "
                    "%d arguments\n", nargs, argv[0], ct->argmin);
        } else if (ct->argmin == ct->argmax) {
            fprintf(stderr, "bad argument count %d to %s, expected %d "
                    "arguments\n", nargs, argv[0], ct->argmin);
        } else {
            fprintf(stderr, "bad argument count %d to %s, expected between "
                    "%d and %d arguments\n", nargs, argv[0], ct->argmin,
                    ct->argmax);
        }
        return -EINVAL;
    }
    optind = 0;
    return ct->func(s, argc, argv);
}

int io_run_line(IoState *s, const char *line)
{
    g_autoptr(GPtrArray) args = g_ptr_array_new();
    g_auto(GStrv) parts = g_strsplit(line, " ", -1);
    int ret;

    for (char **p = parts; *p; p++) {
        g_strchomp(*p);
        if (**p) {
            g_ptr_array_add(args, *p);
        }
    }
    if (!args->len) {
        return 0;
    }
    g_ptr_array_add(args, NULL);
    ret = io_dispatch(s, (int)args->len - 1, (char **)args->pdata);
    fflush(stdout);
    return ret;
}
