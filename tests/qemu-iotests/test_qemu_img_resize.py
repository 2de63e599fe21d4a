#!/usr/bin/python3
"""qemu-img resize: growing raw and qcow2 (absolute and +/- relative),
--shrink, preallocation, and QEMU's messages and exit codes for refused
or malformed sizes."""

import json
import os
import unittest

from fe_util import FrontendCase, MiB
from harness import requires_real


@requires_real('qemu-img', 'qemu-io')
class TestResize(FrontendCase):

    def create_both(self, fmt, name, size):
        for d in self.dirs.values():
            self.run_ok([self.real('qemu-img'), 'create', '-q', '-f', fmt,
                         name, size], cwd=d)
            if fmt == 'qcow2':
                self.checked(os.path.join(d, name))

    def vsize(self, side, name):
        out = self.run_side(side, ['qemu-img', 'info', '--output=json',
                                   name])[1]
        return json.loads(out)['virtual-size']

    def resize(self, *args, rc=0):
        got = self.assert_same(['qemu-img', 'resize'] + list(args))
        self.assertEqual(got[0], rc, got)
        return got

    def test_raw(self):
        self.create_both('raw', 'r.img', '1M')
        self.resize('-f', 'raw', 'r.img', '4M')
        self.resize('-f', 'raw', 'r.img', '+1M')
        self.resize('-f', 'raw', 'r.img', '3M', rc=1)
        self.resize('-f', 'raw', '--shrink', 'r.img', '3M')
        self.resize('-f', 'raw', '--shrink', 'r.img', '-512k')
        self.resize('-q', '-f', 'raw', 'r.img', '5M')
        self.resize('--preallocation=full', '-f', 'raw', 'r.img', '6M')
        self.assertEqual(self.vsize('ours', 'r.img'), 6 * MiB)
        self.assertEqual(self.vsize('real', 'r.img'), 6 * MiB)

    def test_probed_raw_warns(self):
        self.create_both('raw', 'r.img', '1M')
        self.resize('r.img', '2M')

    def test_qcow2_grow(self):
        self.create_both('qcow2', 'q.qcow2', '1M')
        for d in self.dirs.values():
            self.run_ok([self.real('qemu-io'), '-c', 'write -P 9 0 1M',
                         'q.qcow2'], cwd=d)
        self.resize('q.qcow2', '2M')
        self.resize('q.qcow2', '+1G')
        self.assertEqual(self.vsize('ours', 'q.qcow2'), 2 * MiB + 1024 * MiB)
        out = self.real_io('-c', 'read -P 9 0 1M', '-c', 'read -P 0 1M 1G',
                           os.path.join(self.dirs['ours'], 'q.qcow2'))
        self.assertNotIn('failed', out)

    def test_qcow2_shrink_refused(self):
        self.create_both('qcow2', 'q.qcow2', '4M')
        self.resize('q.qcow2', '--', '-1M', rc=1)
        self.resize('q.qcow2', '1M', rc=1)

    def test_bad_sizes(self):
        self.create_both('raw', 'r.img', '1M')
        for size in ('1Q', '99999999999999999999', 'abc', '0x', '1.5'):
            with self.subTest(size=size):
                self.resize('-f', 'raw', 'r.img', size, rc=1)
        self.resize('--preallocation=bogus', '-f', 'raw', 'r.img', '2M',
                    rc=1)
        self.resize('r.img', rc=1)
        self.resize(rc=1)
        self.resize('nonexist', '1M', rc=1)
        self.assertEqual(self.vsize('ours', 'r.img'), MiB)

    def test_our_qcow2(self):
        self.qcow2_ok()
        p = self.checked(self.img('o.qcow2'))
        self.our_img('create', '-q', '-f', 'qcow2', p, '1M')
        self.our_io('-c', 'write -P 3 512k 512k', p)
        self.assertEqual(self.our_img('resize', p, '64M'), 'Image resized.\n')
        info = json.loads(self.real_img('info', '--output=json', p))
        self.assertEqual(info['virtual-size'], 64 * MiB)
        out = self.real_io('-c', 'read -P 3 512k 512k', '-c',
                           'read -P 0 1M 63M', p)
        self.assertNotIn('failed', out)


if __name__ == '__main__':
    unittest.main()
