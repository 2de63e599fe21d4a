/*
 * qemu-storage-daemon front-end: QEMU's command line (--chardev, --monitor,
 * --blockdev, --nbd-server, --export, --object, --pidfile, --daemonize,
 * -h, -V), the GLib main loop, and the clean shutdown path (SHUTDOWN
 * event, exit hooks, sockets and pid file removed).
 *
 * Options are processed in command-line order, like QEMU: a --monitor
 * must come after the --chardev it names.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <glib-unix.h>

#include "bp-config.h"
#include "block/block.h"
#include "block/blockdev.h"
#include "migration/migration.h"
#include "monitor/monitor.h"
#include "nbd/server.h"
#include "monitor/qmp-stream.h"
#include "qapi/error.h"
#include "util/keyval.h"
#include "qapi/qapi-validate.h"
#include "qapi/qobject-json.h"

#include "storage-daemon/qsd-chardev.h"

static GMainLoop *main_loop;
static char *pidfile_path;
static int pidfile_fd = -1;
static int daemon_pipe = -1;    /* write end towards the waiting parent */

enum {
    OPT_BLOCKDEV = 256,
    OPT_CHARDEV,
    OPT_DAEMONIZE,
    OPT_EXPORT,
    OPT_INCOMING,
    OPT_MONITOR,
    OPT_NBD_SERVER,
    OPT_OBJECT,
    OPT_PIDFILE,
};

static const struct option long_options[] = {
    { "blockdev", required_argument, NULL, OPT_BLOCKDEV },
    { "chardev", required_argument, NULL, OPT_CHARDEV },
    { "daemonize", no_argument, NULL, OPT_DAEMONIZE },
    { "export", required_argument, NULL, OPT_EXPORT },
    { "help", no_argument, NULL, 'h' },
    { "incoming", required_argument, NULL, OPT_INCOMING },
    { "monitor", required_argument, NULL, OPT_MONITOR },
    { "nbd-server", required_argument, NULL, OPT_NBD_SERVER },
    { "object", required_argument, NULL, OPT_OBJECT },
    { "pidfile", required_argument, NULL, OPT_PIDFILE },
    { "trace", required_argument, NULL, 'T' },
    { "version", no_argument, NULL, 'V' },
    { NULL, 0, NULL, 0 },
};

static void help(void)
{
    printf(
"Usage: qemu-storage-daemon [options]\n"
"Serve block devices and QMP monitors without a virtual machine\n"
"(blockpoint implementation).\n"
"\n"
"  -h, --help             print this help and exit\n"
"  -V, --version          print the version and exit\n"
"\n"
"  --blockdev [driver=]<driver>[,node-name=<N>][,<option>=<value>...]\n"
"  --blockdev <JSON object>\n"
"                         add a block node (same options as blockdev-add)\n"
"\n"
"  --chardev socket,id=<id>,path=<path>,server=on,wait=off\n"
"                         listen on a Unix socket; only server sockets\n"
"                         that do not wait for a client are supported\n"
"\n"
"  --monitor [chardev=]<id>[,mode=control][,pretty=on|off]\n"
"                         serve QMP on the character device <id>;\n"
"                         several monitors may be given\n"
"\n"
"  --nbd-server addr.type=unix,addr.path=<path>[,max-connections=<n>]\n"
"  --nbd-server addr.type=inet,addr.host=<host>,addr.port=<port>[,...]\n"
"                         start the NBD server (as nbd-server-start)\n"
"  --export [type=]nbd,id=<id>,node-name=<node>[,name=<name>]\n"
"           [,writable=on|off][,bitmaps.0=<name>...]\n"
"           [,checkpoints.0=<name>...][,allocation-depth=on|off]\n"
"                         export a node over NBD (as block-export-add)\n"
"\n"
"  --incoming tcp:<host>:<port> | unix:<path> | defer\n"
"                         wait for a migration from another storage\n"
"                         daemon; nodes are inactive until it completes\n"
"                         (with defer: start it with migrate-incoming)\n"
"\n"
"  --object <type>,id=<id>[,<property>=<value>...]\n"
"                         add an object (not supported yet)\n"
"\n"
"  --daemonize            run in the background; the parent exits once\n"
"                         start-up has finished\n"
"  --pidfile <path>       write the process ID to <path>; removed on exit\n"
"\n"
"SIGINT, SIGTERM and the QMP command quit shut down cleanly.\n");
}

static void version(void)
{
    printf("qemu-storage-daemon version %s (blockpoint %s)\n"
           "Copyright (c) the blockpoint developers\n",
           BP_QEMU_VERSION, BP_VERSION);
}

/*
 * --blockdev: the same BlockdevOptions as blockdev-add, in JSON or in
 * QEMU's dotted-key form (whose strings are converted to the schema's
 * types first).
 */
static bool process_blockdev_option(const char *arg, GError **errp)
{
    g_autoptr(JsonNode) node = NULL;
    QapiValidateFlags flags = QAPI_VALIDATE_DEFAULT;

    if (arg[0] == '{') {
        node = qmp_json_parse(arg, strlen(arg), errp);
        if (!node) {
            return false;
        }
        if (!JSON_NODE_HOLDS_OBJECT(node)) {
            error_setg(errp, "--blockdev JSON must be an object");
            return false;
        }
    } else {
        g_autoptr(JsonObject) opts = keyval_parse(arg, "driver", errp);
        if (!opts) {
            return false;
        }
        node = json_node_init_object(json_node_alloc(), opts);
        flags = QAPI_VALIDATE_COERCE_STRINGS;
    }
    if (!qapi_validate(qapi_schema_builtin(), "BlockdevOptions", node, NULL,
                       flags, errp)) {
        return false;
    }
    return blockdev_add(json_node_get_object(node), errp) != NULL;
}

static bool process_monitor_option(const char *arg, GError **errp)
{
    g_autoptr(JsonObject) opts = keyval_parse(arg, "chardev", errp);
    const char *id, *mode, *pretty;
    JsonObjectIter iter;
    const char *key;
    JsonNode *val;
    bool pretty_on = false;
    const QsdChardev *chr;

    if (!opts) {
        return false;
    }
    json_object_iter_init(&iter, opts);
    while (json_object_iter_next(&iter, &key, &val)) {
        if (strcmp(key, "chardev") && strcmp(key, "mode") &&
            strcmp(key, "pretty") && strcmp(key, "id")) {
            error_setg(errp, "Invalid parameter '%s'", key);
            return false;
        }
        if (!JSON_NODE_HOLDS_VALUE(val)) {
            error_setg(errp, "Invalid parameter '%s'", key);
            return false;
        }
    }
    id = qobj_get_str(opts, "chardev", NULL);
    mode = qobj_get_str(opts, "mode", "control");
    pretty = qobj_get_str(opts, "pretty", "off");
    if (!id) {
        error_setg(errp, "Parameter 'chardev' is missing");
        return false;
    }
    if (strcmp(mode, "control")) {
        error_setg(errp, "Only QMP is supported");
        return false;
    }
    if (!strcmp(pretty, "on")) {
        pretty_on = true;
    } else if (strcmp(pretty, "off")) {
        error_setg(errp, "Parameter 'pretty' expects 'on' or 'off'");
        return false;
    }
    chr = qsd_chardev_find(id);
    if (!chr) {
        error_setg(errp, "chardev \"%s\" not found", id);
        return false;
    }
    if (monitor_has_listener(id)) {
        error_setg(errp, "chardev \"%s\" is already in use", id);
        return false;
    }
    return monitor_add_unix_listener(id, chr->path, pretty_on, errp);
}

static bool process_option(int opt, const char *arg, GError **errp)
{
    switch (opt) {
    case OPT_BLOCKDEV:
        return process_blockdev_option(arg, errp);
    case OPT_CHARDEV:
        return qsd_chardev_add(arg, errp);
    case OPT_MONITOR:
        return process_monitor_option(arg, errp);
    case OPT_NBD_SERVER:
        return nbd_cmdline_nbd_server(arg, errp);
    case OPT_EXPORT:
        return nbd_cmdline_export(arg, errp);
    case OPT_OBJECT:
        error_setg(errp, "--object is not supported yet");
        return false;
    case 'T':
        error_setg(errp, "tracing is not supported");
        return false;
    default:
        return true;
    }
}

/* --- pid file and daemonizing ------------------------------------------ */

static bool write_pidfile(const char *path, GError **errp)
{
    g_autofree char *text = g_strdup_printf("%d\n", (int)getpid());
    int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);

    if (fd < 0) {
        error_setg_errno(errp, errno, "Cannot open pid file %s", path);
        return false;
    }
    if (lockf(fd, F_TLOCK, 0) < 0) {
        error_setg_errno(errp, errno, "Cannot lock pid file %s", path);
        close(fd);
        return false;
    }
    if (ftruncate(fd, 0) < 0 ||
        write(fd, text, strlen(text)) != (ssize_t)strlen(text)) {
        error_setg_errno(errp, errno, "Failed to write pid file %s", path);
        close(fd);
        return false;
    }
    pidfile_fd = fd;
    pidfile_path = g_canonicalize_filename(path, NULL);
    return true;
}

static void remove_pidfile(void)
{
    if (pidfile_path) {
        unlink(pidfile_path);
        close(pidfile_fd);
        g_clear_pointer(&pidfile_path, g_free);
    }
}

/*
 * Fork into the background.  The original process waits until the daemon
 * reports that start-up finished (exit 0) or failed (exit 1).
 */
static void daemonize_start(void)
{
    int fds[2];
    pid_t pid;

    if (pipe2(fds, O_CLOEXEC) < 0) {
        error_report("cannot daemonize: %s", g_strerror(errno));
        exit(EXIT_FAILURE);
    }
    pid = fork();
    if (pid < 0) {
        error_report("cannot daemonize: %s", g_strerror(errno));
        exit(EXIT_FAILURE);
    }
    if (pid > 0) {
        char status = 1;

        close(fds[1]);
        while (read(fds[0], &status, 1) < 0 && errno == EINTR) {
            /* retry */
        }
        _exit(status == 0 ? EXIT_SUCCESS : EXIT_FAILURE);
    }
    close(fds[0]);
    setsid();
    pid = fork();
    if (pid < 0) {
        _exit(EXIT_FAILURE);
    }
    if (pid > 0) {
        _exit(EXIT_SUCCESS);   /* the grandchild carries the pipe on */
    }
    daemon_pipe = fds[1];
}

static void daemonize_finish(void)
{
    char ok = 0;
    int null;

    if (daemon_pipe < 0) {
        return;
    }
    if (chdir("/") < 0) {
        /* Not fatal: paths in use were made absolute already. */
    }
    null = open("/dev/null", O_RDWR);
    if (null >= 0) {
        dup2(null, STDIN_FILENO);
        dup2(null, STDOUT_FILENO);
        dup2(null, STDERR_FILENO);
        close(null);
    }
    while (write(daemon_pipe, &ok, 1) < 0 && errno == EINTR) {
        /* retry */
    }
    close(daemon_pipe);
    daemon_pipe = -1;
}

/* --- main loop and shutdown -------------------------------------------- */

static void shutdown_notify(void *opaque)
{
    g_main_loop_quit(main_loop);
}

static gboolean on_signal(gpointer opaque)
{
    qemu_system_shutdown_request(SHUTDOWN_CAUSE_HOST_SIGNAL);
    return G_SOURCE_CONTINUE;
}

static void clean_shutdown(void)
{
    JsonObject *data = json_object_new();

    json_object_set_boolean_member(data, "guest", false);
    json_object_set_string_member(data, "reason",
        ShutdownCause_str[qemu_system_shutdown_cause()]);
    qmp_event_emit(QAPI_EVENT_SHUTDOWN, data);
    qemu_run_exit_hooks();
    /* Nodes close after the exit hooks (exports) release them. */
    blockdev_close_all();
    bdrv_close_all();
    monitor_cleanup();
    qsd_chardev_cleanup();
    remove_pidfile();
}

static void fail(const char *opt, const char *arg, GError *err)
{
    if (opt) {
        error_report("%s %s: %s", opt, arg, err->message);
    } else {
        error_report("%s", err->message);
    }
    g_error_free(err);
    blockdev_close_all();
    monitor_cleanup();
    remove_pidfile();
    exit(EXIT_FAILURE);
}

static const char *option_name(int opt)
{
    for (const struct option *o = long_options; o->name; o++) {
        if (o->val == opt) {
            return o->name;
        }
    }
    return "?";
}

int main(int argc, char **argv)
{
    GError *err = NULL;
    bool daemonize = false;
    const char *pidfile = NULL;
    const char *incoming = NULL;
    int opt;

    error_set_progname("qemu-storage-daemon");
    signal(SIGPIPE, SIG_IGN);

    /* First pass: options that act at once or before anything else. */
    opterr = 0;
    while ((opt = getopt_long(argc, argv, "+:hT:V", long_options,
                              NULL)) != -1) {
        switch (opt) {
        case 'h':
            help();
            return EXIT_SUCCESS;
        case 'V':
            version();
            return EXIT_SUCCESS;
        case OPT_DAEMONIZE:
            daemonize = true;
            break;
        case OPT_PIDFILE:
            pidfile = optarg;
            break;
        case OPT_INCOMING:
            incoming = optarg;
            break;
        case ':':
            error_report("option '%s' requires an argument",
                         argv[optind - 1]);
            return EXIT_FAILURE;
        case '?':
            error_report("unrecognized option '%s'", argv[optind - 1]);
            return EXIT_FAILURE;
        default:
            break;
        }
    }
    if (optind < argc) {
        error_report("%s: Unexpected argument", argv[optind]);
        return EXIT_FAILURE;
    }

    if (daemonize) {
        daemonize_start();
    }
    main_loop = g_main_loop_new(NULL, FALSE);
    qemu_system_set_shutdown_notifier(shutdown_notify, NULL);
    /* After the fork: GLib's signal handling must live in the daemon. */
    g_unix_signal_add(SIGTERM, on_signal, NULL);
    g_unix_signal_add(SIGINT, on_signal, NULL);
    g_unix_signal_add(SIGHUP, on_signal, NULL);

    /* Before any node opens: they open inactive while incoming. */
    if (incoming && !migration_cmdline_incoming(incoming, &err)) {
        fail("--incoming", incoming, err);
    }

    /* Second pass: everything else, in command-line order. */
    optind = 0;
    while ((opt = getopt_long(argc, argv, "+:hT:V", long_options,
                              NULL)) != -1) {
        if (!process_option(opt, optarg, &err)) {
            g_autofree char *name =
                g_strdup_printf("--%s", option_name(opt));

            fail(name, optarg, err);
        }
    }
    if (pidfile && !write_pidfile(pidfile, &err)) {
        fail(NULL, NULL, err);
    }

    daemonize_finish();

    if (qemu_system_shutdown_cause() == SHUTDOWN_CAUSE_NONE) {
        g_main_loop_run(main_loop);
    }
    clean_shutdown();
    g_main_loop_unref(main_loop);
    return EXIT_SUCCESS;
}
