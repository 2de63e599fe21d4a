"""Local file helpers: atomic output files, sparse writes and copies.

Every output of bp-backup is first written to a temporary file next to
its final name and renamed only when complete, so a failed or interrupted
run never leaves a plausible-looking backup behind.
"""

import errno
import os
import stat
import tempfile

from .errors import BackupError

COPY_CHUNK = 4 * 1024 * 1024
_ZEROS = bytes(COPY_CHUNK)


def is_zero(data):
    """True if `data` (bytes-like) is all zero bytes."""
    n = len(data)
    pos = 0
    mv = memoryview(data)
    while pos < n:
        k = min(n - pos, COPY_CHUNK)
        if mv[pos:pos + k] != memoryview(_ZEROS)[:k]:
            return False
        pos += k
    return True


def _oserr(what, path, e):
    return BackupError('%s %s: %s' % (what, path, e.strerror or e))


class AtomicOutput:
    """A new file at `path`, written under a temporary name and moved into
    place by commit().  Leaving the with-block without commit() removes
    the temporary file.  Existing files are refused unless force=True.
    """

    def __init__(self, path, force=False):
        self.path = path
        self.fd = None
        self.tmp = None
        if os.path.isdir(path):
            raise BackupError('output %s is a directory' % path)
        if os.path.lexists(path) and not force:
            raise BackupError('output %s already exists' % path,
                              hint='remove it or pass --force')
        d = os.path.dirname(os.path.abspath(path))
        try:
            self.fd, self.tmp = tempfile.mkstemp(
                prefix='.%s.' % os.path.basename(path), suffix='.tmp',
                dir=d)
        except OSError as e:
            raise _oserr('cannot create a file in', d, e) from None

    def truncate(self, size):
        try:
            os.ftruncate(self.fd, size)
        except OSError as e:
            raise _oserr('cannot resize', self.path, e) from None

    def pwrite(self, data, offset):
        mv = memoryview(data)
        while len(mv):
            try:
                n = os.pwrite(self.fd, mv, offset)
            except OSError as e:
                raise _oserr('cannot write', self.path, e) from None
            mv = mv[n:]
            offset += n

    def pwrite_sparse(self, data, offset):
        """Write `data` but leave all-zero 4 MiB pieces as holes (the file
        must already read as zero there, e.g. freshly truncated)."""
        mv = memoryview(data)
        for pos in range(0, len(mv), COPY_CHUNK):
            piece = mv[pos:pos + COPY_CHUNK]
            if not is_zero(piece):
                self.pwrite(piece, offset + pos)

    def commit(self, mode=0o644):
        try:
            os.fchmod(self.fd, mode & ~_umask())
            os.fsync(self.fd)
            os.close(self.fd)
            self.fd = None
            os.replace(self.tmp, self.path)
            self.tmp = None
        except OSError as e:
            raise _oserr('cannot finish', self.path, e) from None

    def discard(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        if self.tmp is not None:
            try:
                os.unlink(self.tmp)
            except OSError:
                pass
            self.tmp = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.discard()


def _umask():
    m = os.umask(0)
    os.umask(m)
    return m


def open_input(path, what):
    """Open an existing regular file read-only; returns (fd, size)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as e:
        raise _oserr('cannot open %s' % what, path, e) from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise BackupError('%s %s is not a regular file' % (what, path))
    return fd, st.st_size


def pread_full(fd, length, offset, path):
    """Read exactly `length` bytes or fail (a short file is an error)."""
    parts = []
    want = length
    while want:
        try:
            b = os.pread(fd, want, offset)
        except OSError as e:
            raise _oserr('cannot read', path, e) from None
        if not b:
            raise BackupError('%s ends before offset %d' % (path, offset))
        parts.append(b)
        want -= len(b)
        offset += len(b)
    return b''.join(parts) if len(parts) != 1 else parts[0]


def data_segments(fd, size):
    """Yield (offset, length) of the parts of a file that may hold data,
    using SEEK_DATA/SEEK_HOLE; the whole file if they are unsupported."""
    pos = 0
    try:
        while pos < size:
            try:
                start = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError as e:
                if e.errno == errno.ENXIO:      # only a hole is left
                    return
                raise
            end = os.lseek(fd, start, os.SEEK_HOLE)
            end = min(end, size)
            if end > start:
                yield start, end - start
            pos = end
    except (OSError, AttributeError):
        if pos < size:
            yield pos, size - pos


def copy_sparse(src_fd, size, src_path, out):
    """Copy a whole file into AtomicOutput `out`, keeping holes."""
    out.truncate(size)
    for off, length in data_segments(src_fd, size):
        pos, end = off, off + length
        while pos < end:
            n = min(end - pos, COPY_CHUNK)
            out.pwrite_sparse(pread_full(src_fd, n, pos, src_path), pos)
            pos += n
