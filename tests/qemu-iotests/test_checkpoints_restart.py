#!/usr/bin/python3
"""Checkpoints across restarts and crashes of our daemon: the chain (names,
parents, bitmaps, creation times, granularities) survives a restart and
reads the same offline; a checkpoint is on disk when the command returns;
a SIGKILL while writes are being recorded leaves every checkpoint unusable
("inconsistent") until a new one is made, and that damage is stored."""

import unittest

from ckpt_util import (AUTOCLEAR_CKPT, CheckpointCase, KiB, MiB, Shadow,
                       autoclear, read_table)
from harness import requires_module

SIZE = 64 * MiB


def strip_changed(cps):
    return [{k: v for k, v in c.items() if k != 'changed-bytes'}
            for c in cps]


@requires_module('nbd')
class TestRestart(CheckpointCase):

    def test_restart_keeps_chain(self):
        path = self.create('img.qcow2', SIZE)
        m = Shadow(SIZE, gran=4 * KiB)
        d, q, sock = self.daemon(path)
        self.export(q, 'w', writable=True)
        for i in range(1, 5):
            self.add(q, 'c%d' % i, m, granularity=4 * KiB,
                     **({'bitmap': 'bm-%d' % i} if i == 3 else {}))
            self.nbd_write(sock, 'w', [(i * MiB, i * 3000)], m)
        self.remove(q, 'c2', m)
        before = self.query(q)
        self.quit(d, q)

        # On disk: c1 <- c3 <- c4, only c4 records, bit 48 set.
        t = read_table(path)
        self.assertEqual([(e['name'], e['bitmap'], e['parent_index'],
                           e['flags'], e['damage']) for e in t],
                         [('c1', 'c1', 0xffffffff, 0, 0),
                          ('c3', 'bm-3', 0, 0, 0),
                          ('c4', 'c4', 1, 1, 0)])
        self.assertTrue(autoclear(path) & AUTOCLEAR_CKPT)
        self.assertEqual([(c['name'], c.get('parent'), c['usable'])
                          for c in self.ckpt_list(path)],
                         [('c1', None, True), ('c3', 'c1', True),
                          ('c4', 'c3', True)])
        self.assert_model(path, m)

        d, q, sock = self.daemon(path)
        self.assertEqual(self.query(q), before)
        self.assert_model(q, m, sock)
        # Still a working chain: writes land in c4.
        self.export(q, 'w', writable=True)
        self.nbd_write(sock, 'w', [(40 * MiB, 1)], m)
        self.assert_model(q, m, sock)

    def test_checkpoint_on_disk_when_command_returns(self):
        path = self.create('img.qcow2', SIZE)
        m = Shadow(SIZE)
        d, q, sock = self.daemon(path)
        self.export(q, 'w', writable=True)
        self.add(q, 'c1', m)
        self.nbd_write(sock, 'w', [(0, 4 * KiB), (5 * MiB, 1)], m)
        self.add(q, 'c2', m)
        d.kill()            # no write since c2: nothing is in use
        cps = self.ckpt_list(path)
        self.assertEqual([(c['name'], c['usable']) for c in cps],
                         [('c1', True), ('c2', True)])
        self.assert_model(path, m)


@requires_module('nbd')
class TestCrash(CheckpointCase):

    def crashed_image(self):
        path = self.create('img.qcow2', SIZE)
        d, q, sock = self.daemon(path)
        self.export(q, 'w', writable=True)
        self.add(q, 'c1')
        self.nbd_write(sock, 'w', [(0, 64 * KiB)])
        self.add(q, 'c2')
        self.nbd_write(sock, 'w', [(8 * MiB, 4 * KiB)])
        d.kill()
        return path

    def test_kill_during_writes(self):
        path = self.crashed_image()
        # Offline, read-only: unusable, nothing written.
        cps = self.ckpt_list(path)
        self.assertEqual([(c['name'], c['usable']) for c in cps],
                         [('c1', False), ('c2', False)])
        for c in cps:
            self.assertIn("bitmap 'c2' is inconsistent", c['reason'])
            self.assertNotIn('changed-bytes', c)
        self.assertEqual(cps[1]['damage'], 'inconsistent')
        self.assertNotIn('damage', cps[0])
        self.assertEqual([e['damage'] for e in read_table(path)], [0, 0])
        out, err = self.run_fail([self.ours('qemu-img'), 'checkpoint',
                                  '--diff', 'c1', '-U', path], rc=1)
        self.assertIn('inconsistent', err)

        d, q, sock = self.daemon(path)
        # The read-write open stored the damage.
        self.assertEqual([e['damage'] for e in read_table(path)], [0, 2])
        cps = self.query(q)
        self.assertEqual([c['usable'] for c in cps], [False, False])
        err = self.qerror(q, 'block-export-add', {
            'type': 'nbd', 'id': 'x', 'node-name': 'disk',
            'checkpoints': ['c1']})
        self.assertIn('inconsistent', err)
        # After a full backup, a new checkpoint starts a usable chain.
        self.add(q, 'c3')
        self.export(q, 'w', writable=True)
        m = Shadow(SIZE)
        m.add('c3')
        self.nbd_write(sock, 'w', [(20 * MiB, 1)], m)
        cps = self.query(q)
        self.assertEqual([(c['name'], c['usable'], c['recording'])
                          for c in cps],
                         [('c1', False, False), ('c2', False, False),
                          ('c3', True, True)])
        self.assertEqual(self.since_export(q, sock, 'c3'), m.ranges('c3'))
        # Damage is sticky: a damaged bitmap is never merged; removing it
        # marks its parent.
        self.remove(q, 'c2')
        cps = self.query(q)
        self.assertEqual([(c['name'], c.get('damage')) for c in cps],
                         [('c1', 'incomplete'), ('c3', None)])
        self.assertIn("lacks the writes of removed damaged checkpoint 'c2'",
                      cps[0]['reason'])
        self.remove(q, 'c1')
        self.quit(d, q)
        self.assertEqual([(c['name'], c['usable'])
                          for c in self.ckpt_list(path)], [('c3', True)])
        self.assertEqual(self.info_bitmaps(path),
                         [{'flags': ['auto'], 'name': 'c3',
                           'granularity': 65536}])

    def test_crash_then_offline_repair_path(self):
        """Offline only: qemu-img checkpoint shows the damage, check -r
        all records it, -c starts a new usable checkpoint."""
        path = self.crashed_image()
        rc, out, err = self.run_cmd([self.ours('qemu-img'), 'check', path])
        self.assertEqual(rc, 0, err)
        self.assertIn("Checkpoint 'c1' is unusable", err)
        self.run_cmd([self.ours('qemu-img'), 'check', '-r', 'all', path])
        self.assertEqual([e['damage'] for e in read_table(path)], [0, 2])
        self.ours_ok('checkpoint', '-c', 'c3', path)
        self.assertEqual([(c['name'], c['usable'])
                          for c in self.ckpt_list(path)],
                         [('c1', False), ('c2', False), ('c3', True)])
        self.assertEqual(self.ckpt_diff(path, 'c3'), [])


if __name__ == '__main__':
    unittest.main()
