"""QMP block node and dirty-bitmap commands on our qemu-storage-daemon,
cross-checked against QEMU's: blockdev-add/del, query-named-block-nodes,
block-dirty-bitmap-*, x-debug-block-dirty-bitmap-sha256 and transaction
(all-or-nothing), persistence across restarts as seen by the real
qemu-img."""

import json
import os
import unittest

from harness import IotestCase, qmp


def blockdev(path, node='disk', fmt='qcow2', **extra):
    opts = {'driver': fmt, 'node-name': node,
            'file': {'driver': 'file', 'filename': path}}
    opts.update(extra)
    return opts


class QSDCase(IotestCase):
    """Helpers to start a daemon (ours or the real one) on one image."""

    def start(self, binary, image, fmt='qcow2'):
        d, socks = qmp.start_qsd(self, binary)
        q = qmp.QMPClient(socks[0])
        q.negotiate()
        self.addCleanup(q.close)
        if image:
            q.cmd_ok('blockdev-add', blockdev(image, fmt=fmt))
        return d, q

    def make_qcow2(self, name, size='64M'):
        path = self.checked(self.img(name))
        self.run_ok([self.real('qemu-img'), 'create', '-q', '-f', 'qcow2',
                     path, size])
        return path

    def bitmaps(self, q, node='disk'):
        for n in q.cmd_ok('query-named-block-nodes'):
            if n['node-name'] == node:
                return {b['name']: b for b in n.get('dirty-bitmaps', [])}
        raise AssertionError('node %s not found' % node)

    def sha(self, q, name, node='disk'):
        return q.cmd_ok('x-debug-block-dirty-bitmap-sha256',
                        {'node': node, 'name': name})['sha256']


# One scenario, run on both daemons: (command, arguments).  Replies are
# compared by outcome and error class; wording may differ.
SCENARIO = [
    ('block-dirty-bitmap-add', {'node': 'nope', 'name': 'b'}),
    ('block-dirty-bitmap-add', {'node': 'disk', 'name': 'b',
                                'granularity': 1000}),
    ('block-dirty-bitmap-add', {'node': 'disk', 'name': 'b',
                                'granularity': 256}),
    ('block-dirty-bitmap-add', {'node': 'disk', 'name': ''}),
    ('block-dirty-bitmap-add', {'node': 'disk', 'name': 'b',
                                'persistent': True}),
    ('block-dirty-bitmap-add', {'node': 'disk', 'name': 'b'}),
    ('block-dirty-bitmap-add', {'node': 'disk', 'name': 'c',
                                'disabled': True, 'granularity': 4096}),
    ('block-dirty-bitmap-add', {'node': 'disk', 'name': 'b',
                                'granularity': 'x'}),
    ('block-dirty-bitmap-add', {'node': 'disk'}),
    ('block-dirty-bitmap-add', {'node': 'disk', 'name': 'z', 'bogus': 1}),
    ('block-dirty-bitmap-remove', {'node': 'disk', 'name': 'zz'}),
    ('block-dirty-bitmap-clear', {'node': 'disk', 'name': 'zz'}),
    ('block-dirty-bitmap-enable', {'node': 'disk', 'name': 'c'}),
    ('block-dirty-bitmap-disable', {'node': 'disk', 'name': 'c'}),
    ('block-dirty-bitmap-merge', {'node': 'disk', 'target': 'c',
                                  'bitmaps': ['b']}),
    ('block-dirty-bitmap-merge', {'node': 'disk', 'target': 'c',
                                  'bitmaps': [{'node': 'disk',
                                               'name': 'zz'}]}),
    ('block-dirty-bitmap-merge', {'node': 'disk', 'target': 'zz',
                                  'bitmaps': ['b']}),
    ('x-debug-block-dirty-bitmap-sha256', {'node': 'disk', 'name': 'c'}),
    ('x-debug-block-dirty-bitmap-sha256', {'node': 'disk', 'name': 'q'}),
    ('transaction', {'actions': []}),
    ('transaction', {'actions': [
        {'type': 'block-dirty-bitmap-add',
         'data': {'node': 'disk', 'name': 't1'}},
        {'type': 'block-dirty-bitmap-add',
         'data': {'node': 'disk', 'name': 't1'}}]}),
    ('transaction', {'actions': [
        {'type': 'block-dirty-bitmap-bogus', 'data': {}}]}),
    ('block-dirty-bitmap-remove', {'node': 'disk', 'name': 'b'}),
    ('blockdev-del', {'node-name': 'nope'}),
    ('blockdev-add', {'driver': 'raw',
                      'file': {'driver': 'file', 'filename': '/nonexist'}}),
    ('blockdev-add', {'driver': 'raw', 'node-name': 'r',
                      'file': {'driver': 'file',
                               'filename': '/nonexist'}}),
    ('blockdev-add', {'driver': 'nosuch', 'node-name': 'r'}),
]


def outcome(reply):
    if 'error' in reply:
        return ('error', reply['error']['class'])
    return ('return', sorted(reply['return'].keys())
            if isinstance(reply['return'], dict) else type(reply['return']))


class TestCrossCheck(QSDCase):

    def run_scenario(self, binary):
        img = self.make_qcow2('x-%s.qcow2' % os.path.basename(
            os.path.dirname(binary)) or 'real')
        _, q = self.start(binary, img)
        results = []
        for name, args in SCENARIO:
            results.append(outcome(q.cmd(name, args)))
        q.cmd_ok('quit')
        return results

    def test_same_outcomes_as_qemu(self):
        ours = self.run_scenario(self.ours('qemu-storage-daemon'))
        real = self.run_scenario(self.real('qemu-storage-daemon'))
        for (name, args), o, r in zip(SCENARIO, ours, real):
            with self.subTest(cmd=name, args=json.dumps(args)[:80]):
                self.assertEqual(o, r)

    def test_sha256_matches_qemu_odd_size(self):
        """An image whose bitmap is not a whole number of 64-bit words."""
        sums = []
        for binary in (self.ours('qemu-storage-daemon'),
                       self.real('qemu-storage-daemon')):
            img = self.make_qcow2('odd%d.qcow2' % len(sums), size='65600K')
            _, q = self.start(binary, img)
            q.cmd_ok('block-dirty-bitmap-add', {'node': 'disk', 'name': 'b'})
            sums.append(self.sha(q, 'b'))
            q.cmd_ok('quit')
        self.assertEqual(sums[0], sums[1])


# Robustness items 41 and 44: a bad block-dirty-bitmap-add, alone and as
# the second action of a transaction.  (label, extra arguments, the part
# of QEMU's message that must appear in ours).
LONG_NAME = 'n' * 1024
BAD_ADDS = [
    ('negative granularity', {'name': 'new', 'granularity': -1},
     "Parameter 'granularity' expects uint32_t"),
    ('large negative granularity', {'name': 'new', 'granularity': -65536},
     "Parameter 'granularity' expects uint32_t"),
    ('granularity over 32 bits', {'name': 'new', 'granularity': 1 << 32},
     "Parameter 'granularity' expects uint32_t"),
    ('granularity not a power of two', {'name': 'new', 'granularity': 1000},
     'Granularity must be power of 2 and at least 512'),
    ('granularity 64k + 512', {'name': 'new', 'granularity': 66048},
     'Granularity must be power of 2 and at least 512'),
    ('granularity below 512', {'name': 'new', 'granularity': 256},
     'Granularity must be power of 2 and at least 512'),
    ('granularity zero', {'name': 'new', 'granularity': 0},
     'Granularity must be power of 2 and at least 512'),
    ('existing name', {'name': 'b'}, 'Bitmap already exists: b'),
    ('existing name, persistent', {'name': 'b', 'persistent': True},
     'Bitmap already exists: b'),
    ('existing name, other granularity', {'name': 'b', 'granularity': 512},
     'Bitmap already exists: b'),
    ('1024-byte name', {'name': LONG_NAME},
     'Bitmap name too long: ' + LONG_NAME),
    ('1024-byte name, persistent', {'name': LONG_NAME, 'persistent': True},
     'Name length exceeds maximum (1023 characters)'),
    ('1024-byte name, bad granularity', {'name': LONG_NAME,
                                         'granularity': 1000},
     'Granularity must be power of 2 and at least 512'),
    ('empty name', {'name': ''}, 'Bitmap name cannot be empty'),
]


class TestBitmapAddErrors(QSDCase):
    """Each bad add fails with QEMU's error class and message (the member
    named where the schema rejects it) and leaves no bitmap behind: not
    in query-named-block-nodes, not in the image afterwards."""

    def run_bad_adds(self, binary, tag):
        img = self.make_qcow2('e-%s.qcow2' % tag)
        d, q = self.start(binary, img)
        q.cmd_ok('block-dirty-bitmap-add', {'node': 'disk', 'name': 'b',
                                            'persistent': True})
        before = self.bitmaps(q)
        self.assertEqual(list(before), ['b'])
        replies = []
        for label, extra, _ in BAD_ADDS:
            args = {'node': 'disk'}
            args.update(extra)
            single = q.cmd('block-dirty-bitmap-add', args)
            # The same add after a good one, in a transaction: the good
            # one is rolled back.
            tran = q.cmd('transaction', {'actions': [
                {'type': 'block-dirty-bitmap-add',
                 'data': {'node': 'disk', 'name': 'first'}},
                {'type': 'block-dirty-bitmap-add', 'data': args}]})
            replies.append((single, tran, self.bitmaps(q)))
        # A 1023-byte name is still fine.
        q.cmd_ok('block-dirty-bitmap-add', {'node': 'disk',
                                            'name': LONG_NAME[:1023]})
        q.cmd_ok('block-dirty-bitmap-remove', {'node': 'disk',
                                               'name': LONG_NAME[:1023]})
        q.cmd_ok('quit')
        d.wait(timeout=60)
        stored = json.loads(self.run_ok([
            self.real('qemu-img'), 'info', '--output=json', img]))
        names = [b['name'] for b in
                 stored['format-specific']['data'].get('bitmaps', [])]
        return before, replies, names

    def test_bad_adds_leave_nothing(self):
        ours = self.run_bad_adds(self.ours('qemu-storage-daemon'), 'ours')
        real = self.run_bad_adds(self.real('qemu-storage-daemon'), 'real')
        before, replies, stored = ours
        self.assertEqual(stored, ['b'])
        self.assertEqual(real[2], ['b'])
        for (label, extra, needle), (single, tran, after), \
                (rsingle, rtran, _) in zip(BAD_ADDS, replies, real[1]):
            with self.subTest(case=label):
                for r, rr in ((single, rsingle), (tran, rtran)):
                    self.assertIn('error', r, r)
                    self.assertIn('error', rr, rr)
                    self.assertEqual(r['error']['class'], 'GenericError')
                    self.assertEqual(r['error']['class'],
                                     rr['error']['class'])
                # Alone: word for word QEMU's message.
                self.assertEqual(single['error']['desc'],
                                 rsingle['error']['desc'])
                self.assertIn(needle, single['error']['desc'])
                # In a transaction ours also names the action, and the
                # member's whole path where the schema rejects it.
                self.assertIn(needle, rtran['error']['desc'])
                self.assertIn(needle.replace("'granularity'",
                                             "'actions[1].data.granularity'"),
                              tran['error']['desc'])
                if not needle.startswith('Parameter'):
                    self.assertIn('Action 2 (block-dirty-bitmap-add) '
                                  'failed: ', tran['error']['desc'])
                # No partial bitmap: the node's bitmaps are exactly the
                # ones before, attributes included.
                self.assertEqual(after, before)
        # The four kinds of mistake get four different messages.
        kinds = ('negative granularity', 'granularity not a power of two',
                 'existing name', '1024-byte name')
        descs = {replies[[c[0] for c in BAD_ADDS].index(k)][0]['error']
                 ['desc'] for k in kinds}
        self.assertEqual(len(descs), len(kinds))


class TestBlockdev(QSDCase):

    def setUp(self):
        super().setUp()
        self.binary = self.ours('qemu-storage-daemon')

    def test_add_query_del(self):
        img = self.make_qcow2('a.qcow2')
        _, q = self.start(self.binary, img)
        nodes = {n['node-name']: n for n in q.cmd_ok('query-named-block-nodes')}
        self.assertEqual(nodes['disk']['drv'], 'qcow2')
        self.assertEqual(nodes['disk']['image']['virtual-size'], 64 << 20)
        self.assertEqual(nodes['disk']['image']['cluster-size'], 65536)
        self.assertFalse(nodes['disk']['ro'])
        self.assertEqual(nodes['disk']['file'], img)
        children = [n for n in nodes.values() if n['drv'] == 'file']
        self.assertEqual(len(children), 1)
        # The implicitly created child is not the monitor's to delete.
        r = q.cmd('blockdev-del', {'node-name': children[0]['node-name']})
        self.assertIn('not owned by the monitor', r['error']['desc'])
        q.cmd_ok('blockdev-del', {'node-name': 'disk'})
        self.assertEqual(q.cmd_ok('query-named-block-nodes'), [])

    def test_duplicate_and_bad_names(self):
        img = self.make_qcow2('b.qcow2')
        _, q = self.start(self.binary, img)
        r = q.cmd('blockdev-add', blockdev(img, **{'read-only': True}))
        self.assertIn("Duplicate nodes with node-name='disk'",
                      r['error']['desc'])
        r = q.cmd('blockdev-add', blockdev(img, node='1bad'))
        self.assertIn("Invalid node-name", r['error']['desc'])
        r = q.cmd('blockdev-add', {'driver': 'qcow2', 'node-name': 'x',
                                   'file': {'driver': 'file'}})
        self.assertIn("filename", r['error']['desc'])

    def test_l2_cache_entry_size(self):
        img = self.make_qcow2('l2.qcow2')
        _, q = self.start(self.binary, img)
        q.cmd_ok('blockdev-del', {'node-name': 'disk'})
        for bad in (256, 1000, 128 * 1024):
            r = q.cmd('blockdev-add', blockdev(img, **{
                'l2-cache-entry-size': bad}))
            self.assertEqual(r['error']['class'], 'GenericError')
            self.assertIn('power of two from 512 to the cluster size',
                          r['error']['desc'])
        q.cmd_ok('blockdev-add', blockdev(img, **{
            'l2-cache-entry-size': 512, 'l2-cache-size': 4096}))

    def test_in_use_node_cannot_be_deleted(self):
        img = self.make_qcow2('c.qcow2')
        _, q = self.start(self.binary, None)
        q.cmd_ok('blockdev-add', {'driver': 'file', 'node-name': 'proto',
                                  'filename': img})
        q.cmd_ok('blockdev-add', {'driver': 'qcow2', 'node-name': 'fmt',
                                  'file': 'proto'})
        r = q.cmd('blockdev-del', {'node-name': 'proto'})
        self.assertIn('is in use', r['error']['desc'])
        q.cmd_ok('blockdev-del', {'node-name': 'fmt'})
        q.cmd_ok('blockdev-del', {'node-name': 'proto'})

    def test_locking_against_real_qemu(self):
        """An image our daemon holds is refused to a real writer."""
        img = self.make_qcow2('d.qcow2')
        _, q = self.start(self.binary, img)
        rc, out, err = self.run_cmd([self.real('qemu-io'), '-c',
                                     'write 0 512', img])
        self.assertNotEqual(rc, 0)
        self.assertIn('lock', err)
        # -U (force-share) readers are still allowed.
        self.run_ok([self.real('qemu-img'), 'info', '-U', img])
        q.cmd_ok('quit')


class TestBitmapsAndTransactions(QSDCase):

    def setUp(self):
        super().setUp()
        self.binary = self.ours('qemu-storage-daemon')
        self.image = self.make_qcow2('t.qcow2')
        self.daemon, self.q = self.start(self.binary, self.image)

    def state(self):
        bms = self.bitmaps(self.q)
        return {name: (b['recording'], b['persistent'], b['granularity'],
                       b['count'], self.sha(self.q, name))
                for name, b in bms.items()}

    def test_flags_in_query(self):
        q = self.q
        q.cmd_ok('block-dirty-bitmap-add', {'node': 'disk', 'name': 'p',
                                            'persistent': True})
        q.cmd_ok('block-dirty-bitmap-add', {'node': 'disk', 'name': 'd',
                                            'disabled': True,
                                            'granularity': 512})
        bms = self.bitmaps(q)
        self.assertEqual(bms['p']['granularity'], 65536)
        self.assertTrue(bms['p']['persistent'])
        self.assertTrue(bms['p']['recording'])
        self.assertFalse(bms['p']['busy'])
        self.assertEqual(bms['p']['count'], 0)
        self.assertFalse(bms['d']['recording'])
        self.assertFalse(bms['d']['persistent'])
        self.assertEqual(bms['d']['granularity'], 512)
        self.assertNotIn('inconsistent', bms['d'])

    def test_failed_transaction_changes_nothing(self):
        q = self.q
        q.cmd_ok('block-dirty-bitmap-add', {'node': 'disk', 'name': 'a',
                                            'persistent': True})
        q.cmd_ok('block-dirty-bitmap-add', {'node': 'disk', 'name': 'b',
                                            'disabled': True})
        before = self.state()
        # The third action fails: the first two must be rolled back.
        r = q.cmd('transaction', {'actions': [
            {'type': 'block-dirty-bitmap-disable',
             'data': {'node': 'disk', 'name': 'a'}},
            {'type': 'block-dirty-bitmap-add',
             'data': {'node': 'disk', 'name': 'new', 'persistent': True}},
            {'type': 'block-dirty-bitmap-clear',
             'data': {'node': 'disk', 'name': 'missing'}},
        ]})
        self.assertEqual(qmp.error_class(r), 'GenericError')
        self.assertIn('missing', r['error']['desc'])
        self.assertEqual(self.state(), before)
        # Remove, merge and enable are undone too.
        r = q.cmd('transaction', {'actions': [
            {'type': 'block-dirty-bitmap-remove',
             'data': {'node': 'disk', 'name': 'b'}},
            {'type': 'block-dirty-bitmap-enable',
             'data': {'node': 'disk', 'name': 'a'}},
            {'type': 'block-dirty-bitmap-merge',
             'data': {'node': 'disk', 'target': 'a', 'bitmaps': ['b']}},
            {'type': 'block-dirty-bitmap-add',
             'data': {'node': 'disk', 'name': 'a'}},
        ]})
        self.assertIsNotNone(qmp.error_class(r))
        self.assertEqual(self.state(), before)

    def test_removed_bitmap_cannot_be_used_later_in_transaction(self):
        q = self.q
        q.cmd_ok('block-dirty-bitmap-add', {'node': 'disk', 'name': 'a'})
        r = q.cmd('transaction', {'actions': [
            {'type': 'block-dirty-bitmap-remove',
             'data': {'node': 'disk', 'name': 'a'}},
            {'type': 'block-dirty-bitmap-clear',
             'data': {'node': 'disk', 'name': 'a'}},
        ]})
        self.assertIsNotNone(qmp.error_class(r))
        self.assertIn('a', self.bitmaps(q))

    def test_successful_transaction(self):
        q = self.q
        q.cmd_ok('block-dirty-bitmap-add', {'node': 'disk', 'name': 'c1',
                                            'persistent': True})
        q.cmd_ok('transaction', {'actions': [
            {'type': 'block-dirty-bitmap-disable',
             'data': {'node': 'disk', 'name': 'c1'}},
            {'type': 'block-dirty-bitmap-add',
             'data': {'node': 'disk', 'name': 'c2', 'persistent': True}},
        ]})
        bms = self.bitmaps(q)
        self.assertFalse(bms['c1']['recording'])
        self.assertTrue(bms['c2']['recording'])

    def test_persistent_bitmaps_survive_restart(self):
        q = self.q
        q.cmd_ok('block-dirty-bitmap-add', {'node': 'disk', 'name': 'keep',
                                            'persistent': True,
                                            'granularity': 131072})
        q.cmd_ok('block-dirty-bitmap-add', {'node': 'disk', 'name': 'off',
                                            'persistent': True,
                                            'disabled': True})
        q.cmd_ok('block-dirty-bitmap-add', {'node': 'disk', 'name': 'temp'})
        q.cmd_ok('quit')
        self.daemon.wait(timeout=30)
        info = json.loads(self.run_ok([self.real('qemu-img'), 'info',
                                       '--output=json', self.image]))
        stored = {b['name']: b for b in
                  info['format-specific']['data']['bitmaps']}
        self.assertEqual(set(stored), {'keep', 'off'})
        self.assertEqual(stored['keep']['granularity'], 131072)
        self.assertEqual(stored['keep']['flags'], ['auto'])
        self.assertEqual(stored['off']['flags'], [])
        _, q2 = self.start(self.binary, self.image)
        bms = self.bitmaps(q2)
        self.assertEqual(set(bms), {'keep', 'off'})
        self.assertTrue(bms['keep']['recording'])
        self.assertFalse(bms['off']['recording'])

    def test_sigkill_leaves_bitmap_inconsistent(self):
        q = self.q
        q.cmd_ok('block-dirty-bitmap-add', {'node': 'disk', 'name': 'rec',
                                            'persistent': True})
        q.cmd_ok('quit')
        self.daemon.wait(timeout=30)
        d2, q2 = self.start(self.binary, self.image)
        cmds = {c['name'] for c in q2.cmd_ok('query-commands')}
        if 'block-export-add' not in cmds:
            self.skipTest('needs NBD exports to write through the daemon')
        sock = self.sock('nbd')
        q2.cmd_ok('nbd-server-start',
                  {'addr': {'type': 'unix', 'data': {'path': sock}}})
        q2.cmd_ok('block-export-add', {'type': 'nbd', 'id': 'e',
                                       'node-name': 'disk', 'name': 'disk',
                                       'writable': True})
        import nbd
        h = nbd.NBD()
        h.connect_uri('nbd+unix:///disk?socket=' + sock)
        h.pwrite(b'x' * 65536, 0)
        h.flush()
        # The first write flagged the recording bitmap in use on disk.
        d2.kill()
        info = json.loads(self.run_ok([self.real('qemu-img'), 'info',
                                       '--output=json', '-U', self.image]))
        flags = info['format-specific']['data']['bitmaps'][0]['flags']
        self.assertIn('in-use', flags)
        _, q3 = self.start(self.binary, self.image)
        bms = self.bitmaps(q3)
        self.assertTrue(bms['rec'].get('inconsistent'))
        r = q3.cmd('block-dirty-bitmap-clear', {'node': 'disk',
                                                'name': 'rec'})
        self.assertIn('inconsistent', r['error']['desc'])
        q3.cmd_ok('block-dirty-bitmap-remove', {'node': 'disk',
                                                'name': 'rec'})
        self.assertEqual(self.bitmaps(q3), {})


if __name__ == '__main__':
    unittest.main()
