/*
 * qemu-img create, and the creation-option table it shares with convert.
 *
 * Each format lists its options in the order QEMU prints them on the
 * "Formatting" line; options with a default are always printed, the others
 * only when given.  Values are checked for their type here (so a typo
 * creates nothing and prints no "Formatting" line, as in QEMU); the driver
 * checks their meaning.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "qapi/error.h"
#include "img-cmds.h"
#include "img-create.h"
#include "img-size.h"

typedef enum {
    OPT_SIZE,
    OPT_STR,
    OPT_BOOL,
    OPT_NUM,
} ImgOptType;

typedef struct {
    const char *name;
    ImgOptType type;
    const char *def;        /* printed default, or NULL */
    const char *help;
} ImgOptDesc;

typedef struct {
    const char *fmt;
    const ImgOptDesc *opts;     /* print order, NULL-terminated */
} ImgFormatOpts;

static const ImgOptDesc raw_opts[] = {
    { "size", OPT_SIZE, NULL, "Virtual size of the image" },
    { "preallocation", OPT_STR, NULL,
      "How to allocate the data: off, falloc or full" },
    { NULL, 0, NULL, NULL },
};

static const ImgOptDesc qcow2_opts[] = {
    { "cluster_size", OPT_SIZE, "65536", "Allocation unit (512 to 2M)" },
    { "extended_l2", OPT_BOOL, "off",
      "Subcluster allocation (the driver supports off only)" },
    { "preallocation", OPT_STR, NULL,
      "What to allocate up front: off or metadata" },
    { "compression_type", OPT_STR, "zlib",
      "Algorithm for compressed clusters (zlib or zstd)" },
    { "size", OPT_SIZE, NULL, "Virtual size of the image" },
    { "compat", OPT_STR, NULL, "Version of the format: 0.10 (v2) or 1.1 "
      "(v3)" },
    { "backing_file", OPT_STR, NULL, "Image that provides unwritten data" },
    { "backing_fmt", OPT_STR, NULL, "Format of the backing file" },
    { "lazy_refcounts", OPT_BOOL, "off",
      "Defer refcount updates, mark the image dirty instead (on/off)" },
    { "refcount_bits", OPT_NUM, "16", "Bits per refcount entry (1 to 64)" },
    { NULL, 0, NULL, NULL },
};

static const ImgFormatOpts img_formats[] = {
    { "raw", raw_opts },
    { "file", raw_opts },
    { "qcow2", qcow2_opts },
};

struct ImgCreateOpts {
    const ImgFormatOpts *f;     /* NULL: unknown format */
    char *fmt;
    GHashTable *values;         /* name -> normalized text */
};

static const ImgFormatOpts *img_format_lookup(const char *fmt)
{
    for (size_t i = 0; i < G_N_ELEMENTS(img_formats); i++) {
        if (!strcmp(img_formats[i].fmt, fmt)) {
            return &img_formats[i];
        }
    }
    return NULL;
}

static const ImgOptDesc *img_opt_lookup(const ImgFormatOpts *f,
                                        const char *name)
{
    for (const ImgOptDesc *d = f ? f->opts : NULL; d && d->name; d++) {
        if (!strcmp(d->name, name)) {
            return d;
        }
    }
    return NULL;
}

bool img_create_has_opt(const char *fmt, const char *name)
{
    return img_opt_lookup(img_format_lookup(fmt), name) != NULL;
}

ImgCreateOpts *img_create_opts_new(const char *fmt)
{
    ImgCreateOpts *o = g_new0(ImgCreateOpts, 1);

    o->f = img_format_lookup(fmt);
    o->fmt = g_strdup(fmt);
    o->values = g_hash_table_new_full(g_str_hash, g_str_equal, g_free,
                                      g_free);
    return o;
}

void img_create_opts_free(ImgCreateOpts *o)
{
    if (o) {
        g_hash_table_unref(o->values);
        g_free(o->fmt);
        g_free(o);
    }
}

bool img_create_wants_help(const char *optstr)
{
    g_auto(GStrv) parts = g_strsplit(optstr, ",", -1);

    for (char **p = parts; *p; p++) {
        if (!strcmp(*p, "help") || !strcmp(*p, "?")) {
            return true;
        }
    }
    return false;
}

int img_create_print_help(const char *fmt)
{
    const ImgFormatOpts *f = img_format_lookup(fmt);

    if (!f) {
        error_report("Unknown file format '%s'", fmt);
        return IMG_EXIT_FAILURE;
    }
    printf("Supported %s options:\n", fmt);
    for (const ImgOptDesc *d = f->opts; d->name; d++) {
        static const char *const tn[] = {
            "size", "str", "bool (on/off)", "num",
        };
        g_autofree char *lhs = g_strdup_printf("%s=<%s>", d->name,
                                               tn[d->type]);
        printf("  %-22s - %s\n", lhs, d->help);
    }
    printf("\nThe protocol level may support further options.\n"
           "Specify the target filename to include those options.\n");
    return 0;
}

/* Check @value against the option's type; return normalized text. */
static char *img_opt_normalize(const ImgOptDesc *d, const char *value,
                               GError **errp)
{
    uint64_t v;

    switch (d->type) {
    case OPT_SIZE:
        if (fe_strtosz(value, &v, false) < 0) {
            error_setg(errp, "Parameter '%s' expects a non-negative number "
                       "below 2^64\nOptional suffix k, M, G, T, P or E means "
                       "kilo-, mega-, giga-, tera-, peta-\nand exabytes, "
                       "respectively.", d->name);
            return NULL;
        }
        return g_strdup_printf("%" PRIu64, v);
    case OPT_NUM: {
        char *end = NULL;

        errno = 0;
        v = g_ascii_strtoull(value, &end, 0);
        if (!*value || *end || errno || value[0] == '-') {
            error_setg(errp, "Parameter '%s' expects a number", d->name);
            return NULL;
        }
        return g_strdup_printf("%" PRIu64, v);
    }
    case OPT_BOOL:
        if (strcmp(value, "on") && strcmp(value, "off") &&
            strcmp(value, "yes") && strcmp(value, "no") &&
            strcmp(value, "true") && strcmp(value, "false")) {
            error_setg(errp, "Parameter '%s' expects 'on' or 'off'",
                       d->name);
            return NULL;
        }
        return g_strdup(value);
    default:
        return g_strdup(value);
    }
}

bool img_create_opts_set(ImgCreateOpts *o, const char *name,
                         const char *value, GError **errp)
{
    const ImgOptDesc *d = img_opt_lookup(o->f, name);
    char *norm;

    if (!d) {
        error_setg(errp, "Invalid parameter '%s'", name);
        return false;
    }
    norm = img_opt_normalize(d, value, errp);
    if (!norm) {
        return false;
    }
    g_hash_table_replace(o->values, g_strdup(name), norm);
    return true;
}

const char *img_create_opts_get(ImgCreateOpts *o, const char *name)
{
    return g_hash_table_lookup(o->values, name);
}

/* Split "a=1,b=x,,y" into name/value pairs (",," is a literal comma). */
bool img_create_opts_parse(ImgCreateOpts *o, const char *optstr,
                           GError **errp)
{
    const char *p = optstr;

    while (*p) {
        g_autoptr(GString) item = g_string_new(NULL);
        char *eq;

        while (*p && !(*p == ',' && p[1] != ',')) {
            if (*p == ',') {
                p++;            /* ",," -> "," */
            }
            g_string_append_c(item, *p++);
        }
        if (*p == ',') {
            p++;
        }
        if (!item->len) {
            continue;
        }
        eq = strchr(item->str, '=');
        if (!eq) {
            error_setg(errp, "Invalid parameter '%s'", item->str);
            return false;
        }
        *eq = '\0';
        if (!img_create_opts_set(o, item->str, eq + 1, errp)) {
            return false;
        }
    }
    return true;
}

/* Typed JSON options for bdrv_create(). */
static JsonObject *img_create_json(ImgCreateOpts *o)
{
    JsonObject *j = json_object_new();
    GHashTableIter it;
    gpointer k, v;

    g_hash_table_iter_init(&it, o->values);
    while (g_hash_table_iter_next(&it, &k, &v)) {
        const ImgOptDesc *d = img_opt_lookup(o->f, k);

        if (d->type == OPT_SIZE || d->type == OPT_NUM) {
            json_object_set_int_member(j, k, g_ascii_strtoll(v, NULL, 10));
        } else if (d->type == OPT_BOOL) {
            json_object_set_boolean_member(j, k, !strcmp(v, "on") ||
                                           !strcmp(v, "yes") ||
                                           !strcmp(v, "true"));
        } else {
            json_object_set_string_member(j, k, v);
        }
    }
    return j;
}

bool img_create_image(ImgCreateOpts *o, const char *filename, bool announce,
                      bool quiet, GError **errp)
{
    g_autoptr(JsonObject) j = NULL;
    const char *size = img_create_opts_get(o, "size");

    if (!o->f) {
        error_setg(errp, "Unknown file format '%s'", o->fmt);
        return false;
    }
    if (announce && !quiet) {
        g_autoptr(GString) line = g_string_new(NULL);

        g_string_append_printf(line, "Formatting '%s', fmt=%s", filename,
                               o->fmt);
        for (const ImgOptDesc *d = o->f->opts; d->name; d++) {
            const char *v = img_create_opts_get(o, d->name);

            if (v || d->def) {
                g_string_append_printf(line, " %s=%s", d->name,
                                       v ? v : d->def);
            }
        }
        printf("%s\n", line->str);
    }
    j = img_create_json(o);
    if (size) {
        /* Images are made of whole 512-byte sectors, as in QEMU. */
        uint64_t n = g_ascii_strtoull(size, NULL, 10);
        json_object_set_int_member(j, "size", (int64_t)((n + 511) & ~511ULL));
    }
    return bdrv_create(o->fmt, filename, j, errp);
}

/*
 * Open the backing file the way the new image will see it (relative to
 * the new image's directory) to check it and learn its size.
 */
static bool img_create_check_backing(ImgCreateOpts *o, const char *filename,
                                     int64_t *size, GError **errp)
{
    const char *backing = img_create_opts_get(o, "backing_file");
    const char *bfmt = img_create_opts_get(o, "backing_fmt");
    g_autofree char *path = NULL;
    g_autoptr(JsonObject) bopts = json_object_new();
    g_autoptr(BlockDriverState) bs = NULL;

    if (g_path_is_absolute(backing) || g_str_has_prefix(backing, "json:")) {
        path = g_strdup(backing);
    } else {
        g_autofree char *dir = g_path_get_dirname(filename);
        path = strcmp(dir, ".") ? g_build_filename(dir, backing, NULL)
                                : g_strdup(backing);
    }
    if (bfmt) {
        json_object_set_string_member(bopts, "driver", bfmt);
    }
    bs = bdrv_open(path, bopts, BDRV_O_NO_BACKING | BDRV_O_NO_IO |
                   BDRV_O_FORCE_SHARE, errp);
    if (!bs) {
        error_append_hint(errp, "Could not open backing image.");
        return false;
    }
    if (!bfmt) {
        error_setg(errp, "Backing file specified without backing format");
        error_append_hint(errp, "Detected format of %s.",
                          bdrv_get_format_name(bs));
        return false;
    }
    *size = bdrv_getlength(bs);
    if (*size < 0) {
        error_setg_errno(errp, (int)-*size, "Could not get size of '%s'",
                         path);
        return false;
    }
    return true;
}

/* Steps after option parsing; returns the exit code. */
static int img_create_run(ImgCreateOpts *o, const char *filename,
                          const char *size_arg, bool unsafe, bool quiet)
{
    g_autoptr(GError) err = NULL;
    int64_t backing_size = -1;

    if (size_arg) {
        int64_t size = img_cvtnum("image size", size_arg);

        if (size < 0) {
            return IMG_EXIT_FAILURE;
        }
        if (img_create_opts_get(o, "size")) {
            error_report("%s: The image size must be specified only once",
                         filename);
            return IMG_EXIT_FAILURE;
        }
        g_autofree char *s = g_strdup_printf("%" PRId64, size);
        img_create_opts_set(o, "size", s, NULL);
    }
    if (!g_strcmp0(img_create_opts_get(o, "backing_file"), filename)) {
        error_report("%s: Error: Trying to create an image with the same "
                     "filename as the backing file", filename);
        return IMG_EXIT_FAILURE;
    }
    if (img_create_opts_get(o, "backing_file")) {
        if (!img_create_opts_get(o, "backing_fmt") && unsafe) {
            error_setg(&err, "Backing file specified without backing "
                       "format");
        } else if (!unsafe &&
                   !img_create_check_backing(o, filename, &backing_size,
                                             &err)) {
            /* err set */
        }
    }
    if (!err && !img_create_opts_get(o, "size")) {
        if (backing_size < 0) {
            error_setg(&err, "Image creation needs a size parameter");
        } else {
            g_autofree char *s = g_strdup_printf("%" PRId64, backing_size);
            img_create_opts_set(o, "size", s, NULL);
        }
    }
    if (err || !img_create_image(o, filename, true, quiet, &err)) {
        if (g_str_has_prefix(err->message, "Backing file specified without")
            && strchr(err->message, '\n')) {
            /* QEMU ends this hint without a newline; scripts see that. */
            fprintf(stderr, "%s: %s: %s", error_get_progname(), filename,
                    err->message);
            return IMG_EXIT_FAILURE;
        }
        error_report("%s: %s", filename, err->message);
        return IMG_EXIT_FAILURE;
    }
    return 0;
}

int img_create(const ImgCmd *cmd, int argc, char **argv)
{
    static const struct option long_opts[] = {
        { "help", no_argument, NULL, 'h' },
        { "quiet", no_argument, NULL, 'q' },
        { "object", required_argument, NULL, IMG_OPT_OBJECT },
        { NULL, 0, NULL, 0 },
    };
    g_autoptr(GError) err = NULL;
    g_autoptr(ImgCreateOpts) o = NULL;
    g_autoptr(GPtrArray) optstrs = g_ptr_array_new();
    const char *fmt = "raw", *base = NULL, *base_fmt = NULL;
    const char *filename, *size_arg = NULL;
    bool quiet = false, unsafe = false;
    int c, r;

    while ((c = getopt_long(argc, argv, ":F:b:f:ho:qu", long_opts,
                            NULL)) != -1) {
        switch (c) {
        case 'F':
            base_fmt = optarg;
            break;
        case 'b':
            base = optarg;
            break;
        case 'f':
            fmt = optarg;
            break;
        case 'h':
            return img_cmd_help(cmd);
        case 'o':
            g_ptr_array_add(optstrs, optarg);
            break;
        case 'q':
            quiet = true;
            break;
        case 'u':
            unsafe = true;
            break;
        case IMG_OPT_OBJECT:
            r = img_handle_object(optarg);
            if (r >= 0) {
                return r;
            }
            break;
        default:
            return img_bad_option(c, argv);
        }
    }
    for (guint i = 0; i < optstrs->len; i++) {
        if (img_create_wants_help(optstrs->pdata[i])) {
            return img_create_print_help(fmt);
        }
    }
    if (optind >= argc) {
        return img_usage_error("Expecting image file name");
    }
    filename = argv[optind++];
    if (optind < argc) {
        size_arg = argv[optind++];
    }
    if (optind != argc) {
        return img_usage_error("Unexpected argument: %s", argv[optind]);
    }
    o = img_create_opts_new(fmt);
    if (!bdrv_find_format(fmt) || !img_create_has_opt(fmt, "size")) {
        error_report("%s: Unknown file format '%s'", filename, fmt);
        return IMG_EXIT_FAILURE;
    }
    for (guint i = 0; i < optstrs->len; i++) {
        if (!img_create_opts_parse(o, optstrs->pdata[i], &err)) {
            error_report("%s: %s", filename, err->message);
            return IMG_EXIT_FAILURE;
        }
    }
    if (base && !img_create_has_opt(fmt, "backing_file")) {
        error_report("%s: Backing file not supported for file format '%s'",
                     filename, fmt);
        return IMG_EXIT_FAILURE;
    }
    if ((base && !img_create_opts_set(o, "backing_file", base, &err)) ||
        (base_fmt && !img_create_opts_set(o, "backing_fmt", base_fmt,
                                          &err))) {
        error_report("%s: %s", filename, err->message);
        return IMG_EXIT_FAILURE;
    }
    return img_create_run(o, filename, size_arg, unsafe, quiet);
}
