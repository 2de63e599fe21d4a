/*
 * The migration stream: preamble, section framing and payload encoding.
 * Byte layout and rules: docs/interop/migration-stream.rst (the section
 * numbers in comments below refer to it).
 *
 * A MigStream wraps one connected GIOStream.  Each direction has its own
 * preamble and its own sequence of sections; every section is
 * length-checked and carries a CRC-32 over its header and payload, and a
 * sequence number, so that a truncated, reordered or corrupted stream is
 * detected at the first bad section.  Blocking I/O: one thread reads and
 * one thread (possibly the same) writes; mig_stream_cancel() makes both
 * fail at once from any thread.
 */
#ifndef MIGRATION_STREAM_H
#define MIGRATION_STREAM_H

#include <gio/gio.h>
#include <stdbool.h>
#include <stdint.h>

/* "Preamble" */
#define MIG_STREAM_MAGIC_SOURCE "BPMIGSRC"
#define MIG_STREAM_MAGIC_DEST "BPMIGDST"
#define MIG_STREAM_MAGIC_LEN 8
#define MIG_STREAM_VERSION 1
#define MIG_PREAMBLE_SIZE 16

/* "Section header" */
#define MIG_SECTION_HEADER_SIZE 16
/* Largest payload a receiver accepts (a data section holds at most
 * MIG_DATA_CHUNK bytes of bitmap data plus its fixed fields). */
#define MIG_SECTION_MAX_PAYLOAD (2 * 1024 * 1024)
#define MIG_DATA_CHUNK (1024 * 1024)

/* Longest name (node alias, bitmap alias, checkpoint) in a payload. */
#define MIG_NAME_MAX 1023

/* "Section types" */
typedef enum MigSectionType {
    /* source -> destination */
    MIG_SEC_NODE = 1,
    MIG_SEC_BITMAP = 2,
    MIG_SEC_BITMAP_DATA = 3,
    MIG_SEC_BITMAP_END = 4,
    MIG_SEC_CHECKPOINT = 5,
    MIG_SEC_CHECKPOINTS_END = 6,
    MIG_SEC_LIVE_DONE = 7,
    MIG_SEC_SWITCHOVER = 8,
    MIG_SEC_COMPLETE = 9,
    /* either direction */
    MIG_SEC_ERROR = 10,
    /* destination -> source */
    MIG_SEC_LIVE_OK = 20,
    MIG_SEC_ACTIVATED = 21,
} MigSectionType;

const char *mig_section_name(uint16_t type);

/* BITMAP and BITMAP_END flags. */
#define MIG_BITMAP_RECORDING 0x1
#define MIG_BITMAP_PERSISTENT 0x2
#define MIG_BITMAP_KNOWN_FLAGS 0x3

/* BITMAP_DATA encodings. */
#define MIG_DATA_RAW 0
#define MIG_DATA_ZEROES 1
#define MIG_DATA_ONES 2

/* CHECKPOINT: parent index of the oldest checkpoint. */
#define MIG_CKPT_NO_PARENT 0xffffffffU

/* ---- Payload builder and parser ---- */

typedef struct MigBuf {
    GByteArray *data;
} MigBuf;

void mig_buf_init(MigBuf *b);
void mig_buf_free(MigBuf *b);
void mig_put_u8(MigBuf *b, uint8_t v);
void mig_put_u16(MigBuf *b, uint16_t v);
void mig_put_u32(MigBuf *b, uint32_t v);
void mig_put_u64(MigBuf *b, uint64_t v);
void mig_put_bytes(MigBuf *b, const void *p, size_t len);
/* u16 length, then the bytes (no NUL); @s at most MIG_NAME_MAX bytes. */
void mig_put_str(MigBuf *b, const char *s);

/*
 * A cursor over a received payload.  Reads past the end fail and leave
 * the cursor failed; the first failure is reported by mig_rd_finish().
 */
typedef struct MigReader {
    const uint8_t *p;
    size_t len;
    size_t pos;
    bool failed;
    const char *what;      /* section name, for messages */
} MigReader;

void mig_rd_init(MigReader *r, const char *what, const uint8_t *p,
                 size_t len);
uint8_t mig_get_u8(MigReader *r);
uint16_t mig_get_u16(MigReader *r);
uint32_t mig_get_u32(MigReader *r);
uint64_t mig_get_u64(MigReader *r);
/* Pointer to the next @len bytes, or NULL. */
const uint8_t *mig_get_bytes(MigReader *r, size_t len);
/* A new string (1..MIG_NAME_MAX bytes, no NUL inside), or NULL. */
char *mig_get_str(MigReader *r);
/* Everything left in the payload (may be 0 bytes). */
const uint8_t *mig_get_rest(MigReader *r, size_t *len);
/* False with an error if a read failed or bytes are left over. */
bool mig_rd_finish(MigReader *r, GError **errp);

/* ---- The stream ---- */

typedef struct MigStream MigStream;

typedef struct MigSection {
    uint16_t type;
    uint32_t seq;
    uint8_t *payload;      /* owned; NULL when empty */
    uint32_t len;
} MigSection;

void mig_section_clear(MigSection *sec);

/* Takes a reference to @io. */
MigStream *mig_stream_new(GIOStream *io);
void mig_stream_free(MigStream *s);

/* Make every pending and future read or write fail (any thread). */
void mig_stream_cancel(MigStream *s);
bool mig_stream_cancelled(MigStream *s);

/* Send our preamble; read and check the peer's. */
bool mig_stream_send_preamble(MigStream *s, const char *magic,
                              GError **errp);
bool mig_stream_recv_preamble(MigStream *s, const char *magic,
                              GError **errp);

bool mig_stream_send(MigStream *s, MigSectionType type, const void *payload,
                     size_t len, GError **errp);
bool mig_stream_send_buf(MigStream *s, MigSectionType type, MigBuf *b,
                         GError **errp);
/* Send ERROR with @message (best effort: failures are ignored). */
void mig_stream_send_error(MigStream *s, const char *message);

/*
 * Read the next section: header checks, payload, CRC, sequence number.
 * An ERROR section from the peer is returned like any other.
 */
bool mig_stream_recv(MigStream *s, MigSection *sec, GError **errp);

/* Give up reads and writes after @seconds of silence (0: never). */
void mig_stream_set_timeout(MigStream *s, unsigned seconds);

/* Bytes sent and received so far, preambles included (any thread). */
uint64_t mig_stream_bytes_sent(MigStream *s);
uint64_t mig_stream_bytes_received(MigStream *s);

/* CRC-32 of a section: header bytes 0..11, then the payload. */
uint32_t mig_section_crc(const uint8_t *header, const uint8_t *payload,
                         size_t len);

#endif
