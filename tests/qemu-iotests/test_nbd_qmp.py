#!/usr/bin/python3
"""NBD management through QMP and the daemon's command line:
nbd-server-start/stop, block-export-add/del (safe and hard), query-block-
exports, BLOCK_EXPORT_DELETED, --nbd-server/--export, busy bitmaps and
nodes, and deletion while clients have requests in flight (robustness
items 37-38).  Each case runs on our qemu-storage-daemon and on the real
one, which must behave alike (same replies and error messages)."""

import json
import os
import struct
import unittest

from harness import IotestCase, proc
from harness import nbd as N
from harness.qmp import QMPClient, start_qsd

KiB = 1024
MiB = 1024 * KiB
SIZE = 64 * MiB


class QmpBase(IotestCase):
    WHICH = 'ours'

    def qsd(self):
        if self.WHICH == 'ours':
            return self.ours('qemu-storage-daemon')
        return self.real('qemu-storage-daemon')

    def setUp(self):
        super().setUp()
        self.raw = self.img('disk.raw')
        with open(self.raw, 'wb') as f:
            f.truncate(SIZE)
            f.seek(MiB)
            f.write(b'\x42' * MiB)
        self.nbd_sock = self.sock('nbd')

    def start(self, extra=(), blockdevs=None):
        if blockdevs is None:
            blockdevs = ['driver=file,node-name=file0,filename=' + self.raw,
                         'driver=raw,node-name=disk,file=file0']
        args = []
        for b in blockdevs:
            args += ['--blockdev', b]
        self.daemon, socks = start_qsd(self, self.qsd(),
                                       extra=args + list(extra))
        if self.WHICH == 'ours':
            self.require_commands(socks[0])
        self.q = QMPClient(socks[0])
        self.addCleanup(self.q.close)
        self.q.negotiate()
        return self.q

    def require_commands(self, sock):
        with QMPClient(sock) as q:
            q.negotiate()
            names = {c['name'] for c in q.cmd_ok('query-commands')}
        if 'block-export-add' not in names:
            self.skipTest('our daemon has no block-export-add yet')

    def server_start(self, **kw):
        args = {'addr': {'type': 'unix', 'data': {'path': self.nbd_sock}}}
        args.update(kw)
        self.q.cmd_ok('nbd-server-start', args)

    def export(self, id='e0', **kw):
        args = {'type': 'nbd', 'id': id, 'node-name': 'disk'}
        args.update(kw)
        self.q.cmd_ok('block-export-add', args)

    def error(self, name, args=None):
        r = self.q.cmd(name, args)
        self.assertIn('error', r, r)
        return r['error']['desc']

    def client(self, name='disk', **kw):
        c = N.NbdClient.unix(self.nbd_sock)
        self.addCleanup(c.close)
        c.negotiate(name, **kw)
        return c

    def only_ours(self, why):
        if self.WHICH != 'ours':
            self.skipTest('QEMU 7.2 differs: ' + why)

    def delete_when_idle(self, id):
        """block-export-del in safe mode, retried while the clients that
        just disconnected are still being torn down."""
        def attempt():
            r = self.q.cmd('block-export-del', {'id': id})
            if 'error' in r and 'still in use' in r['error']['desc']:
                return False
            self.assertNotIn('error', r, r)
            return True
        proc.wait_for(attempt, timeout=30, interval=0.05,
                      what='export %s to lose its clients' % id)

    def exports(self):
        return sorted((e['id'], e['node-name'], e['shutting-down'])
                      for e in self.q.cmd_ok('query-block-exports'))


class TestServer(QmpBase):

    def test_start_stop(self):
        q = self.start()
        self.assertIn('not running', self.error('nbd-server-stop'))
        self.server_start()
        self.assertEqual(self.error('nbd-server-start', {'addr': {
            'type': 'unix', 'data': {'path': self.sock('other')}}}),
            'NBD server already running')
        self.assertEqual(self.exports(), [])
        q.cmd_ok('nbd-server-stop')
        self.server_start()           # again, on the same path
        q.cmd_ok('nbd-server-stop')

    def test_export_needs_server(self):
        self.start()
        self.assertEqual(self.error('block-export-add', {
            'type': 'nbd', 'id': 'e0', 'node-name': 'disk'}),
            'NBD server not running')

    def test_export_lifecycle(self):
        q = self.start()
        self.server_start()
        self.export(name='disk', writable=True, description='d0')
        self.export('e1', name='ro')
        self.assertEqual(self.exports(), [('e0', 'disk', False),
                                          ('e1', 'disk', False)])
        c = N.NbdClient.unix(self.nbd_sock)
        c.start()
        self.assertEqual(sorted(c.opt_list()), [('disk', 'd0'), ('ro', '')])
        c.close()
        q.cmd_ok('block-export-del', {'id': 'e1'})
        ev = q.wait_event('BLOCK_EXPORT_DELETED', timeout=30)
        self.assertEqual(ev['data'], {'id': 'e1'})
        self.assertEqual(self.exports(), [('e0', 'disk', False)])
        self.assertEqual(self.error('block-export-del', {'id': 'e1'}),
                         "Export 'e1' is not found")
        # The id can be used again.
        self.export('e1', name='ro2')
        c = self.client('disk')
        self.assertEqual(c.read(MiB, 8), b'\x42' * 8)

    def test_export_errors(self):
        self.start()
        self.server_start()
        self.export(name='disk')
        cases = [
            ({'id': 'e0', 'name': 'other'},
             "Block export id 'e0' is already in use"),
            ({'id': 'e1', 'name': 'disk'},
             "NBD server already has export named 'disk'"),
            ({'id': 'e1', 'node-name': 'nosuch'},
             "Cannot find device='' nor node-name='nosuch'"),
            ({'id': 'e1', 'name': 'n', 'bitmaps': ['nope']},
             "Bitmap 'nope' is not found"),
            ({'id': 'e1', 'name': 'x' * 4097},
             "export name '%s' too long" % ('x' * 4097)),
            ({'id': 'e1', 'name': 'y', 'description': 'd' * 4097},
             "description '%s' too long" % ('d' * 4097)),
            ({'id': 'e1', 'name': 'z', 'iothread': 'io0'},
             'iothread "io0" not found'),
        ]
        for args, msg in cases:
            full = {'type': 'nbd', 'node-name': 'disk'}
            full.update(args)
            self.assertEqual(self.error('block-export-add', full), msg)
        self.assertEqual(self.exports(), [('e0', 'disk', False)])

    def test_writable_export_of_read_only_node(self):
        self.start(blockdevs=[
            'driver=file,node-name=file0,read-only=on,filename=' + self.raw,
            'driver=raw,node-name=disk,read-only=on,file=file0'])
        self.server_start()
        self.assertEqual(self.error('block-export-add', {
            'type': 'nbd', 'id': 'e0', 'node-name': 'disk',
            'writable': True}), 'Cannot export read-only node as writable')
        self.export(name='disk')
        c = self.client('disk')
        self.assertTrue(c.tx_flags & N.FLAG_READ_ONLY)

    def test_default_name_is_node_name(self):
        self.start()
        self.server_start()
        self.export()
        c = self.client('disk')
        self.assertEqual(c.size, SIZE)
        self.assertTrue(c.tx_flags & N.FLAG_READ_ONLY)

    def test_safe_and_hard_delete(self):
        q = self.start()
        self.server_start()
        self.export(name='disk')
        c = self.client('disk')
        msg = self.error('block-export-del', {'id': 'e0'})
        self.assertIn("export 'e0' still in use", msg)
        self.assertEqual(self.exports(), [('e0', 'disk', False)])
        self.assertEqual(c.read(MiB, 8), b'\x42' * 8)
        q.cmd_ok('block-export-del', {'id': 'e0', 'mode': 'hard'})
        self.assertTrue(c.at_eof())
        ev = q.wait_event('BLOCK_EXPORT_DELETED', timeout=30)
        self.assertEqual(ev['data'], {'id': 'e0'})
        self.assertEqual(self.exports(), [])
        # Gone for new clients too.
        c2 = N.NbdClient.unix(self.nbd_sock)
        c2.start()
        self.assertEqual(c2.opt_list(), [])

    def test_node_busy_while_exported(self):
        q = self.start()
        self.server_start()
        self.export(name='disk')
        self.assertIn('in use', self.error('blockdev-del',
                                           {'node-name': 'disk'}))
        q.cmd_ok('block-export-del', {'id': 'e0'})
        q.wait_event('BLOCK_EXPORT_DELETED', timeout=30)
        q.cmd_ok('blockdev-del', {'node-name': 'disk'})

    def test_server_stop_deletes_exports(self):
        q = self.start()
        self.server_start()
        self.export(name='a')
        self.export('e1', name='b')
        c = self.client('a')
        q.cmd_ok('nbd-server-stop')
        self.assertTrue(c.at_eof())
        ids = set()
        while len(ids) < 2:
            ids.add(q.wait_event('BLOCK_EXPORT_DELETED',
                                 timeout=30)['data']['id'])
        self.assertEqual(ids, {'e0', 'e1'})
        self.assertEqual(self.exports(), [])
        self.assertFalse(os.path.exists(self.nbd_sock))

    def test_max_connections_one(self):
        self.start()
        self.server_start(**{'max-connections': 1})
        self.export(name='disk')
        c = self.client('disk')
        self.assertFalse(c.tx_flags & N.FLAG_CAN_MULTI_CONN)

    def test_tcp(self):
        self.only_ours('the daemon then ignores SIGTERM')
        q = self.start()
        port = 10000 + os.getpid() % 40000 + (500 if self.WHICH == 'ours'
                                              else 0)
        q.cmd_ok('nbd-server-start', {'addr': {'type': 'inet', 'data': {
            'host': '127.0.0.1', 'port': str(port)}}})
        self.export(name='disk')
        c = N.NbdClient.tcp('127.0.0.1', port)
        self.addCleanup(c.close)
        c.negotiate('disk')
        self.assertEqual(c.read(MiB, 4), b'\x42' * 4)


class TestCommandLine(QmpBase):

    def test_nbd_server_and_export_options(self):
        q = self.start(extra=[
            '--nbd-server', 'addr.type=unix,addr.path=' + self.nbd_sock,
            '--export', 'nbd,id=e0,node-name=disk,name=n0,writable=on,'
            'allocation-depth=on,description=hello'])
        self.assertEqual(self.exports(), [('e0', 'disk', False)])
        c = N.NbdClient.unix(self.nbd_sock)
        self.addCleanup(c.close)
        c.start()
        c.opt_structured_reply()
        self.assertEqual(c.opt_list(), [('n0', 'hello')])
        self.assertEqual(sorted(c.opt_list_meta_context('n0')),
                         ['base:allocation', 'qemu:allocation-depth'])
        c.opt_go('n0')
        self.assertFalse(c.tx_flags & N.FLAG_READ_ONLY)
        c.write(0, b'\x01' * 512)
        c.flush()
        with open(self.raw, 'rb') as f:
            self.assertEqual(f.read(512), b'\x01' * 512)

    def test_bad_export_option(self):
        rc, out, err = proc.run(
            [self.qsd(), '--blockdev',
             'driver=file,node-name=disk,filename=' + self.raw,
             '--export', 'nbd,id=e0,node-name=disk'])
        self.assertEqual(rc, 1)
        self.assertIn('NBD server not running', err)


class TestBitmaps(QmpBase):
    """Exported bitmaps are busy; their contexts report dirty extents."""

    def setUp(self):
        super().setUp()
        self.qcow2 = self.checked(self.img('disk.qcow2'))
        self.run_ok([self.real('qemu-img'), 'create', '-q', '-f', 'qcow2',
                     self.qcow2, str(SIZE)])

    def start_qcow2(self):
        q = self.start(blockdevs=[
            'driver=file,node-name=file0,filename=' + self.qcow2,
            'driver=qcow2,node-name=disk,file=file0'])
        q.cmd_ok('block-dirty-bitmap-add', {'node': 'disk', 'name': 'b0',
                                            'granularity': 65536})
        self.server_start()
        return q

    def test_bitmap_context_and_busy(self):
        q = self.start_qcow2()
        self.export(name='w', writable=True)
        w = self.client('w')
        w.write(MiB, b'x' * 4096)
        w.write(5 * MiB + 100, b'y' * 200000)
        w.flush()
        q.cmd_ok('block-dirty-bitmap-disable', {'node': 'disk',
                                                'name': 'b0'})
        self.export('e1', name='r', bitmaps=['b0'])
        c = self.client('r', contexts=['qemu:dirty-bitmap:b0'])
        m = c.map('qemu:dirty-bitmap:b0')
        dirty = [(o, n) for o, n, f in m if f & N.STATE_DIRTY]
        self.assertEqual(dirty, [(MiB, 64 * KiB),
                                 (5 * MiB, 4 * 64 * KiB)])
        err = self.error('block-dirty-bitmap-remove', {'node': 'disk',
                                                       'name': 'b0'})
        self.assertIn('in use', err)
        c.disconnect()
        self.delete_when_idle('e1')
        q.wait_event('BLOCK_EXPORT_DELETED', timeout=30)
        q.cmd_ok('block-dirty-bitmap-remove', {'node': 'disk', 'name': 'b0'})

    def test_enabled_bitmap_readonly_export(self):
        self.start_qcow2()
        msg = self.error('block-export-add', {
            'type': 'nbd', 'id': 'e0', 'node-name': 'disk',
            'bitmaps': ['b0']})
        self.assertEqual(msg, "Enabled bitmap 'b0' incompatible with "
                         "readonly export")


class TestDeleteUnderLoad(QmpBase):
    """Robustness item 38: deleting an export (or its node) while a
    client has requests in flight."""

    def test_hard_delete_mid_request(self):
        q = self.start()
        self.server_start()
        self.export(name='disk', writable=True)
        c = self.client('disk')
        for i in range(8):
            c.request(N.CMD_READ, (i % 2) * 32 * MiB, 32 * MiB)
            c.request(N.CMD_WRITE, 48 * MiB + i * 4096, 4096, 0,
                      b'\x07' * 4096)
        q.cmd_ok('block-export-del', {'id': 'e0', 'mode': 'hard'})
        # Whatever arrives is well formed; then the connection closes.
        try:
            while True:
                c.reply()
        except (N.NbdClosed, ConnectionError):
            pass
        q.wait_event('BLOCK_EXPORT_DELETED', timeout=60)
        self.assertIn('in use', self.error('blockdev-del',
                                           {'node-name': 'file0'}))
        q.cmd_ok('blockdev-del', {'node-name': 'disk'})
        q.cmd_ok('blockdev-del', {'node-name': 'file0'})

    def test_blockdev_del_refused_mid_request(self):
        q = self.start()
        self.server_start()
        self.export(name='disk')
        c = self.client('disk')
        handles = [c.request(N.CMD_READ, 0, 32 * MiB) for _ in range(8)]
        self.assertIn('in use', self.error('blockdev-del',
                                           {'node-name': 'disk'}))
        got = sorted(c.reply().handle for _ in handles)
        self.assertEqual(got, sorted(handles))

    def test_server_stop_mid_request(self):
        self.only_ours('nbd-server-stop waits for clients that do not read')
        q = self.start()
        self.server_start()
        self.export(name='disk', writable=True)
        clients = [self.client('disk') for _ in range(4)]
        for c in clients:
            for i in range(16):
                c.request(N.CMD_READ, i * MiB, 4 * MiB)
        q.cmd_ok('nbd-server-stop')
        for c in clients:
            self.assertTrue(c.at_eof(timeout=60))
        q.wait_event('BLOCK_EXPORT_DELETED', timeout=60)
        q.cmd_ok('blockdev-del', {'node-name': 'disk'})


class TestServerReal(TestServer):
    WHICH = 'real'


class TestCommandLineReal(TestCommandLine):
    WHICH = 'real'


class TestBitmapsReal(TestBitmaps):
    WHICH = 'real'


class TestDeleteUnderLoadReal(TestDeleteUnderLoad):
    WHICH = 'real'


if __name__ == '__main__':
    unittest.main()
