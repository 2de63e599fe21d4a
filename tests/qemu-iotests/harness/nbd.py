"""A small NBD client (Python stdlib only) for iotests.

It speaks fixed newstyle negotiation (EXPORT_NAME, ABORT, LIST, INFO, GO,
STRUCTURED_REPLY, LIST/SET_META_CONTEXT) and the transmission commands,
with simple and structured replies, and several requests in flight
(send with `request()`, collect with `reply()`, in any order).

strict=True (the default) checks what the server sends against the
protocol and refuses to send requests the negotiation does not allow.
strict=False sends whatever it is told (bad magic, unknown flags or
commands, lengths beyond the export, truncated messages): the tool for
robustness tests.  `send_raw()` writes arbitrary bytes.

    with NbdClient.unix(path) as c:
        c.negotiate('exp', contexts=['base:allocation'])
        data = c.read(0, 4096)
        extents = c.block_status(0, c.size)['base:allocation']
"""

import socket
import struct

INIT_MAGIC = 0x4e42444d41474943
OPTS_MAGIC = 0x49484156454f5054
REP_MAGIC = 0x0003e889045565a9
REQUEST_MAGIC = 0x25609513
SIMPLE_REPLY_MAGIC = 0x67446698
STRUCTURED_REPLY_MAGIC = 0x668e33ef

FLAG_FIXED_NEWSTYLE = 1 << 0
FLAG_NO_ZEROES = 1 << 1
FLAG_C_FIXED_NEWSTYLE = 1 << 0
FLAG_C_NO_ZEROES = 1 << 1

# Transmission flags.
FLAG_HAS_FLAGS = 1 << 0
FLAG_READ_ONLY = 1 << 1
FLAG_SEND_FLUSH = 1 << 2
FLAG_SEND_FUA = 1 << 3
FLAG_ROTATIONAL = 1 << 4
FLAG_SEND_TRIM = 1 << 5
FLAG_SEND_WRITE_ZEROES = 1 << 6
FLAG_SEND_DF = 1 << 7
FLAG_CAN_MULTI_CONN = 1 << 8
FLAG_SEND_CACHE = 1 << 10
FLAG_SEND_FAST_ZERO = 1 << 11

OPT_EXPORT_NAME = 1
OPT_ABORT = 2
OPT_LIST = 3
OPT_STARTTLS = 5
OPT_INFO = 6
OPT_GO = 7
OPT_STRUCTURED_REPLY = 8
OPT_LIST_META_CONTEXT = 9
OPT_SET_META_CONTEXT = 10

REP_ACK = 1
REP_SERVER = 2
REP_INFO = 3
REP_META_CONTEXT = 4
REP_ERR = 1 << 31
REP_ERR_UNSUP = REP_ERR | 1
REP_ERR_POLICY = REP_ERR | 2
REP_ERR_INVALID = REP_ERR | 3
REP_ERR_PLATFORM = REP_ERR | 4
REP_ERR_TLS_REQD = REP_ERR | 5
REP_ERR_UNKNOWN = REP_ERR | 6
REP_ERR_SHUTDOWN = REP_ERR | 7
REP_ERR_BLOCK_SIZE_REQD = REP_ERR | 8
REP_ERR_TOO_BIG = REP_ERR | 9

INFO_EXPORT = 0
INFO_NAME = 1
INFO_DESCRIPTION = 2
INFO_BLOCK_SIZE = 3

CMD_READ = 0
CMD_WRITE = 1
CMD_DISC = 2
CMD_FLUSH = 3
CMD_TRIM = 4
CMD_CACHE = 5
CMD_WRITE_ZEROES = 6
CMD_BLOCK_STATUS = 7

CMD_FLAG_FUA = 1 << 0
CMD_FLAG_NO_HOLE = 1 << 1
CMD_FLAG_DF = 1 << 2
CMD_FLAG_REQ_ONE = 1 << 3
CMD_FLAG_FAST_ZERO = 1 << 4

REPLY_FLAG_DONE = 1 << 0
REPLY_TYPE_NONE = 0
REPLY_TYPE_OFFSET_DATA = 1
REPLY_TYPE_OFFSET_HOLE = 2
REPLY_TYPE_BLOCK_STATUS = 5
REPLY_TYPE_ERROR = (1 << 15) | 1
REPLY_TYPE_ERROR_OFFSET = (1 << 15) | 2

EPERM = 1
EIO = 5
ENOMEM = 12
EINVAL = 22
ENOSPC = 28
EOVERFLOW = 75
ENOTSUP = 95
ESHUTDOWN = 108

STATE_HOLE = 1 << 0
STATE_ZERO = 1 << 1
STATE_DIRTY = 1 << 0

_CMD_NAMES = {CMD_READ: 'READ', CMD_WRITE: 'WRITE', CMD_DISC: 'DISC',
              CMD_FLUSH: 'FLUSH', CMD_TRIM: 'TRIM', CMD_CACHE: 'CACHE',
              CMD_WRITE_ZEROES: 'WRITE_ZEROES',
              CMD_BLOCK_STATUS: 'BLOCK_STATUS'}


class NbdProtocolError(AssertionError):
    """The server broke the protocol (or closed the connection early)."""


class NbdClosed(NbdProtocolError):
    """The server closed the connection."""


class NbdOptionError(Exception):
    """An option got an error reply (rep is the NBD_REP_ERR_* value)."""

    def __init__(self, opt, rep, message):
        super().__init__('option %d: error reply 0x%x: %s'
                         % (opt, rep, message))
        self.opt = opt
        self.rep = rep
        self.message = message


class NbdError(Exception):
    """A transmission request failed (error is the NBD error number)."""

    def __init__(self, handle, error, message=''):
        super().__init__('request %d failed with error %d%s'
                         % (handle, error, ': ' + message if message else ''))
        self.handle = handle
        self.error = error
        self.message = message


class Reply:
    """The complete reply to one request."""

    def __init__(self, handle, cmd):
        self.handle = handle
        self.cmd = cmd
        self.error = 0
        self.message = ''
        self.data = None          # READ: assembled bytes
        self.chunks = []          # structured: (flags, type, payload)
        self.extents = {}         # BLOCK_STATUS: context id -> [(len, fl)]


class NbdClient:
    def __init__(self, sock, strict=True):
        self.sock = sock
        self.strict = strict
        self.handshake_flags = None
        self.no_zeroes = False
        self.structured = False
        self.size = None
        self.tx_flags = None
        self.block_sizes = None
        self.contexts = {}        # name -> id (from SET_META_CONTEXT)
        self._next_handle = 1
        self._pending = {}        # handle -> (cmd, offset, length, flags)
        self._partial = {}        # handle -> (Reply, covered ranges)

    # -- connection ---------------------------------------------------

    @classmethod
    def unix(cls, path, strict=True, timeout=60):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        s.connect(path)
        return cls(s, strict)

    @classmethod
    def tcp(cls, host, port, strict=True, timeout=60):
        s = socket.create_connection((host, port), timeout=timeout)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(s, strict)

    def close(self):
        if self.sock:
            try:
                self.sock.close()
            finally:
                self.sock = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- raw I/O --------------------------------------------------------

    def send_raw(self, data):
        self.sock.sendall(data)

    def recv_exact(self, n):
        buf = bytearray()
        while len(buf) < n:
            chunk = self.sock.recv(min(n - len(buf), 1 << 20))
            if not chunk:
                raise NbdClosed('server closed the connection after %d of '
                                '%d bytes' % (len(buf), n))
            buf += chunk
        return bytes(buf)

    def at_eof(self, timeout=30):
        """True when the server has closed the connection (reads EOF
        within `timeout` seconds, discarding anything before it)."""
        old = self.sock.gettimeout()
        self.sock.settimeout(timeout)
        try:
            while True:
                try:
                    chunk = self.sock.recv(65536)
                except ConnectionResetError:
                    return True
                if not chunk:
                    return True
        except socket.timeout:
            return False
        finally:
            self.sock.settimeout(old)

    # -- handshake ------------------------------------------------------

    def greeting(self):
        magic, opts_magic, flags = struct.unpack('>QQH', self.recv_exact(18))
        if magic != INIT_MAGIC or opts_magic != OPTS_MAGIC:
            raise NbdProtocolError('bad greeting %x %x' % (magic, opts_magic))
        self.handshake_flags = flags
        return flags

    def client_flags(self, flags=None):
        if flags is None:
            flags = FLAG_C_FIXED_NEWSTYLE
            if self.handshake_flags & FLAG_NO_ZEROES:
                flags |= FLAG_C_NO_ZEROES
        self.no_zeroes = bool(flags & FLAG_C_NO_ZEROES)
        self.send_raw(struct.pack('>I', flags))

    def start(self, flags=None):
        """Greeting plus client flags."""
        self.greeting()
        self.client_flags(flags)

    def send_option(self, opt, data=b'', length=None):
        if length is None:
            length = len(data)
        self.send_raw(struct.pack('>QII', OPTS_MAGIC, opt, length) + data)

    def option_reply(self, opt=None):
        magic, ropt, rtype, length = struct.unpack('>QIII',
                                                   self.recv_exact(20))
        if magic != REP_MAGIC:
            raise NbdProtocolError('bad option reply magic 0x%x' % magic)
        if self.strict and opt is not None and ropt != opt:
            raise NbdProtocolError('reply to option %d, expected %d'
                                   % (ropt, opt))
        if self.strict and length > 1 << 20:
            raise NbdProtocolError('option reply of %d bytes' % length)
        return ropt, rtype, self.recv_exact(length)

    def _final(self, opt, rtype, data):
        if rtype & REP_ERR:
            raise NbdOptionError(opt, rtype,
                                 data.decode('utf-8', 'replace'))
        if rtype != REP_ACK:
            raise NbdProtocolError('unexpected reply type %d to option %d'
                                   % (rtype, opt))

    def opt_abort(self):
        self.send_option(OPT_ABORT)
        try:
            _, rtype, _ = self.option_reply(OPT_ABORT)
            return rtype
        except NbdClosed:
            return None

    def opt_structured_reply(self):
        self.send_option(OPT_STRUCTURED_REPLY)
        self._final(OPT_STRUCTURED_REPLY, *self.option_reply(
            OPT_STRUCTURED_REPLY)[1:])
        self.structured = True

    def opt_list(self):
        """[(name, description)] of every export."""
        self.send_option(OPT_LIST)
        out = []
        while True:
            _, rtype, data = self.option_reply(OPT_LIST)
            if rtype != REP_SERVER:
                self._final(OPT_LIST, rtype, data)
                return out
            (n,) = struct.unpack('>I', data[:4])
            out.append((data[4:4 + n].decode(), data[4 + n:].decode()))

    @staticmethod
    def _info_payload(name, infos):
        nb = name.encode() if isinstance(name, str) else name
        return (struct.pack('>I', len(nb)) + nb
                + struct.pack('>H', len(infos))
                + b''.join(struct.pack('>H', i) for i in infos))

    def _info_go(self, opt, name, infos):
        self.send_option(opt, self._info_payload(name, infos))
        info = {}
        while True:
            _, rtype, data = self.option_reply(opt)
            if rtype != REP_INFO:
                self._final(opt, rtype, data)
                break
            (itype,) = struct.unpack('>H', data[:2])
            body = data[2:]
            if itype == INFO_EXPORT:
                info['size'], info['flags'] = struct.unpack('>QH', body)
            elif itype == INFO_NAME:
                info['name'] = body.decode()
            elif itype == INFO_DESCRIPTION:
                info['description'] = body.decode()
            elif itype == INFO_BLOCK_SIZE:
                info['block_size'] = struct.unpack('>III', body)
        if self.strict and 'size' not in info:
            raise NbdProtocolError('no NBD_INFO_EXPORT in reply')
        return info

    def opt_info(self, name='', infos=(INFO_NAME, INFO_DESCRIPTION,
                                       INFO_BLOCK_SIZE)):
        return self._info_go(OPT_INFO, name, infos)

    def opt_go(self, name='', infos=(INFO_BLOCK_SIZE,)):
        info = self._info_go(OPT_GO, name, infos)
        self.size = info.get('size')
        self.tx_flags = info.get('flags')
        self.block_sizes = info.get('block_size')
        return info

    def opt_export_name(self, name=''):
        nb = name.encode() if isinstance(name, str) else name
        self.send_option(OPT_EXPORT_NAME, nb)
        n = 10 if self.no_zeroes else 134
        data = self.recv_exact(n)
        self.size, self.tx_flags = struct.unpack('>QH', data[:10])
        return self.size, self.tx_flags

    @staticmethod
    def _meta_payload(name, queries):
        nb = name.encode()
        out = struct.pack('>I', len(nb)) + nb + struct.pack('>I',
                                                            len(queries))
        for q in queries:
            qb = q.encode() if isinstance(q, str) else q
            out += struct.pack('>I', len(qb)) + qb
        return out

    def _meta(self, opt, name, queries):
        self.send_option(opt, self._meta_payload(name, queries))
        out = []
        while True:
            _, rtype, data = self.option_reply(opt)
            if rtype != REP_META_CONTEXT:
                self._final(opt, rtype, data)
                return out
            (cid,) = struct.unpack('>I', data[:4])
            out.append((cid, data[4:].decode()))

    def opt_list_meta_context(self, name='', queries=()):
        """Context names the server lists for the queries."""
        return [n for _, n in self._meta(OPT_LIST_META_CONTEXT, name,
                                         queries)]

    def opt_set_meta_context(self, name='', queries=()):
        """Select contexts; returns {name: id}."""
        got = self._meta(OPT_SET_META_CONTEXT, name, queries)
        self.contexts = {n: cid for cid, n in got}
        if self.strict and len(set(self.contexts.values())) != len(got):
            raise NbdProtocolError('duplicate context ids %r' % got)
        return dict(self.contexts)

    def negotiate(self, name='', structured=True, contexts=()):
        """The usual handshake: flags, STRUCTURED_REPLY, SET_META_CONTEXT,
        GO.  Returns the GO information."""
        self.start()
        if structured:
            self.opt_structured_reply()
        if contexts:
            self.opt_set_meta_context(name, contexts)
        return self.opt_go(name)

    # -- transmission ---------------------------------------------------

    def request(self, cmd, offset=0, length=0, flags=0, data=b'',
                handle=None, magic=REQUEST_MAGIC):
        """Send one request; returns its handle.  WRITE sends `data`
        (whose size is the length unless `length` is given)."""
        if cmd == CMD_WRITE and not length:
            length = len(data)
        if self.strict:
            self._check_request(cmd, offset, length, flags)
        if handle is None:
            handle = self._next_handle
            self._next_handle += 1
        self._pending[handle] = (cmd, offset, length, flags)
        self.send_raw(struct.pack('>IHHQQI', magic, flags, cmd, handle,
                                  offset, length) + data)
        return handle

    def _check_request(self, cmd, offset, length, flags):
        if cmd not in _CMD_NAMES:
            raise ValueError('unknown command %d' % cmd)
        if self.size is not None and cmd != CMD_FLUSH and \
                offset + length > self.size:
            raise ValueError('request beyond the export size')
        if flags & CMD_FLAG_DF and not (self.tx_flags & FLAG_SEND_DF):
            raise ValueError('DF not negotiated')
        if cmd == CMD_BLOCK_STATUS and not self.contexts:
            raise ValueError('no metadata context selected')

    def reply(self):
        """Read until one request's reply is complete (chunks of several
        requests may interleave); returns its Reply."""
        while True:
            (magic,) = struct.unpack('>I', self.recv_exact(4))
            if magic == SIMPLE_REPLY_MAGIC:
                return self._simple()
            if magic != STRUCTURED_REPLY_MAGIC:
                raise NbdProtocolError('bad reply magic 0x%x' % magic)
            if self.strict and not self.structured:
                raise NbdProtocolError('structured reply not negotiated')
            r = self._structured_chunk()
            if r is not None:
                return r

    def _simple(self):
        error, handle = struct.unpack('>IQ', self.recv_exact(12))
        if handle not in self._pending:
            raise NbdProtocolError('reply for unknown handle %d' % handle)
        cmd, offset, length, flags = self._pending.pop(handle)
        r = Reply(handle, cmd)
        r.error = error
        if cmd == CMD_READ and error == 0:
            if self.strict and self.structured:
                raise NbdProtocolError('simple reply to READ with '
                                       'structured replies')
            r.data = self.recv_exact(length)
        return r

    def _structured_chunk(self):
        flags, rtype, handle, length = struct.unpack(
            '>HHQI', self.recv_exact(16))
        payload = self.recv_exact(length)
        if handle not in self._pending:
            raise NbdProtocolError('chunk for unknown handle %d' % handle)
        cmd, offset, rlen, rflags = self._pending[handle]
        partial = self._partial.get(handle)
        if partial is None:
            partial = (Reply(handle, cmd), [])
            self._partial[handle] = partial
        r, covered = partial
        r.chunks.append((flags, rtype, payload))
        self._apply_chunk(r, rtype, payload, offset, rlen,
                          covered if cmd == CMD_READ else None)
        if not flags & REPLY_FLAG_DONE:
            return None
        del self._partial[handle]
        del self._pending[handle]
        if cmd == CMD_READ:
            got = sum(n for _, n, _ in covered)
            if self.strict and not r.error and got != rlen:
                raise NbdProtocolError('read reply covers %d of %d '
                                       'bytes' % (got, rlen))
            if not r.error:
                # Assembled only now: an error reply to a huge request
                # must not make the client allocate its length.
                data = bytearray(rlen)
                for off, n, payload in covered:
                    if payload is not None:
                        data[off - offset:off - offset + n] = payload
                r.data = bytes(data)
        return r

    def _apply_chunk(self, r, rtype, payload, offset, length, covered):
        if rtype == REPLY_TYPE_NONE:
            return
        if rtype & (1 << 15):
            err, mlen = struct.unpack('>IH', payload[:6])
            r.error = err
            r.message = payload[6:6 + mlen].decode('utf-8', 'replace')
            if self.strict and err == 0:
                raise NbdProtocolError('error chunk with error 0')
            return
        if rtype == REPLY_TYPE_OFFSET_DATA and covered is not None:
            (off,) = struct.unpack('>Q', payload[:8])
            data = payload[8:]
            self._cover(covered, off, len(data), offset, length, data)
        elif rtype == REPLY_TYPE_OFFSET_HOLE and covered is not None:
            off, n = struct.unpack('>QI', payload)
            self._cover(covered, off, n, offset, length, None)
        elif rtype == REPLY_TYPE_BLOCK_STATUS:
            (cid,) = struct.unpack('>I', payload[:4])
            body = payload[4:]
            if self.strict and (len(body) == 0 or len(body) % 8):
                raise NbdProtocolError('bad block status length')
            ext = [struct.unpack('>II', body[i:i + 8])
                   for i in range(0, len(body), 8)]
            if self.strict and cid in r.extents:
                raise NbdProtocolError('context %d reported twice' % cid)
            r.extents[cid] = ext
        elif self.strict:
            raise NbdProtocolError('unexpected chunk type %d' % rtype)

    def _cover(self, covered, off, n, offset, length, data):
        if n == 0 or off < offset or off + n > offset + length:
            if self.strict:
                raise NbdProtocolError('chunk %d+%d outside request %d+%d'
                                       % (off, n, offset, length))
            return                      # ignored when not strict
        if self.strict:
            for o, m, _ in covered:
                if off < o + m and o < off + n:
                    raise NbdProtocolError('overlapping chunks')
        covered.append((off, n, data))

    def _check(self, r):
        if r.error:
            raise NbdError(r.handle, r.error, r.message)
        return r

    # -- one-request helpers (raise NbdError on an error reply) ---------

    def read(self, offset, length, flags=0):
        self.request(CMD_READ, offset, length, flags)
        return self._check(self.reply()).data

    def write(self, offset, data, flags=0):
        self.request(CMD_WRITE, offset, len(data), flags, data)
        self._check(self.reply())

    def flush(self):
        self.request(CMD_FLUSH)
        self._check(self.reply())

    def trim(self, offset, length, flags=0):
        self.request(CMD_TRIM, offset, length, flags)
        self._check(self.reply())

    def write_zeroes(self, offset, length, flags=0):
        self.request(CMD_WRITE_ZEROES, offset, length, flags)
        self._check(self.reply())

    def cache(self, offset, length):
        self.request(CMD_CACHE, offset, length)
        self._check(self.reply())

    def block_status(self, offset, length, flags=0):
        """{context name: [(length, flags), ...]}"""
        self.request(CMD_BLOCK_STATUS, offset, length, flags)
        r = self._check(self.reply())
        names = {cid: n for n, cid in self.contexts.items()}
        if self.strict:
            if set(r.extents) != set(names):
                raise NbdProtocolError('contexts %r in reply, selected %r'
                                       % (sorted(r.extents), sorted(names)))
            for ext in r.extents.values():
                if sum(n for n, _ in ext) > length or \
                        any(n == 0 for n, _ in ext):
                    raise NbdProtocolError('bad extents %r' % ext[:10])
        return {names.get(cid, cid): ext for cid, ext in r.extents.items()}

    def map(self, context='base:allocation', offset=0, length=None):
        """Walk [offset, offset+length) with BLOCK_STATUS; returns merged
        [(offset, length, flags)] for one context."""
        if length is None:
            length = self.size - offset
        end = offset + length
        out = []
        while offset < end:
            n = min(end - offset, 0xffffffff & ~511)
            ext = self.block_status(offset, n)[context]
            for elen, fl in ext:
                if out and out[-1][2] == fl and \
                        out[-1][0] + out[-1][1] == offset:
                    out[-1] = (out[-1][0], out[-1][1] + elen, fl)
                else:
                    out.append((offset, elen, fl))
                offset += elen
        return out

    def disconnect(self):
        self.send_raw(struct.pack('>IHHQQI', REQUEST_MAGIC, 0, CMD_DISC,
                                  0, 0, 0))
        self.close()


def libnbd():
    """python3-libnbd's `nbd` module, or None.  If this file shadows it
    (harness/ on sys.path), look past harness/ and leave the real module
    in sys.modules: libnbd's C code looks its classes up there."""
    import os
    import sys
    mod = sys.modules.get('nbd')
    if mod is not None and hasattr(mod, 'NBD'):
        return mod
    here = os.path.dirname(os.path.abspath(__file__))
    saved_path = sys.path[:]
    sys.modules.pop('nbd', None)
    sys.path[:] = [p for p in sys.path
                   if os.path.abspath(p or os.curdir) != here]
    try:
        import nbd as mod
    except ImportError:
        mod = None
    finally:
        sys.path[:] = saved_path
    return mod
