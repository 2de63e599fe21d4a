/*
 * The "file" protocol driver: a host file or block device accessed with
 * pread/pwrite (optionally O_DIRECT), holes via SEEK_DATA/SEEK_HOLE,
 * zeroes and discard via fallocate, and image locking with the same OFD
 * lock bytes QEMU uses, so that our tools and QEMU see each other's locks.
 * Every call that moves, reserves or syncs bytes goes through a sys_*
 * wrapper carrying the test fault hook (include/util/fault.h, BP_FAULT).
 */
#include "block/block_int.h"
#include "util/align.h"
#include "util/fault.h"
#include "util/options.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

/*
 * Lock byte layout shared with QEMU: a process that holds permission bit
 * i read-locks byte PERM_BASE + i; one that refuses to share bit i
 * read-locks byte SHARED_BASE + i.  A conflict is another process's lock
 * on the byte we would need to be free.
 */
#define LOCK_PERM_BASE 100
#define LOCK_SHARED_BASE 200
#define PERM_BITS 4

typedef enum {
    LOCKING_AUTO,
    LOCKING_ON,
    LOCKING_OFF,
} LockingMode;

typedef struct {
    int fd;
    bool direct;
    bool is_blockdev;
    LockingMode locking;
    uint64_t perm;       /* what we currently lock */
    uint64_t shared;
    /*
     * Length last seen (fstat) or made (writes, truncate); requests inside
     * it need no fstat.  Atomic: requests run on several threads.
     */
    int64_t known_len;
    /*
     * Buffered writes to one file are serialized by the kernel anyway
     * (the inode lock); taking turns here first makes waiting threads
     * sleep instead of spinning on that lock, which cost a quarter of
     * the CPU of 4 KiB writes from several NBD connections.
     */
    GMutex buffered_write_lock;
} FileState;

static int64_t file_getlength(BlockDriverState *bs);

/*
 * The fault hook's slow path: false with errno set when the call must
 * fail; otherwise *len may have shrunk (a short transfer), kept a
 * multiple of @align so that O_DIRECT still accepts it.
 */
static bool fault_allows(FaultOp op, uint64_t off, size_t *len,
                         uint32_t align)
{
    uint64_t n = *len;
    int ret = fault_config_check(fault_active, op, off, &n);

    if (ret < 0) {
        errno = -ret;
        return false;
    }
    if (n < *len && align > 1) {
        n = MAX(ROUND_DOWN(n, align), MIN(align, *len));
    }
    *len = n;
    return true;
}

static ssize_t sys_pread(int fd, void *buf, size_t len, off_t off,
                         uint32_t align)
{
    if (fault_armed() && !fault_allows(FAULT_OP_READ, off, &len, align)) {
        return -1;
    }
    return pread(fd, buf, len, off);
}

static ssize_t sys_pwrite(int fd, const void *buf, size_t len, off_t off,
                          uint32_t align)
{
    if (fault_armed() && !fault_allows(FAULT_OP_WRITE, off, &len, align)) {
        return -1;
    }
    return pwrite(fd, buf, len, off);
}

static int sys_fdatasync(int fd)
{
    size_t none = 0;

    if (fault_armed() && !fault_allows(FAULT_OP_FLUSH, 0, &none, 1)) {
        return -1;
    }
    return fdatasync(fd);
}

/* fallocate() that allocates or zeroes (not hole punching). */
static int sys_fallocate(int fd, int mode, off_t off, off_t len)
{
    size_t n = len;

    if (fault_armed() && !fault_allows(FAULT_OP_ALLOC, off, &n, 1)) {
        return -1;
    }
    return fallocate(fd, mode, off, len);
}

/* posix_fallocate(): returns the error number, not -1. */
static int sys_posix_fallocate(int fd, off_t off, off_t len)
{
    size_t n = len;

    if (fault_armed() && !fault_allows(FAULT_OP_ALLOC, off, &n, 1)) {
        return errno;
    }
    return posix_fallocate(fd, off, len);
}

/* An ftruncate() event covers [new length, new length]. */
static int sys_ftruncate(int fd, off_t len)
{
    size_t none = 0;

    if (fault_armed() && !fault_allows(FAULT_OP_TRUNCATE, len, &none, 1)) {
        return -1;
    }
    return ftruncate(fd, len);
}

static void file_note_length(FileState *s, int64_t len)
{
    int64_t cur = __atomic_load_n(&s->known_len, __ATOMIC_RELAXED);

    while (len > cur &&
           !__atomic_compare_exchange_n(&s->known_len, &cur, len, false,
                                        __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
    }
}

static const char *const perm_names[PERM_BITS] = {
    "consistent read", "write", "write unchanged", "resize",
};

static int fd_lock_byte(int fd, int64_t off, int type)
{
    struct flock fl = {
        .l_whence = SEEK_SET, .l_start = off, .l_len = 1, .l_type = type,
    };
    return fcntl(fd, F_OFD_SETLK, &fl) == -1 ? -errno : 0;
}

/* Whether another open file description holds a lock on byte @off. */
static int fd_byte_locked_by_other(int fd, int64_t off)
{
    struct flock fl = {
        .l_whence = SEEK_SET, .l_start = off, .l_len = 1, .l_type = F_WRLCK,
    };
    if (fcntl(fd, F_OFD_GETLK, &fl) == -1) {
        return -errno;
    }
    return fl.l_type != F_UNLCK;
}

static bool file_set_perm(BlockDriverState *bs, uint64_t perm,
                          uint64_t shared, GError **errp)
{
    FileState *s = bs->opaque;
    uint64_t unshared = ~shared & BLK_PERM_ALL;

    if (s->locking == LOCKING_OFF) {
        return true;
    }
    /* Check first, so a refused open leaves no lock behind. */
    for (int i = 0; i < PERM_BITS; i++) {
        uint64_t bit = UINT64_C(1) << i;
        if ((perm & bit) &&
            fd_byte_locked_by_other(s->fd, LOCK_SHARED_BASE + i) > 0) {
            error_setg(errp, "Failed to get \"%s\" lock", perm_names[i]);
            error_append_hint(errp, "Is another process using the image "
                              "[%s]?", bs->filename);
            return false;
        }
        if ((unshared & bit) &&
            fd_byte_locked_by_other(s->fd, LOCK_PERM_BASE + i) > 0) {
            error_setg(errp, "Failed to get shared \"%s\" lock",
                       perm_names[i]);
            error_append_hint(errp, "Is another process using the image "
                              "[%s]?", bs->filename);
            return false;
        }
    }
    for (int i = 0; i < PERM_BITS; i++) {
        uint64_t bit = UINT64_C(1) << i;
        int ret = fd_lock_byte(s->fd, LOCK_PERM_BASE + i,
                               (perm & bit) ? F_RDLCK : F_UNLCK);
        if (ret == 0) {
            ret = fd_lock_byte(s->fd, LOCK_SHARED_BASE + i,
                               (unshared & bit) ? F_RDLCK : F_UNLCK);
        }
        if (ret < 0) {
            if (s->locking == LOCKING_AUTO &&
                (ret == -ENOTSUP || ret == -EINVAL)) {
                s->locking = LOCKING_OFF; /* filesystem without locks */
                return true;
            }
            error_setg_errno(errp, -ret, "Failed to lock byte %d",
                             LOCK_PERM_BASE + i);
            return false;
        }
    }
    s->perm = perm;
    s->shared = shared;
    return true;
}

static int file_probe_alignment(FileState *s)
{
    static const uint32_t sizes[] = {512, 1024, 2048, 4096};
    void *buf = NULL;
    int result = 4096;

    if (posix_memalign(&buf, 4096, 4096)) {
        return 4096;
    }
    for (size_t i = 0; i < G_N_ELEMENTS(sizes); i++) {
        if (pread(s->fd, buf, sizes[i], 0) >= 0) {
            result = sizes[i];
            break;
        }
    }
    free(buf);
    return result;
}

static bool take_file_opts(JsonObject *opts, FileState *s, char **filename,
                           GError **errp)
{
    g_autoptr(GError) local_err = NULL;
    g_autofree char *locking = NULL;
    g_autofree char *aio = NULL;

    *filename = opts_take_str(opts, "filename", &local_err);
    if (!local_err) {
        locking = opts_take_str(opts, "locking", &local_err);
    }
    if (!local_err) {
        aio = opts_take_str(opts, "aio", &local_err);
    }
    if (local_err) {
        g_propagate_error(errp, g_steal_pointer(&local_err));
        return false;
    }
    if (!*filename || !**filename) {
        error_setg(errp, "Parameter 'filename' is missing");
        return false;
    }
    if (!locking || !strcmp(locking, "auto")) {
        s->locking = LOCKING_AUTO;
    } else if (!strcmp(locking, "on")) {
        s->locking = LOCKING_ON;
    } else if (!strcmp(locking, "off")) {
        s->locking = LOCKING_OFF;
    } else {
        error_setg(errp, "Parameter 'locking' does not accept value '%s'",
                   locking);
        return false;
    }
    /* Requests already run on worker threads; all modes behave alike. */
    if (aio && strcmp(aio, "threads") && strcmp(aio, "native") &&
        strcmp(aio, "io_uring")) {
        error_setg(errp, "Parameter 'aio' does not accept value '%s'", aio);
        return false;
    }
    if (aio && !strcmp(aio, "native") && !s->direct) {
        error_setg(errp, "aio=native was specified, but it requires "
                   "cache.direct=on, which was not specified.");
        return false;
    }
    return true;
}

static int file_open(BlockDriverState *bs, JsonObject *opts, int flags,
                     GError **errp)
{
    FileState *s = bs->opaque;
    g_autofree char *filename = NULL;
    int oflags = O_CLOEXEC;
    struct stat st;

    s->fd = -1;
    s->direct = !!(flags & BDRV_O_NOCACHE);
    /* Nothing to clear on a failed open: GLib's mutexes hold no resources. */
    g_mutex_init(&s->buffered_write_lock);
    if (!take_file_opts(opts, s, &filename, errp)) {
        return -EINVAL;
    }
    oflags |= (flags & BDRV_O_RDWR) ? O_RDWR : O_RDONLY;
    if (s->direct) {
        oflags |= O_DIRECT;
    }
    s->fd = open(filename, oflags);
    if (s->fd < 0) {
        int err = errno;
        error_setg_errno(errp, err, "Could not open '%s'", filename);
        return -err;
    }
    if (fstat(s->fd, &st) == 0 && S_ISBLK(st.st_mode)) {
        s->is_blockdev = true;
    } else if (fstat(s->fd, &st) == 0 && S_ISDIR(st.st_mode)) {
        error_setg(errp, "'%s' is a directory", filename);
        close(s->fd);
        return -EISDIR;
    }
    g_free(bs->filename);
    bs->filename = g_strdup(filename);
    g_free(bs->exact_filename);
    bs->exact_filename = g_strdup(filename);
    bs->request_alignment = s->direct ? file_probe_alignment(s) : 1;
    bs->max_transfer = 0;
    file_getlength(bs); /* primes known_len */
    return 0;
}

static void file_close(BlockDriverState *bs)
{
    FileState *s = bs->opaque;

    if (s->fd >= 0) {
        close(s->fd); /* drops every OFD lock of this descriptor */
        s->fd = -1;
    }
    g_mutex_clear(&s->buffered_write_lock);
}

/* O_DIRECT needs an aligned buffer; other opens use the caller's. */
static void *bounce_for(FileState *s, BlockDriverState *bs, const void *buf,
                        int64_t bytes)
{
    void *b = NULL;

    if (!s->direct || ((uintptr_t)buf % bs->request_alignment) == 0) {
        return NULL;
    }
    if (posix_memalign(&b, MAX(bs->request_alignment, 4096), bytes)) {
        return NULL;
    }
    return b;
}

static int file_pread(BlockDriverState *bs, int64_t offset, int64_t bytes,
                      void *buf, int flags)
{
    FileState *s = bs->opaque;
    void *bounce = bounce_for(s, bs, buf, bytes);
    uint8_t *p = bounce ? bounce : buf;
    int64_t done = 0;

    while (done < bytes) {
        ssize_t n = sys_pread(s->fd, p + done, bytes - done, offset + done,
                              bs->request_alignment);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            free(bounce);
            return -errno;
        }
        if (n == 0) {
            /* Beyond the end of the file reads as zeroes. */
            memset(p + done, 0, bytes - done);
            break;
        }
        done += n;
    }
    if (bounce) {
        memcpy(buf, bounce, bytes);
        free(bounce);
    }
    return 0;
}

static int file_pwrite(BlockDriverState *bs, int64_t offset, int64_t bytes,
                       const void *buf, int flags)
{
    FileState *s = bs->opaque;
    void *bounce = bounce_for(s, bs, buf, bytes);
    const uint8_t *p = buf;
    int64_t done = 0;

    if (bounce) {
        memcpy(bounce, buf, bytes);
        p = bounce;
    }
    if (!s->direct) {
        g_mutex_lock(&s->buffered_write_lock);
    }
    while (done < bytes) {
        ssize_t n = sys_pwrite(s->fd, p + done, bytes - done,
                               offset + done, bs->request_alignment);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            done = -errno;
            break;
        }
        if (n == 0) {
            done = -EIO;
            break;
        }
        done += n;
    }
    if (!s->direct) {
        g_mutex_unlock(&s->buffered_write_lock);
    }
    free(bounce);
    if (done < 0) {
        return (int)done;
    }
    file_note_length(s, offset + bytes);
    if ((flags & BDRV_REQ_FUA) && sys_fdatasync(s->fd) < 0) {
        return -errno;
    }
    return 0;
}

static int file_pwrite_zeroes(BlockDriverState *bs, int64_t offset,
                              int64_t bytes, int flags)
{
    FileState *s = bs->opaque;
    struct stat st;
    int ret = -ENOTSUP;

    if (s->is_blockdev) {
        uint64_t range[2] = {offset, bytes};
        if ((flags & BDRV_REQ_MAY_UNMAP) &&
            ioctl(s->fd, BLKZEROOUT, range) == 0) {
            return 0;
        }
        return -ENOTSUP;
    }
    if (fstat(s->fd, &st) < 0) {
        return -errno;
    }
    if ((flags & BDRV_REQ_MAY_UNMAP) && offset + bytes <= st.st_size &&
        fallocate(s->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset,
                  bytes) == 0) {
        ret = 0;
    } else if (sys_fallocate(s->fd, FALLOC_FL_ZERO_RANGE, offset,
                             bytes) == 0) {
        ret = 0;
    } else if (errno == ENOSPC || errno == EDQUOT || errno == EIO) {
        /* Writing the zeroes instead would fail as well: report it. */
        ret = -errno;
    } else if (offset >= st.st_size) {
        /* Beyond EOF: growing the file yields zeroes. */
        ret = sys_ftruncate(s->fd, offset + bytes) < 0 ? -errno : 0;
    }
    if (ret == 0) {
        file_note_length(s, offset + bytes);
    }
    if (ret == 0 && (flags & BDRV_REQ_FUA) && sys_fdatasync(s->fd) < 0) {
        return -errno;
    }
    return ret;
}

static int file_pdiscard(BlockDriverState *bs, int64_t offset, int64_t bytes)
{
    FileState *s = bs->opaque;

    if (s->is_blockdev) {
        uint64_t range[2] = {offset, bytes};
        return ioctl(s->fd, BLKDISCARD, range) == 0 ? 0 : -ENOTSUP;
    }
    if (fallocate(s->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset,
                  bytes) < 0) {
        return errno == EOPNOTSUPP ? -ENOTSUP : -errno;
    }
    return 0;
}

static int file_flush(BlockDriverState *bs)
{
    FileState *s = bs->opaque;

    return sys_fdatasync(s->fd) < 0 ? -errno : 0;
}

static int64_t file_getlength(BlockDriverState *bs)
{
    FileState *s = bs->opaque;
    struct stat st;
    int64_t len;

    if (s->is_blockdev) {
        off_t end = lseek(s->fd, 0, SEEK_END);
        len = end < 0 ? -errno : end;
    } else {
        len = fstat(s->fd, &st) < 0 ? -errno : st.st_size;
    }
    if (len >= 0) {
        /* Shrinking (by truncate) resets the cache there. */
        __atomic_store_n(&s->known_len, len, __ATOMIC_RELAXED);
    }
    return len;
}

static int64_t file_cached_length(BlockDriverState *bs)
{
    FileState *s = bs->opaque;
    return __atomic_load_n(&s->known_len, __ATOMIC_RELAXED);
}

static int64_t file_get_allocated_size(BlockDriverState *bs)
{
    FileState *s = bs->opaque;
    struct stat st;

    if (fstat(s->fd, &st) < 0) {
        return -errno;
    }
    return (int64_t)st.st_blocks * 512;
}

static int file_block_status(BlockDriverState *bs, bool want_zero,
                             int64_t offset, int64_t bytes, int64_t *pnum,
                             int64_t *map, BlockDriverState **file)
{
    FileState *s = bs->opaque;
    off_t data, hole;
    int ret = BDRV_BLOCK_DATA;

    *map = offset;
    *file = bs;
    *pnum = bytes;
    if (!want_zero || s->is_blockdev) {
        return BDRV_BLOCK_DATA | BDRV_BLOCK_OFFSET_VALID;
    }
    data = lseek(s->fd, offset, SEEK_DATA);
    if (data < 0 && errno == ENXIO) {
        /* No data from here to EOF: a trailing hole. */
        return BDRV_BLOCK_ZERO | BDRV_BLOCK_OFFSET_VALID;
    } else if (data < 0) {
        return BDRV_BLOCK_DATA | BDRV_BLOCK_OFFSET_VALID;
    }
    if (data > offset) {
        *pnum = MIN(bytes, data - offset);
        return BDRV_BLOCK_ZERO | BDRV_BLOCK_OFFSET_VALID;
    }
    hole = lseek(s->fd, offset, SEEK_HOLE);
    if (hole > offset) {
        *pnum = MIN(bytes, hole - offset);
    }
    return ret | BDRV_BLOCK_OFFSET_VALID;
}

static int file_truncate(BlockDriverState *bs, int64_t offset, bool exact,
                         PreallocMode prealloc, GError **errp)
{
    FileState *s = bs->opaque;
    int64_t cur = file_getlength(bs);

    if (s->is_blockdev) {
        if (offset > cur || (exact && offset != cur)) {
            error_setg(errp, "Cannot grow device files");
            return -EINVAL;
        }
        return 0;
    }
    if (!exact && offset <= cur) {
        return 0;
    }
    if (sys_ftruncate(s->fd, offset) < 0) {
        int err = errno;
        error_setg_errno(errp, err, "Failed to resize file");
        return -err;
    }
    __atomic_store_n(&s->known_len, offset, __ATOMIC_RELAXED);
    if (offset > cur && prealloc == PREALLOC_MODE_FALLOC &&
        sys_posix_fallocate(s->fd, cur, offset - cur) != 0) {
        error_setg(errp, "Could not preallocate new data");
        return -EIO;
    }
    if (offset > cur && prealloc == PREALLOC_MODE_FULL) {
        g_autofree uint8_t *z = g_malloc0(1 << 20);
        for (int64_t o = cur; o < offset; o += 1 << 20) {
            int64_t n = MIN(1 << 20, offset - o);
            if (sys_pwrite(s->fd, z, n, o, 1) != n) {
                error_setg(errp, "Could not preallocate new data");
                return -EIO;
            }
        }
    }
    return 0;
}

static bool file_create(const char *filename, JsonObject *opts, GError **errp)
{
    uint64_t size = 0;
    g_autofree char *prealloc = NULL;
    bool nocow;
    int mode = PREALLOC_MODE_OFF;
    int fd;
    int ret = 0;

    if (!opts_take_size(opts, "size", 0, &size, errp) ||
        !opts_take_bool(opts, "nocow", false, &nocow, errp)) {
        return false;
    }
    prealloc = opts_take_str(opts, "preallocation", errp);
    if (prealloc) {
        mode = prealloc_mode_parse(prealloc);
        if (mode < 0 || mode == PREALLOC_MODE_METADATA) {
            error_setg(errp, "Invalid parameter '%s'", prealloc);
            return false;
        }
    }
    if (size > (uint64_t)BDRV_MAX_LENGTH) {
        error_setg(errp, "Image size must be less than 8 EiB!");
        return false;
    }
    fd = open(filename, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        error_setg_errno(errp, errno, "Could not create '%s'", filename);
        return false;
    }
    if (sys_ftruncate(fd, size) < 0) {
        ret = -errno;
    } else if (mode == PREALLOC_MODE_OFF && size > 0) {
        /*
         * Allocate the first block, as QEMU does, so that probing the
         * O_DIRECT alignment later reads real data, not a hole.
         */
        static const uint8_t zeroes[4096];
        size_t n = MIN(size, sizeof(zeroes));
        if (sys_pwrite(fd, zeroes, n, 0, 1) != (ssize_t)n) {
            ret = -errno;
        }
    } else if (mode == PREALLOC_MODE_FALLOC && size > 0) {
        ret = -sys_posix_fallocate(fd, 0, size);
    } else if (mode == PREALLOC_MODE_FULL && size > 0) {
        g_autofree uint8_t *z = g_malloc0(1 << 20);
        for (uint64_t o = 0; o < size && ret == 0; o += 1 << 20) {
            uint64_t n = MIN(UINT64_C(1) << 20, size - o);
            if (sys_pwrite(fd, z, n, o, 1) != (ssize_t)n) {
                ret = -EIO;
            }
        }
    }
    close(fd);
    if (ret < 0) {
        error_setg_errno(errp, -ret, "Could not resize file");
        return false;
    }
    return true;
}

const BlockDriver bdrv_file = {
    .format_name = "file",
    .instance_size = sizeof(FileState),
    .is_protocol = true,
    .open = file_open,
    .close = file_close,
    .pread = file_pread,
    .pwrite = file_pwrite,
    .pwrite_zeroes = file_pwrite_zeroes,
    .pdiscard = file_pdiscard,
    .flush = file_flush,
    .block_status = file_block_status,
    .getlength = file_getlength,
    .cached_length = file_cached_length,
    .get_allocated_file_size = file_get_allocated_size,
    .truncate = file_truncate,
    .create = file_create,
    .set_perm = file_set_perm,
};
