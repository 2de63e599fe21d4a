"""The sidecar: a JSON file next to every backup file bp-backup writes.

A backup is a pair: DATA (a sparse raw file exactly as large as the disk)
and DATA.json (this sidecar).  The sidecar says what DATA holds:

    {
      "format": "blockpoint-backup",
      "version": 1,
      "kind": "full" | "incremental",
      "disk-size": <bytes, equal to the size of DATA>,
      "source": "<NBD URI the data came from>",
      "context": "<meta context used>",
      "created": "<UTC time, ISO 8601>",
      "bytes-read": <sum of the extent lengths>,
      "extents": [{"offset": o, "length": n, "sha256": "<hex>"}, ...]
    }

For an incremental backup the extents are the regions the dirty-bitmap
context reported dirty; only they carry meaning, everything else in DATA
is a hole.  For a full backup they are the regions read (everything not
listed is zero).  Extents are sorted, do not overlap, have length > 0 and
lie inside the disk; each sha256 is over DATA[offset, offset+length).
docs/backup-client.md is the user-facing description of this format.
"""

import hashlib
import json
import os
import re
import time

from .errors import BackupError
from .fileio import AtomicOutput, pread_full

FORMAT = 'blockpoint-backup'
VERSION = 1
KINDS = ('full', 'incremental')
_HEX64 = re.compile(r'^[0-9a-f]{64}$')
MAX_SIDECAR = 1 << 30


def sidecar_path(data_path):
    return data_path + '.json'


def new(kind, disk_size, source, context):
    return {'format': FORMAT, 'version': VERSION, 'kind': kind,
            'disk-size': disk_size, 'source': source, 'context': context,
            'created': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()),
            'bytes-read': 0, 'extents': []}


def add_extent(meta, offset, length, sha256_hex):
    meta['extents'].append({'offset': offset, 'length': length,
                            'sha256': sha256_hex})
    meta['bytes-read'] += length


def writer(data_path, force=False):
    """AtomicOutput for the sidecar of `data_path`."""
    return AtomicOutput(sidecar_path(data_path), force=force)


def store(out, meta):
    text = json.dumps(meta, indent=1) + '\n'
    out.pwrite(text.encode(), 0)


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def load(data_path, kind=None, what='backup'):
    """Read and validate the sidecar of `data_path`; returns the dict.
    Checks the format, `kind` (if given), the extents, and that DATA has
    exactly disk-size bytes.  Every problem is a BackupError naming the
    file."""
    path = sidecar_path(data_path)
    name = '%s %s' % (what, data_path)
    try:
        with open(path, 'rb') as f:
            raw = f.read(MAX_SIDECAR + 1)
    except FileNotFoundError:
        raise BackupError('%s: sidecar %s is missing' % (name, path),
                          hint='every backup file needs the .json written '
                               'next to it by bp-backup') from None
    except OSError as e:
        raise BackupError('%s: cannot read %s: %s'
                          % (name, path, e.strerror or e)) from None
    if len(raw) > MAX_SIDECAR:
        raise BackupError('%s: sidecar %s is larger than %d bytes'
                          % (name, path, MAX_SIDECAR))
    try:
        meta = json.loads(raw.decode('utf-8'))
    except (UnicodeDecodeError, ValueError) as e:
        raise BackupError('%s: sidecar %s is not valid JSON: %s'
                          % (name, path, e)) from None
    _validate(meta, name, kind)
    try:
        size = os.stat(data_path).st_size
    except OSError as e:
        raise BackupError('%s: %s' % (name, e.strerror or e)) from None
    if size != meta['disk-size']:
        raise BackupError('%s: the file has %d bytes but its sidecar says '
                          'the disk has %d' % (name, size, meta['disk-size']))
    return meta


def _validate(meta, name, kind):
    def bad(msg):
        raise BackupError('%s: bad sidecar: %s' % (name, msg))
    if not isinstance(meta, dict) or meta.get('format') != FORMAT:
        bad('"format" is not "%s"' % FORMAT)
    if meta.get('version') != VERSION:
        bad('unsupported version %r (this tool reads version %d)'
            % (meta.get('version'), VERSION))
    if meta.get('kind') not in KINDS:
        bad('"kind" must be one of %s' % ', '.join(KINDS))
    if kind is not None and meta['kind'] != kind:
        bad('this is a %s backup, expected %s' % (meta['kind'], kind))
    size = meta.get('disk-size')
    if not _is_int(size) or size < 0:
        bad('"disk-size" must be a non-negative integer')
    exts = meta.get('extents')
    if not isinstance(exts, list):
        bad('"extents" must be a list')
    pos = 0
    total = 0
    for i, e in enumerate(exts):
        if not isinstance(e, dict):
            bad('extent %d is not an object' % i)
        off, length, digest = e.get('offset'), e.get('length'), \
            e.get('sha256')
        if not _is_int(off) or not _is_int(length) or length <= 0 \
                or off < 0:
            bad('extent %d: offset/length must be integers, length > 0'
                % i)
        if off < pos:
            bad('extent %d at offset %d overlaps or is out of order' % (i,
                                                                        off))
        if off + length > size:
            bad('extent %d (offset %d, %d bytes) ends past the %d-byte disk'
                % (i, off, length, size))
        if not isinstance(digest, str) or not _HEX64.match(digest):
            bad('extent %d: "sha256" must be 64 lowercase hex digits' % i)
        pos = off + length
        total += length
    if meta.get('bytes-read', total) != total:
        bad('"bytes-read" is %r but the extents add up to %d'
            % (meta.get('bytes-read'), total))


def hash_region(fd, offset, length, path, chunk=4 * 1024 * 1024,
                sink=None):
    """SHA-256 of a file region read in chunks; `sink(pos, data)` is
    called for every chunk (used by restore to copy while hashing)."""
    h = hashlib.sha256()
    pos, end = offset, offset + length
    while pos < end:
        n = min(chunk, end - pos)
        data = pread_full(fd, n, pos, path)
        h.update(data)
        if sink is not None:
            sink(pos, data)
        pos += n
    return h.hexdigest()
