/*
 * qemu-io: open one image and run I/O commands on it, from -c arguments
 * or interactively from standard input.  The exit status is 1 when the
 * image cannot be opened or any command failed, 0 otherwise.
 */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "bp-config.h"
#include "qapi/error.h"
#include "util/options.h"
#include "io-cmds.h"

static void io_usage_main(FILE *f)
{
    fprintf(f,
"Usage: qemu-io [OPTIONS]... [-c STRING]... [file]\n"
"Run block-layer I/O commands on a disk image.\n"
"\n"
"  --object OBJDEF      accepted for compatibility ('secret' only)\n"
"  --image-opts         FILE is an option string (driver=...,...)\n"
"  -c, --cmd STRING     run this command (repeatable, in order)\n"
"  -f, --format FMT     image format (default: probe the file)\n"
"  -r, --read-only      open the image read-only\n"
"  -n, --nocache        bypass the host page cache (same as -t none)\n"
"  -t, --cache=MODE     none, writeback, writethrough, directsync, unsafe\n"
"  -d, --discard=MODE   ignore/off or unmap/on\n"
"  -U, --force-share    do not take the image lock (read-only use)\n"
"  -i, --aio=MODE       accepted for compatibility (threads, native,\n"
"                       io_uring)\n"
"  -k, -m, -C, -T       accepted for compatibility, no effect\n"
"  -h, --help           print this help and exit\n"
"  -V, --version        print the version and exit\n"
"\n"
"Without -c, commands are read from standard input.\n"
"Run 'qemu-io -c help' for the list of commands.\n");
}

typedef struct {
    GPtrArray *cmds;
    const char *fmt;
    const char *discard;
    bool image_opts;
    bool writethrough;
    int flags;
} IoArgs;

/* Handle one option; returns -1 to go on, else the exit status. */
static int io_option(IoArgs *a, int c)
{
    switch (c) {
    case 'c':
        g_ptr_array_add(a->cmds, optarg);
        break;
    case 'f':
        a->fmt = optarg;
        break;
    case 'r':
        a->flags &= ~BDRV_O_RDWR;
        break;
    case 'n':
        a->flags |= BDRV_O_NOCACHE;
        break;
    case 't':
        if (!io_parse_cache(optarg, &a->flags, &a->writethrough)) {
            error_report("Invalid cache option: %s", optarg);
            return 1;
        }
        break;
    case 'd':
        a->discard = optarg;
        break;
    case 'U':
        a->flags |= BDRV_O_FORCE_SHARE;
        break;
    case 'i':
        if (strcmp(optarg, "threads") && strcmp(optarg, "native") &&
            strcmp(optarg, "io_uring")) {
            error_report("Invalid aio option: %s", optarg);
            return 1;
        }
        break;
    case 's':
        error_report("snapshot mode (-s) is not supported");
        return 1;
    case 'k': case 'm': case 'C': case 'T': case 'O':
        break;
    case 'I':
        a->image_opts = true;
        break;
    case 'h':
        io_usage_main(stdout);
        return 0;
    case 'V':
        printf("qemu-io version " BP_QEMU_VERSION " (blockpoint " BP_VERSION
               ")\nCopyright (c) the blockpoint developers\n");
        return 0;
    default:
        io_usage_main(stderr);
        return 1;
    }
    return -1;
}

/* Commands from standard input, one per line, until EOF or quit. */
static int io_interactive(IoState *s)
{
    char line[4096];
    int failed = 0;

    for (;;) {
        printf("qemu-io> ");
        fflush(stdout);
        if (!fgets(line, sizeof(line), stdin)) {
            break;
        }
        line[strcspn(line, "\n")] = '\0';
        if (io_run_line(s, line) < 0) {
            failed = 1;
        }
        if (s->quit) {
            break;
        }
    }
    return failed;
}

int main(int argc, char **argv)
{
    static const struct option long_opts[] = {
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, 'V' },
        { "cmd", required_argument, NULL, 'c' },
        { "format", required_argument, NULL, 'f' },
        { "read-only", no_argument, NULL, 'r' },
        { "snapshot", no_argument, NULL, 's' },
        { "nocache", no_argument, NULL, 'n' },
        { "copy-on-read", no_argument, NULL, 'C' },
        { "misalign", no_argument, NULL, 'm' },
        { "native-aio", no_argument, NULL, 'k' },
        { "discard", required_argument, NULL, 'd' },
        { "cache", required_argument, NULL, 't' },
        { "trace", required_argument, NULL, 'T' },
        { "object", required_argument, NULL, 'O' },
        { "image-opts", no_argument, NULL, 'I' },
        { "force-share", no_argument, NULL, 'U' },
        { "aio", required_argument, NULL, 'i' },
        { NULL, 0, NULL, 0 },
    };
    g_autoptr(GPtrArray) cmds = g_ptr_array_new();
    g_autoptr(JsonObject) extra = json_object_new();
    IoArgs a = { .cmds = cmds, .flags = BDRV_O_RDWR };
    IoState s = { 0 };
    int c, r, failed = 0;

    error_set_progname("qemu-io");
    while ((c = getopt_long(argc, argv, "hVc:f:rsnCmkd:t:T:Ui:",
                            long_opts, NULL)) != -1) {
        r = io_option(&a, c);
        if (r >= 0) {
            return r;
        }
    }
    if (optind < argc - 1) {
        io_usage_main(stderr);
        return 1;
    }
    if (a.image_opts && a.fmt) {
        error_report("--image-opts and -f are mutually exclusive");
        return 1;
    }
    if (a.discard) {
        json_object_set_string_member(extra, "discard", a.discard);
    }
    if (optind < argc &&
        !io_open_image(&s, argv[optind], a.fmt, a.image_opts, a.flags,
                       extra)) {
        return 1;
    }
    s.write_flags = a.writethrough ? BDRV_REQ_FUA : 0;
    if (!cmds->len) {
        failed = io_interactive(&s);
    }
    for (guint i = 0; i < cmds->len && !s.quit; i++) {
        if (io_run_line(&s, cmds->pdata[i]) < 0) {
            failed = 1;
        }
    }
    g_clear_pointer(&s.bs, bdrv_unref);
    return failed;
}
