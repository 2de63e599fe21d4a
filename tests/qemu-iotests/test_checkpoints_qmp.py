#!/usr/bin/python3
"""Checkpoints in our qemu-storage-daemon: block-checkpoint-add/remove,
query-block-checkpoints, the transaction actions, the guard on checkpoint
bitmaps, and every rule of docs/interop/qcow2-checkpoints.rst checked
against a shadow model (which writes each change set must hold) through
NBD exports with "checkpoints"."""

import random
import unittest

from ckpt_util import (CheckpointCase, KiB, MiB, NODE, Shadow, blockdev,
                       nbd_dirty, nbd_list_contexts)
from harness import requires_module

SIZE = 64 * MiB


@requires_module('nbd')
class TestBasics(CheckpointCase):

    def setUp(self):
        super().setUp()
        self.path = self.create('img.qcow2', SIZE)
        self.d, self.q, self.sock = self.daemon(self.path)
        self.export(self.q, 'w', writable=True)
        self.m = Shadow(SIZE)

    def w(self, *writes):
        self.nbd_write(self.sock, 'w', list(writes), self.m)

    def bitmaps(self):
        for n in self.q.cmd_ok('query-named-block-nodes'):
            if n['node-name'] == NODE:
                return {b['name']: b for b in n.get('dirty-bitmaps', [])}
        raise AssertionError('no node')

    def test_add_query_remove_links(self):
        self.w((0, 4 * KiB))                    # before any checkpoint
        self.add(self.q, 'c1', self.m)
        self.w((1 * MiB, 4 * KiB), (3 * MiB + 5, 100))
        self.add(self.q, 'c2', self.m)
        self.w((5 * MiB, 70 * KiB))
        self.add(self.q, 'c3', self.m)
        self.w((1 * MiB, 1))
        cps = self.query(self.q)
        self.assertEqual([(c['name'], c.get('parent'), c['recording'])
                          for c in cps],
                         [('c1', None, False), ('c2', 'c1', False),
                          ('c3', 'c2', True)])
        for c in cps:
            self.assertTrue(c['usable'])
            self.assertEqual(c['bitmap'], c['name'])
            self.assertEqual(c['granularity'], 64 * KiB)
            self.assertEqual(c['changed-bytes'],
                             self.m.changed_bytes(c['name']))
            self.assertNotIn('reason', c)
        # Only the newest checkpoint's bitmap records.
        bms = self.bitmaps()
        self.assertEqual({n: b['recording'] for n, b in bms.items()},
                         {'c1': False, 'c2': False, 'c3': True})
        self.assertTrue(all(b['persistent'] for b in bms.values()))
        self.assert_model(self.q, self.m, self.sock)

        # Middle: its writes go to c1, c3 now follows c1.
        self.remove(self.q, 'c2', self.m)
        cps = self.query(self.q)
        self.assertEqual([(c['name'], c.get('parent')) for c in cps],
                         [('c1', None), ('c3', 'c1')])
        self.assert_model(self.q, self.m, self.sock)
        # Newest: c1 records again, and nothing is lost.
        self.remove(self.q, 'c3', self.m)
        self.w((7 * MiB, 4 * KiB))
        cps = self.query(self.q)
        self.assertEqual([(c['name'], c['recording']) for c in cps],
                         [('c1', True)])
        self.assertEqual(self.bitmaps()['c1']['recording'], True)
        self.assertNotIn('c3', self.bitmaps())
        self.assert_model(self.q, self.m, self.sock)
        self.remove(self.q, 'c1', self.m)
        self.assertEqual(self.query(self.q), [])
        self.assertEqual(self.bitmaps(), {})

    def test_remove_oldest(self):
        self.add(self.q, 'c1', self.m)
        self.w((0, 64 * KiB))
        self.add(self.q, 'c2', self.m)
        self.w((2 * MiB, 64 * KiB))
        self.remove(self.q, 'c1', self.m)
        cps = self.query(self.q)
        self.assertEqual([(c['name'], c.get('parent')) for c in cps],
                         [('c2', None)])
        self.assertEqual(cps[0]['changed-bytes'], 64 * KiB)
        self.assert_model(self.q, self.m, self.sock)

    def test_custom_bitmap_and_granularity(self):
        self.add(self.q, 'c1', bitmap='bm-one', granularity=4096)
        self.w((100, 10))
        c = self.query(self.q)[0]
        self.assertEqual((c['bitmap'], c['granularity'], c['changed-bytes']),
                         ('bm-one', 4096, 4096))
        self.assertEqual(self.bitmaps()['bm-one']['granularity'], 4096)
        # A later checkpoint with another granularity: unions are exact at
        # the finest one.
        self.add(self.q, 'c2', granularity=512)
        self.w((1 * MiB, 1))
        self.assertEqual(self.since_export(self.q, self.sock, 'c1'),
                         [(0, 4096), (1 * MiB, 512)])
        self.assertEqual(self.query(self.q)[0]['changed-bytes'], 4096 + 512)

    def test_errors(self):
        q = self.q
        self.add(q, 'c1')
        q.cmd_ok('block-dirty-bitmap-add', {'node': NODE, 'name': 'plain',
                                            'persistent': True})
        cases = [
            ({'node': 'nope', 'name': 'x'}, "nope"),
            ({'node': NODE, 'name': 'c1'}, "Checkpoint 'c1' already exists"),
            ({'node': NODE, 'name': 'plain'},
             "Bitmap 'plain' already exists"),
            ({'node': NODE, 'name': 'x', 'bitmap': 'c1'},
             "already belongs to checkpoint 'c1'"),
            ({'node': NODE, 'name': 'x', 'granularity': 1000}, 'power of 2'),
            ({'node': NODE, 'name': 'x', 'granularity': 256}, 'power of 2'),
            ({'node': NODE, 'name': ''}, 'name'),
            ({'node': NODE, 'name': 'n' * 1024}, '1023'),
        ]
        for args, want in cases:
            with self.subTest(args=args):
                self.assertIn(want, self.qerror(q, 'block-checkpoint-add',
                                                args))
        self.assertIn("Checkpoint 'zz' not found",
                      self.qerror(q, 'block-checkpoint-remove',
                                  {'node': NODE, 'name': 'zz'}))
        # Nothing of that changed the chain.
        self.assertEqual([c['name'] for c in self.query(q)], ['c1'])
        self.assertEqual(sorted(self.bitmaps()), ['c1', 'plain'])

    def test_other_nodes(self):
        raw = self.img('r.raw')
        self.run_ok([self.real('qemu-img'), 'create', '-q', '-f', 'raw',
                     raw, '1M'])
        self.q.cmd_ok('blockdev-add', {'driver': 'raw', 'node-name': 'r',
                                       'file': {'driver': 'file',
                                                'filename': raw}})
        err = self.qerror(self.q, 'block-checkpoint-add',
                          {'node': 'r', 'name': 'c'})
        self.assertIn('does not support checkpoints', err)
        self.assertIn('does not support checkpoints',
                      self.qerror(self.q, 'query-block-checkpoints',
                                  {'node': 'r'}))
        ro = self.create('ro.qcow2', SIZE)
        self.q.cmd_ok('blockdev-add', blockdev(ro, 'ro', read_only=True))
        self.assertIn('read-only', self.qerror(
            self.q, 'block-checkpoint-add', {'node': 'ro', 'name': 'c'}))
        self.add(self.q, 'c1')
        # Without a node: every node that supports checkpoints.
        r = self.q.cmd_ok('query-block-checkpoints')
        nodes = {e['node']: [c['name'] for c in e['checkpoints']] for e in r}
        self.assertEqual(nodes.get(NODE), ['c1'])
        self.assertEqual(nodes.get('ro'), [])
        self.assertNotIn('r', nodes)

    def test_bitmap_commands_refused(self):
        q = self.q
        self.add(q, 'c1')
        self.w((0, 4 * KiB))
        self.add(q, 'c2')
        q.cmd_ok('block-dirty-bitmap-add', {'node': NODE, 'name': 'plain'})
        for name in ('c1', 'c2'):
            for cmd, args in [
                    ('block-dirty-bitmap-remove', {'name': name}),
                    ('block-dirty-bitmap-clear', {'name': name}),
                    ('block-dirty-bitmap-enable', {'name': name}),
                    ('block-dirty-bitmap-disable', {'name': name}),
                    ('block-dirty-bitmap-merge',
                     {'target': name, 'bitmaps': ['plain']})]:
                args = dict(args, node=NODE)
                with self.subTest(cmd=cmd, name=name):
                    err = self.qerror(q, cmd, args)
                    self.assertIn('belongs to checkpoint', err)
                    self.assertIn('block-checkpoint-remove', err)
        err = self.qerror(q, 'transaction', {'actions': [
            {'type': 'block-dirty-bitmap-remove',
             'data': {'node': NODE, 'name': 'c1'}}]})
        self.assertIn('block-checkpoint-remove', err)
        err = self.qerror(q, 'block-export-add', {
            'type': 'nbd', 'id': 'x', 'node-name': NODE, 'bitmaps': ['c1']})
        self.assertIn('belongs to checkpoint', err)
        # Reading one into a plain bitmap is fine.
        q.cmd_ok('block-dirty-bitmap-merge', {'node': NODE, 'target': 'plain',
                                              'bitmaps': ['c1']})
        self.assertEqual(self.bitmaps()['plain']['count'], 64 * KiB)
        self.assertEqual([c['name'] for c in self.query(q)], ['c1', 'c2'])
        self.assertEqual(self.bitmaps()['c1']['count'], 64 * KiB)

    def test_random_against_model(self):
        rnd = random.Random(7)
        n = 0
        for step in range(60):
            r = rnd.random()
            names = self.m.names()
            if r < 0.5:
                writes = []
                for _ in range(rnd.randrange(1, 4)):
                    length = rnd.randrange(1, 300 * KiB)
                    writes.append((rnd.randrange(0, SIZE - length), length))
                self.w(*writes)
            elif r < 0.75 or not names:
                n += 1
                self.add(self.q, 'k%d' % n, self.m)
            else:
                self.remove(self.q, rnd.choice(names), self.m)
            if step % 15 == 14:
                cps = self.query(self.q)
                want = self.m.names()
                self.assertEqual([c['name'] for c in cps], want)
                self.assertEqual([c.get('parent') for c in cps],
                                 [None] + want[:-1])
                for c in cps:
                    self.assertEqual(c['changed-bytes'],
                                     self.m.changed_bytes(c['name']))
        self.assert_model(self.q, self.m, self.sock)


@requires_module('nbd')
class TestTransactions(CheckpointCase):

    def setUp(self):
        super().setUp()
        self.path = self.create('img.qcow2', SIZE)
        self.d, self.q, self.sock = self.daemon(self.path)
        self.export(self.q, 'w', writable=True)
        self.m = Shadow(SIZE)

    def act(self, kind, **data):
        data.setdefault('node', NODE)
        return {'type': kind, 'data': data}

    def test_add_on_two_nodes(self):
        other = self.create('b.qcow2', SIZE)
        self.q.cmd_ok('blockdev-add', blockdev(other, 'disk2'))
        self.q.cmd_ok('transaction', {'actions': [
            self.act('block-checkpoint-add', name='c1'),
            self.act('block-checkpoint-add', node='disk2', name='c1',
                     granularity=4096)]})
        self.assertEqual([c['name'] for c in self.query(self.q)], ['c1'])
        self.assertEqual([(c['name'], c['granularity'])
                          for c in self.query(self.q, 'disk2')],
                         [('c1', 4096)])

    def test_failed_transaction_undoes_add(self):
        self.add(self.q, 'c1', self.m)
        self.nbd_write(self.sock, 'w', [(0, 8 * KiB), (9 * MiB, 1)], self.m)
        err = self.qerror(self.q, 'transaction', {'actions': [
            self.act('block-checkpoint-add', name='c2'),
            self.act('block-dirty-bitmap-add', name='x', granularity=3)]})
        self.assertIn('Action 2', err)
        cps = self.query(self.q)
        self.assertEqual([(c['name'], c['recording']) for c in cps],
                         [('c1', True)])
        self.nbd_write(self.sock, 'w', [(20 * MiB, 1)], self.m)
        self.assert_model(self.q, self.m, self.sock)

    def test_remove_and_add(self):
        for name in ('c1', 'c2'):
            self.add(self.q, name, self.m)
            self.nbd_write(self.sock, 'w', [(len(name) * MiB, 4 * KiB)],
                           self.m)
        self.q.cmd_ok('transaction', {'actions': [
            self.act('block-checkpoint-add', name='c3'),
            self.act('block-checkpoint-remove', name='c1')]})
        self.m.add('c3')
        self.m.remove('c1')
        self.assertEqual([(c['name'], c.get('parent'))
                          for c in self.query(self.q)],
                         [('c2', None), ('c3', 'c2')])
        self.assert_model(self.q, self.m, self.sock)

    def test_third_action_fails_undoes_two_adds(self):
        """Robustness item 43: checkpoint adds on two disks, then an
        invalid third action: both adds are rolled back and the checkpoints
        and bitmaps of both nodes read back exactly as before."""
        other = self.create('b.qcow2', SIZE)
        self.q.cmd_ok('blockdev-add', blockdev(other, 'disk2'))
        self.add(self.q, 'c1', self.m)
        self.q.cmd_ok('block-checkpoint-add', {'node': 'disk2',
                                               'name': 'c1'})
        self.nbd_write(self.sock, 'w', [(0, 8 * KiB)], self.m)

        def snapshot():
            nodes = {n['node-name']: n.get('dirty-bitmaps', [])
                     for n in self.q.cmd_ok('query-named-block-nodes')}
            return (self.query(self.q), self.query(self.q, 'disk2'),
                    nodes.get(NODE), nodes.get('disk2'))

        before = snapshot()
        for third in (self.act('block-dirty-bitmap-add', name='x',
                               granularity=3),
                      self.act('block-checkpoint-remove', name='nope'),
                      self.act('block-checkpoint-add', node='nonode',
                               name='c2')):
            with self.subTest(third=third):
                err = self.qerror(self.q, 'transaction', {'actions': [
                    self.act('block-checkpoint-add', name='c2'),
                    self.act('block-checkpoint-add', node='disk2',
                             name='c2'),
                    third]})
                self.assertIn('Action 3', err)
                self.assertEqual(snapshot(), before)
        # The surviving chain still records as before.
        self.nbd_write(self.sock, 'w', [(20 * MiB, 1)], self.m)
        self.assert_model(self.q, self.m, self.sock)

    def test_failed_transaction_keeps_checkpoint(self):
        self.add(self.q, 'c1', self.m)
        self.add(self.q, 'c2', self.m)
        err = self.qerror(self.q, 'transaction', {'actions': [
            self.act('block-checkpoint-remove', name='c1'),
            self.act('block-checkpoint-remove', name='nope')]})
        self.assertIn("Checkpoint 'nope' not found", err)
        err = self.qerror(self.q, 'transaction', {'actions': [
            self.act('block-checkpoint-remove', name='c1'),
            self.act('block-checkpoint-remove', name='c1')]})
        self.assertIn('twice', err)
        self.assertEqual([c['name'] for c in self.query(self.q)],
                         ['c1', 'c2'])
        # Adjacent checkpoints in one transaction.
        self.add(self.q, 'c3', self.m)
        self.q.cmd_ok('transaction', {'actions': [
            self.act('block-checkpoint-remove', name='c2'),
            self.act('block-checkpoint-remove', name='c3')]})
        self.assertEqual([(c['name'], c['recording'])
                          for c in self.query(self.q)], [('c1', True)])


@requires_module('nbd')
class TestExport(CheckpointCase):

    def setUp(self):
        super().setUp()
        self.path = self.create('img.qcow2', SIZE)
        self.d, self.q, self.sock = self.daemon(self.path)
        self.export(self.q, 'w', writable=True)
        self.m = Shadow(SIZE)
        for i, writes in enumerate([[(0, 4 * KiB)],
                                    [(2 * MiB, 100 * KiB), (9 * MiB, 1)],
                                    [(30 * MiB, 64 * KiB)]]):
            self.add(self.q, 'c%d' % (i + 1), self.m)
            self.nbd_write(self.sock, 'w', writes, self.m)

    def test_since_and_ranges(self):
        self.export(self.q, 'b', checkpoints=[
            'c1', {'from': 'c1', 'to': 'c2'},
            {'from': 'c2', 'to': 'c3', 'name': 'mid'}, 'c3',
            {'from': 'c2', 'to': 'c2'}])
        pre = 'qemu:dirty-bitmap:'
        self.assertEqual(nbd_list_contexts(self.sock, 'b', pre),
                         sorted(pre + n for n in
                                ['c1', 'c1..c2', 'mid', 'c3', 'c2..c2']))
        self.assertEqual(nbd_dirty(self.sock, 'b', pre + 'c1'),
                         self.m.ranges('c1'))
        self.assertEqual(nbd_dirty(self.sock, 'b', pre + 'c1..c2'),
                         self.m.ranges('c1', 'c2'))
        self.assertEqual(nbd_dirty(self.sock, 'b', pre + 'mid'),
                         self.m.ranges('c2', 'c3'))
        self.assertEqual(nbd_dirty(self.sock, 'b', pre + 'c3'),
                         self.m.ranges('c3'))
        self.assertEqual(nbd_dirty(self.sock, 'b', pre + 'c2..c2'), [])

    def test_fixed_at_export_start(self):
        before = self.m.ranges('c2')
        self.export(self.q, 'b', checkpoints=['c2'])
        self.nbd_write(self.sock, 'w', [(50 * MiB, 4 * KiB)], self.m)
        self.remove(self.q, 'c2', self.m)
        pre = 'qemu:dirty-bitmap:'
        self.assertEqual(nbd_dirty(self.sock, 'b', pre + 'c2'), before)
        self.assertNotEqual(self.m.ranges('c1'), before)
        self.export(self.q, 'b2', checkpoints=['c1'])
        self.assertEqual(nbd_dirty(self.sock, 'b2', pre + 'c1'),
                         self.m.ranges('c1'))

    def test_export_errors(self):
        bad = [
            (['nope'], "Checkpoint 'nope' not found"),
            ([{'from': 'c3', 'to': 'c1'}], 'c3'),
            (['c1', 'c1'], 'twice'),
            ([{'from': 'c1', 'to': 'c2', 'name': 'c1'}, 'c1'], 'twice'),
        ]
        for cps, want in bad:
            with self.subTest(checkpoints=cps):
                err = self.qerror(self.q, 'block-export-add', {
                    'type': 'nbd', 'id': 'x', 'node-name': NODE,
                    'checkpoints': cps})
                self.assertIn(want, err)
        self.assertEqual([e['id'] for e in
                          self.q.cmd_ok('query-block-exports')], ['w'])


if __name__ == '__main__':
    unittest.main()
