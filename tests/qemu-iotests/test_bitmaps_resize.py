#!/usr/bin/python3
"""Resizing images with persistent bitmaps follows QEMU's rule: allowed
when every bitmap is usable, the bitmaps follow the new size (growing
adds clean bits, shrinking drops the bits past the end), and the result
is bit for bit what the real qemu-img resize makes (robustness item 22).
The refusal for an inconsistent bitmap is in test_bitmaps_crash."""

import shutil
import unittest

from bitmap_util import BitmapCase, KiB, MiB


class TestResize(BitmapCase):

    def make(self):
        path = self.create('base.qcow2', 64 * MiB)
        self.real_ok('bitmap', '--add', path, 'b')
        self.real_ok('bitmap', '--add', '-g', '1M', path, 'd')
        self.io('real', path, 'write 0 64k', 'write 40M 3M',
                'write 63M 1M')
        self.real_ok('bitmap', '--disable', path, 'd')
        return path

    def both(self, base, *steps):
        """Run each step (('resize', args) or ('io', cmd)) with both tools
        on copies of base; returns (ours_path, real_path)."""
        paths = {}
        for who in ('ours', 'real'):
            p = self.checked(self.img('%s.qcow2' % who))
            shutil.copy(base, p)
            for kind, arg in steps:
                if kind == 'resize':
                    self.run_ok([self.qimg(who), 'resize'] + arg[:-1]
                                + [p, arg[-1]])
                else:
                    self.io('real', p, arg)
            paths[who] = p
        return paths['ours'], paths['real']

    def assert_same(self, ours, real):
        for name in ('b', 'd'):
            self.assertEqual(self.disk_bits(ours, name),
                             self.disk_bits(real, name), name)
        self.assertEqual(self.info_bitmaps(ours), self.info_bitmaps(real))

    def test_grow(self):
        base = self.make()
        ours, real = self.both(base, ('resize', ['+64M']),
                               ('io', 'write 100M 64k'))
        self.assert_same(ours, real)
        self.assertEqual(self.our_extents(ours, 'b'),
                         [(0, 64 * KiB), (40 * MiB, 3 * MiB),
                          (63 * MiB, 1 * MiB), (100 * MiB, 64 * KiB)])
        self.assert_same_extents(ours, 'd')

    def test_shrink_then_grow(self):
        base = self.make()
        ours, real = self.both(base, ('resize', ['--shrink', '41M']),
                               ('resize', ['128M']))
        self.assert_same(ours, real)
        # Bits past 41M were dropped and do not come back.
        self.assertEqual(self.our_extents(ours, 'b'),
                         [(0, 64 * KiB), (40 * MiB, 1 * MiB)])
        self.assertEqual(self.our_extents(ours, 'd'),
                         [(0, 1 * MiB), (40 * MiB, 1 * MiB)])

    def test_unaligned_shrink(self):
        """A size that cuts a granule: the partial last bit keeps its
        value."""
        base = self.make()
        ours, real = self.both(base, ('resize',
                                      ['--shrink', str(40 * MiB + 512)]))
        self.assert_same(ours, real)
        self.assertEqual(self.our_extents(ours, 'd'),
                         [(0, 1 * MiB), (40 * MiB, 512)])


if __name__ == '__main__':
    unittest.main()
