#!/usr/bin/python3
"""Persistent bitmaps, both ways, with the real QEMU 7.2 tools as oracle:
bitmaps changed by our qemu-img look the same to the real qemu-img (info,
check, dirty extents), bitmaps dirtied by real QEMU (qemu-io, a
qemu-storage-daemon NBD export) show the same extents in our --list and
map --bitmap, and merges (also across files with -b) agree bit for bit."""

import os
import shutil
import signal
import unittest

from bitmap_util import BitmapCase, KiB, MiB, merge_ranges, round_out
from harness import requires_module

SIZE = 256 * MiB

# One sequence of `qemu-img bitmap` calls, run by both tools.
SEQUENCE = [
    ['--add'], ['b0'],
    ['--add', '-g', '128k'], ['b1'],
    ['--add', '--disable'], ['b2'],
    ['--disable'], ['b0'],
    ['--enable'], ['b2'],
    ['--add', '-g', '4k'], ['b3'],
    ['--add', '-g', '2G'], ['huge'],
    ['--remove'], ['b3'],
    ['--add', '--remove', '--add', '-g', '1M'], ['again'],
    ['--clear', '--disable', '--enable'], ['b1'],
]


class TestOursReadByQemu(BitmapCase):

    def run_sequence(self, which, path):
        for i in range(0, len(SEQUENCE), 2):
            self.run_ok([self.qimg(which), 'bitmap'] + SEQUENCE[i]
                        + [path] + SEQUENCE[i + 1])

    def test_sequence_same_metadata(self):
        a = self.create('real.qcow2', SIZE)
        b = self.create('ours.qcow2', SIZE)
        self.run_sequence('real', a)
        self.run_sequence('ours', b)
        want = self.info_bitmaps(a, 'real')
        self.assertEqual([x['name'] for x in want],
                         ['b0', 'b1', 'b2', 'huge', 'again'])
        self.assertEqual(self.info_bitmaps(b, 'real'), want)
        # And our info reads both the same way.
        self.assertEqual(self.info_bitmaps(a, 'ours'), want)
        self.assertEqual(self.info_bitmaps(b, 'ours'), want)

    def test_merge_clear_same_bits(self):
        base = self.create('base.qcow2', SIZE)
        self.real_ok('bitmap', '--add', base, 'src')
        self.real_ok('bitmap', '--add', '-g', '128k', '--disable', base,
                     'dst')
        self.random_writes('real', base, SIZE, seed=3)
        self.real_ok('bitmap', '--disable', base, 'src')
        a, b = self.img('a.qcow2'), self.img('b.qcow2')
        shutil.copy(base, a)
        shutil.copy(base, b)
        self.checked(a)
        self.checked(b)
        self.real_ok('bitmap', '--merge', 'src', a, 'dst')
        self.ours_ok('bitmap', '--merge', 'src', b, 'dst')
        self.assertEqual(self.disk_bits(b, 'dst'), self.disk_bits(a, 'dst'))
        self.assertTrue(self.disk_bits(b, 'dst'))
        self.real_ok('bitmap', '--clear', a, 'src')
        self.ours_ok('bitmap', '--clear', b, 'src')
        self.assertEqual(self.disk_bits(b, 'src'), [])
        self.assertEqual(self.info_bitmaps(b), self.info_bitmaps(a))

    def test_merge_across_files(self):
        src = self.create('src.qcow2', SIZE)
        for g in ('512', '64k', '1M'):
            self.real_ok('bitmap', '--add', '-g', g, src, 's' + g)
        self.random_writes('real', src, SIZE, n=30, seed=5,
                           max_len=200 * KiB)
        tgt = self.create('tgt.qcow2', SIZE)
        self.real_ok('bitmap', '--add', '--disable', tgt, 't')
        self.io('real', tgt, 'write 0 64k')     # the bitmap is disabled
        for g in ('512', '64k', '1M'):
            with self.subTest(source_granularity=g):
                a = self.checked(self.img('a%s.qcow2' % g))
                b = self.checked(self.img('b%s.qcow2' % g))
                shutil.copy(tgt, a)
                shutil.copy(tgt, b)
                args = ['--merge', 's' + g, '-b', src, '-F', 'qcow2']
                self.real_ok('bitmap', *args, a, 't')
                self.ours_ok('bitmap', *args, b, 't')
                self.assertEqual(self.disk_bits(b, 't'),
                                 self.disk_bits(a, 't'))
                self.assertTrue(self.disk_bits(b, 't'))

    def test_convert_bitmaps(self):
        src = self.create('src.qcow2', SIZE)
        self.real_ok('bitmap', '--add', src, 'on')
        self.real_ok('bitmap', '--add', '-g', '1M', src, 'off')
        self.random_writes('real', src, SIZE, n=10, seed=9)
        self.real_ok('bitmap', '--disable', src, 'off')
        out = self.checked(self.img('out.qcow2'))
        self.ours_ok('convert', '--bitmaps', '-O', 'qcow2', src, out)
        self.assertEqual(self.info_bitmaps(out), self.info_bitmaps(src))
        for name in ('on', 'off'):
            self.assertEqual(self.real_extents(out, name),
                             self.real_extents(src, name))


class TestQemuWrittenReadByUs(BitmapCase):

    def test_real_qemu_io_writes(self):
        path = self.create('img.qcow2', SIZE)
        grans = {'g512': 512, 'g64k': 64 * KiB, 'g2m': 2 * MiB}
        for name, g in grans.items():
            self.real_ok('bitmap', '--add', '-g', g, path, name)
        touched = self.random_writes('real', path, SIZE, n=60, seed=11)
        listed = {b['name']: b for b in self.our_list(path)}
        for name, g in grans.items():
            want = round_out(touched, g, SIZE)
            self.assert_same_extents(path, name, want)
            self.assertEqual(listed[name]['count'],
                             sum(n for _, n in want))
            self.assertTrue(listed[name]['recording'])
            self.assertFalse(listed[name]['inconsistent'])

    @requires_module('nbd')
    def test_real_storage_daemon_nbd_export(self):
        import nbd
        path = self.create('img.qcow2', SIZE)
        self.real_ok('bitmap', '--add', '-g', '4k', path, 'b')
        sock = self.sock()
        d = self.start_daemon([
            self.real('qemu-storage-daemon'),
            '--blockdev', 'driver=file,filename=%s,node-name=f' % path,
            '--blockdev', 'driver=qcow2,file=f,node-name=d',
            '--nbd-server', 'addr.type=unix,addr.path=%s' % sock,
            '--export', 'type=nbd,id=e,node-name=d,name=e,writable=on'],
            socket_path=sock)
        h = nbd.NBD()
        h.set_export_name('e')
        h.connect_unix(sock)
        writes = [(1 * MiB + 100, 5000), (64 * MiB, 64 * KiB),
                  (200 * MiB - 1, 2)]
        for off, n in writes:
            h.pwrite(b'\x5a' * n, off)
        h.zero(128 * KiB, 10 * MiB)
        h.trim(64 * KiB, 30 * MiB)
        h.shutdown()
        d.stop(sig=signal.SIGTERM)
        # The export's node has discard=ignore: QEMU does not even mark
        # the bitmap for that trim.
        want = round_out(writes + [(10 * MiB, 128 * KiB)], 4 * KiB, SIZE)
        self.assert_same_extents(path, 'b', want)

    def test_our_writes_seen_by_qemu(self):
        path = self.create('img.qcow2', SIZE)
        self.real_ok('bitmap', '--add', '-g', '16k', path, 'b')
        self.real_ok('bitmap', '--add', '--disable', path, 'idle')
        touched = self.random_writes('ours', path, SIZE, n=50, seed=13)
        self.assert_same_extents(path, 'b', round_out(touched, 16 * KiB,
                                                      SIZE))
        self.assertEqual(self.real_extents(path, 'idle'), [])
        info = self.info_bitmaps(path)
        self.assertEqual(info[0]['flags'], ['auto'])
        self.assertEqual(info[1]['flags'], [])

    def test_both_tools_alternate(self):
        """Writes by both tools in turns add up in one bitmap."""
        path = self.create('img.qcow2', SIZE)
        self.ours_ok('bitmap', '--add', '-g', '64k', path, 'b')
        touched = []
        for i, which in enumerate(['real', 'ours', 'real', 'ours']):
            touched += self.random_writes(which, path, SIZE, n=8,
                                          seed=20 + i)
        self.assert_same_extents(path, 'b', round_out(touched, 64 * KiB,
                                                      SIZE))

    def test_list_human(self):
        path = self.create('img.qcow2', 64 * MiB)
        self.real_ok('bitmap', '--add', path, 'a')
        self.real_ok('bitmap', '--add', '-g', '1M', '--disable', path,
                     'long-name-x')
        self.io('real', path, 'write 0 1')
        lines = self.ours_ok('bitmap', '--list', path).splitlines()
        self.assertEqual(lines[0].split(), ['NAME', 'GRANULARITY',
                                            'RECORDING', 'PERSISTENT',
                                            'STATE', 'DIRTY', 'BYTES'])
        self.assertEqual(lines[1].split(),
                         ['a', '65536', 'yes', 'yes', 'ok', '65536'])
        self.assertEqual(lines[2].split(),
                         ['long-name-x', '1048576', 'no', 'yes', 'ok', '0'])
        # No bitmaps: nothing printed, JSON gives [].
        empty = self.create('empty.qcow2', 64 * MiB)
        self.assertEqual(self.ours_ok('bitmap', '--list', empty), '')
        self.assertEqual(self.our_list(empty), [])


class TestCounts(BitmapCase):

    def test_partial_last_granule(self):
        """The last bit covers only up to the end of the disk: the count
        (read straight from the image, or from memory) says so."""
        size = 100 * MiB + 512
        path = self.create('odd.qcow2', size)
        self.real_ok('bitmap', '--add', '-g', '1M', path, 'b')
        self.real_ok('bitmap', '--add', '-g', '1M', path, 'c')
        self.io('real', path, 'write %d 512' % (100 * MiB), 'write 0 1')
        listed = {b['name']: b for b in self.our_list(path)}
        self.assertEqual(listed['b']['count'], 1 * MiB + 512)
        # After a merge (contents in memory) the count is the same.
        self.ours_ok('bitmap', '--merge', 'b', path, 'c')
        self.assertEqual(self.our_list(path)[1]['count'], 1 * MiB + 512)
        self.assert_same_extents(path, 'c', [(0, 1 * MiB),
                                             (100 * MiB, 512)])


class TestMapRanges(BitmapCase):

    def test_start_and_length(self):
        path = self.create('img.qcow2', 64 * MiB)
        self.real_ok('bitmap', '--add', path, 'b')
        self.io('real', path, 'write 1M 64k', 'write 3M 1M')
        import json
        out = json.loads(self.ours_ok('map', '--output=json', '--bitmap',
                                      'b', '-s', '1M', '-l', '3M', path))
        self.assertEqual([(e['start'], e['length'], e['dirty'])
                          for e in out],
                         [(1 * MiB, 64 * KiB, True),
                          (1 * MiB + 64 * KiB, 2 * MiB - 64 * KiB, False),
                          (3 * MiB, 1 * MiB, True)])
        _, err = self.run_fail([self.ours('qemu-img'), 'map', '--bitmap',
                                'nope', path], rc=1)
        self.assertIn("Dirty bitmap 'nope' not found", err)


if __name__ == '__main__':
    unittest.main()
