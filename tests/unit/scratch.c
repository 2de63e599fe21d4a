/* Scratch directories and images for the unit tests (scratch.h). */
#include "scratch.h"
#include "qapi/error.h"

#include <glib/gstdio.h>

char *test_scratch_dir(const char *prefix)
{
    g_autofree char *tmpl = g_strdup_printf("%s-XXXXXX", prefix);
    g_autoptr(GError) err = NULL;
    char *dir = g_dir_make_tmp(tmpl, &err);

    g_assert_no_error(err);
    return dir;
}

static void remove_tree(const char *path)
{
    if (g_file_test(path, G_FILE_TEST_IS_DIR) &&
        !g_file_test(path, G_FILE_TEST_IS_SYMLINK)) {
        GDir *d = g_dir_open(path, 0, NULL);
        const char *name;

        while (d && (name = g_dir_read_name(d)) != NULL) {
            g_autofree char *child = g_build_filename(path, name, NULL);
            remove_tree(child);
        }
        if (d) {
            g_dir_close(d);
        }
        if (g_rmdir(path) != 0) {
            g_printerr("could not remove %s\n", path);
        }
    } else if (g_remove(path) != 0) {
        g_printerr("could not remove %s\n", path);
    }
}

void test_scratch_remove(char *dir)
{
    remove_tree(dir);
    g_free(dir);
}

BlockDriverState *test_create_open(const char *dir, const char *name,
                                   const char *fmt, int64_t size, int flags,
                                   char **path_out)
{
    g_autofree char *path = g_build_filename(dir, name, NULL);
    g_autoptr(JsonObject) o = json_object_new();
    g_autoptr(JsonObject) opts = json_object_new();
    g_autoptr(GError) err = NULL;
    BlockDriverState *bs;

    json_object_set_int_member(o, "size", size);
    g_assert_true(bdrv_create(fmt, path, o, &err));
    g_assert_no_error(err);
    json_object_set_string_member(opts, "driver", fmt);
    bs = bdrv_open(path, opts, flags, &err);
    g_assert_no_error(err);
    if (path_out) {
        *path_out = g_steal_pointer(&path);
    }
    return bs;
}
