#!/usr/bin/python3
"""Corrupt and truncated checkpoint tables: every kind of damage the
reader checks gives a clear error naming the problem, never hides the
disk data (the image opens, reads and converts as before, the bitmaps
stay usable as plain bitmaps), and `qemu-img check` counts it as a
corruption that -r all removes; the daemon reports it per node and
refuses checkpoint commands with the same message."""

import json
import struct
import unittest
import zlib

from ckpt_util import (AUTOCLEAR_CKPT, EXT_CKPT, CheckpointCase, KiB, MiB,
                       autoclear, read_table, table_encode, write_raw_table)
from harness import qcow2, requires_module

SIZE = 16 * MiB


def entries3():
    def e(name, parent, flags=0, **kw):
        d = dict(name=name, bitmap=name, parent_index=parent, sec=1000,
                 nsec=5, gbits=16, flags=flags, damage=0)
        d.update(kw)
        return d
    return [e('c1', 0xffffffff), e('c2', 0), e('c3', 1, flags=1)]


WORDS = {
    'crc': 'checksum mismatch',
    'truncated': 'does not match its extension length',
    'tiny': 'too short',
    'version': 'version 2',
    'cycle': 'cycle',
    'two-roots': 'two chains',
    'duplicate': "same name 'c1'",
    'recording': 'entry 0: the recording flag',
    'damage-code': 'entry 1: unknown damage code 9',
    'parent-range': 'entry 1: parent index 7 out of range',
    'granularity': 'entry 2: granularity bits 40',
}


def variant(kind):
    """Bytes of a broken table of kind `kind` (see WORDS)."""
    good = table_encode(entries3())
    if kind == 'crc':
        b = bytearray(good)
        b[16 + 24] ^= 0x01          # a name byte; CRC left as it was
        return bytes(b)
    if kind == 'truncated':
        return good[:56]
    if kind == 'tiny':
        return good[:8]
    if kind == 'version':
        return struct.pack('>H', 2) + good[2:]
    e = entries3()
    if kind == 'cycle':
        e[0]['parent_index'] = 2
    elif kind == 'two-roots':
        e[1]['parent_index'] = 0xffffffff
    elif kind == 'duplicate':
        e[2]['name'] = e[2]['bitmap'] = 'c1'
    elif kind == 'recording':
        e[0]['flags'] = 1
    elif kind == 'damage-code':
        e[1]['damage'] = 9
    elif kind == 'parent-range':
        e[1]['parent_index'] = 7
    elif kind == 'granularity':
        e[2]['gbits'] = 40
    return table_encode(e)


KINDS = sorted(WORDS)


class TestCorruptTable(CheckpointCase):

    def setUp(self):
        super().setUp()
        # Not registered for the final check: corrupted on purpose.
        self.path = self.create('img.qcow2', SIZE, check=False)
        for n in ('c1', 'c2', 'c3'):
            self.ours_ok('checkpoint', '-c', n, self.path)
            self.io('real', self.path, 'write -P %d %d 64k'
                    % (len(n) + 10, int(n[1]) * MiB))
        self.pristine = self.img('pristine.raw')
        self.real_ok('convert', '-O', 'raw', self.path, self.pristine)

    def corrupt(self, kind):
        write_raw_table(self.path, variant(kind))

    def check_data_intact(self):
        self.real_ok('compare', '-f', 'qcow2', '-F', 'raw', self.path,
                     self.pristine)
        out = self.img('ours.raw')
        self.ours_ok('convert', '-O', 'raw', self.path, out)
        with open(out, 'rb') as a, open(self.pristine, 'rb') as b:
            self.assertTrue(a.read() == b.read(), 'our convert differs')

    def test_every_kind(self):
        img = self.ours('qemu-img')
        for kind in KINDS:
            with self.subTest(kind=kind):
                self.setUp()
                self.corrupt(kind)
                info = json.loads(self.ours_ok('info', '--output=json',
                                               self.path))
                msg = info['format-specific']['data']['checkpoints-error']
                self.assertTrue(msg.startswith('Checkpoint table is '
                                               'unusable: '), msg)
                self.assertIn(WORDS[kind], msg)
                self.check_data_intact()
                out, err = self.run_fail([img, 'checkpoint', '-l', '-U',
                                          self.path], rc=1)
                self.assertIn(msg, err)
                self.assertIn('qemu-img check -r all', err)
                # The bitmaps are plain bitmaps now: listed without owner.
                listed = self.our_list(self.path)
                self.assertEqual([b['name'] for b in listed],
                                 ['c1', 'c2', 'c3'])
                self.assertTrue(all('checkpoint' not in b for b in listed))
                # QEMU never looks at the table.
                self.real_ok('check', self.path)
                rc, out, err = self.run_cmd([img, 'check', self.path])
                self.assertEqual(rc, 2, err)
                self.assertIn('ERROR ' + msg, err)

    def test_check_repair_removes_table(self):
        img = self.ours('qemu-img')
        self.corrupt('cycle')
        rc, out, err = self.run_cmd([img, 'check', '-r', 'all', self.path])
        self.assertEqual(rc, 0, err)
        self.assertIn('Repairing checkpoint table: removed it', err)
        self.assertIsNone(qcow2.Image(self.path).extension(EXT_CKPT))
        self.assertFalse(autoclear(self.path) & AUTOCLEAR_CKPT)
        self.assertEqual(self.ckpt_list(self.path), [])
        self.assertEqual([b['name'] for b in self.our_list(self.path)],
                         ['c1', 'c2', 'c3'])
        self.check_data_intact()
        self.real_ok('check', self.path)
        # Plain bitmaps again: they can be removed, and a new chain made.
        self.ours_ok('bitmap', '--remove', self.path, 'c1')
        self.ours_ok('checkpoint', '-c', 'n1', self.path)
        self.assertEqual([c['name'] for c in self.ckpt_list(self.path)],
                         ['n1'])

    def test_valid_crafted_table_is_accepted(self):
        """The Python encoder agrees with ours: a re-encoded copy of the
        table reads back the same."""
        before = self.ckpt_list(self.path)
        write_raw_table(self.path, table_encode(read_table(self.path)))
        self.assertEqual(self.ckpt_list(self.path), before)
        data = qcow2.Image(self.path).extension(EXT_CKPT).data
        self.assertEqual(struct.unpack('>I', data[12:16])[0],
                         zlib.crc32(data[:12] + b'\0' * 4 + data[16:]))

    @requires_module('nbd')
    def test_daemon(self):
        self.corrupt('crc')
        d, q, sock = self.daemon(self.path)
        r = q.cmd_ok('query-block-checkpoints')
        self.assertEqual(len(r), 1)
        self.assertEqual(r[0]['checkpoints'], [])
        msg = r[0]['error']
        self.assertIn('checksum mismatch', msg)
        for cmd, args in [('block-checkpoint-add', {'name': 'x'}),
                          ('block-checkpoint-remove', {'name': 'c1'})]:
            args['node'] = 'disk'
            self.assertIn(msg, self.qerror(q, cmd, args))
        self.assertIn(msg, self.qerror(q, 'block-export-add', {
            'type': 'nbd', 'id': 'x', 'node-name': 'disk',
            'checkpoints': ['c1']}))
        # The data and the plain bitmaps are served.
        self.export(q, 'e', bitmaps=['c1'])
        from ckpt_util import nbd_connect
        h = nbd_connect(sock, 'e')
        self.assertEqual(h.pread(64 * KiB, 1 * MiB),
                         bytes([len('c1') + 10]) * 64 * KiB)
        h.shutdown()
        self.quit(d, q)
        # Left as it was: a daemon never drops a table by itself.
        self.assertEqual(qcow2.Image(self.path).extension(EXT_CKPT).data,
                         variant('crc'))


if __name__ == '__main__':
    unittest.main()
