/*
 * NBD server pure functions: request validation (a table of command x
 * flags x range x length cases against what the negotiation allows),
 * header decoding, errno mapping, reply encoding, metadata context
 * matching and the extents accumulator.
 */
#include "nbd-internal.h"
#include "util/bswap.h"

#include <errno.h>
#include <string.h>

#define MiB (1024u * 1024)
#define SIZE (64 * (uint64_t)MiB)

/* Negotiated states the table refers to. */
enum { RW, RO, RW_SIMPLE, RW_NOCTX };

static const NbdTxState states[] = {
    [RW] = { .size = SIZE, .writable = true, .structured = true,
             .n_contexts = 1 },
    [RO] = { .size = SIZE, .writable = false, .structured = true,
             .n_contexts = 1 },
    [RW_SIMPLE] = { .size = SIZE, .writable = true, .structured = false },
    [RW_NOCTX] = { .size = SIZE, .writable = true, .structured = true },
};

typedef struct {
    const char *name;
    int state;
    uint32_t magic;          /* 0: NBD_REQUEST_MAGIC */
    uint16_t type;
    uint16_t flags;
    uint64_t offset;
    uint32_t len;
    NbdRequestVerdict verdict;
    uint32_t error;
} Case;

#define FUA NBD_CMD_FLAG_FUA
#define NO_HOLE NBD_CMD_FLAG_NO_HOLE
#define DF NBD_CMD_FLAG_DF
#define REQ_ONE NBD_CMD_FLAG_REQ_ONE
#define FAST_ZERO NBD_CMD_FLAG_FAST_ZERO
#define OK NBD_REQ_OK
#define ERR NBD_REQ_ERROR
#define DRAIN NBD_REQ_ERROR_DRAIN
#define CLOSE NBD_REQ_DISCONNECT

static const Case cases[] = {
    /* Framing. */
    { "bad magic", RW, 0x12345678, NBD_CMD_READ, 0, 0, 512, CLOSE, 0 },
    { "bad magic write", RW, 0x25609514, NBD_CMD_WRITE, 0, 0, 512, CLOSE,
      0 },
    { "disc", RW, 0, NBD_CMD_DISC, 0, 0, 0, NBD_REQ_DISC, 0 },
    { "disc with junk", RW, 0, NBD_CMD_DISC, 0xffff, 1, 9, NBD_REQ_DISC, 0 },
    { "unknown command 8", RW, 0, 8, 0, 0, 512, ERR, NBD_EINVAL },
    { "unknown command 0xffff", RW, 0, 0xffff, 0, 0, 0, ERR, NBD_EINVAL },

    /* READ. */
    { "read", RW, 0, NBD_CMD_READ, 0, 0, 4096, OK, 0 },
    { "read zero length", RW, 0, NBD_CMD_READ, 0, 0, 0, OK, 0 },
    { "read fua", RW, 0, NBD_CMD_READ, FUA, 0, 4096, OK, 0 },
    { "read df", RW, 0, NBD_CMD_READ, DF, 0, 4096, OK, 0 },
    { "read df simple", RW_SIMPLE, 0, NBD_CMD_READ, DF, 0, 4096, ERR,
      NBD_EINVAL },
    { "read req_one", RW, 0, NBD_CMD_READ, REQ_ONE, 0, 4096, ERR,
      NBD_EINVAL },
    { "read no_hole", RW, 0, NBD_CMD_READ, NO_HOLE, 0, 4096, ERR,
      NBD_EINVAL },
    { "read unknown flag", RW, 0, NBD_CMD_READ, 0x8000, 0, 4096, ERR,
      NBD_EINVAL },
    { "read 32M", RW, 0, NBD_CMD_READ, 0, 0, 32 * MiB, OK, 0 },
    { "read 32M+1", RW, 0, NBD_CMD_READ, 0, 0, 32 * MiB + 1, ERR,
      NBD_EINVAL },
    { "read to end", RW, 0, NBD_CMD_READ, 0, SIZE - 4096, 4096, OK, 0 },
    { "read past end", RW, 0, NBD_CMD_READ, 0, SIZE - 4096, 4097, ERR,
      NBD_EINVAL },
    { "read at end", RW, 0, NBD_CMD_READ, 0, SIZE, 1, ERR, NBD_EINVAL },
    { "read zero at end", RW, 0, NBD_CMD_READ, 0, SIZE, 0, OK, 0 },
    { "read overflow", RW, 0, NBD_CMD_READ, 0, UINT64_MAX - 10, 4096, ERR,
      NBD_EINVAL },
    { "read on read-only", RO, 0, NBD_CMD_READ, 0, 0, 4096, OK, 0 },

    /* WRITE: errors keep the stream in sync by draining the payload. */
    { "write", RW, 0, NBD_CMD_WRITE, 0, 0, 4096, OK, 0 },
    { "write fua", RW, 0, NBD_CMD_WRITE, FUA, 0, 4096, OK, 0 },
    { "write no_hole", RW, 0, NBD_CMD_WRITE, NO_HOLE, 0, 4096, DRAIN,
      NBD_EINVAL },
    { "write df", RW, 0, NBD_CMD_WRITE, DF, 0, 4096, DRAIN, NBD_EINVAL },
    { "write read-only", RO, 0, NBD_CMD_WRITE, 0, 0, 4096, DRAIN,
      NBD_EPERM },
    { "write past end", RW, 0, NBD_CMD_WRITE, 0, SIZE - 1, 2, DRAIN,
      NBD_ENOSPC },
    { "write overflow", RW, 0, NBD_CMD_WRITE, 0, UINT64_MAX, 2, DRAIN,
      NBD_EINVAL },
    { "write 32M", RW, 0, NBD_CMD_WRITE, 0, 0, 32 * MiB, OK, 0 },
    { "write 32M+1 drained", RW, 0, NBD_CMD_WRITE, 0, 0, 32 * MiB + 1,
      DRAIN, NBD_EINVAL },
    { "write at drain limit", RW, 0, NBD_CMD_WRITE, 0, 0, NBD_DRAIN_LIMIT,
      DRAIN, NBD_EINVAL },
    { "write beyond drain limit", RW, 0, NBD_CMD_WRITE, 0, 0,
      NBD_DRAIN_LIMIT + 1, CLOSE, 0 },
    { "write 4G-1", RW, 0, NBD_CMD_WRITE, 0, 0, UINT32_MAX, CLOSE, 0 },
    { "write zero length read-only", RO, 0, NBD_CMD_WRITE, 0, 0, 0, ERR,
      NBD_EPERM },

    /* FLUSH: offset and length are not checked. */
    { "flush", RW, 0, NBD_CMD_FLUSH, 0, 0, 0, OK, 0 },
    { "flush fua", RW, 0, NBD_CMD_FLUSH, FUA, 0, 0, OK, 0 },
    { "flush junk range", RW, 0, NBD_CMD_FLUSH, 0, UINT64_MAX, 99, OK, 0 },
    { "flush read-only", RO, 0, NBD_CMD_FLUSH, 0, 0, 0, OK, 0 },
    { "flush df", RW, 0, NBD_CMD_FLUSH, DF, 0, 0, ERR, NBD_EINVAL },

    /* TRIM. */
    { "trim", RW, 0, NBD_CMD_TRIM, 0, 0, 1 * MiB, OK, 0 },
    { "trim 32M", RW, 0, NBD_CMD_TRIM, 0, 0, 32 * MiB,
      OK, 0 },
    { "trim read-only", RO, 0, NBD_CMD_TRIM, 0, 0, 4096, ERR, NBD_EPERM },
    { "trim past end", RW, 0, NBD_CMD_TRIM, 0, SIZE, 1, ERR, NBD_EINVAL },
    { "trim no_hole", RW, 0, NBD_CMD_TRIM, NO_HOLE, 0, 4096, ERR,
      NBD_EINVAL },

    /* WRITE_ZEROES. */
    { "zero", RW, 0, NBD_CMD_WRITE_ZEROES, 0, 0, 64 * MiB, OK, 0 },
    { "zero no_hole fast fua", RW, 0, NBD_CMD_WRITE_ZEROES,
      NO_HOLE | FAST_ZERO | FUA, 0, 4096, OK, 0 },
    { "zero df", RW, 0, NBD_CMD_WRITE_ZEROES, DF, 0, 4096, ERR,
      NBD_EINVAL },
    { "zero req_one", RW, 0, NBD_CMD_WRITE_ZEROES, REQ_ONE, 0, 4096, ERR,
      NBD_EINVAL },
    { "zero read-only", RO, 0, NBD_CMD_WRITE_ZEROES, 0, 0, 4096, ERR,
      NBD_EPERM },
    { "zero past end", RW, 0, NBD_CMD_WRITE_ZEROES, 0, SIZE - 1, 2, ERR,
      NBD_ENOSPC },

    /* CACHE. */
    { "cache", RW, 0, NBD_CMD_CACHE, 0, 0, 64 * MiB, OK, 0 },
    { "cache read-only", RO, 0, NBD_CMD_CACHE, 0, 0, 4096, OK, 0 },
    { "cache past end", RW, 0, NBD_CMD_CACHE, 0, SIZE, 4096, ERR,
      NBD_EINVAL },
    { "cache fast_zero", RW, 0, NBD_CMD_CACHE, FAST_ZERO, 0, 4096, ERR,
      NBD_EINVAL },

    /* BLOCK_STATUS. */
    { "status", RW, 0, NBD_CMD_BLOCK_STATUS, 0, 0, 64 * MiB, OK, 0 },
    { "status req_one", RO, 0, NBD_CMD_BLOCK_STATUS, REQ_ONE, 0, 512, OK,
      0 },
    { "status zero length", RW, 0, NBD_CMD_BLOCK_STATUS, 0, 0, 0, ERR,
      NBD_EINVAL },
    { "status no context", RW_NOCTX, 0, NBD_CMD_BLOCK_STATUS, 0, 0, 512,
      ERR, NBD_EINVAL },
    { "status simple replies", RW_SIMPLE, 0, NBD_CMD_BLOCK_STATUS, 0, 0,
      512, ERR, NBD_EINVAL },
    { "status past end", RW, 0, NBD_CMD_BLOCK_STATUS, 0, 1, SIZE, ERR,
      NBD_EINVAL },
    { "status df", RW, 0, NBD_CMD_BLOCK_STATUS, DF, 0, 512, ERR,
      NBD_EINVAL },
};

static void test_request_table(void)
{
    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        const Case *t = &cases[i];
        NbdRequestHeader h = {
            .magic = t->magic ? t->magic : NBD_REQUEST_MAGIC,
            .flags = t->flags,
            .type = t->type,
            .handle = i,
            .offset = t->offset,
            .len = t->len,
        };
        NbdRequestCheck chk;

        nbd_request_check(&h, &states[t->state], &chk);
        if (chk.verdict != t->verdict || chk.error != t->error) {
            g_test_message("case '%s': verdict %d error %u, expected %d %u "
                           "(%s)", t->name, chk.verdict, chk.error,
                           t->verdict, t->error,
                           chk.reason ? chk.reason : "no reason");
            g_test_fail();
        }
        if (chk.verdict != NBD_REQ_OK && chk.verdict != NBD_REQ_DISC) {
            g_assert_nonnull(chk.reason);
        }
    }
}

/* Every flag bit on every command: only the documented ones pass. */
static void test_flag_matrix(void)
{
    static const struct {
        uint16_t type;
        uint16_t allowed;
    } cmds[] = {
        { NBD_CMD_READ, FUA | DF },
        { NBD_CMD_WRITE, FUA },
        { NBD_CMD_FLUSH, FUA },
        { NBD_CMD_TRIM, FUA },
        { NBD_CMD_CACHE, FUA },
        { NBD_CMD_WRITE_ZEROES, FUA | NO_HOLE | FAST_ZERO },
        { NBD_CMD_BLOCK_STATUS, FUA | REQ_ONE },
    };

    for (size_t i = 0; i < G_N_ELEMENTS(cmds); i++) {
        for (int bit = 0; bit < 16; bit++) {
            NbdRequestHeader h = {
                .magic = NBD_REQUEST_MAGIC, .type = cmds[i].type,
                .flags = 1u << bit, .offset = 0, .len = 512,
            };
            NbdRequestCheck chk;
            bool allowed = cmds[i].allowed & (1u << bit);

            nbd_request_check(&h, &states[RW], &chk);
            g_assert_cmpint(chk.verdict == NBD_REQ_OK, ==, allowed);
            if (!allowed) {
                g_assert_cmpuint(chk.error, ==, NBD_EINVAL);
                g_assert_cmpint(chk.verdict, ==,
                                cmds[i].type == NBD_CMD_WRITE
                                ? NBD_REQ_ERROR_DRAIN : NBD_REQ_ERROR);
            }
        }
    }
}

/* Ranges around the end of the export and the 64-bit limit. */
static void test_range_sweep(void)
{
    static const uint64_t offsets[] = {
        0, 1, SIZE - 4096, SIZE - 1, SIZE, SIZE + 1, UINT64_MAX - 4095,
        UINT64_MAX,
    };
    static const uint32_t lens[] = { 0, 1, 4096, 32 * MiB, UINT32_MAX };

    for (size_t i = 0; i < G_N_ELEMENTS(offsets); i++) {
        for (size_t j = 0; j < G_N_ELEMENTS(lens); j++) {
            NbdRequestHeader h = {
                .magic = NBD_REQUEST_MAGIC, .type = NBD_CMD_TRIM,
                .offset = offsets[i], .len = lens[j],
            };
            NbdRequestCheck chk;
            uint64_t end;
            bool overflow = __builtin_add_overflow(offsets[i],
                                                   (uint64_t)lens[j], &end);
            bool in_range = !overflow && end <= SIZE;

            nbd_request_check(&h, &states[RW], &chk);
            g_assert_cmpint(chk.verdict == NBD_REQ_OK, ==, in_range);
            h.type = NBD_CMD_WRITE_ZEROES;
            nbd_request_check(&h, &states[RW], &chk);
            if (!in_range) {
                g_assert_cmpuint(chk.error, ==,
                                 overflow ? NBD_EINVAL : NBD_ENOSPC);
            }
        }
    }
}

static void test_decode(void)
{
    uint8_t buf[NBD_REQUEST_SIZE];
    NbdRequestHeader h;

    stl_be(buf, NBD_REQUEST_MAGIC);
    stw_be(buf + 4, 0x0102);
    stw_be(buf + 6, 0x0304);
    stq_be(buf + 8, 0x1122334455667788ULL);
    stq_be(buf + 16, 0x8877665544332211ULL);
    stl_be(buf + 24, 0xdeadbeef);
    nbd_request_decode(buf, &h);
    g_assert_cmphex(h.magic, ==, NBD_REQUEST_MAGIC);
    g_assert_cmphex(h.flags, ==, 0x0102);
    g_assert_cmphex(h.type, ==, 0x0304);
    g_assert_cmphex(h.handle, ==, 0x1122334455667788ULL);
    g_assert_cmphex(h.offset, ==, 0x8877665544332211ULL);
    g_assert_cmphex(h.len, ==, 0xdeadbeef);
}

static void test_errno_map(void)
{
    g_assert_cmpuint(nbd_errno_to_nbd(0), ==, NBD_SUCCESS);
    g_assert_cmpuint(nbd_errno_to_nbd(-EPERM), ==, NBD_EPERM);
    g_assert_cmpuint(nbd_errno_to_nbd(-EROFS), ==, NBD_EPERM);
    g_assert_cmpuint(nbd_errno_to_nbd(-EIO), ==, NBD_EIO);
    g_assert_cmpuint(nbd_errno_to_nbd(EIO), ==, NBD_EIO);
    g_assert_cmpuint(nbd_errno_to_nbd(-ENOMEM), ==, NBD_ENOMEM);
    g_assert_cmpuint(nbd_errno_to_nbd(-ENOSPC), ==, NBD_ENOSPC);
    g_assert_cmpuint(nbd_errno_to_nbd(-EFBIG), ==, NBD_ENOSPC);
    g_assert_cmpuint(nbd_errno_to_nbd(-EDQUOT), ==, NBD_ENOSPC);
    g_assert_cmpuint(nbd_errno_to_nbd(-EOVERFLOW), ==, NBD_EOVERFLOW);
    g_assert_cmpuint(nbd_errno_to_nbd(-ENOTSUP), ==, NBD_ENOTSUP);
    g_assert_cmpuint(nbd_errno_to_nbd(-EOPNOTSUPP), ==, NBD_ENOTSUP);
    g_assert_cmpuint(nbd_errno_to_nbd(-ESHUTDOWN), ==, NBD_ESHUTDOWN);
    g_assert_cmpuint(nbd_errno_to_nbd(-EINVAL), ==, NBD_EINVAL);
    g_assert_cmpuint(nbd_errno_to_nbd(-ENOENT), ==, NBD_EINVAL);
    g_assert_cmpuint(nbd_errno_to_nbd(-EBADF), ==, NBD_EINVAL);
}

static void test_encode(void)
{
    uint8_t s[NBD_SIMPLE_REPLY_SIZE], c[NBD_STRUCTURED_REPLY_SIZE];

    nbd_encode_simple_reply(s, NBD_EIO, 0x0102030405060708ULL);
    g_assert_cmphex(ldl_be(s), ==, NBD_SIMPLE_REPLY_MAGIC);
    g_assert_cmpuint(ldl_be(s + 4), ==, NBD_EIO);
    g_assert_cmphex(ldq_be(s + 8), ==, 0x0102030405060708ULL);

    nbd_encode_chunk_header(c, NBD_REPLY_FLAG_DONE,
                            NBD_REPLY_TYPE_BLOCK_STATUS, 42, 12);
    g_assert_cmphex(ldl_be(c), ==, NBD_STRUCTURED_REPLY_MAGIC);
    g_assert_cmpuint(ldw_be(c + 4), ==, NBD_REPLY_FLAG_DONE);
    g_assert_cmpuint(ldw_be(c + 6), ==, NBD_REPLY_TYPE_BLOCK_STATUS);
    g_assert_cmpuint(ldq_be(c + 8), ==, 42);
    g_assert_cmpuint(ldl_be(c + 16), ==, 12);
}

/* ---- Metadata context matching ----------------------------------------- */

static NbdExport *fake_export(bool depth, const char *const *bitmaps)
{
    NbdExport *exp = g_new0(NbdExport, 1);
    GArray *a = g_array_new(FALSE, TRUE, sizeof(NbdMetaContext));
    NbdMetaContext ctx = { .name = g_strdup(NBD_CTX_BASE_ALLOCATION),
                           .kind = NBD_META_BASE_ALLOCATION };

    g_array_append_val(a, ctx);
    if (depth) {
        ctx.name = g_strdup(NBD_CTX_ALLOCATION_DEPTH);
        ctx.kind = NBD_META_ALLOCATION_DEPTH;
        g_array_append_val(a, ctx);
    }
    for (int i = 0; bitmaps && bitmaps[i]; i++) {
        ctx.name = g_strconcat(NBD_CTX_DIRTY_BITMAP_PREFIX, bitmaps[i], NULL);
        ctx.kind = NBD_META_BITMAP;
        g_array_append_val(a, ctx);
    }
    exp->n_contexts = a->len;
    exp->contexts = (NbdMetaContext *)g_array_free(a, FALSE);
    return exp;
}

static void free_fake_export(NbdExport *exp)
{
    for (unsigned i = 0; i < exp->n_contexts; i++) {
        g_free(exp->contexts[i].name);
    }
    g_free(exp->contexts);
    g_free(exp);
}

/* The names selected by @query, joined with ',' (for compact asserts). */
static char *match(NbdExport *exp, const char *query, bool list)
{
    g_autofree bool *sel = g_new0(bool, exp->n_contexts);
    GString *s = g_string_new("");

    nbd_meta_match(exp, query, strlen(query), list, sel);
    for (unsigned i = 0; i < exp->n_contexts; i++) {
        if (sel[i]) {
            g_string_append_printf(s, "%s%s", s->len ? "," : "",
                                   exp->contexts[i].name);
        }
    }
    return g_string_free(s, FALSE);
}

#define ASSERT_MATCH(exp, q, list, want) do {          \
        g_autofree char *got_ = match(exp, q, list);   \
        g_assert_cmpstr(got_, ==, want);               \
    } while (0)

static void test_meta_match(void)
{
    static const char *const bitmaps[] = { "b0", "b1", NULL };
    NbdExport *exp = fake_export(true, bitmaps);
    NbdExport *plain = fake_export(false, NULL);

    /* Exact names, LIST and SET alike. */
    for (int list = 0; list < 2; list++) {
        ASSERT_MATCH(exp, "base:allocation", list, "base:allocation");
        ASSERT_MATCH(exp, "qemu:allocation-depth", list,
                     "qemu:allocation-depth");
        ASSERT_MATCH(exp, "qemu:dirty-bitmap:b1", list,
                     "qemu:dirty-bitmap:b1");
        ASSERT_MATCH(exp, "qemu:dirty-bitmap:b2", list, "");
        ASSERT_MATCH(exp, "qemu:dirty-bitmap:b", list, "");
        ASSERT_MATCH(exp, "base:allocationx", list, "");
        ASSERT_MATCH(exp, "x-other:thing", list, "");
        ASSERT_MATCH(exp, "", list, "");
        ASSERT_MATCH(plain, "qemu:allocation-depth", list, "");
    }
    /* Namespace queries select everything in them, for LIST only. */
    ASSERT_MATCH(exp, "base:", true, "base:allocation");
    ASSERT_MATCH(exp, "qemu:", true,
                 "qemu:allocation-depth,qemu:dirty-bitmap:b0,"
                 "qemu:dirty-bitmap:b1");
    ASSERT_MATCH(exp, "qemu:dirty-bitmap:", true,
                 "qemu:dirty-bitmap:b0,qemu:dirty-bitmap:b1");
    ASSERT_MATCH(plain, "qemu:", true, "");
    ASSERT_MATCH(exp, "base:", false, "");
    ASSERT_MATCH(exp, "qemu:", false, "");
    ASSERT_MATCH(exp, "qemu:dirty-bitmap:", false, "");
    ASSERT_MATCH(exp, "qemu", true, "");

    free_fake_export(exp);
    free_fake_export(plain);
}

static void test_meta_match_bounds(void)
{
    NbdExport *exp = fake_export(true, NULL);
    g_autofree bool *sel = g_new0(bool, exp->n_contexts);
    g_autofree char *big = g_malloc(NBD_MAX_STRING_SIZE + 2);
    static const char with_nul[] = "base:allocation\0x";

    memset(big, 'a', NBD_MAX_STRING_SIZE + 1);
    big[NBD_MAX_STRING_SIZE + 1] = '\0';
    g_assert_false(nbd_meta_match(exp, big, strlen(big), true, sel));
    g_assert_false(nbd_meta_match(exp, with_nul, sizeof(with_nul) - 1,
                                  false, sel));
    g_assert_false(sel[0] || sel[1]);
    free_fake_export(exp);
}

/* ---- Extents ------------------------------------------------------------ */

static void test_extents_merge(void)
{
    NbdExtents ex;

    nbd_extents_init(&ex, 10000, NBD_MAX_EXTENTS);
    g_assert_true(nbd_extents_add(&ex, 1000, 0));
    g_assert_true(nbd_extents_add(&ex, 1000, 0));
    g_assert_true(nbd_extents_add(&ex, 500, 3));
    g_assert_true(nbd_extents_add(&ex, 500, 0));
    g_assert_cmpuint(ex.count, ==, 3);
    g_assert_cmpuint(ex.pairs[0], ==, 2000);
    g_assert_cmpuint(ex.pairs[1], ==, 0);
    g_assert_cmpuint(ex.pairs[2], ==, 500);
    g_assert_cmpuint(ex.pairs[3], ==, 3);
    /* Clipped at the limit, and then it says stop. */
    g_assert_false(nbd_extents_add(&ex, 1u << 30, 0));
    g_assert_cmpuint(ex.total, ==, 10000);
    g_assert_cmpuint(ex.pairs[4], ==, 7500);     /* merged */
    g_assert_false(nbd_extents_add(&ex, 1, 1));
    g_assert_cmpuint(ex.count, ==, 3);
    nbd_extents_clear(&ex);
}

static void test_extents_req_one(void)
{
    NbdExtents ex;

    nbd_extents_init(&ex, 1u << 20, 1);
    g_assert_true(nbd_extents_add(&ex, 4096, 1));
    g_assert_true(nbd_extents_add(&ex, 4096, 1));    /* merges */
    g_assert_false(nbd_extents_add(&ex, 4096, 0));   /* full */
    g_assert_cmpuint(ex.count, ==, 1);
    g_assert_cmpuint(ex.pairs[0], ==, 8192);
    g_assert_cmpuint(ex.total, ==, 8192);
    nbd_extents_clear(&ex);
}

static void test_extents_many(void)
{
    NbdExtents ex;
    uint32_t n = 0;

    nbd_extents_init(&ex, UINT32_MAX, 1000);
    while (nbd_extents_add(&ex, 512, n & 1)) {
        n++;
    }
    g_assert_cmpuint(ex.count, ==, 1000);
    g_assert_cmpuint(ex.total, ==, 1000 * 512);
    for (uint32_t i = 0; i < ex.count; i++) {
        g_assert_cmpuint(ex.pairs[2 * i], ==, 512);
        g_assert_cmpuint(ex.pairs[2 * i + 1], ==, i & 1);
    }
    nbd_extents_clear(&ex);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/nbd/request/table", test_request_table);
    g_test_add_func("/nbd/request/flag-matrix", test_flag_matrix);
    g_test_add_func("/nbd/request/range-sweep", test_range_sweep);
    g_test_add_func("/nbd/request/decode", test_decode);
    g_test_add_func("/nbd/reply/errno-map", test_errno_map);
    g_test_add_func("/nbd/reply/encode", test_encode);
    g_test_add_func("/nbd/meta/match", test_meta_match);
    g_test_add_func("/nbd/meta/match-bounds", test_meta_match_bounds);
    g_test_add_func("/nbd/extents/merge", test_extents_merge);
    g_test_add_func("/nbd/extents/req-one", test_extents_req_one);
    g_test_add_func("/nbd/extents/many", test_extents_many);
    return g_test_run();
}
