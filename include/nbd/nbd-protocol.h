/*
 * NBD wire constants: magics, handshake and transmission flags, option
 * and reply types, commands, error numbers and the limits this server
 * enforces.  Values are those of the NBD protocol document (fixed
 * newstyle, structured replies, metadata contexts, INFO/GO extension)
 * and, for the qemu: namespace, QEMU's interop notes.  Everything on the
 * wire is big-endian.  See docs/interop/nbd.md for the subset we serve.
 */
#ifndef NBD_NBD_PROTOCOL_H
#define NBD_NBD_PROTOCOL_H

#include <stdint.h>

/* Greeting and option haggling. */
#define NBD_INIT_MAGIC 0x4e42444d41474943ULL     /* "NBDMAGIC" */
#define NBD_OPTS_MAGIC 0x49484156454f5054ULL     /* "IHAVEOPT" */
#define NBD_REP_MAGIC 0x0003e889045565a9ULL      /* option replies */

/* Handshake flags (server, 16 bits). */
#define NBD_FLAG_FIXED_NEWSTYLE (1u << 0)
#define NBD_FLAG_NO_ZEROES (1u << 1)

/* Client flags (32 bits). */
#define NBD_FLAG_C_FIXED_NEWSTYLE (1u << 0)
#define NBD_FLAG_C_NO_ZEROES (1u << 1)
#define NBD_FLAG_C_MASK (NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES)

/* Transmission flags (16 bits). */
#define NBD_FLAG_HAS_FLAGS (1u << 0)
#define NBD_FLAG_READ_ONLY (1u << 1)
#define NBD_FLAG_SEND_FLUSH (1u << 2)
#define NBD_FLAG_SEND_FUA (1u << 3)
#define NBD_FLAG_ROTATIONAL (1u << 4)
#define NBD_FLAG_SEND_TRIM (1u << 5)
#define NBD_FLAG_SEND_WRITE_ZEROES (1u << 6)
#define NBD_FLAG_SEND_DF (1u << 7)
#define NBD_FLAG_CAN_MULTI_CONN (1u << 8)
#define NBD_FLAG_SEND_RESIZE (1u << 9)
#define NBD_FLAG_SEND_CACHE (1u << 10)
#define NBD_FLAG_SEND_FAST_ZERO (1u << 11)

/* Options. */
#define NBD_OPT_EXPORT_NAME 1
#define NBD_OPT_ABORT 2
#define NBD_OPT_LIST 3
#define NBD_OPT_PEEK_EXPORT 4
#define NBD_OPT_STARTTLS 5
#define NBD_OPT_INFO 6
#define NBD_OPT_GO 7
#define NBD_OPT_STRUCTURED_REPLY 8
#define NBD_OPT_LIST_META_CONTEXT 9
#define NBD_OPT_SET_META_CONTEXT 10

/* Option reply types; errors have bit 31 set. */
#define NBD_REP_ACK 1
#define NBD_REP_SERVER 2
#define NBD_REP_INFO 3
#define NBD_REP_META_CONTEXT 4
#define NBD_REP_FLAG_ERROR (1u << 31)
#define NBD_REP_ERR_UNSUP (NBD_REP_FLAG_ERROR | 1)
#define NBD_REP_ERR_POLICY (NBD_REP_FLAG_ERROR | 2)
#define NBD_REP_ERR_INVALID (NBD_REP_FLAG_ERROR | 3)
#define NBD_REP_ERR_PLATFORM (NBD_REP_FLAG_ERROR | 4)
#define NBD_REP_ERR_TLS_REQD (NBD_REP_FLAG_ERROR | 5)
#define NBD_REP_ERR_UNKNOWN (NBD_REP_FLAG_ERROR | 6)
#define NBD_REP_ERR_SHUTDOWN (NBD_REP_FLAG_ERROR | 7)
#define NBD_REP_ERR_BLOCK_SIZE_REQD (NBD_REP_FLAG_ERROR | 8)
#define NBD_REP_ERR_TOO_BIG (NBD_REP_FLAG_ERROR | 9)

/* Information types in NBD_REP_INFO (INFO/GO). */
#define NBD_INFO_EXPORT 0
#define NBD_INFO_NAME 1
#define NBD_INFO_DESCRIPTION 2
#define NBD_INFO_BLOCK_SIZE 3

/* Transmission: requests and replies. */
#define NBD_REQUEST_MAGIC 0x25609513u
#define NBD_SIMPLE_REPLY_MAGIC 0x67446698u
#define NBD_STRUCTURED_REPLY_MAGIC 0x668e33efu

#define NBD_REQUEST_SIZE 28         /* magic, flags, type, handle, off, len */
#define NBD_SIMPLE_REPLY_SIZE 16    /* magic, error, handle */
#define NBD_STRUCTURED_REPLY_SIZE 20 /* magic, flags, type, handle, len */

/* Command flags (16 bits). */
#define NBD_CMD_FLAG_FUA (1u << 0)
#define NBD_CMD_FLAG_NO_HOLE (1u << 1)
#define NBD_CMD_FLAG_DF (1u << 2)
#define NBD_CMD_FLAG_REQ_ONE (1u << 3)
#define NBD_CMD_FLAG_FAST_ZERO (1u << 4)

/* Commands. */
#define NBD_CMD_READ 0
#define NBD_CMD_WRITE 1
#define NBD_CMD_DISC 2
#define NBD_CMD_FLUSH 3
#define NBD_CMD_TRIM 4
#define NBD_CMD_CACHE 5
#define NBD_CMD_WRITE_ZEROES 6
#define NBD_CMD_BLOCK_STATUS 7

/* Structured reply flags and chunk types. */
#define NBD_REPLY_FLAG_DONE (1u << 0)
#define NBD_REPLY_TYPE_NONE 0
#define NBD_REPLY_TYPE_OFFSET_DATA 1
#define NBD_REPLY_TYPE_OFFSET_HOLE 2
#define NBD_REPLY_TYPE_BLOCK_STATUS 5
#define NBD_REPLY_TYPE_ERROR ((1u << 15) | 1)
#define NBD_REPLY_TYPE_ERROR_OFFSET ((1u << 15) | 2)

/* Error numbers on the wire (not the host's errno values). */
#define NBD_SUCCESS 0
#define NBD_EPERM 1
#define NBD_EIO 5
#define NBD_ENOMEM 12
#define NBD_EINVAL 22
#define NBD_ENOSPC 28
#define NBD_EOVERFLOW 75
#define NBD_ENOTSUP 95
#define NBD_ESHUTDOWN 108

/* Block status flags: base:allocation. */
#define NBD_STATE_HOLE (1u << 0)
#define NBD_STATE_ZERO (1u << 1)
/* qemu:dirty-bitmap:NAME */
#define NBD_STATE_DIRTY (1u << 0)
/* qemu:allocation-depth reports the depth itself (0 = unallocated). */

/* Metadata context names. */
#define NBD_CTX_BASE_ALLOCATION "base:allocation"
#define NBD_CTX_ALLOCATION_DEPTH "qemu:allocation-depth"
#define NBD_CTX_DIRTY_BITMAP_PREFIX "qemu:dirty-bitmap:"

/* Limits enforced by this server (see docs/interop/nbd.md). */
#define NBD_MAX_STRING_SIZE 4096            /* names, queries, messages */
#define NBD_MAX_PAYLOAD (32u * 1024 * 1024) /* READ/WRITE length */
#define NBD_DRAIN_LIMIT (64u * 1024 * 1024) /* bad WRITE payload skipped */
#define NBD_MAX_OPTION_LENGTH (64u * 1024)  /* option data we parse */
#define NBD_OPTION_DRAIN_LIMIT (16u * 1024 * 1024)
#define NBD_MAX_OPTIONS 1024                /* per handshake */
#define NBD_MAX_META_QUERIES 256            /* per LIST/SET request */
#define NBD_MAX_INFO_REQUESTS 256           /* per INFO/GO request */
#define NBD_MAX_EXTENTS (128 * 1024)        /* per context per reply */
#define NBD_PREFERRED_BLOCK_SIZE 4096

#endif
