/*
 * The migration stream's framing (include/migration/stream.h): preamble,
 * section header, CRC-32 and sequence checks over a blocking GIOStream,
 * and the big-endian payload builder and bounds-checked parser.
 * Layout: docs/interop/migration-stream.rst.
 */
#include "migration/stream.h"
#include "qapi/error.h"
#include "util/bswap.h"

#include <inttypes.h>
#include <string.h>
#include <zlib.h>

struct MigStream {
    GIOStream *io;
    GCancellable *cancel;
    uint32_t send_seq;
    uint32_t recv_seq;
    uint64_t bytes_sent;        /* __atomic */
    uint64_t bytes_received;    /* __atomic */
    GMutex send_lock;           /* one section at a time on the wire */
};

const char *mig_section_name(uint16_t type)
{
    switch (type) {
    case MIG_SEC_NODE: return "NODE";
    case MIG_SEC_BITMAP: return "BITMAP";
    case MIG_SEC_BITMAP_DATA: return "BITMAP_DATA";
    case MIG_SEC_BITMAP_END: return "BITMAP_END";
    case MIG_SEC_CHECKPOINT: return "CHECKPOINT";
    case MIG_SEC_CHECKPOINTS_END: return "CHECKPOINTS_END";
    case MIG_SEC_LIVE_DONE: return "LIVE_DONE";
    case MIG_SEC_SWITCHOVER: return "SWITCHOVER";
    case MIG_SEC_COMPLETE: return "COMPLETE";
    case MIG_SEC_ERROR: return "ERROR";
    case MIG_SEC_LIVE_OK: return "LIVE_OK";
    case MIG_SEC_ACTIVATED: return "ACTIVATED";
    default: return "unknown";
    }
}

/* ---- Payload builder ---- */

void mig_buf_init(MigBuf *b)
{
    b->data = g_byte_array_new();
}

void mig_buf_free(MigBuf *b)
{
    if (b->data) {
        g_byte_array_unref(b->data);
        b->data = NULL;
    }
}

void mig_put_bytes(MigBuf *b, const void *p, size_t len)
{
    g_byte_array_append(b->data, p, (guint)len);
}

void mig_put_u8(MigBuf *b, uint8_t v)
{
    mig_put_bytes(b, &v, 1);
}

void mig_put_u16(MigBuf *b, uint16_t v)
{
    uint8_t x[2];

    stw_be(x, v);
    mig_put_bytes(b, x, sizeof(x));
}

void mig_put_u32(MigBuf *b, uint32_t v)
{
    uint8_t x[4];

    stl_be(x, v);
    mig_put_bytes(b, x, sizeof(x));
}

void mig_put_u64(MigBuf *b, uint64_t v)
{
    uint8_t x[8];

    stq_be(x, v);
    mig_put_bytes(b, x, sizeof(x));
}

void mig_put_str(MigBuf *b, const char *s)
{
    size_t len = strlen(s);

    g_assert(len <= MIG_NAME_MAX);
    mig_put_u16(b, (uint16_t)len);
    mig_put_bytes(b, s, len);
}

/* ---- Payload parser ---- */

void mig_rd_init(MigReader *r, const char *what, const uint8_t *p,
                 size_t len)
{
    r->p = p;
    r->len = len;
    r->pos = 0;
    r->failed = false;
    r->what = what;
}

const uint8_t *mig_get_bytes(MigReader *r, size_t len)
{
    const uint8_t *p;

    if (r->failed || len > r->len - r->pos) {
        r->failed = true;
        return NULL;
    }
    p = r->p + r->pos;
    r->pos += len;
    return p;
}

uint8_t mig_get_u8(MigReader *r)
{
    const uint8_t *p = mig_get_bytes(r, 1);

    return p ? p[0] : 0;
}

uint16_t mig_get_u16(MigReader *r)
{
    const uint8_t *p = mig_get_bytes(r, 2);

    return p ? ldw_be(p) : 0;
}

uint32_t mig_get_u32(MigReader *r)
{
    const uint8_t *p = mig_get_bytes(r, 4);

    return p ? ldl_be(p) : 0;
}

uint64_t mig_get_u64(MigReader *r)
{
    const uint8_t *p = mig_get_bytes(r, 8);

    return p ? ldq_be(p) : 0;
}

char *mig_get_str(MigReader *r)
{
    uint16_t len = mig_get_u16(r);
    const uint8_t *p;

    if (r->failed || len == 0 || len > MIG_NAME_MAX) {
        r->failed = true;
        return NULL;
    }
    p = mig_get_bytes(r, len);
    if (!p || memchr(p, 0, len)) {
        r->failed = true;
        return NULL;
    }
    return g_strndup((const char *)p, len);
}

const uint8_t *mig_get_rest(MigReader *r, size_t *len)
{
    *len = r->failed ? 0 : r->len - r->pos;
    return mig_get_bytes(r, *len);
}

bool mig_rd_finish(MigReader *r, GError **errp)
{
    if (r->failed) {
        error_setg(errp, "Malformed %s section in the migration stream",
                   r->what);
        return false;
    }
    if (r->pos != r->len) {
        error_setg(errp, "%s section of the migration stream has %zu "
                   "unexpected trailing bytes", r->what, r->len - r->pos);
        return false;
    }
    return true;
}

/* ---- Stream ---- */

MigStream *mig_stream_new(GIOStream *io)
{
    MigStream *s = g_new0(MigStream, 1);

    s->io = g_object_ref(io);
    s->cancel = g_cancellable_new();
    g_mutex_init(&s->send_lock);
    return s;
}

void mig_stream_free(MigStream *s)
{
    if (!s) {
        return;
    }
    g_io_stream_close(s->io, NULL, NULL);
    g_object_unref(s->io);
    g_object_unref(s->cancel);
    g_mutex_clear(&s->send_lock);
    g_free(s);
}

void mig_stream_cancel(MigStream *s)
{
    g_cancellable_cancel(s->cancel);
}

bool mig_stream_cancelled(MigStream *s)
{
    return g_cancellable_is_cancelled(s->cancel);
}

void mig_stream_set_timeout(MigStream *s, unsigned seconds)
{
    if (G_IS_SOCKET_CONNECTION(s->io)) {
        g_socket_set_timeout(g_socket_connection_get_socket(
                                 G_SOCKET_CONNECTION(s->io)), seconds);
    }
}

uint64_t mig_stream_bytes_sent(MigStream *s)
{
    return __atomic_load_n(&s->bytes_sent, __ATOMIC_RELAXED);
}

uint64_t mig_stream_bytes_received(MigStream *s)
{
    return __atomic_load_n(&s->bytes_received, __ATOMIC_RELAXED);
}

/* All of @v, counted in bytes_sent (what went out before an error too). */
static bool write_vectors(MigStream *s, GOutputVector *v, gsize n,
                          GError **errp)
{
    GOutputStream *out = g_io_stream_get_output_stream(s->io);
    gsize done = 0;
    g_autoptr(GError) err = NULL;
    bool ok = g_output_stream_writev_all(out, v, n, &done, s->cancel, &err);

    __atomic_add_fetch(&s->bytes_sent, done, __ATOMIC_RELAXED);
    if (!ok) {
        if (g_error_matches(err, G_IO_ERROR, G_IO_ERROR_CANCELLED)) {
            error_setg(errp, "Migration stream closed");
        } else {
            error_setg(errp, "Failed to write the migration stream: %s",
                       err->message);
        }
    }
    return ok;
}

static bool write_all(MigStream *s, const void *buf, size_t len,
                      GError **errp)
{
    GOutputVector v = { buf, len };

    return write_vectors(s, &v, 1, errp);
}

/* Header and payload in one system call where possible. */
static bool write_section(MigStream *s, const uint8_t *h, const void *payload,
                          size_t len, GError **errp)
{
    GOutputVector v[2] = {
        { h, MIG_SECTION_HEADER_SIZE }, { payload, len },
    };

    return write_vectors(s, v, len ? 2 : 1, errp);
}

/* Read exactly @len bytes; a clean EOF before them is "ended". */
static bool read_all(MigStream *s, void *buf, size_t len, const char *what,
                     GError **errp)
{
    GInputStream *in = g_io_stream_get_input_stream(s->io);
    gsize done = 0;
    g_autoptr(GError) err = NULL;

    if (!g_input_stream_read_all(in, buf, len, &done, s->cancel, &err)) {
        if (g_error_matches(err, G_IO_ERROR, G_IO_ERROR_CANCELLED)) {
            error_setg(errp, "Migration stream closed");
        } else {
            error_setg(errp, "Failed to read the migration stream: %s",
                       err->message);
        }
        return false;
    }
    __atomic_add_fetch(&s->bytes_received, done, __ATOMIC_RELAXED);
    if (done == 0) {
        error_setg(errp, "Migration stream closed by the peer");
        return false;
    }
    if (done < len) {
        error_setg(errp, "Migration stream ended unexpectedly in %s "
                   "(%zu of %zu bytes)", what, (size_t)done, len);
        return false;
    }
    return true;
}

bool mig_stream_send_preamble(MigStream *s, const char *magic, GError **errp)
{
    uint8_t p[MIG_PREAMBLE_SIZE];

    memcpy(p, magic, MIG_STREAM_MAGIC_LEN);
    stl_be(p + 8, MIG_STREAM_VERSION);
    stl_be(p + 12, (uint32_t)crc32(0, p, 12));
    return write_all(s, p, sizeof(p), errp);
}

bool mig_stream_recv_preamble(MigStream *s, const char *magic, GError **errp)
{
    uint8_t p[MIG_PREAMBLE_SIZE];
    uint32_t version;

    if (!read_all(s, p, sizeof(p), "the preamble", errp)) {
        return false;
    }
    if (memcmp(p, magic, MIG_STREAM_MAGIC_LEN)) {
        error_setg(errp, "The peer does not speak the blockpoint migration "
                   "stream (expected magic '%s')", magic);
        return false;
    }
    if (ldl_be(p + 12) != (uint32_t)crc32(0, p, 12)) {
        error_setg(errp, "Migration stream preamble checksum mismatch");
        return false;
    }
    version = ldl_be(p + 8);
    if (version != MIG_STREAM_VERSION) {
        error_setg(errp, "Unsupported migration stream version %" PRIu32
                   " (this daemon supports version %d)", version,
                   MIG_STREAM_VERSION);
        return false;
    }
    return true;
}

uint32_t mig_section_crc(const uint8_t *header, const uint8_t *payload,
                         size_t len)
{
    uLong crc = crc32(0, header, 12);

    if (len) {
        crc = crc32(crc, payload, (uInt)len);
    }
    return (uint32_t)crc;
}

bool mig_stream_send(MigStream *s, MigSectionType type, const void *payload,
                     size_t len, GError **errp)
{
    uint8_t h[MIG_SECTION_HEADER_SIZE];
    bool ok;

    g_assert(len <= MIG_SECTION_MAX_PAYLOAD);
    g_mutex_lock(&s->send_lock);
    stw_be(h, (uint16_t)type);
    stw_be(h + 2, 0);
    stl_be(h + 4, s->send_seq++);
    stl_be(h + 8, (uint32_t)len);
    stl_be(h + 12, mig_section_crc(h, payload, len));
    ok = write_section(s, h, payload, len, errp);
    g_mutex_unlock(&s->send_lock);
    return ok;
}

bool mig_stream_send_buf(MigStream *s, MigSectionType type, MigBuf *b,
                         GError **errp)
{
    return mig_stream_send(s, type, b->data->data, b->data->len, errp);
}

void mig_stream_send_error(MigStream *s, const char *message)
{
    MigBuf b;
    g_autofree char *msg = g_strndup(message, MIG_NAME_MAX);

    if (!msg[0]) {
        return;
    }
    mig_buf_init(&b);
    mig_put_str(&b, msg);
    mig_stream_send_buf(s, MIG_SEC_ERROR, &b, NULL);
    mig_buf_free(&b);
}

void mig_section_clear(MigSection *sec)
{
    g_free(sec->payload);
    memset(sec, 0, sizeof(*sec));
}

bool mig_stream_recv(MigStream *s, MigSection *sec, GError **errp)
{
    uint8_t h[MIG_SECTION_HEADER_SIZE];
    uint32_t len, seq;
    uint16_t flags;

    memset(sec, 0, sizeof(*sec));
    if (!read_all(s, h, sizeof(h), "a section header", errp)) {
        return false;
    }
    sec->type = ldw_be(h);
    flags = ldw_be(h + 2);
    seq = ldl_be(h + 4);
    len = ldl_be(h + 8);
    /* Check the length before trusting anything else in the header. */
    if (len > MIG_SECTION_MAX_PAYLOAD) {
        error_setg(errp, "Migration stream section %" PRIu32 " claims %"
                   PRIu32 " bytes of payload (at most %d allowed)",
                   s->recv_seq, len, MIG_SECTION_MAX_PAYLOAD);
        return false;
    }
    if (len) {
        sec->payload = g_try_malloc(len);
        if (!sec->payload) {
            error_setg(errp, "Not enough memory for a migration stream "
                       "section of %" PRIu32 " bytes", len);
            return false;
        }
        if (!read_all(s, sec->payload, len, "a section payload", errp)) {
            mig_section_clear(sec);
            return false;
        }
    }
    sec->len = len;
    sec->seq = seq;
    if (ldl_be(h + 12) != mig_section_crc(h, sec->payload, len)) {
        error_setg(errp, "Migration stream section %" PRIu32 " (%s, %"
                   PRIu32 " bytes) is corrupt: checksum mismatch",
                   s->recv_seq, mig_section_name(sec->type), len);
        mig_section_clear(sec);
        return false;
    }
    if (seq != s->recv_seq) {
        error_setg(errp, "Migration stream section out of sequence: got %"
                   PRIu32 ", expected %" PRIu32, seq, s->recv_seq);
        mig_section_clear(sec);
        return false;
    }
    if (flags) {
        error_setg(errp, "Migration stream section %" PRIu32 " has unknown "
                   "flags 0x%x", seq, flags);
        mig_section_clear(sec);
        return false;
    }
    s->recv_seq++;
    return true;
}
