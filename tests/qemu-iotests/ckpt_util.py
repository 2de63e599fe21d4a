"""Shared helpers of the test_checkpoints_*.py iotests.

CheckpointCase adds to BitmapCase: our daemon (or the real one) with a
QMP client on one qcow2 image and an NBD server, NBD writes, the dirty
extents of a meta context through libnbd, our `qemu-img checkpoint`, the
checkpoint table read from and written into the image (the layout of
docs/interop/qcow2-checkpoints.rst, written here independently of the C
codec), and a shadow model of the chain: the granules written between
checkpoints, so that every change set can be predicted.
"""

import json
import struct
import zlib

from bitmap_util import BitmapCase, KiB, MiB, GiB, merge_ranges  # noqa
from harness import qcow2, qmp

EXT_CKPT = 0x434B5054
AUTOCLEAR_CKPT = 1 << 48
NODE = 'disk'


def blockdev(path, node=NODE, read_only=False):
    return {'driver': 'qcow2', 'node-name': node, 'read-only': read_only,
            'file': {'driver': 'file', 'filename': path}}


# -- the checkpoint table ------------------------------------------------

def table_decode(data):
    """[dict(name, bitmap, parent_index, sec, nsec, gbits, flags, damage)]
    from the extension's bytes (no validation beyond the layout)."""
    version, _res, n, size, _crc = struct.unpack('>HHIII', data[:16])
    assert version == 1 and size == len(data), (version, size, len(data))
    out, off = [], 16
    for _ in range(n):
        parent, nlen, blen, sec, nsec, gbits, flags, damage, _r = \
            struct.unpack('>IHHqIBBBB', data[off:off + 24])
        name = data[off + 24:off + 24 + nlen].decode()
        bitmap = data[off + 24 + nlen:off + 24 + nlen + blen].decode() \
            if blen else name
        out.append(dict(name=name, bitmap=bitmap, parent_index=parent,
                        sec=sec, nsec=nsec, gbits=gbits, flags=flags,
                        damage=damage))
        off += (24 + nlen + blen + 7) // 8 * 8
    return out


def table_encode(entries, fix_crc=True):
    """Bytes of a table of `entries` (as table_decode() returns them)."""
    body = b''
    for e in entries:
        name = e['name'].encode()
        bitmap = b'' if e['bitmap'] == e['name'] else e['bitmap'].encode()
        ent = struct.pack('>IHHqIBBBB', e['parent_index'], len(name),
                          len(bitmap), e['sec'], e['nsec'], e['gbits'],
                          e['flags'], e['damage'], 0) + name + bitmap
        body += ent + b'\0' * (-len(ent) % 8)
    size = 16 + len(body)
    data = struct.pack('>HHIII', 1, 0, len(entries), size, 0) + body
    if fix_crc:
        data = data[:12] + struct.pack('>I', zlib.crc32(data)) + data[16:]
    return data


def read_table(path):
    """The decoded table of `path`, or None without the extension."""
    e = qcow2.Image(path).extension(EXT_CKPT)
    return table_decode(e.data) if e else None


def rewrite_extensions(path, replace):
    """Rewrite the header extensions of `path` (no backing file): `replace`
    maps an extension type to new data (None drops it).  Types not in the
    image are appended."""
    img = qcow2.Image(path)
    h = img.header()
    exts = [(e.type, e.data) for e in img.extensions()]
    seen = set()
    out = b''
    for etype, data in exts:
        if etype in replace:
            seen.add(etype)
            data = replace[etype]
            if data is None:
                continue
        out += struct.pack('>II', etype, len(data)) + data
        out += b'\0' * (-len(data) % 8)
    for etype, data in replace.items():
        if etype not in seen and data is not None:
            out += struct.pack('>II', etype, len(data)) + data
            out += b'\0' * (-len(data) % 8)
    out += b'\0' * 8
    assert h.header_length + len(out) <= h.cluster_size
    qcow2.write_bytes(path, h.header_length,
                      out + b'\0' * (h.cluster_size - h.header_length
                                     - len(out)))


def write_raw_table(path, data):
    rewrite_extensions(path, {EXT_CKPT: data})


def autoclear(path):
    return qcow2.Image(path).header().autoclear_features


# -- shadow model ----------------------------------------------------------

class Shadow:
    """The chain as a list of [name, set of byte ranges written while it
    was the newest]; predicts change sets at granularity `gran`."""

    def __init__(self, size, gran=64 * KiB):
        self.size, self.gran = size, gran
        self.chain = []             # [name, [ranges]]

    def write(self, off, length):
        if self.chain:
            self.chain[-1][1].append((off, length))

    def add(self, name):
        self.chain.append([name, []])

    def remove(self, name):
        i = self.names().index(name)
        if i > 0:
            self.chain[i - 1][1].extend(self.chain[i][1])
        del self.chain[i]

    def names(self):
        return [c[0] for c in self.chain]

    def ranges(self, frm, to=None):
        names = self.names()
        i = names.index(frm)
        j = names.index(to) if to else len(names)
        touched = [r for c in self.chain[i:j] for r in c[1]]
        return round_out_g(touched, self.gran, self.size)

    def changed_bytes(self, frm):
        return sum(n for _, n in self.ranges(frm))


def round_out_g(ranges, gran, size):
    out = []
    for s, n in ranges:
        a = s // gran * gran
        b = min(-(-(s + n) // gran) * gran, size)
        out.append((a, b - a))
    return merge_ranges(out)


# -- NBD ---------------------------------------------------------------------

def nbd_connect(sock, export, contexts=()):
    import nbd
    h = nbd.NBD()
    for c in contexts:
        h.add_meta_context(c)
    h.set_export_name(export)
    h.connect_unix(sock)
    return h


def nbd_dirty(sock, export, context):
    """Dirty [(start, length)] of meta context `context` of an export."""
    h = nbd_connect(sock, export, [context])
    try:
        assert h.can_meta_context(context), context
        size = h.get_size()
        out, pos = [], 0
        while pos < size:
            got = []

            def cb(ctx, start, entries, err):
                if ctx == context:
                    p = start
                    for i in range(0, len(entries) - 1, 2):
                        got.append((p, entries[i], entries[i + 1]))
                        p += entries[i]
                return 0
            h.block_status(min(size - pos, 1 << 30), pos, cb)
            assert got and got[0][0] == pos, (pos, got[:2])
            for s, n, flags in got:
                n = min(n, size - s)
                if flags & 1:
                    out.append((s, n))
                pos = s + n
        return merge_ranges(out)
    finally:
        h.shutdown()


def nbd_list_contexts(sock, export, query):
    import nbd
    h = nbd.NBD()
    names = []
    h.set_opt_mode(True)
    h.add_meta_context(query)
    h.set_export_name(export)
    h.connect_unix(sock)
    h.opt_list_meta_context(lambda n: names.append(n) or 0)
    h.opt_abort()
    return sorted(names)


class CheckpointCase(BitmapCase):

    # -- daemons -----------------------------------------------------------

    def daemon(self, path, which='ours', read_only=False, node=NODE):
        """Start a storage daemon with `path` as node `node` and an NBD
        server; returns (daemon, qmp client, nbd socket path)."""
        binary = self.ours('qemu-storage-daemon') if which == 'ours' \
            else self.real('qemu-storage-daemon')
        d, socks = qmp.start_qsd(self, binary)
        q = qmp.QMPClient(socks[0])
        q.negotiate()
        self.addCleanup(q.close)
        if path:
            q.cmd_ok('blockdev-add', blockdev(path, node, read_only))
        nsock = self.sock('nbd-%d.sock' % len(self._daemons))
        q.cmd_ok('nbd-server-start', {'addr': {'type': 'unix', 'data': {
            'path': nsock}}})
        return d, q, nsock

    def export(self, q, exp_id, writable=False, node=NODE, **extra):
        args = {'type': 'nbd', 'id': exp_id, 'node-name': node,
                'name': exp_id, 'writable': writable}
        args.update(extra)
        q.cmd_ok('block-export-add', args)

    def unexport(self, q, exp_id):
        q.cmd_ok('block-export-del', {'id': exp_id, 'mode': 'hard'})
        from harness import proc
        proc.wait_for(lambda: not any(
            e['id'] == exp_id for e in q.cmd_ok('query-block-exports')),
            timeout=30, what='export %s gone' % exp_id)

    def quit(self, d, q):
        q.cmd_ok('quit')
        d.wait(timeout=60)

    def nbd_write(self, sock, export, writes, shadow=None):
        """Writes [(offset, length)] through an NBD export; noted in
        `shadow` if given."""
        h = nbd_connect(sock, export)
        try:
            for off, n in writes:
                h.pwrite(b'\xc3' * n, off)
                if shadow:
                    shadow.write(off, n)
            h.flush()
        finally:
            h.shutdown()

    def add(self, q, name, shadow=None, node=NODE, **kw):
        args = {'node': node, 'name': name}
        args.update(kw)
        q.cmd_ok('block-checkpoint-add', args)
        if shadow:
            shadow.add(name)

    def remove(self, q, name, shadow=None, node=NODE):
        q.cmd_ok('block-checkpoint-remove', {'node': node, 'name': name})
        if shadow:
            shadow.remove(name)

    def query(self, q, node=NODE, changed=True):
        r = q.cmd_ok('query-block-checkpoints',
                     {'node': node, 'changed-bytes': changed})
        self.assertEqual(len(r), 1)
        return r[0]['checkpoints']

    def qerror(self, q, cmd, args):
        """The error description of a command that must fail."""
        r = q.cmd(cmd, args)
        self.assertIn('error', r, '%s %s succeeded' % (cmd, args))
        return r['error']['desc']

    def since_export(self, q, sock, name, exp_id='inc'):
        """Dirty ranges of qemu:dirty-bitmap:NAME from a read-only export
        with checkpoints [name]."""
        self.export(q, exp_id, checkpoints=[name])
        try:
            return nbd_dirty(sock, exp_id, 'qemu:dirty-bitmap:' + name)
        finally:
            self.unexport(q, exp_id)

    # -- qemu-img --------------------------------------------------------

    def ckpt_list(self, path):
        return json.loads(self.ours_ok('checkpoint', '-l', '--output=json',
                                       '-U', path))

    def ckpt_diff(self, path, frm, to=None):
        args = ['checkpoint', '--diff', frm, '--output=json', '-U']
        if to:
            args += ['--to', to]
        out = self.ours_ok(*(args + [path]))
        return merge_ranges((e['start'], e['length'])
                            for e in json.loads(out) if e['dirty'])

    def state_of(self, listing):
        """{name: (parent, usable)} of a listing."""
        return {c['name']: (c.get('parent'), c['usable']) for c in listing}

    def assert_model(self, path_or_q, shadow, sock=None):
        """Every change set of the model equals ours (offline with a
        path, or via query + NBD with a QMP client)."""
        for name in shadow.names():
            want = shadow.ranges(name)
            if isinstance(path_or_q, str):
                got = self.ckpt_diff(path_or_q, name)
            else:
                got = self.since_export(path_or_q, sock, name)
            self.assertEqual(got, want, 'changed since %s' % name)


def rss_kib(pid):
    with open('/proc/%d/status' % pid) as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1])
    raise AssertionError('no VmRSS for %d' % pid)

