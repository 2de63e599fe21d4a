#!/usr/bin/python3
"""Migration between two of our storage daemons on one qcow2 image: 0, 1
and many bitmaps and checkpoints, with NBD writes going on until the
switch-over.  Afterwards the destination's bitmaps equal the source's
final ones (SHA-256), the checkpoints and their parent links are intact,
everything persists across a restart of the destination, the source
refuses writes and the destination accepts them; the real qemu-img check
is clean (registered images)."""

import unittest

from ckpt_util import Shadow, nbd_dirty
from harness import proc, requires_module
from migration_util import LIVE_DONE, MigrationCase, NODE, Writer
from bitmap_util import KiB, MiB

SIZE = 256 * MiB


@requires_module('nbd')
class TestMigrate(MigrationCase):

    def setUp(self):
        super().setUp()
        self.path = self.create('disk.qcow2', SIZE)
        self.sd, self.sq, self.ssock = self.source(self.path)
        self.dd, self.dq, self.dsock, self.uri = self.destination(self.path)
        self.caps(self.sq)
        self.caps(self.dq)
        self.export(self.sq, 'w', writable=True)

    def add_bitmap(self, name, **kw):
        args = {'node': NODE, 'name': name}
        args.update(kw)
        self.sq.cmd_ok('block-dirty-bitmap-add', args)

    def migrate_with_writes(self, shadow=None):
        """Migrate while a writer hammers the source (and a second client
        flushes and asks for block status); returns the offsets written
        (all before the switch-over)."""
        w = Writer(self.ssock, 'w', SIZE)
        w2 = Writer(self.ssock, 'w', SIZE, seed=8, flush=True)
        w.start()
        w2.start()
        w.wait_some(30)
        info = self.migrate(self.sq, self.uri)
        proc.wait_for(lambda: w.error is not None, timeout=60,
                      what='the source to refuse writes')
        w.stop()
        w2.stop()
        self.assertIsNotNone(w.error, 'the source accepted writes after '
                             'the switch-over')
        if shadow:
            for off in w.done:
                shadow.write(off, w.block)
        self.assertEqual(self.wait_final(self.dq)['status'], 'completed')
        return info, w.done

    def assert_same_bitmaps(self, final_src):
        got = self.bitmaps(self.dq)
        self.assertEqual(got, final_src)

    def assert_restart(self, expect):
        """Quit the destination; a fresh daemon sees the persistent
        bitmaps of `expect`."""
        self.quit(self.dd, self.dq)
        d, q, _ = self.restart(self.path)
        persistent = {n: v for n, v in expect.items() if v[2]}
        self.assertEqual(self.bitmaps(q), persistent)
        return d, q

    # -- 0, 1, many bitmaps ----------------------------------------------------

    def test_no_bitmaps(self):
        info, writes = self.migrate_with_writes()
        self.assertTrue(writes)
        self.assertGreater(info['ram']['transferred'], 0)
        self.assertIn('downtime', info)
        self.assertIn('total-time', info)
        self.assertEqual(self.bitmaps(self.dq), {})
        # The destination owns the image now.
        self.export(self.dq, 'w2', writable=True)
        self.assertTrue(self.can_write(self.dsock, 'w2'))
        self.assertFalse(self.can_write(self.ssock, 'w'))
        # The source has nothing left to hand over.
        self.assertEqual(self.qerror(self.sq, 'migrate', {'uri': self.uri}),
                         "Node 'disk' is inactive: its image belongs to "
                         "another daemon")

    def test_one_bitmap(self):
        self.add_bitmap('b0', persistent=True)
        self.migrate_with_writes()
        final = self.bitmaps(self.sq)
        self.assertGreater(final['b0'][3], 0)        # the writes are in
        self.assert_same_bitmaps(final)
        self.assertTrue(final['b0'][1])              # still recording
        self.assert_restart(final)

    def test_many_bitmaps(self):
        kinds = []
        for i in range(24):
            gran = [512, 4 * KiB, 64 * KiB, 1 * MiB, 2 * MiB][i % 5]
            kw = {'granularity': gran, 'persistent': i % 3 != 0,
                  'disabled': i % 4 == 1}
            self.add_bitmap('bm%02d' % i, **kw)
            kinds.append(kw)
        # Some contents in the disabled ones too.
        self.nbd_write(self.ssock, 'w', [(0, 1), (5 * MiB, 300 * KiB)])
        for i in range(0, 24, 4):
            self.sq.cmd_ok('block-dirty-bitmap-disable',
                           {'node': NODE, 'name': 'bm%02d' % i})
        before = self.bitmaps(self.sq)
        self.migrate_with_writes()
        final = self.bitmaps(self.sq)
        for name, v in final.items():
            if not v[1]:
                self.assertEqual(v, before[name], name)   # frozen: unchanged
        self.assert_same_bitmaps(final)
        self.assert_restart(final)

    def test_without_dirty_bitmaps_capability(self):
        """Without the capability nothing travels in the stream: the
        destination reads the persistent bitmaps from the image, which the
        source stored when it handed over; the others are gone."""
        self.caps(self.sq, dirty_bitmaps=False)
        self.add_bitmap('p', persistent=True)
        self.add_bitmap('t', persistent=False)
        self.migrate_with_writes()
        final = self.bitmaps(self.sq)
        got = self.bitmaps(self.dq)
        self.assertEqual(set(got), {'p'})
        self.assertEqual(got['p'], final['p'])

    # -- checkpoints ---------------------------------------------------------

    def checkpoint_run(self, count):
        m = Shadow(SIZE)
        for i in range(count):
            self.nbd_write(self.ssock, 'w', [(i * MiB, 64 * KiB)], m)
            self.add(self.sq, 'c%d' % i, m)
        self.migrate_with_writes(m)
        src = self.checkpoints(self.sq)
        self.assertEqual(self.checkpoints(self.dq), src)
        self.assert_same_bitmaps(self.bitmaps(self.sq))
        self.assertEqual([c[0] for c in src], m.names())
        # Every change set on the destination is what was written.
        self.assert_model(self.dq, m, self.dsock)
        d, q = self.assert_restart(self.bitmaps(self.sq))
        self.assertEqual(self.checkpoints(q), src)
        return m

    def test_zero_checkpoints(self):
        self.checkpoint_run(0)

    def test_one_checkpoint(self):
        self.checkpoint_run(1)

    def test_many_checkpoints(self):
        self.checkpoint_run(12)

    # -- the protocol as seen from QMP --------------------------------------

    def test_events_and_query(self):
        self.add_bitmap('b', persistent=True)
        self.sq.get_events()
        self.migrate_with_writes()
        self.assertEqual(self.events(self.sq),
                         ['setup', 'active', 'device', 'completed'])
        self.assertEqual(self.events(self.dq), ['active', 'completed'])
        info = self.sq.cmd_ok('query-migrate')
        ram = info['ram']
        self.assertEqual(ram['transferred'],
                         ram['precopy-bytes'] + ram['downtime-bytes'] + 16)
        self.assertGreater(ram['downtime-bytes'], 0)
        self.assertEqual(ram['remaining'], 0)
        dinfo = self.dq.cmd_ok('query-migrate')
        self.assertEqual(dinfo['ram']['transferred'], ram['transferred'])

    def test_destination_refuses_writes_until_completed(self):
        self.export(self.dq, 'dw', writable=True)
        self.assertFalse(self.can_write(self.dsock, 'dw'))
        r = self.dq.cmd('block-dirty-bitmap-add',
                        {'node': NODE, 'name': 'x', 'persistent': True})
        self.assertIn('error', r)
        self.migrate(self.sq, self.uri)
        self.wait_final(self.dq)
        self.assertTrue(self.can_write(self.dsock, 'dw'))

    def test_tcp(self):
        import socket
        s = socket.socket()
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
        s.close()
        dd, dq, _, uri = self.destination(
            self.create('other.qcow2', SIZE), incoming='tcp:127.0.0.1:%d'
            % port)
        self.caps(dq)
        sq = self.source(self.img('other.qcow2'))[1]
        self.caps(sq)
        sq.cmd_ok('block-dirty-bitmap-add', {'node': NODE, 'name': 'b',
                                             'persistent': True})
        self.migrate(sq, uri)
        self.assertEqual(self.wait_final(dq)['status'], 'completed')
        self.assertEqual(self.bitmaps(dq), self.bitmaps(sq))

    def test_defer_and_migrate_incoming(self):
        dd, dq, dsock, _ = self.destination(
            self.create('d2.qcow2', SIZE), incoming='defer')
        sq = self.source(self.img('d2.qcow2'))[1]
        self.caps(sq)
        self.caps(dq)
        self.assertEqual(dq.cmd_ok('query-migrate'), {})
        uri = 'unix:' + self.sock('defer.sock')
        dq.cmd_ok('migrate-incoming', {'uri': uri})
        self.assertEqual(dq.cmd_ok('query-migrate')['status'], 'setup')
        self.migrate(sq, uri)
        self.assertEqual(self.wait_final(dq)['status'], 'completed')

    def test_writes_after_the_live_phase(self):
        """Writes made after the live phase sent the recording bitmap
        reach the destination through the final re-send (the proxy holds
        the stream at LIVE_DONE while they happen)."""
        m = Shadow(SIZE)
        self.add(self.sq, 'c0', m)
        p, puri = self.proxy(self.uri, lambda t, n, pl, h:
                             'hold' if t == LIVE_DONE else None)
        self.sq.cmd_ok('migrate', {'uri': puri})
        p.wait_held()
        writes = [(3 * MiB, 4 * KiB), (100 * MiB + 7, 1), (SIZE - 512, 512)]
        self.nbd_write(self.ssock, 'w', writes, m)
        p.release()
        self.assertEqual(self.wait_final(self.sq)['status'], 'completed')
        self.wait_final(self.dq)
        self.assertEqual(self.bitmaps(self.dq), self.bitmaps(self.sq))
        self.export(self.dq, 'inc', checkpoints=['c0'])
        self.assertEqual(nbd_dirty(self.dsock, 'inc',
                                   'qemu:dirty-bitmap:c0'),
                         m.ranges('c0'))
        ram = self.sq.cmd_ok('query-migrate')['ram']
        self.assertGreater(ram['downtime-bytes'], 200)

    def test_dirty_extents_after(self):
        """The recording bitmap on the destination marks exactly what the
        writer wrote (NBD view of a checkpoint's change set)."""
        m = Shadow(SIZE)
        self.add(self.sq, 'c0', m)
        self.migrate_with_writes(m)
        self.export(self.dq, 'inc', checkpoints=['c0'])
        self.assertEqual(nbd_dirty(self.dsock, 'inc',
                                   'qemu:dirty-bitmap:c0'),
                         m.ranges('c0'))


if __name__ == '__main__':
    unittest.main()
