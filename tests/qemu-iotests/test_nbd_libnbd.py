#!/usr/bin/python3
"""python3-libnbd against our NBD server: several connections at once,
each with many requests in flight (reads, writes, zeroes, trims, flushes,
block status), checked against a model of the disk, then the image file
checked against the model too.  Runs on our qemu-nbd and our storage
daemon (and the real qemu-nbd as a sanity check of the test itself)."""

import random
import threading
import unittest

from harness import IotestCase, proc
from harness.nbd import libnbd
from harness.qmp import QMPClient, start_qsd

nbd = libnbd()

KiB = 1024
MiB = 1024 * KiB
BLOCK = 4 * KiB
CONNECTIONS = 4
REGION = 8 * MiB                 # each connection owns one region
SIZE = CONNECTIONS * REGION
OPS = 3000
DEPTH = 64


def uri(sock, name=''):
    return 'nbd+unix:///%s?socket=%s' % (name, sock)


class Worker(threading.Thread):
    """Drive one connection: keep DEPTH requests in flight on REGION
    bytes at `base`, never two on the same block at once, and check
    every read against the model."""

    def __init__(self, url, base, seed, spans=(1,), depth=DEPTH):
        super().__init__()
        self.depth = depth
        self.url = url
        self.base = base
        self.rnd = random.Random(seed)
        self.model = bytearray(REGION)
        self.busy = {}              # first block -> (cookie, kind, data, buf)
        self.locked = {}            # every block in flight -> its request's length
        self.spans = spans          # request lengths, in blocks
        self.errors = []
        self.max_in_flight = 0

    def run(self):
        try:
            self._run()
        except Exception as e:          # reported by the test
            self.errors.append(repr(e))

    def _issue(self, h):
        rnd = self.rnd
        nblk = rnd.choice(self.spans)
        for tries in range(1000):
            if tries == 20:
                nblk = 1                # no room for a long one now
            blk = rnd.randrange(REGION // BLOCK - nblk + 1)
            if not any(b in self.locked for b in range(blk, blk + nblk)):
                break
        for b in range(blk, blk + nblk):
            self.locked[b] = nblk
        off = blk * BLOCK
        n = nblk * BLOCK
        kind = rnd.choice(['read', 'read', 'write', 'write', 'zero',
                           'trim', 'flush', 'status'])
        if kind == 'read':
            buf = nbd.Buffer(n)
            cookie = h.aio_pread(buf, self.base + off)
            self.busy[blk] = (cookie, kind, bytes(self.model[off:off + n]),
                              buf)
        elif kind == 'write':
            data = rnd.randbytes(n)
            buf = nbd.Buffer.from_bytearray(bytearray(data))
            flags = nbd.CMD_FLAG_FUA if rnd.random() < 0.1 else 0
            cookie = h.aio_pwrite(buf, self.base + off, flags=flags)
            self.model[off:off + n] = data
            self.busy[blk] = (cookie, kind, None, buf)
        elif kind == 'zero':
            cookie = h.aio_zero(n, self.base + off)
            self.model[off:off + n] = bytes(n)
            self.busy[blk] = (cookie, kind, None, None)
        elif kind == 'trim':
            # Exported with discard ignored or not, a trim never changes
            # what reads return here: only whole zeroed blocks are trimmed.
            if self.model[off:off + n] != bytes(n):
                cookie = h.aio_flush()
                kind = 'flush'
            else:
                cookie = h.aio_trim(n, self.base + off)
            self.busy[blk] = (cookie, kind, None, None)
        elif kind == 'flush':
            self.busy[blk] = (h.aio_flush(), kind, None, None)
        else:
            def extent(meta, offset, entries, err):
                return 0
            n = min(BLOCK * 16, REGION - off)
            self.busy[blk] = (h.aio_block_status(n, self.base + off, extent),
                              kind, None, None)

    def _reap(self, h):
        for blk, (cookie, kind, expect, buf) in list(self.busy.items()):
            if h.aio_command_completed(cookie):
                if kind == 'read' and bytes(buf.to_bytearray()) != expect:
                    raise AssertionError('read at %d: wrong data'
                                         % (self.base + blk * BLOCK))
                del self.busy[blk]
                for b in range(blk, blk + self.locked[blk]):
                    del self.locked[b]

    def _run(self):
        h = nbd.NBD()
        h.add_meta_context('base:allocation')
        h.connect_uri(self.url)
        issued = 0
        while issued < OPS or self.busy:
            while issued < OPS and len(self.busy) < self.depth:
                self._issue(h)
                issued += 1
            self.max_in_flight = max(self.max_in_flight, h.aio_in_flight())
            h.poll(-1)
            self._reap(h)
        # Read the whole region back synchronously.
        got = h.pread(REGION, self.base)
        if got != bytes(self.model):
            raise AssertionError('region %d differs after the run'
                                 % self.base)
        h.shutdown()


class LibnbdBase(IotestCase):

    def setUp(self):
        super().setUp()
        if nbd is None:
            self.skipTest('python3-libnbd not available')
        self.path = self.img('disk.raw')
        with open(self.path, 'wb') as f:
            f.truncate(SIZE)

    def run_workers(self, url, spans=(1,), depth=DEPTH):
        workers = [Worker(url, i * REGION, 1000 + i, spans, depth)
                   for i in range(CONNECTIONS)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(timeout=300)
            self.assertFalse(w.is_alive(), 'worker hung')
        for w in workers:
            self.assertEqual(w.errors, [])
            self.assertGreater(w.max_in_flight, min(8, depth - 1))
        with open(self.path, 'rb') as f:
            data = f.read()
        for w in workers:
            self.assertTrue(data[w.base:w.base + REGION] == bytes(w.model),
                            'image region %d differs from the model'
                            % w.base)


class TestQemuNbd(LibnbdBase):
    BINARY = 'ours'

    def test_many_in_flight_many_connections(self):
        binary = self.ours('qemu-nbd') if self.BINARY == 'ours' \
            else self.real('qemu-nbd')
        sock = self.sock()
        self.start_daemon([binary, '-t', '-e', '0', '-k', sock, '-f', 'raw',
                           '--discard=unmap', self.path], socket_path=sock)
        self.run_workers(uri(sock))

    def test_mixed_sizes(self):
        """4 KiB requests mixed with ones of up to 512 KiB (beyond the
        server's 256 KiB input buffer), few in flight: connections move
        between the poller and their readers all the time."""
        sock = self.sock()
        self.start_daemon([self.ours('qemu-nbd'), '-t', '-e', '0', '-k',
                           sock, '-f', 'raw', '--discard=unmap', self.path],
                          socket_path=sock)
        self.run_workers(uri(sock), spans=(1, 1, 1, 1, 2, 16, 64, 128),
                         depth=3)

    def test_multi_conn_advertised(self):
        sock = self.sock()
        self.start_daemon([self.ours('qemu-nbd'), '-t', '-e', '4', '-k',
                           sock, '-f', 'raw', self.path], socket_path=sock)
        h = nbd.NBD()
        h.connect_uri(uri(sock))
        self.assertTrue(h.can_multi_conn())
        h.shutdown()


class TestQemuNbdReal(TestQemuNbd):
    BINARY = 'real'

    def test_mixed_sizes(self):
        self.skipTest('covered for ours')

    def test_multi_conn_advertised(self):
        self.skipTest('covered for ours')


class TestDaemon(LibnbdBase):

    def test_many_in_flight_many_connections(self):
        qsd = self.ours('qemu-storage-daemon')
        sock = self.sock('nbd')
        d, socks = start_qsd(self, qsd, extra=[
            '--blockdev', 'driver=file,node-name=f,filename=' + self.path,
            '--blockdev', 'driver=raw,node-name=disk,file=f'])
        with QMPClient(socks[0]) as q:
            q.negotiate()
            names = {c['name'] for c in q.cmd_ok('query-commands')}
            if 'block-export-add' not in names:
                self.skipTest('no block-export-add in our daemon yet')
            q.cmd_ok('nbd-server-start', {'addr': {'type': 'unix', 'data': {
                'path': sock}}})
            q.cmd_ok('block-export-add', {'type': 'nbd', 'id': 'e',
                                          'node-name': 'disk',
                                          'writable': True})
            self.run_workers(uri(sock, 'disk'))
            exports = q.cmd_ok('query-block-exports')
            self.assertEqual([e['id'] for e in exports], ['e'])


if __name__ == '__main__':
    unittest.main()
