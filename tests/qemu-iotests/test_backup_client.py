#!/usr/bin/python3
"""tools/bp-backup against a real qemu-storage-daemon serving qcow2 over
NBD: full + incremental + restore equals the source (the real qemu-img
compare as oracle), an increment holds only the dirty extents, expected
failures are clear one-line errors with exit code 1 and no traceback, and
scripts/demo.py (make demo) runs end to end.

The daemon binary is a class attribute: the *Ours classes rerun the
same cases on build/qemu-storage-daemon once it lists the QMP commands
they need (they skip until then)."""

import hashlib
import json
import os
import random
import re
import socket
import sys
import unittest

from harness import IotestCase, env, proc
from harness.qmp import QMPClient, start_qsd


def _libnbd():
    """python3-libnbd's `nbd` module, or None.  The iotest runner has
    harness/ on sys.path, where harness/nbd.py (the stdlib test client)
    would shadow it, so look past that directory."""
    mod = sys.modules.get('nbd')
    if mod is not None and hasattr(mod, 'NBD'):
        return mod
    here = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                        'harness')
    saved_path, saved_mod = sys.path[:], sys.modules.pop('nbd', None)
    sys.path[:] = [p for p in sys.path
                   if os.path.abspath(p or os.curdir) != here]
    try:
        import nbd as mod
    except ImportError:
        mod = None
    finally:
        sys.path[:] = saved_path
    if mod is None and saved_mod is not None:
        sys.modules['nbd'] = saved_mod
    return mod


nbd = _libnbd()
sys.path.insert(0, os.path.join(env.SRC, 'tools'))
from bplib import nbdsrc                        # noqa: E402
from bplib.errors import BackupError            # noqa: E402

IOTEST_TIMEOUT = 600

BP_BACKUP = os.path.join(env.SRC, 'tools', 'bp-backup')
DEMO = os.path.join(env.SRC, 'scripts', 'demo.py')
KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB
GRAN = 64 * KiB
NODE = 'disk0'

BITMAP_COMMANDS = ('blockdev-add', 'nbd-server-start', 'block-export-add',
                   'block-export-del', 'block-dirty-bitmap-add',
                   'transaction', 'query-block-exports')


def dirty_bytes(writes, gran=GRAN):
    blocks = set()
    for off, length in writes:
        blocks.update(range(off // gran, (off + length - 1) // gran + 1))
    return len(blocks) * gran


class Env:
    """One daemon with one qcow2 node, an NBD server and a writable
    export "disk"."""

    def __init__(self, case, daemon, size, name='disk.qcow2'):
        self.case = case
        self.path = case.checked(case.img(name))
        case.run_ok([case.real('qemu-img'), 'create', '-q', '-f', 'qcow2',
                     self.path, str(size)])
        self.size = size
        self.d, socks = start_qsd(case, daemon)
        self.q = QMPClient(socks[0])
        case.addCleanup(self.q.close)
        self.q.negotiate()
        self.nbd_sock = case.sock('nbd')
        self.add_node(NODE, self.path)
        self.q.cmd_ok('nbd-server-start', {'addr': {
            'type': 'unix', 'data': {'path': self.nbd_sock}}})
        self.export('disk', writable=True)
        self.h = nbd.NBD()
        self.h.connect_uri(self.uri('disk'))
        case.addCleanup(self.disconnect)
        self.rng = random.Random(7)

    def add_node(self, node, path):
        self.q.cmd_ok('blockdev-add', {'driver': 'qcow2', 'node-name': node,
                                       'file': {'driver': 'file',
                                                'filename': path}})

    def uri(self, export):
        return 'nbd+unix:///%s?socket=%s' % (export, self.nbd_sock)

    def export(self, name, writable=False, bitmaps=None, node=NODE):
        args = {'type': 'nbd', 'id': name, 'node-name': node, 'name': name,
                'writable': writable}
        if bitmaps is not None:
            args['bitmaps'] = bitmaps
        self.q.cmd_ok('block-export-add', args)
        return self.uri(name)

    def unexport(self, name):
        self.q.cmd_ok('block-export-del', {'id': name})
        proc.wait_for(lambda: all(e['id'] != name for e in
                                  self.q.cmd_ok('query-block-exports')),
                      what='export %s to go away' % name)

    def write(self, off, length, zero=False):
        if zero:
            self.h.zero(length, off)
        else:
            data = self.rng.randbytes(length)
            for i in range(0, length, 16 * MiB):
                self.h.pwrite(data[i:i + 16 * MiB], off + i)

    def flush(self):
        self.h.flush()

    def bitmap(self, name, node=NODE):
        self.q.cmd_ok('block-dirty-bitmap-add', {
            'node': node, 'name': name, 'persistent': True,
            'granularity': GRAN})

    def next_bitmap(self, prev, name):
        """Freeze `prev`, start `name` (the classic bitmap juggling)."""
        self.q.cmd_ok('transaction', {'actions': [
            {'type': 'block-dirty-bitmap-disable',
             'data': {'node': NODE, 'name': prev}},
            {'type': 'block-dirty-bitmap-add',
             'data': {'node': NODE, 'name': name, 'persistent': True,
                      'granularity': GRAN}}]})

    def disconnect(self):
        if self.h is not None:
            try:
                self.h.shutdown()
            except nbd.Error:
                pass
            self.h = None

    def quit(self):
        self.disconnect()
        self.q.cmd_ok('quit')
        return self.d.wait()


@unittest.skipIf(nbd is None, 'python3-libnbd (module nbd) not available')
class BackupCase(IotestCase):
    DAEMON = 'real'

    def setUp(self):
        super().setUp()
        self.qemu_img = self.real('qemu-img')
        if self.DAEMON == 'real':
            self.qsd = self.real('qemu-storage-daemon')
        else:
            self.qsd = self.ours('qemu-storage-daemon')
            self.require_commands(BITMAP_COMMANDS)

    def require_commands(self, names):
        """Skip unless our daemon lists every QMP command in `names`."""
        d, socks = start_qsd(self, self.qsd)
        with QMPClient(socks[0]) as q:
            q.negotiate()
            have = {c['name'] for c in q.cmd_ok('query-commands')}
            missing = [n for n in names if n not in have]
            q.cmd_ok('quit')
        # Let it exit (and remove its socket) before the next daemon of
        # this test starts on the same socket path.
        d.wait(timeout=30)
        if missing:
            self.skipTest('our daemon lacks %s' % ', '.join(missing))

    def env(self, size=64 * MiB, name='disk.qcow2'):
        return Env(self, self.qsd, size, name)

    def bp(self, *args):
        """Run bp-backup and expect success; returns stdout."""
        return self.run_ok([BP_BACKUP] + [str(a) for a in args],
                           timeout=300)

    def bp_fail(self, *args):
        """Run bp-backup, expect exit code 1 with a one-line error and no
        traceback; returns stderr."""
        _, err = self.run_fail([BP_BACKUP] + [str(a) for a in args], rc=1,
                               timeout=300)
        self.assertNotIn('Traceback', err)
        self.assertTrue(err.startswith('bp-backup: '), err)
        return err

    def sidecar(self, path):
        with open(path + '.json') as f:
            return json.load(f)

    def compare(self, a, b, fmt_a='raw', fmt_b='raw'):
        out = self.run_ok([self.qemu_img, 'compare', '-f', fmt_a, '-F',
                           fmt_b, a, b], timeout=300)
        self.assertIn('Images are identical', out)

    def snapshot_raw(self, uri, name):
        """Reference copy of an export made by the real qemu-img (an
        oracle independent of bp-backup)."""
        path = self.img(name)
        self.run_ok([self.qemu_img, 'convert', '-f', 'raw', '-O', 'raw',
                     uri, path], timeout=300)
        return path

    def run_demo(self, *args):
        """Run scripts/demo.py; it must pass and clean up."""
        rc, out, err = proc.run(['/usr/bin/python3', DEMO, env.BUILD]
                                + list(args), timeout=300)
        m = re.search(r'work dir: (\S+)', out)
        if m:
            self.assertFalse(os.path.exists(m.group(1)),
                             'demo left its work dir behind')
        if rc != 0:
            self.fail('demo exited with %d\n%s\n%s' % (rc, out[-6000:],
                                                       err[-3000:]))
        self.assertNotIn('Traceback', out + err)
        self.assertIn('Images are identical', out)
        self.assertIn('Done: all 13 steps passed', out)
        return out


class TestCycle(BackupCase):

    def test_full_incremental_restore(self):
        e = self.env()
        e.write(0, 3 * MiB)
        e.write(20 * MiB, 5 * MiB)
        e.flush()
        e.bitmap('c1')
        full = self.img('full.raw')
        out = self.bp('full', '--uri', e.uri('disk'), '--output', full)
        self.assertRegex(out, r'^full: read \d+ of %d bytes' % (64 * MiB))
        self.compare(full, e.uri('disk'))
        meta = self.sidecar(full)
        self.assertEqual(meta['kind'], 'full')
        self.assertEqual(meta['bytes-read'], 8 * MiB)

        # c1 -> c2: small, unaligned, zeroing, crossing a bitmap block,
        # and a 40 MiB run (reads are split at 32 MiB)
        w1 = [(1 * MiB, 4096, False), (10 * MiB + 12345, 100, False),
              (2 * MiB, 64 * KiB, True), (20 * MiB - 1, 2, False),
              (22 * MiB, 40 * MiB, False)]
        for off, length, zero in w1:
            e.write(off, length, zero=zero)
        w1 = [(off, length) for off, length, _ in w1]
        e.flush()
        e.next_bitmap('c1', 'c2')
        ref_c2 = self.snapshot_raw(e.uri('disk'), 'ref-c2.raw')
        inc1 = self.img('inc1.raw')
        uri = e.export('b1', bitmaps=['c1'])
        out = self.bp('incremental', '--uri', uri, '--bitmap',
                      'qemu:dirty-bitmap:c1', '--output', inc1)
        e.unexport('b1')
        self.assertEqual(self.sidecar(inc1)['bytes-read'], dirty_bytes(w1))
        self.assertIn('read %d of %d bytes' % (dirty_bytes(w1), 64 * MiB),
                      out)

        # c2 -> c3, with --socket/--export and a bare bitmap name
        w2 = [(5 * MiB, 1), (63 * MiB + 1, MiB - 1)]
        for off, length in w2:
            e.write(off, length)
        e.flush()
        e.next_bitmap('c2', 'c3')
        inc2 = self.img('inc2.raw')
        e.export('b2', bitmaps=['c2'])
        self.bp('incremental', '--socket', e.nbd_sock, '--export', 'b2',
                '--bitmap', 'c2', '--output', inc2)
        e.unexport('b2')
        self.assertEqual(self.sidecar(inc2)['bytes-read'], dirty_bytes(w2))
        self.assertEqual(e.quit(), 0)

        r1 = self.img('r1.raw')
        self.bp('restore', '--full', full, '--increment', inc1, '--output',
                r1)
        self.compare(r1, ref_c2)
        r2 = self.img('r2.raw')
        out = self.bp('restore', '--full', full, '--increment', inc1,
                      '--increment', inc2, '--output', r2)
        self.assertIn('+ 2 increments', out)
        self.compare(e.path, r2, fmt_a='qcow2')
        out = self.bp('verify', full, inc1, inc2)
        self.assertEqual(out.count(': ok ('), 3, out)

    def test_empty_increment(self):
        e = self.env(8 * MiB)
        e.write(0, MiB)
        e.flush()
        e.bitmap('c1')
        full = self.img('full.raw')
        self.bp('full', '--uri', e.uri('disk'), '-o', full)
        e.next_bitmap('c1', 'c2')
        inc = self.img('inc.raw')
        self.bp('incremental', '--uri', e.export('b', bitmaps=['c1']),
                '--bitmap', 'c1', '-o', inc)
        meta = self.sidecar(inc)
        self.assertEqual((meta['bytes-read'], meta['extents']), (0, []))
        self.assertEqual(meta['disk-size'], 8 * MiB)
        self.assertEqual(os.path.getsize(inc), 8 * MiB)
        e.unexport('b')
        self.assertEqual(e.quit(), 0)
        out = self.img('r.raw')
        self.bp('restore', '--full', full, '--increment', inc, '-o', out)
        self.compare(e.path, out, fmt_a='qcow2')

    def test_reads_only_dirty_extents(self):
        size = 1 * GiB
        e = self.env(size)
        e.write(0, 8 * MiB)
        e.flush()
        e.bitmap('c1')
        writes = [(100 * MiB, 4096), (500 * MiB + 70000, 10),
                  (size - 1, 1)]
        for off, length in writes:
            e.write(off, length)
        e.flush()
        e.next_bitmap('c1', 'c2')
        inc = self.img('inc.raw')
        out = self.bp('incremental', '--uri', e.export('b', bitmaps=['c1']),
                      '--bitmap', 'c1', '-o', inc)
        meta = self.sidecar(inc)
        self.assertEqual(meta['bytes-read'], 3 * GRAN)
        self.assertEqual([(x['offset'], x['length'])
                          for x in meta['extents']],
                         [(100 * MiB, GRAN), (500 * MiB + GRAN, GRAN),
                          (size - GRAN, GRAN)])
        self.assertIn('read %d of %d bytes' % (3 * GRAN, size), out)
        self.assertIn('in 3 dirty extents', out)
        # the data of each extent is exactly what the export holds there
        for x in meta['extents']:
            want = e.h.pread(x['length'], x['offset'])
            self.assertEqual(hashlib.sha256(want).hexdigest(), x['sha256'])
        # the increment file is sparse: only the dirty data is allocated
        self.assertLess(os.stat(inc).st_blocks * 512, 16 * MiB)

    def test_beyond_4g(self):
        """Block status is asked in windows below 4 GiB and reads in
        pieces of at most 32 MiB: extents past 4 GiB are found."""
        size = 6 * GiB
        e = self.env(size)
        e.write(0, MiB)
        e.write(4 * GiB + 3 * MiB, MiB)
        e.flush()
        e.bitmap('c1')
        full = self.img('full.raw')
        self.bp('full', '--uri', e.uri('disk'), '-o', full)
        self.assertEqual(self.sidecar(full)['bytes-read'], 2 * MiB)
        writes = [(4 * GiB - 1, 2), (5 * GiB, 33 * MiB), (size - 10, 10)]
        for off, length in writes:
            e.write(off, length)
        e.flush()
        e.next_bitmap('c1', 'c2')
        inc = self.img('inc.raw')
        self.bp('incremental', '--uri', e.export('b', bitmaps=['c1']),
                '--bitmap', 'c1', '-o', inc)
        e.unexport('b')
        meta = self.sidecar(inc)
        self.assertEqual(meta['bytes-read'], dirty_bytes(writes))
        self.assertEqual(meta['extents'][0]['offset'], 4 * GiB - GRAN)
        self.assertEqual(e.quit(), 0)
        out = self.img('r.raw')
        self.bp('restore', '--full', full, '--increment', inc, '-o', out)
        self.compare(e.path, out, fmt_a='qcow2')


class TestErrors(BackupCase):

    def test_missing_bitmap_context(self):
        e = self.env(8 * MiB)
        e.bitmap('c1')
        e.write(0, 4096)
        e.next_bitmap('c1', 'c2')
        inc = self.img('inc.raw')
        # the export has no bitmap at all
        err = self.bp_fail('incremental', '--uri', e.uri('disk'),
                           '--bitmap', 'c1', '-o', inc)
        self.assertIn('does not offer meta context qemu:dirty-bitmap:c1',
                      err)
        self.assertIn('no dirty-bitmap context', err)
        # the export has c1, the client asks for c2
        uri = e.export('b', bitmaps=['c1'])
        err = self.bp_fail('incremental', '--uri', uri, '--bitmap', 'c2',
                           '-o', inc)
        self.assertIn('does not offer meta context qemu:dirty-bitmap:c2',
                      err)
        self.assertIn('offers qemu:dirty-bitmap:c1', err)
        self.assertEqual(os.listdir(os.path.dirname(inc)).count('inc.raw'),
                         0)
        self.assertFalse(os.path.exists(inc + '.json'))
        self.assertFalse([n for n in os.listdir(self.scratch)
                          if n.endswith('.tmp')])

    def test_connection_refused(self):
        path = self.sock('dead')
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(path)                # bound, never listening: refused
        self.addCleanup(s.close)
        out = self.img('x.raw')
        for cmd in (['full'], ['incremental', '--bitmap', 'c1']):
            err = self.bp_fail(*cmd, '--uri',
                               'nbd+unix:///disk?socket=%s' % path,
                               '-o', out)
            self.assertIn('cannot connect to', err)
            self.assertIn('Connection refused', err)
        err = self.bp_fail('full', '--socket', '/nonexistent-bp/none.sock',
                           '-o', out)
        self.assertIn('No such file or directory', err)
        self.assertFalse(os.path.exists(out))

    def test_unknown_export(self):
        e = self.env(8 * MiB)
        err = self.bp_fail('full', '--socket', e.nbd_sock, '--export',
                           'nope', '-o', self.img('x.raw'))
        self.assertIn("no export named 'nope'", err)

    def test_usage_errors(self):
        rc, _, err = proc.run([BP_BACKUP, 'full', '--uri', 'x'])
        self.assertEqual(rc, 2)          # argparse: --output missing
        err = self.bp_fail('full', '--uri', 'nbd+unix:///a?socket=/x',
                           '--socket', '/x', '-o', self.img('o.raw'))
        self.assertIn('either --uri or --socket', err)
        err = self.bp_fail('full', '-o', self.img('o.raw'))
        self.assertIn('no NBD server given', err)

    def _backups(self, e, size):
        """A full backup and one increment of `e`."""
        e.write(0, MiB)
        e.flush()
        e.bitmap('c1')
        full = self.img('full-%d.raw' % size)
        self.bp('full', '--uri', e.uri('disk'), '-o', full)
        e.write(2 * MiB, 4096)
        e.flush()
        e.next_bitmap('c1', 'c2')
        inc = self.img('inc-%d.raw' % size)
        self.bp('incremental', '--uri', e.export('b', bitmaps=['c1']),
                '--bitmap', 'c1', '-o', inc)
        e.unexport('b')
        return full, inc

    def test_restore_wrong_size(self):
        big = self.env(16 * MiB)
        full, _ = self._backups(big, 16)
        big.quit()
        small = self.env(8 * MiB, 'small.qcow2')
        _, inc = self._backups(small, 8)
        out = self.img('r.raw')
        err = self.bp_fail('restore', '--full', full, '--increment', inc,
                           '-o', out)
        self.assertIn('is for a disk of %d bytes, but the full backup'
                      % (8 * MiB), err)
        self.assertIn('has %d bytes' % (16 * MiB), err)
        self.assertFalse(os.path.exists(out))

    def test_restore_damaged_increment(self):
        e = self.env(8 * MiB)
        full, inc = self._backups(e, 8)
        out = self.img('r.raw')
        with open(inc, 'r+b') as f:
            f.seek(2 * MiB + 100)
            b = f.read(1)
            f.seek(2 * MiB + 100)
            f.write(bytes([b[0] ^ 0xff]))
        err = self.bp_fail('restore', '--full', full, '--increment', inc,
                           '-o', out)
        self.assertIn('do not match their SHA-256', err)
        self.assertFalse(os.path.exists(out))
        self.assertFalse([n for n in os.listdir(self.scratch)
                          if n.endswith('.tmp')])
        rc, vout, _ = proc.run([BP_BACKUP, 'verify', full, inc])
        self.assertEqual(rc, 1)
        self.assertIn('%s: ok' % full, vout)
        self.assertIn('FAILED', vout)

    def test_restore_bad_sidecars(self):
        e = self.env(8 * MiB)
        full, inc = self._backups(e, 8)
        out = self.img('r.raw')
        side = inc + '.json'
        with open(side) as f:
            good = f.read()
        meta = json.loads(good)
        ext = meta['extents'][0]
        cases = [
            (None, 'sidecar %s is missing' % side),
            ('{"format": ', 'is not valid JSON'),
            (json.dumps(dict(meta, version=2)), 'unsupported version 2'),
            (json.dumps(dict(meta, kind='full')), 'expected incremental'),
            (json.dumps(dict(meta, extents=[dict(ext, offset=8 * MiB)])),
             'ends past the'),
            (json.dumps(dict(meta, extents=[ext, ext])),
             'overlaps or is out of order'),
            (json.dumps(dict(meta, extents=[dict(ext, length=0)])),
             'length > 0'),
            (json.dumps(dict(meta, **{'disk-size': 4 * MiB})),
             'the file has %d bytes' % (8 * MiB)),
        ]
        for text, msg in cases:
            with self.subTest(msg=msg):
                if text is None:
                    os.unlink(side)
                else:
                    with open(side, 'w') as f:
                        f.write(text)
                err = self.bp_fail('restore', '--full', full,
                                   '--increment', inc, '-o', out)
                self.assertIn(msg, err)
                self.assertFalse(os.path.exists(out))
        with open(side, 'w') as f:
            f.write(good)
        # the full backup given as an increment
        err = self.bp_fail('restore', '--full', full, '--increment', full,
                           '-o', out)
        self.assertIn('expected incremental', err)

    def test_existing_output(self):
        e = self.env(8 * MiB)
        full, inc = self._backups(e, 8)
        out = self.img('r.raw')
        with open(out, 'w') as f:
            f.write('precious')
        err = self.bp_fail('restore', '--full', full, '--increment', inc,
                           '-o', out)
        self.assertIn('already exists', err)
        with open(out) as f:
            self.assertEqual(f.read(), 'precious')
        err = self.bp_fail('full', '--uri', e.uri('disk'), '-o', full)
        self.assertIn('already exists', err)
        err = self.bp_fail('restore', '--full', full, '--increment', inc,
                           '-o', full, '--force')
        self.assertIn('is also an input', err)
        self.bp('restore', '--full', full, '--increment', inc, '-o', out,
                '--force')
        self.assertEqual(os.path.getsize(out), 8 * MiB)


class FakeHandle:
    """Stands in for nbd.NBD in NbdSource: answers block status from a
    fixed extent list, possibly past the window asked for."""

    def __init__(self, extents, per_reply=2):
        self.extents = extents      # [(offset, length, flags)]
        self.per_reply = per_reply
        self.requests = []

    def block_status(self, count, offset, cb):
        self.requests.append((offset, count))
        entries = []
        start = None
        for off, length, flags in self.extents:
            if off + length <= offset:
                continue
            if start is None:
                start = offset
                length -= offset - off
            entries += [length, flags]
            if len(entries) >= 2 * self.per_reply:
                break
        cb(CTX, start, entries, 0)


CTX = 'qemu:dirty-bitmap:x'


class TestBlockStatusWalk(unittest.TestCase):
    """The walk of NbdSource without a server."""

    def source(self, size, extents, per_reply=2, min_block=0):
        src = nbdsrc.NbdSource.__new__(nbdsrc.NbdSource)
        src.uri = 'fake'
        src.size = size
        src.h = FakeHandle(extents, per_reply)
        align = min_block or 512
        src.status_window = nbdsrc.MAX_STATUS - nbdsrc.MAX_STATUS % align
        return src

    def test_windows_below_4g(self):
        size = 10 * GiB
        src = self.source(size, [(0, size, 0)])
        self.assertEqual(list(src.extents(CTX)),
                         [(0, 0xFFFFFE00, 0),
                          (0xFFFFFE00, 0xFFFFFE00, 0),
                          (2 * 0xFFFFFE00, size - 2 * 0xFFFFFE00, 0)])
        for off, count in src.h.requests:
            self.assertLessEqual(count, 0xFFFFFFFF)
            self.assertEqual(off % 512, 0)

    def test_short_replies_and_merging(self):
        ext = [(0, 4096, 1), (4096, 4096, 1), (8192, 4096, 0),
               (12288, 4096, 1), (16384, 8192, 0)]
        src = self.source(24576, ext, per_reply=1)
        self.assertEqual(list(src.runs(CTX, lambda f: f & 1)),
                         [(0, 8192), (12288, 4096)])
        self.assertEqual(len(src.h.requests), 5)

    def test_extent_past_the_end_is_clamped(self):
        src = self.source(8192, [(0, 1 << 40, 1)])
        self.assertEqual(list(src.runs(CTX, lambda f: f & 1)), [(0, 8192)])

    def test_empty_reply_is_an_error(self):
        src = self.source(8192, [])
        with self.assertRaises(BackupError):
            list(src.extents(CTX))

    def test_dirty_context_names(self):
        self.assertEqual(nbdsrc.dirty_context('c1'), 'qemu:dirty-bitmap:c1')
        self.assertEqual(nbdsrc.dirty_context('qemu:dirty-bitmap:c1'),
                         'qemu:dirty-bitmap:c1')


class TestDemo(BackupCase):

    def test_demo_real(self):
        out = self.run_demo('--daemon', 'real')
        self.assertIn('bitmaps way, real daemon', out)

    def test_demo_fails_clearly(self):
        rc, out, err = proc.run(['/usr/bin/python3', DEMO, env.BUILD,
                                 '--daemon', 'real', '--method',
                                 'checkpoints'], timeout=120)
        self.assertEqual(rc, 1)
        self.assertIn('FAILED at step 3 (Start the daemon with a QMP '
                      'monitor): this daemon has no block-checkpoint-add',
                      out)
        self.assertNotIn('Traceback', out + err)


class TestCycleOurs(TestCycle):
    DAEMON = 'ours'


class TestDemoOurs(BackupCase):
    DAEMON = 'ours'

    def test_demo_ours_checkpoints(self):
        self.require_commands(['block-checkpoint-add'])
        out = self.run_demo('--daemon', 'ours')
        self.assertIn('checkpoints way, ours daemon', out)

    def test_demo_ours_bitmaps(self):
        out = self.run_demo('--daemon', 'ours', '--method',
                                'bitmaps')
        self.assertIn('bitmaps way, ours daemon', out)


if __name__ == '__main__':
    unittest.main()
