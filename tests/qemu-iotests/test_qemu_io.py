#!/usr/bin/python3
"""qemu-io: data written by ours reads back identically with the real
qemu-io and the reverse (raw and qcow2), output identical to QEMU 7.2's
once timing lines are dropped, and bad input (sizes, offsets, read-only,
unknown commands/drivers, missing files) rejected with QEMU's messages and
a non-zero exit status."""

import os
import unittest

from fe_util import FrontendCase, filter_timing, KiB, MiB
from harness import proc, requires_real


def io_args(fmt, path, *cmds, extra=()):
    argv = ['qemu-io', '-f', fmt] + list(extra)
    for c in cmds:
        argv += ['-c', c]
    return argv + [path]


@requires_real('qemu-img', 'qemu-io')
class TestInterop(FrontendCase):
    """Patterns written by one tool are verified by the other."""

    PATTERNS = [(0x11, 0, 4 * KiB), (0x22, 64 * KiB, 128 * KiB),
                (0x33, 1 * MiB - 512, 1024), (0x44, 3 * MiB + 7, 1000)]

    def make(self, fmt):
        p = self.img('x.' + fmt)
        self.run_ok([self.real('qemu-img'), 'create', '-q', '-f', fmt, p,
                     '4M'])
        return self.checked(p) if fmt == 'qcow2' else p

    def write_cmds(self):
        return ['write -P 0x%x %d %d' % pat for pat in self.PATTERNS]

    def read_cmds(self):
        cmds = ['read -P 0x%x %d %d' % pat for pat in self.PATTERNS]
        # Untouched areas read as zeroes.
        return cmds + ['read -P 0 %d %d' % (8 * KiB, 32 * KiB),
                       'read -P 0 %d %d' % (2 * MiB, 64 * KiB)]

    def roundtrip(self, fmt, writer, reader):
        p = self.make(fmt)
        out = self.run_ok([writer] + io_args(fmt, p, *self.write_cmds())[1:])
        self.assertEqual(out.count('wrote '), len(self.PATTERNS))
        out = self.run_ok([reader] + io_args(fmt, p, *self.read_cmds())[1:])
        self.assertNotIn('verification failed', out)
        self.assertEqual(out.count('read '), len(self.PATTERNS) + 2)

    def test_raw_ours_to_real(self):
        self.roundtrip('raw', self.ours('qemu-io'), self.real('qemu-io'))

    def test_raw_real_to_ours(self):
        self.roundtrip('raw', self.real('qemu-io'), self.ours('qemu-io'))

    def test_qcow2_ours_to_real(self):
        self.qcow2_ok()
        self.roundtrip('qcow2', self.ours('qemu-io'), self.real('qemu-io'))

    def test_qcow2_real_to_ours(self):
        self.qcow2_ok()
        self.roundtrip('qcow2', self.real('qemu-io'), self.ours('qemu-io'))

    def test_zero_writes_read_back_by_real(self):
        for fmt in ('raw', 'qcow2'):
            with self.subTest(fmt=fmt):
                if fmt == 'qcow2':
                    self.qcow2_ok()
                p = self.make(fmt)
                self.real_io('-f', fmt, '-c', 'write -P 0x55 0 1M', p)
                self.our_io('-f', fmt, '-c', 'write -z 64k 64k',
                            '-c', 'write -z -u 256k 128k', p)
                out = self.real_io('-f', fmt, '-c', 'read -P 0x55 0 64k',
                                   '-c', 'read -P 0 64k 64k',
                                   '-c', 'read -P 0x55 128k 128k',
                                   '-c', 'read -P 0 256k 128k',
                                   '-c', 'read -P 0x55 384k 640k', p)
                self.assertNotIn('verification failed', out)

    def test_pattern_mismatch_detected(self):
        p = self.make('raw')
        self.real_io('-f', 'raw', '-c', 'write -P 0x66 0 4k', p)
        out, _ = self.run_fail([self.ours('qemu-io'), '-f', 'raw', '-c',
                                'read -P 0x67 0 4k', p], rc=1)
        self.assertIn('Pattern verification failed at offset 0, 4096 bytes',
                      out)


@requires_real('qemu-img', 'qemu-io')
class TestOutputMatchesQemu(FrontendCase):
    """Same commands, same output (timing lines filtered)."""

    def setUp(self):
        super().setUp()
        for d in self.dirs.values():
            self.run_ok([self.real('qemu-img'), 'create', '-q', '-f', 'raw',
                         os.path.join(d, 'a.raw'), '1M'])

    def same(self, *cmds, fmt='raw', path='a.raw', extra=()):
        return self.assert_same(io_args(fmt, path, *cmds, extra=extra),
                                filt=filter_timing)

    def test_write_read_report(self):
        self.same('write -P 0xab 0 4k', 'read -P 0xab 0 4k',
                  'write 1 511', 'read 512 1.5k', 'read 0x10 16',
                  'write 0 0', 'read 0 0')

    def test_pattern_failure_report(self):
        self.same('write -P 0xab 0 4k', 'read -P 0xac 0 4k',
                  'read -s 10 -l 20 -P 0 0 4k', 'read 0 512')

    def test_dump(self):
        self.same('write -P 0x41 0 20', 'read -v 0 32', 'read -v 5 7')

    def test_quiet_and_machine(self):
        self.same('write -q 0 4k', 'read -q 0 4k', 'read -v -q 0 16',
                  'read -C 0 512', 'write -C 0 512', 'discard -C 0 512')

    def test_zero_discard_flush(self):
        self.same('write -z 4k 4k', 'write -z -u 8k 4k', 'discard 0 4k',
                  'flush')

    def test_length_info_map_alloc(self):
        self.same('length', 'info', 'map', 'alloc 0', 'alloc 0 1M',
                  'alloc 1M', 'alloc 1 100')

    def test_out_of_range(self):
        for c in ('read 1M 4k', 'read 1020k 8k', 'write 1020k 8k',
                  'write -z 1020k 8k', 'discard 1M 4k'):
            with self.subTest(cmd=c):
                rc, out, _ = self.same(c)
                self.assertEqual(rc, 1)
                self.assertRegex(out, r'(read|write|discard) failed: '
                                 'Input/output error')

    def test_malformed_sizes(self):
        for c in ('read 0 1Q', 'read 0x 4', 'read 99999999999999999999 4',
                  'read 0 3G', 'read 0 8E', 'read 0 1.5', 'read 1kk 1',
                  'read -P 300 0 4', 'read -P abc 0 4',
                  'alloc 1Q', 'discard 0 1Q'):
            with self.subTest(cmd=c):
                rc, _, _ = self.same(c)
                self.assertEqual(rc, 1)

    def test_negative_is_an_option(self):
        # getopt sees "-1" as an option; the usage line that follows is
        # worded by each tool, so only the error and status are compared.
        ours, real = self.run_both(io_args('raw', 'a.raw', 'read -1 4k'))
        self.assertEqual(ours[0], 1)
        self.assertEqual(real[0], 1)
        self.assertEqual(ours[2], real[2])
        self.assertIn("invalid option -- '1'", ours[2])
        self.assertTrue(ours[1].startswith('read ['))

    def test_suffixes(self):
        self.same('write -P 1 1k 1K', 'read -P 1 0x400 1k', 'read 0 1M',
                  'alloc 0.5k 0.5k', 'read 0 1m')

    def test_write_flag_errors(self):
        for c in ('write -P 1 -z 0 4k', 'write -u 0 4k', 'write -n 0 4k'):
            with self.subTest(cmd=c):
                rc, _, _ = self.same(c)
                self.assertEqual(rc, 1)

    def test_argument_errors(self):
        for c in ('bogus', 'read', 'read 0', 'map extra', 'length 1',
                  'alloc'):
            with self.subTest(cmd=c):
                rc, _, _ = self.same(c)
                self.assertEqual(rc, 1)

    def test_read_only(self):
        for c in ('write 0 4k', 'write -z 0 4k', 'discard 0 4k',
                  'write -u 0 4k'):
            with self.subTest(cmd=c):
                rc, _, err = self.same(c, extra=('-r',))
                self.assertEqual(rc, 1)
                self.assertIn('Block node is read-only', err)
        self.same('read 0 4k', 'flush', extra=('-r',))

    def test_failure_does_not_stop_later_commands(self):
        rc, out, _ = self.same('read 2M 1', 'write -P 9 0 1', 'read -P 9 0 1')
        self.assertEqual(rc, 1)
        self.assertIn('read 1/1 bytes at offset 0', out)

    def test_quit_stops(self):
        rc, out, _ = self.same('read 0 4', 'quit', 'bogus')
        self.assertEqual(rc, 0)

    def test_cache_and_share(self):
        self.same('read 0 512', extra=('-n',))
        self.same('read 0 512', extra=('-t', 'none'))
        self.same('read 0 512', extra=('-t', 'writeback'))
        self.same('read 0 512', extra=('-U', '-r'))
        rc, _, _ = self.same('read 0 512', extra=('-t', 'bogus'))
        self.assertEqual(rc, 1)

    def test_probed_raw_warning(self):
        self.assert_same(['qemu-io', '-c', 'read 0 512', 'a.raw'],
                         filt=filter_timing)
        self.assert_same(['qemu-io', '-r', '-c', 'read 0 512', 'a.raw'],
                         filt=filter_timing)

    def test_image_opts(self):
        self.assert_same(['qemu-io', '--image-opts', '-c', 'read 0 512',
                          'driver=raw,file.filename=a.raw'],
                         filt=filter_timing)
        for bad in ('driver=raw,file.filename=nonexist',
                    'driver=raw,file.filename=a.raw,foo=bar'):
            with self.subTest(opts=bad):
                rc, _, _ = self.assert_same(['qemu-io', '--image-opts', '-c',
                                             'read 0 512', bad])
                self.assertEqual(rc, 1)
        rc, _, _ = self.assert_same(['qemu-io', '--image-opts', '-f', 'raw',
                                     '-c', 'read 0 512',
                                     'driver=raw,file.filename=a.raw'])
        self.assertEqual(rc, 1)

    def test_open_errors(self):
        for argv in (['qemu-io', '-f', 'raw', '-c', 'read 0 4', 'nonexist'],
                     ['qemu-io', '-f', 'foo', '-c', 'read 0 4', 'a.raw'],
                     ['qemu-io', '-f', 'qcow2', '-c', 'read 0 4', 'a.raw'],
                     ['qemu-io', '-c', 'read 0 4']):
            with self.subTest(argv=argv):
                rc, _, _ = self.assert_same(argv)
                self.assertEqual(rc, 1)

    def test_interactive(self):
        self.assert_same(['qemu-io', '-f', 'raw', 'a.raw'],
                         input='write -P 3 0 4\nread -P 3 0 4\n',
                         filt=filter_timing)

    def test_qcow2_map_and_alloc(self):
        # An image laid out by the real tools: both read the same metadata.
        for d in self.dirs.values():
            p = os.path.join(d, 'm.qcow2')
            self.run_ok([self.real('qemu-img'), 'create', '-q', '-f',
                         'qcow2', p, '10M'])
            self.run_ok([self.real('qemu-io'), '-c', 'write 0 64k', '-c',
                         'write 5M 1k', p])
        self.same('map', 'alloc 0 2M', 'alloc 60k 8k', 'length', 'info',
                  'read -P 0xcd 0 64k', 'read -P 0 64k 64k', fmt='qcow2',
                  path='m.qcow2')


@requires_real('qemu-io')
class TestHelp(FrontendCase):

    def test_help_lists_commands(self):
        out = self.our_io('-c', 'help')
        for name in ('read', 'write', 'discard', 'flush', 'map', 'alloc',
                     'length', 'info', 'open', 'close', 'quit'):
            self.assertRegex(out, r'(?m)^%s .* -- ' % name)

    def test_help_per_command(self):
        for name in ('read', 'write', 'discard'):
            with self.subTest(cmd=name):
                out = self.our_io('-c', 'help ' + name)
                self.assertTrue(out.startswith(name + ' '))
                self.assertIn(' -q, --', out)

    def test_help_unknown_command(self):
        out, _ = self.run_fail([self.ours('qemu-io'), '-c', 'help nosuch'],
                               rc=1)
        self.assertIn('command nosuch not found', out)

    def test_main_help_and_version(self):
        out = self.our_io('--help')
        for opt in ('-c, --cmd', '-f, --format', '-r, --read-only',
                    '-n, --nocache', '-t, --cache', '-U, --force-share',
                    '--image-opts'):
            self.assertIn(opt, out)
        self.assertRegex(self.our_io('--version'),
                         r'^qemu-io version \d+\.\d+\.\d+')
        self.run_fail([self.ours('qemu-io'), '-Z'], rc=1)


@requires_real('qemu-img')
class TestOpenClose(FrontendCase):

    def test_open_command(self):
        p = self.img('o.raw')
        self.real_img('create', '-q', '-f', 'raw', p, '1M')
        out = self.our_io('-c', 'open -o driver=raw ' + p,
                          '-c', 'write -P 7 0 512', '-c', 'close',
                          '-c', 'open -r -o driver=raw ' + p,
                          '-c', 'read -P 7 0 512')
        self.assertNotIn('failed', out)
        _, err = self.run_fail([self.ours('qemu-io'), '-f', 'raw', '-c',
                                'open ' + p, p], rc=1)
        self.assertIn('file open already', err)


if __name__ == '__main__':
    unittest.main()
