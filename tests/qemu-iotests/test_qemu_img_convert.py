#!/usr/bin/python3
"""qemu-img convert: raw <-> qcow2 copies whose contents the real
`qemu-img compare` finds identical, zero ranges left sparse, backing
files (-B), several sources, -n, the -p progress line, and errors."""

import json
import os
import unittest

from fe_util import FrontendCase, MiB
from harness import requires_real


@requires_real('qemu-img', 'qemu-io')
class TestConvert(FrontendCase):

    def src(self, fmt='raw', name=None, size='8M'):
        p = self.img(name or ('src.' + fmt))
        self.real_img('create', '-q', '-f', fmt, p, size)
        self.real_io('-f', fmt, '-c', 'write -P 0x11 0 64k',
                     '-c', 'write -P 0x22 1M 1M', '-c', 'write -P 0 3M 1M',
                     '-c', 'write -P 0x33 7M 4k', p)
        return p

    def same_data(self, a, b, fmt_a=None, fmt_b=None):
        argv = [self.real('qemu-img'), 'compare']
        argv += ['-f', fmt_a] if fmt_a else []
        argv += ['-F', fmt_b] if fmt_b else []
        out = self.run_ok(argv + [a, b])
        self.assertIn('Images are identical.', out)

    def info(self, p):
        return json.loads(self.real_img('info', '--output=json', p))

    def test_raw_to_raw(self):
        s = self.src()
        d = self.img('dst.raw')
        self.assertEqual(self.our_img('convert', '-f', 'raw', s, d), '')
        self.same_data(s, d, 'raw', 'raw')
        self.assertEqual(self.info(d)['format'], 'raw')
        # The zero megabyte and the untouched areas stay sparse.
        self.assertLess(os.stat(d).st_blocks * 512, 3 * MiB)

    def test_raw_to_qcow2_and_back(self):
        self.qcow2_ok()
        s = self.src()
        q = self.checked(self.img('dst.qcow2'))
        r = self.img('back.raw')
        self.our_img('convert', '-f', 'raw', '-O', 'qcow2', s, q)
        self.same_data(s, q, 'raw', 'qcow2')
        info = self.info(q)
        self.assertEqual(info['format'], 'qcow2')
        self.assertEqual(info['virtual-size'], 8 * MiB)
        # Only the data clusters are allocated: 64k + 1M + 64k.
        extents = json.loads(self.real_img('map', '--output=json', q))
        data = sum(e['length'] for e in extents if e['data'])
        self.assertEqual(data, 64 * 1024 + MiB + 64 * 1024)
        self.our_img('convert', '-O', 'raw', q, r)
        self.same_data(s, r, 'raw', 'raw')

    def test_qcow2_source_made_by_real(self):
        s = self.checked(self.src('qcow2'))
        d = self.img('d.raw')
        self.our_img('convert', s, d)
        self.same_data(s, d, 'qcow2', 'raw')

    def test_creation_options(self):
        self.qcow2_ok()
        s = self.src()
        q = self.checked(self.img('o.qcow2'))
        self.our_img('convert', '-O', 'qcow2', '-o',
                     'cluster_size=4k,lazy_refcounts=on', s, q)
        info = self.info(q)
        self.assertEqual(info['cluster-size'], 4096)
        self.assertTrue(info['format-specific']['data']['lazy-refcounts'])
        self.same_data(s, q, 'raw', 'qcow2')

    def test_backing_chain_flattened(self):
        self.qcow2_ok()
        base = self.checked(self.src('qcow2', 'base.qcow2'))
        top = self.checked(self.img('top.qcow2'))
        self.real_img('create', '-q', '-f', 'qcow2', '-b', base, '-F',
                      'qcow2', top)
        self.real_io('-c', 'write -P 0x44 1536k 64k', top)
        flat = self.img('flat.raw')
        self.our_img('convert', top, flat)
        self.same_data(top, flat, 'qcow2', 'raw')

    def test_with_target_backing(self):
        self.qcow2_ok()
        base = self.checked(self.src('qcow2', 'base.qcow2'))
        top = self.checked(self.img('top.qcow2'))
        self.real_img('create', '-q', '-f', 'qcow2', '-b', base, '-F',
                      'qcow2', top)
        self.real_io('-c', 'write -P 0x44 1536k 64k', top)
        out = self.checked(self.img('out.qcow2'))
        self.our_img('convert', '-O', 'qcow2', '-B', base, '-F', 'qcow2',
                     top, out)
        self.same_data(top, out, 'qcow2', 'qcow2')
        info = self.info(out)
        self.assertEqual(info['backing-filename'], base)
        extents = json.loads(self.real_img('map', '--output=json', out))
        top_data = sum(e['length'] for e in extents
                       if e['depth'] == 0 and e['data'])
        self.assertEqual(top_data, 64 * 1024)

    def test_multiple_sources(self):
        a = self.img('a.raw')
        self.real_img('create', '-q', '-f', 'raw', a, '1M')
        self.real_io('-f', 'raw', '-c', 'write -P 0x11 0 64k', a)
        b = self.src(name='b.raw', size='8M')
        d = self.img('cat.raw')
        self.our_img('convert', a, b, d)
        self.assertEqual(self.info(d)['virtual-size'], 9 * MiB)
        out = self.real_io('-f', 'raw', '-c', 'read -P 0x11 0 64k',
                           '-c', 'read -P 0x11 1M 64k',
                           '-c', 'read -P 0x22 2M 1M', d)
        self.assertNotIn('failed', out)

    def test_no_create(self):
        s = self.src()
        d = self.img('pre.raw')
        self.real_img('create', '-q', '-f', 'raw', d, '8M')
        self.real_io('-f', 'raw', '-c', 'write -P 0x77 0 8M', d)
        self.our_img('convert', '-n', '-O', 'raw', s, d)
        self.same_data(s, d, 'raw', 'raw')

    def test_progress(self):
        s = self.src()
        d = self.img('p.raw')
        out = self.our_img('convert', '-p', s, d)
        self.assertTrue(out.startswith('    (0.00/100%)\r'), repr(out))
        self.assertTrue(out.endswith('    (100.00/100%)\r\n'), repr(out))
        self.assertEqual(self.our_img('convert', '-p', '-q', s, d), '')

    def test_sparse_off(self):
        s = self.src()
        d = self.img('full.raw')
        self.our_img('convert', '-S', '0', s, d)
        self.same_data(s, d, 'raw', 'raw')

    def test_errors(self):
        s = self.src()
        for d in self.dirs.values():
            self.copy_to_both(s, 's.raw')
        for args in (['-O', 'vmdkx', 's.raw', 'x.img'],
                     ['nonexist', 'x.img'], ['s.raw'], [],
                     ['-O', 'qcow2', '-o', 'foo=bar', 's.raw', 'x.img'],
                     ['-S', '1Q', 's.raw', 'x.img'],
                     ['-n', '-B', 'b', 's.raw', 'x.img'],
                     ['--target-is-zero', 's.raw', 'x.img'],
                     ['-O', 'qcow2', '-B', 's.raw', 's.raw', 'x.img'],
                     ['-Z', 's.raw', 'x.img']):
            with self.subTest(args=args):
                ours, real = self.run_both(['qemu-img', 'convert'] + args)
                self.assertEqual(ours[0], 1, ours)
                self.assertEqual(real[0], 1, real)
                self.assertFalse(os.path.exists(
                    os.path.join(self.dirs['ours'], 'x.img')))
        for args in (['-O', 'vmdkx', 's.raw', 'x.img'],
                     ['-O', 'qcow2', '-B', 's.raw', 's.raw', 'x.img']):
            ours, real = self.run_both(['qemu-img', 'convert'] + args)
            self.assertEqual(ours[2], real[2])

    def test_bitmaps_into_raw_refused_before_create(self):
        """Robustness item 47: --bitmaps into a format without bitmap
        support fails before the target exists, naming the format; an
        existing target file is left as it was.  (QEMU 7.2 names the
        format too, but only after creating the target.)"""
        self.qcow2_ok()
        src = self.src('qcow2')
        self.real_img('bitmap', '--add', src, 'b0')
        for args in (['-O', 'raw'], [], ['-f', 'qcow2', '-O', 'raw'],
                     ['-O', 'raw', '-o', 'preallocation=full'],
                     ['--skip-broken-bitmaps', '-O', 'raw']):
            with self.subTest(args=args):
                t = self.img('t.raw')
                out, err = self.run_fail([self.ours('qemu-img'), 'convert',
                                          '--bitmaps'] + args + [src, t],
                                         rc=1)
                self.assertIn("Format driver 'raw' does not support "
                              "bitmaps", err)
                self.assertFalse(os.path.exists(t), 'target created')
        # The real tool gives the same message (and exit code).
        t = self.img('real.raw')
        rc, out, err = self.run_cmd([self.real('qemu-img'), 'convert',
                                     '--bitmaps', '-O', 'raw', src, t])
        self.assertEqual(rc, 1)
        self.assertIn("Format driver 'raw' does not support bitmaps", err)
        # A target that exists already is not truncated.
        t = self.img('existing.raw')
        with open(t, 'wb') as f:
            f.write(b'keep me' * 1000)
        self.run_fail([self.ours('qemu-img'), 'convert', '--bitmaps', '-O',
                       'raw', src, t], rc=1)
        with open(t, 'rb') as f:
            self.assertEqual(f.read(), b'keep me' * 1000)
        # The source is untouched and still has its bitmap.
        self.assertIn('b0', self.real_img('info', src))

    def test_no_create_target_too_small(self):
        s = self.copy_to_both(self.src(), 's.raw')
        for d in self.dirs.values():
            self.run_ok([self.real('qemu-img'), 'create', '-q', '-f', 'raw',
                         'small.raw', '1M'], cwd=d)
        rc, _, _ = self.assert_same(['qemu-img', 'convert', '-n', '-O',
                                     'raw', s, 'small.raw'])
        self.assertEqual(rc, 1)


if __name__ == '__main__':
    unittest.main()
