"""The NBD side of bp-backup: connect to an export, negotiate meta
contexts, walk block status within the protocol limits, read data.

Limits respected here (NBD protocol, doc/proto.md):
- a block-status request carries a 32-bit length, so the disk is walked
  in windows of at most 2^32-1 bytes (rounded down to the server's
  minimum block size, or 512 when it advertises none); the server may
  answer for less than asked, and we continue from where it stopped;
- the server may describe an extent running past the window: we clamp
  every extent to the window we asked about;
- reads are split at the server's maximum block size, and never exceed
  32 MiB (QEMU's NBD_MAX_BUFFER_SIZE, the de-facto limit).
"""

import re

from .errors import BackupError

try:
    import nbd
except ImportError:         # reported when a command actually needs NBD
    nbd = None

CONTEXT_ALLOCATION = 'base:allocation'
DIRTY_PREFIX = 'qemu:dirty-bitmap:'
STATE_HOLE = 1              # base:allocation flag bits
STATE_ZERO = 2
STATE_DIRTY = 1             # qemu:dirty-bitmap flag bit

MAX_READ = 32 * 1024 * 1024
MAX_STATUS = 0xFFFFFFFF


def require_libnbd():
    if nbd is None:
        raise BackupError('the Python module "nbd" (python3-libnbd) is not'
                          ' installed',
                          hint='install it: apt-get install python3-libnbd')


def dirty_context(name):
    """'c1' -> 'qemu:dirty-bitmap:c1'; a full context name is kept."""
    if not name:
        raise BackupError('empty bitmap/context name')
    return name if ':' in name else DIRTY_PREFIX + name


def _errtext(e):
    """libnbd's message without the 'nbd_foo: ' prefix."""
    return re.sub(r'^nbd_[a-z_]+: ', '', e.string or str(e))


def make_uri(uri=None, socket=None, export=None):
    """The URI to connect to: --uri as given, or built from
    --socket/--export.  Exactly one of the two forms is allowed."""
    if uri and (socket or export is not None):
        raise BackupError('give either --uri or --socket/--export, not both')
    if uri:
        return uri
    if not socket:
        raise BackupError('no NBD server given',
                          hint='use --uri nbd+unix:///EXPORT?socket=PATH '
                               'or --socket PATH [--export NAME]')
    from urllib.parse import quote
    return 'nbd+unix:///%s?socket=%s' % (quote(export or '', safe=''),
                                         quote(socket, safe='/'))


class NbdSource:
    """One read-only client connection to an export."""

    def __init__(self, uri, contexts=()):
        require_libnbd()
        self.uri = uri
        self.h = nbd.NBD()
        self.h.set_handle_name('bp-backup')
        for c in contexts:
            self.h.add_meta_context(c)
        try:
            self.h.connect_uri(uri)
        except nbd.Error as e:
            self.h = None
            raise BackupError('cannot connect to %s: %s'
                              % (uri, _errtext(e)),
                              hint='is the NBD server running and the '
                                   'export name right?') from None
        try:
            self.size = self.h.get_size()
            self.min_block = self.h.get_block_size(nbd.SIZE_MINIMUM)
            self.max_block = self.h.get_block_size(nbd.SIZE_MAXIMUM)
        except nbd.Error as e:
            self.close()
            raise BackupError('%s: %s' % (uri, _errtext(e))) from None
        self.max_read = MAX_READ
        if 0 < self.max_block < self.max_read:
            self.max_read = self.max_block
        align = self.min_block or 512
        self.status_window = MAX_STATUS - (MAX_STATUS % align)

    def close(self):
        if self.h is not None:
            try:
                self.h.shutdown()
            except nbd.Error:
                pass
            self.h = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def has_context(self, name):
        try:
            return bool(self.h.can_meta_context(name))
        except nbd.Error:
            return False

    def offered_contexts(self, query=''):
        """Meta contexts the export offers (matching `query`, e.g. the
        dirty-bitmap prefix), from a second short-lived connection in
        option mode; [] if the server cannot list them."""
        names = []
        h = nbd.NBD()
        try:
            h.set_opt_mode(True)
            if query:
                h.add_meta_context(query)
            h.connect_uri(self.uri)
            h.opt_list_meta_context(lambda n: names.append(n) or 0)
            h.opt_abort()
        except nbd.Error:
            pass
        return sorted(set(names))

    def require_context(self, name):
        """Fail clearly (never fall back to a full or empty copy) when the
        export does not offer meta context `name`."""
        if self.has_context(name):
            return
        query = DIRTY_PREFIX if name.startswith(DIRTY_PREFIX) else ''
        offered = [n for n in self.offered_contexts(query) if n != name]
        if name.startswith(DIRTY_PREFIX):
            hint = ('the export offers %s; export the bitmap with '
                    'block-export-add "bitmaps" (or "checkpoints")'
                    % (', '.join(offered) if offered
                       else 'no dirty-bitmap context'))
        else:
            hint = 'the export offers: %s' % (', '.join(offered) or 'nothing')
        raise BackupError('%s does not offer meta context %s'
                          % (self.uri, name), hint=hint)

    # -- block status --------------------------------------------------

    def _status_once(self, context, offset, count):
        """One request: [(offset, length, flags)] for `context` covering
        a prefix of [offset, offset+count), clamped to it."""
        got = []
        errs = []

        def cb(ctx, start, entries, err):
            if ctx != context:
                return 0
            e = int(getattr(err, 'value', err) or 0)
            if e:
                errs.append(e)
                return 0
            pos = start
            for i in range(0, len(entries) - 1, 2):
                length, flags = entries[i], entries[i + 1]
                got.append((pos, length, flags))
                pos += length
            return 0
        try:
            self.h.block_status(count, offset, cb)
        except nbd.Error as e:
            raise BackupError('block status of %s at offset %d (%d bytes) '
                              'failed: %s' % (context, offset, count,
                                              _errtext(e))) from None
        if errs:
            raise BackupError('block status of %s at offset %d failed '
                              '(error %d)' % (context, offset, errs[0]))
        out = []
        end = offset + count
        pos = offset
        for start, length, flags in got:
            if start != pos or length <= 0:
                break           # only trust a contiguous prefix
            length = min(length, end - pos)
            out.append((pos, length, flags))
            pos += length
            if pos >= end:
                break
        if not out:
            raise BackupError('server returned no usable extent for %s at '
                              'offset %d' % (context, offset))
        return out

    def extents(self, context, start=0, end=None):
        """Yield (offset, length, flags) covering [start, end) without
        gaps, as the server reports them."""
        end = self.size if end is None else end
        pos = start
        while pos < end:
            count = min(end - pos, self.status_window)
            for ext in self._status_once(context, pos, count):
                yield ext
                pos = ext[0] + ext[1]

    def runs(self, context, wanted, start=0, end=None):
        """Yield maximal (offset, length) runs where wanted(flags) holds,
        merging adjacent extents."""
        run_start = run_end = None
        for off, length, flags in self.extents(context, start, end):
            if wanted(flags):
                if run_end == off:
                    run_end += length
                else:
                    if run_start is not None:
                        yield run_start, run_end - run_start
                    run_start, run_end = off, off + length
        if run_start is not None:
            yield run_start, run_end - run_start

    # -- data ----------------------------------------------------------

    def read_chunks(self, offset, length):
        """Yield (offset, bytes) pieces of at most max_read bytes."""
        pos, end = offset, offset + length
        while pos < end:
            n = min(end - pos, self.max_read)
            try:
                data = self.h.pread(n, pos)
            except nbd.Error as e:
                raise BackupError('read of %d bytes at offset %d from %s '
                                  'failed: %s' % (n, pos, self.uri,
                                                  _errtext(e))) from None
            yield pos, data
            pos += n
