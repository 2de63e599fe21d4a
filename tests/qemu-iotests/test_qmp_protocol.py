#!/usr/bin/python3
"""QMP protocol conformance of our qemu-storage-daemon: greeting,
capability negotiation, id echo, envelope errors, argument validation,
replies as single CRLF-terminated ASCII lines, events."""

import json
import unittest

from harness import IotestCase
from harness.qmp import QMPClient, error_class, start_qsd


class QmpCase(IotestCase):

    def setUp(self):
        super().setUp()
        self.daemon, socks = start_qsd(self, self.ours('qemu-storage-daemon'))
        self.qmp = QMPClient(socks[0])
        self.addCleanup(self.qmp.close)

    def assertError(self, reply, cls='GenericError', desc=None, id=None):
        self.assertIn('error', reply, reply)
        self.assertEqual(set(reply['error']), {'class', 'desc'})
        self.assertEqual(reply['error']['class'], cls, reply)
        self.assertIsInstance(reply['error']['desc'], str)
        if desc is not None:
            self.assertIn(desc, reply['error']['desc'])
        if id is not None:
            self.assertEqual(reply.get('id'), id)
        self.assertNotIn('return', reply)


class TestGreeting(QmpCase):

    def test_greeting_shape(self):
        g = self.qmp.greeting
        self.assertEqual(list(g), ['QMP'])
        self.assertEqual(set(g['QMP']), {'version', 'capabilities'})
        v = g['QMP']['version']
        self.assertEqual(set(v), {'qemu', 'package'})
        self.assertEqual(set(v['qemu']), {'major', 'minor', 'micro'})
        for k in ('major', 'minor', 'micro'):
            self.assertIsInstance(v['qemu'][k], int)
        self.assertIsInstance(g['QMP']['capabilities'], list)

    def test_greeting_matches_query_version(self):
        self.qmp.negotiate()
        self.assertEqual(self.qmp.cmd_ok('query-version'),
                         self.qmp.greeting['QMP']['version'])

    def test_lines_are_crlf_ascii(self):
        self.qmp.raw_send(b'{"execute":"qmp_capabilities","id":"\\u00e9"}')
        line = self.qmp.recv_line()
        self.assertNotIn(b'\n', line)
        line.decode('ascii')
        self.assertEqual(json.loads(line), {'return': {}, 'id': '\u00e9'})


class TestNegotiation(QmpCase):

    def test_commands_refused_before_negotiation(self):
        for name in ('query-version', 'quit', 'nosuch'):
            r = self.qmp.cmd(name, id=name)
            self.assertError(r, 'CommandNotFound',
                             "Expecting capabilities negotiation", id=name)
        self.assertTrue(self.daemon.running())

    def test_negotiate(self):
        self.assertEqual(self.qmp.cmd('qmp_capabilities'), {'return': {}})
        self.assertIn('return', self.qmp.cmd('query-version'))

    def test_double_negotiation(self):
        self.qmp.negotiate()
        r = self.qmp.cmd('qmp_capabilities', id=7)
        self.assertError(r, 'CommandNotFound', 'already complete', id=7)
        self.assertIn('return', self.qmp.cmd('query-version'))

    def test_oob_not_offered(self):
        self.assertNotIn('oob', self.qmp.greeting['QMP']['capabilities'])
        r = self.qmp.cmd('qmp_capabilities', {'enable': ['oob']})
        self.assertError(r, 'GenericError', "'oob'")
        # still in negotiation mode
        self.assertError(self.qmp.cmd('query-version'), 'CommandNotFound')
        self.qmp.negotiate()

    def test_failed_negotiation_keeps_mode(self):
        r = self.qmp.cmd('qmp_capabilities', {'enable': 'oob'})
        self.assertError(r, 'GenericError', "'enable'")
        self.assertError(self.qmp.cmd('query-version'), 'CommandNotFound')

    def test_exec_oob_rejected(self):
        self.qmp.negotiate()
        self.qmp.raw_send(b'{"exec-oob": "query-version", "id": 3}')
        self.assertError(self.qmp.recv(), 'GenericError', "'exec-oob'",
                         id=3)


class TestIdEcho(QmpCase):

    IDS = ['abc', '', 0, -1, 42, 2**53, 1.5, True, False, None, [],
           [1, 'two', {'three': 3}], {}, {'a': {'b': [None, 1.25]}},
           'unicode \u00e9\u4e2d\U0001f600', 'quote " back \\ nl \n']

    def test_id_echo_success(self):
        self.qmp.negotiate()
        for id in self.IDS:
            with self.subTest(id=id):
                r = self.qmp.cmd('query-version', id=id)
                self.assertIn('return', r)
                self.assertIn('id', r)
                self.assertEqual(r['id'], id)

    def test_id_echo_errors(self):
        for id in self.IDS:
            with self.subTest(id=id):
                r = self.qmp.cmd('query-version', id=id)
                self.assertEqual(r.get('id', 'missing'), id)
                self.qmp.raw_send(json.dumps({'execute': 3, 'id': id}))
                r = self.qmp.recv()
                self.assertError(r, id=id)
                self.assertEqual(r['id'], id)

    def test_no_id_no_id(self):
        self.qmp.negotiate()
        self.assertNotIn('id', self.qmp.cmd('query-version'))
        self.assertNotIn('id', self.qmp.cmd('nosuch'))


class TestEnvelope(QmpCase):

    CASES = [
        (b'{"execute": }', 'JSON parse error'),
        (b'{"execute": "query-version"', None),   # completed below
        (b'\xff', 'JSON parse error'),
        (b'\x01', 'JSON parse error'),
        (b'[1, 2]', 'QMP input must be a JSON object'),
        (b'"query-version"', 'QMP input must be a JSON object'),
        (b'17 ', 'QMP input must be a JSON object'),
        (b'null ', 'QMP input must be a JSON object'),
        (b'{"arguments": {}}', "lacks member 'execute'"),
        (b'{}', "lacks member 'execute'"),
        (b'{"execute": 1}', "'execute' must be a string"),
        (b'{"execute": null}', "'execute' must be a string"),
        (b'{"execute": ["x"]}', "'execute' must be a string"),
        (b'{"execute": "query-version", "arguments": []}',
         "'arguments' must be an object"),
        (b'{"execute": "query-version", "arguments": null}',
         "'arguments' must be an object"),
        (b'{"execute": "query-version", "arguments": "x"}',
         "'arguments' must be an object"),
        (b'{"execute": "query-version", "extra": 1}',
         "'extra' is unexpected"),
        (b'{"execute": "query-version", "execute": "quit"}',
         'duplicate key'),
        (b'{"execute": "query-version" /* comment */}', 'JSON parse error'),
        (b'{"execute": "query-version", "id": 01}', 'JSON parse error'),
        (b'{"execute": "query-version", "id": NaN}', 'JSON parse error'),
        (b'{"execute": "query-version", "id": [1,]}', 'JSON parse error'),
        (b'{"execute": "query-version", "id": "\\x"}', 'JSON parse error'),
        (b'{"execute": "query-version", "id": "\\ud800"}',
         'JSON parse error'),
        (b'{"execute": "query-version", "id": "\xc0\x80"}',
         'JSON parse error'),
        (b'{"execute": "query-version", "id": 1e999}', 'JSON parse error'),
    ]

    def test_malformed(self):
        self.qmp.negotiate()
        for data, desc in self.CASES:
            if desc is None:
                continue
            with self.subTest(data=data):
                # Each case on its own line; the newline also ends any
                # value the bad byte started.
                self.qmp.raw_send(data + b'\n')
                r = self.qmp.recv()
                self.assertError(r, 'GenericError', desc)
                self.assert_resynced()

    def assert_resynced(self):
        """Drain the extra errors of re-synchronisation; then an unknown
        command still gets CommandNotFound and a known one its reply."""
        self.qmp.raw_send(b'\xff\n{"execute": "no-such-command", '
                          b'"id": "sync"}\n')
        while True:
            r = self.qmp.recv()
            if r.get('id') == 'sync':
                break
            # Parse errors, or a value left over after re-synchronisation
            # that is not an object.
            self.assertError(r, 'GenericError')
        self.assertError(r, 'CommandNotFound',
                         'The command no-such-command has not been found')
        self.assertIn('return', self.qmp.cmd('query-version'))

    def test_control_bytes_in_strings(self):
        """A raw newline, or any other byte below 0x20, inside a JSON
        string is a parse error (JSON wants them escaped); DEL (0x7f) is
        an ordinary character."""
        self.qmp.negotiate()
        templates = [
            b'{"execute": "query-version", "id": "a%sb"}',
            b'{"execute": "query-%sversion"}',
            b'{"execute": "query-version", "arguments": {"x%s": 1}}',
            b'{"exe%scute": "query-version"}',
        ]
        for byte in range(0x20):
            for t in templates:
                data = t % bytes([byte])
                with self.subTest(data=data):
                    self.qmp.raw_send(data + b'\n')
                    r = self.qmp.recv()
                    self.assertError(r, 'GenericError', 'JSON parse error')
                    self.assert_resynced()
        # The escaped forms are fine.
        r = self.qmp.cmd('query-version', id='a\nb\x01\x1f\x7f')
        self.assertEqual(r['id'], 'a\nb\x01\x1f\x7f')
        self.qmp.raw_send(b'{"execute": "query-version", "id": "a\x7fb"}')
        self.assertEqual(self.qmp.recv()['id'], 'a\x7fb')

    def test_split_message(self):
        self.qmp.negotiate()
        msg = b'{"execute": "query-version", "id": "split"}'
        for b in msg:
            self.qmp.raw_send(bytes([b]))
        r = self.qmp.recv()
        self.assertEqual(r['id'], 'split')

    def test_concatenated_messages(self):
        self.qmp.negotiate()
        self.qmp.raw_send(b''.join(b'{"execute":"query-version","id":%d}'
                                   % i for i in range(50)))
        for i in range(50):
            self.assertEqual(self.qmp.recv()['id'], i)

    def test_single_quotes(self):
        self.qmp.negotiate()
        self.qmp.raw_send(b"{'execute': 'query-version', 'id': 'it\\'s'}")
        self.assertEqual(self.qmp.recv()['id'], "it's")

    def test_unknown_command(self):
        self.qmp.negotiate()
        r = self.qmp.cmd('no-such-command', id='u')
        self.assertError(r, 'CommandNotFound',
                         'The command no-such-command has not been found',
                         id='u')


class TestArguments(QmpCase):

    def test_unexpected_argument(self):
        self.qmp.negotiate()
        r = self.qmp.cmd('query-version', {'bogus': 1})
        self.assertError(r, 'GenericError', "Parameter 'bogus' is unexpected")

    def test_empty_arguments(self):
        self.qmp.negotiate()
        self.assertIn('return', self.qmp.cmd('query-version', {}))

    def test_wrong_type(self):
        r = self.qmp.cmd('qmp_capabilities', {'enable': 'oob'})
        self.assertError(r, 'GenericError',
                         "Invalid parameter type for 'enable', "
                         "expected: array")
        r = self.qmp.cmd('qmp_capabilities', {'enable': [1]})
        self.assertError(r, 'GenericError',
                         "Invalid parameter type for 'enable[0]', "
                         "expected: string")

    def test_bad_enum_value(self):
        r = self.qmp.cmd('qmp_capabilities', {'enable': ['bogus']})
        self.assertError(r, 'GenericError',
                         "does not accept value 'bogus'")

    def test_unknown_member_before_negotiation(self):
        r = self.qmp.cmd('qmp_capabilities', {'x': 1})
        self.assertError(r, 'GenericError', "Parameter 'x' is unexpected")


class TestQueries(QmpCase):

    def test_query_commands(self):
        self.qmp.negotiate()
        names = [c['name'] for c in self.qmp.cmd_ok('query-commands')]
        for n in ('qmp_capabilities', 'query-version', 'query-commands',
                  'query-qmp-schema', 'quit'):
            self.assertIn(n, names)
        self.assertEqual(len(names), len(set(names)))
        for c in self.qmp.cmd_ok('query-commands'):
            self.assertEqual(list(c), ['name'])


class TestEvents(QmpCase):

    def test_shutdown_event_on_quit(self):
        other = QMPClient(self.qmp.path.replace('qmp0', 'qmp0'))
        self.addCleanup(other.close)
        other.negotiate()
        self.qmp.negotiate()
        self.assertEqual(self.qmp.cmd('quit', id='q'),
                         {'return': {}, 'id': 'q'})
        for client in (self.qmp, other):
            ev = client.wait_event('SHUTDOWN')
            self.assertEqual(set(ev), {'event', 'data', 'timestamp'})
            self.assertEqual(ev['data'], {'guest': False,
                                          'reason': 'host-qmp-quit'})
            ts = ev['timestamp']
            self.assertEqual(set(ts), {'seconds', 'microseconds'})
            self.assertIsInstance(ts['seconds'], int)
            self.assertTrue(0 <= ts['microseconds'] < 1000000)
            self.assertTrue(client.eof())
        self.assertEqual(self.daemon.wait(), 0)

    def test_no_event_before_negotiation(self):
        pending = QMPClient(self.qmp.path)
        self.addCleanup(pending.close)
        self.qmp.negotiate()
        self.qmp.cmd_ok('quit')
        self.qmp.wait_event('SHUTDOWN')
        # The unnegotiated client sees only the end of the connection.
        self.assertTrue(pending.eof())
        self.assertEqual(pending.events, [])


if __name__ == '__main__':
    unittest.main()
