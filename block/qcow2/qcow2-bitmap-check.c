/*
 * qcow2 persistent bitmaps in `qemu-img check`: validate the extension,
 * the directory and every bitmap table, and count the clusters they use
 * (directory, tables, data) so that the refcount comparison sees them.
 * With `-r all`, a directory that cannot be parsed is dropped (extension
 * removed, autoclear bit cleared); its clusters then show up as leaks and
 * are reclaimed by the same run.  Runs with the metadata lock held;
 * messages go to stderr like the rest of check.
 */
#include "qcow2.h"
#include "qcow2-bitmap.h"
#include "qapi/error.h"
#include "util/bswap.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>

/* Count one bitmap's table and data clusters; report bad entries. */
static int check_table(BlockDriverState *bs, Qcow2CheckRefs *r,
                       const Qcow2BitmapEntry *e, const Qcow2BitmapGeometry *g,
                       BdrvCheckResult *res)
{
    uint64_t bytes = (uint64_t)e->table_size * 8;
    g_autofree uint64_t *table = g_try_malloc(MAX(bytes, 1));
    int ret;

    qcow2_check_inc_refs(r, e->table_offset, bytes);
    if (!table) {
        res->check_errors++;
        return -ENOMEM;
    }
    ret = qcow2_read_host(bs, e->table_offset, bytes, table);
    if (ret < 0) {
        fprintf(stderr, "ERROR could not read the table of bitmap '%s': "
                "%s\n", e->name, g_strerror(-ret));
        res->check_errors++;
        return 0;
    }
    for (uint32_t i = 0; i < e->table_size; i++) {
        uint64_t ent = ldq_be(&table[i]);
        g_autoptr(GError) err = NULL;

        if (!qcow2_bitmap_table_entry_check(ent, i, e->name, g, &err)) {
            fprintf(stderr, "ERROR %s\n", err->message);
            res->corruptions++;
            continue;
        }
        if (ent & QCOW2_BME_TABLE_OFFSET_MASK) {
            qcow2_check_inc_refs(r, ent & QCOW2_BME_TABLE_OFFSET_MASK,
                                 g->cluster_size);
        }
    }
    return 0;
}

/* Remove a broken extension (check -r all). */
static void drop_extension(BlockDriverState *bs, BdrvCheckResult *res)
{
    Qcow2State *s = bs->opaque;
    Qcow2BitmapState *st = s->bitmaps;
    int ret;

    qcow2_header_set_ext(&s->hdr, QCOW2_EXT_BITMAPS, NULL, 0);
    s->hdr.autoclear_features &= ~QCOW2_AUTOCLEAR_BITMAPS;
    ret = qcow2_update_header(bs);
    if (ret == 0) {
        ret = bdrv_flush(bs->file);
    }
    if (ret < 0) {
        fprintf(stderr, "ERROR could not remove the bitmaps extension: "
                "%s\n", g_strerror(-ret));
        res->check_errors++;
        return;
    }
    fprintf(stderr, "Repairing bitmap directory: removed the bitmaps "
            "extension; its clusters are now leaks\n");
    res->corruptions_fixed++;
    if (st) {
        g_clear_error(&st->error);
        st->ext_present = false;
    }
}

int qcow2_bitmaps_check_refs(BlockDriverState *bs, Qcow2CheckRefs *r,
                             BdrvCheckResult *res)
{
    Qcow2State *s = bs->opaque;
    const Qcow2RawExt *raw = qcow2_header_find_ext(&s->hdr,
                                                   QCOW2_EXT_BITMAPS);
    g_autoptr(GError) err = NULL;
    g_autoptr(GPtrArray) dir = NULL;
    g_autofree uint8_t *buf = NULL;
    Qcow2BitmapGeometry g;
    Qcow2BitmapExt ext;
    bool ext_ok = false;
    int ret;

    if (!raw) {
        return 0;
    }
    qcow2_bitmap_geometry(bs, &g);
    if (!qcow2_bitmap_ext_parse(raw->data, raw->len, &g, &ext, &err)) {
        goto broken;
    }
    ext_ok = true;
    buf = g_try_malloc(ext.dir_size);
    if (!buf) {
        res->check_errors++;
        return -ENOMEM;
    }
    ret = qcow2_read_host(bs, ext.dir_offset, ext.dir_size, buf);
    if (ret < 0) {
        fprintf(stderr, "ERROR could not read the bitmap directory: %s\n",
                g_strerror(-ret));
        res->check_errors++;
        return 0;
    }
    dir = qcow2_bitmap_dir_parse(buf, &ext, &g, &err);
    if (!dir) {
        goto broken;
    }
    qcow2_check_inc_refs(r, ext.dir_offset, ext.dir_size);
    for (guint i = 0; i < dir->len; i++) {
        ret = check_table(bs, r, g_ptr_array_index(dir, i), &g, res);
        if (ret < 0) {
            return ret;
        }
    }
    return 0;

broken:
    fprintf(stderr, "ERROR %s\n", err->message);
    if (qcow2_check_fix_mode(r) & BDRV_FIX_ERRORS) {
        drop_extension(bs, res);
        return 0;
    }
    res->corruptions++;
    if (ext_ok) {
        /* Still referenced: a leak repair must not free it. */
        qcow2_check_inc_refs(r, ext.dir_offset, ext.dir_size);
    }
    return 0;
}
