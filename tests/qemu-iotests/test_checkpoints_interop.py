#!/usr/bin/python3
"""Checkpoints and the real QEMU 7.2 tools: an image with checkpoints is a
normal image with bitmaps to them (check clean, bitmap flags as expected);
their writes (qemu-io, qemu-storage-daemon over NBD) land in the newest
checkpoint's bitmap and our tools see them; when they remove, disable,
enable or replace a checkpoint's bitmap, the affected checkpoints become
unusable with a clear reason; a table filled to the room computed for
QEMU's header layout still lets QEMU open and write the image."""

import signal
import unittest

from ckpt_util import (AUTOCLEAR_CKPT, EXT_CKPT, CheckpointCase, KiB, MiB,
                       Shadow, autoclear, nbd_connect, read_table)
from harness import qcow2, requires_module

SIZE = 64 * MiB


class TestRealTools(CheckpointCase):

    def chain(self, names=('c1', 'c2', 'c3'), size=SIZE, gran=None):
        """An image with checkpoints `names`, with real qemu-io writes
        between them; returns (path, shadow)."""
        path = self.create('img.qcow2', size)
        m = Shadow(size, gran or 64 * KiB)
        for i, n in enumerate(names):
            args = ['checkpoint', '-c', n]
            if gran:
                args += ['-g', str(gran)]
            self.ours_ok(*(args + [path]))
            m.add(n)
            self.real_write(path, m, [(i * 3 * MiB + 512, 5000)])
        return path, m

    def real_write(self, path, m, writes):
        self.io('real', path, *['write -P 7 %d %d' % w for w in writes])
        for off, n in writes:
            m.write(off, n)

    def test_normal_image_for_qemu(self):
        path, m = self.chain()
        self.real_ok('check', path)
        self.assertEqual(self.info_bitmaps(path), [
            {'flags': [], 'name': 'c1', 'granularity': 65536},
            {'flags': [], 'name': 'c2', 'granularity': 65536},
            {'flags': ['auto'], 'name': 'c3', 'granularity': 65536}])
        # QEMU sees exactly each checkpoint's interval in its bitmap.
        for name in m.names():
            self.assertEqual(self.real_extents(path, name),
                             m.ranges(name, self.next_of(m, name)))

    def next_of(self, m, name):
        names = m.names()
        i = names.index(name)
        return names[i + 1] if i + 1 < len(names) else None

    def test_real_writes_are_recorded(self):
        path, m = self.chain()
        # QEMU keeps our extension and clears our autoclear bit.
        self.assertIsNotNone(qcow2.Image(path).extension(EXT_CKPT))
        self.assertFalse(autoclear(path) & AUTOCLEAR_CKPT)
        cps = self.ckpt_list(path)
        self.assertTrue(all(c['usable'] for c in cps))
        for c in cps:
            self.assertEqual(c['changed-bytes'], m.changed_bytes(c['name']))
        self.assert_model(path, m)
        # Our next read-write open trusts the table again.
        self.ours_ok('checkpoint', '-c', 'c4', path)
        m.add('c4')
        self.assertTrue(autoclear(path) & AUTOCLEAR_CKPT)
        self.real_write(path, m, [(40 * MiB, 1)])
        self.assert_model(path, m)

    def test_convert(self):
        path, m = self.chain(gran=4096)
        real_out = self.img('real.qcow2')
        self.real_ok('convert', '-O', 'qcow2', '--bitmaps', path, real_out)
        self.checked(real_out)
        self.assertEqual(self.ckpt_list(real_out), [])
        self.assertEqual(len(self.our_list(real_out)), 3)
        ours_out = self.checked(self.img('ours.qcow2'))
        self.ours_ok('convert', '-O', 'qcow2', '--bitmaps', path, ours_out)
        self.assertEqual(
            [(c['name'], c.get('parent'), c['granularity'], c['usable'])
             for c in self.ckpt_list(ours_out)],
            [(c['name'], c.get('parent'), c['granularity'], c['usable'])
             for c in self.ckpt_list(path)])
        self.assert_model(ours_out, m)
        self.real_ok('check', ours_out)

    def test_table_full_and_qemu_rewrites(self):
        path = self.img('small.qcow2')
        self.real_ok('create', '-q', '-f', 'qcow2', '-o',
                     'cluster_size=4096', path, '16M')
        self.checked(path)
        d, q, sock = self.daemon(path)
        for i in range(122):
            self.add(q, 'cp%06d' % i)
        err = self.qerror(q, 'block-checkpoint-add',
                          {'node': 'disk', 'name': 'cp999999'})
        self.assertIn('checkpoint table full', err)
        self.assertIn('122 checkpoints', err)
        self.quit(d, q)
        self.assertEqual(len(read_table(path)), 122)
        self.io('real', path, 'write 0 4k')
        self.real_ok('check', path)
        self.assertEqual(len(read_table(path)), 122)
        cps = self.ckpt_list(path)
        self.assertEqual(len(cps), 122)
        self.assertTrue(all(c['usable'] for c in cps))


class TestForeignChanges(CheckpointCase):

    def setUp(self):
        super().setUp()
        self.path = self.create('img.qcow2', SIZE)
        for n in ('c1', 'c2', 'c3'):
            self.ours_ok('checkpoint', '-c', n, self.path)
            self.io('real', self.path, 'write 0 4k')

    def states(self):
        return {c['name']: (c['usable'], c.get('damage'), c.get('reason'))
                for c in self.ckpt_list(self.path)}

    def test_removed_bitmap(self):
        self.real_ok('bitmap', '--remove', self.path, 'c2')
        s = self.states()
        self.assertEqual(s['c3'], (True, None, None))
        self.assertEqual(s['c2'][:2], (False, 'missing'))
        self.assertEqual(s['c2'][2], "bitmap 'c2' is missing")
        self.assertEqual(s['c1'][:2], (False, None))
        self.assertEqual(s['c1'][2], "bitmap 'c2' is missing")
        # Our next read-write open stores the damage for good.
        self.ours_ok('checkpoint', '-c', 'c4', self.path)
        self.assertEqual([e['damage'] for e in read_table(self.path)],
                         [0, 1, 0, 0])
        # Removing the damaged one: c1 cannot take its writes.
        self.ours_ok('checkpoint', '-d', 'c2', self.path)
        s = self.states()
        self.assertEqual(s['c1'][:2], (False, 'incomplete'))
        self.assertEqual(s['c3'][:2], (True, None))

    def test_disabled_newest(self):
        self.real_ok('bitmap', '--disable', self.path, 'c3')
        s = self.states()
        for n in ('c1', 'c2', 'c3'):
            self.assertFalse(s[n][0])
            self.assertEqual(s[n][2], "bitmap 'c3' of the newest "
                             "checkpoint 'c3' is not recording")
        self.assertEqual(s['c3'][1], 'not-recording')

    def test_enabled_older(self):
        self.real_ok('bitmap', '--enable', self.path, 'c1')
        s = self.states()
        self.assertEqual(s['c1'][:2], (False, 'stray-recording'))
        self.assertIn("bitmap 'c1' is recording", s['c1'][2])
        self.assertEqual(s['c2'], (True, None, None))

    def test_replaced_with_other_granularity(self):
        self.real_ok('bitmap', '--remove', self.path, 'c2')
        self.real_ok('bitmap', '--add', '--disable', '-g', '4k', self.path,
                     'c2')
        s = self.states()
        self.assertEqual(s['c2'][:2], (False, 'granularity'))
        self.assertIn('granularity 4096', s['c2'][2])


@requires_module('nbd')
class TestRealDaemon(CheckpointCase):

    def real_daemon(self, path):
        sock = self.sock('real-nbd.sock')
        d = self.start_daemon([
            self.real('qemu-storage-daemon'),
            '--blockdev', 'driver=file,filename=%s,node-name=f' % path,
            '--blockdev', 'driver=qcow2,file=f,node-name=d',
            '--nbd-server', 'addr.type=unix,addr.path=%s' % sock,
            '--export', 'type=nbd,id=e,node-name=d,name=e,writable=on'],
            socket_path=sock)
        return d, sock

    def test_nbd_writes_recorded(self):
        path = self.create('img.qcow2', SIZE)
        m = Shadow(SIZE, 4096)
        for n in ('c1', 'c2'):
            self.ours_ok('checkpoint', '-c', n, '-g', '4k', path)
            m.add(n)
            self.io('real', path, 'write %d 4k' % (len(m.names()) * MiB))
            m.write(len(m.names()) * MiB, 4096)
        d, sock = self.real_daemon(path)
        writes = [(7 * MiB + 3, 10000), (33 * MiB, 64 * KiB)]
        self.nbd_write(sock, 'e', writes, m)
        d.stop(sig=signal.SIGTERM)
        self.assertTrue(all(c['usable'] for c in self.ckpt_list(path)))
        self.assert_model(path, m)
        self.real_ok('check', path)

    def test_real_daemon_killed(self):
        path = self.create('img.qcow2', SIZE)
        self.ours_ok('checkpoint', '-c', 'c1', path)
        self.ours_ok('checkpoint', '-c', 'c2', path)
        d, sock = self.real_daemon(path)
        h = nbd_connect(sock, 'e')
        h.pwrite(b'x' * 4096, 0)
        h.flush()
        d.kill()
        # QEMU flags every bitmap it loads read-write in use, so all of
        # them are inconsistent after its crash.
        cps = self.ckpt_list(path)
        self.assertEqual([c['usable'] for c in cps], [False, False])
        for c in cps:
            self.assertEqual(c['damage'], 'inconsistent')
            self.assertEqual(c['reason'],
                             "bitmap '%s' is inconsistent" % c['name'])


if __name__ == '__main__':
    unittest.main()
