#!/usr/bin/python3
"""qcow2 interoperability with QEMU 7.2, both ways: images our driver
writes must pass the real `qemu-img check` and compare equal to a raw
model; images the real tools write (plain, zero clusters, discards,
compressed with zlib and zstd, backing chains, version 2, snapshots) must
read back identically through our driver and pass our check."""

import json
import os
import unittest

from harness import requires_real
from qcow2_util import GiB, KiB, MiB, Model, Qcow2Case


@requires_real('qemu-img', 'qemu-io')
class TestOurWrites(Qcow2Case):
    """Seeded random writes/zeroes/discards through our driver."""

    def roundtrip(self, opts, seed, size=64 * MiB, count=300,
                  cluster=64 * KiB, max_len=256 * KiB):
        img = self.create('w.qcow2', size, opts)
        model = Model(size)
        self.random_writes(img, model, seed, count, max_len=max_len,
                           cluster=cluster)
        raw = self.img('w.raw')
        model.save_raw(raw)
        self.assert_real_clean(img)
        self.assert_same_as_raw(img, raw)
        rc, res, err = self.our_check(img)
        self.assertEqual(rc, 0, err)
        os.unlink(img)

    def test_default(self):
        self.roundtrip('', 1)

    def test_cluster_sizes(self):
        for cs in (512, 4 * KiB, 64 * KiB, 2 * MiB):
            with self.subTest(cluster_size=cs):
                self.roundtrip('cluster_size=%d' % cs, cs, cluster=cs,
                               max_len=max(256 * KiB, 2 * cs))

    def test_refcount_widths(self):
        for bits in (1, 2, 4, 8, 16, 32, 64):
            with self.subTest(refcount_bits=bits):
                self.roundtrip('refcount_bits=%d' % bits, bits, count=150)

    def test_tiny_clusters_wide_refcounts(self):
        # 512-byte clusters with 64-bit refcounts: a refcount block covers
        # 32 KiB, so the refcount table grows many times.
        self.roundtrip('cluster_size=512,refcount_bits=64', 77,
                       size=32 * MiB, count=200, cluster=512,
                       max_len=1 * MiB)

    def test_compat_v2(self):
        self.roundtrip('compat=0.10', 5)

    def test_lazy_refcounts(self):
        self.roundtrip('lazy_refcounts=on', 6)

    def test_zstd_image(self):
        self.roundtrip('compression_type=zstd', 7)

    def test_many_small_random_writes(self):
        img = self.create('s.qcow2', 128 * MiB)
        model = Model(128 * MiB)
        self.random_writes(img, model, 4242, 3000, max_len=8 * KiB,
                           ops=('write',) * 8 + ('zero', 'discard'),
                           batch=500)
        raw = self.img('s.raw')
        model.save_raw(raw)
        self.assert_real_clean(img)
        self.assert_same_as_raw(img, raw)

    def test_large_virtual_disk(self):
        size = 8 * GiB
        img = self.create('big.qcow2', size)
        model = Model(size)
        writes = [(0, 64 * KiB, 1), (4 * GiB - 2 * KiB, 4 * KiB, 2),
                  (5 * GiB + 12345, 100000, 3), (size - 64 * KiB, 64 * KiB, 4)]
        self.io(img, [['write', o, n, p] for o, n, p in writes])
        for o, n, p in writes:
            model.fill(o, n, p)
        raw = self.img('big.raw')
        model.save_raw(raw)
        self.assert_real_clean(img)
        self.assert_same_as_raw(img, raw)

    def test_huge_virtual_disk(self):
        # 4 TiB virtual: an L1 table of 8192 entries, writes far apart.
        img = self.create('huge.qcow2', 4 * 1024 * GiB)
        offs = [0, 1024 * GiB + 7, 3 * 1024 * GiB, 4 * 1024 * GiB - 4096]
        self.io(img, [['write', o, 4096, i + 1] for i, o in enumerate(offs)])
        for i, o in enumerate(offs):
            self.real_io(img, 'read -P %d %d 4096' % (i + 1, o))
        self.assert_real_clean(img)

    def test_concurrent_writers(self):
        # 8 threads, each writing every 8th 4 KiB block in random order;
        # clusters are shared between threads, so allocations race.
        for cs in (4 * KiB, 64 * KiB, 2 * MiB):
            with self.subTest(cluster_size=cs):
                img = self.create('t%d.qcow2' % cs, 64 * MiB,
                                  'cluster_size=%d' % cs)
                self.run_ok([self.tool(), 'threads', img, '8', '2048',
                             str(cs)])
                self.assert_real_clean(img)
                raw = self.img('t.raw')
                self.run_ok([self.qimg(), 'convert', '-O', 'raw', img, raw])
                with open(raw, 'rb') as f:
                    data = f.read()
                bad = [b for b in range(8 * 2048)
                       if data[b * 4096:(b + 1) * 4096]
                       != bytes([b % 8 + 1]) * 4096]
                self.assertEqual(bad, [], 'blocks with wrong contents')

    def test_resize_grow_and_shrink(self):
        img = self.create('r.qcow2', 64 * MiB, 'cluster_size=4096')
        self.io(img, [['write', 60 * MiB, MiB, 9], ['resize', 20 * GiB],
                      ['write', 19 * GiB, MiB, 8]])
        self.real_io(img, 'read -P 9 60M 1M', 'read -P 8 19G 1M',
                     'read -P 0 61M 1M')
        self.assertEqual(json.loads(self.run_ok(
            [self.qimg(), 'info', '--output=json', img]))['virtual-size'],
            20 * GiB)
        self.assert_real_clean(img)
        self.io(img, [['resize', 32 * MiB]])
        self.assert_real_clean(img)
        self.real_io(img, 'read -P 0 0 32M')


@requires_real('qemu-img', 'qemu-io')
class TestRealWrites(Qcow2Case):
    """Images written by QEMU, read by us."""

    def dump_equal(self, img, raw):
        """Our driver's view of `img` equals the raw file."""
        out = self.img('ours.raw')
        self.io(img, [['dump', out]], readonly=True)
        with open(out, 'rb') as a, open(raw, 'rb') as b:
            self.assertTrue(a.read() == b.read(), 'contents differ')

    def real_random(self, img, seed, count, size):
        import random
        rnd = random.Random(seed)
        model = Model(size)
        cmds = []
        for _ in range(count):
            off = rnd.randrange(0, size - 1)
            ln = rnd.randrange(1, min(size - off, 200 * KiB) + 1)
            kind = rnd.random()
            if kind < 0.7:
                p = rnd.randrange(1, 256)
                cmds.append('write -P %d %d %d' % (p, off, ln))
                model.fill(off, ln, p)
            elif kind < 0.85:
                cmds.append('write -z%s %d %d'
                            % (' -u' if rnd.random() < .5 else '', off, ln))
                model.fill(off, ln, 0)
            else:
                a = -(-off // (64 * KiB)) * 64 * KiB
                b = (off + ln) // (64 * KiB) * 64 * KiB
                if b > a:
                    cmds.append('discard %d %d' % (a, b - a))
                    model.fill(a, b - a, 0)
        for i in range(0, len(cmds), 100):
            self.real_io(img, *cmds[i:i + 100])
        return model

    def test_real_v3_image(self):
        img = self.create_real('r.qcow2', 64 * MiB)
        model = self.real_random(img, 11, 300, 64 * MiB)
        raw = self.img('r.raw')
        model.save_raw(raw)
        self.dump_equal(img, raw)
        rc, res, err = self.our_check(img)
        self.assertEqual((rc, res['corruptions'], res['leaks']), (0, 0, 0),
                         err)

    def test_real_v2_image(self):
        img = self.create_real('r2.qcow2', 32 * MiB, 'compat=0.10')
        model = self.real_random(img, 12, 200, 32 * MiB)
        raw = self.img('r2.raw')
        model.save_raw(raw)
        self.dump_equal(img, raw)
        self.assertEqual(self.our_check(img)[0], 0)
        # Our writes on the v2 image (no zero flag: zeroes are written).
        self.io(img, [['write', MiB, 70000, 0x42], ['zero', 0, 3 * MiB],
                      ['discard', 8 * MiB, 4 * MiB]])
        self.assert_real_clean(img)
        self.real_io(img, 'read -P 0 0 3M')

    def test_compressed(self):
        src = self.img('src.raw')
        model = Model(8 * MiB)
        with open(src, 'wb') as f:
            f.truncate(8 * MiB)
            for i in range(0, 8 * MiB, 96 * KiB):
                chunk = bytes((i // 96 + j) % 251 for j in range(4096)) * 5
                f.seek(i)
                f.write(chunk)
                model.write(i, chunk)
        for ctype in ('zlib', 'zstd'):
            for cs in ('64k', '4k', '2M'):
                with self.subTest(compression_type=ctype, cluster_size=cs):
                    img = self.checked(self.img('c-%s-%s.qcow2' % (ctype, cs)))
                    self.run_ok([self.qimg(), 'convert', '-c', '-O', 'qcow2',
                                 '-o', 'compression_type=%s,cluster_size=%s'
                                 % (ctype, cs), src, img])
                    self.dump_equal(img, src)
                    rc, res, err = self.our_check(img)
                    self.assertEqual(rc, 0, err)
                    self.assertGreater(res['compressed'], 0)
                    # Overwrite parts of compressed clusters (COW from
                    # compressed data), then compare again.
                    self.io(img, [['write', 5000, 3000, 0x77],
                                  ['zero', 200 * KiB, 10 * KiB],
                                  ['discard', 2 * MiB, 2 * MiB]])
                    self.assert_real_clean(img)
                    model2 = Model(8 * MiB)
                    with open(src, 'rb') as f:
                        model2.write(0, f.read())
                    model2.fill(5000, 3000, 0x77)
                    model2.fill(200 * KiB, 10 * KiB, 0)
                    model2.fill(2 * MiB, 2 * MiB, 0)
                    raw = self.img('c.raw')
                    model2.save_raw(raw)
                    self.assert_same_as_raw(img, raw)

    def test_backing_chain(self):
        base = self.create_real('base.qcow2', 16 * MiB)
        self.real_io(base, 'write -P 1 0 16M')
        mid = self.create_real('mid.qcow2', 32 * MiB,
                               'backing_file=base.qcow2,backing_fmt=qcow2')
        self.real_io(mid, 'write -P 2 1M 1M', 'write -z 3M 64k')
        top = self.create('top.qcow2', 32 * MiB,
                          'backing_file=mid.qcow2,backing_fmt=qcow2')
        # Partial-cluster writes copy the rest from the backing chain.
        self.io(top, [['write', 5000, 3000, 3], ['write', 1 * MiB + 100, 10, 4],
                      ['write', 20 * MiB + 1, 4096, 5],
                      ['zero', 8 * MiB, 64 * KiB], ['discard', 9 * MiB, MiB]])
        model = Model(32 * MiB)
        model.fill(0, 16 * MiB, 1)
        model.fill(1 * MiB, 1 * MiB, 2)
        model.fill(3 * MiB, 64 * KiB, 0)
        model.fill(5000, 3000, 3)
        model.fill(1 * MiB + 100, 10, 4)
        model.fill(20 * MiB + 1, 4096, 5)
        model.fill(8 * MiB, 64 * KiB, 0)
        model.fill(9 * MiB, MiB, 0)
        raw = self.img('top.raw')
        model.save_raw(raw)
        self.assert_same_as_raw(top, raw)
        self.assert_real_clean(top)
        self.dump_equal(top, raw)
        info = self.info(top)
        self.assertEqual(info['backing'], 'mid.qcow2')
        hdr = self.run_ok([self.qimg(), 'info', '--output=json', top])
        self.assertEqual(json.loads(hdr)['backing-filename-format'], 'qcow2')

    def test_snapshots_read_only(self):
        img = self.create_real('snap.qcow2', 16 * MiB)
        self.real_io(img, 'write -P 1 0 4M')
        self.run_ok([self.qimg(), 'snapshot', '-c', 's1', img])
        self.real_io(img, 'write -P 2 1M 1M')
        self.real_io(img, 'read -P 2 1M 1M')
        self.io(img, [['read', 0, MiB, 1], ['read', MiB, MiB, 2]],
                readonly=True)
        rc, out, err = self.io(img, [['write', 0, 512, 3]], ok=False)
        self.assertEqual(rc, 1)
        self.assertIn('snapshots', err)
        rc, res, err = self.our_check(img)
        self.assertEqual((rc, res['leaks'], res['corruptions']), (0, 0, 0),
                         err)


@requires_real('qemu-img')
class TestCreateAndInfo(Qcow2Case):

    def test_byte_identical_create(self):
        for opts in ('', 'cluster_size=2M', 'cluster_size=4096',
                     'compat=0.10', 'refcount_bits=64', 'refcount_bits=1',
                     'lazy_refcounts=on', 'compression_type=zstd',
                     'preallocation=metadata'):
            for size in (GiB, 100 * GiB):
                if 'preallocation' in opts and size > GiB:
                    continue
                with self.subTest(opts=opts, size=size):
                    a = self.create_real('a.qcow2', size, opts)
                    b = self.create('b.qcow2', size, opts)
                    with open(a, 'rb') as fa, open(b, 'rb') as fb:
                        self.assertTrue(fa.read() == fb.read())

    def test_backing_create_identical(self):
        self.create_real('base.qcow2', 4 * MiB)
        a = self.create_real('a.qcow2', 8 * MiB,
                             'backing_file=base.qcow2,backing_fmt=qcow2')
        b = self.create('b.qcow2', 8 * MiB,
                        'backing_file=base.qcow2,backing_fmt=qcow2')
        with open(a, 'rb') as fa, open(b, 'rb') as fb:
            self.assertTrue(fa.read() == fb.read())
        # Without a size, the backing file's size is used.
        c = self.img('c.qcow2')
        self.run_ok([self.tool(), 'create', c,
                     'backing_file=base.qcow2,backing_fmt=qcow2'])
        self.assertEqual(self.info(c)['virtual-size'], str(4 * MiB))

    def test_specific_info_matches_qemu(self):
        for opts in ('', 'compat=0.10', 'compression_type=zstd',
                     'lazy_refcounts=on', 'refcount_bits=64'):
            with self.subTest(opts=opts):
                img = self.create('i.qcow2', 16 * MiB, opts)
                real = json.loads(self.run_ok(
                    [self.qimg(), 'info', '--output=json', img]),
                    object_pairs_hook=list)
                spec = dict(real)['format-specific']
                ours = json.loads(self.info(img)['specific'],
                                  object_pairs_hook=list)
                self.assertEqual(ours, spec)

    def test_creation_errors(self):
        cases = [
            ('compat=foo', "Parameter 'version' does not accept value 'foo'"),
            ('cluster_size=1000', 'Cluster size must be a power of two'),
            ('cluster_size=4M', 'Cluster size must be a power of two'),
            ('refcount_bits=3', 'Refcount width must be a power of two'),
            ('compat=0.10,refcount_bits=8', 'Different refcount widths'),
            ('compat=0.10,lazy_refcounts=on', 'Lazy refcounts only'),
            ('compat=0.10,compression_type=zstd', 'Non-zlib compression'),
            ('compression_type=lz4', "'compression-type' does not accept"),
            ('preallocation=foo', "'preallocation' does not accept"),
            ('backing_fmt=raw', 'Backing format cannot be used without'),
            ('extended_l2=on', 'Extended L2 entries are not supported'),
            ('data_file=x.raw', 'External data files are not supported'),
            ('preallocation=full', 'not supported'),
        ]
        for opts, msg in cases:
            with self.subTest(opts=opts):
                path = self.img('e.qcow2')
                out, err = self.run_fail([self.tool(), 'create', path,
                                          'size=1M,' + opts], rc=1)
                self.assertIn(msg, err)
        out, err = self.run_fail([self.tool(), 'create', self.img('n.qcow2'),
                                  'cluster_size=64k'], rc=1)
        self.assertIn('Image creation needs a size parameter', err)


if __name__ == '__main__':
    unittest.main()
