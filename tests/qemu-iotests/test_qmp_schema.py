#!/usr/bin/python3
"""query-qmp-schema: the introspection follows QEMU's SchemaInfo format,
is self-consistent, describes exactly the commands query-commands lists,
and is what the server validates against (an argument it lists as
unknown is refused, a member it marks mandatory is required)."""

import unittest

from harness import IotestCase
from harness.qmp import QMPClient, start_qsd

META_KEYS = {
    'builtin': {'json-type'},
    'enum': {'values', 'members'},
    'array': {'element-type'},
    'object': {'members', 'tag', 'variants'},
    'alternate': {'members'},
    'command': {'arg-type', 'ret-type', 'allow-oob'},
    'event': {'arg-type'},
}
JSON_TYPES = {'string', 'number', 'int', 'boolean', 'null', 'object',
              'array', 'value'}


class TestSchema(IotestCase):

    def setUp(self):
        super().setUp()
        _, socks = start_qsd(self, self.ours('qemu-storage-daemon'))
        self.qmp = QMPClient(socks[0])
        self.addCleanup(self.qmp.close)
        self.qmp.negotiate()
        self.schema = self.qmp.cmd_ok('query-qmp-schema')
        self.by_name = {e['name']: e for e in self.schema}

    def test_shape(self):
        self.assertIsInstance(self.schema, list)
        self.assertEqual(len(self.by_name), len(self.schema),
                         'names must be unique')
        for e in self.schema:
            with self.subTest(entity=e['name']):
                meta = e['meta-type']
                self.assertIn(meta, META_KEYS)
                extra = set(e) - {'name', 'meta-type', 'features'}
                self.assertTrue(extra <= META_KEYS[meta], extra)
                if 'features' in e:
                    self.assertTrue(all(isinstance(f, str)
                                        for f in e['features']))
                getattr(self, 'check_' + meta)(e)

    def ref(self, name):
        self.assertIn(name, self.by_name, 'dangling type reference')
        return self.by_name[name]

    def check_builtin(self, e):
        self.assertIn(e['json-type'], JSON_TYPES)

    def check_enum(self, e):
        self.assertEqual([m['name'] for m in e['members']], e['values'])

    def check_array(self, e):
        self.ref(e['element-type'])

    def check_object(self, e):
        names = set()
        for m in e['members']:
            self.assertTrue(set(m) <= {'name', 'type', 'default',
                                       'features'})
            if 'default' in m:
                self.assertIsNone(m['default'])
            self.ref(m['type'])
            names.add(m['name'])
        self.assertEqual('tag' in e, 'variants' in e)
        if 'tag' in e:
            self.assertIn(e['tag'], names)
            for v in e['variants']:
                self.assertEqual(self.ref(v['type'])['meta-type'], 'object')

    def check_alternate(self, e):
        for m in e['members']:
            self.ref(m['type'])

    def check_command(self, e):
        self.assertEqual(self.ref(e['arg-type'])['meta-type'], 'object')
        self.ref(e['ret-type'])

    def check_event(self, e):
        self.assertEqual(self.ref(e['arg-type'])['meta-type'], 'object')

    def test_commands_match_query_commands(self):
        listed = {c['name'] for c in self.qmp.cmd_ok('query-commands')}
        described = {e['name'] for e in self.schema
                     if e['meta-type'] == 'command'}
        self.assertEqual(listed, described)

    def test_shutdown_event_described(self):
        ev = self.by_name['SHUTDOWN']
        self.assertEqual(ev['meta-type'], 'event')
        members = {m['name']: m for m in self.ref(ev['arg-type'])['members']}
        self.assertEqual(set(members), {'guest', 'reason'})
        self.assertIn('host-qmp-quit', self.ref(members['reason']['type'])
                      ['values'])

    def test_validation_follows_schema(self):
        # Every command refuses a member the schema does not list, and
        # every query without mandatory arguments runs with {}.
        for e in self.schema:
            if e['meta-type'] != 'command' or \
                    e['name'] in ('quit', 'qmp_capabilities'):
                continue
            with self.subTest(command=e['name']):
                arg = self.ref(e['arg-type'])
                r = self.qmp.cmd(e['name'], {'no-such-member': 1})
                # Like QEMU, mandatory members are checked first.
                mandatory = [m['name'] for m in arg.get('members', [])
                             if 'default' not in m]
                if arg['meta-type'] != 'object' or mandatory:
                    self.assertEqual(r['error']['class'], 'GenericError')
                else:
                    self.assertEqual(
                        r['error']['desc'],
                        "Parameter 'no-such-member' is unexpected")
                if e['name'].startswith('query-') and \
                        not any('default' not in m for m in arg['members']):
                    r = self.qmp.cmd(e['name'], {})
                    self.assertIn('return', r)

    def test_integer_types_collapsed(self):
        # Like QEMU, introspection shows every integer type as 'int'.
        for e in self.schema:
            if e['meta-type'] == 'builtin':
                self.assertIn(e['name'], {'str', 'int', 'number', 'bool',
                                          'null', 'any'})


if __name__ == '__main__':
    unittest.main()
