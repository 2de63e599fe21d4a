#!/usr/bin/python3
"""qemu-img create: the "Formatting" line, exit codes and messages match
QEMU 7.2 for raw and qcow2 (creation options, backing files), images we
create are read correctly by the real tools, and bad input (sizes,
options, formats) fails with exit code 1 and creates no file."""

import json
import os
import unittest

from fe_util import FrontendCase, MiB, GiB
from harness import requires_real


@requires_real('qemu-img')
class TestCreateRaw(FrontendCase):

    def test_formatting_line(self):
        for size in ('1M', '0', '1000', '0x100', '1.5k', '2G', '1K', '12b'):
            with self.subTest(size=size):
                self.assert_same(['qemu-img', 'create', '-f', 'raw', 'a.img',
                                  size])

    def test_default_format_is_raw(self):
        self.assert_same(['qemu-img', 'create', 'a.img', '1M'])
        info = json.loads(self.our_img('info', '--output=json',
                                       os.path.join(self.dirs['ours'],
                                                    'a.img')))
        self.assertEqual(info['format'], 'raw')

    def test_size_option_and_prealloc(self):
        self.assert_same(['qemu-img', 'create', '-f', 'raw', '-o', 'size=2M',
                          'a.img'])
        self.assert_same(['qemu-img', 'create', '-f', 'raw', '-o',
                          'preallocation=full', 'a.img', '1M'])
        self.assert_same(['qemu-img', 'create', '-f', 'raw', '-o',
                          'preallocation=falloc', 'a.img', '1M'])

    def test_quiet(self):
        rc, out, _ = self.assert_same(['qemu-img', 'create', '-q', '-f',
                                       'raw', 'a.img', '1M'])
        self.assertEqual(out, '')

    def test_real_tools_see_our_image(self):
        p = self.img('r.img')
        self.our_img('create', '-q', '-f', 'raw', p, '3M')
        info = json.loads(self.real_img('info', '-f', 'raw',
                                        '--output=json', p))
        self.assertEqual(info['virtual-size'], 3 * MiB)
        out = self.real_io('-f', 'raw', '-c', 'read -P 0 0 3M', p)
        self.assertNotIn('failed', out)


@requires_real('qemu-img')
class TestCreateBadInput(FrontendCase):
    """Usage errors: exit 1, the real tool's message, no file created."""

    def bad(self, *args):
        rc, out, err = self.assert_same(['qemu-img', 'create'] + list(args))
        self.assertEqual(rc, 1)
        for side in self.dirs.values():
            self.assertFalse(os.path.exists(os.path.join(side, 'a.img')),
                             'file created for %s' % (args,))
        return err

    def test_malformed_sizes(self):
        for size in ('-1', '1Q', '99999999999999999999', '0x', '8E', '1e3',
                     '.5k', '1kk', '1.5', '-0'):
            with self.subTest(size=size):
                self.bad('-f', 'raw', 'a.img', size)

    def test_unknown_format(self):
        self.assertIn("Unknown file format 'foo'",
                      self.bad('-f', 'foo', 'a.img', '1M'))

    def test_unknown_option(self):
        for fmt in ('raw', 'qcow2'):
            with self.subTest(fmt=fmt):
                self.assertIn("Invalid parameter 'foo'",
                              self.bad('-f', fmt, '-o', 'foo=bar', 'a.img',
                                       '1M'))

    def test_missing_size_and_args(self):
        self.bad('-f', 'raw', 'a.img')
        self.bad('-f', 'qcow2', 'a.img')
        self.bad('-f', 'raw')
        self.bad()
        self.bad('-f', 'raw', 'a.img', '1M', 'extra')
        self.bad('-f', 'raw', '-o', 'size=2M', 'a.img', '1M')
        self.bad('-Z', 'a.img', '1M')
        self.bad('-f')

    def test_mistyped_qcow2_options(self):
        for opt in ('lazy_refcounts=maybe', 'cluster_size=abc',
                    'refcount_bits=abc', 'size=1Q', 'extended_l2=2'):
            with self.subTest(opt=opt):
                self.bad('-f', 'qcow2', '-o', opt, 'a.img', '1M')

    def test_backing_errors(self):
        self.bad('-f', 'qcow2', '-b', 'nonexist', '-F', 'qcow2', 'a.img')
        self.bad('-f', 'qcow2', '-o', 'backing_file=a.img', 'a.img', '1M')
        self.bad('-f', 'raw', '-b', 'x', 'a.img', '1M')


@requires_real('qemu-img')
class TestCreateQcow2(FrontendCase):

    def setUp(self):
        super().setUp()
        self.qcow2_ok()

    def test_formatting_line(self):
        for opts in ([], ['-o', 'cluster_size=4k'], ['-o', 'compat=0.10'],
                     ['-o', 'lazy_refcounts=on'],
                     ['-o', 'lazy_refcounts=true,refcount_bits=0x10'],
                     ['-o', 'refcount_bits=8'],
                     ['-o', 'preallocation=metadata'],
                     ['-o', 'cluster_size=64k,cluster_size=4k'],
                     ['-o', 'size=1M', '-o', 'cluster_size=4k']):
            with self.subTest(opts=opts):
                size = [] if any('size=1M' in o for o in opts) else ['1M']
                self.assert_same(['qemu-img', 'create', '-f', 'qcow2'] +
                                 opts + ['b.qcow2'] + size)
                for d in self.dirs.values():
                    self.checked(os.path.join(d, 'b.qcow2'))

    def test_driver_rejects_values(self):
        for opt in ('cluster_size=3000', 'cluster_size=4M',
                    'refcount_bits=3', 'compat=2', 'preallocation=bogus'):
            with self.subTest(opt=opt):
                ours, real = self.run_both(['qemu-img', 'create', '-f',
                                            'qcow2', '-o', opt, 'b.qcow2',
                                            '1M'])
                self.assertEqual(ours[0], 1)
                self.assertEqual(ours[1], real[1])     # Formatting line
                self.assertTrue(ours[2].startswith('qemu-img: b.qcow2: '))

    def test_backing_file(self):
        self.assert_same(['qemu-img', 'create', '-q', '-f', 'qcow2',
                          'base.qcow2', '1G'])
        self.assert_same(['qemu-img', 'create', '-f', 'qcow2', '-b',
                          'base.qcow2', '-F', 'qcow2', 'top.qcow2'])
        self.assert_same(['qemu-img', 'create', '-f', 'qcow2', '-o',
                          'backing_file=base.qcow2,backing_fmt=qcow2',
                          'top2.qcow2', '2G'])
        # Without -F: QEMU refuses and names the detected format.
        self.assert_same(['qemu-img', 'create', '-f', 'qcow2', '-b',
                          'base.qcow2', 'top3.qcow2'])
        # -u: the backing file is not opened.
        self.assert_same(['qemu-img', 'create', '-f', 'qcow2', '-u', '-b',
                          'nonexist', '-F', 'qcow2', 'top4.qcow2', '1M'])
        top = os.path.join(self.dirs['ours'], 'top.qcow2')
        info = json.loads(self.real_img('info', '--output=json', top))
        self.assertEqual(info['virtual-size'], GiB)
        self.assertEqual(info['backing-filename'], 'base.qcow2')
        self.assertEqual(info['backing-filename-format'], 'qcow2')
        for d in self.dirs.values():
            for n in ('base.qcow2', 'top.qcow2', 'top2.qcow2'):
                self.checked(os.path.join(d, n))

    def test_real_tools_read_our_image(self):
        p = self.checked(self.img('c.qcow2'))
        self.our_img('create', '-q', '-f', 'qcow2', '-o', 'cluster_size=4k',
                     p, '16M')
        self.real_io('-c', 'write -P 0x5a 1M 64k', p)
        out = self.our_io('-c', 'read -P 0x5a 1M 64k', p)
        self.assertNotIn('failed', out)
        info = json.loads(self.real_img('info', '--output=json', p))
        self.assertEqual(info['cluster-size'], 4096)

    def test_option_help(self):
        for fmt in ('raw', 'qcow2'):
            with self.subTest(fmt=fmt):
                out = self.our_img('create', '-f', fmt, '-o', 'help')
                self.assertTrue(out.startswith('Supported %s options:' % fmt))
                self.assertIn('size=<size>', out)
        out = self.our_img('create', '-f', 'qcow2', '-o', 'help')
        for name in ('cluster_size', 'compat', 'lazy_refcounts',
                     'refcount_bits', 'preallocation', 'backing_file',
                     'backing_fmt', 'extended_l2', 'compression_type'):
            self.assertIn(name + '=<', out)
        self.assertFalse(os.path.exists(self.img('help')))


if __name__ == '__main__':
    unittest.main()
