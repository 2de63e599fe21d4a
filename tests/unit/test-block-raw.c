/*
 * Block core on raw images: open paths (filename, dotted options, json:),
 * request checks, alignment with O_DIRECT, zeroes, discard, block status
 * and the error messages for bad options.
 */
#include "block/block.h"
#include "qapi/error.h"
#include "util/options.h"
#include "scratch.h"

#include <errno.h>
#include <glib/gstdio.h>
#include <string.h>

static char *tmpdir;

static char *make_raw(const char *name, uint64_t size)
{
    char *path = g_build_filename(tmpdir, name, NULL);
    g_autoptr(JsonObject) o = json_object_new();
    g_autoptr(GError) err = NULL;

    json_object_set_int_member(o, "size", size);
    g_assert_true(bdrv_create("raw", path, o, &err));
    g_assert_no_error(err);
    return path;
}

static void test_probe_and_io(void)
{
    g_autofree char *path = make_raw("a.raw", 1 << 20);
    g_autoptr(GError) err = NULL;
    BlockDriverState *bs = bdrv_open(path, NULL, BDRV_O_RDWR, &err);
    uint8_t buf[4096], rbuf[4096];

    g_assert_no_error(err);
    g_assert_cmpstr(bdrv_get_format_name(bs), ==, "raw");
    g_assert_cmpint(bdrv_getlength(bs), ==, 1 << 20);
    memset(buf, 0xa5, sizeof(buf));
    g_assert_cmpint(bdrv_pwrite(bs, 1000, sizeof(buf), buf, 0), ==, 0);
    g_assert_cmpint(bdrv_pread(bs, 1000, sizeof(rbuf), rbuf, 0), ==, 0);
    g_assert_cmpmem(buf, sizeof(buf), rbuf, sizeof(rbuf));
    /* Past the end, negative, and overflowing requests fail with EIO. */
    g_assert_cmpint(bdrv_pread(bs, (1 << 20) - 10, 20, rbuf, 0), ==, -EIO);
    g_assert_cmpint(bdrv_pread(bs, -1, 1, rbuf, 0), ==, -EIO);
    g_assert_cmpint(bdrv_pread(bs, INT64_MAX, 2, rbuf, 0), ==, -EIO);
    g_assert_cmpint(bdrv_flush(bs), ==, 0);
    bdrv_unref(bs);
}

static void test_read_only(void)
{
    g_autofree char *path = make_raw("ro.raw", 65536);
    g_autoptr(GError) err = NULL;
    BlockDriverState *bs = bdrv_open(path, NULL, 0, &err);
    uint8_t buf[512] = {0};

    g_assert_no_error(err);
    g_assert_true(bdrv_is_read_only(bs));
    g_assert_cmpint(bdrv_pwrite(bs, 0, 512, buf, 0), ==, -EPERM);
    g_assert_cmpint(bdrv_pwrite_zeroes(bs, 0, 512, 0), ==, -EPERM);
    g_assert_cmpint(bdrv_pdiscard(bs, 0, 512), ==, -EPERM);
    bdrv_unref(bs);
}

static void test_options_forms(void)
{
    g_autofree char *path = make_raw("opts.raw", 65536);
    g_autofree char *dotted =
        g_strdup_printf("driver=raw,file.driver=file,file.filename=%s,"
                        "node-name=disk0,offset=512,size=1024", path);
    g_autofree char *json = g_strdup_printf(
        "json:{\"driver\":\"raw\",\"file\":{\"driver\":\"file\","
        "\"filename\":\"%s\"}}", path);
    g_autoptr(GError) err = NULL;
    g_autoptr(JsonObject) o = keyval_parse(dotted, NULL, &err);
    BlockDriverState *bs;

    g_assert_no_error(err);
    bs = bdrv_open(NULL, o, 0, &err);
    g_assert_no_error(err);
    g_assert_cmpint(bdrv_getlength(bs), ==, 1024);
    g_assert_true(bdrv_find_node("disk0") == bs);
    /* A second node with the same name is refused. */
    g_assert_null(bdrv_open(NULL, o, 0, &err));
    g_assert_cmpstr(err->message, ==,
                    "Duplicate nodes with node-name='disk0'");
    g_clear_error(&err);
    bdrv_unref(bs);
    g_assert_null(bdrv_find_node("disk0"));

    bs = bdrv_open(json, NULL, 0, &err);
    g_assert_no_error(err);
    g_assert_cmpstr(bdrv_get_format_name(bs), ==, "raw");
    bdrv_unref(bs);
}

static void expect_open_error(const char *filename, const char *opts_text,
                              const char *msg)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(JsonObject) o =
        opts_text ? keyval_parse(opts_text, NULL, NULL) : NULL;
    BlockDriverState *bs = bdrv_open(filename, o, 0, &err);

    g_assert_null(bs);
    g_assert_nonnull(err);
    if (!g_str_has_prefix(err->message, msg)) {
        g_test_message("got: %s", err->message);
    }
    g_assert_true(g_str_has_prefix(err->message, msg));
}

static void test_open_errors(void)
{
    g_autofree char *path = make_raw("err.raw", 4096);
    g_autofree char *missing = g_build_filename(tmpdir, "nope", NULL);
    g_autofree char *o1 = g_strdup_printf("driver=nosuch,file.filename=%s",
                                          path);
    g_autofree char *o2 = g_strdup_printf("driver=raw,file.filename=%s,"
                                          "bogus=1", path);
    g_autofree char *o3 = g_strdup_printf("driver=raw,file.filename=%s,"
                                          "file.bogus=1", path);
    g_autofree char *o4 = g_strdup_printf("driver=raw,file.filename=%s,"
                                          "node-name=1bad", path);
    g_autofree char *o5 = g_strdup_printf("driver=raw,file.filename=%s,"
                                          "read-only=maybe", path);
    g_autofree char *o6 = g_strdup_printf("driver=raw,file.filename=%s,"
                                          "offset=8192", path);

    expect_open_error(missing, NULL, "Could not open");
    expect_open_error(NULL, o1, "Unknown driver 'nosuch'");
    expect_open_error(NULL, o2,
                      "Block format 'raw' does not support the option "
                      "'bogus'");
    expect_open_error(NULL, o3,
                      "Block protocol 'file' doesn't support the option "
                      "'bogus'");
    expect_open_error(NULL, o4, "Invalid node-name: '1bad'");
    expect_open_error(NULL, o5, "Parameter 'read-only' expects");
    expect_open_error(NULL, o6, "The sum of offset (8192)");
    expect_open_error(NULL, "driver=raw", "A block device must be specified");
    expect_open_error(tmpdir, NULL, "");
}

static void test_direct_unaligned(void)
{
    g_autofree char *path = make_raw("direct.raw", 1 << 20);
    g_autoptr(GError) err = NULL;
    g_autoptr(JsonObject) o = keyval_parse("cache.direct=on", NULL, NULL);
    BlockDriverState *bs = bdrv_open(path, o, BDRV_O_RDWR, &err);
    uint8_t buf[1000], rbuf[3000];

    if (!bs) {
        /* Some filesystems (tmpfs) refuse O_DIRECT. */
        g_test_skip(err->message);
        return;
    }
    memset(buf, 0x5a, sizeof(buf));
    g_assert_cmpint(bdrv_pwrite(bs, 1001, sizeof(buf), buf, 0), ==, 0);
    g_assert_cmpint(bdrv_pread(bs, 0, sizeof(rbuf), rbuf, 0), ==, 0);
    for (int i = 0; i < 3000; i++) {
        g_assert_cmpint(rbuf[i], ==, (i >= 1001 && i < 2001) ? 0x5a : 0);
    }
    bdrv_unref(bs);
}

static void test_zeroes_discard_status(void)
{
    g_autofree char *path = make_raw("st.raw", 4 << 20);
    g_autoptr(GError) err = NULL;
    BlockDriverState *bs = bdrv_open(path, NULL, BDRV_O_RDWR, &err);
    g_autofree uint8_t *buf = g_malloc(1 << 20);
    int64_t pnum;
    int ret;

    g_assert_no_error(err);
    /* New files have their first 4 KiB allocated (as QEMU's), then a hole. */
    ret = bdrv_block_status(bs, 0, 4 << 20, &pnum, NULL, NULL);
    g_assert_cmpint(ret & BDRV_BLOCK_DATA, !=, 0);
    ret = bdrv_block_status(bs, 65536, 4 << 20, &pnum, NULL, NULL);
    g_assert_cmpint(ret & BDRV_BLOCK_ZERO, !=, 0);
    memset(buf, 1, 1 << 20);
    g_assert_cmpint(bdrv_pwrite(bs, 1 << 20, 1 << 20, buf, 0), ==, 0);
    ret = bdrv_block_status(bs, 1 << 20, 3 << 20, &pnum, NULL, NULL);
    g_assert_cmpint(ret & BDRV_BLOCK_DATA, !=, 0);
    g_assert_cmpint(ret & BDRV_BLOCK_ZERO, ==, 0);
    g_assert_cmpint(pnum, ==, 1 << 20);
    g_assert_cmpint(bdrv_pwrite_zeroes(bs, 1 << 20, 4096, 0), ==, 0);
    g_assert_cmpint(bdrv_pread(bs, 1 << 20, 8192, buf, 0), ==, 0);
    g_assert_cmpint(buf[0], ==, 0);
    g_assert_cmpint(buf[4095], ==, 0);
    g_assert_cmpint(buf[4096], ==, 1);
    g_assert_cmpint(bdrv_pdiscard(bs, 1 << 20, 1 << 20), ==, 0);
    g_assert_cmpint(bdrv_pread(bs, 1 << 20, 8192, buf, 0), ==, 0);
    g_assert_cmpint(buf[4096], ==, 0);
    /* Unaligned zeroes fall back to writes. */
    memset(buf, 2, 100);
    g_assert_cmpint(bdrv_pwrite(bs, 0, 100, buf, 0), ==, 0);
    g_assert_cmpint(bdrv_pwrite_zeroes(bs, 10, 7, BDRV_REQ_MAY_UNMAP), ==,
                    0);
    g_assert_cmpint(bdrv_pread(bs, 0, 100, buf, 0), ==, 0);
    g_assert_cmpint(buf[9], ==, 2);
    g_assert_cmpint(buf[10], ==, 0);
    g_assert_cmpint(buf[16], ==, 0);
    g_assert_cmpint(buf[17], ==, 2);
    bdrv_unref(bs);
}

static void test_truncate(void)
{
    g_autofree char *path = make_raw("tr.raw", 4096);
    g_autoptr(GError) err = NULL;
    BlockDriverState *bs = bdrv_open(path, NULL, BDRV_O_RDWR, &err);

    g_assert_no_error(err);
    g_assert_cmpint(bdrv_truncate(bs, 8192, true, PREALLOC_MODE_OFF, &err),
                    ==, 0);
    g_assert_cmpint(bdrv_getlength(bs), ==, 8192);
    bdrv_unref(bs);
    bs = bdrv_open(path, NULL, 0, &err);
    g_assert_cmpint(bdrv_truncate(bs, 4096, true, PREALLOC_MODE_OFF, &err),
                    <, 0);
    g_assert_nonnull(err);
    bdrv_unref(bs);
}

int main(int argc, char **argv)
{
    int ret;

    g_test_init(&argc, &argv, NULL);
    tmpdir = test_scratch_dir("bp-block");
    g_test_add_func("/block/raw/probe-and-io", test_probe_and_io);
    g_test_add_func("/block/raw/read-only", test_read_only);
    g_test_add_func("/block/raw/options-forms", test_options_forms);
    g_test_add_func("/block/raw/open-errors", test_open_errors);
    g_test_add_func("/block/raw/direct-unaligned", test_direct_unaligned);
    g_test_add_func("/block/raw/zeroes-discard-status",
                    test_zeroes_discard_status);
    g_test_add_func("/block/raw/truncate", test_truncate);
    ret = g_test_run();
    test_scratch_remove(tmpdir);
    return ret;
}
