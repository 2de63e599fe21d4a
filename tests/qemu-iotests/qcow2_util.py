"""Helpers for the qcow2 driver tests (test_qcow2_*.py): our block layer
driven through qcow2-tool (tests/qemu-iotests/tools/qcow2-tool.c, built
as BUILD/tests/unit/qcow2-tool) and our qemu-img/qemu-io, the real QEMU
7.2 tools as oracles, and a byte-array model of the guest disk."""

import hashlib
import os
import random

from harness import IotestCase, env, proc

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB


def sha(path):
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            h.update(chunk)
    return h.hexdigest()


class Model:
    """The expected guest contents, as a sparse dict of 4 KiB pages (so
    that multi-GiB disks cost nothing), written out as a raw file for the
    real `qemu-img compare`."""

    PAGE = 4096

    def __init__(self, size):
        self.size = size
        self.pages = {}

    def write(self, off, data):
        pos = 0
        while pos < len(data):
            page, within = divmod(off + pos, self.PAGE)
            n = min(self.PAGE - within, len(data) - pos)
            buf = self.pages.get(page)
            if buf is None:
                buf = self.pages[page] = bytearray(self.PAGE)
            buf[within:within + n] = data[pos:pos + n]
            pos += n

    def fill(self, off, length, byte):
        self.write(off, bytes([byte]) * length)

    def save_raw(self, path):
        with open(path, 'wb') as f:
            f.truncate(self.size)
            for page in sorted(self.pages):
                f.seek(page * self.PAGE)
                end = min(self.PAGE, self.size - page * self.PAGE)
                f.write(bytes(self.pages[page][:end]))


class Qcow2Case(IotestCase):
    """Base class: tool paths, image creation, I/O through qcow2-tool."""

    def tool(self):
        p = os.path.join(env.BUILD, 'tests', 'unit', 'qcow2-tool')
        if not os.access(p, os.X_OK):
            self.skipTest('qcow2-tool not built')
        return p

    def qimg(self):
        return self.real('qemu-img')

    def create(self, name, size, opts='', check=True):
        """Create with our driver (qcow2-tool create)."""
        path = self.img(name)
        o = 'size=%d' % size + (',' + opts if opts else '')
        self.run_ok([self.tool(), 'create', path, o])
        return self.checked(path) if check else self.unchecked(path)

    def create_real(self, name, size, opts='', check=True):
        path = self.img(name)
        argv = [self.qimg(), 'create', '-q', '-f', 'qcow2']
        if opts:
            argv += ['-o', opts]
        self.run_ok(argv + [path, str(size)])
        return self.checked(path) if check else self.unchecked(path)

    def io(self, path, cmds, opts=None, readonly=False, ok=True):
        """Run ';'-separated qcow2-tool io commands (list of lists)."""
        argv = [self.tool(), 'io', path]
        if readonly:
            argv.append('-r')
        if opts:
            argv += ['-o', opts]
        for i, c in enumerate(cmds):
            if i:
                argv.append(';')
            argv += [str(x) for x in c]
        if ok:
            return self.run_ok(argv)
        return self.run_cmd(argv)

    def real_io(self, path, *cmds, fmt='qcow2'):
        argv = [self.real('qemu-io'), '-f', fmt]
        for c in cmds:
            argv += ['-c', c]
        return self.run_ok(argv + [path])

    def our_check(self, path, mode='none'):
        """(rc, parsed key=value result line, stderr) of qcow2-tool check."""
        rc, out, err = self.run_cmd([self.tool(), 'check', path, mode])
        self.assertGreaterEqual(rc, 0, err)
        res = {}
        for tok in out.split():
            k, _, v = tok.partition('=')
            res[k] = int(v)
        return rc, res, err

    def real_check(self, path):
        rc, out, err = self.run_cmd([self.qimg(), 'check', path])
        return rc, out + err

    def assert_real_clean(self, path, leaks_ok=False):
        rc, text = self.real_check(path)
        allowed = (0, 3) if leaks_ok else (0,)
        self.assertIn(rc, allowed, text)

    def assert_same_as_raw(self, path, raw, fmt='qcow2'):
        rc, out, err = self.run_cmd([self.qimg(), 'compare', '-f', fmt,
                                     '-F', 'raw', path, raw])
        self.assertEqual(rc, 0, out + err)

    def info(self, path):
        out = self.run_ok([self.tool(), 'info', path])
        return dict(l.split('=', 1) for l in out.splitlines() if '=' in l)

    def random_writes(self, path, model, seed, count, max_len=256 * KiB,
                      ops=('write', 'write', 'write', 'zero', 'discard'),
                      cluster=64 * KiB, batch=64):
        """Seeded random writes, zeroes and discards through our driver,
        mirrored into `model`.  Discards are whole-cluster (so the model
        knows they read as zeroes: no backing file)."""
        rnd = random.Random(seed)
        cmds = []

        def flush():
            if cmds:
                self.io(path, cmds)
                cmds.clear()

        for _ in range(count):
            op = rnd.choice(ops)
            off = rnd.randrange(0, model.size - 1)
            ln = rnd.randrange(1, min(model.size - off, max_len) + 1)
            if op == 'write':
                pat = rnd.randrange(1, 256)
                cmds.append(['write', off, ln, pat])
                model.fill(off, ln, pat)
            elif op == 'zero':
                cmds.append(['zero', off, ln] +
                            (['unmap'] if rnd.random() < 0.5 else []))
                model.fill(off, ln, 0)
            else:
                a = -(-off // cluster) * cluster
                b = (off + ln) // cluster * cluster
                if b > a:
                    cmds.append(['discard', a, b - a])
                    model.fill(a, b - a, 0)
            if len(cmds) >= batch:
                flush()
        flush()
