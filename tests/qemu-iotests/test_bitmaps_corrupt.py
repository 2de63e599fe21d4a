#!/usr/bin/python3
"""Bad bitmap metadata (robustness catalogue items 13-17 and 19): crafted
directories, tables and extensions give a clear error naming the problem,
never a crash; the image still opens and its data stays readable and
writable; check reports the corruption and `check -r all` repairs it.  A
process dying at any step of a directory update leaves every bitmap
either as it was or as it was meant to become, and no corruption."""

import json
import os
import shutil
import unittest

from bitmap_util import BitmapCase, KiB, MiB
from harness import proc, qcow2

SIZE = 64 * MiB
AUTOCLEAR_BITMAPS = 0


def poke_name(path, bitmap, new_name_bytes):
    entry = qcow2.Image(path).bitmap(bitmap)
    qcow2.write_bytes(path, entry.offset + 24, new_name_bytes)


# (label, poke(path), message our tools must print)
DIRECTORY_CASES = [
    ('count-too-high',
     lambda p: qcow2.Image(p).set_bitmaps_ext_field('nb_bitmaps', 3),
     'Bitmap directory is broken'),
    ('count-too-low',
     lambda p: qcow2.Image(p).set_bitmaps_ext_field('nb_bitmaps', 1),
     'says 1 bitmaps in'),
    ('count-zero',
     lambda p: qcow2.Image(p).set_bitmaps_ext_field('nb_bitmaps', 0),
     'zero bitmaps'),
    ('dir-size-cuts-entry',
     lambda p: qcow2.Image(p).set_bitmaps_ext_field(
         'directory_size', qcow2.Image(p).bitmaps_ext().directory_size - 8),
     'crosses the end of the directory'),
    ('dir-misaligned',
     lambda p: qcow2.Image(p).set_bitmaps_ext_field(
         'directory_offset',
         qcow2.Image(p).bitmaps_ext().directory_offset + 512),
     'invalid bitmap directory offset'),
    ('dir-past-eof',
     lambda p: qcow2.Image(p).set_bitmaps_ext_field(
         'directory_offset', 1 << 40),
     'beyond the end of the file'),
    ('ext-reserved',
     lambda p: qcow2.Image(p).set_bitmaps_ext_field('reserved', 1),
     'Reserved field is not zero'),
    ('reserved-flag',
     lambda p: qcow2.Image(p).set_bitmap_field('b1', 'flags', 1 << 7),
     "Bitmap 'b1' has reserved flags"),
    ('granularity-8',
     lambda p: qcow2.Image(p).set_bitmap_field('b1', 'granularity_bits', 8),
     "Bitmap 'b1' has granularity bits 8"),
    ('granularity-32',
     lambda p: qcow2.Image(p).set_bitmap_field('b1', 'granularity_bits',
                                               32),
     "Bitmap 'b1' has granularity bits 32"),
    ('type-2',
     lambda p: qcow2.Image(p).set_bitmap_field('b1', 'type', 2),
     "Bitmap 'b1' has unknown type 2"),
    ('name-empty',
     lambda p: qcow2.Image(p).set_bitmap_field('b0', 'name_size', 0),
     'has a name of 0 bytes'),
    ('name-1024',
     lambda p: qcow2.Image(p).set_bitmap_field('b1', 'name_size', 1024),
     'entry 1'),
    ('duplicate-name',
     lambda p: poke_name(p, 'b1', b'b0'),
     "two bitmaps named 'b0'"),
    ('extra-data',
     lambda p: qcow2.Image(p).set_bitmap_field('b0', 'extra_data_size', 8),
     'extra data'),
    ('table-misaligned',
     lambda p: qcow2.Image(p).set_bitmap_field(
         'b1', 'table_offset', qcow2.Image(p).bitmap('b1').table_offset + 8),
     "Bitmap 'b1' has a misaligned table offset"),
    ('table-size-zero',
     lambda p: qcow2.Image(p).set_bitmap_field('b1', 'table_size', 0),
     "Bitmap 'b1' has an invalid table size 0"),
    ('table-on-directory',
     lambda p: qcow2.Image(p).set_bitmap_field(
         'b1', 'table_offset', qcow2.Image(p).bitmaps_ext().directory_offset),
     'overlaps'),
    ('tables-overlap',
     lambda p: qcow2.Image(p).set_bitmap_field(
         'b1', 'table_offset', qcow2.Image(p).bitmap('b0').table_offset),
     'overlaps'),
    ('table-past-eof',
     lambda p: qcow2.Image(p).set_bitmap_field('b1', 'table_offset',
                                               1 << 40),
     'beyond the end of the file'),
]


class CorruptBase(BitmapCase):

    def make(self, name='img.qcow2'):
        """b0 (64k, recording: 0..1M and 5M..+64k dirty) and b1 (128k,
        disabled: 0..1M dirty); data 0x11 at 0..1M, 0x22 at 5M."""
        path = self.img(name)
        self.real_ok('create', '-f', 'qcow2', path, SIZE)
        self.real_ok('bitmap', '--add', path, 'b0')
        self.real_ok('bitmap', '--add', '-g', '128k', path, 'b1')
        self.io('real', path, 'write -P 0x11 0 1M')
        self.real_ok('bitmap', '--disable', path, 'b1')
        self.io('real', path, 'write -P 0x22 5M 64k')
        return path

    def ours_rc(self, *args):
        rc, out, err = proc.run([self.ours('qemu-img')] + list(args),
                                timeout=120)
        self.assertGreaterEqual(rc, 0, 'killed by a signal: %s' % err)
        return rc, out, err

    def data_readable(self, path):
        self.run_ok([self.ours('qemu-io'), '-r', '-c',
                     'read -P 0x11 0 1M', '-c', 'read -P 0x22 5M 64k',
                     path])


class TestBrokenDirectory(CorruptBase):

    def one_case(self, poke, message):
        path = self.make()
        poke(path)
        # Opens; no bitmaps listed in info (a warning says why); data
        # readable.
        rc, out, err = self.ours_rc('info', '--output=json', path)
        self.assertEqual(rc, 0)
        self.assertIn('warning: bitmaps unusable: ', err)
        self.assertIn(message, err)
        info = json.loads(out)
        self.assertNotIn('bitmaps', info['format-specific']['data'])
        self.data_readable(path)
        # Every bitmap operation says why.
        rc, _, err = self.ours_rc('bitmap', '--list', path)
        self.assertEqual(rc, 1)
        self.assertIn(message, err)
        rc, _, err = self.ours_rc('bitmap', '--add', path, 'new')
        self.assertEqual(rc, 1)
        self.assertIn(message, err)
        rc, _, err = self.ours_rc('map', '--bitmap', 'b0', path)
        self.assertEqual(rc, 1)
        # check: a corruption, with the message.
        rc, _, err = self.ours_rc('check', path)
        self.assertEqual(rc, 2)
        self.assertIn(message, err)
        # Writing works and stops anyone trusting the directory.
        self.run_ok([self.ours('qemu-io'), '-c', 'write -P 0x33 2M 4k',
                     path])
        self.assertFalse(qcow2.Image(path).feature_bit('autoclear',
                                                       AUTOCLEAR_BITMAPS))
        # The real QEMU now ignores the extension and reads our data.
        self.run_ok([self.real('qemu-io'), '-r', '-c', 'read -P 0x33 2M 4k',
                     path])
        # Repair drops the extension; both checks are then clean.
        rc, _, err = self.ours_rc('check', '-r', 'all', path)
        self.assertEqual(rc, 0, err)
        self.assertIsNone(qcow2.Image(path).bitmaps_ext())
        rc, text = self.check_image(path)
        self.assertEqual(rc, 0, text)
        self.data_readable(path)

    def test_cases(self):
        for label, poke, message in DIRECTORY_CASES:
            with self.subTest(case=label):
                self.one_case(poke, message)


class TestBadTable(CorruptBase):

    def bad_table_case(self, value_of, message):
        path = self.make()
        table = qcow2.Image(path).bitmap_table('b0')
        qcow2.Image(path).set_bitmap_table_entry('b0', 0,
                                                 value_of(table[0]))
        self.data_readable(path)
        rc, out, err = self.ours_rc('bitmap', '--list', '--output=json',
                                    path)
        self.assertEqual(rc, 1)
        self.assertIn("Bitmap 'b0' table entry 0 " + message, err)
        listed = {b['name']: b for b in json.loads(out)}
        self.assertTrue(listed['b0']['inconsistent'])
        self.assertFalse(listed['b1']['inconsistent'])
        self.assertEqual(listed['b1']['count'], 1 * MiB)
        rc, _, err = self.ours_rc('map', '--bitmap', 'b0', path)
        self.assertEqual(rc, 1)
        self.assertIn('table entry 0', err)
        rc, _, err = self.ours_rc('check', path)
        self.assertEqual(rc, 2)
        self.assertIn("Bitmap 'b0' table entry 0 " + message, err)
        # The bad bitmap can be removed; what it pointed to may leak.
        self.ours_ok('bitmap', '--remove', path, 'b0')
        rc, _, err = self.ours_rc('check', '-r', 'leaks', path)
        self.assertEqual(rc, 0, err)
        rc, text = self.check_image(path)
        self.assertEqual(rc, 0, text)
        self.assertEqual([b['name'] for b in self.info_bitmaps(path)],
                         ['b1'])

    def test_reserved_bits(self):
        self.bad_table_case(lambda v: v | (1 << 60), 'has reserved bits')

    def test_all_ones_with_offset(self):
        self.bad_table_case(lambda v: v | 1,
                            'has both an offset and the all-ones flag')

    def test_misaligned(self):
        self.bad_table_case(lambda v: v + 512, 'has a misaligned offset')

    def test_past_eof(self):
        self.bad_table_case(lambda v: 1 << 45, 'points to 0x200000000000')


class TestAutoclearClear(CorruptBase):
    """Item 13: the bitmaps extension with its autoclear bit clear (a
    program without bitmap support wrote to the image)."""

    def test_untrusted_directory(self):
        path = self.make()
        qcow2.set_feature_bit(path, 'autoclear', AUTOCLEAR_BITMAPS, False)
        listed = self.our_list(path)
        self.assertEqual([(b['name'], b['inconsistent'], b['in-use'])
                          for b in listed],
                         [('b0', True, True), ('b1', True, True)])
        info = self.info_bitmaps(path, 'ours')
        self.assertEqual([b['flags'] for b in info],
                         [['in-use', 'auto'], ['in-use']])
        rc, _, err = self.ours_rc('map', '--bitmap', 'b1', path)
        self.assertEqual(rc, 1)
        self.assertIn('inconsistent', err)
        # Writing leaves the directory alone and the bit clear.
        before = qcow2.Image(path).bitmap_directory()
        self.run_ok([self.ours('qemu-io'), '-c', 'write 3M 4k', path])
        self.assertEqual([(e.name, e.flags) for e in
                          qcow2.Image(path).bitmap_directory()],
                         [(e.name, e.flags) for e in before])
        self.assertFalse(qcow2.Image(path).feature_bit('autoclear',
                                                       AUTOCLEAR_BITMAPS))
        # Removing one drops the untrusted directory (clusters leak).
        self.ours_ok('bitmap', '--remove', path, 'b0')
        self.assertEqual(self.our_list(path), [])
        rc, _, err = self.ours_rc('check', '-r', 'leaks', path)
        self.assertEqual(rc, 0, err)
        rc, text = self.check_image(path)
        self.assertEqual(rc, 0, text)
        self.data_readable(path)


class TestCrashDuringUpdate(CorruptBase):
    """Item 19: die at each step of a directory update."""

    def bits(self, path, name):
        try:
            return qcow2.Image(path).bitmap_dirty_bits(name)
        except KeyError:
            return None

    def test_merge_store_steps(self):
        base = self.make('base.qcow2')
        old = self.bits(base, 'b1')
        done = self.img('done.qcow2')
        shutil.copy(base, done)
        self.ours_ok('bitmap', '--merge', 'b0', done, 'b1')
        new = self.bits(done, 'b1')
        self.assertNotEqual(old, new)
        for step in range(1, 6):
            with self.subTest(step=step):
                path = self.img('step%d.qcow2' % step)
                shutil.copy(base, path)
                rc, _, err = proc.run([self.ours('qemu-img'), 'bitmap',
                                       '--merge', 'b0', path, 'b1'],
                                      env={'BP_FAULT_BITMAP_STEP':
                                           str(step)})
                self.assertEqual(rc, 99, err)
                self.assertIn(self.bits(path, 'b1'), (old, new))
                self.assertFalse(qcow2.Image(path).bitmap('b1').in_use)
                rc, text = self.check_image(path)
                self.assertIn(rc, (0, 3), text)
                self.data_readable(path)

    def test_in_use_flag_steps(self):
        base = self.make('base.qcow2')
        for step in range(1, 6):
            with self.subTest(step=step):
                path = self.img('w%d.qcow2' % step)
                shutil.copy(base, path)
                rc, _, err = proc.run([self.ours('qemu-io'), '-c',
                                       'write -P 0x44 9M 4k', path],
                                      env={'BP_FAULT_BITMAP_STEP':
                                           str(step)})
                self.assertEqual(rc, 99, err)
                # The write never happened before the flag was on disk.
                b0 = qcow2.Image(path).bitmap('b0')
                if not b0.in_use:
                    self.run_ok([self.real('qemu-io'), '-r', '-c',
                                 'read -P 0 9M 4k', path])
                listed = {b['name']: b for b in self.our_list(path)}
                self.assertFalse(listed['b1']['inconsistent'])
                rc, text = self.check_image(path)
                self.assertIn(rc, (0, 3), text)


if __name__ == '__main__':
    unittest.main()
