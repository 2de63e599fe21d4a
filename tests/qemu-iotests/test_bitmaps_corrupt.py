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

from bitmap_util import BitmapCase, KiB, MiB, file_sha
from harness import proc, qcow2, qmp

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

    def repair_leaks(self, path):
        """Our check -r leaks succeeds, and the real check then finds the
        image clean."""
        rc, _, err = self.ours_rc('check', '-r', 'leaks', path)
        self.assertEqual(rc, 0, err)
        rc, text = self.check_image(path)
        self.assertEqual(rc, 0, text)

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
        self.repair_leaks(path)
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
        self.repair_leaks(path)
        self.data_readable(path)


class TestAutoclearClearUse(CorruptBase):
    """Item 13, continued: bitmaps of a directory whose autoclear bit is
    clear are never used for NBD or for a checkpoint diff, and removing
    them works.  The first change to the directory in a session drops
    every untrusted entry at once (QEMU drops them all when it opens the
    image read-write), so a removal loop that re-lists ends after one
    step; a name no longer listed is then "not found", cleanly."""

    def untrusted(self, name='img.qcow2', checkpoints=False):
        path = self.img(name)
        self.real_ok('create', '-f', 'qcow2', path, SIZE)
        if checkpoints:
            self.ours_ok('checkpoint', '-c', 'c0', path)
            self.io('ours', path, 'write -P 0x11 0 1M')
            self.ours_ok('checkpoint', '-c', 'c1', path)
            self.io('ours', path, 'write -P 0x22 5M 64k')
            self.ours_ok('bitmap', '--add', path, 'b0')
            # Usable before the bit is cleared.
            self.ours_ok('checkpoint', '--diff', 'c0', path)
        else:
            self.real_ok('bitmap', '--add', path, 'b0')
            self.real_ok('bitmap', '--add', '-g', '128k', path, 'b1')
            self.io('real', path, 'write -P 0x11 0 1M',
                    'write -P 0x22 5M 64k')
        qcow2.set_feature_bit(path, 'autoclear', AUTOCLEAR_BITMAPS, False)
        return path

    def nbd_refused(self, path, bitmap, needle):
        """Our qemu-nbd refuses to export `bitmap`, read-only without
        writing the file, and read-write."""
        before = file_sha(path)
        for extra in (['-r'], []):
            rc, out, err = proc.run([self.ours('qemu-nbd'), '-f', 'qcow2',
                                     '-k', self.sock('n.sock'), '-B',
                                     bitmap] + extra + [path], timeout=60)
            self.assertEqual(rc, 1, err)
            self.assertIn(needle, err)
            if extra:
                self.assertEqual(file_sha(path), before)
        # QEMU refuses as well (it dropped the bitmaps on open).
        rc, out, err = proc.run([self.real('qemu-nbd'), '-r', '-f', 'qcow2',
                                 '-k', self.sock('r.sock'), '-B', bitmap,
                                 path], timeout=60)
        self.assertEqual(rc, 1, err)

    def daemon(self, path):
        d, socks = qmp.start_qsd(self, self.ours('qemu-storage-daemon'))
        q = qmp.QMPClient(socks[0])
        self.addCleanup(q.close)
        q.negotiate()
        q.cmd_ok('blockdev-add', {'driver': 'qcow2', 'node-name': 'disk',
                                  'file': {'driver': 'file',
                                           'filename': path}})
        q.cmd_ok('nbd-server-start', {'addr': {'type': 'unix', 'data': {
            'path': self.sock('nbd.sock')}}})
        return d, q

    def node_bitmaps(self, q):
        for n in q.cmd_ok('query-named-block-nodes'):
            if n['node-name'] == 'disk':
                return {b['name']: b for b in n.get('dirty-bitmaps', [])}
        raise AssertionError('no node disk')

    def export_refused(self, q, needle, **nbd):
        args = {'type': 'nbd', 'id': 'e', 'node-name': 'disk'}
        args.update(nbd)
        r = q.cmd('block-export-add', args)
        self.assertEqual(qmp.error_class(r), 'GenericError', r)
        self.assertIn(needle, r['error']['desc'])
        self.assertEqual(q.cmd_ok('query-block-exports'), [])

    def remove_all(self, q, cmd, listing):
        """Remove what `listing()` shows, one at a time, until nothing is
        left; every removal succeeds.  Returns the names removed."""
        removed = []
        while listing():
            name = sorted(listing())[0]
            q.cmd_ok(cmd, {'node': 'disk', 'name': name})
            self.assertNotIn(name, listing())
            removed.append(name)
            self.assertLessEqual(len(removed), 10)
        return removed

    def finish(self, d, q, path):
        q.cmd_ok('quit')
        d.wait(timeout=60)
        # Leaks only (what the dropped directory used), which -r fixes.
        rc, text = self.check_image(path)
        self.assertIn(rc, (0, 3), text)
        self.repair_leaks(path)
        self.assertEqual(self.our_list(path), [])
        self.data_readable(path)

    def finish_with_bitmap(self, d, q, path, name):
        q.cmd_ok('quit')
        d.wait(timeout=60)
        self.repair_leaks(path)
        self.assertEqual([(b['name'], b['inconsistent'])
                          for b in self.our_list(path)], [(name, False)])
        self.assertEqual([b['name'] for b in self.info_bitmaps(path)],
                         [name])
        self.data_readable(path)

    def ckpt_list(self, path):
        return json.loads(self.ours_ok('checkpoint', '-l', '--output=json',
                                       '-U', path))

    def test_bitmaps_not_exported(self):
        path = self.untrusted()
        for name in ('b0', 'b1'):
            self.nbd_refused(path, name,
                             "Bitmap '%s' is inconsistent and cannot be "
                             "used" % name)
        d, q = self.daemon(path)
        bms = self.node_bitmaps(q)
        self.assertEqual(sorted(bms), ['b0', 'b1'])
        self.assertTrue(all(b['inconsistent'] for b in bms.values()))
        for spec in ('b0', {'node': 'disk', 'name': 'b1'}):
            self.export_refused(q, 'is inconsistent and cannot be used',
                                bitmaps=[spec])
        # The export works without the bitmaps.
        q.cmd_ok('block-export-add', {'type': 'nbd', 'id': 'plain',
                                      'node-name': 'disk'})
        q.cmd_ok('block-export-del', {'id': 'plain'})
        q.wait_event('BLOCK_EXPORT_DELETED', timeout=30)
        # Removal: the first drops both; the other name is then gone.
        removed = self.remove_all(q, 'block-dirty-bitmap-remove',
                                  lambda: self.node_bitmaps(q))
        self.assertEqual(removed, ['b0'])
        r = q.cmd('block-dirty-bitmap-remove', {'node': 'disk',
                                                'name': 'b1'})
        self.assertEqual(qmp.error_class(r), 'GenericError')
        self.assertIn("Dirty bitmap 'b1' not found", r['error']['desc'])
        # The names can be used again.
        q.cmd_ok('block-dirty-bitmap-add', {'node': 'disk', 'name': 'b1',
                                            'persistent': True})
        self.finish_with_bitmap(d, q, path, 'b1')

    def test_checkpoints_not_diffed_or_exported(self):
        path = self.untrusted(checkpoints=True)
        listing = {c['name']: c for c in self.ckpt_list(path)}
        self.assertEqual(sorted(listing), ['c0', 'c1'])
        self.assertFalse(any(c['usable'] for c in listing.values()))
        before = file_sha(path)
        for args in (['c0'], ['c1'], ['c0', '--to', 'c1']):
            with self.subTest(diff=args):
                rc, out, err = self.ours_rc('checkpoint', '--diff', *args,
                                            path)
                self.assertEqual(rc, 1, out)
                self.assertIn("Checkpoint '%s' is unusable: bitmap '%s' is "
                              "inconsistent" % (args[0], args[0]), err)
                self.assertEqual(out, '')
        self.assertEqual(file_sha(path), before)
        self.nbd_refused(path, 'b0', 'is inconsistent and cannot be used')
        self.nbd_refused(path, 'c1', "Bitmap 'c1' belongs to checkpoint")
        d, q = self.daemon(path)
        for spec in (['c0'], ['c1'], [{'from': 'c0', 'to': 'c1'}]):
            self.export_refused(q, 'is inconsistent', checkpoints=spec)
        self.export_refused(q, 'is inconsistent', bitmaps=['b0'])

        def ckpts():
            got = q.cmd_ok('query-block-checkpoints', {'node': 'disk'})
            return {c['name']: c for c in got[0]['checkpoints']}
        self.assertFalse(any(c['usable'] for c in ckpts().values()))
        # Every checkpoint can be removed, one by one (the first change
        # also drops the plain bitmap b0 with the rest of the directory).
        removed = self.remove_all(q, 'block-checkpoint-remove', ckpts)
        self.assertEqual(removed, ['c0', 'c1'])
        self.assertEqual(self.node_bitmaps(q), {})
        self.finish(d, q, path)
        self.assertEqual(self.ckpt_list(path), [])

    def test_checkpoints_removed_offline(self):
        path = self.untrusted(checkpoints=True)
        for name in ('c1', 'c0'):
            self.ours_ok('checkpoint', '-d', name, path)
        self.assertEqual(self.ckpt_list(path), [])
        self.assertEqual(self.our_list(path), [])
        self.repair_leaks(path)
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
