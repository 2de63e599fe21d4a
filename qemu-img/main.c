/*
 * qemu-img: the subcommand table, global options (--help, --version,
 * --trace) and the exit-code policy.
 *
 * Exit codes: 0 success; 1 usage error or failure; `check` adds 2
 * (corruptions), 3 (leaks only) and 63 (format cannot be checked);
 * `compare` uses 1 for "images differ" and 2 for errors.  Each handler
 * returns its exit code; main() only passes it on.
 *
 * Adding a subcommand (bitmap, checkpoint, ...): write
 * `int img_NAME(const ImgCmd *cmd, int argc, char **argv)` in its own
 * img-NAME.c, declare it in img-cmds.h and add a row below; the global
 * --help, `qemu-img NAME --help` and the man page list follow the table.
 */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "bp-config.h"
#include "qapi/error.h"
#include "img-cmds.h"
#include "img-common.h"

static const ImgCmd img_cmds[] = {
    {
        "bench", img_bench,
        "[-c COUNT] [-d DEPTH] [-f FMT | --image-opts] "
        "[--flush-interval=N] [-i AIO] [-n] [--no-drain] [-o OFFSET] "
        "[--pattern=BYTE] [-q] [-s BUFFER_SIZE] [-S STEP] [-t CACHE] [-w] "
        "[-U] FILE",
        "Time a series of reads (or writes with -w) issued with DEPTH "
        "requests in flight.",
        IMG_BENCH_HELP,
    },
    {
        "bitmap", img_bitmap,
        "(--merge SOURCE | --add | --remove | --clear | --enable | "
        "--disable)... [-b SOURCE_FILE [-F SOURCE_FMT]] [-g GRANULARITY] "
        "[--object OBJDEF] [--image-opts | -f FMT] FILE BITMAP, or "
        "--list [--output=human|json] [-U] FILE",
        "Change (or list) the persistent dirty bitmaps of an image.",
        IMG_BITMAP_HELP,
    },
    {
        "check", img_check,
        "[--object OBJDEF] [-f FMT | --image-opts] [-q] "
        "[--output=human|json] [-r leaks|all] [-T SRC_CACHE] [-U] FILE",
        "Check an image's metadata for consistency and optionally repair "
        "it.",
        IMG_CHECK_HELP,
    },
    {
        "checkpoint", img_checkpoint,
        "(-l [--output=human|json] | -c NAME [-g GRANULARITY] [-b BITMAP] "
        "| -d NAME | --diff NAME [--to NAME2] [--output=human|json]) "
        "[-U] [--object OBJDEF] [--image-opts | -f FMT] FILE",
        "List, create or remove the checkpoints of an image, or show what "
        "changed since one.",
        IMG_CHECKPOINT_HELP,
    },
    {
        "compare", img_compare,
        "[--object OBJDEF] [--image-opts] [-f FMT] [-F FMT] [-T SRC_CACHE] "
        "[-p] [-q] [-s] [-U] FILE1 FILE2",
        "Compare the guest-visible contents of two images.",
        IMG_COMPARE_HELP,
    },
    {
        "convert", img_convert,
        "[--object OBJDEF] [--image-opts] [--target-image-opts] "
        "[--target-is-zero] [--bitmaps [--skip-broken-bitmaps]] [-U] [-c] "
        "[-p] [-q] [-n] [-f FMT] [-t CACHE] "
        "[-T SRC_CACHE] [-O OUTPUT_FMT] [-B BACKING [-F BACKING_FMT]] "
        "[-o OPTIONS] [-S SPARSE_SIZE] [-m NUM] [-W] FILE OUTPUT_FILE",
        "Copy an image's contents into a new (or, with -n, existing) image.",
        IMG_CONVERT_HELP,
    },
    {
        "create", img_create,
        "[--object OBJDEF] [-q] [-f FMT] [-b BACKING [-F BACKING_FMT]] [-u] "
        "[-o OPTIONS] FILE [SIZE]",
        "Create a new image.",
        IMG_CREATE_HELP,
    },
    {
        "info", img_info,
        "[--object OBJDEF] [--image-opts] [-f FMT] [--output=human|json] "
        "[--backing-chain] [-U] FILE",
        "Describe an image: format, sizes, backing file and format-specific "
        "details.",
        IMG_INFO_HELP,
    },
    {
        "map", img_map,
        "[--object OBJDEF] [--image-opts] [-f FMT] [--start-offset=OFFSET] "
        "[--max-length=LEN] [--bitmap=NAME] [--output=human|json] [-U] FILE",
        "Show where the guest-visible data of an image lives.",
        IMG_MAP_HELP,
    },
    {
        "resize", img_resize,
        "[--object OBJDEF] [--image-opts] [-f FMT] "
        "[--preallocation=PREALLOC] [-q] [--shrink] FILE [+ | -]SIZE",
        "Change the virtual size of an image.",
        IMG_RESIZE_HELP,
    },
};

static const char *const img_known_formats[] = { "file", "qcow2", "raw" };

static void img_version(void)
{
    printf("%s version " BP_QEMU_VERSION " (blockpoint " BP_VERSION ")\n"
           "Copyright (c) the blockpoint developers\n",
           error_get_progname());
}

static void img_help(void)
{
    img_version();
    printf("usage: qemu-img [standard options] command [command options]\n"
           "QEMU-compatible disk image utility\n"
           "\n"
           "    '-h', '--help'       display this help and exit\n"
           "    '-V', '--version'    output version information and exit\n"
           "    '-T', '--trace'      accepted for compatibility (no tracing)"
           "\n\n"
           "Command syntax:\n");
    for (size_t i = 0; i < G_N_ELEMENTS(img_cmds); i++) {
        printf("  %s %s\n", img_cmds[i].name, img_cmds[i].synopsis);
    }
    printf("\n"
           "Run 'qemu-img COMMAND --help' for the options of one command.\n"
           "SIZE arguments take an optional suffix: k or K (KiB), M, G, T, "
           "P, E;\n"
           "'b' means bytes. CACHE is one of none, writeback, writethrough,"
           "\n"
           "directsync, unsafe. OPTIONS is a comma separated list of "
           "name=value\n"
           "pairs; '-o help' lists those of a format.\n"
           "\n"
           "Supported formats:");
    for (size_t i = 0; i < G_N_ELEMENTS(img_known_formats); i++) {
        if (bdrv_find_format(img_known_formats[i])) {
            printf(" %s", img_known_formats[i]);
        }
    }
    printf("\n");
}

static const ImgCmd *img_find_cmd(const char *name)
{
    for (size_t i = 0; i < G_N_ELEMENTS(img_cmds); i++) {
        if (!strcmp(img_cmds[i].name, name)) {
            return &img_cmds[i];
        }
    }
    return NULL;
}

/* True when argv (after the command name) asks for the command's help. */
static bool img_wants_help(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--")) {
            break;
        }
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            return true;
        }
    }
    return false;
}

int main(int argc, char **argv)
{
    static const struct option long_opts[] = {
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, 'V' },
        { "trace", required_argument, NULL, 'T' },
        { NULL, 0, NULL, 0 },
    };
    const ImgCmd *cmd;
    int c;

    error_set_progname("qemu-img");
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc < 2) {
        return img_usage_error("Not enough arguments");
    }
    opterr = 0;
    /* '+': stop at the command name; its options are its own. */
    while ((c = getopt_long(argc, argv, "+:hVT:", long_opts, NULL)) != -1) {
        switch (c) {
        case 'h':
            img_help();
            return 0;
        case 'V':
            img_version();
            return 0;
        case 'T':
            break;
        default:
            return img_bad_option(c, argv);
        }
    }
    if (optind >= argc) {
        return img_usage_error("Not enough arguments");
    }
    cmd = img_find_cmd(argv[optind]);
    if (!cmd) {
        return img_usage_error("Command not found: %s", argv[optind]);
    }
    argc -= optind;
    argv += optind;
    if (img_wants_help(argc, argv)) {
        return img_cmd_help(cmd);
    }
    optind = 0;     /* restart getopt for the command's own options */
    return cmd->handler(cmd, argc, argv);
}
