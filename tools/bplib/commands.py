"""The bp-backup subcommands: full, incremental, restore, verify.

Each takes the parsed argparse namespace, prints a one-line summary on
stdout, progress on stderr, and raises BackupError for expected failures.
The formats are described in sidecar.py and docs/backup-client.md.
"""

import hashlib
import os
import sys

from . import nbdsrc, sidecar
from .errors import BackupError
from .fileio import AtomicOutput, copy_sparse, open_input
from .progress import Progress, human


def _note(args, text):
    if not args.quiet:
        print('bp-backup: %s' % text, file=sys.stderr)


def _pct(part, whole):
    return 100.0 * part / whole if whole else 0.0


def _copy_runs(src, runs, out, meta, progress):
    """Read every (offset, length) run from the export into `out` and
    record it, with its SHA-256, in the sidecar dict."""
    for off, length in runs:
        h = hashlib.sha256()
        for pos, data in src.read_chunks(off, length):
            h.update(data)
            out.pwrite_sparse(data, pos)
            progress.update(pos + len(data),
                            meta['bytes-read'] + pos + len(data) - off)
        sidecar.add_extent(meta, off, length, h.hexdigest())


def _backup(args, kind, context, wanted, require):
    """Shared body of full and incremental: connect, walk `context`,
    copy the runs where wanted(flags), write DATA and DATA.json."""
    uri = nbdsrc.make_uri(args.uri, args.socket, args.export)
    with nbdsrc.NbdSource(uri, [context]) as src:
        use_status = src.has_context(context)
        if require:
            src.require_context(context)
        elif not use_status:
            _note(args, '%s does not offer %s; reading the whole disk'
                  % (uri, context))
        meta = sidecar.new(kind, src.size, uri,
                           context if use_status else None)
        with AtomicOutput(args.output, args.force) as out, \
                sidecar.writer(args.output, args.force) as side:
            out.truncate(src.size)
            progress = Progress(kind, src.size, not args.quiet)
            if use_status:
                runs = src.runs(context, wanted)
            else:
                runs = [(0, src.size)] if src.size else []
            _copy_runs(src, runs, out, meta, progress)
            progress.update(src.size, meta['bytes-read'])
            progress.finish()
            sidecar.store(side, meta)
            out.commit()
            side.commit()
    return meta


def cmd_full(args):
    meta = _backup(args, 'full', nbdsrc.CONTEXT_ALLOCATION,
                   lambda flags: not flags & nbdsrc.STATE_ZERO,
                   require=False)
    size, got = meta['disk-size'], meta['bytes-read']
    print('full: read %d of %d bytes (%.1f%%, %s of %s) in %d extents '
          '-> %s' % (got, size, _pct(got, size), human(got), human(size),
                     len(meta['extents']), args.output))
    return 0


def cmd_incremental(args):
    context = nbdsrc.dirty_context(args.bitmap)
    meta = _backup(args, 'incremental', context,
                   lambda flags: flags & nbdsrc.STATE_DIRTY, require=True)
    size, got = meta['disk-size'], meta['bytes-read']
    print('incremental: read %d of %d bytes (%.1f%%, %s of %s) in %d dirty '
          'extents of %s -> %s'
          % (got, size, _pct(got, size), human(got), human(size),
             len(meta['extents']), context, args.output))
    return 0


def _same_file(a, b):
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _load_restore_inputs(args):
    """Validate the full backup and every increment before writing."""
    fd, size = open_input(args.full, 'full backup')
    os.close(fd)
    if os.path.exists(sidecar.sidecar_path(args.full)):
        sidecar.load(args.full, kind='full', what='full backup')
    incs = []
    for path in args.increment:
        meta = sidecar.load(path, kind='incremental', what='increment')
        if meta['disk-size'] != size:
            raise BackupError(
                'increment %s is for a disk of %d bytes, but the full '
                'backup %s has %d bytes' % (path, meta['disk-size'],
                                            args.full, size),
                hint='increments must come from the same disk as the full '
                     'backup')
        incs.append((path, meta))
    for p in [args.full] + list(args.increment):
        if _same_file(p, args.output):
            raise BackupError('output %s is also an input' % args.output)
    return size, incs


def cmd_restore(args):
    size, incs = _load_restore_inputs(args)
    applied = 0
    with AtomicOutput(args.output, args.force) as out:
        fd, _ = open_input(args.full, 'full backup')
        try:
            copy_sparse(fd, size, args.full, out)
        finally:
            os.close(fd)
        for n, (path, meta) in enumerate(incs, 1):
            fd, _ = open_input(path, 'increment')
            try:
                for e in meta['extents']:
                    digest = sidecar.hash_region(fd, e['offset'],
                                                 e['length'], path,
                                                 sink=lambda pos, d:
                                                 out.pwrite(d, pos))
                    if digest != e['sha256']:
                        raise BackupError(
                            'increment %s: the %d bytes at offset %d do '
                            'not match their SHA-256; the increment is '
                            'damaged' % (path, e['length'], e['offset']))
                    applied += e['length']
            finally:
                os.close(fd)
            _note(args, 'applied increment %d/%d: %s (%d extents, %s, %s)'
                  % (n, len(incs), path, len(meta['extents']),
                     human(meta['bytes-read']), meta.get('context')))
        out.commit()
    print('restore: %s + %d increment%s (%d bytes applied) -> %s'
          % (args.full, len(incs), '' if len(incs) == 1 else 's', applied,
             args.output))
    return 0


def cmd_verify(args):
    bad = 0
    for path in args.files:
        try:
            meta = sidecar.load(path)
            fd, _ = open_input(path, 'backup')
            try:
                for e in meta['extents']:
                    got = sidecar.hash_region(fd, e['offset'], e['length'],
                                              path)
                    if got != e['sha256']:
                        raise BackupError('%s: the %d bytes at offset %d do'
                                          ' not match their SHA-256'
                                          % (path, e['length'],
                                             e['offset']))
            finally:
                os.close(fd)
        except BackupError as e:
            bad += 1
            print('FAILED: %s' % e)
            continue
        print('%s: ok (%s, %d extents, %d bytes of a %d-byte disk%s)'
              % (path, meta['kind'], len(meta['extents']),
                 meta['bytes-read'], meta['disk-size'],
                 ', ' + meta['context'] if meta.get('context') else ''))
    if bad:
        raise BackupError('%d of %d backups failed verification'
                          % (bad, len(args.files)))
    return 0
