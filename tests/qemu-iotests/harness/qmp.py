"""QMP client for iotests (Python 3 standard library only).

    q = QMPClient(sock_path)          # connects, reads the greeting
    q.negotiate()                     # qmp_capabilities
    r = q.cmd('query-version')        # full reply dict: {'return': ...}
    q.cmd_ok('quit')                  # the 'return' value, or AssertionError
    q.raw_send(b'{"execute": }\\n')   # any bytes, for malformed input
    r = q.recv()                      # next reply (events are queued)
    ev = q.wait_event('SHUTDOWN', timeout=10)

Events that arrive while waiting for a reply are kept and returned by
get_events()/wait_event().  Every read has a timeout; a timeout raises
QMPTimeout (an AssertionError, so unittest reports FAIL, not a hang).
"""

import json
import socket
import time

DEFAULT_TIMEOUT = 30


class QMPTimeout(AssertionError):
    pass


class QMPClosed(ConnectionError):
    """The server closed the connection."""


NO_ID = object()     # cmd()/send() without an "id" member


class QMPClient:

    def __init__(self, path, timeout=DEFAULT_TIMEOUT, greeting=True):
        self.path = path
        self.timeout = timeout
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.buf = b''
        self.events = []
        self.greeting = self.recv_message() if greeting else None

    # -- raw I/O -----------------------------------------------------------

    def raw_send(self, data):
        """Send bytes (or str) exactly as given."""
        if isinstance(data, str):
            data = data.encode('utf-8')
        self.sock.sendall(data)

    def recv_line(self, timeout=None):
        """The next CRLF-terminated line from the server (without CRLF).
        Raises QMPClosed on EOF and QMPTimeout on silence."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while b'\r\n' not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise QMPTimeout('no QMP message within %ss'
                                 % (timeout or self.timeout))
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(1 << 20)
            except socket.timeout:
                continue
            except ConnectionResetError:
                data = b''
            if not data:
                raise QMPClosed('QMP server closed the connection')
            self.buf += data
        line, self.buf = self.buf.split(b'\r\n', 1)
        return line

    def recv_message(self, timeout=None):
        """The next message (reply or event) as a dict; checks that the
        server wrote it as one line of ASCII JSON."""
        line = self.recv_line(timeout)
        line.decode('ascii')            # QMP output is ASCII only
        return json.loads(line)

    def recv(self, timeout=None):
        """The next reply; events seen on the way are queued."""
        while True:
            msg = self.recv_message(timeout)
            if 'event' in msg:
                self.events.append(msg)
                continue
            return msg

    # -- commands ----------------------------------------------------------

    def send(self, name, args=None, id=NO_ID):
        req = {'execute': name}
        if args is not None:
            req['arguments'] = args
        if id is not NO_ID:
            req['id'] = id
        self.raw_send(json.dumps(req).encode('utf-8') + b'\n')

    def cmd(self, name, args=None, id=NO_ID, **kwargs):
        """Run a command; returns the full reply dict.  Arguments come from
        `args` (a dict) or keyword arguments (with '_' meaning '-')."""
        if kwargs:
            args = dict(args or {})
            args.update({k.replace('_', '-'): v for k, v in kwargs.items()})
        self.send(name, args, id)
        return self.recv()

    def cmd_ok(self, name, args=None, **kwargs):
        """Run a command that must succeed; returns its 'return' value."""
        r = self.cmd(name, args, **kwargs)
        if 'return' not in r:
            raise AssertionError('%s failed: %r' % (name, r))
        return r['return']

    def negotiate(self):
        return self.cmd_ok('qmp_capabilities')

    # -- events ------------------------------------------------------------

    def get_events(self, wait=0.0):
        """Queued events, plus any that arrive within `wait` seconds."""
        deadline = time.monotonic() + wait
        while True:
            left = deadline - time.monotonic()
            if b'\r\n' not in self.buf and left <= 0:
                break
            try:
                msg = self.recv_message(timeout=max(left, 0.01))
            except QMPTimeout:
                break
            if 'event' in msg:
                self.events.append(msg)
            else:
                raise AssertionError('unexpected reply while waiting for '
                                     'events: %r' % msg)
        events, self.events = self.events, []
        return events

    def wait_event(self, name, timeout=None):
        """Wait for event `name`; other events stay queued."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            for i, ev in enumerate(self.events):
                if ev['event'] == name:
                    return self.events.pop(i)
            left = deadline - time.monotonic()
            if left <= 0:
                raise QMPTimeout('no %s event within %ss'
                                 % (name, timeout or self.timeout))
            msg = self.recv_message(timeout=left)
            if 'event' not in msg:
                raise AssertionError('unexpected reply while waiting for '
                                     '%s: %r' % (name, msg))
            self.events.append(msg)

    # -- end ---------------------------------------------------------------

    def eof(self, timeout=None):
        """True once the server has closed the connection (replies still
        pending are read and discarded)."""
        try:
            while True:
                self.recv_message(timeout)
        except QMPClosed:
            return True

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def error_class(reply):
    """The error class of a reply, or None for a success."""
    return reply.get('error', {}).get('class')


def qsd_argv(binary, socks, extra=()):
    """qemu-storage-daemon command line with one QMP monitor per socket
    path in `socks` (chardev ids m0, m1, ...)."""
    argv = [binary]
    for i, path in enumerate(socks):
        argv += ['--chardev',
                 'socket,id=m%d,path=%s,server=on,wait=off' % (i, path),
                 '--monitor', 'chardev=m%d' % i]
    return argv + list(extra)


def start_qsd(case, binary, n_monitors=1, extra=()):
    """Start a storage daemon from an IotestCase with `n_monitors` QMP
    sockets; returns (daemon, [socket paths]).  The case stops it."""
    socks = [case.sock('qmp%d' % i) for i in range(n_monitors)]
    d = case.start_daemon(qsd_argv(binary, socks, extra),
                          socket_path=socks[-1] if socks else None)
    for s in socks[:-1]:
        d.wait_for_socket(s)
    return d, socks
