#!/usr/bin/python3
"""QMP robustness: huge and deeply nested messages, clients that vanish
mid-message or mid-reply, a seeded garbage fuzz loop, and several monitors
at once.  After each abuse the daemon must still serve other clients."""

import json
import os
import random
import socket
import threading
import unittest

from harness import IotestCase, proc
from harness.qmp import QMPClient, QMPClosed, error_class, start_qsd

MiB = 1024 * 1024


class RobustCase(IotestCase):

    N_MONITORS = 2

    def setUp(self):
        super().setUp()
        self.daemon, self.socks = start_qsd(
            self, self.ours('qemu-storage-daemon'), self.N_MONITORS)

    def client(self, i=0, negotiate=True):
        c = QMPClient(self.socks[i], timeout=60)
        self.addCleanup(c.close)
        if negotiate:
            c.negotiate()
        return c

    def send_threaded(self, c, data):
        """Send a big blob while we read replies (avoids a deadlock when
        the server answers before it has read everything)."""
        t = threading.Thread(target=self._send_ignoring_errors,
                             args=(c, data))
        t.start()
        return t

    @staticmethod
    def _send_ignoring_errors(c, data):
        try:
            c.raw_send(data)
        except OSError:
            pass

    def assertServes(self, i=None):
        """A fresh client on every monitor (or monitor i) still works."""
        for k in (range(len(self.socks)) if i is None else [i]):
            c = self.client(k)
            self.assertEqual(c.cmd('query-version', id='alive')['id'],
                             'alive')
            c.close()
        self.assertTrue(self.daemon.running())


class TestBig(RobustCase):

    def test_10mb_string_id(self):
        c = self.client()
        big = 'x' * (10 * MiB)
        t = self.send_threaded(c, json.dumps(
            {'execute': 'query-version', 'id': big}).encode())
        r = c.recv()
        t.join(60)
        self.assertIn('return', r)
        self.assertEqual(r['id'], big)
        self.assertServes()

    def test_10mb_array_argument(self):
        c = self.client()
        blob = b'{"execute": "query-version", "arguments": {"x": [' + \
            b'1,' * (5 * MiB) + b'1]}, "id": "arr"}'
        t = self.send_threaded(c, blob)
        r = c.recv()
        t.join(60)
        self.assertEqual(error_class(r), 'GenericError')
        self.assertServes()

    def test_over_size_limit(self):
        c = self.client()
        blob = b'{"execute": "query-version", "id": "' + \
            b'y' * (65 * MiB) + b'"}'
        t = self.send_threaded(c, blob)
        r = c.recv()
        t.join(120)
        self.assertEqual(error_class(r), 'GenericError')
        self.assertIn('size limit', r['error']['desc'])
        self.assertEqual(c.cmd('query-version', id=1)['id'], 1)
        self.assertServes()

    def test_deep_nesting(self):
        c = self.client()
        for depth in (10000, 100000):
            with self.subTest(depth=depth):
                blob = b'{"execute": "query-version", "id": ' + \
                    b'[' * depth + b']' * depth + b'}'
                t = self.send_threaded(c, blob)
                r = c.recv()
                t.join(60)
                self.assertEqual(error_class(r), 'GenericError')
                self.assertIn('nesting', r['error']['desc'])
                self.assertEqual(c.cmd('query-version', id=2)['id'], 2)
        self.assertServes()

    def test_nesting_within_limit(self):
        c = self.client()
        # 1000 levels are accepted (the limit is 1024); the echo is
        # checked as text because Python's json module recurses.
        depth = 1000
        c.raw_send(b'{"execute": "query-version", "id": ' +
                   b'[' * depth + b']' * depth + b'}')
        line = c.recv_line()
        self.assertTrue(line.startswith(b'{"return": '), line[:100])
        self.assertTrue(line.endswith(b', "id": ' + b'[' * depth +
                                      b']' * depth + b'}'), line[-100:])

    def test_unclosed_nesting_then_disconnect(self):
        c = self.client()
        c.raw_send(b'[' * 200000)
        c.close()
        self.assertServes()


class TestDisconnect(RobustCase):

    def test_disconnect_mid_message(self):
        for cut in (1, 10, 27):
            c = self.client()
            c.raw_send(b'{"execute": "query-version", "id": 1}'[:cut])
            c.close()
        self.assertServes()

    def test_disconnect_before_greeting_read(self):
        for _ in range(20):
            s = socket.socket(socket.AF_UNIX)
            s.connect(self.socks[0])
            s.close()
        self.assertServes()

    def test_disconnect_with_replies_pending(self):
        # Many requests, then close without reading the replies.
        c = self.client()
        c.raw_send(b'{"execute": "query-qmp-schema"}' * 200)
        c.sock.shutdown(socket.SHUT_RDWR)
        c.close()
        self.assertServes()

    def test_reset_connection(self):
        c = self.client()
        c.raw_send(b'{"execute": "query-qmp-schema"}' * 50)
        # SO_LINGER 0: close sends RST instead of FIN.
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                          b'\x01\x00\x00\x00\x00\x00\x00\x00')
        c.close()
        self.assertServes()

    def test_half_closed_client(self):
        c = self.client()
        c.raw_send(b'{"execute": "query-version", "id": "last"}')
        c.sock.shutdown(socket.SHUT_WR)
        self.assertEqual(c.recv()['id'], 'last')
        self.assertTrue(c.eof())
        self.assertServes()


class TestEventsAfterDisconnect(RobustCase):
    """Item 45: clients that vanish mid-command or mid-object leave the
    event queue alone: every negotiated session, old or new, on either
    monitor, still gets each event exactly once."""

    def setUp(self):
        super().setUp()
        self.raw = self.img('disk.raw')
        with open(self.raw, 'wb') as f:
            f.truncate(MiB)
        c = self.client(0)
        names = {x['name'] for x in c.cmd_ok('query-commands')}
        if 'block-export-add' not in names:
            self.skipTest('our daemon has no block-export-add yet')
        c.cmd_ok('blockdev-add', {'driver': 'raw', 'node-name': 'disk',
                                  'file': {'driver': 'file',
                                           'filename': self.raw}})
        c.cmd_ok('nbd-server-start', {'addr': {'type': 'unix', 'data': {
            'path': self.sock('nbd')}}})
        c.close()

    def export_args(self, exp_id):
        return {'type': 'nbd', 'id': exp_id, 'node-name': 'disk'}

    def exports(self, c):
        return sorted(e['id'] for e in c.cmd_ok('query-block-exports'))

    def delete_and_expect_event(self, actor, observers, exp_id):
        """Delete export exp_id through `actor`; each observer (and the
        actor) gets one BLOCK_EXPORT_DELETED for it, and no other."""
        actor.cmd_ok('block-export-del', {'id': exp_id})
        for c in [actor] + observers:
            ev = c.wait_event('BLOCK_EXPORT_DELETED', timeout=30)
            self.assertEqual(ev['data'], {'id': exp_id})
        # One more round trip each: a duplicate would be queued by now
        # (events are sent before the reply that follows them).
        for c in [actor] + observers:
            self.assertIn('return', c.cmd('query-version'))
            self.assertEqual(c.get_events(), [])

    def abuse(self, i, round):
        """Each way a client can vanish; returns the id of an export a
        vanished client created (or None)."""
        c = self.client(i)
        exp_id = None
        kind = round % 5
        if kind == 0:           # half a JSON object, then close
            c.raw_send(b'{"execute": "block-export-add", "arguments": '
                       b'{"type": "nbd", "id": "half", ')
        elif kind == 1:         # a command whose reply is never read
            exp_id = 'gone%d' % round
            c.send('block-export-add', self.export_args(exp_id))
        elif kind == 2:         # same, connection reset
            exp_id = 'rst%d' % round
            c.send('block-export-add', self.export_args(exp_id))
            c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                              b'\x01\x00\x00\x00\x00\x00\x00\x00')
        elif kind == 3:         # half a message in a half-closed socket
            c.raw_send(b'{"execute": "query-qmp-schema", "id": [1, {"a"')
            c.sock.shutdown(socket.SHUT_WR)
        else:                   # many commands, nothing read
            c.raw_send(b'{"execute": "query-block-exports"}' * 100)
        c.close()
        return exp_id

    def test_events_reach_other_sessions(self):
        # Negotiated before any abuse, on each monitor; one negotiated
        # client that never reads until the end.
        early = [self.client(0), self.client(1)]
        unnegotiated = self.client(1, negotiate=False)
        seen = []
        for round in range(10):
            with self.subTest(round=round):
                exp_id = self.abuse(round % 2, round)
                late = self.client((round + 1) % 2)
                if exp_id:
                    # The vanished client's command still ran.
                    proc.wait_for(lambda: exp_id in self.exports(late),
                                  timeout=30, what='export %s' % exp_id)
                else:
                    exp_id = 'e%d' % round
                    late.cmd_ok('block-export-add',
                                self.export_args(exp_id))
                self.delete_and_expect_event(late, early, exp_id)
                seen.append(exp_id)
                self.assertEqual(self.exports(late), [])
                late.close()
        # Sessions that did not negotiate get no events at all.
        self.assertEqual(unnegotiated.events, [])
        self.assertEqual(error_class(unnegotiated.cmd('query-version')),
                         'CommandNotFound')
        self.assertEqual(unnegotiated.events, [])
        # The server freed the vanished sessions: a quit ends every
        # session left with SHUTDOWN.
        early[0].cmd_ok('quit')
        for c in early:
            self.assertEqual(c.wait_event('SHUTDOWN')['data']['reason'],
                             'host-qmp-quit')
            self.assertTrue(c.eof())
        self.assertEqual(self.daemon.wait(), 0)
        self.assertEqual(len(seen), 10)


class TestFuzz(RobustCase):

    N_MONITORS = 1
    SEED = 20240601
    ROUNDS = 2000

    TEMPLATES = [
        b'{"execute": "query-version", "id": %d}',
        b'{"execute": "qmp_capabilities", "arguments": {"enable": []}}',
        b'{"execute": "query-commands", "arguments": {"a": [1, {"b": '
        b'"c"}]}}',
        b'{"execute": "query-qmp-schema", "id": {"k": [true, null, 1.5]}}',
        b"{'execute': 'query-version', 'id': 'sq\\'x'}",
    ]

    def mutate(self, rng, i):
        base = bytearray(rng.choice(self.TEMPLATES).replace(b'%d',
                                                            b'%d' % i))
        kind = rng.randrange(5)
        if kind == 0:           # random bytes
            return bytes(rng.randrange(256) for _ in range(rng.randrange(1,
                                                                       40)))
        for _ in range(rng.randrange(1, 4)):
            if not base:
                break
            pos = rng.randrange(len(base))
            op = rng.randrange(4)
            if op == 0:
                base[pos] = rng.randrange(256)
            elif op == 1:
                del base[pos]
            elif op == 2:
                base.insert(pos, rng.choice(b'{}[]",:\\\'\x00\xff'))
            else:
                base = base[:pos]
        return bytes(base)

    def test_fuzz(self):
        rng = random.Random(self.SEED)
        c = self.client()
        for i in range(self.ROUNDS):
            c.raw_send(self.mutate(rng, i))
            if i % 100 == 99:
                # Resynchronise and make sure the session still answers;
                # everything received in between must be valid replies.
                c.raw_send(b'\xff\n"sync" {"execute": "query-version", '
                           b'"id": "sync%d"}\n' % i)
                while True:
                    r = c.recv(timeout=60)
                    self.assertTrue('return' in r or 'error' in r, r)
                    if r.get('id') == 'sync%d' % i:
                        break
        self.assertServes()


class TestMonitors(RobustCase):

    N_MONITORS = 3

    def test_several_monitors(self):
        clients = [self.client(i) for i in range(3)]
        for round in range(5):
            for i, c in enumerate(clients):
                c.send('query-version', id='%d-%d' % (i, round))
            for i, c in enumerate(clients):
                self.assertEqual(c.recv()['id'], '%d-%d' % (i, round))

    def test_several_clients_per_monitor(self):
        clients = [self.client(0) for _ in range(5)]
        for i, c in enumerate(clients):
            self.assertEqual(c.cmd('query-version', id=i)['id'], i)

    def test_independent_negotiation(self):
        a = self.client(0)
        b = self.client(1, negotiate=False)
        self.assertEqual(error_class(b.cmd('query-version')),
                         'CommandNotFound')
        self.assertIn('return', a.cmd('query-version'))

    def test_abuse_on_one_monitor(self):
        bad = self.client(0)
        good = self.client(1)
        t = self.send_threaded(bad, b'[' * (3 * MiB))
        self.assertIn('return', good.cmd('query-version'))
        t.join(60)
        bad.close()
        self.assertServes()

    def test_client_not_reading(self):
        # Flood with requests but never read: the server must throttle
        # (stop reading) rather than grow without bound or block others.
        lazy = self.client(0)
        lazy.sock.setblocking(False)
        sent = 0
        req = b'{"execute": "query-qmp-schema"}' * 100
        try:
            while sent < 64 * MiB:
                sent += lazy.sock.send(req)
        except BlockingIOError:
            pass
        good = self.client(1)
        self.assertIn('return', good.cmd('query-version'))
        lazy.close()
        self.assertServes()


if __name__ == '__main__':
    unittest.main()
