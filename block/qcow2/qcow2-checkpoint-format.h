/*
 * The qcow2 checkpoint table: a header extension that annotates the
 * bitmap directory with the checkpoint chain.  Pure encode/decode between
 * a CheckpointChain and the extension's bytes, and the room it needs in
 * the header cluster; no I/O.  Layout: docs/interop/qcow2-checkpoints.rst.
 */
#ifndef BLOCK_QCOW2_CHECKPOINT_FORMAT_H
#define BLOCK_QCOW2_CHECKPOINT_FORMAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "block/checkpoint.h"

/* "Header extension": type, ASCII "CKPT". */
#define QCOW2_EXT_CHECKPOINTS 0x434b5054U
/* "Autoclear bit": set while the table matches the bitmap directory. */
#define QCOW2_AUTOCLEAR_CHECKPOINTS_BIT 48
#define QCOW2_AUTOCLEAR_CHECKPOINTS \
    (UINT64_C(1) << QCOW2_AUTOCLEAR_CHECKPOINTS_BIT)

/* Every header extension starts with 4 bytes type, 4 bytes length. */
#define QCOW2_CKPT_EXT_HEADER_SIZE 8

/* What QEMU 7.2 writes in the header cluster (qcow2_ckpt_other_bytes()). */
#define QCOW2_CKPT_QEMU_HEADER_SIZE 112
#define QCOW2_CKPT_QEMU_FEATURE_TABLE_SIZE 384  /* 8 names of 48 bytes */
#define QCOW2_CKPT_QEMU_FEATURE_TABLE_MIN_CLUSTER 8192
#define QCOW2_CKPT_QEMU_BITMAPS_EXT_SIZE 24
#define QCOW2_CKPT_QEMU_CRYPTO_EXT_SIZE 16

/* "Table header" (all fields big-endian). */
#define QCOW2_CKPT_TABLE_VERSION 1
#define QCOW2_CKPT_HDR_VERSION 0        /* u16 */
#define QCOW2_CKPT_HDR_RESERVED 2       /* u16, zero */
#define QCOW2_CKPT_HDR_NB_ENTRIES 4     /* u32 */
#define QCOW2_CKPT_HDR_TABLE_SIZE 8     /* u32, header + entries */
#define QCOW2_CKPT_HDR_CRC 12           /* u32, CRC-32 of the table */
#define QCOW2_CKPT_HEADER_SIZE 16

/* "Entries": a fixed part, then the names, padded to 8 bytes. */
#define QCOW2_CKPT_ENT_PARENT 0         /* u32 index, or PARENT_NONE */
#define QCOW2_CKPT_ENT_NAME_SIZE 4      /* u16, 1..1023 */
#define QCOW2_CKPT_ENT_BITMAP_SIZE 6    /* u16, 0: same as the name */
#define QCOW2_CKPT_ENT_CTIME_SEC 8      /* s64, seconds since the epoch */
#define QCOW2_CKPT_ENT_CTIME_NSEC 16    /* u32, < 1000000000 */
#define QCOW2_CKPT_ENT_GRAN_BITS 20     /* u8, 9..31 */
#define QCOW2_CKPT_ENT_FLAGS 21         /* u8 */
#define QCOW2_CKPT_ENT_DAMAGE 22        /* u8, CkptDamage */
#define QCOW2_CKPT_ENT_RESERVED 23      /* u8, zero */
#define QCOW2_CKPT_ENTRY_FIXED_SIZE 24

#define QCOW2_CKPT_PARENT_NONE 0xffffffffU
/* Entry flags: only the newest checkpoint's bitmap records. */
#define QCOW2_CKPT_FLAG_RECORDING 0x01
#define QCOW2_CKPT_FLAGS_KNOWN QCOW2_CKPT_FLAG_RECORDING

/* The table lives in one cluster, at most 2 MiB. */
#define QCOW2_CKPT_TABLE_MAX_SIZE ((size_t)2 * 1024 * 1024)

/*
 * What the header cluster holds besides the checkpoint table, described
 * the way QEMU 7.2 lays it out when it rewrites the header (and it does
 * on every read-write open that clears our autoclear bit: if its layout
 * does not fit the cluster, QEMU refuses to open the image).
 */
typedef struct Qcow2CkptHeaderUse {
    uint64_t cluster_size;
    uint32_t header_length;     /* incl. unknown fields; QEMU writes >= 112 */
    size_t backing_fmt_len;     /* backing format extension data, 0: none */
    size_t data_file_len;       /* external data file extension, 0: none */
    bool crypto;                /* full disk encryption header pointer */
    size_t unknown_ext_bytes;   /* other extensions, headers and padding */
    size_t backing_file_len;    /* backing file name, 0: none */
} Qcow2CkptHeaderUse;

/*
 * The bytes QEMU 7.2 needs in the header cluster besides our table: the
 * header, the extensions it writes (its feature table only for clusters
 * above 4 KiB; the bitmaps extension always, since every checkpoint has a
 * bitmap), the unknown ones, the end marker and the backing file name.
 * The @other_bytes argument below.
 */
uint64_t qcow2_ckpt_other_bytes(const Qcow2CkptHeaderUse *use);

/* Bytes of one entry; @bitmap_len 0 means "same as the name". */
size_t qcow2_ckpt_entry_size(size_t name_len, size_t bitmap_len);
/* Bytes of the encoded table for @chain. */
size_t qcow2_ckpt_table_size(const CheckpointChain *chain);

/*
 * Room for the table's bytes in a header cluster of @cluster_size bytes
 * of which @other_bytes are taken by everything else: the header, the
 * other extensions (with their 8-byte headers and padding), the end
 * marker and the backing file name.  @cluster_size 0 means no cluster
 * limit (QCOW2_CKPT_TABLE_MAX_SIZE).
 */
size_t qcow2_ckpt_table_room(uint64_t cluster_size, uint64_t other_bytes);

/*
 * How many checkpoints with @name_len-byte names and @bitmap_len-byte
 * bitmap names (0: same as the name) fit in that room.
 */
size_t qcow2_ckpt_table_capacity(uint64_t cluster_size, uint64_t other_bytes,
                                 size_t name_len, size_t bitmap_len);

/* CRC-32 (zlib's) of a table, taking its CRC field as zero. */
uint32_t qcow2_ckpt_table_crc(const uint8_t *buf, size_t len);

/*
 * Encode @chain into a new buffer (g_free) of *@len bytes, a multiple of
 * 8: the extension's data.  Fails with "checkpoint table full" if it does
 * not fit the room described by @cluster_size and @other_bytes.
 */
bool qcow2_ckpt_table_encode(const CheckpointChain *chain,
                             uint64_t cluster_size, uint64_t other_bytes,
                             uint8_t **buf, size_t *len, GError **errp);

/*
 * Decode the extension's @len bytes, which are untrusted: every length,
 * name, index and link is checked, and errors name the entry.
 */
CheckpointChain *qcow2_ckpt_table_decode(const uint8_t *buf, size_t len,
                                         GError **errp);

#endif
