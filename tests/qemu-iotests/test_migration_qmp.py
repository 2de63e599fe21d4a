#!/usr/bin/python3
"""The migration QMP commands of our storage daemon: capabilities and
parameters (block-bitmap-mapping validated with QEMU's rules and
messages), and every refusal of migrate, migrate-incoming and the
bitmap commands while a migration runs."""

import unittest

from harness import requires_module
from migration_util import BITMAP_DATA, MigrationCase, NODE
from bitmap_util import MiB

PREFIX = 'Invalid mapping given for block-bitmap-mapping: '


def node(name, alias, bitmaps=()):
    return {'node-name': name, 'alias': alias,
            'bitmaps': [{'name': b, 'alias': a} for b, a in bitmaps]}


@requires_module('nbd')
class TestQmp(MigrationCase):

    def setUp(self):
        super().setUp()
        self.path = self.create('disk.qcow2', 64 * MiB)
        self.d, self.q, self.nsock = self.source(self.path)

    def test_capabilities(self):
        caps = self.q.cmd_ok('query-migrate-capabilities')
        self.assertEqual(len(caps), 21)
        self.assertFalse(any(c['state'] for c in caps))
        self.caps(self.q)
        on = {c['capability'] for c in
              self.q.cmd_ok('query-migrate-capabilities') if c['state']}
        self.assertEqual(on, {'dirty-bitmaps', 'events'})
        # Switching off what we lack is fine, on is not; all or nothing.
        self.q.cmd_ok('migrate-set-capabilities', {'capabilities': [
            {'capability': 'xbzrle', 'state': False}]})
        self.assertEqual(self.qerror(self.q, 'migrate-set-capabilities', {
            'capabilities': [{'capability': 'events', 'state': False},
                             {'capability': 'postcopy-ram',
                              'state': True}]}),
            "Migration capability 'postcopy-ram' is not supported by this "
            "storage daemon")
        on = {c['capability'] for c in
              self.q.cmd_ok('query-migrate-capabilities') if c['state']}
        self.assertEqual(on, {'dirty-bitmaps', 'events'})
        r = self.q.cmd('migrate-set-capabilities', {'capabilities': [
            {'capability': 'nope', 'state': True}]})
        self.assertEqual(r['error']['class'], 'GenericError')

    def test_parameters(self):
        self.assertEqual(self.q.cmd_ok('query-migrate-parameters'),
                         {'max-bandwidth': 128 * MiB, 'downtime-limit': 300})
        mapping = [node('disk', 'a0', [('b0', 'x0')])]
        self.q.cmd_ok('migrate-set-parameters',
                      {'block-bitmap-mapping': mapping,
                       'max-bandwidth': 1000000})
        p = self.q.cmd_ok('query-migrate-parameters')
        self.assertEqual(p['block-bitmap-mapping'], mapping)
        self.assertEqual(p['max-bandwidth'], 1000000)
        # An empty mapping is a mapping (nothing migrates).
        self.q.cmd_ok('migrate-set-parameters', {'block-bitmap-mapping': []})
        self.assertEqual(
            self.q.cmd_ok('query-migrate-parameters')['block-bitmap-mapping'],
            [])

    def test_mapping_errors(self):
        long = 'a' * 256
        cases = [
            ([node('disk', '1st')],
             "The node alias '1st' is not well-formed"),
            ([node('disk', '')], "The node alias '' is not well-formed"),
            ([node('disk', 'a.b-c_d')], None),
            ([node('disk', long)],
             "The node alias '%s' is longer than 255 bytes" % long),
            ([node('n' * 32, 'a')],
             "The node name '%s' is longer than 31 bytes" % ('n' * 32)),
            ([node('disk', 'a'), node('disk', 'b')],
             "The node name 'disk' is mapped twice"),
            ([node('d1', 'a'), node('d2', 'a')],
             "The node alias 'a' is used twice"),
            ([node('disk', 'a', [('b', long)])],
             "The bitmap alias '%s' is longer than 255 bytes" % long),
            ([node('disk', 'a', [('b' * 1024, 'x')])],
             "The bitmap name '%s' is longer than 1023 bytes" % ('b' * 1024)),
            ([node('disk', 'a', [('b', 'x'), ('b', 'y')])],
             "The bitmap 'disk'/'b' is mapped twice"),
            ([node('disk', 'a', [('b', 'x'), ('c', 'x')])],
             "The bitmap alias 'a'/'x' is used twice"),
        ]
        for mapping, msg in cases:
            with self.subTest(msg=msg):
                r = self.q.cmd('migrate-set-parameters',
                               {'block-bitmap-mapping': mapping})
                if msg is None:
                    self.assertIn('return', r)
                else:
                    self.assertEqual(r['error']['desc'], PREFIX + msg)
        # A refused mapping changes nothing.
        self.assertEqual(
            self.q.cmd_ok('query-migrate-parameters')['block-bitmap-mapping'],
            [node('disk', 'a.b-c_d')])

    def test_migrate_refusals(self):
        for args, msg in [
                ({'uri': 'exec:cat'}, "Unsupported migration URI 'exec:cat'"),
                ({'uri': 'tcp:localhost'},
                 "Migration URI 'tcp:localhost' has no port"),
                ({'uri': 'tcp:h:99999'},
                 "Invalid port in migration URI 'tcp:h:99999'"),
                ({'uri': 'unix:'}, "Migration URI 'unix:' has no socket path"),
                ({'uri': 'unix:/x', 'blk': True},
                 'Block migration is not supported'),
                ({'uri': 'unix:/x', 'resume': True},
                 'Postcopy recovery is not supported')]:
            with self.subTest(args=args):
                self.assertEqual(
                    self.qerror(self.q, 'migrate', args).split('\n')[0], msg)
        self.assertEqual(self.q.cmd_ok('query-migrate'), {})

    def test_connect_failure(self):
        self.q.cmd_ok('migrate', {'uri': 'unix:' + self.sock('nobody')})
        info = self.wait_final(self.q)
        self.assertEqual(info['status'], 'failed')
        self.assertIn('Failed to connect', info['error-desc'])
        self.export(self.q, 'w', writable=True)
        self.assertTrue(self.can_write(self.nsock, 'w'))

    def test_refusals_while_running(self):
        self.caps(self.q)
        self.q.cmd_ok('block-dirty-bitmap-add', {'node': NODE, 'name': 'b',
                                                 'granularity': 512})
        dd, dq, _, uri = self.destination(self.path)
        self.caps(dq)
        self.assertEqual(self.qerror(dq, 'migrate', {'uri': 'unix:/x'}),
                         'Guest is waiting for an incoming migration')
        self.assertEqual(self.qerror(dq, 'migrate-incoming', {'uri': uri}),
                         'The incoming migration has already been started')
        p, puri = self.proxy(uri, lambda t, n, pl, h: 'hold'
                             if t == BITMAP_DATA else None)
        self.q.cmd_ok('migrate', {'uri': puri})
        p.wait_held()
        busy = "Bitmap 'b' is currently in use by another operation and " \
               "cannot be used"
        for cmd in ('block-dirty-bitmap-clear', 'block-dirty-bitmap-remove',
                    'block-dirty-bitmap-disable'):
            self.assertEqual(self.qerror(self.q, cmd,
                                         {'node': NODE, 'name': 'b'}), busy)
        running = "There's a migration process in progress"
        self.assertEqual(self.qerror(self.q, 'migrate', {'uri': puri}),
                         running)
        self.assertEqual(self.qerror(self.q, 'migrate-set-capabilities',
                                     {'capabilities': []}), running)
        self.assertEqual(self.qerror(self.q, 'migrate-set-parameters',
                                     {'block-bitmap-mapping': []}),
                         running)
        self.assertEqual(self.q.cmd_ok('query-migrate')['status'], 'active')
        p.release()
        self.assertEqual(self.wait_final(self.q)['status'], 'completed')
        # Inactive now: the bitmaps are read-only, nothing may be stored.
        self.assertIn('error', self.q.cmd('block-dirty-bitmap-add', {
            'node': NODE, 'name': 'new', 'persistent': True}))
        self.assertIn('error', self.q.cmd('block-dirty-bitmap-clear', {
            'node': NODE, 'name': 'b'}))

    def test_bitmap_added_during_migration(self):
        """A bitmap that appears while the bitmaps are on the way would be
        left behind: the migration fails at the pause, the source
        resumes."""
        self.caps(self.q)
        self.q.cmd_ok('block-dirty-bitmap-add', {'node': NODE, 'name': 'b'})
        dd, dq, _, uri = self.destination(self.path)
        self.caps(dq)
        p, puri = self.proxy(uri, lambda t, n, pl, h: 'hold'
                             if t == BITMAP_DATA else None)
        self.q.cmd_ok('migrate', {'uri': puri})
        p.wait_held()
        self.q.cmd_ok('block-dirty-bitmap-add', {'node': NODE, 'name': 'new'})
        p.release()
        info = self.wait_final(self.q)
        self.assertEqual(info['status'], 'failed')
        self.assertIn("Bitmap 'new' of node 'disk' was added during the "
                      "migration", info['error-desc'])
        self.export(self.q, 'w', writable=True)
        self.assertTrue(self.can_write(self.nsock, 'w'))
        self.assertEqual(self.wait_final(dq)['status'], 'failed')


    def test_checkpoint_during_migration(self):
        """Checkpoint operations are refused while the bitmaps are on the
        way (their bitmaps are busy); the migration completes."""
        self.caps(self.q)
        self.add(self.q, 'c0')
        dd, dq, _, uri = self.destination(self.path)
        self.caps(dq)
        p, puri = self.proxy(uri, lambda t, n, pl, h: 'hold'
                             if t == BITMAP_DATA else None)
        self.q.cmd_ok('migrate', {'uri': puri})
        p.wait_held()
        self.assertIn('error', self.q.cmd('block-checkpoint-add',
                                          {'node': NODE, 'name': 'c1'}))
        self.assertIn('error', self.q.cmd('block-checkpoint-remove',
                                          {'node': NODE, 'name': 'c0'}))
        p.release()
        self.assertEqual(self.wait_final(self.q)['status'], 'completed')
        self.assertEqual(self.wait_final(dq)['status'], 'completed')
        self.assertEqual(self.checkpoints(dq), self.checkpoints(self.q))

if __name__ == '__main__':
    unittest.main()
