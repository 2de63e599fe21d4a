#!/usr/bin/python3
"""Checkpoint changes that die or fail half-way (robustness catalogue
items 20 and 21).

A process killed at each sync point of a checkpoint create or remove
(BP_FAULT_BITMAP_STEP: the steps of the bitmap directory update, and the
header write of a commit that changed no bitmap) leaves the image holding
exactly the old chain with the old bitmaps or exactly the new ones, never
a mix, and the real `qemu-img check` finds no corruption; offline with
our qemu-img and through our daemon.

A create or remove whose metadata update fails with ENOSPC
(BP_FAULT_BITMAP_STEP_ERROR) at any step that can fail reports the error
and leaves the chain and every bitmap exactly as they were (in the
daemon's memory and in the image); the same operation then succeeds, and
the image checks clean."""

import json
import re
import shutil
import unittest

from ckpt_util import (AUTOCLEAR_CKPT, CheckpointCase, KiB, MiB, NODE,
                       autoclear, blockdev, nbd_connect, read_table)
from harness import proc, qcow2, qmp, requires_module

SIZE = 64 * MiB
CRASH = 'BP_FAULT_BITMAP_STEP'
ENOSPC = 'BP_FAULT_BITMAP_STEP_ERROR'
# Data written while A, B and C were the newest checkpoint (qemu-io -P).
WRITES = [('A', 0x11, 0, MiB), ('B', 0x22, 2 * MiB, 512 * KiB),
          ('B', 0x23, 20 * MiB, 64 * KiB), ('C', 0x33, 4 * MiB, MiB)]


class CrashCase(CheckpointCase):

    def setUp(self):
        super().setUp()
        self.n = 0

    def base(self, name='base.qcow2'):
        """Checkpoints A <- B <- C (C recording), each with data written
        while it was the newest; made offline, not registered."""
        path = self.img(name)
        self.real_ok('create', '-f', 'qcow2', path, SIZE)
        for ckpt in 'ABC':
            self.ours_ok('checkpoint', '-c', ckpt, path)
            self.io('real', path, *['write -P %d %d %d' % (p, o, n)
                                    for c, p, o, n in WRITES if c == ckpt])
        self.settle(path)
        return path

    def settle(self, path):
        """QEMU cleared autoclear bit 48: our first read-write open sets
        it again (a header write of its own, before any fault point)."""
        self.run_ok([self.ours('qemu-io'), '-c', 'flush', path])
        self.assertTrue(autoclear(path) & AUTOCLEAR_CKPT)

    def copy(self, base, what):
        self.n += 1
        path = self.checked(self.img('%s-%d.qcow2' % (what, self.n)))
        shutil.copy(base, path)
        return path

    # -- the state of an image -------------------------------------------

    def disk_state(self, path):
        """(chain, bitmaps, times) as `path` holds them: the table as our
        qemu-img lists it and as stored (without creation times), every
        bitmap directory entry with its flags and dirty bits, and the
        creation time of each checkpoint."""
        cps = self.ckpt_list(path)
        chain = [tuple(sorted((k, v) for k, v in c.items()
                              if not k.startswith('date-'))) for c in cps]
        table = [tuple(sorted((k, v) for k, v in e.items()
                              if k not in ('sec', 'nsec')))
                 for e in read_table(path) or []]
        img = qcow2.Image(path)
        bitmaps = sorted((e.name, e.flags, e.granularity,
                          tuple(img.bitmap_dirty_bits(e.name)))
                         for e in img.bitmap_directory())
        times = {c['name']: (c['date-sec'], c['date-nsec']) for c in cps}
        bit48 = bool(autoclear(path) & AUTOCLEAR_CKPT)
        return (chain, table, bit48), bitmaps, times

    def same(self, a, b, old=None):
        """Equal states, where the checkpoints of `old` (default: `b`)
        keep their creation times: a new one gets the time of its run."""
        keep = (old or b)[2]
        return a[:2] == b[:2] and all(a[2].get(n) == b[2].get(n)
                                      for n in keep if n in b[2])

    def which(self, st, old, new):
        if self.same(st, old):
            return 'old'
        if self.same(st, new, old):
            return 'new'
        self.fail('neither the old nor the new state:\n%s' % '\n'.join(
            '%s: %r\n  old %r\n  new %r' % (what, st[i], old[i], new[i])
            for i, what in enumerate(('table', 'bitmaps', 'times'))
            if st[i] != old[i] and st[i] != new[i]))

    def names(self, path):
        return [(c['name'], c.get('parent'))
                for c in self.ckpt_list(path)]

    def data_ok(self, path):
        self.run_ok([self.real('qemu-io'), '-r', '-f', 'qcow2'] +
                    [a for _, p, o, n in WRITES
                     for a in ('-c', 'read -P %d %d %d' % (p, o, n))] +
                    [path])

    def check_rc(self, path, allowed=(0, 3)):
        rc, text = self.check_image(path)
        self.assertIn(rc, allowed, text)

    def still_usable(self, path):
        """Our tools can keep working on the image afterwards."""
        self.ours_ok('checkpoint', '-c', 'later', path)
        self.io('real', path, 'write -P 0x44 30M 64k')
        self.assertIn(65536, [c['changed-bytes']
                              for c in self.ckpt_list(path)
                              if c['name'] == 'later'])
        self.ours_ok('checkpoint', '-d', 'later', path)
        self.check_rc(path)

    def reference(self, base, args):
        """The state after `qemu-img checkpoint ARGS` without a fault."""
        path = self.copy(base, 'ref')
        self.ours_ok(*(['checkpoint'] + args + [path]))
        return self.disk_state(path)

    # -- offline runs with a fault -----------------------------------------

    def run_faulted(self, var, step, args, path):
        return proc.run([self.ours('qemu-img'), 'checkpoint'] + args +
                        [path], env={var: str(step)}, timeout=120)

    def crash_each_step(self, base, args):
        """Kill `qemu-img checkpoint ARGS` at step 1, 2, ... until it
        survives; returns what each crash left ('old' or 'new')."""
        old = self.disk_state(base)
        new = self.reference(base, args)
        self.assertFalse(self.same(old, new, old))
        seen = []
        for step in range(1, 30):
            path = self.copy(base, 'crash')
            rc, _, err = self.run_faulted(CRASH, step, args, path)
            if rc == 0:
                self.assertNotIn(CRASH, err)
                self.assertTrue(self.same(self.disk_state(path), new, old))
                return seen
            with self.subTest(step=step):
                self.assertEqual(rc, 99, err)
                self.assertIn('%s: exiting at step' % CRASH, err)
                seen.append(self.which(self.disk_state(path), old, new))
                self.check_rc(path)
                self.data_ok(path)
                self.still_usable(path)
        self.fail('still crashing at step 30')

    def enospc_each_step(self, base, args, message):
        """Make each step of `qemu-img checkpoint ARGS` fail with ENOSPC
        in turn; returns the kinds of the steps that failed."""
        old = self.disk_state(base)
        new = self.reference(base, args)
        failed = []
        for step in range(1, 30):
            path = self.copy(base, 'enospc')
            rc, _, err = self.run_faulted(ENOSPC, step, args, path)
            hit = re.search(r'%s: failing step (\d+)' % ENOSPC, err)
            if not hit:
                self.assertEqual(rc, 0, err)
                self.assertTrue(self.same(self.disk_state(path), new, old))
                if 'past the commit point' in err:
                    continue
                return failed
            with self.subTest(step=step):
                self.assertEqual(rc, 1, err)
                self.assertIn(message, err)
                self.assertIn('nothing was changed', err)
                self.assertIn('No space left on device', err)
                self.assertTrue(self.same(self.disk_state(path), old),
                                'step %d changed the image' % step)
                self.check_rc(path, (0,))
                self.data_ok(path)
                # The same operation works once the space is there.
                self.ours_ok(*(['checkpoint'] + args + [path]))
                self.assertTrue(self.same(self.disk_state(path), new, old))
                self.check_rc(path, (0,))
                failed.append(int(hit.group(1)))
        self.fail('still failing at step 30')


class TestCrashOffline(CrashCase):
    """Item 20 with our qemu-img."""

    def test_create(self):
        base = self.base()
        self.assertEqual(self.crash_each_step(base, ['-c', 'D']),
                         ['old', 'old', 'new', 'new', 'new'])

    def test_create_named_bitmap(self):
        base = self.base()
        self.assertEqual(self.crash_each_step(
            base, ['-c', 'D', '-b', 'bm-d', '-g', '4k']),
            ['old', 'old', 'new', 'new', 'new'])

    def test_remove_middle(self):
        base = self.base()
        self.assertEqual(self.crash_each_step(base, ['-d', 'B']),
                         ['old', 'old', 'new', 'new', 'new'])

    def test_remove_newest(self):
        base = self.base()
        self.assertEqual(self.crash_each_step(base, ['-d', 'C']),
                         ['old', 'old', 'new', 'new', 'new'])

    def test_remove_oldest(self):
        base = self.base()
        self.assertEqual(self.crash_each_step(base, ['-d', 'A']),
                         ['old', 'old', 'new', 'new', 'new'])

    def test_remove_only_table(self):
        # B's bitmap removed by QEMU: removing B changes no bitmap, only
        # the table (A becomes incomplete), in a header write of its own.
        base = self.base()
        self.real_ok('bitmap', '--remove', base, 'B')
        self.settle(base)
        self.assertEqual(read_table(base)[1]['damage'], 1)
        self.assertEqual(self.crash_each_step(base, ['-d', 'B']),
                         ['new', 'new'])


class TestEnospcOffline(CrashCase):
    """Item 21 (and the same for create) with our qemu-img."""

    def test_remove_middle(self):
        base = self.base()
        self.assertEqual(self.enospc_each_step(
            base, ['-d', 'B'], "Could not remove checkpoint 'B'"),
            [1, 2, 3])

    def test_remove_newest(self):
        base = self.base()
        self.assertEqual(self.enospc_each_step(
            base, ['-d', 'C'], "Could not remove checkpoint 'C'"),
            [1, 2, 3])

    def test_create(self):
        base = self.base()
        self.assertEqual(self.enospc_each_step(
            base, ['-c', 'D'], "Could not create checkpoint 'D'"),
            [1, 2, 3])

    def test_remove_only_table(self):
        base = self.base()
        self.real_ok('bitmap', '--remove', base, 'B')
        self.settle(base)
        self.assertEqual(self.enospc_each_step(
            base, ['-d', 'B'], 'Could not write the checkpoint table'),
            [6])


@requires_module('nbd')
class TestDaemon(CrashCase):
    """Both items through our daemon."""

    def start(self, path, env=None):
        """Our daemon on `path` (node NODE) with an NBD server and a
        writable export 'w'; returns (daemon, qmp, nbd socket)."""
        self.n += 1
        sock = self.sock('qmp-%d' % self.n)
        d = self.start_daemon(qmp.qsd_argv(self.ours('qemu-storage-daemon'),
                                           [sock]),
                              socket_path=sock, env=env)
        q = qmp.QMPClient(sock)
        q.negotiate()
        self.addCleanup(q.close)
        q.cmd_ok('blockdev-add', blockdev(path))
        nsock = self.sock('nbd-%d' % self.n)
        q.cmd_ok('nbd-server-start', {'addr': {'type': 'unix', 'data': {
            'path': nsock}}})
        self.export(q, 'w', writable=True)
        return d, q, nsock

    def write(self, sock, off, length, pattern=0x55):
        h = nbd_connect(sock, 'w')
        try:
            h.pwrite(bytes([pattern]) * length, off)
            h.flush()
        finally:
            h.shutdown()

    def live_state(self, q):
        """The chain as the daemon reports it and every bitmap of the
        node with its flags and the SHA-256 of its bits."""
        cps = self.query(q)
        for n in q.cmd_ok('query-named-block-nodes'):
            if n['node-name'] == NODE:
                bms = n.get('dirty-bitmaps', [])
        shas = {}
        for b in bms:
            shas[b['name']] = q.cmd_ok('x-debug-block-dirty-bitmap-sha256',
                                       {'node': NODE,
                                        'name': b['name']})['sha256']
        return cps, sorted(json.dumps(b, sort_keys=True) for b in bms), shas

    def died(self, d, q, cmd, args):
        """Run a command that is expected to kill the daemon; False if
        it answered instead."""
        try:
            r = q.cmd(cmd, args)
        except (qmp.QMPClosed, ConnectionError, OSError):
            self.assertEqual(d.wait(timeout=60), 99, d.output())
            self.assertIn('%s: exiting at step' % CRASH, d.output())
            return True
        self.assertNotIn('error', r)
        return False

    def crash_each_step(self, base, cmd, args):
        old = self.disk_state(base)
        ref = self.copy(base, 'ref')
        d, q, _ = self.start(ref)
        q.cmd_ok(cmd, args)
        self.quit(d, q)
        new = self.disk_state(ref)
        seen = []
        for step in range(1, 30):
            path = self.copy(base, 'qcrash')
            d, q, _ = self.start(path, {CRASH: str(step)})
            if not self.died(d, q, cmd, args):
                self.quit(d, q)
                self.assertTrue(self.same(self.disk_state(path), new, old))
                return seen
            with self.subTest(step=step):
                seen.append(self.which(self.disk_state(path), old, new))
                self.check_rc(path)
                self.data_ok(path)
                self.still_usable(path)
        self.fail('still crashing at step 30')

    def test_crash_create(self):
        base = self.base()
        self.assertEqual(self.crash_each_step(
            base, 'block-checkpoint-add', {'node': NODE, 'name': 'D'}),
            ['old', 'old', 'new', 'new', 'new'])

    def test_crash_remove_middle(self):
        base = self.base()
        self.assertEqual(self.crash_each_step(
            base, 'block-checkpoint-remove', {'node': NODE, 'name': 'B'}),
            ['old', 'old', 'new', 'new', 'new'])

    def test_crash_create_after_writes(self):
        # Guest writes first: C is flagged in use on disk (a directory
        # update of its own, whose steps are counted too).  A crash during
        # the create leaves the old chain (C inconsistent, as after any
        # crash while writes were recorded) or the new one, clean.
        base = self.base()
        frozen = {n: qcow2.Image(base).bitmap_dirty_bits(n) for n in 'AB'}
        phases = []
        for step in range(1, 30):
            path = self.copy(base, 'qwrite')
            d, q, sock = self.start(path, {CRASH: str(step)})
            try:
                self.write(sock, 40 * MiB, 4096)
            except Exception:
                self.assertEqual(d.wait(timeout=60), 99, d.output())
                phases.append('write')
                self.assertEqual(self.names(path), self.names(base))
                self.check_rc(path)
                continue
            if not self.died(d, q, 'block-checkpoint-add',
                             {'node': NODE, 'name': 'D'}):
                self.quit(d, q)
                break
            with self.subTest(step=step):
                got = self.names(path)
                listing = {c['name']: c for c in self.ckpt_list(path)}
                if got == self.names(base):
                    phases.append('old')
                    self.assertFalse(listing['C']['usable'])
                else:
                    phases.append('new')
                    self.assertEqual(got, self.names(base) + [('D', 'C')])
                    self.assertTrue(all(c['usable']
                                        for c in listing.values()))
                    self.assertEqual(
                        qcow2.Image(path).bitmap_dirty_bits('C'),
                        qcow2.Image(base).bitmap_dirty_bits('C') +
                        [40 * MiB // (64 * KiB)])
                for n in 'AB':
                    self.assertEqual(
                        qcow2.Image(path).bitmap_dirty_bits(n), frozen[n])
                self.check_rc(path)
                self.data_ok(path)
                self.still_usable(path)
        self.assertEqual(phases, ['write'] * 5 + ['old'] * 2 + ['new'] * 3)

    def enospc_each_step(self, base, cmd, args, message, writes=False):
        """In a daemon per step: make step N fail with ENOSPC; a failed
        command leaves the daemon's chain and bitmaps exactly as before,
        and then succeeds.  Returns the steps that failed the command.
        With `writes`, a guest write comes first: its in-use update of
        C takes steps 1-5, so the command's steps start at 6."""
        new = self.copy(base, 'ref')
        d, q, sock = self.start(new)
        if writes:
            self.write(sock, 40 * MiB, 4096)
        q.cmd_ok(cmd, args)
        want = self.live_state(q)
        self.quit(d, q)
        failed = []
        for step in range(6 if writes else 1, 30):
            path = self.copy(base, 'qenospc')
            d, q, sock = self.start(path, {ENOSPC: str(step)})
            if writes:
                self.write(sock, 40 * MiB, 4096)
            before = self.live_state(q)
            r = q.cmd(cmd, args)
            if 'error' not in r:
                self.assertEqual(self.live_state(q)[1:], want[1:])
                self.quit(d, q)
                self.assertNotIn('failing step', d.output())
                if 'past the commit point' not in d.output():
                    return failed
                continue
            with self.subTest(step=step):
                err = r['error']['desc']
                self.assertIn(message, err)
                self.assertIn('No space left on device', err)
                self.assertEqual(self.live_state(q), before)
                # The image is usable: the command succeeds now.
                q.cmd_ok(cmd, args)
                self.assertEqual(self.live_state(q)[1:], want[1:])
                self.quit(d, q)
                self.check_rc(path, (0,))
                self.data_ok(path)
                failed.append(step)
        self.fail('still failing at step 30')

    def test_enospc_remove_middle(self):
        base = self.base()
        self.assertEqual(self.enospc_each_step(
            base, 'block-checkpoint-remove', {'node': NODE, 'name': 'B'},
            "Could not remove checkpoint 'B', nothing was changed"),
            [1, 2, 3])

    def test_enospc_remove_middle_after_writes(self):
        # In a write session the merge target A is flagged in use first
        # (steps 6-10: a failure there comes before anything changed),
        # then the commit (11-15).
        base = self.base()
        self.assertEqual(self.enospc_each_step(
            base, 'block-checkpoint-remove', {'node': NODE, 'name': 'B'},
            'No space left on device', writes=True),
            [6, 7, 8, 11, 12, 13])

    def test_enospc_create(self):
        base = self.base()
        self.assertEqual(self.enospc_each_step(
            base, 'block-checkpoint-add', {'node': NODE, 'name': 'D'},
            "Could not create checkpoint 'D', nothing was changed"),
            [1, 2, 3])


if __name__ == '__main__':
    unittest.main()
