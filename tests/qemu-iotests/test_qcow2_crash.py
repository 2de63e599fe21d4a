#!/usr/bin/python3
"""Crash safety of the qcow2 driver: a writer (qcow2-tool crashwriter:
random allocating writes and zero writes, flushes now and then) is killed
with SIGKILL at random moments, over and over on the same image.  After
every kill the real `qemu-img check` must find no corruption (leaked
clusters are allowed), every write acknowledged before the last completed
flush must read back, and our `check -r all` must leave an image the real
check finds clean.  With lazy refcounts the image is left dirty instead,
and the next read-write open rebuilds the refcounts."""

import os
import random
import signal
import subprocess
import time
import unittest

from harness import proc, requires_real
from qcow2_util import MiB, Qcow2Case

IOTEST_TIMEOUT = 900
SECTOR = 512


class CrashModel:
    """Expected contents at sector granularity; sectors written after the
    last flush of a killed run are 'unknown' until a later flushed write."""

    def __init__(self, size):
        self.size = size
        self.data = bytearray(size)
        self.unknown = bytearray(size // SECTOR)

    def apply_log(self, path):
        with open(path) as f:
            lines = f.read().split('\n')
        if lines and lines[-1] != '':
            lines = lines[:-1]          # a line cut short by the kill
        ops, pending = [], None
        last_flush = 0
        for line in lines:
            t = line.split()
            if not t:
                continue
            if t[0] == 'P' and len(t) == 4:
                pending = (int(t[1]), int(t[2]), int(t[3]))
                ops.append(pending)
            elif t[0] == 'W':
                pending = None
            elif t[0] == 'F':
                last_flush = len(ops)
        for i, (off, ln, pat) in enumerate(ops):
            s0, s1 = off // SECTOR, (off + ln) // SECTOR
            if i < last_flush:
                self.data[off:off + ln] = bytes([pat]) * ln
                self.unknown[s0:s1] = bytes(s1 - s0)
            else:
                self.unknown[s0:s1] = b'\x01' * (s1 - s0)
        os.unlink(path)
        return len(ops), last_flush

    def mismatches(self, raw):
        bad = []
        for s in range(self.size // SECTOR):
            if self.unknown[s]:
                continue
            a = s * SECTOR
            if raw[a:a + SECTOR] != self.data[a:a + SECTOR]:
                bad.append(a)
                if len(bad) > 10:
                    break
        return bad


@requires_real('qemu-img')
class TestCrash(Qcow2Case):

    def run_and_kill(self, img, log, seed, delay, maxlen):
        argv = proc._wrap([self.tool(), 'crashwriter', img, str(seed),
                           '1000000', log, str(maxlen)])
        p = subprocess.Popen(argv, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE,
                             env=proc.child_env(None, argv))
        time.sleep(delay)
        p.send_signal(signal.SIGKILL)
        _, err = p.communicate(timeout=60)
        # Killed by us (not an earlier failure of its own).
        self.assertEqual(p.returncode, -signal.SIGKILL,
                         err.decode('utf-8', 'replace'))

    def verify(self, img, model):
        raw = self.img('dump.raw')
        self.run_ok([self.qimg(), 'convert', '-U', '-O', 'raw', img, raw])
        with open(raw, 'rb') as f:
            data = f.read()
        os.unlink(raw)
        bad = model.mismatches(data)
        self.assertEqual(bad, [], 'flushed data lost at these offsets')

    def crash_loop(self, opts, rounds, lazy=False, size=64 * MiB,
                   maxlen=256 * 1024):
        img = self.create('crash.qcow2', size, opts)
        model = CrashModel(size)
        rnd = random.Random(hash(opts) & 0xffff)
        log = self.img('log')
        for i in range(rounds):
            with self.subTest(round=i):
                self.run_and_kill(img, log, i + 1, rnd.uniform(0.05, 0.6),
                                  maxlen)
                nops, flushed = model.apply_log(log)
                rc, text = self.real_check(img)
                if lazy:
                    # Refcounts may lag; the data must still be there, and
                    # our next read-write open repairs the image.
                    self.assertIn(rc, (0, 2, 3), text)
                    self.verify(img, model)
                    self.io(img, [['flush']])
                    self.assert_real_clean(img)
                else:
                    self.assertIn(rc, (0, 3), 'round %d (%d ops, %d flushed)'
                                  ':\n%s' % (i, nops, flushed, text))
                    self.verify(img, model)
                    crc, res, err = self.our_check(img, 'all')
                    self.assertEqual(crc, 0, err)
                    self.assert_real_clean(img)

    def test_crash_default(self):
        self.crash_loop('', 30)

    def test_crash_small_clusters(self):
        # 4 KiB clusters with 8-bit refcounts: refcount blocks and table
        # growth happen often.
        self.crash_loop('cluster_size=4096,refcount_bits=8', 12)

    def test_crash_tiny_clusters_refcount_growth(self):
        self.crash_loop('cluster_size=512,refcount_bits=64', 6, size=16 * MiB,
                        maxlen=64 * 1024)

    def test_crash_lazy_refcounts(self):
        self.crash_loop('lazy_refcounts=on', 10, lazy=True)


if __name__ == '__main__':
    unittest.main()
