#!/usr/bin/python3
"""qemu-storage-daemon life cycle: command line, clean shutdown by quit,
SIGTERM and SIGINT (SHUTDOWN event, socket files and pid file removed),
--pidfile, --daemonize, and refusal of bad options."""

import os
import signal
import socket
import unittest

from harness import IotestCase, proc
from harness.qmp import QMPClient, qsd_argv


def read(path):
    with open(path) as f:
        return f.read()


class DaemonCase(IotestCase):

    def setUp(self):
        super().setUp()
        self.qsd = self.ours('qemu-storage-daemon')

    def start(self, n=1, extra=()):
        socks = [self.sock('m%d' % i) for i in range(n)]
        d = self.start_daemon(qsd_argv(self.qsd, socks, extra),
                              socket_path=socks[-1])
        return d, socks


class TestShutdown(DaemonCase):

    def check_cleanup(self, how):
        pidfile = self.img('qsd.pid')
        d, socks = self.start(2, ['--pidfile', pidfile])
        self.assertEqual(read(pidfile).strip(), str(d.pid))
        q = QMPClient(socks[1])
        self.addCleanup(q.close)
        q.negotiate()
        if how == 'quit':
            c = QMPClient(socks[0])
            c.negotiate()
            self.assertEqual(c.cmd('quit', id=1), {'return': {}, 'id': 1})
            c.close()
            reason = 'host-qmp-quit'
        else:
            os.kill(d.pid, how)
            reason = 'host-signal'
        ev = q.wait_event('SHUTDOWN')
        self.assertEqual(ev['data'], {'guest': False, 'reason': reason})
        self.assertTrue(q.eof())
        self.assertEqual(d.wait(), 0)
        for s in socks:
            self.assertFalse(os.path.exists(s), s)
        self.assertFalse(os.path.exists(pidfile))
        self.assertNotIn('CRITICAL', d.output())

    def test_quit(self):
        self.check_cleanup('quit')

    def test_sigterm(self):
        self.check_cleanup(signal.SIGTERM)

    def test_sigint(self):
        self.check_cleanup(signal.SIGINT)

    def test_sigterm_with_client_mid_message(self):
        d, socks = self.start()
        q = QMPClient(socks[0])
        self.addCleanup(q.close)
        q.raw_send(b'{"execute": "qmp_capab')
        d.stop()
        self.assertEqual(d.returncode, 0)
        self.assertFalse(os.path.exists(socks[0]))

    def test_no_monitor(self):
        # The pid file is written once signal handlers are in place.
        pidfile = self.img('nm.pid')
        d = self.start_daemon([self.qsd, '--pidfile', pidfile])
        proc.wait_for(lambda: os.path.exists(pidfile), what='pid file')
        self.assertEqual(d.stop(), 0)
        self.assertFalse(os.path.exists(pidfile))


class TestPidfileDaemonize(DaemonCase):

    def test_daemonize(self):
        sock = self.sock('dm')
        pidfile = self.img('d.pid')
        self.run_ok(qsd_argv(self.qsd, [sock],
                             ['--daemonize', '--pidfile', pidfile]))
        # The parent returns once the socket listens.
        self.assertTrue(proc.unix_socket_listening(sock))
        pid = int(read(pidfile))
        self.addCleanup(lambda: os.kill(pid, signal.SIGKILL)
                        if os.path.exists(pidfile) else None)
        q = QMPClient(sock)
        self.addCleanup(q.close)
        q.negotiate()
        q.cmd_ok('quit')
        self.assertTrue(q.eof())
        proc.wait_for(lambda: not os.path.exists(pidfile), timeout=30,
                      what='pid file removal')
        self.assertFalse(os.path.exists(sock))

    def test_daemonize_failure_reported(self):
        out, err = self.run_fail([self.qsd, '--daemonize', '--monitor',
                                  'nosuch'], rc=1)
        self.assertIn('chardev "nosuch" not found', err)

    def test_pidfile_locked(self):
        pidfile = self.img('l.pid')
        d, socks = self.start(1, ['--pidfile', pidfile])
        out, err = self.run_fail(qsd_argv(self.qsd, [self.sock('other')],
                                          ['--pidfile', pidfile]), rc=1)
        self.assertIn('pid file', err)
        self.assertEqual(read(pidfile).strip(), str(d.pid))
        self.assertFalse(os.path.exists(self.sock('other')))


class TestCommandLine(DaemonCase):

    def test_help(self):
        out = self.run_ok([self.qsd, '-h'])
        for opt in ('--blockdev', '--chardev', '--monitor', '--pidfile',
                    '--daemonize', '--nbd-server', '--export'):
            self.assertIn(opt, out)
        self.assertEqual(out, self.run_ok([self.qsd, '--help']))

    def test_version(self):
        out = self.run_ok([self.qsd, '-V'])
        self.assertTrue(out.startswith('qemu-storage-daemon version '))
        self.assertEqual(out, self.run_ok([self.qsd, '--version']))

    BAD = [
        (['--bogus'], "unrecognized option '--bogus'"),
        (['extra'], 'extra: Unexpected argument'),
        (['--monitor'], 'requires an argument'),
        (['--monitor', 'nosuch'], 'chardev "nosuch" not found'),
        (['--chardev', 'socket,id=m,path=/tmp/x.sock'], 'server=on'),
        (['--chardev', 'socket,id=m,path=P,server=on,wait=off,foo=bar'],
         "Invalid parameter 'foo'"),
        (['--chardev', 'file,id=m,path=P'], "'file'"),
        (['--chardev', 'socket,id=m,path=P,server=on,wait=off',
          '--chardev', 'socket,id=m,path=P2,server=on,wait=off'],
         "'m'"),
        (['--chardev', 'socket,id=m,path=/nonexistent/dir/s,server=on,'
          'wait=off', '--monitor', 'm'], 'No such file or directory'),
        (['--chardev', 'socket,id=m,path=P,server=on,wait=off',
          '--monitor', 'm,mode=readline'], 'Only QMP'),
        (['--chardev', 'socket,id=m,path=P,server=on,wait=off',
          '--monitor', 'm', '--monitor', 'm'], 'already in use'),
        (['--blockdev', '{"driver": 1'], 'JSON parse error'),
        (['--blockdev', 'driver=null-co,a.b=1,a=2'], 'inconsistently'),
        (['--nbd-server', 'addr.type=vsock,addr.cid=1,addr.port=2'],
         'not supported'),
        (['--export', 'nbd,id=e,node-name=n'], 'NBD server not running'),
        (['--object', 'secret,id=s,data=x'], 'not supported'),
    ]

    def test_bad_options(self):
        for args, msg in self.BAD:
            with self.subTest(args=args):
                args = [a.replace('path=P', 'path=' + self.sock('p'))
                        for a in args]
                out, err = self.run_fail([self.qsd] + args, rc=1)
                self.assertIn(msg, err)
                self.assertTrue(err.startswith('qemu-storage-daemon: '),
                                err)
                self.assertFalse(os.path.exists(self.sock('p')))

    def test_stale_socket_replaced(self):
        path = self.sock('stale')
        s = socket.socket(socket.AF_UNIX)
        s.bind(path)
        s.close()
        d = self.start_daemon(qsd_argv(self.qsd, [path]), socket_path=path)
        with QMPClient(path) as q:
            q.negotiate()
        self.assertEqual(d.stop(), 0)

    def test_regular_file_not_clobbered(self):
        path = self.sock('file')
        with open(path, 'w') as f:
            f.write('keep me')
        out, err = self.run_fail(qsd_argv(self.qsd, [path]), rc=1)
        self.assertIn('Failed to bind', err)
        self.assertEqual(read(path), 'keep me')

    def test_pretty_monitor(self):
        path = self.sock('pretty')
        argv = [self.qsd, '--chardev',
                'socket,id=p,path=%s,server=on,wait=off' % path,
                '--monitor', 'chardev=p,pretty=on']
        self.start_daemon(argv, socket_path=path)
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(30)
        s.connect(path)
        data = b''
        while not data.endswith(b'}\r\n'):
            data += s.recv(4096)
        self.assertIn(b'\n    "QMP": {', data)
        s.close()


if __name__ == '__main__':
    unittest.main()
