#!/usr/bin/python3
"""qcow2 images with bad metadata: each problem gives a clear error that
names it, never a signal, a hang or a write to the file during a failed
open; bad table entries found during I/O fail the request with EIO and
mark the image corrupt; corrupt images open read-only only; feature bits
(unknown incompatible, unknown autoclear, dirty) are handled per the
specification."""

import os
import random
import resource
import shutil
import subprocess
import unittest

from harness import qcow2, requires_real
from qcow2_util import KiB, MiB, Qcow2Case, sha


@requires_real('qemu-img', 'qemu-io')
class BadInputCase(Qcow2Case):

    def base_image(self, name='base.qcow2', opts=''):
        """A real-made image with data in the first 2 MiB."""
        img = self.create_real(name, 64 * MiB, opts, check=False)
        self.real_io(img, 'write -P 0x11 0 2M')
        return img

    def variant(self, src, name):
        dst = self.img(name)
        shutil.copyfile(src, dst)
        return dst

    def assert_open_fails(self, path, needle):
        """Our info and a read-write open both fail naming the problem, and
        the file stays byte-identical."""
        before = sha(path)
        for argv in ([self.tool(), 'info', path],
                     [self.tool(), 'io', path, 'read', '0', '512', '0x11']):
            out, err = self.run_fail(argv, rc=1)
            self.assertIn(needle, err)
        self.assertEqual(sha(path), before, 'a failed open wrote the file')
        # check must not crash either (it may refuse to open).
        rc, out, err = self.run_cmd([self.tool(), 'check', path])
        self.assertGreaterEqual(rc, 0)
        self.assertEqual(sha(path), before)


class TestHeaderFields(BadInputCase):

    def test_header_pokes(self):
        base = self.base_image()
        cs = 64 * KiB
        cases = [
            ('magic', 0x12345678, 'not in qcow2 format'),
            ('version', 1, 'Unsupported qcow2 version 1'),
            ('version', 4, 'Unsupported qcow2 version 4'),
            ('header_length', 100, 'header_length is 100'),
            ('header_length', 108, 'not a multiple of 8'),
            ('header_length', 0xfffffff8, 'exceeds cluster size'),
            # The message cites the supported range (catalogue item 5).
            ('cluster_bits', 8, 'Unsupported cluster size: 2^8 '
             '(supported: 2^9 to 2^21)'),
            ('cluster_bits', 22, 'Unsupported cluster size: 2^22 '
             '(supported: 2^9 to 2^21)'),
            ('cluster_bits', 0, '2^0 (supported: 2^9 to 2^21)'),
            ('cluster_bits', 63, '2^63 (supported: 2^9 to 2^21)'),
            ('crypt_method', 1, 'encrypted images'),
            ('refcount_order', 7, 'may not exceed 64 bits'),
            ('l1_size', 5 * 1024 * 1024, 'Active L1 table too large'),
            ('l1_size', 0, 'L1 table is too small'),
            ('l1_table_offset', 3 * cs + 8, 'is not aligned'),
            ('l1_table_offset', 1 << 40, 'beyond the end of the image file'),
            ('l1_table_offset', 0, 'overlaps the header'),
            ('refcount_table_offset', 0, 'overlaps the header'),
            ('refcount_table_offset', cs + 512, 'is not aligned'),
            ('refcount_table_offset', 1 << 50, 'beyond the end'),
            ('refcount_table_clusters', 0, 'does not contain a reference'),
            ('refcount_table_clusters', 0xffffffff,
             'Reference count table too large'),
            ('backing_file_offset', 1 << 20, 'Invalid backing file offset'),
            ('nb_snapshots', 100000, 'Too many snapshots'),
            ('compression_type', 5, 'unknown compression type 5'),
        ]
        for field, value, needle in cases:
            with self.subTest(field=field, value=value):
                img = self.variant(base, 'v.qcow2')
                qcow2.Image(img).set_header_field(field, value)
                self.assert_open_fails(img, needle)

    def test_truncated_files(self):
        base = self.base_image()
        for length in (0, 3, 50, 71, 90, 103):
            with self.subTest(length=length):
                img = self.variant(base, 't.qcow2')
                self.unchecked(img)         # truncated on purpose
                with open(img, 'r+b') as f:
                    f.truncate(length)
                needle = ('not in qcow2 format' if length < 8
                          else 'truncated')
                self.assert_open_fails(img, needle)

    def test_backing_name_too_long(self):
        base = self.base_image()
        # 1023 bytes is the longest name allowed (catalogue item 10).
        for length in (1024, 2000):
            with self.subTest(length=length):
                img = self.variant(base, 'b.qcow2')
                im = qcow2.Image(img)
                im.set_header_field('backing_file_offset', 0x1000)
                im.set_header_field('backing_file_size', length)
                self.assert_open_fails(img, 'Backing file name too long: '
                                       '%d bytes (at most 1023)' % length)


class TestHugeTables(BadInputCase):
    """Robustness item 8: a header or bitmaps extension whose sizes imply
    a table far beyond our caps (or one lying beyond EOF) is rejected
    before anything of that size is allocated.  Each open runs with its
    address space limited (so a huge allocation, even one never touched,
    cannot succeed and would show as a different error or a signal) and
    its peak resident size is read from /usr/bin/time afterwards."""

    AS_LIMIT = 256 * MiB        # the crafted sizes imply many GiB
    RSS_LIMIT_KIB = 64 * 1024   # a plain open needs a few MiB

    def sanitized(self, binary):
        """ASan reserves terabytes of address space: no AS limit then."""
        with open(binary, 'rb') as f:
            return b'__asan_init' in f.read()

    def run_small(self, argv):
        """(rc, stderr, peak RSS in KiB) of argv under the limits."""
        stats = self.img('time.out')
        limit_as = not self.sanitized(argv[0])

        def limits():
            if limit_as:
                resource.setrlimit(resource.RLIMIT_AS,
                                   (self.AS_LIMIT, self.AS_LIMIT))
        p = subprocess.run(['/usr/bin/time', '-f', '%M', '-o', stats] +
                           argv, capture_output=True, text=True,
                           timeout=120, preexec_fn=limits)
        with open(stats) as f:
            peak = int(f.read().split()[-1])
        return p.returncode, p.stderr, peak

    @unittest.skipUnless(os.access('/usr/bin/time', os.X_OK),
                         'needs /usr/bin/time')
    def test_huge_sizes_rejected_small(self):
        base = self.base_image()
        self.real_run_bitmap_add(base)
        header_cases = [
            ('l1_size', 0xffffffff, 'Active L1 table too large'),
            ('l1_size', 5 * 1024 * 1024, 'Active L1 table too large'),
            # At the cap but the table lies beyond EOF.
            ('l1_size', 4 * 1024 * 1024, 'beyond the end of the image'),
            ('refcount_table_clusters', 0xffffffff,
             'Reference count table too large'),
            ('refcount_table_clusters', 0x100000,
             'Reference count table too large'),
        ]
        ext_cases = [
            ('directory_size', 0xffffffffffff, 'exceeds the maximum'),
            ('directory_size', 64 * MiB, 'exceeds the maximum'),
            ('nb_bitmaps', 0xffffffff, 'exceeding the supported maximum'),
        ]
        for kind, field, value, needle in (
                [('header',) + c for c in header_cases] +
                [('bitmaps',) + c for c in ext_cases]):
            with self.subTest(field=field, value=value):
                img = self.variant(base, 'h.qcow2')
                im = qcow2.Image(img)
                if kind == 'header':
                    im.set_header_field(field, value)
                    want_rc = 1
                else:
                    im.set_bitmaps_ext_field(field, value)
                    want_rc = 0     # bitmaps unusable, image still opens
                for argv in ([self.ours('qemu-img'), 'info', img],
                             [self.ours('qemu-io'), '-r', '-f', 'qcow2',
                              '-c', 'read 0 512', img]):
                    rc, err, peak = self.run_small(argv)
                    self.assertEqual(rc, want_rc, err)
                    if kind == 'header' or argv[1] == 'info':
                        self.assertIn(needle, err)
                    self.assertLess(peak, self.RSS_LIMIT_KIB, argv)

    def real_run_bitmap_add(self, img):
        self.run_ok([self.real('qemu-img'), 'bitmap', '--add', img, 'b0'])


class TestExtensions(BadInputCase):
    """Catalogue item 6: an extension whose length runs past the header
    cluster into the rest of the file is refused before its bytes are
    used."""

    def test_extension_past_first_cluster(self):
        base = self.base_image()
        cs = qcow2.Image(base).cluster_size
        first = qcow2.Image(base).extensions()[0]
        self.assertEqual(first.type, qcow2.EXT_FEATURE_TABLE)
        data_start = first.offset + 8
        left = cs - data_start
        # The header cluster is followed by real data: an overlong
        # extension would have bytes to read.
        self.assertGreater(os.path.getsize(base), 2 * MiB)
        cases = [
            # (type, length): all but the last end inside the file.
            (qcow2.EXT_FEATURE_TABLE, left + 1),
            (qcow2.EXT_FEATURE_TABLE, cs),
            (qcow2.EXT_BACKING_FORMAT, left + 8),
            (qcow2.EXT_BITMAPS, MiB),
            (0x12345678, left + 512),        # unknown: kept byte for byte
            (0x12345678, 0xffffffff),
        ]
        for etype, length in cases:
            with self.subTest(type='0x%08x' % etype, length=length):
                img = self.variant(base, 'x.qcow2')
                qcow2.write_bytes(img, first.offset,
                                  qcow2.raw_extension(etype, length))
                needle = ('Header extension 0x%08x at offset %d too large: '
                          'length %d but only %d bytes are left in the '
                          'header cluster' % (etype, first.offset, length,
                                              left))
                self.assert_open_fails(img, needle)
                # QEMU refuses it too.
                rc, out, err = self.run_cmd([self.qimg(), 'info', img])
                self.assertEqual(rc, 1, out)
                self.assertIn('Header extension too large', err)
                # check cannot open it either: exit 1, file unchanged.
                before = sha(img)
                rc, out, err = self.run_cmd([self.tool(), 'check', img])
                self.assertEqual(rc, 1, out + err)
                self.assertIn('too large', err)
                self.assertEqual(sha(img), before)


class TestFeatureBits(BadInputCase):

    def test_unknown_incompatible_bit(self):
        base = self.base_image()
        img = self.variant(base, 'i.qcow2')
        qcow2.Image(img).set_feature_bit('incompatible', 40)
        self.assert_open_fails(img, 'Unknown incompatible feature bit 40')
        # With a name in the feature table, the error uses it.
        img2 = self.variant(base, 'i2.qcow2')
        im = qcow2.Image(img2)
        ft = im.extension(qcow2.EXT_FEATURE_TABLE)
        entry_off = ft.offset + 8     # first entry ("dirty bit")
        name = b'sparkly new feature'
        qcow2.write_bytes(img2, entry_off, bytes([0, 40]) + name +
                          bytes(46 - len(name)))
        im.set_feature_bit('incompatible', 40)
        self.assert_open_fails(img2, 'sparkly new feature (incompatible '
                                     'bit 40)')

    def test_refused_incompatible_features(self):
        base = self.base_image()
        for bit, needle in ((2, 'external data file'),
                            (4, 'extended L2 entries')):
            with self.subTest(bit=bit):
                img = self.variant(base, 'f.qcow2')
                qcow2.Image(img).set_feature_bit('incompatible', bit)
                self.assert_open_fails(img, needle)

    def test_unknown_autoclear_bits(self):
        img = self.checked(self.variant(self.base_image(), 'a.qcow2'))
        im = qcow2.Image(img)
        im.set_feature_bit('autoclear', 0)      # bitmaps: known
        im.set_feature_bit('autoclear', 17)     # unknown
        im.set_feature_bit('compatible', 9)     # unknown compatible
        before = sha(img)
        self.io(img, [['read', 0, MiB, 0x11]], readonly=True)
        self.assertEqual(sha(img), before, 'read-only open wrote the file')
        self.io(img, [['write', 4 * MiB, 4096, 0x22]])
        h = qcow2.Image(img).header()
        self.assertEqual(h.autoclear_features & (1 << 17), 0)
        self.assertEqual(h.compatible_features, 1 << 9)

    def test_corrupt_bit(self):
        img = self.checked(self.variant(self.base_image(), 'c.qcow2'))
        qcow2.Image(img).set_feature_bit('incompatible', 1)
        before = sha(img)
        out, err = self.run_fail([self.tool(), 'io', img, 'write', '0',
                                  '512', '1'], rc=1)
        self.assertIn('Image is corrupt; cannot be opened read/write', err)
        self.assertIn("qemu-img check -r all", err)
        self.assertEqual(sha(img), before)
        self.io(img, [['read', 0, MiB, 0x11]], readonly=True)
        # A repair with nothing to fix clears the bit.
        rc, res, err = self.our_check(img, 'all')
        self.assertEqual(rc, 0, err)
        self.assertFalse(qcow2.Image(img).feature_bit('incompatible', 1))
        self.io(img, [['write', 0, 512, 1]])

    def test_dirty_bit_rebuilds_refcounts(self):
        img = self.checked(self.variant(
            self.base_image(opts='lazy_refcounts=on'), 'd.qcow2'))
        im = qcow2.Image(img)
        host = im.host_offset(0)
        # What an interrupted lazy-refcount session leaves: a refcount
        # that is too low, and the dirty bit.
        im.set_refcount(host, 0)
        im.set_feature_bit('incompatible', 0)
        rc, text = self.real_check(img)
        self.assertEqual(rc, 2, text)
        before = sha(img)
        self.io(img, [['read', 0, MiB, 0x11]], readonly=True)
        self.assertEqual(sha(img), before)
        self.assertEqual(self.info(img)['dirty'], '1')
        self.io(img, [['write', 8 * MiB, 4096, 0x33]])
        self.assertFalse(qcow2.Image(img).feature_bit('incompatible', 0))
        self.assert_real_clean(img)
        self.real_io(img, 'read -P 0x11 0 2M', 'read -P 0x33 8M 4k')


class TestBadTables(BadInputCase):
    """Bad entries found while doing I/O."""

    def corrupt_entry(self, setter, needle, write=False):
        img = self.variant(self.base_image(), 'e.qcow2')
        setter(qcow2.Image(img))
        before = sha(img)
        # Read-only: EIO with a message, no write.
        rc, out, err = self.io(img, [['read', 0, 64 * KiB, 0x11]],
                               readonly=True, ok=False)
        self.assertEqual(rc, 1, err)
        self.assertIn(needle, err)
        self.assertEqual(sha(img), before)
        # The same through our qemu-io (robustness item 9): the request
        # fails with EIO, exit status 1, and nothing is written.
        out, err = self.run_fail([self.ours('qemu-io'), '-r', '-f', 'qcow2',
                                  '-c', 'read 0 64k', img], rc=1)
        self.assertIn('read failed: Input/output error', out + err)
        self.assertIn(needle, err)
        self.assertEqual(sha(img), before)
        # Read-write: the image gets marked corrupt.
        rc, out, err = self.io(img, [['write' if write else 'read', 0,
                                      64 * KiB, 0x11]], ok=False)
        self.assertEqual(rc, 1, err)
        self.assertIn('Marking image as corrupt', err)
        self.assertTrue(qcow2.Image(img).feature_bit('incompatible', 1))
        out, err = self.run_fail([self.tool(), 'io', img, 'read', '0', '1',
                                  '0x11'], rc=1)
        self.assertIn('cannot be opened read/write', err)
        return img

    def test_l2_entry_beyond_eof(self):
        self.corrupt_entry(lambda im: im.set_l2_entry(
            0, (1 << 40) | qcow2.L2E_COPIED), 'beyond the end of the image')

    def test_l2_entry_unaligned(self):
        self.corrupt_entry(lambda im: im.set_l2_entry(
            0, (im.host_offset(0) + 512) | qcow2.L2E_COPIED), 'unaligned')

    def test_l2_entry_into_metadata(self):
        for target, needle in (('l1', 'active L1 table'),
                               ('reftable', 'refcount table'),
                               ('header', 'qcow2_header')):
            with self.subTest(target=target):
                def poke(im, target=target):
                    h = im.header()
                    off = {'l1': h.l1_table_offset,
                           'reftable': h.refcount_table_offset,
                           'header': 0}[target]
                    # Offset 0 means "unallocated": use the zero-alloc form
                    # for the header so the entry is not ignored.
                    im.set_l2_entry(0, off | qcow2.L2E_COPIED if off else
                                    qcow2.L2E_COPIED | 0x200)
                if target == 'header':
                    needle = 'unaligned'
                img = self.corrupt_entry(poke, needle, write=True)
                # The metadata itself was not overwritten.
                self.assertEqual(qcow2.Image(img).header().magic,
                                 qcow2.MAGIC)

    def test_l2_table_into_refcount_block(self):
        def poke(im):
            rb = im.refcount_table()[0] & qcow2.REFT_OFFSET_MASK
            im.set_l1_entry(0, rb | qcow2.L1E_COPIED)
        self.corrupt_entry(poke, 'refcount block')

    def test_l1_entry_beyond_eof(self):
        self.corrupt_entry(lambda im: im.set_l1_entry(
            0, (1 << 45) | qcow2.L1E_COPIED), 'beyond the end')

    def test_check_repairs_bad_l2_entries(self):
        img = self.checked(self.variant(self.base_image(), 'r.qcow2'))
        im = qcow2.Image(img)
        im.set_l2_entry(0, (1 << 40) | qcow2.L2E_COPIED)
        im.set_l2_entry(64 * KiB,
                        (im.host_offset(64 * KiB) + 512) | qcow2.L2E_COPIED)
        rc, res, err = self.our_check(img)
        self.assertEqual(rc, 2, err)
        self.assertGreaterEqual(res['corruptions'], 2)
        rc, res, err = self.our_check(img, 'all')
        self.assertEqual(rc, 3 if res['leaks'] else 0, err)
        self.assertGreaterEqual(res['corruptions_fixed'], 2)
        rc, res, err = self.our_check(img, 'all')
        self.assertEqual(rc, 0, err)
        self.assert_real_clean(img)
        self.real_io(img, 'read -P 0 0 128k', 'read -P 0x11 128k 1M')

    def test_broken_refcount_block_rebuilt(self):
        img = self.checked(self.variant(self.base_image(), 'rb.qcow2'))
        qcow2.Image(img).set_refcount_table_entry(0, 0x10200)
        rc, res, err = self.our_check(img)
        self.assertEqual(rc, 2, err)
        rc, res, err = self.our_check(img, 'all')
        self.assertIn('Rebuilding refcount structure', err)
        self.assertEqual(res['corruptions'], 0, err)
        self.assert_real_clean(img, leaks_ok=True)
        self.our_check(img, 'all')
        self.assert_real_clean(img)
        self.real_io(img, 'read -P 0x11 0 2M')
        self.io(img, [['write', 10 * MiB, MiB, 0x44]])
        self.assert_real_clean(img)

    def test_leaks_detected_and_repaired(self):
        img = self.checked(self.variant(self.base_image(), 'l.qcow2'))
        im = qcow2.Image(img)
        # Free three clusters inside the file, then mark them used again:
        # leaks.  (Like QEMU, refcounts past the end of the file are not
        # looked at.)
        cs = im.cluster_size
        hosts = [im.host_offset(MiB + i * cs) for i in range(3)]
        self.real_io(img, 'discard 1M %d' % (3 * cs))
        for h in hosts:
            im.set_refcount(h, 1)
        rc, res, err = self.our_check(img)
        self.assertEqual((rc, res['leaks']), (3, 3), err)
        self.assertIn('Leaked cluster %d refcount=1 reference=0'
                      % (hosts[0] // cs), err)
        rc_real, text = self.real_check(img)
        self.assertEqual(rc_real, 3, text)
        self.assertIn('3 leaked clusters', text)
        rc, res, err = self.our_check(img, 'leaks')
        self.assertEqual((rc, res['leaks_fixed']), (0, 3), err)
        self.assert_real_clean(img)

    def test_refcount_too_low_repaired(self):
        img = self.checked(self.variant(self.base_image(), 'lo.qcow2'))
        im = qcow2.Image(img)
        im.set_refcount(im.host_offset(MiB), 0)
        rc, res, err = self.our_check(img, 'leaks')
        self.assertEqual(rc, 2, err)
        self.assertIn('ERROR cluster', err)
        rc, res, err = self.our_check(img, 'all')
        self.assertEqual(rc, 0, err)
        self.assertEqual(res['corruptions_fixed'], 1)
        self.assert_real_clean(img)


class TestFuzz(BadInputCase):

    def test_random_header_bytes(self):
        """Random byte changes in the header cluster and tables never crash
        or hang our driver (the result may be an error or success)."""
        base = self.base_image()
        rnd = random.Random(2024)
        h = qcow2.Image(base).header()
        regions = [(0, 512), (h.l1_table_offset, 64),
                   (h.refcount_table_offset, 64)]
        rt = qcow2.Image(base).refcount_table()[0] & qcow2.REFT_OFFSET_MASK
        regions.append((rt, 64))
        for i in range(120):
            img = self.variant(base, 'z.qcow2')
            self.unchecked(img)             # header fuzzed on purpose
            with open(img, 'r+b') as f:
                for _ in range(rnd.randrange(1, 6)):
                    start, ln = rnd.choice(regions)
                    f.seek(start + rnd.randrange(ln))
                    f.write(bytes([rnd.randrange(256)]))
            for argv in ([self.tool(), 'info', img],
                         [self.tool(), 'io', img, '-r', 'read', '0', '2M',
                          '0x11'],
                         [self.tool(), 'check', img],
                         [self.tool(), 'io', img, 'write', '0', '64k', '1',
                          ';', 'write', '40M', '1M', '2']):
                rc, out, err = self.run_cmd(argv, timeout=120)
                self.assertGreaterEqual(rc, 0, 'signal %d on iteration %d: '
                                        '%s' % (-rc, i, err))


if __name__ == '__main__':
    unittest.main()
