/*
 * qcow2 checkpoints: the checkpoint table of an open image.  It is kept
 * in the CKPT header extension, so it is written by every header update;
 * autoclear bit 48 says it matched the bitmap directory when a program
 * that knows checkpoints last wrote the image.  Layout and rules:
 * docs/interop/qcow2-checkpoints.rst; the codec is
 * qcow2-checkpoint-format.c, the node operations block/checkpoint-ops.c.
 *
 * The chain in memory (Qcow2CkptState.chain) is the node's; s->hdr holds
 * its encoding ("staged"), which reaches the disk with the next header
 * write.  A change is committed by staging the new table and storing the
 * bitmaps: the bitmap store's directory switch writes the header, so the
 * new directory and the new table land in one write.  A final header
 * write covers changes that left the directory alone.  A commit that
 * fails puts the old table back in s->hdr and the old chain in memory.
 *
 * Main thread only, except the hooks documented as called with the
 * metadata lock held.
 */
#include "qcow2.h"
#include "qcow2-bitmap.h"
#include "qcow2-checkpoint.h"
#include "qcow2-checkpoint-format.h"
#include "qapi/error.h"
#include "util/align.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

struct Qcow2CkptState {
    CheckpointChain *chain;   /* NULL iff error is set */
    GError *error;            /* why the stored table cannot be used */
    bool dirty;               /* s->hdr holds a table not yet on disk */
    /* While a commit runs: the encoded table it replaces (NULL: none). */
    bool committing;
    uint8_t *prev;
    uint32_t prev_len;
};

static Qcow2CkptState *ck_state(BlockDriverState *bs)
{
    return ((Qcow2State *)bs->opaque)->checkpoints;
}

/* Bytes an extension of @len data bytes takes in the header area. */
static uint64_t ext_bytes(uint64_t len)
{
    return QCOW2_CKPT_EXT_HEADER_SIZE + ROUND_UP(len, 8);
}

/*
 * What the header cluster holds besides our table, as QEMU 7.2 lays it out
 * when it rewrites the header, or as our own serializer does (it keeps
 * the image's feature table whatever the cluster size): the larger.
 */
static uint64_t other_bytes(Qcow2State *s)
{
    Qcow2Header *h = &s->hdr;
    Qcow2CkptHeaderUse use = {
        .cluster_size = s->cluster_size,
        .header_length = QCOW2_V3_HEADER_SIZE + h->extra_fields_len,
        .backing_fmt_len = h->backing_fmt ? strlen(h->backing_fmt) : 0,
        .backing_file_len = h->backing_file ? strlen(h->backing_file) : 0,
    };
    uint64_t ours;

    for (guint i = 0; h->exts && i < h->exts->len; i++) {
        const Qcow2RawExt *e = g_ptr_array_index(h->exts, i);
        if (e->magic != QCOW2_EXT_CHECKPOINTS &&
            e->magic != QCOW2_EXT_BITMAPS) {
            use.unknown_ext_bytes += ext_bytes(e->len);
        }
    }
    ours = use.header_length + use.unknown_ext_bytes +
           ext_bytes(QCOW2_CKPT_QEMU_BITMAPS_EXT_SIZE) +
           QCOW2_CKPT_EXT_HEADER_SIZE + use.backing_file_len;
    if (use.backing_fmt_len) {
        ours += ext_bytes(use.backing_fmt_len);
    }
    if (h->features && h->features->len) {
        ours += ext_bytes((uint64_t)h->features->len *
                          QCOW2_FEATURE_ENTRY_SIZE);
    }
    return MAX(qcow2_ckpt_other_bytes(&use), ours);
}

static bool encode(BlockDriverState *bs, const CheckpointChain *chain,
                   uint8_t **buf, size_t *len, GError **errp)
{
    Qcow2State *s = bs->opaque;

    *buf = NULL;
    *len = 0;
    if (!ckpt_chain_length(chain)) {
        return true;        /* no table at all */
    }
    if (s->hdr.version < 3) {
        error_setg(errp, "Checkpoints need a qcow2 version 3 image "
                   "(compat=1.1)");
        return false;
    }
    return qcow2_ckpt_table_encode(chain, s->cluster_size, other_bytes(s),
                                   buf, len, errp);
}

/* Put @buf (NULL: no table) into s->hdr (metadata lock held). */
static void stage(Qcow2State *s, const uint8_t *buf, size_t len)
{
    if (buf) {
        qcow2_header_set_ext(&s->hdr, QCOW2_EXT_CHECKPOINTS, buf,
                             (uint32_t)len);
        s->hdr.autoclear_features |= QCOW2_AUTOCLEAR_CHECKPOINTS;
    } else {
        qcow2_header_set_ext(&s->hdr, QCOW2_EXT_CHECKPOINTS, NULL, 0);
        s->hdr.autoclear_features &= ~QCOW2_AUTOCLEAR_CHECKPOINTS;
    }
}

/* Write the staged header (metadata lock held). */
static int write_header(BlockDriverState *bs)
{
    int ret = qcow2_update_header(bs);

    return ret < 0 ? ret : bdrv_flush(bs->file);
}

/* Stage @chain and make it the node's (takes a copy). */
static bool set_chain(BlockDriverState *bs, const CheckpointChain *chain,
                      GError **errp)
{
    Qcow2State *s = bs->opaque;
    Qcow2CkptState *st = ck_state(bs);
    g_autofree uint8_t *buf = NULL;
    size_t len;

    if (!encode(bs, chain, &buf, &len, errp)) {
        return false;
    }
    g_mutex_lock(&s->lock);
    stage(s, buf, len);
    g_mutex_unlock(&s->lock);
    if (st->chain != chain) {
        ckpt_chain_free(st->chain);
        st->chain = ckpt_chain_copy(chain);
    }
    st->dirty = true;
    return true;
}

/* ---- BdrvCheckpointDriverOps ---- */

static bool usable_table(BlockDriverState *bs, GError **errp)
{
    Qcow2CkptState *st = ck_state(bs);

    if (st->error) {
        error_setg(errp, "%s", st->error->message);
        error_append_hint(errp, "'qemu-img check -r all' removes the table "
                          "(and every checkpoint); the bitmaps stay");
        return false;
    }
    return true;
}

static CheckpointChain *qcow2_ckpt_get_chain(BlockDriverState *bs,
                                             GError **errp)
{
    if (!ck_state(bs) || !usable_table(bs, errp)) {
        if (!ck_state(bs)) {
            error_setg(errp, "The checkpoints of '%s' are not loaded",
                       bdrv_get_node_name(bs));
        }
        return NULL;
    }
    return ckpt_chain_copy(ck_state(bs)->chain);
}

static bool qcow2_ckpt_check_room(BlockDriverState *bs,
                                  const CheckpointChain *chain,
                                  GError **errp)
{
    g_autofree uint8_t *buf = NULL;
    size_t len;

    return usable_table(bs, errp) && encode(bs, chain, &buf, &len, errp);
}

/* Remember the staged table, which a failed commit puts back. */
static void begin_commit(Qcow2State *s, Qcow2CkptState *st)
{
    const Qcow2RawExt *raw;

    g_mutex_lock(&s->lock);
    raw = qcow2_header_find_ext(&s->hdr, QCOW2_EXT_CHECKPOINTS);
    st->prev = raw ? g_memdup2(raw->data, raw->len) : NULL;
    st->prev_len = raw ? raw->len : 0;
    st->committing = true;
    g_mutex_unlock(&s->lock);
}

static void end_commit(Qcow2CkptState *st)
{
    st->committing = false;
    g_clear_pointer(&st->prev, g_free);
    st->prev_len = 0;
}

void qcow2_checkpoints_unstage(BlockDriverState *bs)
{
    Qcow2CkptState *st = ck_state(bs);

    if (st && st->committing) {
        stage(bs->opaque, st->prev, st->prev_len);
    }
}

void qcow2_checkpoints_header_written(BlockDriverState *bs)
{
    Qcow2CkptState *st = ck_state(bs);

    if (st) {
        st->dirty = false;
    }
}

/*
 * The table alone, when no directory switch carried it (a commit that
 * changed no bitmap).  A failed write is undone like a failed switch.
 */
static bool write_table(BlockDriverState *bs, GError **errp)
{
    Qcow2State *s = bs->opaque;
    bool unsure = false;
    int ret;

    g_mutex_lock(&s->lock);
    ret = qcow2_update_header(bs);
    if (ret == 0) {
        ret = qcow2_fault_point(QCOW2_STEP_TABLE_WRITTEN);
    }
    if (ret == 0) {
        ret = bdrv_flush(bs->file);
    }
    if (ret < 0) {
        qcow2_checkpoints_unstage(bs);
        unsure = write_header(bs) < 0;
    } else {
        qcow2_fault_point(QCOW2_STEP_TABLE_SYNCED);
        ck_state(bs)->dirty = false;
    }
    g_mutex_unlock(&s->lock);
    if (ret < 0) {
        error_setg_errno(errp, -ret, "Could not write the checkpoint table");
        if (unsure) {
            error_append_hint(errp, "The image may hold the old or the new "
                              "table; the old one is written again on "
                              "close");
        }
        return false;
    }
    return true;
}

/*
 * The new table goes into s->hdr and the bitmaps are stored: their
 * directory switch writes both in one header write.  If that fails, or
 * the table's own write when there was no switch, the old chain comes
 * back in memory and in s->hdr (the bitmap store has already put the old
 * header back on disk if it could: see switch_header()).
 */
static bool qcow2_ckpt_commit(BlockDriverState *bs,
                              const CheckpointChain *chain, GError **errp)
{
    Qcow2State *s = bs->opaque;
    Qcow2CkptState *st = ck_state(bs);
    g_autoptr(CheckpointChain) old = NULL;
    bool ok;

    if (!usable_table(bs, errp)) {
        return false;
    }
    if (!s->writable) {
        error_setg(errp, "Cannot store checkpoints: the image is opened "
                   "read-only");
        return false;
    }
    old = ckpt_chain_copy(st->chain);
    begin_commit(s, st);
    ok = set_chain(bs, chain, errp);
    if (ok && !bdrv_store_persistent_dirty_bitmaps(bs, errp)) {
        ok = false;
    } else if (ok && st->dirty) {
        ok = write_table(bs, errp);
    }
    if (!ok) {
        g_mutex_lock(&s->lock);
        stage(s, st->prev, st->prev_len);
        g_mutex_unlock(&s->lock);
        ckpt_chain_free(st->chain);
        st->chain = g_steal_pointer(&old);
        /* Whatever the image holds, the next flush writes the old table. */
        st->dirty = true;
    }
    end_commit(st);
    return ok;
}

const BdrvCheckpointDriverOps qcow2_checkpoint_ops = {
    .get_chain = qcow2_ckpt_get_chain,
    .check_room = qcow2_ckpt_check_room,
    .commit = qcow2_ckpt_commit,
};

/* ---- Open, flush, close ---- */

static CheckpointChain *decode(Qcow2State *s, const Qcow2RawExt *raw,
                               GError **errp)
{
    CheckpointChain *chain;

    if (s->hdr.version < 3) {
        error_setg(errp, "Checkpoint table is unusable: checkpoints need a "
                   "qcow2 version 3 image");
        return NULL;
    }
    chain = qcow2_ckpt_table_decode(raw->data, raw->len, errp);
    if (!chain) {
        g_prefix_error(errp, "Checkpoint table is unusable: ");
    }
    return chain;
}

int qcow2_checkpoints_open(BlockDriverState *bs, int flags, GError **errp)
{
    Qcow2State *s = bs->opaque;
    Qcow2CkptState *st = g_new0(Qcow2CkptState, 1);
    const Qcow2RawExt *raw = qcow2_header_find_ext(&s->hdr,
                                                   QCOW2_EXT_CHECKPOINTS);
    bool trusted = s->hdr.autoclear_features & QCOW2_AUTOCLEAR_CHECKPOINTS;
    bool may_write = s->writable && !(flags & BDRV_O_CHECK);
    g_autoptr(CheckpointChain) stored = NULL;
    g_autoptr(GError) err = NULL;

    s->checkpoints = st;
    if (!raw) {
        st->chain = ckpt_chain_new();
        st->dirty = trusted;    /* a stray bit 48 goes at the next write */
    } else {
        stored = decode(s, raw, &st->error);
        if (!stored) {
            return 0;
        }
        st->chain = ckpt_chain_copy(stored);
        bdrv_checkpoint_validate(bs, st->chain);
        /* Damage found now, or a table others may have left stale. */
        if (!trusted || !ckpt_chain_equal(stored, st->chain)) {
            set_chain(bs, st->chain, &err);
        }
    }
    if (st->dirty && may_write) {
        if (!raw) {
            g_mutex_lock(&s->lock);
            stage(s, NULL, 0);
            g_mutex_unlock(&s->lock);
        }
        g_mutex_lock(&s->lock);
        if (write_header(bs) == 0) {
            st->dirty = false;
        }
        g_mutex_unlock(&s->lock);
    }
    return 0;
}

int qcow2_checkpoints_flush(BlockDriverState *bs)
{
    Qcow2State *s = bs->opaque;
    Qcow2CkptState *st = ck_state(bs);
    int ret;

    if (!st || !st->dirty || !s->writable || st->error) {
        return 0;
    }
    ret = write_header(bs);
    if (ret == 0) {
        st->dirty = false;
    }
    return ret;
}

void qcow2_checkpoints_close(BlockDriverState *bs)
{
    Qcow2State *s = bs->opaque;
    Qcow2CkptState *st = s->checkpoints;

    if (!st) {
        return;
    }
    s->checkpoints = NULL;
    ckpt_chain_free(st->chain);
    g_clear_error(&st->error);
    g_free(st);
}

/* ---- Info ---- */

void qcow2_checkpoints_info(BlockDriverState *bs, JsonObject *data)
{
    Qcow2CkptState *st = ck_state(bs);
    JsonArray *list;

    if (!st) {
        return;
    }
    if (st->error) {
        json_object_set_string_member(data, "checkpoints-error",
                                      st->error->message);
        return;
    }
    if (!ckpt_chain_length(st->chain)) {
        return;
    }
    list = bdrv_checkpoint_query(bs, false, NULL);
    if (list) {
        json_object_set_array_member(data, "checkpoints", list);
    }
}

/* ---- qemu-img check ---- */

/* check -r all: the table cannot be decoded, remove it. */
static void drop_table(BlockDriverState *bs, BdrvCheckResult *res)
{
    Qcow2State *s = bs->opaque;
    Qcow2CkptState *st = ck_state(bs);
    int ret;

    stage(s, NULL, 0);
    ret = write_header(bs);
    if (ret < 0) {
        fprintf(stderr, "ERROR could not remove the checkpoint table: %s\n",
                g_strerror(-ret));
        res->check_errors++;
        return;
    }
    fprintf(stderr, "Repairing checkpoint table: removed it; every "
            "checkpoint is gone, their bitmaps stay as plain bitmaps\n");
    res->corruptions_fixed++;
    if (st) {
        g_clear_error(&st->error);
        ckpt_chain_free(st->chain);
        st->chain = ckpt_chain_new();
        st->dirty = false;
    }
}

/* Store the damage found now (check -r all). */
static void store_damage(BlockDriverState *bs, const CheckpointChain *chain,
                         BdrvCheckResult *res)
{
    Qcow2State *s = bs->opaque;
    Qcow2CkptState *st = ck_state(bs);
    g_autofree uint8_t *buf = NULL;
    g_autoptr(GError) err = NULL;
    size_t len;
    int ret;

    if (!encode(bs, chain, &buf, &len, &err)) {
        fprintf(stderr, "ERROR could not rewrite the checkpoint table: %s\n",
                err->message);
        res->check_errors++;
        return;
    }
    stage(s, buf, len);
    ret = write_header(bs);
    if (ret < 0) {
        fprintf(stderr, "ERROR could not rewrite the checkpoint table: %s\n",
                g_strerror(-ret));
        res->check_errors++;
        return;
    }
    fprintf(stderr, "Repairing checkpoint table: recorded what the bitmaps "
            "show now\n");
    if (st) {
        ckpt_chain_free(st->chain);
        st->chain = ckpt_chain_copy(chain);
        st->dirty = false;
    }
}

int qcow2_checkpoints_check(BlockDriverState *bs, BdrvCheckResult *res,
                            BdrvCheckMode fix)
{
    Qcow2State *s = bs->opaque;
    const Qcow2RawExt *raw = qcow2_header_find_ext(&s->hdr,
                                                   QCOW2_EXT_CHECKPOINTS);
    bool trusted = s->hdr.autoclear_features & QCOW2_AUTOCLEAR_CHECKPOINTS;
    g_autoptr(CheckpointChain) stored = NULL;
    g_autoptr(CheckpointChain) now = NULL;
    g_autoptr(GError) err = NULL;
    g_autofree const char **reasons = NULL;

    if (!raw) {
        return 0;
    }
    stored = decode(s, raw, &err);
    if (!stored) {
        fprintf(stderr, "ERROR %s\n", err->message);
        if (fix & BDRV_FIX_ERRORS) {
            drop_table(bs, res);
        } else {
            res->corruptions++;
        }
        return 0;
    }
    now = ckpt_chain_copy(stored);
    bdrv_checkpoint_validate(bs, now);
    reasons = ckpt_chain_unusable_reasons(now);
    for (guint i = 0; i < ckpt_chain_length(now); i++) {
        if (reasons[i]) {
            fprintf(stderr, "Checkpoint '%s' is unusable: %s\n",
                    ckpt_chain_nth(now, i)->name, reasons[i]);
        }
    }
    /* The open may have staged the damage it found: st->dirty. */
    if ((fix & BDRV_FIX_ERRORS) &&
        (!trusted || !ckpt_chain_equal(stored, now) ||
         (ck_state(bs) && ck_state(bs)->dirty))) {
        store_damage(bs, now, res);
    }
    return 0;
}
