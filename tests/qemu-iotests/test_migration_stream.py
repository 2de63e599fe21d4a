#!/usr/bin/python3
"""The destination checks every field of the migration stream (docs/
interop/migration-stream.rst, "Rules for receivers"): sections rewritten
by a proxy with a correct CRC - bad ids, sizes, granularities, flags,
ranges, encodings, lengths, links, strings, types, sequence numbers -
each make both sides fail with an error naming the problem, the
destination discards, and the source resumes."""

import struct
import unittest

from harness import requires_module
from migration_util import (BITMAP, BITMAP_DATA, BITMAP_END, CHECKPOINT,
                            LIVE_DONE, MigrationCase, NODE, NODE_SEC,
                            section_crc)
from bitmap_util import MiB

SIZE = 64 * MiB


def section(header, payload, typ=None, flags=None, seq=None, length=None):
    """A section like `header` + `payload`, with fields replaced and the
    CRC made to match."""
    t, f, s, n, _ = struct.unpack('>HHIII', header)
    h12 = struct.pack('>HHII', t if typ is None else typ,
                      f if flags is None else flags,
                      s if seq is None else seq,
                      len(payload) if length is None else length)
    return h12 + struct.pack('>I', section_crc(h12, payload)), payload


def poke(payload, offset, fmt, value):
    b = bytearray(payload)
    struct.pack_into(fmt, b, offset, value)
    return bytes(b)


# (section type, which one, rewrite(header, payload), expected message)
CASES = [
    (NODE_SEC, 0, lambda h, p: section(h, poke(p, 0, '>I', 5)),
     'Invalid NODE section'),
    (NODE_SEC, 0, lambda h, p: section(h, poke(p, 4, '>Q', SIZE + 512)),
     "Bitmap 'c0' covers %d bytes but node 'disk' has %d"
     % (SIZE, SIZE + 512)),
    (NODE_SEC, 0, lambda h, p: section(h, poke(p, 13, '>H', 0)),
     'Malformed NODE section'),
    (BITMAP, 0, lambda h, p: section(h, poke(p, 4, '>I', 9)),
     'names unknown node 9'),
    (BITMAP, 0, lambda h, p: section(h, poke(p, 8, '>Q', 3)),
     'granularity 3'),
    (BITMAP, 0, lambda h, p: section(h, poke(p, 16, '>Q', SIZE * 2)),
     'covers %d bytes' % (SIZE * 2)),
    (BITMAP, 0, lambda h, p: section(h, poke(p, 24, '>I', 0x80)),
     'unknown flags 0x80'),
    (BITMAP_DATA, 0, lambda h, p: section(h, poke(p, 4, '>Q', 512)),
     'invalid range 512+'),
    (BITMAP_DATA, 0, lambda h, p: section(h, poke(p, 12, '>Q', 1 << 62)),
     'invalid range 0+%d' % (1 << 62)),
    (BITMAP_DATA, 0, lambda h, p: section(h, poke(p, 20, '>B', 7)),
     'with encoding 7'),
    (BITMAP_DATA, 0, lambda h, p: section(h, p[:-1]),
     'bytes of data with encoding 0'),
    (BITMAP_END, 0, lambda h, p: section(h, poke(p, 8, '>Q', 12345)),
     'does not match the source'),
    (BITMAP_END, 0, lambda h, p: section(h, poke(p, 0, '>I', 77)),
     'names unknown bitmap 77'),
    (CHECKPOINT, 1, lambda h, p: section(h, poke(p, 8, '>I', 0xffffffff)),
     'Invalid CHECKPOINT section'),
    (CHECKPOINT, 0, lambda h, p: section(h, poke(p, 32, '>B', 99)),
     'Invalid CHECKPOINT section'),
    (LIVE_DONE, 0, lambda h, p: section(h, b'\0'),
     'unexpected trailing bytes'),
    (LIVE_DONE, 0, lambda h, p: section(h, p, typ=99),
     'Unexpected unknown section (type 99)'),
    (LIVE_DONE, 0, lambda h, p: section(h, p, flags=1),
     'unknown flags 0x1'),
    (LIVE_DONE, 0, lambda h, p: section(h, p, seq=1000),
     'out of sequence: got 1000'),
    (LIVE_DONE, 0, lambda h, p: (section(h, p, length=3 * MiB)[0], b''),
     'claims 3145728 bytes of payload'),
]


@requires_module('nbd')
class TestStreamChecks(MigrationCase):

    def setUp(self):
        super().setUp()
        self.path = self.create('disk.qcow2', SIZE)
        self.sd, self.sq, self.ssock = self.source(self.path)
        self.caps(self.sq)
        self.export(self.sq, 'w', writable=True)
        self.add(self.sq, 'c0', granularity=512)
        self.nbd_write(self.ssock, 'w', [(0, MiB)])
        self.add(self.sq, 'c1', granularity=512)
        self.nbd_write(self.ssock, 'w', [(9 * MiB, 4096)])
        self.before = self.bitmaps(self.sq)

    def test_rewritten_sections(self):
        for typ, nth, rewrite, msg in CASES:
            with self.subTest(msg=msg):
                dd, dq, _, uri = self.destination(self.path)
                self.caps(dq)

                def act(t, n, pl, h, typ=typ, nth=nth, rewrite=rewrite):
                    if t == typ and n == nth:
                        return rewrite(h, pl)
                p, puri = self.proxy(uri, act)
                self.sq.cmd_ok('migrate', {'uri': puri})
                info = self.wait_final(self.sq)
                dinfo = self.wait_final(dq)
                self.assertEqual((info['status'], dinfo['status']),
                                 ('failed', 'failed'))
                self.assertIn(msg, dinfo['error-desc'])
                # The source normally relays the destination's reason; if
                # it was still writing when the destination hung up, it
                # reports the broken connection instead.
                if msg not in info['error-desc']:
                    self.assertRegex(info['error-desc'],
                                     'Broken pipe|Connection reset|closed')
                # The source serves, with its bitmaps as they were.
                self.assertEqual(self.bitmaps(self.sq), self.before)
                self.assertTrue(self.can_write(self.ssock, 'w', 60 * MiB))
                self.before = self.bitmaps(self.sq)
                p.close()
                dd.stop()
                self._daemons.remove(dd)


if __name__ == '__main__':
    unittest.main()
