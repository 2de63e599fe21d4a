#!/usr/bin/python3
"""Migration failures: the destination killed mid-stream or during the
hand-over, the stream corrupted (CRC, and a consistent but wrong bitmap
end), truncated, from another version, for a node the destination lacks
or of another size, and migrate_cancel during the transfer and during the
pause.  Each time both sides fail with a clear error; the source serves
I/O again with its bitmaps intact (a later migration carries them over
exactly); the destination keeps its nodes inactive and discards what it
received; the real qemu-img check is clean."""

import struct
import unittest

from ckpt_util import Shadow
from harness import requires_module
from migration_util import (ACTIVATED, BITMAP_DATA, BITMAP_END, COMPLETE,
                            LIVE_DONE, SWITCHOVER, MigrationCase, NODE,
                            flip_byte, refresh_crc)
from bitmap_util import KiB, MiB

SIZE = 512 * MiB


def forge(typ, header):
    """An empty section of `typ` in place of the one with `header`."""
    seq = struct.unpack('>I', header[4:8])[0]
    return refresh_crc(struct.pack('>HHII', typ, 0, seq, 0) + b'\0' * 4,
                       b''), b''


@requires_module('nbd')
class TestFaults(MigrationCase):

    def setUp(self):
        super().setUp()
        self.path = self.create('disk.qcow2', SIZE)
        self.sd, self.sq, self.ssock = self.source(self.path)
        self.caps(self.sq)
        self.export(self.sq, 'w', writable=True)
        self.m = Shadow(SIZE, gran=512)
        # A chain of checkpoints and a few plain bitmaps, with contents.
        for i in range(4):
            self.nbd_write(self.ssock, 'w', [(i * 8 * MiB, 192 * KiB)],
                           self.m)
            self.add(self.sq, 'c%d' % i, self.m, granularity=512)
        for name, gran in (('fine', 512), ('coarse', 1 * MiB)):
            self.sq.cmd_ok('block-dirty-bitmap-add',
                           {'node': NODE, 'name': name, 'granularity': gran,
                            'persistent': name == 'fine'})
        self.nbd_write(self.ssock, 'w', [(1 * MiB, 3 * MiB)], self.m)
        self.before = self.bitmaps(self.sq)
        self.dd, self.dq, self.dsock, self.uri = self.destination(self.path)
        self.caps(self.dq)

    # -- what must hold after every failure -----------------------------

    def assert_source_resumed(self, status='failed'):
        info = self.wait_final(self.sq)
        self.assertEqual(info['status'], status, info)
        # Serving again, and writes are recorded.
        self.nbd_write(self.ssock, 'w', [(200 * MiB, 4 * KiB)], self.m)
        now = self.bitmaps(self.sq)
        self.assertEqual(set(now), set(self.before))
        for name, v in now.items():
            if not v[1]:        # frozen bitmaps did not change
                self.assertEqual(v, self.before[name], name)
        self.assertEqual([c[0] for c in self.checkpoints(self.sq)],
                         self.m.names())
        self.assert_model(self.sq, self.m, self.ssock)
        return info

    def assert_destination_discarded(self):
        info = self.wait_final(self.dq)
        self.assertEqual(info['status'], 'failed', info)
        # Nodes still inactive: an export refuses writes.
        self.export(self.dq, 'dw', writable=True)
        self.assertFalse(self.can_write(self.dsock, 'dw'))
        self.dq.cmd_ok('block-export-del', {'id': 'dw', 'mode': 'hard'})
        return info

    def retry(self):
        """A new destination takes everything over exactly."""
        self.dd.stop()
        dd, dq, dsock, uri = self.destination(self.path)
        self.caps(dq)
        self.migrate(self.sq, uri)
        self.assertEqual(self.wait_final(dq)['status'], 'completed')
        self.assertEqual(self.bitmaps(dq), self.bitmaps(self.sq))
        self.assertEqual(self.checkpoints(dq), self.checkpoints(self.sq))
        self.assert_model(dq, self.m, dsock)

    def fail_with(self, act, src_error, dst_error=None, kill_dst=False,
                  status='failed'):
        p, puri = self.proxy(self.uri, act)
        self.sq.cmd_ok('migrate', {'uri': puri})
        if kill_dst:
            p.wait_held()
            self.dd.kill()
            p.close()
        info = self.assert_source_resumed(status)
        if src_error:
            self.assertIn(src_error, info['error-desc'])
        if dst_error:
            dinfo = self.assert_destination_discarded()
            self.assertIn(dst_error, dinfo['error-desc'])
        self.retry()

    # -- the destination dies ------------------------------------------------

    def test_destination_killed_mid_stream(self):
        self.fail_with(lambda t, n, pl, h: 'hold'
                       if t == BITMAP_DATA and n == 2 else None,
                       None, kill_dst=True)

    def test_destination_killed_during_handover(self):
        """The source already stored, flushed and inactivated; COMPLETE
        never arrives: it takes its images back."""
        self.fail_with(lambda t, n, pl, h: 'hold' if t == COMPLETE else None,
                       'No answer from the destination', kill_dst=True)

    def test_source_killed(self):
        """The source dies after the destination adopted the complete
        bitmaps: the destination drops them, stays inactive, and takes a
        later migration from a new source."""
        p, puri = self.proxy(self.uri, lambda t, n, pl, h: 'hold'
                             if t == SWITCHOVER else None)
        self.sq.cmd_ok('migrate', {'uri': puri})
        p.wait_held()
        self.assertIn('c0', self.bitmaps(self.dq))      # adopted, busy
        self.sd.kill()
        p.close()
        self.assert_destination_discarded()
        self.assertEqual({n: v for n, v in self.bitmaps(self.dq).items()
                          if n in self.before and v == self.before[n]}, {})
        # A new source (after the crash its recording bitmaps are in use,
        # hence inconsistent: remove them, as a user would).
        sd, sq, ssock = self.source(self.path)
        self.caps(sq)
        for name, v in self.bitmaps(sq).items():
            info = [b for n in sq.cmd_ok('query-named-block-nodes')
                    for b in n.get('dirty-bitmaps', [])
                    if b.get('name') == name]
            if info and info[0].get('inconsistent'):
                sq.cmd('block-checkpoint-remove', {'node': NODE,
                                                   'name': name})
                sq.cmd('block-dirty-bitmap-remove', {'node': NODE,
                                                     'name': name})
        uri = 'unix:' + self.sock('again.sock')
        self.dq.cmd_ok('migrate-incoming', {'uri': uri})
        self.migrate(sq, uri)
        self.assertEqual(self.wait_final(self.dq)['status'], 'completed')
        self.assertEqual(self.bitmaps(self.dq), self.bitmaps(sq))
        self.assertEqual(self.checkpoints(self.dq), self.checkpoints(sq))

    # -- the stream breaks ----------------------------------------------------

    def test_corrupt_live_section(self):
        def act(t, n, pl, h):
            if t == BITMAP_DATA and n == 1:
                return h, flip_byte(pl, 30)
        self.fail_with(act, 'checksum mismatch', 'checksum mismatch')

    def test_corrupt_final_bitmap_end(self):
        """A bitmap end whose CRC is right but whose SHA-256 does not
        match what arrived: caught by the end-to-end check, in the
        pause."""
        switched = []

        def act(t, n, pl, h):
            if t == SWITCHOVER:
                switched.append(True)
            if t == BITMAP_END and switched:
                pl = flip_byte(pl, -1)
                return refresh_crc(h, pl), pl
        self.fail_with(act, 'does not match the source',
                       'does not match the source')

    def test_truncated(self):
        self.fail_with(lambda t, n, pl, h: 'cut'
                       if t == BITMAP_DATA and n == 3 else None,
                       None, 'closed by the peer')

    def test_truncated_inside_a_section(self):
        self.fail_with(lambda t, n, pl, h: 'half'
                       if t == BITMAP_DATA and n == 2 else None,
                       None, 'ended unexpectedly in a section payload')

    def test_truncated_in_pause(self):
        self.fail_with(lambda t, n, pl, h: 'cut' if t == COMPLETE else None,
                       'No answer from the destination', 'closed by the peer')

    def test_other_version(self):
        def act(t, n, pl, h):
            if t == 'preamble':
                b = pl[:8] + struct.pack('>I', 2)
                import zlib
                return b + struct.pack('>I', zlib.crc32(b))
        self.fail_with(act, 'Unsupported migration stream version 2',
                       'Unsupported migration stream version 2')

    def test_wrong_section_order(self):
        """A COMPLETE before the switch-over is refused."""
        self.fail_with(lambda t, n, pl, h: forge(COMPLETE, h)
                       if t == LIVE_DONE else None,
                       'Unexpected COMPLETE section',
                       'Unexpected COMPLETE section')

    def test_reply_type_from_source(self):
        """An ACTIVATED section in the source's stream is refused."""
        self.fail_with(lambda t, n, pl, h: forge(ACTIVATED, h)
                       if t == LIVE_DONE else None,
                       'Unexpected ACTIVATED section',
                       'Unexpected ACTIVATED section')

    # -- mismatched destinations ------------------------------------------

    def test_destination_lacks_node(self):
        self.dd.stop()
        self.dd, self.dq, self.dsock, self.uri = self.destination(
            self.path, node='other')
        self.caps(self.dq)
        self.migrate(self.sq, self.uri, expect='failed')
        info = self.assert_source_resumed()
        self.assertIn("Cannot find node 'disk'", info['error-desc'])
        self.assertIn("Cannot find node 'disk'",
                      self.wait_final(self.dq)['error-desc'])
        self.retry()

    def test_destination_size_differs(self):
        other = self.create('other.qcow2', SIZE + MiB)
        self.dd.stop()
        self.dd, self.dq, self.dsock, self.uri = self.destination(other)
        self.caps(self.dq)
        self.migrate(self.sq, self.uri, expect='failed')
        info = self.assert_source_resumed()
        self.assertIn('bytes on the source but', info['error-desc'])
        self.retry()

    def test_destination_not_incoming(self):
        """A daemon started without --incoming refuses migrate-incoming;
        the source cannot connect and resumes."""
        self.dd.stop()
        d, q = self._qsd()
        uri = 'unix:' + self.sock('not-incoming.sock')
        r = q.cmd('migrate-incoming', {'uri': uri})
        self.assertEqual(r['error']['desc'],
                         "'-incoming' was not specified on the command line")
        self.sq.cmd_ok('migrate', {'uri': uri})
        info = self.assert_source_resumed()
        self.assertIn('Failed to connect', info['error-desc'])
        self.retry()

    # -- cancel -------------------------------------------------------------

    def test_cancel_during_transfer(self):
        p, puri = self.proxy(self.uri, lambda t, n, pl, h: 'hold'
                             if t == BITMAP_DATA and n == 1 else None)
        self.sq.get_events()
        self.sq.cmd_ok('migrate', {'uri': puri})
        p.wait_held()
        self.sq.cmd_ok('migrate_cancel')
        self.assert_source_resumed('cancelled')
        self.assertEqual(self.events(self.sq)[-2:],
                         ['cancelling', 'cancelled'])
        p.close()
        self.assert_destination_discarded()
        self.retry()

    def test_cancel_during_pause(self):
        """Cancelled after the source stored and inactivated its nodes,
        before the destination took over."""
        p, puri = self.proxy(self.uri, lambda t, n, pl, h: 'hold'
                             if t == COMPLETE else None)
        self.sq.cmd_ok('migrate', {'uri': puri})
        p.wait_held()
        self.assertEqual(self.sq.cmd_ok('query-migrate')['status'],
                         'device')
        self.sq.cmd_ok('migrate_cancel')
        self.assert_source_resumed('cancelled')
        p.close()
        self.assert_destination_discarded()
        self.retry()

    def test_cancel_without_migration(self):
        self.sq.cmd_ok('migrate_cancel')
        self.assertEqual(self.sq.cmd_ok('query-migrate'), {})


if __name__ == '__main__':
    unittest.main()
