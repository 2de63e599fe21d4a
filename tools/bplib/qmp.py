"""A tiny QMP client: one unix socket, synchronous commands, events set
aside for later.

Framing: the server sends JSON objects, one after another (QEMU ends each
with CRLF, but we do not rely on that: the buffer is decoded with
raw_decode, so objects split across reads or glued together both work).
Every wait has a timeout; a dead or silent server raises QMPError rather
than hanging.
"""

import json
import socket
import time

from .errors import BackupError


class QMPError(BackupError):
    """A QMP error reply ({"error": {"class", "desc"}}) or a broken
    session.  `err_class` is None for transport problems."""

    def __init__(self, message, err_class=None, command=None):
        super().__init__(message)
        self.err_class = err_class
        self.command = command


class QMPClient:
    def __init__(self, path, timeout=30.0, negotiate=True):
        self.path = path
        self.timeout = timeout
        self.events = []
        self.greeting = None
        self._buf = ''
        self._decoder = json.JSONDecoder()
        self._next_id = 1
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(timeout)
        try:
            self._sock.connect(path)
        except OSError as e:
            self._sock.close()
            raise QMPError('cannot connect to QMP socket %s: %s'
                           % (path, e.strerror or e)) from None
        try:
            self.greeting = self._read_object()
            if 'QMP' not in self.greeting:
                raise QMPError('no QMP greeting on %s (got %s)'
                               % (path, _short(self.greeting)))
            if negotiate:
                self.cmd('qmp_capabilities')
        except BaseException:
            self.close()
            raise

    @classmethod
    def connect_retry(cls, path, timeout=30.0, alive=None):
        """Connect, retrying while the socket does not exist or refuses
        (the daemon is still starting).  `alive()` returning False stops
        the wait early (the daemon died)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return cls(path, timeout=timeout)
            except QMPError:
                if alive is not None and not alive():
                    raise
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    # -- transport -----------------------------------------------------

    def _read_object(self):
        deadline = time.monotonic() + self.timeout
        while True:
            text = self._buf.lstrip()
            if text:
                try:
                    obj, end = self._decoder.raw_decode(text)
                except ValueError:
                    obj = None
                if obj is not None:
                    self._buf = text[end:]
                    if not isinstance(obj, dict):
                        raise QMPError('QMP server sent a non-object: %s'
                                       % _short(obj))
                    return obj
            if time.monotonic() > deadline:
                raise QMPError('timed out after %ss waiting for QMP on %s'
                               % (self.timeout, self.path))
            try:
                data = self._sock.recv(65536)
            except socket.timeout:
                raise QMPError('timed out after %ss waiting for QMP on %s'
                               % (self.timeout, self.path)) from None
            except OSError as e:
                raise QMPError('QMP connection %s failed: %s'
                               % (self.path, e.strerror or e)) from None
            if not data:
                raise QMPError('QMP server closed the connection on %s'
                               % self.path)
            self._buf += data.decode('utf-8', 'replace')

    def _send(self, obj):
        try:
            self._sock.sendall(json.dumps(obj).encode() + b'\n')
        except OSError as e:
            raise QMPError('cannot send to QMP socket %s: %s'
                           % (self.path, e.strerror or e)) from None

    # -- commands ------------------------------------------------------

    def execute(self, name, args=None, /):
        """Send one command; return the whole reply object (with either
        'return' or 'error').  Events that arrive first are kept."""
        msg_id = 'bp-%d' % self._next_id
        self._next_id += 1
        msg = {'execute': name, 'id': msg_id}
        if args:
            msg['arguments'] = args
        self._send(msg)
        while True:
            obj = self._read_object()
            if 'event' in obj:
                self.events.append(obj)
                continue
            if obj.get('id') != msg_id:
                raise QMPError('unexpected QMP reply to %s: %s'
                               % (name, _short(obj)), command=name)
            return obj

    def cmd(self, name, args=None, /, **kwargs):
        """Run a command and return its 'return' value; an error reply
        raises QMPError naming the command, its class and description.
        Arguments come as a dict, as keywords, or both."""
        if kwargs:
            args = dict(args or {}, **kwargs)
        reply = self.execute(name, args)
        if 'error' in reply:
            err = reply['error']
            if not isinstance(err, dict):
                err = {'desc': str(err)}
            raise QMPError('%s failed: %s' % (name, err.get('desc', '?')),
                           err_class=err.get('class'), command=name)
        if 'return' not in reply:
            raise QMPError('malformed QMP reply to %s: %s'
                           % (name, _short(reply)), command=name)
        return reply['return']

    def command_names(self):
        return {c.get('name') for c in self.cmd('query-commands')}

    def wait_event(self, name, timeout=None):
        """Return (and consume) the first event called `name`."""
        saved = self.timeout
        if timeout is not None:
            self.timeout = timeout
        try:
            while True:
                for i, ev in enumerate(self.events):
                    if ev.get('event') == name:
                        return self.events.pop(i)
                obj = self._read_object()
                if 'event' in obj:
                    self.events.append(obj)
        finally:
            self.timeout = saved

    def close(self):
        try:
            self._sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _short(obj, limit=300):
    s = json.dumps(obj) if not isinstance(obj, str) else obj
    return s if len(s) <= limit else s[:limit] + '...'
