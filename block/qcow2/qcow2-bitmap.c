/*
 * Persistent dirty bitmaps in qcow2 (the bitmaps header extension and
 * autoclear bit 0).  PLACEHOLDER: this file holds the hooks the rest of the
 * driver calls; the bitmaps work replaces it with the real implementation
 * (directory load/validate/store, the in_use + autoclear protocol, bitmap
 * table and data I/O).  Until then the extension is kept byte for byte in
 * Qcow2Header.exts, autoclear bit 0 is preserved, and check counts the
 * clusters the extension references so that repairs never free them.
 */
#include "qcow2.h"
#include "util/bswap.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>

#define BME_DIR_ENTRY_FIXED 24
#define BME_TABLE_OFFSET_MASK UINT64_C(0x00fffffffffffe00)
#define BME_MAX_TABLE_BYTES (64 * 1024 * 1024)
#define BME_MAX_DIR_BYTES (64 * 1024 * 1024)

int qcow2_bitmaps_open(BlockDriverState *bs, GError **errp)
{
    return 0;
}

int qcow2_bitmaps_store(BlockDriverState *bs)
{
    return 0;
}

void qcow2_bitmaps_info(BlockDriverState *bs, JsonObject *data)
{
}

static int count_bitmap_table(BlockDriverState *bs, Qcow2CheckRefs *r,
                              uint64_t off, uint32_t size,
                              BdrvCheckResult *res)
{
    Qcow2State *s = bs->opaque;
    uint64_t bytes = (uint64_t)size * 8;
    g_autofree uint64_t *t = NULL;
    int ret;

    if (bytes > BME_MAX_TABLE_BYTES || qcow2_offset_in_cluster(s, off)) {
        fprintf(stderr, "ERROR bitmap table at %#" PRIx64 " is invalid\n",
                off);
        res->corruptions++;
        return 0;
    }
    qcow2_check_inc_refs(r, off, bytes);
    t = g_try_malloc(bytes ? bytes : 1);
    if (!t) {
        return -ENOMEM;
    }
    ret = qcow2_read_host(bs, off, bytes, t);
    if (ret < 0) {
        res->check_errors++;
        return ret;
    }
    for (uint32_t i = 0; i < size; i++) {
        uint64_t e = ldq_be(&t[i]) & BME_TABLE_OFFSET_MASK;
        if (e) {
            qcow2_check_inc_refs(r, e, s->cluster_size);
        }
    }
    return 0;
}

int qcow2_bitmaps_check_refs(BlockDriverState *bs, Qcow2CheckRefs *r,
                             BdrvCheckResult *res)
{
    Qcow2State *s = bs->opaque;
    const Qcow2RawExt *e = qcow2_header_find_ext(&s->hdr, QCOW2_EXT_BITMAPS);
    g_autofree uint8_t *dir = NULL;
    uint64_t dir_size, dir_off, pos = 0;
    uint32_t n;
    int ret;

    if (!e || e->len < 24) {
        return 0;
    }
    n = ldl_be(e->data);
    dir_size = ldq_be(e->data + 8);
    dir_off = ldq_be(e->data + 16);
    if (dir_size > BME_MAX_DIR_BYTES || qcow2_offset_in_cluster(s, dir_off)) {
        fprintf(stderr, "ERROR bitmap directory is invalid\n");
        res->corruptions++;
        return 0;
    }
    qcow2_check_inc_refs(r, dir_off, dir_size);
    dir = g_try_malloc(dir_size ? dir_size : 1);
    if (!dir) {
        return -ENOMEM;
    }
    ret = qcow2_read_host(bs, dir_off, dir_size, dir);
    if (ret < 0) {
        res->check_errors++;
        return ret;
    }
    for (uint32_t i = 0; i < n && pos + BME_DIR_ENTRY_FIXED <= dir_size;
         i++) {
        uint8_t *d = dir + pos;
        uint64_t len = BME_DIR_ENTRY_FIXED + ldw_be(d + 18) +
                       (uint64_t)ldl_be(d + 20);
        ret = count_bitmap_table(bs, r, ldq_be(d), ldl_be(d + 8), res);
        if (ret < 0) {
            return ret;
        }
        pos += (len + 7) & ~UINT64_C(7);
    }
    return 0;
}
