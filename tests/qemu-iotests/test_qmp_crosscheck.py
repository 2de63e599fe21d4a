#!/usr/bin/python3
"""Cross-check: the same QMP conversation against the real QEMU 7.2
qemu-storage-daemon and ours.  Reply structure must match: the same keys,
the same error classes, the same id echo and the same kind of return
value.  Wording of error messages, timestamps and version numbers are
ignored, as are the ways blockpoint deliberately differs (no "oob"
capability; see docs/devel/qmp.md)."""

import unittest

from harness import IotestCase, proc
from harness.qmp import QMPClient, start_qsd

# Messages sent in order on one connection; each gets exactly one reply.
CONVERSATION = [
    b'{"execute": "query-version", "id": "early"}',
    b'{"execute": "no-such-command", "id": 1}',
    b'{"execute": "qmp_capabilities", "arguments": {"enable": "x"}}',
    b'{"execute": "qmp_capabilities", "arguments": {"bogus": 1}}',
    b'{"execute": "qmp_capabilities", "id": {"nested": [1, 2.5, null]}}',
    b'{"execute": "qmp_capabilities", "id": "again"}',
    b'{"execute": "query-version", "id": "v"}',
    b'{"execute": "query-version", "id": 12}',
    b'{"execute": "query-version", "id": [true, false, null, "s"]}',
    b'{"execute": "query-version", "arguments": {}, "id": 3}',
    b'{"execute": "query-version", "arguments": {"x": 1}, "id": 4}',
    b'{"execute": "query-version", "arguments": [], "id": 5}',
    b'{"execute": "query-version", "arguments": null}',
    b'{"execute": "query-version", "foo": "bar", "id": 6}',
    b'{"execute": 42, "id": 7}',
    b'{"arguments": {}, "id": 8}',
    b'{"id": 9}',
    b'{"execute": "nope", "id": 10}',
    b'[1, 2, 3]',
    b'"just a string"',
    b'{"execute": }',
    b'{"execute": "query-version", "execute": "quit"}',
    b'{"execute": "query-commands", "id": "cmds"}',
    b'{"execute": "query-qmp-schema", "id": "schema"}',
    b"{'execute': 'query-version', 'id': 'single quotes'}",
    b'{"execute": "query-version", "id": "\\u00e9"}',
]


def shape(reply):
    """What must agree between the two daemons."""
    if 'error' in reply:
        return ('error', reply['error']['class'], sorted(reply['error']),
                sorted(reply), reply.get('id'))
    ret = reply['return']
    kind = type(ret).__name__
    keys = sorted(ret) if isinstance(ret, dict) else None
    return ('return', kind, keys, sorted(reply), reply.get('id'))


class TestCrossCheck(IotestCase):

    def converse(self, binary):
        d, socks = start_qsd(self, binary)
        q = QMPClient(socks[0])
        self.addCleanup(q.close)
        greeting = q.greeting
        replies = []
        for msg in CONVERSATION:
            q.raw_send(msg + b'\n')
            replies.append(q.recv())
        q.raw_send(b'{"execute": "quit", "id": "bye"}')
        replies.append(q.recv())
        self.assertTrue(q.eof())
        # The next conversation reuses the socket path: this daemon must
        # be gone (and have removed its socket) before the next one binds.
        proc.wait_for(lambda: not d.running(), what='the daemon to exit')
        return greeting, replies

    def test_same_structure(self):
        real_greeting, real = self.converse(
            self.real('qemu-storage-daemon'))
        our_greeting, ours = self.converse(
            self.ours('qemu-storage-daemon'))
        self.assertEqual(sorted(real_greeting['QMP']),
                         sorted(our_greeting['QMP']))
        self.assertEqual(sorted(real_greeting['QMP']['version']),
                         sorted(our_greeting['QMP']['version']))
        self.assertEqual(len(real), len(ours))
        for msg, r, o in zip(CONVERSATION + [b'quit'], real, ours):
            with self.subTest(msg=msg):
                self.assertEqual(shape(r), shape(o),
                                 '\nreal: %r\nours: %r' % (r, o))

    def test_control_commands_exist_in_both(self):
        _, real = self.converse(self.real('qemu-storage-daemon'))
        _, ours = self.converse(self.ours('qemu-storage-daemon'))
        idx = CONVERSATION.index(
            b'{"execute": "query-commands", "id": "cmds"}')
        real_names = {c['name'] for c in real[idx]['return']}
        our_names = {c['name'] for c in ours[idx]['return']}
        # Every command we implement exists in QEMU's storage daemon under
        # the same name, except our documented extensions: checkpoints,
        # and migration (QEMU has those commands, but only in the system
        # emulator, not in qemu-storage-daemon).
        extensions = {n for n in our_names
                      if 'checkpoint' in n or 'migrat' in n}
        self.assertTrue(our_names - extensions <= real_names,
                        our_names - extensions - real_names)

    def test_schema_meta_types_agree(self):
        _, real = self.converse(self.real('qemu-storage-daemon'))
        _, ours = self.converse(self.ours('qemu-storage-daemon'))
        idx = CONVERSATION.index(
            b'{"execute": "query-qmp-schema", "id": "schema"}')
        real_by = {e['name']: e for e in real[idx]['return']}
        our_by = {e['name']: e for e in ours[idx]['return']}
        for name, e in our_by.items():
            if e['meta-type'] not in ('command', 'event') or \
                    name not in real_by:
                continue
            with self.subTest(name=name):
                r = real_by[name]
                self.assertEqual(sorted(set(e) - {'features'}),
                                 sorted(set(r) - {'features'}))
                # Argument members: same names and optionality.
                ra = real_by[r['arg-type']]
                oa = our_by[e['arg-type']]
                self.assertEqual(
                    sorted((m['name'], 'default' in m)
                           for m in ra['members']),
                    sorted((m['name'], 'default' in m)
                           for m in oa['members']))


if __name__ == '__main__':
    unittest.main()
