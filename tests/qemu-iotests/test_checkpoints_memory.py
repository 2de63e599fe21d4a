#!/usr/bin/python3
"""Memory of our daemon with many checkpoints on a 1 TiB disk: only the
newest checkpoint's bitmap stays in memory; the bitmaps of older ones are
read from the image for a query, an export or a removal and dropped again.
With 100 checkpoints whose bitmaps each have bits spread over the whole
disk, the daemon's resident memory grows by far less than 100 bitmaps
would take (each holds about 1 MiB of touched pages here), and freed
bitmaps go back to the system.  Scattered writes cache small slices of
L2 tables, so the qcow2 metadata cache stays small too."""

import unittest

from ckpt_util import CheckpointCase, GiB, KiB, MiB, nbd_dirty, rss_kib
from harness import requires_module

IOTEST_TIMEOUT = 900
SIZE = 1024 * GiB
N_CKPT = 100
N_WRITES = 256          # per checkpoint, spread over the disk
STRIDE = SIZE // N_WRITES


@requires_module('nbd')
class TestMemory(CheckpointCase):

    def test_hundred_checkpoints_one_tib(self):
        import nbd
        with open(self.ours('qemu-storage-daemon'), 'rb') as f:
            if b'__asan_init' in f.read():
                self.skipTest('resident memory means nothing under '
                              'AddressSanitizer (it keeps freed memory)')
        path = self.create('big.qcow2', SIZE)
        d, q, sock = self.daemon(path)
        self.export(q, 'w', writable=True)
        h = nbd.NBD()
        h.set_export_name('w')
        h.connect_unix(sock)
        buf = b'\x11' * 4096
        # The same offsets every time: the qcow2 caches stay the same size.
        offsets = [i * STRIDE + 64 * KiB for i in range(N_WRITES)]

        def writes():
            for off in offsets:
                h.pwrite(buf, off)
            h.flush()

        self.add(q, 'c0')
        writes()
        self.add(q, 'c1')
        writes()
        base = rss_kib(d.pid)
        # 256 scattered writes cache 256 slices of L2 tables (1 MiB), not
        # 256 whole tables (16 MiB): the daemon is still small here.
        self.assertLess(base, 16 * 1024, 'RSS %d KiB' % base)
        for i in range(2, N_CKPT):
            self.add(q, 'c%d' % i)
            writes()
        after_create = rss_kib(d.pid)
        cps = self.query(q)
        self.assertEqual(len(cps), N_CKPT)
        self.assertEqual(cps[0]['changed-bytes'], N_WRITES * 64 * KiB)
        self.export(q, 'old', checkpoints=['c0'])
        self.assertEqual(len(nbd_dirty(sock, 'old', 'qemu:dirty-bitmap:c0')),
                         N_WRITES)
        self.remove(q, 'c50')
        after_all = rss_kib(d.pid)
        # The export's change set (one bitmap) and what computing it took
        # from the heap are given back when the export ends.
        self.unexport(q, 'old')
        after_del = rss_kib(d.pid)
        self.assertLess(after_del - after_create, 1024,
                        'RSS %d KiB after the export ended, %d before it'
                        % (after_del, after_create))
        h.shutdown()
        grown = max(after_create, after_all) - base
        # 98 more bitmaps of about 1 MiB each if they stayed in memory;
        # about 9 MiB when glibc kept the freed ones (no malloc_trim).
        self.assertLess(grown, 6 * 1024,
                        'RSS grew by %d KiB (base %d, after creating %d, '
                        'after query/export/remove %d)'
                        % (grown, base, after_create, after_all))


if __name__ == '__main__':
    unittest.main()
