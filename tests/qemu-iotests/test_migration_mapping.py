#!/usr/bin/python3
"""block-bitmap-mapping in a migration: nodes and bitmaps renamed on the
way, persistence transformed, unmapped bitmaps left behind, checkpoints
of a renamed node, and a destination whose mapping does not know what
arrives (both sides fail cleanly, the source resumes)."""

import unittest

from ckpt_util import Shadow
from harness import requires_module
from migration_util import MigrationCase, NODE
from bitmap_util import KiB, MiB

SIZE = 128 * MiB


def bmap(name, alias, persistent=None):
    b = {'name': name, 'alias': alias}
    if persistent is not None:
        b['transform'] = {'persistent': persistent}
    return b


@requires_module('nbd')
class TestMapping(MigrationCase):

    def setUp(self):
        super().setUp()
        self.path = self.create('disk.qcow2', SIZE)
        self.sd, self.sq, self.ssock = self.source(self.path)
        self.caps(self.sq)
        self.export(self.sq, 'w', writable=True)

    def add(self, q, name, shadow=None, node=NODE, **kw):
        if kw.pop('bitmap_only', False):
            args = {'node': node, 'name': name}
            args.update(kw)
            q.cmd_ok('block-dirty-bitmap-add', args)
        else:
            super().add(q, name, shadow, node=node, **kw)

    def dest(self, node, mapping):
        dd, dq, dsock, uri = self.destination(self.path, node=node)
        self.caps(dq)
        dq.cmd_ok('migrate-set-parameters',
                  {'block-bitmap-mapping': mapping})
        return dd, dq, dsock, uri

    def test_renames_and_transforms(self):
        for name, persistent in (('keep', True), ('mkp', False),
                                 ('mkt', True), ('skip', False)):
            self.add(self.sq, name, bitmap_only=True, persistent=persistent)
        self.nbd_write(self.ssock, 'w', [(0, 1 * MiB), (9 * MiB, 5)])
        src_map = [{'node-name': NODE, 'alias': 'n0', 'bitmaps': [
            bmap('keep', 'k'), bmap('mkp', 'p', persistent=True),
            bmap('mkt', 't', persistent=False)]}]
        dst_map = [{'node-name': 'target', 'alias': 'n0', 'bitmaps': [
            bmap('kept', 'k'), bmap('made-persistent', 'p'),
            bmap('made-transient', 't')]}]
        self.sq.cmd_ok('migrate-set-parameters',
                       {'block-bitmap-mapping': src_map})
        dd, dq, dsock, uri = self.dest('target', dst_map)
        self.migrate(self.sq, uri)
        self.assertEqual(self.wait_final(dq)['status'], 'completed')
        src = self.bitmaps(self.sq)
        got = self.bitmaps(dq, 'target')
        self.assertEqual(got['kept'], src['keep'])
        mp, mt = got['made-persistent'], got['made-transient']
        self.assertEqual((mp[0], mp[1], mp[3], mp[4]),
                         (src['mkp'][0], src['mkp'][1], src['mkp'][3],
                          src['mkp'][4]))
        self.assertTrue(mp[2])
        self.assertFalse(mt[2])
        self.assertEqual(mt[4], src['mkt'][4])
        # Not mapped: 'skip' stayed behind; the migrated bitmaps were
        # never stored under their old names (the source does not store
        # what migrates).
        self.assertEqual(set(got), {'kept', 'made-persistent',
                                    'made-transient'})
        # After a restart: what the destination made persistent.
        self.quit(dd, dq)
        q = self.restart(self.path, node='target')[1]
        after = self.bitmaps(q, 'target')
        self.assertEqual(set(after), {'kept', 'made-persistent'})
        self.assertEqual(after['kept'][4], src['keep'][4])
        self.assertEqual(after['made-persistent'][4], src['mkp'][4])

    def test_unmapped_node_stays(self):
        self.add(self.sq, 'b', bitmap_only=True, persistent=False)
        self.sq.cmd_ok('migrate-set-parameters', {'block-bitmap-mapping': []})
        dd, dq, dsock, uri = self.dest(NODE, [])
        self.migrate(self.sq, uri)
        self.wait_final(dq)
        self.assertEqual(self.bitmaps(dq), {})

    def test_checkpoints_of_renamed_node(self):
        m = Shadow(SIZE)
        for i in range(3):
            self.nbd_write(self.ssock, 'w', [(i * MiB, 64 * KiB)], m)
            self.add(self.sq, 'c%d' % i, m)
        names = [bmap('c%d' % i, 'c%d' % i) for i in range(3)]
        self.sq.cmd_ok('migrate-set-parameters', {'block-bitmap-mapping': [
            {'node-name': NODE, 'alias': 'the-disk', 'bitmaps': names}]})
        dd, dq, dsock, uri = self.dest('renamed', [
            {'node-name': 'renamed', 'alias': 'the-disk', 'bitmaps': names}])
        self.migrate(self.sq, uri)
        self.wait_final(dq)
        self.assertEqual(self.checkpoints(dq, 'renamed'),
                         self.checkpoints(self.sq))

    def test_checkpoint_bitmap_not_mapped(self):
        self.add(self.sq, 'c0')
        self.add(self.sq, 'c1')
        self.sq.cmd_ok('migrate-set-parameters', {'block-bitmap-mapping': [
            {'node-name': NODE, 'alias': 'd', 'bitmaps': [bmap('c1', 'c1')]}]})
        dd, dq, dsock, uri = self.dest(NODE, [])
        self.migrate(self.sq, uri, expect='failed')
        info = self.sq.cmd_ok('query-migrate')
        self.assertIn("Cannot migrate checkpoint 'c0' of node 'disk': its "
                      "bitmap 'c0' does not migrate", info['error-desc'])
        self.assertTrue(self.can_write(self.ssock, 'w'))

    def test_destination_does_not_know_alias(self):
        self.add(self.sq, 'b', bitmap_only=True, persistent=True)
        self.sq.cmd_ok('migrate-set-parameters', {'block-bitmap-mapping': [
            {'node-name': NODE, 'alias': 'n0', 'bitmaps': [bmap('b', 'x')]}]})
        for dst_map, msg in [
                ([], "Unknown node alias 'n0'"),
                ([{'node-name': NODE, 'alias': 'n0', 'bitmaps': []}],
                 "Unknown bitmap alias 'x' on node alias 'n0'")]:
            with self.subTest(msg=msg):
                dd, dq, dsock, uri = self.dest(NODE, dst_map)
                self.migrate(self.sq, uri, expect='failed')
                self.assertIn(msg, self.sq.cmd_ok('query-migrate')
                              ['error-desc'])
                self.assertIn(msg, self.wait_final(dq)['error-desc'])
                self.assertTrue(self.can_write(self.ssock, 'w'))
                dd.stop()


if __name__ == '__main__':
    unittest.main()
