#!/usr/bin/python3
"""qemu-img check: QEMU's messages and exit codes (0 clean, 2 corrupt,
3 leaks, 63 unsupported, 1 usage/open errors) on images made by the real
tools, and repair with -r leaks / -r all leaving an image the real
qemu-img check finds clean."""

import os
import struct
import unittest

from fe_util import FrontendCase
from harness import qcow2, requires_real


def add_leaks(path, n=2):
    """Give `n` clusters past the image end a refcount of 1 (leaks)."""
    img = qcow2.Image(path)
    h = img.header()
    cs = h.cluster_size
    size = os.path.getsize(path)
    first = divmod(size + cs - 1, cs)[0]
    with open(path, 'r+b') as f:
        f.seek(h.refcount_table_offset)
        block = struct.unpack('>Q', f.read(8))[0]
        width = (1 << h.refcount_order) >> 3
        assert width == 2, 'test expects 16-bit refcounts'
        for i in range(n):
            f.seek(block + (first + i) * 2)
            f.write(struct.pack('>H', 1))
        f.truncate((first + n) * cs)


def set_backing_name(path, length):
    """Point the header at a backing file name of `length` bytes."""
    qcow2.write_bytes(path, 0x1000, b'b' * length)
    qcow2.set_header_field(path, 'backing_file_offset', 0x1000)
    qcow2.set_header_field(path, 'backing_file_size', length)


@requires_real('qemu-img', 'qemu-io')
class TestCheck(FrontendCase):

    def make_both(self, name='b.qcow2', size='1G', data=True):
        for d in self.dirs.values():
            self.run_ok([self.real('qemu-img'), 'create', '-q', '-f',
                         'qcow2', name, size], cwd=d)
            if data:
                self.run_ok([self.real('qemu-io'), '-c', 'write 0 1M', '-c',
                             'write 10M 64k', name], cwd=d)
        return name

    def test_clean(self):
        self.make_both(data=False)
        for args in ([], ['--output=json'], ['-q'], ['-f', 'qcow2'],
                     ['-U'], ['-T', 'none']):
            with self.subTest(args=args):
                rc, _, _ = self.assert_same(['qemu-img', 'check'] + args +
                                            ['b.qcow2'])
                self.assertEqual(rc, 0)

    def test_clean_with_data(self):
        self.make_both()
        for args in ([], ['--output=json']):
            with self.subTest(args=args):
                rc, out, _ = self.assert_same(['qemu-img', 'check'] + args +
                                              ['b.qcow2'])
                self.assertEqual(rc, 0)

    def test_leaks_exit_3(self):
        self.make_both()
        for d in self.dirs.values():
            add_leaks(os.path.join(d, 'b.qcow2'))
        for args in ([], ['--output=json']):
            with self.subTest(args=args):
                ours, real = self.run_both(['qemu-img', 'check'] + args +
                                           ['b.qcow2'])
                self.assertEqual(ours[0], 3)
                self.assertEqual(real[0], 3)
                self.assertIn('2 leaked clusters were found on the image.'
                              if not args else '"leaks": 2', ours[1])

    def test_repair_leaks(self):
        for mode in ('leaks', 'all'):
            with self.subTest(mode=mode):
                name = self.make_both('r%s.qcow2' % mode)
                p = os.path.join(self.dirs['ours'], name)
                add_leaks(p)
                out = self.our_img('check', '-r', mode, p)
                self.assertIn('The following inconsistencies were found and '
                              'repaired:\n\n    2 leaked clusters\n'
                              '    0 corruptions\n\n'
                              'Double checking the fixed image now...\n'
                              'No errors were found on the image.', out)
                self.checked(p)
                rc, text = self.check_image(p)
                self.assertEqual(rc, 0, text)

    def test_repair_json(self):
        name = self.make_both('j.qcow2')
        p = os.path.join(self.dirs['ours'], name)
        add_leaks(p)
        out = self.our_img('check', '--output=json', '-r', 'leaks', p)
        self.assertIn('"leaks-fixed": 2', out)
        self.assertNotIn('"leaks": ', out)
        self.checked(p)

    def test_corruption_exit_2(self):
        name = self.make_both()
        for d in self.dirs.values():
            path = os.path.join(d, name)
            # The L2 table of the first 512 MiB moved onto the refcount
            # table's cluster: refcounts and references disagree.
            rt = qcow2.Image(path).header().refcount_table_offset
            qcow2.corrupt_l1_entry(path, 0, (1 << 63) | rt)
        ours, real = self.run_both(['qemu-img', 'check', name])
        self.assertEqual(real[0], 2)
        self.assertEqual(ours[0], 2, ours[2])
        self.assertIn('errors were found on the image.', ours[1])

    def test_raw_unsupported_63(self):
        for d in self.dirs.values():
            self.run_ok([self.real('qemu-img'), 'create', '-q', '-f', 'raw',
                         'r.img', '1M'], cwd=d)
        for args in ([], ['--output=json']):
            rc, _, _ = self.assert_same(['qemu-img', 'check'] + args +
                                        ['r.img'])
            self.assertEqual(rc, 63)

    def test_usage_errors(self):
        self.make_both(data=False)
        for args in (['-r', 'bogus', 'b.qcow2'], ['-T', 'bogus', 'b.qcow2'],
                     ['nonexist'], [], ['b.qcow2', 'x'],
                     ['--output=xml', 'b.qcow2'], ['-f', 'raw', '-Z']):
            with self.subTest(args=args):
                rc, _, _ = self.assert_same(['qemu-img', 'check'] + args)
                self.assertEqual(rc, 1)

    # Crafted images (robustness catalogue 48): name -> (poke, expected
    # exit code, or None where the drivers legitimately differ: QEMU opens
    # some broken headers that ours refuses, which is exit 1 either way).
    CRAFTED = {
        'bad-magic': (lambda p: qcow2.set_header_field(p, 'magic', 0x1234),
                      63),
        'version-1': (lambda p: qcow2.set_header_field(p, 'version', 1), 1),
        'incompat-40': (lambda p: qcow2.set_feature_bit(p, 'incompatible',
                                                        40), 1),
        'autoclear-5': (lambda p: qcow2.set_feature_bit(p, 'autoclear', 5),
                        0),
        'header-huge': (lambda p: qcow2.set_header_field(
            p, 'header_length', 1 << 20), 1),
        'header-odd': (lambda p: qcow2.set_header_field(
            p, 'header_length', 105), None),
        'cluster-bits-8': (lambda p: qcow2.set_header_field(
            p, 'cluster_bits', 8), 1),
        'cluster-bits-30': (lambda p: qcow2.set_header_field(
            p, 'cluster_bits', 30), 1),
        'refcount-table-misaligned': (lambda p: qcow2.set_header_field(
            p, 'refcount_table_offset',
            qcow2.Image(p).header().refcount_table_offset + 8), 1),
        'l1-huge': (lambda p: qcow2.set_header_field(p, 'l1_size',
                                                     0x7fffffff), 1),
        'l1-past-eof': (lambda p: qcow2.set_header_field(
            p, 'l1_table_offset', 1 << 40), None),
        'l2-entry-past-eof': (lambda p: qcow2.corrupt_l2_entry(p, 0), 2),
        'l2-entry-into-header': (lambda p: qcow2.set_l2_entry(p, 0, 1 << 63),
                                 3),
        'l1-entry-past-eof': (lambda p: qcow2.corrupt_l1_entry(p, 0), 2),
        'corrupt-bit': (lambda p: qcow2.set_feature_bit(p, 'incompatible',
                                                        1), 0),
        'dirty-bit': (lambda p: qcow2.set_feature_bit(p, 'incompatible', 0),
                      0),
        'refcount-zero': (lambda p: qcow2.Image(p).set_refcount(
            qcow2.Image(p).host_offset(0), 0), 2),
        'refcount-five': (lambda p: qcow2.Image(p).set_refcount(
            qcow2.Image(p).host_offset(0), 5), 2),
        # Item 6: the first extension's length runs past the header
        # cluster into the guest data that follows it.
        'ext-past-cluster': (lambda p: qcow2.write_bytes(
            p, qcow2.Image(p).extensions()[0].offset,
            qcow2.raw_extension(qcow2.EXT_FEATURE_TABLE, 1 << 16)), 1),
        # Item 10: a backing file name of 1024 bytes (1023 is the limit).
        'backing-name-1024': (lambda p: set_backing_name(p, 1024), 1),
    }

    # What each side prints for some of them: (ours, real QEMU's).
    CRAFTED_MESSAGES = {
        'ext-past-cluster': ('Header extension 0x6803f857 at offset 112 '
                             'too large', 'Header extension too large'),
        'backing-name-1024': ('Backing file name too long: 1024 bytes '
                              '(at most 1023)', 'Backing file name too long'),
    }

    def test_crafted_images_exit_codes(self):
        for name, (poke, want) in self.CRAFTED.items():
            with self.subTest(case=name):
                p = self.img(name + '.qcow2')
                self.real_img('create', '-q', '-f', 'qcow2', p, '16M')
                self.real_io('-c', 'write -P 1 0 128k', '-c',
                             'write -P 2 8M 64k', p)
                poke(p)
                for args in ([], ['--output=json']):
                    rc, out, err = self.run_cmd([self.ours('qemu-img'),
                                                 'check'] + args + [p])
                    self.assertGreaterEqual(rc, 0, 'killed by a signal')
                    self.assertIn(rc, (0, 1, 2, 3, 63), err)
                    if want is not None:
                        self.assertEqual(rc, want, out + err)
                    rrc, rout, rerr = self.run_cmd(
                        [self.real('qemu-img'), 'check'] + args + [p])
                    if want is not None:
                        self.assertEqual(rrc, want)
                    if name in self.CRAFTED_MESSAGES:
                        needle, real_needle = self.CRAFTED_MESSAGES[name]
                        self.assertIn(needle, err)
                        self.assertIn(real_needle, rerr)

    def test_our_qcow2_images_check_clean(self):
        self.qcow2_ok()
        p = self.img('o.qcow2')
        self.our_img('create', '-q', '-f', 'qcow2', p, '64M')
        self.our_io('-c', 'write 0 1M', '-c', 'write 32M 64k', p)
        out = self.our_img('check', p)
        self.assertIn('No errors were found on the image.', out)
        rc, text = self.check_image(p)
        self.assertEqual(rc, 0, text)


if __name__ == '__main__':
    unittest.main()
