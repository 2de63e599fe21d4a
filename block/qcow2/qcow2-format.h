/*
 * qcow2 on-disk layout: magic numbers, header field offsets, feature bits,
 * table entry masks and our implementation limits.  Section names in the
 * comments refer to docs/interop/qcow2.md.  Nothing here holds state.
 */
#ifndef BLOCK_QCOW2_FORMAT_H
#define BLOCK_QCOW2_FORMAT_H

#include <stdint.h>

/* "Header": magic is "QFI\xfb". */
#define QCOW2_MAGIC 0x514649fbU

/* "Header": byte offsets of the fixed fields (all big-endian). */
#define QCOW2_HDR_MAGIC 0
#define QCOW2_HDR_VERSION 4
#define QCOW2_HDR_BACKING_OFFSET 8
#define QCOW2_HDR_BACKING_SIZE 16
#define QCOW2_HDR_CLUSTER_BITS 20
#define QCOW2_HDR_SIZE 24
#define QCOW2_HDR_CRYPT_METHOD 32
#define QCOW2_HDR_L1_SIZE 36
#define QCOW2_HDR_L1_OFFSET 40
#define QCOW2_HDR_REFTABLE_OFFSET 48
#define QCOW2_HDR_REFTABLE_CLUSTERS 56
#define QCOW2_HDR_NB_SNAPSHOTS 60
#define QCOW2_HDR_SNAPSHOTS_OFFSET 64
/* Version 3 fields. */
#define QCOW2_HDR_INCOMPAT 72
#define QCOW2_HDR_COMPAT 80
#define QCOW2_HDR_AUTOCLEAR 88
#define QCOW2_HDR_REFCOUNT_ORDER 96
#define QCOW2_HDR_HEADER_LENGTH 100
/* "Additional fields": one byte, then padding to a multiple of 8. */
#define QCOW2_HDR_COMPRESSION_TYPE 104

#define QCOW2_V2_HEADER_SIZE 72
#define QCOW2_V3_MIN_HEADER_SIZE 104
/* The header length we write for version 3 (through compression_type). */
#define QCOW2_V3_HEADER_SIZE 112

/* "Header", incompatible_features. */
#define QCOW2_INCOMPAT_DIRTY (UINT64_C(1) << 0)
#define QCOW2_INCOMPAT_CORRUPT (UINT64_C(1) << 1)
#define QCOW2_INCOMPAT_DATA_FILE (UINT64_C(1) << 2)
#define QCOW2_INCOMPAT_COMPRESSION (UINT64_C(1) << 3)
#define QCOW2_INCOMPAT_EXTL2 (UINT64_C(1) << 4)
/* Bits we can open (data file and extended L2 are refused with a message). */
#define QCOW2_INCOMPAT_SUPPORTED \
    (QCOW2_INCOMPAT_DIRTY | QCOW2_INCOMPAT_CORRUPT | QCOW2_INCOMPAT_COMPRESSION)

/* "Header", compatible_features. */
#define QCOW2_COMPAT_LAZY_REFCOUNTS (UINT64_C(1) << 0)

/* "Header", autoclear_features. */
#define QCOW2_AUTOCLEAR_BITMAPS (UINT64_C(1) << 0)
#define QCOW2_AUTOCLEAR_DATA_FILE_RAW (UINT64_C(1) << 1)
/*
 * Autoclear bits we understand and therefore keep on a read-write open.
 * TODO(bitmaps): bit 0 is kept as-is until block/qcow2/qcow2-bitmap.c
 * takes over its protocol (clear while bitmaps are in use, set on store).
 */
#define QCOW2_AUTOCLEAR_KNOWN \
    (QCOW2_AUTOCLEAR_BITMAPS | (UINT64_C(1) << 48) /* checkpoints */)

/* "Additional fields": compression_type values. */
#define QCOW2_COMPRESSION_ZLIB 0
#define QCOW2_COMPRESSION_ZSTD 1

/* "Header extensions": types. */
#define QCOW2_EXT_END 0x00000000U
#define QCOW2_EXT_BACKING_FORMAT 0xe2792acaU
#define QCOW2_EXT_FEATURE_TABLE 0x6803f857U
#define QCOW2_EXT_BITMAPS 0x23852875U
#define QCOW2_EXT_CRYPTO 0x0537be77U
#define QCOW2_EXT_DATA_FILE 0x44415441U

/* "Feature name table": one 48-byte entry per feature. */
#define QCOW2_FEATURE_ENTRY_SIZE 48
#define QCOW2_FEATURE_NAME_SIZE 46
#define QCOW2_FEATURE_TYPE_INCOMPAT 0
#define QCOW2_FEATURE_TYPE_COMPAT 1
#define QCOW2_FEATURE_TYPE_AUTOCLEAR 2

/* "Refcounts": reftable entries hold a cluster-aligned offset. */
#define QCOW2_REFT_OFFSET_MASK UINT64_C(0xfffffffffffffe00)
#define QCOW2_REFT_RESERVED_MASK UINT64_C(0x1ff)

/* "Cluster mapping": L1 entries. */
#define QCOW2_L1E_OFFSET_MASK UINT64_C(0x00fffffffffffe00)
#define QCOW2_L1E_RESERVED_MASK UINT64_C(0x7f000000000001ff)

/* "Cluster mapping": L2 entries. */
#define QCOW2_OFLAG_COPIED (UINT64_C(1) << 63)
#define QCOW2_OFLAG_COMPRESSED (UINT64_C(1) << 62)
#define QCOW2_OFLAG_ZERO (UINT64_C(1) << 0)
#define QCOW2_L2E_OFFSET_MASK UINT64_C(0x00fffffffffffe00)
#define QCOW2_L2E_STD_RESERVED_MASK UINT64_C(0x3f000000000001fe)

/*
 * "Compressed clusters": the descriptor splits bits 0..61 at
 * x = 62 - (cluster_bits - 8): offset below, extra sector count above.
 */
#define QCOW2_COMPRESSED_SECTOR_SIZE 512
#define QCOW2_L2E_COMPRESSED_DESC_MASK ((UINT64_C(1) << 62) - 1)

/* Limits ("Our limits" in the spec). */
#define QCOW2_MIN_CLUSTER_BITS 9
#define QCOW2_MAX_CLUSTER_BITS 21
#define QCOW2_MAX_L1_BYTES (32 * 1024 * 1024)
#define QCOW2_MAX_REFTABLE_BYTES (8 * 1024 * 1024)
#define QCOW2_MAX_BACKING_NAME 1023
#define QCOW2_MAX_BACKING_FMT 1023
#define QCOW2_MAX_SNAPSHOTS 65536
#define QCOW2_MAX_REFCOUNT_ORDER 6
/* Largest offset a table entry can express (bits 9..55). */
#define QCOW2_MAX_HOST_OFFSET (UINT64_C(1) << 56)

#endif
