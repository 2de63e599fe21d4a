/*
 * Image creation shared by `create` and `convert`: the creation options
 * each format accepts (their types, defaults and the order QEMU prints
 * them in), -o parsing, "-o help" and the "Formatting ..." line.
 */
#ifndef QEMU_IMG_IMG_CREATE_H
#define QEMU_IMG_IMG_CREATE_H

#include <stdbool.h>
#include <stdint.h>

#include <glib.h>

/* Parsed -o options of one format: name -> value text, in given order. */
typedef struct ImgCreateOpts ImgCreateOpts;

ImgCreateOpts *img_create_opts_new(const char *fmt);
void img_create_opts_free(ImgCreateOpts *o);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(ImgCreateOpts, img_create_opts_free)

/* Whether an -o string asks for help ("help" or "?" as an element). */
bool img_create_wants_help(const char *optstr);
/* Print the options of @fmt ("Supported FMT options: ..."). */
int img_create_print_help(const char *fmt);

/*
 * Add "k=v,k2=v2" (",," escapes a comma).  Unknown names and values of
 * the wrong type ("lazy_refcounts=maybe") fail with QEMU's messages.
 * A later value of the same name replaces an earlier one.
 */
bool img_create_opts_parse(ImgCreateOpts *o, const char *optstr,
                           GError **errp);
/* Set one option (value checked as above). */
bool img_create_opts_set(ImgCreateOpts *o, const char *name,
                         const char *value, GError **errp);
const char *img_create_opts_get(ImgCreateOpts *o, const char *name);
/* Whether @fmt has an option called @name. */
bool img_create_has_opt(const char *fmt, const char *name);

/*
 * Create the image: prints "Formatting 'F', fmt=... " unless @quiet or
 * !@announce, then calls bdrv_create() with typed values.
 */
bool img_create_image(ImgCreateOpts *o, const char *filename, bool announce,
                      bool quiet, GError **errp);

#endif
