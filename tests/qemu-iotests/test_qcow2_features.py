#!/usr/bin/python3
"""qcow2 driver features beyond plain I/O: block status against QEMU's
map, cache size options (and correctness with tiny caches), header
extensions kept byte for byte across read-write sessions, the dirty bit's
life cycle with lazy refcounts, discard giving space back, and metadata
preallocation."""

import json
import os
import unittest

from harness import qcow2, requires_real
from qcow2_util import KiB, MiB, Model, Qcow2Case

BDRV_BLOCK_DATA = 0x01
BDRV_BLOCK_ZERO = 0x02
BDRV_BLOCK_OFFSET_VALID = 0x04
BDRV_BLOCK_ALLOCATED = 0x10


def per_cluster(extents, size, cs):
    """Expand (start, length, info) extents to one info per cluster."""
    out = []
    for start, length, info in extents:
        for c in range(start // cs, (start + length + cs - 1) // cs):
            i = dict(info)
            if 'offset' in i:
                i['offset'] += c * cs - start
            out.append(i)
    return out[:size // cs]


@requires_real('qemu-img', 'qemu-io')
class TestBlockStatus(Qcow2Case):

    def test_map_matches_qemu(self):
        img = self.create('m.qcow2', 16 * MiB)
        self.io(img, [['write', 0, 192 * KiB, 1],
                      ['zero', 64 * KiB, 64 * KiB],         # zero, alloc
                      ['write', MiB, 64 * KiB, 2],
                      ['zero', MiB, 64 * KiB, 'unmap'],     # zero, plain
                      ['write', 2 * MiB, 128 * KiB, 3],
                      ['discard', 2 * MiB, 64 * KiB],
                      ['zero', 4 * MiB, 128 * KiB]])
        # The compressed kind: made by the real tool in a copy.
        ours = []
        for line in self.io(img, [['map']], readonly=True).splitlines():
            pos, n, flags, host = (int(x) for x in line.split())
            info = {'present': bool(flags & BDRV_BLOCK_ALLOCATED),
                    'zero': bool(flags & BDRV_BLOCK_ZERO),
                    'data': bool(flags & BDRV_BLOCK_DATA)}
            if flags & BDRV_BLOCK_OFFSET_VALID:
                info['offset'] = host
            ours.append((pos, n, info))
        real = []
        for e in json.loads(self.run_ok([self.qimg(), 'map',
                                         '--output=json', img])):
            info = {k: e[k] for k in ('present', 'zero', 'data')}
            if 'offset' in e:
                info['offset'] = e['offset']
            real.append((e['start'], e['length'], info))
        cs = 64 * KiB
        self.assertEqual(per_cluster(ours, 16 * MiB, cs),
                         per_cluster(real, 16 * MiB, cs))

    def test_compressed_and_backing_status(self):
        src = self.img('s.raw')
        with open(src, 'wb') as f:
            f.write(b'abc' * 100000)
            f.truncate(4 * MiB)
        c = self.checked(self.img('c.qcow2'))
        self.run_ok([self.qimg(), 'convert', '-c', '-O', 'qcow2', src, c])
        lines = self.io(c, [['map']], readonly=True).splitlines()
        first = [int(x) for x in lines[0].split()]
        self.assertEqual(first[2], BDRV_BLOCK_DATA | BDRV_BLOCK_ALLOCATED)
        top = self.create('top.qcow2', 4 * MiB,
                          'backing_file=c.qcow2,backing_fmt=qcow2')
        lines = self.io(top, [['map']], readonly=True).splitlines()
        self.assertEqual([int(x) for x in lines[0].split()][2], 0,
                         'unallocated with a backing file must be 0')


@requires_real('qemu-img', 'qemu-io')
class TestCheckStatistics(Qcow2Case):
    """Our check's numbers equal those of the real `qemu-img check`."""

    def real_stats(self, img):
        import re
        rc, text = self.real_check(img)
        m = re.search(r'(\d+)/(\d+) = [\d.]+% allocated, ([\d.]+)% '
                      r'fragmented, ([\d.]+)% compressed', text)
        end = re.search(r'Image end offset: (\d+)', text)
        return (int(m.group(1)), int(m.group(2)), float(m.group(3)),
                float(m.group(4)), int(end.group(1)))

    def test_statistics(self):
        src = self.img('s.raw')
        with open(src, 'wb') as f:
            f.write((b'hello world ' * 200000)[:2 * MiB])
            f.truncate(8 * MiB)
        c = self.checked(self.img('c.qcow2'))
        self.run_ok([self.qimg(), 'convert', '-c', '-O', 'qcow2', '-o',
                     'cluster_size=4096', src, c])
        self.real_io(c, 'write -P 1 1M 4k', 'write -P 2 3M 8k',
                     'write -P 3 2M 4k', 'write -P 4 7M 64k',
                     'write -P 5 100k 300k')
        f = self.create('f.qcow2', 64 * MiB, 'cluster_size=4096')
        self.io(f, [['write', 5 * MiB, 4096, 1], ['write', 0, 4096, 2],
                    ['write', 3 * MiB, MiB, 3], ['write', 2 * MiB, 8192, 4],
                    ['write', 40 * MiB, 4096, 5]])
        for img in (c, f):
            with self.subTest(img=os.path.basename(img)):
                alloc, total, frag, comp, end = self.real_stats(img)
                rc, res, err = self.our_check(img)
                self.assertEqual(rc, 0, err)
                self.assertEqual((res['allocated'], res['total'],
                                  res['image_end_offset']),
                                 (alloc, total, end))
                self.assertAlmostEqual(100.0 * res['fragmented'] / alloc,
                                       frag, delta=0.006)
                self.assertAlmostEqual(100.0 * res['compressed'] / alloc,
                                       comp, delta=0.006)


@requires_real('qemu-img', 'qemu-io')
class TestCacheOptions(Qcow2Case):

    def test_tiny_caches_stay_correct(self):
        # 4 KiB clusters make many L2 tables; 64 KiB ones with small cache
        # entries make many slices per table.
        for opts, cluster in (
                ('l2-cache-size=1,refcount-cache-size=1', 4096),
                ('cache-size=200k', 4096),
                ('l2-cache-size=128k', 4096),
                ('refcount-cache-size=64k,l2-cache-size=64k', 4096),
                ('l2-cache-entry-size=512', 4096),
                ('l2-cache-entry-size=512,l2-cache-size=1', 65536),
                ('l2-cache-entry-size=1024,l2-cache-size=8k', 65536),
                ('l2-cache-entry-size=65536,l2-cache-size=1', 65536),
                ('', 65536)):
            with self.subTest(opts=opts, cluster=cluster):
                img = self.create('t.qcow2', 512 * MiB,
                                  'cluster_size=%d,refcount_bits=8'
                                  % cluster)
                model = Model(512 * MiB)
                import random
                rnd = random.Random(9)
                cmds = []
                for k in range(400):
                    off = rnd.randrange(0, 512 * MiB - 64 * KiB)
                    ln = rnd.randrange(1, 64 * KiB)
                    p = rnd.randrange(1, 256)
                    cmds.append(['write', off, ln, p])
                    model.fill(off, ln, p)
                    if k % 40 == 39:
                        # Zeroes and discards over many slices and tables.
                        off = rnd.randrange(0, 400) * MiB
                        ln = rnd.randrange(1, 80) * MiB
                        op = ('zero', 'discard')[k % 80 == 79]
                        cmds.append([op, off, ln])
                        model.fill(off, ln, 0)
                self.io(img, cmds, opts=opts)
                raw = self.img('t.raw')
                model.save_raw(raw)
                self.assert_real_clean(img)
                self.assert_same_as_raw(img, raw)
                os.unlink(img)

    def test_cache_option_errors(self):
        img = self.create('e.qcow2', 16 * MiB)
        cases = [
            ('cache-size=1M,l2-cache-size=512k,refcount-cache-size=512k',
             'may not be set at the same time'),
            ('cache-size=1M,l2-cache-size=2M',
             'l2-cache-size may not exceed cache-size'),
            ('cache-size=1M,refcount-cache-size=2M',
             'refcount-cache-size may not exceed cache-size'),
            ('l2-cache-entry-size=256', 'must be a power of two from 512'),
            ('l2-cache-entry-size=3072', 'must be a power of two from 512'),
            ('l2-cache-entry-size=128k', 'to the cluster size (65536)'),
            ('overlap-check=sometimes', "'overlap-check'"),
            ('lazy-refcounts=maybe', 'lazy-refcounts'),
            ('no-such-option=1', 'no-such-option'),
        ]
        for opts, needle in cases:
            with self.subTest(opts=opts):
                out, err = self.run_fail([self.tool(), 'io', img, '-o', opts,
                                          'flush'], rc=1)
                self.assertIn(needle, err)
        v2 = self.create('v2.qcow2', 16 * MiB, 'compat=0.10')
        out, err = self.run_fail([self.tool(), 'io', v2, '-o',
                                  'lazy-refcounts=on', 'flush'], rc=1)
        self.assertIn('Lazy refcounts require', err)


@requires_real('qemu-img', 'qemu-io')
class TestHeaderPreserved(Qcow2Case):

    def test_unknown_extension_and_fields_kept(self):
        img = self.checked(self.create_real('u.qcow2', 64 * MiB))
        im = qcow2.Image(img)
        exts = im.extensions()
        end = max(e.offset + 8 + ((e.length + 7) & ~7) for e in exts)
        blob = bytes(range(13))
        # An unknown extension after the known ones, then the end marker.
        qcow2.write_bytes(img, end, (0x2a2a2a2a).to_bytes(4, 'big') +
                          len(blob).to_bytes(4, 'big') + blob + bytes(3) +
                          bytes(8))
        im.set_feature_bit('compatible', 20)
        with open(img, 'rb') as f:
            before = f.read(64 * KiB)
        self.io(img, [['write', 0, MiB, 5], ['zero', MiB, MiB],
                      ['resize', 128 * MiB], ['flush']])
        with open(img, 'rb') as f:
            after = f.read(64 * KiB)
        # Only the virtual size field changed.
        self.assertEqual(before[:24] + before[32:], after[:24] + after[32:])
        e = qcow2.Image(img).extension(0x2a2a2a2a)
        self.assertEqual(e.data, blob)
        self.real_io(img, 'read -P 5 0 1M')


@requires_real('qemu-img', 'qemu-io')
class TestDirtyAndSpace(Qcow2Case):

    def test_lazy_refcounts_dirty_cycle(self):
        img = self.create('lz.qcow2', 64 * MiB, 'lazy_refcounts=on')
        self.assertEqual(self.info(img)['dirty'], '0')
        self.io(img, [['write', 0, MiB, 1]])
        # Closed cleanly: not dirty, and the real check agrees.
        self.assertFalse(qcow2.Image(img).feature_bit('incompatible', 0))
        self.assert_real_clean(img)
        # lazy-refcounts=off as an open option on such an image works too.
        self.io(img, [['write', MiB, MiB, 2]], opts='lazy-refcounts=off')
        self.assert_real_clean(img)

    def test_discard_returns_space(self):
        img = self.create('d.qcow2', 64 * MiB)
        self.io(img, [['write', 0, 32 * MiB, 7]])
        used = os.stat(img).st_blocks * 512
        self.io(img, [['discard', 0, 32 * MiB]])
        self.assertLess(os.stat(img).st_blocks * 512, used - 16 * MiB)
        self.real_io(img, 'read -P 0 0 32M')
        # Freed clusters are reused before the file grows.
        size = os.path.getsize(img)
        self.io(img, [['write', 0, 16 * MiB, 8]])
        self.assertEqual(os.path.getsize(img), size)
        self.assert_real_clean(img)

    def test_preallocation_metadata(self):
        img = self.create('p.qcow2', 64 * MiB, 'preallocation=metadata')
        m = json.loads(self.run_ok([self.qimg(), 'map', '--output=json',
                                    img]))
        self.assertTrue(all(e['present'] and 'offset' in e for e in m))
        self.real_io(img, 'read -P 0 0 64M')
        self.io(img, [['write', 0, 100, 9]])
        self.real_io(img, 'read -P 9 0 100')
        self.assert_real_clean(img)


if __name__ == '__main__':
    unittest.main()
