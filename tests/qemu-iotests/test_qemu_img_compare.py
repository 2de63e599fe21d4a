#!/usr/bin/python3
"""qemu-img compare: "Images are identical." / "Content mismatch at
offset N!" / size warnings and strict mode exactly as QEMU 7.2 prints
them, exit codes 0 (same), 1 (different) and 2 (error)."""

import unittest

from fe_util import FrontendCase
from harness import requires_real


@requires_real('qemu-img', 'qemu-io')
class TestCompare(FrontendCase):

    def both(self, *argv_list):
        for argv in argv_list:
            for d in self.dirs.values():
                self.run_ok([self.real(argv[0])] + list(argv[1:]), cwd=d)

    def cmp(self, *args, rc=None):
        got = self.assert_same(['qemu-img', 'compare'] + list(args))
        if rc is not None:
            self.assertEqual(got[0], rc, got)
        return got

    def create(self, fmt, name, size):
        self.both(['qemu-img', 'create', '-q', '-f', fmt, name, size])

    def write(self, fmt, name, *cmds):
        argv = ['qemu-io', '-f', fmt]
        for c in cmds:
            argv += ['-c', c]
        self.both(argv + [name])

    def test_identical_raw_qcow2(self):
        self.create('raw', 'a.img', '1M')
        self.create('qcow2', 'b.qcow2', '1M')
        self.cmp('a.img', 'b.qcow2', rc=0)
        self.cmp('-f', 'raw', '-F', 'qcow2', 'a.img', 'b.qcow2', rc=0)
        self.write('raw', 'a.img', 'write -P 5 64k 64k')
        self.write('qcow2', 'b.qcow2', 'write -P 5 64k 64k')
        self.cmp('a.img', 'b.qcow2', rc=0)
        self.cmp('-q', 'a.img', 'b.qcow2', rc=0)

    def test_mismatch_offsets(self):
        self.create('raw', 'a.img', '1M')
        self.create('raw', 'b.img', '1M')
        self.create('qcow2', 'c.qcow2', '1M')
        self.write('raw', 'a.img', 'write -P 1 4100 1')
        self.cmp('a.img', 'b.img', rc=1)
        self.cmp('b.img', 'a.img', rc=1)
        self.cmp('a.img', 'c.qcow2', rc=1)
        self.cmp('c.qcow2', 'a.img', rc=1)
        self.write('qcow2', 'c.qcow2', 'write -P 0 70000 1')
        self.cmp('a.img', 'c.qcow2', rc=1)
        self.cmp('-q', 'a.img', 'c.qcow2', rc=1)

    def test_zero_data_equals_hole(self):
        self.create('raw', 'a.img', '1M')
        self.create('qcow2', 'b.qcow2', '1M')
        self.write('qcow2', 'b.qcow2', 'write -P 0 0 256k', 'write -z 512k 64k')
        self.cmp('a.img', 'b.qcow2', rc=0)

    def test_size_mismatch(self):
        self.create('raw', 'a.img', '1M')
        self.create('raw', 'b.img', '2M')
        self.create('qcow2', 'c.qcow2', '1M')
        self.cmp('a.img', 'b.img', rc=0)
        self.cmp('b.img', 'a.img', rc=0)
        self.cmp('-s', 'a.img', 'b.img', rc=1)
        self.write('raw', 'b.img', 'write -P 1 1500001 1')
        self.cmp('c.qcow2', 'b.img', rc=1)
        self.cmp('b.img', 'c.qcow2', rc=1)
        self.write('raw', 'a.img', 'write -P 1 4096 512')
        self.cmp('a.img', 'b.img', rc=1)

    def test_strict_allocation(self):
        self.create('raw', 'a.img', '1M')
        self.create('qcow2', 'c.qcow2', '1M')
        self.cmp('-s', 'a.img', 'c.qcow2', rc=1)

    def test_backing_chain(self):
        self.create('qcow2', 'base.qcow2', '1M')
        self.write('qcow2', 'base.qcow2', 'write -P 7 0 128k')
        self.both(['qemu-img', 'create', '-q', '-f', 'qcow2', '-b',
                   'base.qcow2', '-F', 'qcow2', 'top.qcow2'])
        self.create('raw', 'flat.img', '1M')
        self.write('raw', 'flat.img', 'write -P 7 0 128k')
        self.cmp('top.qcow2', 'flat.img', rc=0)
        self.write('qcow2', 'top.qcow2', 'write -P 8 64k 4k')
        self.cmp('top.qcow2', 'flat.img', rc=1)

    def test_progress(self):
        self.create('raw', 'a.img', '1M')
        self.create('raw', 'b.img', '1M')
        rc, out, _ = self.run_side('ours', ['qemu-img', 'compare', '-p',
                                            'a.img', 'b.img'])
        self.assertEqual(rc, 0)
        self.assertTrue(out.startswith('    (0.00/100%)\r'), out)
        self.assertIn('    (100.00/100%)\r', out)
        self.assertTrue(out.endswith('Images are identical.\n\n'), out)

    def test_errors(self):
        self.create('raw', 'a.img', '1M')
        self.cmp('a.img', 'nonexist', rc=2)
        self.cmp('nonexist', 'a.img', rc=2)
        self.cmp('-f', 'qcow2', 'a.img', 'a.img', rc=2)
        self.cmp('-F', 'foo', 'a.img', 'a.img', rc=2)
        self.cmp('a.img', rc=1)
        self.cmp(rc=1)
        self.cmp('a.img', 'a.img', 'a.img', rc=1)
        self.cmp('-Z', 'a.img', 'a.img', rc=1)


if __name__ == '__main__':
    unittest.main()
