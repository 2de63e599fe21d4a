/*
 * qemu-nbd: serve one image over NBD, with QEMU's qemu-nbd command line.
 * A thin front-end: it opens the image, starts the shared NBD server
 * (nbd/) on a TCP port or a Unix socket, publishes one export and runs the
 * main loop until a signal, or until its last client leaves (without -t).
 * See docs/man/qemu-nbd.1.md.
 */
#include "block/block.h"
#include "nbd/server.h"
#include "qapi/error.h"
#include "util/cutils.h"
#include "util/options.h"
#include "bp-config.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <glib-unix.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct {
    const char *format;
    const char *export_name;
    const char *description;
    const char *socket_path;
    const char *port;
    const char *bind;
    const char *cache;
    const char *discard;
    const char *pid_file;
    GPtrArray *bitmaps;
    uint32_t shared;
    bool read_only;
    bool persistent;
    bool allocation_depth;
    bool image_opts;
    bool fork;
    bool verbose;
    const char *filename;
} NbdOpts;

static GMainLoop *loop;
static bool persistent;

enum {
    OPT_CACHE = 256,
    OPT_DISCARD,
    OPT_DETECT_ZEROES,
    OPT_AIO,
    OPT_FORK,
    OPT_PID_FILE,
    OPT_IMAGE_OPTS,
    OPT_OBJECT,
    OPT_TLSCREDS,
    OPT_TLSAUTHZ,
};

static void usage(void)
{
    printf(
"Usage: qemu-nbd [OPTIONS] FILE\n"
"Serve the disk image FILE over the Network Block Device protocol.\n"
"\n"
"  -h, --help                print this help and exit\n"
"  -V, --version             print the version and exit\n"
"\n"
"Where to listen:\n"
"  -p, --port=PORT           TCP port (default 10809)\n"
"  -b, --bind=ADDR           address to bind (default 0.0.0.0)\n"
"  -k, --socket=PATH         listen on this Unix socket instead of TCP\n"
"  -e, --shared=NUM          at most NUM clients at once (default 1,\n"
"                            0 for no limit)\n"
"  -t, --persistent          keep serving after the last client left\n"
"  -x, --export-name=NAME    name of the export (default: empty)\n"
"  -D, --description=TEXT    description shown to clients\n"
"  -v, --verbose             report more\n"
"\n"
"What to serve:\n"
"  -A, --allocation-depth    offer the qemu:allocation-depth context\n"
"  -B, --bitmap=NAME         offer the dirty bitmap NAME as\n"
"                            qemu:dirty-bitmap:NAME (may be repeated)\n"
"\n"
"Process:\n"
"  --fork                    run in the background once listening\n"
"  --pid-file=PATH           write the server's process id to PATH\n"
"\n"
"Image:\n"
"  -f, --format=FORMAT       image format (raw, qcow2); probed if absent\n"
"  -r, --read-only           serve read-only\n"
"  -n, --nocache             same as --cache=none\n"
"      --cache=MODE          none, writeback (default), writethrough,\n"
"                            directsync or unsafe\n"
"      --discard=MODE        ignore (default) or unmap\n"
"      --detect-zeroes=MODE  accepted for compatibility (off, on, unmap)\n"
"      --aio=MODE            accepted for compatibility\n"
"      --image-opts          FILE is a list of block options\n");
}

static bool parse_args(int argc, char **argv, NbdOpts *o, GError **errp)
{
    static const struct option longopts[] = {
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, 'V' },
        { "port", required_argument, NULL, 'p' },
        { "bind", required_argument, NULL, 'b' },
        { "socket", required_argument, NULL, 'k' },
        { "shared", required_argument, NULL, 'e' },
        { "persistent", no_argument, NULL, 't' },
        { "export-name", required_argument, NULL, 'x' },
        { "description", required_argument, NULL, 'D' },
        { "verbose", no_argument, NULL, 'v' },
        { "allocation-depth", no_argument, NULL, 'A' },
        { "bitmap", required_argument, NULL, 'B' },
        { "format", required_argument, NULL, 'f' },
        { "read-only", no_argument, NULL, 'r' },
        { "nocache", no_argument, NULL, 'n' },
        { "cache", required_argument, NULL, OPT_CACHE },
        { "discard", required_argument, NULL, OPT_DISCARD },
        { "detect-zeroes", required_argument, NULL, OPT_DETECT_ZEROES },
        { "aio", required_argument, NULL, OPT_AIO },
        { "fork", no_argument, NULL, OPT_FORK },
        { "pid-file", required_argument, NULL, OPT_PID_FILE },
        { "image-opts", no_argument, NULL, OPT_IMAGE_OPTS },
        { "object", required_argument, NULL, OPT_OBJECT },
        { "tls-creds", required_argument, NULL, OPT_TLSCREDS },
        { "tls-authz", required_argument, NULL, OPT_TLSAUTHZ },
        { NULL, 0, NULL, 0 },
    };
    int c;

    while ((c = getopt_long(argc, argv, "hVp:b:k:e:tx:D:vAB:f:rnT:o:c:dLsl:",
                            longopts, NULL)) != -1) {
        switch (c) {
        case 'h':
            usage();
            exit(EXIT_SUCCESS);
        case 'V':
            printf("qemu-nbd version %s (blockpoint %s)\n", BP_QEMU_VERSION,
                   BP_VERSION);
            exit(EXIT_SUCCESS);
        case 'p':
            o->port = optarg;
            break;
        case 'b':
            o->bind = optarg;
            break;
        case 'k':
            o->socket_path = optarg;
            break;
        case 'e': {
            uint64_t n;
            if (!parse_uint64(optarg, &n, NULL) || n > UINT32_MAX) {
                error_setg(errp, "Invalid shared device number '%s'",
                           optarg);
                return false;
            }
            o->shared = (uint32_t)n;
            break;
        }
        case 't':
            o->persistent = true;
            break;
        case 'x':
            o->export_name = optarg;
            break;
        case 'D':
            o->description = optarg;
            break;
        case 'v':
            o->verbose = true;
            break;
        case 'A':
            o->allocation_depth = true;
            break;
        case 'B':
            g_ptr_array_add(o->bitmaps, optarg);
            break;
        case 'f':
            o->format = optarg;
            break;
        case 'r':
            o->read_only = true;
            break;
        case 'n':
            o->cache = "none";
            break;
        case OPT_CACHE:
            o->cache = optarg;
            break;
        case OPT_DISCARD:
            o->discard = optarg;
            break;
        case OPT_DETECT_ZEROES:
        case OPT_AIO:
        case 'T':
            break;
        case OPT_FORK:
            o->fork = true;
            break;
        case OPT_PID_FILE:
            o->pid_file = optarg;
            break;
        case OPT_IMAGE_OPTS:
            o->image_opts = true;
            break;
        case OPT_OBJECT:
        case OPT_TLSCREDS:
        case OPT_TLSAUTHZ:
            error_setg(errp, "option '%s' is not supported", argv[optind - 1]);
            return false;
        case 'o':
        case 'c':
        case 'd':
        case 'L':
        case 's':
        case 'l':
            error_setg(errp, "option '-%c' is not supported", c);
            return false;
        default:
            error_setg(errp, "Try 'qemu-nbd --help' for more information");
            return false;
        }
    }
    if (optind != argc - 1) {
        error_setg(errp, "Invalid number of arguments");
        error_append_hint(errp, "Try 'qemu-nbd --help' for more information");
        return false;
    }
    o->filename = argv[optind];
    if (o->socket_path && (o->port || o->bind)) {
        error_setg(errp, "-p and -b are incompatible with -k");
        return false;
    }
    return true;
}

/* --cache MODE -> cache.direct / cache.no-flush / writethrough. */
static bool apply_cache_mode(const char *mode, JsonObject *opts,
                             bool *writethrough, GError **errp)
{
    bool direct = false, no_flush = false;

    *writethrough = false;
    if (!mode || !strcmp(mode, "writeback")) {
        /* the default */
    } else if (!strcmp(mode, "none") || !strcmp(mode, "off")) {
        direct = true;
    } else if (!strcmp(mode, "writethrough")) {
        *writethrough = true;
    } else if (!strcmp(mode, "directsync")) {
        direct = true;
        *writethrough = true;
    } else if (!strcmp(mode, "unsafe")) {
        no_flush = true;
    } else {
        error_setg(errp, "Invalid cache mode '%s'", mode);
        return false;
    }
    if (direct || no_flush) {
        JsonObject *cache = json_object_new();
        json_object_set_boolean_member(cache, "direct", direct);
        json_object_set_boolean_member(cache, "no-flush", no_flush);
        json_object_set_object_member(opts, "cache", cache);
    }
    return true;
}

static BlockDriverState *open_image(const NbdOpts *o, bool *writethrough,
                                    GError **errp)
{
    g_autoptr(JsonObject) opts = NULL;
    const char *filename = o->filename;
    int flags = o->read_only ? 0 : BDRV_O_RDWR;

    if (o->image_opts) {
        if (o->format) {
            error_setg(errp, "--image-opts and --format are mutually "
                       "exclusive");
            return NULL;
        }
        opts = keyval_parse(o->filename, NULL, errp);
        if (!opts) {
            return NULL;
        }
        filename = NULL;
    } else {
        opts = json_object_new();
        if (o->format) {
            json_object_set_string_member(opts, "driver", o->format);
        }
    }
    if (!apply_cache_mode(o->cache, opts, writethrough, errp)) {
        return NULL;
    }
    return bdrv_open(filename, opts, flags, errp);
}

static gboolean on_signal(gpointer opaque)
{
    g_main_loop_quit(loop);
    return G_SOURCE_CONTINUE;
}

static void on_client_gone(bool negotiated, void *opaque)
{
    if (negotiated && !persistent && nbd_server_client_count() == 0) {
        g_main_loop_quit(loop);
    }
}

static bool write_pid_file(const char *path, GError **errp)
{
    g_autofree char *text = g_strdup_printf("%d\n", (int)getpid());
    GError *err = NULL;

    if (!g_file_set_contents(path, text, -1, &err)) {
        error_setg(errp, "Failed to write pid file '%s': %s", path,
                   err->message);
        g_error_free(err);
        return false;
    }
    return true;
}

/*
 * --fork: the parent waits until the child reports it is listening (one
 * byte on a pipe) and exits with success; if the child fails first, the
 * parent sees EOF and fails.  Done before any thread exists.
 */
static int fork_server(void)
{
    int fds[2];
    pid_t pid;
    char c;

    if (pipe(fds) < 0) {
        error_report("Failed to create a pipe: %s", g_strerror(errno));
        exit(EXIT_FAILURE);
    }
    pid = fork();
    if (pid < 0) {
        error_report("Failed to fork: %s", g_strerror(errno));
        exit(EXIT_FAILURE);
    }
    if (pid > 0) {
        ssize_t n;
        close(fds[1]);
        do {
            n = read(fds[0], &c, 1);
        } while (n < 0 && errno == EINTR);
        _exit(n == 1 ? EXIT_SUCCESS : EXIT_FAILURE);
    }
    close(fds[0]);
    setsid();
    return fds[1];
}

static void fork_ready(int fd)
{
    int null = open("/dev/null", O_RDWR);
    char c = 0;

    if (null >= 0) {
        dup2(null, STDIN_FILENO);
        dup2(null, STDOUT_FILENO);
        dup2(null, STDERR_FILENO);
        close(null);
    }
    if (write(fd, &c, 1) != 1) {
        /* The parent is gone; nothing to tell. */
    }
    close(fd);
}

static bool start(const NbdOpts *o, GError **errp)
{
    NbdServerConfig scfg = {
        .unix_path = o->socket_path,
        .host = o->bind ? o->bind : "0.0.0.0",
        .port = o->port ? o->port : "10809",
        .max_connections = o->shared,
    };
    g_autoptr(GPtrArray) bitmaps = g_ptr_array_copy(o->bitmaps, NULL, NULL);
    bool writethrough = false;
    g_autoptr(BlockDriverState) bs = open_image(o, &writethrough, errp);
    NbdExportConfig ecfg = {
        .name = o->export_name ? o->export_name : "",
        .description = o->description,
        .writable = !o->read_only,
        .allocation_depth = o->allocation_depth,
    };

    if (!bs) {
        return false;
    }
    ecfg.writethrough = writethrough;
    if (o->discard && strcmp(o->discard, "ignore") &&
        strcmp(o->discard, "off") && strcmp(o->discard, "unmap") &&
        strcmp(o->discard, "on")) {
        error_setg(errp, "Invalid discard option '%s'", o->discard);
        return false;
    }
    ecfg.discard_ignore = !o->discard || !strcmp(o->discard, "ignore") ||
                          !strcmp(o->discard, "off");
    g_ptr_array_add(bitmaps, NULL);
    ecfg.bitmaps = (const char *const *)bitmaps->pdata;
    ecfg.bs = bs;
    if (!nbd_export_new(&ecfg, errp)) {
        return false;
    }
    return nbd_server_start(&scfg, errp);
}

int main(int argc, char **argv)
{
    NbdOpts o = { .shared = 1 };
    g_autoptr(GError) err = NULL;
    int ready_fd = -1;
    bool ok;

    error_set_progname("qemu-nbd");
    o.bitmaps = g_ptr_array_new();
    if (!parse_args(argc, argv, &o, &err)) {
        error_report_err(g_steal_pointer(&err));
        return EXIT_FAILURE;
    }
    persistent = o.persistent;
    if (o.fork) {
        ready_fd = fork_server();
    }
    loop = g_main_loop_new(NULL, FALSE);
    g_unix_signal_add(SIGTERM, on_signal, NULL);
    g_unix_signal_add(SIGINT, on_signal, NULL);
    g_unix_signal_add(SIGHUP, on_signal, NULL);
    nbd_server_set_client_gone_hook(on_client_gone, NULL);

    ok = start(&o, &err) && (!o.pid_file || write_pid_file(o.pid_file, &err));
    if (!ok) {
        error_report_err(g_steal_pointer(&err));
        nbd_server_shutdown();
        bdrv_close_all();
        return EXIT_FAILURE;
    }
    if (ready_fd >= 0) {
        fork_ready(ready_fd);
    }
    g_main_loop_run(loop);

    nbd_server_shutdown();
    bdrv_close_all();
    if (o.pid_file) {
        unlink(o.pid_file);
    }
    g_main_loop_unref(loop);
    g_ptr_array_unref(o.bitmaps);
    return EXIT_SUCCESS;
}
