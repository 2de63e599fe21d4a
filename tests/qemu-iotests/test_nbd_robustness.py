#!/usr/bin/python3
"""Untrusted NBD clients against our qemu-nbd (robustness catalogue items
28-36): malformed requests get an NBD error while the stream can be kept
in sync, otherwise only that connection is closed; nothing a client sends
makes the server crash, hang, allocate without bound or disturb other
clients.  Ends with a seeded fuzz of random and truncated conversations,
after which the server must still serve a well-behaved client."""

import os
import random
import re
import socket
import struct
import threading
import time
import unittest

from harness import IotestCase, proc
from harness import nbd as N

IOTEST_TIMEOUT = 900

KiB = 1024
MiB = 1024 * KiB
SIZE = 64 * MiB


def rss_kib(pid):
    with open('/proc/%d/status' % pid) as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1])
    return 0


class RobustBase(IotestCase):

    EXTRA = ()
    ENV = None

    def setUp(self):
        super().setUp()
        self.path = self.img('disk.raw')
        with open(self.path, 'wb') as f:
            f.truncate(SIZE)
            f.seek(MiB)
            f.write(b'\x5a' * MiB)
        self.sock_path = self.sock()
        self.daemon = self.start_daemon(
            [self.ours('qemu-nbd'), '-t', '-e', '0', '-k', self.sock_path,
             '-f', 'raw', '-x', 'exp'] + list(self.EXTRA) + [self.path],
            socket_path=self.sock_path, env=self.ENV)

    def client(self, strict=True, negotiate=True, contexts=()):
        c = N.NbdClient.unix(self.sock_path, strict=strict)
        self.addCleanup(c.close)
        if negotiate:
            c.negotiate('exp', contexts=contexts)
        return c

    def assert_healthy(self, known_data=True):
        """The daemon runs and a fresh client reads the known data (or,
        after random writes, reads back what it writes)."""
        self.assertTrue(self.daemon.running(), self.daemon.output()[-2000:])
        c = self.client()
        if known_data:
            self.assertEqual(c.read(MiB, 4096), b'\x5a' * 4096)
        else:
            data = os.urandom(8192)
            c.write(3 * MiB, data)
            self.assertEqual(c.read(3 * MiB, 8192), data)
        c.disconnect()

    def raw_header(self, cmd, offset, length, flags=0, handle=7,
                   magic=N.REQUEST_MAGIC):
        return struct.pack('>IHHQQI', magic, flags, cmd, handle, offset,
                           length)


class TestRequests(RobustBase):

    def test_28_bad_magic_closes_only_that_client(self):
        bystander = self.client()
        c = self.client(strict=False)
        c.send_raw(self.raw_header(N.CMD_READ, 0, 512, magic=0xdeadbeef))
        self.assertTrue(c.at_eof())
        self.assertIn('bad request magic', self.daemon.output())
        self.assertEqual(bystander.read(MiB, 512), b'\x5a' * 512)
        self.assert_healthy()

    def test_29_ranges(self):
        c = self.client(strict=False)
        for cmd, off, ln, err in (
                (N.CMD_READ, SIZE - 1, 2, N.EINVAL),
                (N.CMD_READ, 2 ** 64 - 1, 1, N.EINVAL),
                (N.CMD_READ, SIZE, 0xffffffff, N.EINVAL),
                (N.CMD_WRITE_ZEROES, SIZE - 1, 2, N.ENOSPC),
                (N.CMD_WRITE_ZEROES, 2 ** 64 - 4096, 8192, N.EINVAL),
                (N.CMD_TRIM, 2 ** 63, 2 ** 31, N.EINVAL),
                (N.CMD_CACHE, SIZE, 1, N.EINVAL)):
            c.request(cmd, off, ln)
            self.assertEqual(c.reply().error, err, (cmd, off, ln))
        c.request(N.CMD_WRITE, SIZE - 100, 200, 0, b'w' * 200)
        self.assertEqual(c.reply().error, N.ENOSPC)
        c.request(N.CMD_WRITE, 2 ** 64 - 100, 200, 0, b'w' * 200)
        self.assertEqual(c.reply().error, N.EINVAL)
        self.assertEqual(c.read(MiB, 512), b'\x5a' * 512)

    def test_30_oversized_payloads(self):
        c = self.client(strict=False)
        rss0 = rss_kib(self.daemon.pid)
        # 33 MiB write: drained, then EINVAL; the stream stays in sync.
        n = 33 * MiB
        c.request(N.CMD_WRITE, 0, n, 0, b'\xcc' * n)
        self.assertEqual(c.reply().error, N.EINVAL)
        c.request(N.CMD_READ, 0, 32 * MiB + 1)
        self.assertEqual(c.reply().error, N.EINVAL)
        self.assertEqual(c.read(0, 512), bytes(512))
        # A claim of 3 GiB: beyond the drain limit, the server hangs up
        # without reading (or allocating) it.
        c.send_raw(self.raw_header(N.CMD_WRITE, 0, 3 << 30))
        try:
            c.send_raw(b'\xcc' * MiB)
        except ConnectionError:
            pass                                # already closed
        self.assertTrue(c.at_eof())
        self.assertLess(rss_kib(self.daemon.pid) - rss0, 256 * 1024)
        self.assert_healthy()

    def test_31_bad_commands_and_flags(self):
        c = self.client(strict=False)
        cases = [
            (9, 0, 0, 0),                                 # unknown command
            (0x1234, 0, 512, 0),
            (N.CMD_READ, 0, 512, 1 << 9),                 # unknown flag
            (N.CMD_READ, 0, 512, N.CMD_FLAG_REQ_ONE),     # wrong command
            (N.CMD_WRITE_ZEROES, 0, 512, N.CMD_FLAG_DF),
            (N.CMD_BLOCK_STATUS, 0, 512, 0),              # no context
            (N.CMD_TRIM, 0, 512, N.CMD_FLAG_NO_HOLE),
            (N.CMD_FLUSH, 0, 0, N.CMD_FLAG_NO_HOLE),
            (N.CMD_CACHE, 0, 512, N.CMD_FLAG_REQ_ONE),
        ]
        for cmd, off, ln, fl in cases:
            c.request(cmd, off, ln, fl)
            self.assertEqual(c.reply().error, N.EINVAL, (cmd, fl))
        c.request(N.CMD_WRITE, 0, 4096, N.CMD_FLAG_NO_HOLE, b'\xee' * 4096)
        self.assertEqual(c.reply().error, N.EINVAL)
        self.assertEqual(c.read(0, 4096), bytes(4096))
        cases.append((N.CMD_WRITE, 0, 4096, N.CMD_FLAG_NO_HOLE))
        names = {N.CMD_READ: 'NBD_CMD_READ', N.CMD_WRITE: 'NBD_CMD_WRITE',
                 N.CMD_FLUSH: 'NBD_CMD_FLUSH', N.CMD_TRIM: 'NBD_CMD_TRIM',
                 N.CMD_CACHE: 'NBD_CMD_CACHE',
                 N.CMD_WRITE_ZEROES: 'NBD_CMD_WRITE_ZEROES',
                 N.CMD_BLOCK_STATUS: 'NBD_CMD_BLOCK_STATUS'}
        # One log line per refused request, naming the command.
        log = self.daemon.output()
        for cmd, off, ln, fl in cases:
            self.assertIn('%s (type %d, flags 0x%x, offset %d, length %d)'
                          % (names.get(cmd, 'unknown command'), cmd, fl,
                             off, ln), log)

    def test_31_df_without_structured_replies(self):
        c = self.client(strict=False, negotiate=False)
        c.start()
        c.opt_go('exp')
        c.request(N.CMD_READ, 0, 512, N.CMD_FLAG_DF)
        r = c.reply()
        self.assertEqual(r.error, N.EINVAL)
        self.assertEqual(c.read(MiB, 512), b'\x5a' * 512)

    def open_fds(self):
        return len(os.listdir('/proc/%d/fd' % self.daemon.pid))

    def threads(self):
        task = '/proc/%d/task' % self.daemon.pid
        names = []
        for t in os.listdir(task):
            try:
                with open(os.path.join(task, t, 'comm')) as f:
                    names.append(f.read().strip())
            except OSError:
                pass                            # the thread just ended
        return names

    def wait_connections_gone(self, base_fds):
        """Every connection torn down: its thread gone and its socket
        closed (the poller thread, once started, holds two fds)."""
        def gone():
            names = self.threads()
            poller = 2 if 'nbd-poller' in names else 0
            return 'nbd-client' not in names and \
                self.open_fds() == base_fds + poller
        proc.wait_for(gone, what='the connections to be torn down')

    def test_33_disconnect_mid_write(self):
        base = self.open_fds()
        c = self.client(strict=False)
        c.send_raw(self.raw_header(N.CMD_WRITE, MiB, 1 * MiB))
        c.send_raw(b'\x00' * (512 * KiB))       # half the payload
        c.close()
        c = self.client(strict=False)
        c.send_raw(self.raw_header(N.CMD_WRITE, MiB, 4096))
        c.close()                               # header only
        c = self.client(strict=False)
        c.send_raw(self.raw_header(N.CMD_READ, MiB, 4096)[:11])
        c.close()                               # half a header
        c = self.client(strict=False)
        c.write(5 * MiB, b'\x00' * 4096)        # a whole request,
        c.send_raw(self.raw_header(N.CMD_WRITE, MiB, 4096) + b'\x00' * 100)
        c.close()                               # then a partial one
        self.wait_connections_gone(base)        # cleaned up
        self.assert_healthy()                   # old data intact

    def test_34_abandoned_reads(self):
        for _ in range(3):
            c = self.client()
            for i in range(32):
                c.request(N.CMD_READ, (i % 2) * 32 * MiB, 32 * MiB)
            # Read a little, then vanish with replies pending.
            c.recv_exact(4096)
            c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                              struct.pack('ii', 1, 0))
            c.close()
        self.assert_healthy()


    def test_34_writes_not_held_up_by_a_client_that_does_not_read(self):
        # A client that stops reading its replies (with writes of its own
        # in flight) must not stall another client's writes.
        a = self.client()
        for i in range(8):
            a.request(N.CMD_WRITE, 4 * MiB + i * 4096, data=os.urandom(4096))
        for i in range(24):
            a.request(N.CMD_READ, 0, MiB)       # 24 MiB of replies, unread
        for i in range(8):
            a.request(N.CMD_WRITE, 5 * MiB + i * 4096, data=os.urandom(4096))
        b = self.client()
        data = [os.urandom(4096) for _ in range(256)]
        for i, d in enumerate(data):
            b.request(N.CMD_WRITE, 8 * MiB + i * 4096, data=d)
        for _ in data:
            self.assertEqual(b.reply().error, 0)
        for i in range(0, 256, 37):
            self.assertEqual(b.read(8 * MiB + i * 4096, 4096), data[i])
        b.disconnect()
        self.assert_healthy()

class TestRequestsWithoutPoller(TestRequests):
    """The same with every reader waiting for input on its own thread (the
    path taken when the poller thread cannot be started)."""
    ENV = {'BP_NBD_POLLER': 'off'}


class TestRequestsInPool(TestRequests):
    """The same with every request run by the connection's worker pool."""
    ENV = {'BP_NBD_INLINE': 'never'}


class TestPoller(RobustBase):
    """Idle connections are served by one poller thread (nbd/poller.c).  A
    client stopping half way through a request, or no longer reading its
    replies, must hold up nobody else, and replies the poller could only
    partly write must still reach their client whole and in order."""

    ENV = {'BP_NBD_DEBUG': '1'}

    def polled_counts(self, n):
        """(requests, served by the poller) of the first `n` connections
        to end, from the daemon's BP_NBD_DEBUG lines."""
        pat = re.compile(r'(\d+) requests \((\d+) served by the poller\)')

        def counts():
            return [(int(a), int(b))
                    for a, b in pat.findall(self.daemon.output())]
        proc.wait_for(lambda: len(counts()) >= n,
                      what='the connection statistics')
        return counts()[:n]

    def test_request_by_request_clients_are_served_by_the_poller(self):
        c = self.client()
        for i in range(40):
            c.write(4 * MiB + i * 4096, b'%04d' % i * 1024)
            self.assertEqual(c.read(4 * MiB + i * 4096, 4096),
                             b'%04d' % i * 1024)
        c.disconnect()
        [(requests, polled)] = self.polled_counts(1)
        self.assertEqual(requests, 81)          # and NBD_CMD_DISC
        # The reader serves the first request (and any that come while
        # it still has input), then parks the idle connection.
        self.assertGreater(polled, 40)

    def test_half_sent_request_holds_up_only_its_client(self):
        a = self.client(strict=False)
        data = os.urandom(4096)
        a.send_raw(self.raw_header(N.CMD_WRITE, 6 * MiB, 4096, handle=77) +
                   data[:1000])
        b = self.client()
        for i in range(64):
            b.write(7 * MiB + i * 4096, bytes([i]) * 4096)
        for i in range(0, 64, 7):
            self.assertEqual(b.read(7 * MiB + i * 4096, 4096),
                             bytes([i]) * 4096)
        a.send_raw(data[1000:])
        magic, error, handle = struct.unpack('>IIQ', a.recv_exact(16))
        self.assertEqual((magic, error, handle),
                         (N.SIMPLE_REPLY_MAGIC, 0, 77))
        b.disconnect()
        self.assertEqual(self.client().read(6 * MiB, 4096), data)

    def unread_replies(self, structured):
        pattern = os.urandom(4 * MiB)
        w = self.client()
        for off in range(0, len(pattern), 256 * KiB):
            w.write(8 * MiB + off, pattern[off:off + 256 * KiB])
        w.disconnect()
        a = self.client(negotiate=False)
        a.negotiate('exp', structured=structured)
        rnd = random.Random(5)
        expect = {}

        def send_reads():
            # 12 MiB of replies nobody reads for now: far more than the
            # socket holds, so the poller's writes come up short.  (On a
            # thread: the server stops reading requests while its replies
            # cannot go out, and then these sends wait too.)
            for _ in range(400):
                off = rnd.randrange(len(pattern) // 4096 - 16) * 4096
                length = rnd.choice([4096, 12 * KiB, 64 * KiB])
                # Recorded before the request goes out: its reply can
                # arrive, and be read, before request() returns here.
                handle = len(expect) + 1
                expect[handle] = pattern[off:off + length]
                a.request(N.CMD_READ, 8 * MiB + off, length, handle=handle)
        sender = threading.Thread(target=send_reads)
        sender.start()
        self.addCleanup(sender.join)
        b = self.client()
        for i in range(128):
            b.write(2 * MiB + i * 4096, bytes([i]) * 4096)
        for i in range(0, 128, 9):
            self.assertEqual(b.read(2 * MiB + i * 4096, 4096),
                             bytes([i]) * 4096)
        b.disconnect()
        for _ in range(400):
            r = a.reply()
            self.assertEqual(r.error, 0)
            self.assertEqual(r.data, expect[r.handle])
        sender.join()
        a.disconnect()
        self.assert_healthy()

    def test_unread_replies_arrive_whole_structured(self):
        self.unread_replies(True)

    def test_unread_replies_arrive_whole_simple(self):
        self.unread_replies(False)

    def test_poller_off(self):
        self.daemon.stop()
        self.daemon = self.start_daemon(
            [self.ours('qemu-nbd'), '-t', '-e', '0', '-k', self.sock_path,
             '-f', 'raw', '-x', 'exp', self.path],
            socket_path=self.sock_path,
            env={'BP_NBD_DEBUG': '1', 'BP_NBD_POLLER': 'off'})
        c = self.client()
        for i in range(10):
            c.read(i * 4096, 4096)
        c.disconnect()
        self.assertEqual(self.polled_counts(1), [(11, 0)])


class TestReadOnly(RobustBase):
    EXTRA = ('-r',)

    def test_32_writes_refused(self):
        before = open(self.path, 'rb').read()
        c = self.client(strict=False)
        c.request(N.CMD_WRITE, MiB, 4096, N.CMD_FLAG_FUA, b'\x01' * 4096)
        self.assertEqual(c.reply().error, N.EPERM)
        c.request(N.CMD_TRIM, 0, SIZE)
        self.assertEqual(c.reply().error, N.EPERM)
        c.request(N.CMD_WRITE_ZEROES, MiB, MiB, N.CMD_FLAG_NO_HOLE)
        self.assertEqual(c.reply().error, N.EPERM)
        c.flush()
        self.assertEqual(open(self.path, 'rb').read(), before)


class TestHandshake(RobustBase):

    def test_35_too_many_options(self):
        c = self.client(strict=False, negotiate=False)
        c.start()
        closed = False
        for i in range(1100):
            try:
                c.send_option(N.OPT_LIST)
                c.option_reply()     # the SERVER entry
                c.option_reply()     # the ACK
            except (N.NbdClosed, ConnectionError):
                closed = True
                break
        self.assertTrue(closed)
        self.assertGreaterEqual(i, 1000)
        self.assert_healthy()

    def test_35_huge_option(self):
        rss0 = rss_kib(self.daemon.pid)
        c = self.client(strict=False, negotiate=False)
        c.start()
        c.send_option(N.OPT_GO, length=100 * MiB)
        try:
            c.send_raw(b'\0' * (4 * MiB))
        except ConnectionError:
            pass
        self.assertTrue(c.at_eof())
        # A 1 MiB option is skipped and refused; negotiation goes on.
        c = self.client(strict=False, negotiate=False)
        c.start()
        c.send_option(N.OPT_INFO, b'\0' * MiB)
        _, rtype, _ = c.option_reply()
        self.assertEqual(rtype, N.REP_ERR_TOO_BIG)
        c.opt_go('exp')
        self.assertEqual(c.read(MiB, 4), b'\x5a' * 4)
        self.assertLess(rss_kib(self.daemon.pid) - rss0, 64 * 1024)

    def test_35_long_export_names(self):
        c = self.client(strict=False, negotiate=False)
        c.start()
        with self.assertRaises(N.NbdOptionError) as cm:
            c.opt_go('x' * 5000)
        self.assertEqual(cm.exception.rep, N.REP_ERR_INVALID)
        with self.assertRaises(N.NbdOptionError) as cm:
            c.opt_info('y' * 4096)
        self.assertEqual(cm.exception.rep, N.REP_ERR_UNKNOWN)
        c.send_option(N.OPT_EXPORT_NAME, b'z' * 5000)
        self.assertTrue(c.at_eof())
        self.assert_healthy()

    def test_36_unexpected_order(self):
        c = self.client(strict=False, negotiate=False)
        c.start()
        for _ in range(3):
            c.send_option(N.OPT_STARTTLS)
            _, rtype, _ = c.option_reply()
            self.assertEqual(rtype, N.REP_ERR_POLICY)
        with self.assertRaises(N.NbdOptionError) as cm:
            c.opt_info('missing')
        self.assertEqual(cm.exception.rep, N.REP_ERR_UNKNOWN)
        with self.assertRaises(N.NbdOptionError):
            c.opt_set_meta_context('exp', ['base:allocation'])
        # GO before STRUCTURED_REPLY: simple replies from then on.
        c.opt_go('exp')
        self.assertEqual(c.read(MiB, 512), b'\x5a' * 512)
        # Options after GO are not options any more: bad request magic
        # (once a request header's worth of bytes has arrived).
        c.send_option(N.OPT_STRUCTURED_REPLY, b'\0' * 12)
        self.assertTrue(c.at_eof())
        self.assert_healthy()

    def test_36_request_during_handshake(self):
        c = self.client(strict=False, negotiate=False)
        c.start()
        c.send_raw(self.raw_header(N.CMD_READ, 0, 512))
        self.assertTrue(c.at_eof())
        c = self.client(strict=False, negotiate=False)
        c.greeting()
        c.send_raw(struct.pack('>I', 0x80))      # unknown client flag
        self.assertTrue(c.at_eof())
        self.assert_healthy()

    def test_meta_context_malformed(self):
        c = self.client(strict=False, negotiate=False)
        c.start()
        c.opt_structured_reply()
        bad = [
            struct.pack('>I', 99) + b'exp',
            struct.pack('>I', 3) + b'exp' + struct.pack('>I', 5)
            + struct.pack('>I', 15) + b'base:allocation',
            struct.pack('>I', 3) + b'exp' + struct.pack('>I', 1)
            + struct.pack('>I', 0xffffffff),
            struct.pack('>I', 3) + b'exp' + struct.pack('>I', 0) + b'xx',
        ]
        for data in bad:
            c.send_option(N.OPT_SET_META_CONTEXT, data)
            _, rtype, _ = c.option_reply()
            self.assertEqual(rtype, N.REP_ERR_INVALID, data)
        got = c.opt_set_meta_context('exp', ['base:allocation'])
        self.assertEqual(list(got), ['base:allocation'])
        c.opt_go('exp')
        self.assertIn('base:allocation', c.block_status(0, MiB))


class TestFuzz(RobustBase):
    """Seeded random conversations; a failure prints the seed."""

    SEED = int(os.environ.get('BP_NBD_FUZZ_SEED', '20240607'))
    ROUNDS = int(os.environ.get('BP_NBD_FUZZ_ROUNDS', '300'))

    def _handshake_prefix(self, rnd):
        """A valid start of negotiation, cut at a random place."""
        parts = [struct.pack('>I', N.FLAG_C_FIXED_NEWSTYLE
                             | N.FLAG_C_NO_ZEROES)]
        if rnd.random() < 0.7:
            parts.append(struct.pack('>QII', N.OPTS_MAGIC,
                                     N.OPT_STRUCTURED_REPLY, 0))
        name = b'exp'
        parts.append(struct.pack('>QII', N.OPTS_MAGIC, N.OPT_GO,
                                 4 + len(name) + 2)
                     + struct.pack('>I', len(name)) + name
                     + struct.pack('>H', 0))
        blob = b''.join(parts)
        return blob if rnd.random() < 0.6 else blob[:rnd.randrange(len(blob))]

    def _random_request(self, rnd):
        cmd = rnd.choice([0, 1, 2, 3, 4, 5, 6, 7, 8, rnd.randrange(65536)])
        flags = rnd.choice([0, 1, 2, 4, 8, 16, rnd.randrange(65536)])
        off = rnd.choice([0, MiB, SIZE - 1, SIZE, 2 ** 63,
                          rnd.randrange(2 ** 64)])
        ln = rnd.choice([0, 1, 512, 65536, 32 * MiB + 1,
                         rnd.randrange(2 ** 32)])
        magic = N.REQUEST_MAGIC if rnd.random() < 0.9 \
            else rnd.randrange(2 ** 32)
        hdr = struct.pack('>IHHQQI', magic, flags, cmd,
                          rnd.randrange(2 ** 64), off, ln)
        if cmd == N.CMD_WRITE:
            hdr += os.urandom(min(ln, rnd.choice([0, 100, 4096, 70000])))
        return hdr

    def _conversation(self, rnd):
        c = N.NbdClient.unix(self.sock_path, strict=False, timeout=10)
        try:
            c.greeting()
            kind = rnd.randrange(4)
            if kind == 0:
                data = os.urandom(rnd.randrange(1, 4096))
            elif kind == 1:
                data = self._handshake_prefix(rnd)
            else:
                data = self._handshake_prefix(rnd)
                data += b''.join(self._random_request(rnd)
                                 for _ in range(rnd.randrange(1, 12)))
                if kind == 3:
                    cut = rnd.randrange(len(data))
                    data = data[:cut]
            c.sock.sendall(data)
            # Read whatever comes back for a moment, then hang up
            # (sometimes abruptly).
            c.sock.settimeout(0.05)
            try:
                while c.sock.recv(1 << 16):
                    pass
            except (socket.timeout, ConnectionError):
                pass
            if rnd.random() < 0.5:
                c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                  struct.pack('ii', 1, 0))
        except (ConnectionError, N.NbdClosed, socket.timeout):
            pass
        finally:
            c.close()

    def test_fuzz(self):
        rnd = random.Random(self.SEED)
        for i in range(self.ROUNDS):
            try:
                self._conversation(rnd)
            except Exception as e:
                self.fail('round %d (seed %d): %r' % (i, self.SEED, e))
            if not self.daemon.running():
                self.fail('server died in round %d (seed %d):\n%s'
                          % (i, self.SEED, self.daemon.output()[-3000:]))
        # Every connection is torn down eventually: a new client works.
        proc.wait_for(lambda: self._open_fds() < 64, timeout=60,
                      what='connections to be torn down')
        self.assert_healthy(known_data=False)

    def _open_fds(self):
        return len(os.listdir('/proc/%d/fd' % self.daemon.pid))


if __name__ == '__main__':
    unittest.main()
