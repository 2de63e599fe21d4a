"""Shared helpers of the test_migration_*.py iotests.

MigrationCase adds to CheckpointCase: a source and a destination storage
daemon on the same image, capabilities, migrate + wait, the bitmaps of a
node with their SHA-256 (x-debug-block-dirty-bitmap-sha256), a writer
thread that keeps writing through NBD until the source refuses, and
StreamProxy: a man in the middle of the migration stream that can hold,
corrupt, rewrite or cut it at a chosen section (it parses the framing of
docs/interop/migration-stream.rst, independently of the C code).
"""

import os
import socket
import struct
import threading
import time
import zlib

from ckpt_util import CheckpointCase, NODE, blockdev, nbd_connect  # noqa
from harness import proc, qmp

# Section types (docs/interop/migration-stream.rst).
NODE_SEC, BITMAP, BITMAP_DATA, BITMAP_END = 1, 2, 3, 4
CHECKPOINT, CHECKPOINTS_END, LIVE_DONE, SWITCHOVER, COMPLETE = 5, 6, 7, 8, 9
ERROR, LIVE_OK, ACTIVATED = 10, 20, 21

FINAL = ('completed', 'failed', 'cancelled')


def section_crc(header12, payload):
    return zlib.crc32(payload, zlib.crc32(header12)) & 0xffffffff


class StreamProxy:
    """Forward one migration connection from `listen` (unix path) to the
    destination at `target`, parsing the source's sections.

    act(sec_type, nth, payload, header) is called for each section of the
    source's stream before it is forwarded (nth counts sections of that
    type from 0); it returns None to forward unchanged, or a new
    (header, payload) pair, or 'hold' to stop forwarding until release(),
    or 'cut' to close both sides, or 'half' to send half of it and close.
    """

    def __init__(self, listen, target, act=None):
        self.listen_path = listen
        self.target = target
        self.act = act or (lambda *a: None)
        self.held = threading.Event()
        self.released = threading.Event()
        self.closed = threading.Event()
        self.seen = []                 # types of the source's sections
        self.srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.srv.bind(listen)
        self.srv.listen(1)
        self.a = self.b = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    # -- control -----------------------------------------------------------

    def release(self):
        self.released.set()

    def close(self):
        self.closed.set()           # before the release: nothing more goes
        self.released.set()
        for s in (self.a, self.b, self.srv):
            if s is not None:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                try:
                    s.close()
                except OSError:
                    pass
        self.closed.set()

    def wait_held(self, timeout=60):
        if not self.held.wait(timeout):
            raise AssertionError('the proxy never held the stream')

    # -- forwarding ----------------------------------------------------------

    def _recv_exact(self, n):
        buf = b''
        while len(buf) < n:
            d = self.a.recv(n - len(buf))
            if not d:
                raise EOFError
            buf += d
        return buf

    def _back(self):
        """Destination -> source, unchanged."""
        try:
            while True:
                d = self.b.recv(65536)
                if not d:
                    break
                self.a.sendall(d)
        except OSError:
            pass
        self.close()

    def _run(self):
        try:
            self.a, _ = self.srv.accept()
            self.b = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.b.connect(self.target)
            back = threading.Thread(target=self._back, daemon=True)
            back.start()
            pre = self._recv_exact(16)
            r = self.act('preamble', 0, pre, None)
            self.b.sendall(r if isinstance(r, bytes) else pre)
            counts = {}
            while True:
                h = self._recv_exact(16)
                typ, _flags, _seq, length, _crc = struct.unpack('>HHIII', h)
                payload = self._recv_exact(length) if length else b''
                nth = counts.get(typ, 0)
                counts[typ] = nth + 1
                self.seen.append(typ)
                r = self.act(typ, nth, payload, h)
                if r == 'hold':
                    self.held.set()
                    self.released.wait()
                    if self.closed.is_set():
                        return
                elif r == 'cut':
                    break
                elif r == 'half':
                    self.b.sendall((h + payload)[:(16 + len(payload)) // 2])
                    break
                elif r is not None:
                    h, payload = r
                try:
                    self.b.sendall(h + payload)
                except OSError:
                    # The destination hung up, maybe after saying why:
                    # let that reach the source before closing its side
                    # (as a direct connection would).
                    back.join(30)
                    break
        except (OSError, EOFError):
            pass
        self.close()


def flip_byte(payload, index=-1):
    """The payload with one bit flipped (CRC left stale)."""
    b = bytearray(payload)
    b[index] ^= 0x01
    return bytes(b)


def refresh_crc(header, payload):
    """A header whose CRC matches `payload` again."""
    return header[:12] + struct.pack('>I', section_crc(header[:12], payload))


class Writer(threading.Thread):
    """Writes 4 KiB blocks through an NBD export in a loop, until stop()
    or the first error (the source refuses once it handed over).  The
    offsets of the writes that succeeded are kept, in order.  With
    `flush`, it does not write but flushes and asks for block status in
    a loop until stop()."""

    def __init__(self, sock, export, size, seed=7, block=4096,
                 flush=False):
        super().__init__(daemon=True)
        import random
        self.rnd = random.Random(seed)
        self.sock, self.export, self.size = sock, export, size
        self.block = block
        self.flush = flush
        self.done = []
        self.error = None
        self.stopping = threading.Event()

    def run(self):
        h = nbd_connect(self.sock, self.export)
        try:
            while self.flush and not self.stopping.is_set():
                # Flushes and block status race with the switch-over.
                try:
                    h.flush()
                    h.block_status(self.size, 0, lambda *a: 0)
                except Exception:
                    time.sleep(0.001)
            while not self.stopping.is_set():
                off = self.rnd.randrange(0, self.size // self.block) * \
                    self.block
                try:
                    h.pwrite(b'\x5a' * self.block, off)
                except Exception as e:      # nbd.Error
                    self.error = e
                    break
                self.done.append(off)
        finally:
            try:
                h.shutdown()
            except Exception:
                pass

    def wait_some(self, n=20, timeout=60):
        proc.wait_for(lambda: len(self.done) >= n or self.error is not None,
                      timeout=timeout, what='%d NBD writes' % n)

    def stop(self):
        self.stopping.set()
        self.join(60)


class MigrationCase(CheckpointCase):

    def _qsd(self, extra=()):
        """Our storage daemon with its own QMP socket; (daemon, client)."""
        binary = self.ours('qemu-storage-daemon')
        n = len(self._daemons)
        sock = self.sock('qmp-m%d' % n)
        d = self.start_daemon(qmp.qsd_argv(binary, [sock], extra),
                              socket_path=sock)
        q = qmp.QMPClient(sock)
        q.negotiate()
        self.addCleanup(q.close)
        return d, q

    def _nbd(self, q):
        nsock = self.sock('nbd-m%d.sock' % len(self._daemons))
        q.cmd_ok('nbd-server-start', {'addr': {'type': 'unix', 'data': {
            'path': nsock}}})
        return nsock

    def source(self, path, node=NODE):
        """A storage daemon serving `path` (node `node`) and NBD; returns
        (daemon, qmp, nbd socket)."""
        d, q = self._qsd()
        q.cmd_ok('blockdev-add', blockdev(path, node))
        return d, q, self._nbd(q)

    def destination(self, path=None, node=NODE, incoming=None, nodes=None):
        """A storage daemon started with --incoming (a unix URI in the
        scratch dir unless given; 'defer' allowed) that adds `path` as
        `node` (or every (path, node) of `nodes`) while it waits.
        Returns (daemon, qmp, nbd socket, migration URI)."""
        uri = incoming or 'unix:' + self.sock('mig-%d.sock'
                                               % len(self._daemons))
        d, q = self._qsd(['--incoming', uri])
        for p, n in (nodes or ([(path, node)] if path else [])):
            q.cmd_ok('blockdev-add', blockdev(p, n))
        return d, q, self._nbd(q), uri

    def caps(self, q, dirty_bitmaps=True, events=True):
        q.cmd_ok('migrate-set-capabilities', {'capabilities': [
            {'capability': 'dirty-bitmaps', 'state': dirty_bitmaps},
            {'capability': 'events', 'state': events}]})

    def wait_final(self, q, timeout=120):
        """Poll query-migrate until completed, failed or cancelled."""
        info = {}

        def done():
            info.update(q.cmd_ok('query-migrate'))
            return info.get('status') in FINAL
        proc.wait_for(done, timeout=timeout, interval=0.02,
                      what='migration to end')
        return dict(info)

    def migrate(self, src_q, uri, expect='completed'):
        src_q.cmd_ok('migrate', {'uri': uri})
        info = self.wait_final(src_q)
        self.assertEqual(info['status'], expect, info)
        return info

    def bitmaps(self, q, node=NODE):
        """{name: (granularity, recording, persistent, count, sha256)}."""
        out = {}
        for n in q.cmd_ok('query-named-block-nodes'):
            if n['node-name'] != node:
                continue
            for b in n.get('dirty-bitmaps', []):
                if 'name' not in b:
                    continue
                # None for a bitmap that cannot be read (inconsistent).
                sha = q.cmd('x-debug-block-dirty-bitmap-sha256',
                            {'node': node, 'name': b['name']}).get(
                                'return', {}).get('sha256')
                out[b['name']] = (b['granularity'], b['recording'],
                                  b['persistent'], b['count'], sha)
        return out

    def checkpoints(self, q, node=NODE):
        """[(name, parent, bitmap, granularity, recording, usable,
        changed-bytes)] of a node."""
        return [(c['name'], c.get('parent'), c['bitmap'], c['granularity'],
                 c['recording'], c['usable'], c.get('changed-bytes'))
                for c in self.query(q, node)]

    def restart(self, path, node=NODE):
        """A fresh (not incoming) daemon on `path`."""
        return self.source(path, node=node)

    def can_write(self, sock, export, off=0):
        """Whether a write through the export succeeds."""
        h = nbd_connect(sock, export)
        try:
            h.pwrite(b'\x11' * 512, off)
            return True
        except Exception:
            return False
        finally:
            h.shutdown()

    def proxy(self, target_uri, act=None):
        """A StreamProxy in front of `target_uri`; returns (proxy, uri)."""
        path = self.sock('proxy-%d.sock' % int(time.monotonic() * 1000
                                               % 100000))
        p = StreamProxy(path, target_uri[len('unix:'):], act)
        self.addCleanup(p.close)
        return p, 'unix:' + path

    def events(self, q, wait=0.2):
        return [e['data']['status'] for e in q.get_events(wait)
                if e['event'] == 'MIGRATION']


def unlink_quiet(path):
    try:
        os.unlink(path)
    except OSError:
        pass
