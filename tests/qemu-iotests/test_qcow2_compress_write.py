#!/usr/bin/python3
"""Compressed cluster writes: our `qemu-img convert -c` (zlib and zstd,
4 KiB / 64 KiB / 2 MiB clusters) of a source mixing compressible, random
and zero data.  The real tools are the oracle: check is clean and counts
compressed clusters, compare finds the source's contents, qemu-io reads
the patterns back, map agrees with the real convert -c on which clusters
are compressed; overwriting compressed clusters (which share host
clusters) with our qemu-io and the real one keeps the refcounts right."""

import json
import os
import random
import re
import unittest

import harness

KiB = 1024
MiB = 1024 * KiB


def make_source(path, seed):
    """Compressible text, random bytes, zeroes, a pattern, odd tail."""
    rnd = random.Random(seed)
    with open(path, 'wb') as f:
        f.write(b'blockpoint compressible text ' * 40000)
        f.write(bytes(rnd.getrandbits(8) for _ in range(MiB)))
        f.write(b'\0' * (3 * MiB // 2))
        f.write(b'\x42' * (MiB // 2))
        f.write(b'abc' * 50000 + b'tail')
    return os.path.getsize(path)


def map_kinds(out):
    """Map entries as (start, length, kind); kind compressed when data
    has no host offset."""
    res = []
    for e in json.loads(out):
        if not e['data']:
            kind = 'zero'
        elif 'offset' in e:
            kind = 'plain'
        else:
            kind = 'compressed'
        if res and res[-1][2] == kind and \
                res[-1][0] + res[-1][1] == e['start']:
            res[-1] = (res[-1][0], res[-1][1] + e['length'], kind)
        else:
            res.append((e['start'], e['length'], kind))
    return res


class TestConvertCompressed(harness.IotestCase):

    def setUp(self):
        super().setUp()
        self.src = self.img('src.raw')
        self.src_size = make_source(self.src, 7)

    def convert(self, tool, name, opts, extra=()):
        dst = self.checked(self.img(name))
        self.run_ok([tool, 'convert', '-c', '-f', 'raw', '-O', 'qcow2',
                     '-o', opts, *extra, self.src, dst])
        return dst

    def real_check(self, path):
        rc, out, err = self.run_cmd(
            [self.real('qemu-img'), 'check', path], timeout=120)
        self.assertEqual(rc, 0, out + err)
        m = re.search(r'([\d.]+)% compressed clusters', out)
        self.assertIsNotNone(m, out)
        return float(m.group(1))

    def assert_same(self, path, other, other_fmt='raw'):
        self.run_ok([self.real('qemu-img'), 'compare', '-f', other_fmt,
                     '-F', 'qcow2', other, path])

    def one(self, cs, ctype):
        opts = 'cluster_size=%d,compression_type=%s' % (cs, ctype)
        ours = self.convert(self.ours('qemu-img'), 'c.qcow2', opts)
        plain = self.checked(self.img('p.qcow2'))
        self.run_ok([self.real('qemu-img'), 'convert', '-f', 'raw', '-O',
                     'qcow2', '-o', opts, self.src, plain])
        real = self.convert(self.real('qemu-img'), 'r.qcow2', opts)

        self.assertGreater(self.real_check(ours), 0)
        self.assert_same(ours, self.src)
        self.assertLess(os.path.getsize(ours), os.path.getsize(plain))
        # Our own driver reads it back too.
        self.run_ok([self.ours('qemu-img'), 'compare', '-f', 'raw', '-F',
                     'qcow2', self.src, ours])
        io = self.real('qemu-io')
        out = self.run_ok([io, '-f', 'qcow2', '-c', 'read -P 0x42 %d %d' %
                           (self.src_size - 150004 - MiB // 2, MiB // 2),
                           ours])
        self.assertNotIn('Pattern verification failed', out)
        # Same clusters compressed as with QEMU's own convert -c.
        maps = [map_kinds(self.run_ok([self.real('qemu-img'), 'map',
                                       '--output=json', p]))
                for p in (ours, real)]
        self.assertEqual(maps[0], maps[1])

        # Overwrite compressed clusters that share host clusters.
        base = self.img('base.raw')
        with open(self.src, 'rb') as f:
            data = bytearray(f.read())
        writes = [(0, 3 * cs // 2, 0x55), (cs * 2 + 100, 300, 0x66),
                  (MiB + 7, 5000, 0x77)]
        for i, (off, n, pat) in enumerate(writes):
            tool = self.ours('qemu-io') if i % 2 == 0 else io
            self.run_ok([tool, '-f', 'qcow2', '-c',
                         'write -P 0x%x %d %d' % (pat, off, n), ours])
            data[off:off + n] = bytes([pat]) * n
            self.real_check(ours)
        with open(base, 'wb') as f:
            f.write(data)
        self.assert_same(ours, base)
        self.run_ok([self.ours('qemu-img'), 'check', ours])

    def test_zlib_4k(self):
        self.one(4 * KiB, 'zlib')

    def test_zlib_64k(self):
        self.one(64 * KiB, 'zlib')

    def test_zlib_2m(self):
        self.one(2 * MiB, 'zlib')

    def test_zstd_4k(self):
        self.one(4 * KiB, 'zstd')

    def test_zstd_64k(self):
        self.one(64 * KiB, 'zstd')

    def test_zstd_2m(self):
        self.one(2 * MiB, 'zstd')

    def test_default_is_zlib(self):
        dst = self.checked(self.img('d.qcow2'))
        self.run_ok([self.ours('qemu-img'), 'convert', '-c', '-O', 'qcow2',
                     self.src, dst])
        self.assertGreater(self.real_check(dst), 0)
        self.assert_same(dst, self.src)
        info = json.loads(self.run_ok([self.real('qemu-img'), 'info',
                                       '--output=json', dst]))
        self.assertEqual(
            info['format-specific']['data']['compression-type'], 'zlib')

    def test_small_clusters_and_narrow_refcounts(self):
        # 512-byte clusters (2-bit sector counts) and 1-bit refcounts,
        # where a host cluster cannot be shared.
        for opts in ('cluster_size=512', 'refcount_bits=1',
                     'cluster_size=512,refcount_bits=2'):
            with self.subTest(opts=opts):
                dst = self.convert(self.ours('qemu-img'), 's.qcow2', opts)
                self.real_check(dst)
                self.assert_same(dst, self.src)
                os.unlink(dst)

    def test_into_existing_image(self):
        # -n over allocated clusters: the old clusters are freed.
        dst = self.checked(self.img('n.qcow2'))
        self.run_ok([self.real('qemu-img'), 'create', '-f', 'qcow2', '-o',
                     'cluster_size=4k', dst, str(self.src_size)])
        self.run_ok([self.real('qemu-io'), '-f', 'qcow2', '-c',
                     'write -P 0x11 0 %d' % (self.src_size // 4096 * 4096),
                     dst])
        self.run_ok([self.ours('qemu-img'), 'convert', '-n', '-c', '-f',
                     'raw', '-O', 'qcow2', self.src, dst])
        self.real_check(dst)
        self.assert_same(dst, self.src)

    def test_raw_target_refused(self):
        dst = self.img('x.raw')
        _, err = self.run_fail([self.ours('qemu-img'), 'convert', '-c',
                                '-O', 'raw', self.src, dst], rc=1)
        self.assertIn('Compression not supported for this file format', err)


if __name__ == '__main__':
    unittest.main()
