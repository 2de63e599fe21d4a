#!/usr/bin/python3
"""qemu-img map: human table and JSON extents identical to QEMU 7.2 on
images laid out by the real tools (raw holes, qcow2 data/zero clusters,
backing chains, --start-offset/--max-length), and errors."""

import json
import os
import unittest

from fe_util import FrontendCase
from harness import requires_real


@requires_real('qemu-img', 'qemu-io')
class TestMap(FrontendCase):

    def both(self, *argv_list):
        for argv in argv_list:
            for d in self.dirs.values():
                self.run_ok([self.real(argv[0])] + list(argv[1:]), cwd=d)

    def map_same(self, *args):
        for out in ([], ['--output=json'], ['--output=human']):
            with self.subTest(args=args + tuple(out)):
                self.assert_same(['qemu-img', 'map'] + out + list(args))

    def test_raw_holes(self):
        self.both(['qemu-img', 'create', '-q', '-f', 'raw', 'r.img', '1M'],
                  ['qemu-io', '-f', 'raw', '-c', 'write 0 4k', '-c',
                   'write 64k 8k', '-c', 'write 1020k 4k', 'r.img'])
        self.map_same('-f', 'raw', 'r.img')

    def test_raw_fully_sparse_and_full(self):
        self.both(['qemu-img', 'create', '-q', '-f', 'raw', 'e.img', '1M'],
                  ['qemu-img', 'create', '-q', '-f', 'raw', '-o',
                   'preallocation=full', 'f.img', '1M'])
        self.map_same('-f', 'raw', 'e.img')
        self.map_same('-f', 'raw', 'f.img')

    def test_qcow2_data_and_zero_clusters(self):
        self.both(['qemu-img', 'create', '-q', '-f', 'qcow2', 'q.qcow2',
                   '10M'],
                  ['qemu-io', '-c', 'write 0 64k', '-c', 'write -z 1M 128k',
                   '-c', 'write 5M 64k', '-c', 'write -P 3 9M 1M',
                   'q.qcow2'])
        self.map_same('q.qcow2')

    def test_qcow2_partly_written_cluster(self):
        """A cluster whose tail is a hole in the host file: reported as
        data, since the protocol layer is only consulted when the format
        driver asks for it (BDRV_BLOCK_RECURSE), as in QEMU."""
        self.both(['qemu-img', 'create', '-q', '-f', 'qcow2', 'q.qcow2',
                   '10M'],
                  ['qemu-io', '-c', 'write 5M 1k', '-c', 'write 9M 64k',
                   'q.qcow2'])
        self.assert_same(['qemu-img', 'map', '--output=json', 'q.qcow2'])

    def test_qcow2_empty(self):
        self.both(['qemu-img', 'create', '-q', '-f', 'qcow2', 'q.qcow2',
                   '1G'])
        self.map_same('q.qcow2')

    def test_backing_chain_depth(self):
        self.both(['qemu-img', 'create', '-q', '-f', 'qcow2', 'b.qcow2',
                   '10M'],
                  ['qemu-io', '-c', 'write 0 64k', '-c', 'write 5M 64k',
                   'b.qcow2'],
                  ['qemu-img', 'create', '-q', '-f', 'qcow2', '-b',
                   'b.qcow2', '-F', 'qcow2', 't.qcow2'],
                  ['qemu-io', '-c', 'write 64k 64k', '-c', 'write -z 5M 4k',
                   't.qcow2'])
        # The human table names the file that holds each extent.
        self.assert_same(['qemu-img', 'map', '--output=json', 't.qcow2'])
        ours = self.run_side('ours', ['qemu-img', 'map', 't.qcow2'])[1]
        real = self.run_side('real', ['qemu-img', 'map', 't.qcow2'])[1]
        norm = lambda t: t.replace('./', '')
        self.assertEqual(norm(ours), norm(real))

    def test_shorter_backing_file(self):
        self.both(['qemu-img', 'create', '-q', '-f', 'qcow2', 'b.qcow2',
                   '1M'],
                  ['qemu-io', '-c', 'write 0 64k', 'b.qcow2'],
                  ['qemu-img', 'create', '-q', '-f', 'qcow2', '-b',
                   'b.qcow2', '-F', 'qcow2', 't.qcow2', '4M'])
        self.assert_same(['qemu-img', 'map', '--output=json', 't.qcow2'])

    def test_range(self):
        self.both(['qemu-img', 'create', '-q', '-f', 'raw', 'r.img', '1M'],
                  ['qemu-io', '-f', 'raw', '-c', 'write 0 4k', '-c',
                   'write 64k 8k', 'r.img'])
        for args in (['--start-offset=4k'], ['--max-length=64k'],
                     ['--start-offset=4k', '--max-length=64k'],
                     ['--start-offset=1M'], ['--start-offset=2M']):
            with self.subTest(args=args):
                self.assert_same(['qemu-img', 'map', '--output=json', '-f',
                                  'raw'] + args + ['r.img'])

    def test_json_parses(self):
        self.both(['qemu-img', 'create', '-q', '-f', 'qcow2', 'q.qcow2',
                   '10M'],
                  ['qemu-io', '-c', 'write 0 64k', 'q.qcow2'])
        out = self.run_side('ours', ['qemu-img', 'map', '--output=json',
                                     'q.qcow2'])[1]
        extents = json.loads(out)
        self.assertEqual(sum(e['length'] for e in extents), 10 << 20)
        self.assertEqual(extents[0]['start'], 0)

    def test_errors(self):
        self.both(['qemu-img', 'create', '-q', '-f', 'raw', 'r.img', '1M'])
        for args in (['nonexist'], [], ['--output=yaml', 'r.img'],
                     ['--start-offset=1Q', 'r.img'], ['-f', 'foo', 'r.img'],
                     ['r.img', 'x']):
            with self.subTest(args=args):
                rc, _, _ = self.assert_same(['qemu-img', 'map'] + args)
                self.assertEqual(rc, 1)

    def test_our_qcow2_matches_our_data(self):
        self.qcow2_ok()
        p = self.checked(self.img('o.qcow2'))
        self.our_img('create', '-q', '-f', 'qcow2', p, '4M')
        self.our_io('-c', 'write -P 1 1M 64k', p)
        extents = json.loads(self.our_img('map', '--output=json', p))
        data = [e for e in extents if e['data']]
        self.assertEqual([(e['start'], e['length']) for e in data],
                         [(1 << 20, 64 << 10)])
        # The real qemu-img agrees about where the data lives.
        real = json.loads(self.real_img('map', '--output=json', p))
        self.assertEqual(extents, real)


if __name__ == '__main__':
    unittest.main()
