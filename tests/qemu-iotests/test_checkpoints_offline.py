#!/usr/bin/python3
"""Checkpoints offline with our qemu-img: `checkpoint` -l/-c/-d/--diff
[--to] (the same rules as the daemon, checked against the shadow model),
usage errors, `info` showing the checkpoints, `bitmap --list` naming the
owner of each bitmap, the bitmap operations refused on checkpoint
bitmaps, `check` validating the table, and resize refused."""

import json
import unittest

from ckpt_util import CheckpointCase, KiB, MiB, Shadow, read_table

SIZE = 64 * MiB


class TestCheckpointCommand(CheckpointCase):

    def setUp(self):
        super().setUp()
        self.path = self.create('img.qcow2', SIZE)
        self.m = Shadow(SIZE, 4096)

    def c(self, name, *extra):
        self.ours_ok(*(['checkpoint', '-c', name, '-g', '4k'] + list(extra)
                       + [self.path]))
        self.m.add(name)

    def d(self, name):
        self.ours_ok('checkpoint', '-d', name, self.path)
        self.m.remove(name)

    def write(self, *writes):
        self.io('real', self.path,
                *['write -P 3 %d %d' % (o, n) for o, n in writes])
        for o, n in writes:
            self.m.write(o, n)

    def test_chain_against_model(self):
        self.c('c1')
        self.write((0, 5000), (10 * MiB, 1))
        self.c('c2', '-b', 'bm2')
        self.write((2 * MiB, 64 * KiB))
        self.c('c3')
        self.write((10 * MiB + 4096, 4096))
        self.assert_model(self.path, self.m)
        for a, b in [('c1', 'c2'), ('c1', 'c3'), ('c2', 'c3'), ('c2', 'c2')]:
            self.assertEqual(self.ckpt_diff(self.path, a, b),
                             self.m.ranges(a, b))
        cps = self.ckpt_list(self.path)
        self.assertEqual([(c['name'], c.get('parent'), c['bitmap'],
                           c['recording'], c['changed-bytes'])
                          for c in cps],
                         [('c1', None, 'c1', False,
                           self.m.changed_bytes('c1')),
                          ('c2', 'c1', 'bm2', False,
                           self.m.changed_bytes('c2')),
                          ('c3', 'c2', 'c3', True,
                           self.m.changed_bytes('c3'))])
        self.d('c2')
        self.assert_model(self.path, self.m)
        self.d('c3')
        self.write((30 * MiB, 1))
        self.assert_model(self.path, self.m)
        self.assertEqual(self.info_bitmaps(self.path),
                         [{'flags': ['auto'], 'name': 'c1',
                           'granularity': 4096}])

    def test_human_output(self):
        self.c('c1')
        self.write((0, 4096))
        self.c('c2')
        out = self.ours_ok('checkpoint', '-l', self.path).splitlines()
        self.assertEqual(out[0].split(),
                         ['NAME', 'PARENT', 'BITMAP', 'GRANULARITY',
                          'CREATED', 'CHANGED', 'BYTES', 'STATE'])
        self.assertEqual(out[1].split()[:4], ['c1', '-', 'c1', '4096'])
        self.assertEqual(out[1].split()[-2:], ['4096', 'ok'])
        self.assertEqual(out[2].split()[-3:], ['0', 'ok,', 'recording'])
        out = self.ours_ok('checkpoint', '--diff', 'c1', self.path)
        self.assertEqual(out.splitlines(),
                         ['Offset          Length          Changed',
                          '0               0x1000          yes',
                          '4096 bytes changed in 1 extents'])
        # No checkpoints: nothing listed.
        empty = self.create('e.qcow2', SIZE)
        self.assertEqual(self.ours_ok('checkpoint', '-l', empty), '')
        self.assertEqual(self.ckpt_list(empty), [])

    def test_usage_errors(self):
        self.c('c1')
        img = self.ours('qemu-img')
        for args, want in [
                ([], 'Need one of'),
                (['-l', '-c', 'x'], 'Only one of'),
                (['-l', '--to', 'c1'], '--to only goes with --diff'),
                (['-l', '-g', '4k'], '-g and -b only go with -c'),
                (['-d', 'c1', '--output=json'], '--output only goes'),
                (['-c', 'x', '-U'], '-U cannot be used'),
                (['-c', 'x', '-g', 'abc'], 'granularity'),
                (['-l', '--output=xml'], 'human or json'),
                (['-l', '--bogus'], 'bogus')]:
            with self.subTest(args=args):
                out, err = self.run_fail([img, 'checkpoint'] + args
                                         + [self.path], rc=1)
                self.assertIn(want, err)
        out, err = self.run_fail([img, 'checkpoint', '-l'], rc=1)
        self.assertIn('Expecting one image file name', err)
        self.assertIn('--diff NAME', self.ours_ok('checkpoint', '--help'))

    def test_errors(self):
        img = self.ours('qemu-img')
        self.c('c1')
        self.c('c2')
        for args, want in [
                (['-c', 'c1'], "Checkpoint 'c1' already exists"),
                (['-c', 'x', '-b', 'c2'], "belongs to checkpoint 'c2'"),
                (['-c', 'x', '-g', '1000'], 'power of 2'),
                (['-d', 'nope'], "Checkpoint 'nope' not found"),
                (['--diff', 'nope'], "Checkpoint 'nope' not found"),
                (['--diff', 'c2', '--to', 'c1'], 'c2')]:
            with self.subTest(args=args):
                out, err = self.run_fail([img, 'checkpoint'] + args
                                         + [self.path], rc=1)
                self.assertIn(want, err)
        raw = self.img('r.raw')
        self.real_ok('create', '-q', '-f', 'raw', raw, '1M')
        out, err = self.run_fail([img, 'checkpoint', '-c', 'x', raw], rc=1)
        self.assertIn('does not support checkpoints', err)
        self.assertEqual([c['name'] for c in self.ckpt_list(self.path)],
                         ['c1', 'c2'])

    def test_info_and_bitmap_list(self):
        self.c('c1')
        self.write((0, 4096))
        self.c('c2')
        self.ours_ok('bitmap', '--add', self.path, 'plain')
        data = json.loads(self.ours_ok('info', '--output=json', self.path))
        cps = data['format-specific']['data']['checkpoints']
        self.assertEqual([(c['name'], c.get('parent'), c['usable'])
                          for c in cps],
                         [('c1', None, True), ('c2', 'c1', True)])
        self.assertIn('checkpoints:', self.ours_ok('info', self.path))
        listed = {b['name']: b.get('checkpoint')
                  for b in self.our_list(self.path)}
        self.assertEqual(listed, {'c1': 'c1', 'c2': 'c2', 'plain': None})
        out = self.ours_ok('bitmap', '--list', self.path).splitlines()
        self.assertTrue(out[0].endswith('CHECKPOINT'))
        self.assertEqual(out[1].split()[-1], 'c1')
        self.assertEqual(out[3].split()[-1], '-')

    def test_bitmap_operations_refused(self):
        img = self.ours('qemu-img')
        self.c('c1')
        self.write((0, 4096))
        self.c('c2')
        self.ours_ok('bitmap', '--add', '-g', '4k', self.path, 'plain')
        for op in (['--remove'], ['--clear'], ['--enable'], ['--disable'],
                   ['--merge', 'plain']):
            with self.subTest(op=op):
                out, err = self.run_fail([img, 'bitmap'] + op
                                         + [self.path, 'c1'], rc=1)
                self.assertIn('belongs to checkpoint', err)
                self.assertIn('checkpoint -d c1', err)
        self.ours_ok('bitmap', '--merge', 'c1', self.path, 'plain')
        self.assertEqual({b['name']: b['count']
                          for b in self.our_list(self.path)},
                         {'c1': 4096, 'c2': 0, 'plain': 4096})
        out, err = self.run_fail([img, 'resize', self.path, '128M'], rc=1)
        self.assertIn('belongs to checkpoint', err)

    def test_check(self):
        img = self.ours('qemu-img')
        self.c('c1')
        self.c('c2')
        rc, out, err = self.run_cmd([img, 'check', self.path])
        self.assertEqual((rc, err), (0, ''))
        self.real_ok('bitmap', '--remove', self.path, 'c2')
        rc, out, err = self.run_cmd([img, 'check', self.path])
        self.assertEqual(rc, 0)
        self.assertIn("Checkpoint 'c1' is unusable: bitmap 'c2' is missing",
                      err)
        self.assertEqual([e['damage'] for e in read_table(self.path)],
                         [0, 0])
        rc, out, err = self.run_cmd([img, 'check', '-r', 'all', self.path])
        self.assertEqual(rc, 0, err)
        self.assertIn('Repairing checkpoint table', err)
        self.assertEqual([e['damage'] for e in read_table(self.path)],
                         [0, 1])
        self.real_ok('check', self.path)


if __name__ == '__main__':
    unittest.main()
