#!/usr/bin/python3
"""Host I/O faults under the qcow2 driver (robustness catalogue items 24,
26 and 27), injected with BP_FAULT (include/util/fault.h) into the pread,
pwrite, fdatasync, fallocate and ftruncate calls of block/file-posix.c.

24. EIO and ENOSPC at a sweep of host write events during 64 MiB of
    writes with our qemu-io, the events picked from a traced run and
    sorted by what they write (header, L1 and refcount table entries, L2
    tables, refcount blocks, the refcount table, guest data), plus failed
    flushes, zeroing and truncates, and persistent failures.  Our qemu-io
    never dies of a signal, reports every failure, the real `qemu-img
    check` finds at most leaks, no corrupt bit is set, and every write
    acknowledged by a later successful flush reads back.
26. Short reads and writes are retried: the data is right.
27. A full disk (writes and zeroing beyond the end of the file fail with
    ENOSPC) while clusters, L2 tables, refcount blocks and a larger
    refcount table are allocated: ENOSPC to the caller, a consistent
    image, and the same writes succeed once the disk has room.
"""

import os
import random
import re
import subprocess
import unittest

from harness import proc, qcow2, requires_real
from qcow2_util import KiB, MiB, Qcow2Case

IOTEST_TIMEOUT = 600
SECTOR = 512

INJECTED_RE = re.compile(r'^BP_FAULT: (\w+) #(\d+) offset=(\d+) '
                         r'bytes=(\d+): injected', re.M)
EVENT_RE = re.compile(r'^BP_FAULT: (\w+) #(\d+) offset=(\d+) '
                      r'bytes=(\d+): event$', re.M)


class SectorModel:
    """What each 512-byte sector may hold on disk after the run.

    cand: the values a successful flush would make durable now (the last
    acknowledged write, plus any failed write after it: a failed write
    may or may not have reached the disk).  durable: what the last
    successful flush made durable.  since: every value written, failed or
    not, after that flush; the close at the end may or may not store them.
    """

    def __init__(self, size):
        self.n = size // SECTOR
        self._sets = {}
        zero = self._set(frozenset([0]))
        self.cand = [zero] * self.n
        self.durable = [zero] * self.n
        self.since = [frozenset()] * self.n

    def _set(self, s):
        return self._sets.setdefault(s, s)

    def write(self, off, length, pat, ok):
        a, b = off // SECTOR, (off + length) // SECTOR
        if ok:
            one = self._set(frozenset([pat]))
            self.cand[a:b] = [one] * (b - a)
        else:
            for i in range(a, b):
                self.cand[i] = self._set(self.cand[i] | {pat})
        for i in range(a, b):
            self.since[i] = self._set(self.since[i] | {pat})

    def flushed(self):
        self.durable = list(self.cand)
        self.since = [frozenset()] * self.n

    def mismatches(self, raw, limit=8):
        """(offset, allowed patterns, found) of sectors that hold none of
        their allowed patterns; runs of sectors alike are compared whole."""
        bad = []
        i = 0
        while i < self.n and len(bad) < limit:
            d, s = self.durable[i], self.since[i]
            j = i + 1
            while j < self.n and self.durable[j] is d and self.since[j] is s:
                j += 1
            allowed = d | s
            run = raw[i * SECTOR:j * SECTOR]
            if len(allowed) == 1:
                v = next(iter(allowed))
                if run == bytes([v]) * len(run):
                    i = j
                    continue
            blocks = [bytes([v]) * SECTOR for v in allowed]
            for k in range(i, j):
                got = raw[k * SECTOR:(k + 1) * SECTOR]
                if got not in blocks:
                    bad.append((k * SECTOR, sorted(allowed), got[:4].hex()))
                    if len(bad) >= limit:
                        break
            i = j
        return bad


def workload(seed, size, total, chunk, flush_every):
    """Deterministic qemu-io commands: `total` bytes of writes of `chunk`
    bytes at random sector-aligned offsets (so that partial clusters need
    copy-on-write), each with its own pattern, a flush every
    `flush_every` writes and at the end."""
    rnd = random.Random(seed)
    cmds = []
    for i in range(total // chunk):
        off = rnd.randrange(0, size - chunk, SECTOR)
        cmds.append(('write', off, chunk, i % 255 + 1))
        if i % flush_every == flush_every - 1:
            cmds.append(('flush',))
    if cmds[-1] != ('flush',):
        cmds.append(('flush',))
    # Prints a line and does no I/O: marks where the close begins.
    cmds.append(('length',))
    return cmds


def qemu_io_args(cmds):
    args = []
    for c in cmds:
        if c[0] == 'write':
            args += ['-c', 'write -P %d %d %d' % (c[3], c[1], c[2])]
        elif c[0] == 'read':
            args += ['-c', 'read -P %d %d %d' % (c[3], c[1], c[2])]
        else:
            args += ['-c', c[0]]
    return args


def parse_results(cmds, out):
    """Success (True/False) of each command from qemu-io's stdout, and the
    lines left over.  Every read or write prints one line; a flush prints
    one only when it fails.  No line at all: the image did not open."""
    toks = [l for l in out.splitlines()
            if l.startswith(('wrote ', 'write failed', 'flush failed',
                             'read ', 'read failed'))]
    if not toks:
        return None, []
    res = []
    k = 0
    for c in cmds:
        if c[0] in ('write', 'read'):
            if k >= len(toks):
                return res, ['missing output for %r' % (c,)]
            res.append(not toks[k].startswith(('write failed',
                                               'read failed')))
            k += 1
        elif k < len(toks) and toks[k].startswith('flush failed'):
            res.append(False)
            k += 1
        else:
            res.append(True)
    return res, toks[k:]


@requires_real('qemu-img', 'qemu-io')
class FaultCase(Qcow2Case):
    """Runs our qemu-io with BP_FAULT and checks the image afterwards."""

    def new_image(self, name, size, opts='cluster_size=1024'):
        path = self.img(name)
        if os.path.exists(path):
            os.unlink(path)
        self.run_ok([self.ours('qemu-img'), 'create', '-q', '-f', 'qcow2',
                     '-o', opts, path, str(size)])
        return path

    def faulty_io(self, img, cmds, spec):
        argv = [self.ours('qemu-io'), '-f', 'qcow2'] + qemu_io_args(cmds)
        rc, out, err = proc.run(argv + [img], timeout=120,
                                env={'BP_FAULT': spec} if spec else None)
        self.assertGreaterEqual(rc, 0, 'qemu-io died of signal %d with '
                                'BP_FAULT=%s\n%s' % (-rc, spec, err[-2000:]))
        self.assertNotIn('warning: BP_FAULT ignored', err)
        return rc, out, err

    def trace(self, img, cmds, size, ops=('write', 'flush', 'alloc',
                                          'truncate', 'read')):
        """Every host event of a fault-free run: {op: [(offset, bytes)]},
        {op: indices of the events of the close}, which come after the
        output of the last command (qemu-io flushes stdout after each
        command, so one pipe for both streams keeps the order), and all
        events in order as (op, index, offset, bytes)."""
        spec = ','.join('%s:log' % o for o in ops)
        argv = proc._wrap([self.ours('qemu-io'), '-f', 'qcow2'] +
                          qemu_io_args(cmds) + [img])
        cp = subprocess.run(argv, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env=proc.child_env({'BP_FAULT': spec}, argv),
                            timeout=120)
        text = cp.stdout.decode('utf-8', 'replace')
        self.assertEqual(cp.returncode, 0, text[-3000:])
        self.assertEqual(cmds[-1], ('length',))
        close_at = text.rindex('\n%d MiB\n' % (size // MiB))
        ev = {o: [] for o in ops}
        closing = {o: set() for o in ops}
        order = []
        for m in EVENT_RE.finditer(text):
            op, off, n = m.group(1), int(m.group(3)), int(m.group(4))
            if m.start() > close_at:
                closing[op].add(len(ev[op]))
            order.append((op, len(ev[op]), off, n))
            ev[op].append((off, n))
        return ev, closing, order

    def assert_consistent(self, img, what):
        """Real check: leaks at most, and no corrupt bit."""
        rc, text = self.real_check(img)
        self.assertIn(rc, (0, 3), '%s: real qemu-img check:\n%s'
                      % (what, text[-3000:]))
        incompat = qcow2.Image(img).header().incompatible_features
        self.assertEqual(incompat & 2, 0, '%s: corrupt bit set' % what)
        return rc

    def read_raw(self, img):
        raw = self.img('dump.raw')
        self.run_ok([self.qimg(), 'convert', '-U', '-O', 'raw', img, raw])
        with open(raw, 'rb') as f:
            data = f.read()
        os.unlink(raw)
        return data

    def run_faulty(self, img, cmds, spec, model, must_report=True):
        """One qemu-io run with faults; applies its outcome to `model`.
        Returns (number of injected faults, number of failed commands).
        Without `must_report` the fault may hit the close, which has no
        way to report it."""
        rc, out, err = self.faulty_io(img, cmds, spec)
        injected = len(INJECTED_RE.findall(err))
        res, extra = parse_results(cmds, out)
        self.assertEqual(extra, [], 'unparsed qemu-io output')
        if res is None:
            # Nothing ran: the open itself failed, and said so.
            self.assertNotEqual(rc, 0, err[-2000:])
            self.assertTrue(injected, 'BP_FAULT=%s: qemu-io did not run:\n%s'
                            % (spec, err[-2000:]))
            self.assertIn('open', err)
            return injected, len(cmds)
        failed = 0
        for c, ok in zip(cmds, res):
            if c[0] == 'write':
                model.write(c[1], c[2], c[3], ok)
            elif c[0] == 'flush' and ok:
                model.flushed()
            failed += not ok
        if injected and must_report:
            # Every fault shows up: as a failed command, and in the status.
            self.assertNotEqual(rc, 0, 'BP_FAULT=%s: %d faults injected, '
                                'exit code 0\n%s' % (spec, injected,
                                                     err[-2000:]))
            self.assertGreater(failed, 0, 'BP_FAULT=%s: no command '
                               'reported the fault' % spec)
        elif not injected:
            self.assertEqual(rc, 0, out[-2000:] + err[-2000:])
        return injected, failed

    def verify(self, img, model, what):
        bad = model.mismatches(self.read_raw(img))
        self.assertEqual(bad, [], '%s: acknowledged data lost (offset, '
                         'allowed patterns, found)' % what)


def classify(img, events):
    """Name what each host write of a traced run wrote, from the layout of
    the image it left: header, l1-entry, reftable-entry, l2, refblock,
    reftable or data."""
    im = qcow2.Image(img)
    h = im.header()
    cs = h.cluster_size
    l1 = (h.l1_table_offset, h.l1_table_offset + 8 * h.l1_size)
    rt = (h.refcount_table_offset,
          h.refcount_table_offset + h.refcount_table_clusters * cs)
    l2 = {e & qcow2.OFFSET_MASK for e in im.l1_table()} - {0}
    rb = {e & qcow2.REFT_OFFSET_MASK for e in im.refcount_table()} - {0}
    kinds = []
    for off, n in events:
        c = off // cs * cs
        if off < cs:
            k = 'header'
        elif n == 8:
            k = 'l1-entry' if l1[0] <= off < l1[1] else 'reftable-entry'
        elif c in l2:
            k = 'l2'
        elif c in rb:
            k = 'refblock'
        elif rt[0] <= off < rt[1]:
            k = 'reftable'
        else:
            k = 'data'
        kinds.append(k)
    return kinds


def spread(indices, k):
    """Up to k of `indices`, evenly spaced, first and last included."""
    if len(indices) <= k:
        return list(indices)
    step = (len(indices) - 1) / (k - 1)
    return sorted({indices[round(i * step)] for i in range(k)})


class TestFaultSweep(FaultCase):
    """Item 24: EIO and ENOSPC at host events during 64 MiB of writes."""

    SIZE = 64 * MiB
    # 128 KiB per L2 table and per refcount block; the refcount table
    # grows at 16, 32 and 64 MiB.
    OPTS = 'cluster_size=1024,refcount_bits=64'

    def setUp(self):
        super().setUp()
        self.cmds = workload(24, self.SIZE, 64 * MiB, 256 * KiB, 16)
        img = self.new_image('trace.qcow2', self.SIZE, self.OPTS)
        self.events, self.closing, _ = self.trace(img, self.cmds, self.SIZE)
        self.kinds = classify(img, self.events['write'])

    def one(self, spec, must_report=True):
        img = self.checked(self.new_image('f.qcow2', self.SIZE, self.OPTS))
        model = SectorModel(self.SIZE)
        with self.subTest(spec=spec):
            injected, failed = self.run_faulty(img, self.cmds, spec, model,
                                               must_report)
            self.assertGreater(injected, 0, 'BP_FAULT=%s fired no fault'
                               % spec)
            self.assert_consistent(img, spec)
            self.verify(img, model, spec)
        return img

    def sweep_writes(self, err, per_kind):
        by_kind = {}
        for i, k in enumerate(self.kinds):
            by_kind.setdefault(k, []).append(i)
        # Every kind the workload produces, each at several moments.
        for k in ('header', 'l1-entry', 'reftable-entry', 'l2', 'refblock',
                  'reftable', 'data'):
            self.assertTrue(k in by_kind, 'the workload writes no %s (only '
                            '%s)' % (k, ', '.join(sorted(by_kind))))
        for k, idx in sorted(by_kind.items()):
            for i in spread(idx, per_kind):
                self.one('write:%s:after=%d' % (err, i))

    def test_write_eio(self):
        self.sweep_writes('eio', 6)

    def test_write_enospc(self):
        self.sweep_writes('enospc', 4)

    def test_other_events(self):
        """Failed fdatasync, zeroing (fallocate) and growth (ftruncate)."""
        for op, err, k in (('flush', 'eio', 6), ('alloc', 'enospc', 4),
                           ('alloc', 'eio', 2), ('truncate', 'eio', 4)):
            ev = self.events[op]
            # The close syncs once more and trims the file: it cannot
            # report a failure, the image must merely stay consistent.
            closing = self.closing[op]
            running = [i for i in range(len(ev)) if i not in closing]
            self.assertTrue(running, 'the workload has no %s events' % op)
            for i in spread(running, k):
                self.one('%s:%s:after=%d' % (op, err, i))
            for i in sorted(closing):
                self.one('%s:%s:after=%d' % (op, err, i), must_report=False)

    def test_persistent(self):
        """From some moment on, every write (or every event) fails; and
        bursts of K failures."""
        n = len(self.events['write'])
        for frac in (0.1, 0.5, 0.9):
            at = int(n * frac)
            self.one('write:eio:after=%d:count=inf' % at)
            self.one('write:enospc:after=%d:count=3' % at)
        self.one('any:eio:after=%d:count=inf' % (n // 3))
        self.one('flush:eio:after=20:count=inf')

    def test_repair_after_faults(self):
        """After a failed run, our check -r leaks leaves nothing to find,
        and the image takes writes again."""
        n = len(self.events['write'])
        img = self.one('write:eio:after=%d:count=inf' % (n // 2))
        self.run_ok([self.ours('qemu-img'), 'check', '-q', '-r', 'leaks',
                     img])
        rc, text = self.real_check(img)
        self.assertEqual(rc, 0, text)
        self.run_ok([self.ours('qemu-io'), '-f', 'qcow2', '-c',
                     'write -P 7 0 1M', img])
        self.real_io(img, 'read -P 7 0 1M')
        self.assert_real_clean(img)


class TestShortTransfers(FaultCase):
    """Item 26: the host file reads or writes fewer bytes than asked.
    The file driver asks again for the rest; a short transfer followed by
    an error fails the request."""

    SIZE = 16 * MiB
    OPTS = 'cluster_size=4096'

    # Disjoint regions, sizes from one sector to 1 MiB, some not aligned
    # to clusters (copy-on-write of the partial clusters).
    REGIONS = [(0, 512), (4096, 4096), (65536 + 512, 3 * 512),
               (1 * MiB, 1 * MiB), (3 * MiB - 512, 64 * KiB + 1024),
               (5 * MiB + 1536, 300 * KiB), (9 * MiB, 8 * KiB),
               (12 * MiB, 2 * MiB - 512)]

    def writes(self):
        return [('write', o, n, 0x40 + i)
                for i, (o, n) in enumerate(self.REGIONS)]

    def reads(self):
        return [('read', o, n, 0x40 + i)
                for i, (o, n) in enumerate(self.REGIONS)]

    def real_verify(self, img):
        self.real_io(img, *['read -P %d %d %d' % (p, o, n)
                            for _, o, n, p in self.reads()])

    def test_short_writes(self):
        img = self.checked(self.new_image('w.qcow2', self.SIZE, self.OPTS))
        for spec in ('write:short:count=inf', 'write:short:after=3:count=5'):
            with self.subTest(spec=spec):
                rc, out, err = self.faulty_io(
                    img, self.writes() + [('flush',)], spec)
                self.assertEqual(rc, 0, out + err[-2000:])
                self.assertIn('injected short transfer', err)
                self.real_verify(img)
                self.assert_real_clean(img)

    def test_short_reads(self):
        img = self.checked(self.new_image('r.qcow2', self.SIZE, self.OPTS))
        rc, out, err = self.faulty_io(img, self.writes(), None)
        self.assertEqual(rc, 0, out + err)
        model = self.img('model.raw')
        with open(model, 'wb') as f:
            f.truncate(self.SIZE)
            for _, o, n, p in self.writes():
                f.seek(o)
                f.write(bytes([p]) * n)
        for spec in ('read:short:count=inf', 'read:short:after=2:count=4'):
            with self.subTest(spec=spec):
                # Metadata (header, tables) and data, read in pieces.
                rc, out, err = self.faulty_io(img, self.reads(), spec)
                self.assertEqual(rc, 0, out + err[-2000:])
                self.assertIn('injected short transfer', err)
                self.assertNotIn('verification failed', out)
                rc, out, err = proc.run(
                    [self.ours('qemu-img'), 'compare', '-f', 'qcow2', '-F',
                     'raw', img, model], env={'BP_FAULT': spec})
                self.assertEqual(rc, 0, out + err[-2000:])
                rc, out, err = proc.run(
                    [self.ours('qemu-img'), 'check', img],
                    env={'BP_FAULT': spec})
                self.assertEqual(rc, 0, out + err[-2000:])

    def test_short_then_error(self):
        """A short write or read whose second part fails: the request
        fails; nothing claims the whole transfer happened."""
        cmds = self.writes() + [('flush',), ('length',)]
        trace_img = self.new_image('t.qcow2', self.SIZE, self.OPTS)
        ev, _, _ = self.trace(trace_img, cmds, self.SIZE, ('write',))
        big = [i for i, (o, n) in enumerate(ev['write']) if n > SECTOR]
        for i in spread(big, 6):
            for err in ('eio', 'enospc'):
                spec = 'write:short:after=%d,write:%s:after=%d' % (i, err,
                                                                   i + 1)
                img = self.checked(self.new_image('s.qcow2', self.SIZE,
                                                  self.OPTS))
                model = SectorModel(self.SIZE)
                with self.subTest(spec=spec):
                    injected, failed = self.run_faulty(img, cmds, spec,
                                                       model)
                    self.assertEqual(injected, 2)
                    self.assert_consistent(img, spec)
                    self.verify(img, model, spec)
        # Reads: the pattern check never runs on half-read data.
        img = self.new_image('rd.qcow2', self.SIZE, self.OPTS)
        self.assertEqual(self.faulty_io(img, self.writes(), None)[0], 0)
        for i in (0, 3, 6, 9):
            spec = 'read:short:after=%d,read:eio:after=%d' % (i, i + 1)
            with self.subTest(spec=spec):
                rc, out, err = self.faulty_io(img, self.reads(), spec)
                self.assertEqual(rc, 1, out + err[-2000:])
                self.assertNotIn('verification failed', out)
                self.assertTrue('read failed: Input/output error' in out or
                                "can't open" in err, out + err[-2000:])


class TestFullDisk(FaultCase):
    """Item 27: the disk fills up while clusters, L2 tables, refcount
    blocks and a larger refcount table are allocated.  Every write and
    zeroing that reaches beyond byte F of the file fails with ENOSPC, F
    picked so that the first casualty is each kind in turn."""

    SIZE = 16 * MiB
    # 32 KiB per L2 table, 128 KiB per refcount block; the refcount table
    # (one cluster) covers 8 MiB of file and grows during the run.
    OPTS = 'cluster_size=512'

    def base_image(self):
        """7 MiB of data, closed: the file ends where the image does."""
        img = self.new_image('base.qcow2', self.SIZE, self.OPTS)
        model = SectorModel(self.SIZE)
        cmds = [('write', o, MiB, 0x11 + o // MiB) for o in range(0, 7 * MiB,
                                                                   MiB)]
        self.run_faulty(img, cmds + [('flush',)], None, model)
        return img, model

    def phase2(self):
        cmds = [('write', 1 * MiB, 64 * KiB, 0x21)]        # overwrite
        for k in range(16):
            cmds.append(('write', 8 * MiB + k * 512 * KiB + 4096 * (k % 3),
                         128 * KiB, 0x30 + k))
        cmds += [('write', 2 * MiB + 512, 64 * KiB, 0x22),  # overwrite
                 ('flush',), ('length',)]
        return cmds

    def candidates(self, base):
        """Offsets F whose first failing write is each kind of allocation:
        host events that reach further into the file than all before."""
        img = self.img('trace.qcow2')
        with open(base, 'rb') as src, open(img, 'wb') as dst:
            dst.write(src.read())
        start = os.path.getsize(base)
        _, _, order = self.trace(img, self.phase2(), self.SIZE,
                                 ('write', 'alloc'))
        firsts = []
        reach = start
        for op, _, off, n in order:
            if off >= reach:
                firsts.append((off, n))
            reach = max(reach, off + n)
        kinds = classify(img, firsts)
        by_kind = {}
        for (off, n), k in zip(firsts, kinds):
            by_kind.setdefault(k, []).append(off)
        for k in ('data', 'l2', 'refblock', 'reftable'):
            self.assertTrue(k in by_kind, 'no allocation of %s (only %s)'
                            % (k, ', '.join(sorted(by_kind))))
        return start, by_kind

    def full_disk_run(self, base, base_model, limit, what):
        img = self.checked(self.img('full.qcow2'))
        with open(base, 'rb') as src, open(img, 'wb') as dst:
            dst.write(src.read())
        model = SectorModel(self.SIZE)
        model.durable = list(base_model.durable)
        model.cand = list(base_model.cand)
        spec = ('write:enospc:from=%d:count=inf,'
                'alloc:enospc:from=%d:count=inf' % (limit, limit))
        cmds = self.phase2()
        rc, out, err = self.faulty_io(img, cmds, spec)
        res, extra = parse_results(cmds, out)
        self.assertEqual(extra, [])
        fails = [l for l in out.splitlines() if 'failed' in l]
        self.assertTrue(fails, '%s: no write failed' % what)
        for l in fails:
            self.assertEqual(l, 'write failed: No space left on device',
                             what)
        self.assertEqual(rc, 1)
        # In-place overwrites need no space.
        self.assertTrue(res[0] and res[-3], '%s: an overwrite failed' % what)
        for c, ok in zip(cmds, res):
            if c[0] == 'write':
                model.write(c[1], c[2], c[3], ok)
            elif c[0] == 'flush' and ok:
                model.flushed()
        self.assert_consistent(img, what)
        self.verify(img, model, what)
        # Space again: the same writes succeed, and the leaks go away.
        rc, out, err = self.faulty_io(img, cmds, None)
        self.assertEqual(rc, 0, '%s, after freeing space: %s' % (what, out))
        for c in cmds:
            if c[0] == 'write':
                model.write(c[1], c[2], c[3], True)
        model.flushed()
        self.run_ok([self.ours('qemu-img'), 'check', '-q', '-r', 'leaks',
                     img])
        self.assert_real_clean(img)
        self.verify(img, model, what + ', after freeing space')

    def test_full_disk_sweep(self):
        base, base_model = self.base_image()
        start, by_kind = self.candidates(base)
        limits = {start}
        for k, offs in by_kind.items():
            limits.update(spread(offs, 3))
        self.assertGreaterEqual(len(limits), 8)
        for limit in sorted(limits):
            kind = [k for k, offs in by_kind.items() if limit in offs]
            what = 'full at %d (%s)' % (limit, '/'.join(kind) or 'start')
            with self.subTest(limit=limit, kind=kind):
                self.full_disk_run(base, base_model, limit, what)

    def test_full_disk_default_clusters(self):
        """64 KiB clusters: the disk is full from the start."""
        img = self.checked(self.new_image('d.qcow2', self.SIZE,
                                          'cluster_size=65536'))
        self.run_ok([self.ours('qemu-io'), '-f', 'qcow2', '-c',
                     'write -P 5 0 1M', img])
        limit = os.path.getsize(img)
        spec = 'write:enospc:from=%d:count=inf,alloc:enospc:from=%d:' \
               'count=inf' % (limit, limit)
        cmds = ['write -P 6 4M 1M', 'write -P 7 512k 4k', 'flush']
        argv = [self.ours('qemu-io'), '-f', 'qcow2']
        for c in cmds:
            argv += ['-c', c]
        rc, out, err = proc.run(argv + [img], env={'BP_FAULT': spec})
        self.assertEqual(rc, 1, out + err)
        self.assertIn('write failed: No space left on device', out)
        self.assertIn('wrote 4096/4096 bytes at offset 524288', out)
        self.assert_consistent(img, 'full disk, 64 KiB clusters')
        self.run_ok(argv + [img])
        self.assert_real_clean(img)
        self.real_io(img, 'read -P 5 0 512k', 'read -P 7 512k 4k',
                     'read -P 5 516k 508k', 'read -P 6 4M 1M')


class TestVariable(FaultCase):
    """BP_FAULT itself: a malformed value is reported and ignored."""

    def test_bad_value_ignored(self):
        img = self.checked(self.new_image('v.qcow2', MiB))
        argv = [self.ours('qemu-io'), '-f', 'qcow2', '-c', 'write 0 4k',
                img]
        for spec, msg in (('write:bogus', "unknown action 'bogus'"),
                          ('write:eio:after=x', 'after'),
                          ('scribble', 'needs OP:ACTION')):
            with self.subTest(spec=spec):
                rc, out, err = proc.run(argv, env={'BP_FAULT': spec})
                self.assertEqual(rc, 0, out + err)
                self.assertIn('warning: BP_FAULT ignored: ', err)
                self.assertIn(msg, err)
                self.assertIn('wrote 4096/4096', out)

    def test_empty_or_unset(self):
        img = self.checked(self.new_image('v.qcow2', MiB))
        argv = [self.ours('qemu-io'), '-f', 'qcow2', '-c', 'write 0 4k',
                img]
        for env in ({'BP_FAULT': ''}, None):
            rc, out, err = proc.run(argv, env=env)
            self.assertEqual((rc, err), (0, ''))


class TestCrashAtSyncPoints(FaultCase):
    """Item 25: the process ends (`exit` action, status 99) at a sync point
    (before an fdatasync), or before a host write, of a write-and-flush
    workload.  After it, every write acknowledged before the last flush
    that completed reads back, the real check finds leaks at most, and
    our check -r leaks brings it to none."""

    SIZE = 16 * MiB
    OPTS = 'cluster_size=1024'

    def setUp(self):
        super().setUp()
        self.cmds = workload(25, self.SIZE, 8 * MiB, 64 * KiB, 8)
        img = self.new_image('trace.qcow2', self.SIZE, self.OPTS)
        self.events, self.closing, _ = self.trace(img, self.cmds, self.SIZE)

    def crash_run(self, spec):
        img = self.new_image('c.qcow2', self.SIZE, self.OPTS)
        rc, out, err = self.faulty_io(img, self.cmds, spec)
        self.assertEqual(rc, 99, 'BP_FAULT=%s: no crash\n%s'
                         % (spec, err[-2000:]))
        # What completed: each command's line is printed when it ends (a
        # flush prints nothing), so a flush completed when a later write
        # printed; the command after the last line was running.
        done = len([l for l in out.splitlines()
                    if l.startswith(('wrote ', 'write failed'))])
        model = SectorModel(self.SIZE)
        writes = 0
        for c in self.cmds:
            if c[0] == 'write':
                if writes == done:
                    model.write(c[1], c[2], c[3], False)    # in progress
                    break
                model.write(c[1], c[2], c[3], True)
                writes += 1
            elif c[0] == 'flush' and writes < done:
                model.flushed()
        with self.subTest(spec=spec):
            self.assert_consistent(img, spec)
            self.verify(img, model, spec)
            self.run_ok([self.ours('qemu-img'), 'check', '-q', '-r',
                         'leaks', img])
            rc, text = self.real_check(img)
            self.assertEqual(rc, 0, '%s, after check -r leaks:\n%s'
                             % (spec, text))

    def test_each_sync_point(self):
        flushes = [i for i in range(len(self.events['flush']))
                   if i not in self.closing['flush']]
        self.assertGreater(len(flushes), 8)
        for i in spread(flushes, 16):
            self.crash_run('flush:exit:after=%d' % i)

    def test_host_writes(self):
        writes = [i for i in range(len(self.events['write']))
                  if i not in self.closing['write']]
        for i in spread(writes, 16):
            self.crash_run('write:exit:after=%d' % i)


class TestFrontEndsUnderFaults(FaultCase):
    """One host I/O error at any point of a qemu-img command: a clear
    error and a failure status, never a signal or a silent success."""

    def commands(self):
        src = self.new_image('src.qcow2', 4 * MiB, 'cluster_size=4096')
        self.run_ok([self.ours('qemu-io'), '-f', 'qcow2', '-c',
                     'write -P 3 0 1M', '-c', 'write -P 4 2M 512k', src])
        qi = self.ours('qemu-img')
        dst = self.img('dst.qcow2')
        return [
            ('create', [qi, 'create', '-q', '-f', 'qcow2', dst, '64M'],
             None),
            ('convert', [qi, 'convert', '-O', 'qcow2', src, dst], None),
            ('bitmap --add', [qi, 'bitmap', '--add', src, 'b0'], src),
            ('checkpoint --create', [qi, 'checkpoint', '--create', 'c0',
                                     src], src),
            ('check', [qi, 'check', '-q', src], None),
            ('resize', [qi, 'resize', '-q', src, '8M'], src),
        ]

    def test_single_error_anywhere(self):
        for name, argv, image in self.commands():
            saved = None
            if image:
                with open(image, 'rb') as f:
                    saved = f.read()
            rc, out, err = proc.run(argv, timeout=60,
                                    env={'BP_FAULT': 'any:log'})
            self.assertEqual(rc, 0, '%s: %s' % (name, err[-2000:]))
            ops = [m[0] for m in EVENT_RE.findall(err)]
            n = len(ops)
            self.assertGreater(n, 0, name)

            def redundant(i):
                """A sync with nothing written since the last one (which
                succeeded: one fault per run), e.g. when closing."""
                if ops[i] != 'flush':
                    return False
                for op in reversed(ops[:i]):
                    if op != 'read':
                        return op == 'flush'
                return False
            for i in spread(list(range(n)), 24):
                if image:
                    with open(image, 'wb') as f:
                        f.write(saved)
                for dst in ('dst.qcow2',):
                    if os.path.exists(self.img(dst)):
                        os.unlink(self.img(dst))
                spec = 'any:eio:after=%d' % i
                rc, out, err = proc.run(argv, timeout=60,
                                        env={'BP_FAULT': spec})
                with self.subTest(command=name, spec=spec):
                    self.assertGreaterEqual(rc, 0, '%s died of signal %d'
                                            % (name, -rc))
                    if INJECTED_RE.search(err) and rc == 0 and \
                            not redundant(i):
                        # Only a failed read the command could do without
                        # (a probe) may pass; a write or sync never.
                        self.assertNotRegex(
                            err, r'BP_FAULT: (write|flush|alloc|truncate) '
                            r'#\d+ .*injected', name)
                    if rc != 0:
                        msg = [l for l in err.splitlines()
                               if not l.startswith('BP_FAULT:')]
                        self.assertTrue(msg, '%s failed silently' % name)
            if image:
                with open(image, 'wb') as f:
                    f.write(saved)


if __name__ == '__main__':
    unittest.main()
