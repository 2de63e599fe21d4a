/*
 * Metadata contexts: matching LIST/SET_META_CONTEXT queries against an
 * export's contexts, and producing the extents of NBD_CMD_BLOCK_STATUS.
 *
 *   base:allocation        HOLE when the data is not allocated anywhere in
 *                          the backing chain, ZERO when it reads as zeroes
 *   qemu:allocation-depth  0 unallocated, 1 this node, 2 its backing, ...
 *   qemu:dirty-bitmap:N    NBD_STATE_DIRTY per the bitmap's context ops
 *
 * Query syntax (QEMU's): exact names select one context; for LIST only,
 * "base:", "qemu:" and "qemu:dirty-bitmap:" select every context of that
 * namespace, and an empty query list selects all of them.
 */
#include "nbd/nbd-internal.h"

#include <errno.h>
#include <string.h>

/* ---- Bitmap contexts ---------------------------------------------------- */

NbdBitmapContext *nbd_bitmap_context_new(const char *name,
                                         const NbdBitmapContextOps *ops,
                                         void *opaque)
{
    NbdBitmapContext *ctx = g_new0(NbdBitmapContext, 1);

    ctx->name = g_strdup(name);
    ctx->ops = ops;
    ctx->opaque = opaque;
    return ctx;
}

void nbd_bitmap_context_free(NbdBitmapContext *ctx)
{
    if (!ctx) {
        return;
    }
    if (ctx->ops && ctx->ops->release) {
        ctx->ops->release(ctx->opaque);
    }
    g_free(ctx->name);
    g_free(ctx);
}

/* ---- Query matching ----------------------------------------------------- */

static bool has_prefix(const char *s, size_t len, const char *prefix)
{
    size_t plen = strlen(prefix);

    return len >= plen && memcmp(s, prefix, plen) == 0;
}

static bool name_equals(const char *name, const char *s, size_t len)
{
    return strlen(name) == len && memcmp(name, s, len) == 0;
}

bool nbd_meta_match(const NbdExport *exp, const char *query, size_t len,
                    bool list, bool *selected)
{
    bool base_all = false;
    bool qemu_all = false;
    bool bitmaps_all = false;

    if (len > NBD_MAX_STRING_SIZE || memchr(query, '\0', len)) {
        return false;
    }
    if (list) {
        base_all = len == strlen("base:") && has_prefix(query, len, "base:");
        qemu_all = len == strlen("qemu:") && has_prefix(query, len, "qemu:");
        bitmaps_all = len == strlen(NBD_CTX_DIRTY_BITMAP_PREFIX) &&
            has_prefix(query, len, NBD_CTX_DIRTY_BITMAP_PREFIX);
    }
    for (unsigned i = 0; i < exp->n_contexts; i++) {
        const NbdMetaContext *ctx = &exp->contexts[i];
        bool hit = name_equals(ctx->name, query, len);

        switch (ctx->kind) {
        case NBD_META_BASE_ALLOCATION:
            hit = hit || base_all;
            break;
        case NBD_META_ALLOCATION_DEPTH:
            hit = hit || qemu_all;
            break;
        case NBD_META_BITMAP:
            hit = hit || qemu_all || bitmaps_all;
            break;
        }
        if (hit) {
            selected[i] = true;
        }
    }
    return true;
}

/* ---- Extents ------------------------------------------------------------ */

void nbd_extents_init(NbdExtents *ex, uint64_t limit, uint32_t max)
{
    memset(ex, 0, sizeof(*ex));
    ex->limit = limit;
    ex->max = max;
}

void nbd_extents_clear(NbdExtents *ex)
{
    g_free(ex->pairs);
    ex->pairs = NULL;
    ex->count = 0;
    ex->cap = 0;
}

bool nbd_extents_grow(NbdExtents *ex)
{
    uint32_t ncap;

    if (ex->count == ex->max) {
        return false;
    }
    /* Start big enough for a typical sparse bitmap reply (8 KiB). */
    ncap = MIN(MAX(1024u, ex->cap * 2u), ex->max);
    ex->pairs = g_renew(uint32_t, ex->pairs, 2 * (size_t)ncap);
    ex->cap = ncap;
    return true;
}

bool nbd_extents_add(NbdExtents *ex, uint64_t length, uint32_t flags)
{
    return nbd_extents_append(ex, length, flags);
}

static uint32_t base_allocation_flags(int status)
{
    uint32_t flags = 0;

    if (!(status & BDRV_BLOCK_DATA)) {
        flags |= NBD_STATE_HOLE;
    }
    if (status & BDRV_BLOCK_ZERO) {
        flags |= NBD_STATE_ZERO;
    }
    return flags;
}

static int chain_extents(NbdExport *exp, bool depth_mode, uint64_t offset,
                         uint64_t length, NbdExtents *ex)
{
    while (length > 0) {
        int64_t pnum = 0;
        int depth = 0;
        int ret = bdrv_block_status_above(exp->bs, (int64_t)offset,
                                          (int64_t)length, &pnum, NULL,
                                          NULL, &depth);
        uint32_t flags;

        if (ret < 0) {
            return ret;
        }
        if (pnum <= 0) {
            return -EIO;
        }
        flags = depth_mode ? (uint32_t)depth : base_allocation_flags(ret);
        if ((uint64_t)pnum > length) {
            pnum = (int64_t)length;
        }
        if (!nbd_extents_add(ex, (uint64_t)pnum, flags)) {
            break;
        }
        offset += (uint64_t)pnum;
        length -= (uint64_t)pnum;
    }
    return 0;
}

int nbd_meta_extents(NbdExport *exp, const NbdMetaContext *ctx,
                     uint64_t offset, uint64_t length, NbdExtents *ex)
{
    switch (ctx->kind) {
    case NBD_META_BASE_ALLOCATION:
        return chain_extents(exp, false, offset, length, ex);
    case NBD_META_ALLOCATION_DEPTH:
        return chain_extents(exp, true, offset, length, ex);
    case NBD_META_BITMAP:
        return ctx->bitmap->ops->extents(ctx->bitmap->opaque, offset,
                                         length, ex);
    }
    return -EINVAL;
}
