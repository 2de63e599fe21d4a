#!/usr/bin/python3
"""qemu-img bench: QEMU's option set and report lines, option errors,
offsets wrapping at the image end, writes that really land (checked with
the real qemu-io), and failures on requests past the end."""

import unittest

from fe_util import FrontendCase, filter_bench
from harness import requires_real


@requires_real('qemu-img', 'qemu-io')
class TestBench(FrontendCase):

    def setUp(self):
        super().setUp()
        for d in self.dirs.values():
            self.run_ok([self.real('qemu-img'), 'create', '-q', '-f',
                         'qcow2', 'b.qcow2', '64M'], cwd=d)
            self.run_ok([self.real('qemu-img'), 'create', '-q', '-f', 'raw',
                         'r.img', '16M'], cwd=d)

    def bench(self, *args, rc=0):
        got = self.assert_same(['qemu-img', 'bench'] + list(args),
                               filt=filter_bench)
        self.assertEqual(got[0], rc, got)
        if rc == 0:
            self.assertRegex(got[1], r'Run completed in \d+\.\d{3} seconds')
        return got

    def test_report_lines(self):
        self.bench('-c', '1000', '-d', '4', '-s', '4k', 'b.qcow2')
        self.bench('-w', '-c', '200', '-d', '8', '-s', '4k', '-S', '1M',
                   'b.qcow2')
        self.bench('-w', '-c', '100', '-d', '1', '-s', '64k', '-o', '1M',
                   '--pattern=0xab', '--flush-interval=10', '-t', 'none',
                   '-n', 'b.qcow2')
        self.bench('-w', '-c', '50', '-d', '4', '--flush-interval=7',
                   '--no-drain', 'b.qcow2')
        self.bench('-w', '-c', '50', '-d', '8', '--flush-interval=8',
                   'b.qcow2')
        self.bench('-q', '-c', '10', 'b.qcow2')
        self.bench('-c', '0', 'b.qcow2')
        self.bench('-f', 'raw', '-c', '100', '-U', 'r.img')
        self.bench('-c', '20', '-i', 'threads', 'r.img')

    def test_wraps_at_image_end(self):
        self.bench('-c', '100', '-s', '1M', '-d', '16', 'b.qcow2')
        self.bench('-c', '8', '-o', '16773120', '-f', 'raw', 'r.img')

    def test_writes_land(self):
        p = self.checked(self.img('ours/b.qcow2'))
        self.our_img('bench', '-w', '-c', '64', '-d', '16', '-s', '64k',
                     '--pattern=0x5c', p)
        out = self.real_io('-c', 'read -P 0x5c 0 4M', '-c',
                           'read -P 0 4M 60M', p)
        self.assertNotIn('failed', out)

    def test_strided_writes_land(self):
        p = self.img('ours/r.img')
        self.our_img('bench', '-w', '-f', 'raw', '-c', '16', '-d', '4',
                     '-s', '4k', '-S', '1M', '--pattern=0x7', p)
        cmds = []
        for i in range(16):
            cmds += ['-c', 'read -P 7 %d 4k' % (i << 20),
                     '-c', 'read -P 0 %d 1020k' % ((i << 20) + 4096)]
        out = self.real_io('-f', 'raw', *cmds, p)
        self.assertNotIn('failed', out)

    def test_option_errors(self):
        for args in (['-c', 'abc'], ['-c', '-1'], ['-d', 'abc'],
                     ['-d', '-1'], ['-s', 'abc'], ['-S', 'abc'],
                     ['-o', 'abc'], ['--pattern=300'], ['-t', 'bogus'],
                     ['-i', 'foo'], ['--flush-interval=10'],
                     ['-w', '--flush-interval=7'], ['-Z']):
            with self.subTest(args=args):
                self.bench(*(args + ['b.qcow2']), rc=1)
        self.bench(rc=1)
        self.bench('nonexist', rc=1)
        self.bench('b.qcow2', 'extra', rc=1)

    def test_depth_zero_rejected(self):
        # QEMU 7.2 hangs on -d 0; we refuse it.
        rc, _, err = self.run_side('ours', ['qemu-img', 'bench', '-d', '0',
                                            'b.qcow2'], timeout=30)
        self.assertEqual(rc, 1)
        self.assertIn('Invalid queue depth specified', err)

    def test_request_past_end_fails(self):
        got = self.bench('-c', '4', '-o', '64M', 'b.qcow2', rc=1)
        self.assertIn('Failed request: Input/output error', got[2])


if __name__ == '__main__':
    unittest.main()
