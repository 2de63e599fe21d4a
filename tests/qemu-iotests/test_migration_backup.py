#!/usr/bin/python3
"""The incremental backup made after a migration restores an image equal
to the disk: a full backup from the source at checkpoint c1 (tools/
bp-backup), writes on the source while it migrates and on the
destination afterwards, checkpoint c2 on the destination, an incremental
backup of c1 from the destination, and bp-backup restore compared with
the image by the real qemu-img."""

import os
import random
import unittest

from harness import env, requires_module
from migration_util import MigrationCase, Writer
from bitmap_util import KiB, MiB

SIZE = 64 * MiB
BP_BACKUP = os.path.join(env.SRC, 'tools', 'bp-backup')


@requires_module('nbd')
class TestBackupAfterMigration(MigrationCase):

    def bp(self, *args):
        return self.run_ok(['/usr/bin/python3', BP_BACKUP, '-q'] +
                           [str(a) for a in args], timeout=300)

    def random_writes(self, sock, export, n, seed):
        rnd = random.Random(seed)
        from ckpt_util import nbd_connect
        h = nbd_connect(sock, export)
        try:
            for _ in range(n):
                length = rnd.choice([1, 512, 4 * KiB, 100 * KiB, 1 * MiB])
                off = rnd.randrange(0, SIZE - length)
                h.pwrite(bytes([rnd.randrange(256)]) * length, off)
            h.flush()
        finally:
            h.shutdown()

    def test_incremental_after_migration(self):
        path = self.create('disk.qcow2', SIZE)
        sd, sq, ssock = self.source(path)
        self.caps(sq)
        self.export(sq, 'w', writable=True)
        self.random_writes(ssock, 'w', 40, seed=1)
        self.add(sq, 'c1')
        self.export(sq, 'full')
        full = self.img('full.raw')
        self.bp('full', '--socket', ssock, '--export', 'full', '--output',
                full)
        # Writes before and during the migration.
        self.random_writes(ssock, 'w', 30, seed=2)
        dd, dq, dsock, uri = self.destination(path)
        self.caps(dq)
        w = Writer(ssock, 'w', SIZE, seed=3)
        w.start()
        w.wait_some(20)
        self.migrate(sq, uri)
        w.stop()
        self.wait_final(dq)
        # Writes on the destination, then the next checkpoint.
        self.export(dq, 'w', writable=True)
        self.random_writes(dsock, 'w', 30, seed=4)
        self.add(dq, 'c2')
        self.export(dq, 'inc', checkpoints=['c1'])
        inc = self.img('inc-c1.raw')
        self.bp('incremental', '--socket', dsock, '--export', 'inc',
                '--bitmap', 'qemu:dirty-bitmap:c1', '--output', inc)
        restored = self.img('restored.raw')
        self.bp('restore', '--full', full, '--increment', inc, '--output',
                restored)
        out = self.run_ok([self.real('qemu-img'), 'compare', '-U', '-f',
                           'raw', '-F', 'qcow2', restored, path])
        self.assertIn('Images are identical', out)
        self.assertEqual([c[0] for c in self.checkpoints(dq)], ['c1', 'c2'])


if __name__ == '__main__':
    unittest.main()
