"""Shared helpers of the test_bitmaps_*.py iotests.

BitmapCase adds to IotestCase: running our and the real qemu-img, the
bitmap list of `qemu-img info` (format-specific data), and the dirty
extents of a bitmap three ways -- our `qemu-img map --bitmap`, the real
tools (real qemu-nbd -B NAME read by the real qemu-img map through
x-dirty-bitmap, where dirty reads as "data": false), and the raw bits on
disk (harness.qcow2).
"""

import hashlib
import json
import random

from harness import IotestCase, proc, qcow2

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB


def merge_ranges(ranges):
    """Sort and coalesce [(start, length)]."""
    out = []
    for s, n in sorted(ranges):
        if n <= 0:
            continue
        if out and out[-1][0] + out[-1][1] >= s:
            end = max(out[-1][0] + out[-1][1], s + n)
            out[-1] = (out[-1][0], end - out[-1][0])
        else:
            out.append((s, n))
    return out


def round_out(ranges, gran, size):
    """What a bitmap of granularity `gran` records for writes `ranges`."""
    out = []
    for s, n in ranges:
        a = s // gran * gran
        b = min(-(-(s + n) // gran) * gran, size)
        out.append((a, b - a))
    return merge_ranges(out)


def file_sha(path):
    with open(path, 'rb') as f:
        return hashlib.sha256(f.read()).hexdigest()


class BitmapCase(IotestCase):

    # -- tools -----------------------------------------------------------

    def qimg(self, which):
        return self.ours('qemu-img') if which == 'ours' \
            else self.real('qemu-img')

    def qio(self, which):
        return self.ours('qemu-io') if which == 'ours' \
            else self.real('qemu-io')

    def ours_ok(self, *args):
        return self.run_ok([self.ours('qemu-img')] + [str(a) for a in args])

    def real_ok(self, *args):
        return self.run_ok([self.real('qemu-img')] + [str(a) for a in args])

    def create(self, name, size='1G', which='real', check=True):
        path = self.img(name)
        self.run_ok([self.qimg(which), 'create', '-f', 'qcow2', path,
                     str(size)])
        return self.checked(path) if check else self.unchecked(path)

    def io(self, which, path, *cmds):
        argv = [self.qio(which), '-f', 'qcow2']
        for c in cmds:
            argv += ['-c', c]
        return self.run_ok(argv + [path])

    # -- views of the bitmaps ---------------------------------------------

    def info_bitmaps(self, path, which='real'):
        out = self.run_ok([self.qimg(which), 'info', '--output=json', '-U',
                           path])
        data = json.loads(out)['format-specific']['data']
        return data.get('bitmaps', [])

    def our_list(self, path):
        return json.loads(self.ours_ok('bitmap', '--list', '--output=json',
                                       '-U', path))

    def our_extents(self, path, name):
        """Dirty [(start, length)] from our `map --bitmap`."""
        out = self.ours_ok('map', '--output=json', '--bitmap', name, '-U',
                           path)
        return merge_ranges((e['start'], e['length'])
                            for e in json.loads(out) if e['dirty'])

    def real_extents(self, path, name):
        """Dirty [(start, length)] as the real QEMU tools see them."""
        sock = self.sock('rq-%d.sock' % len(self._daemons))
        d = self.start_daemon([self.real('qemu-nbd'), '-r', '-f', 'qcow2',
                               '-k', sock, '-B', name, path],
                              socket_path=sock)
        try:
            out = self.run_ok([
                self.real('qemu-img'), 'map', '--output=json',
                '--image-opts',
                'driver=nbd,server.type=unix,server.path=%s,'
                'x-dirty-bitmap=qemu:dirty-bitmap:%s' % (sock, name)])
        finally:
            d.stop()
            self._daemons.remove(d)
        return merge_ranges((e['start'], e['length'])
                            for e in json.loads(out) if not e['data'])

    def disk_bits(self, path, name):
        return qcow2.Image(path).bitmap_dirty_bits(name)

    def assert_same_extents(self, path, name, expect=None):
        ours = self.our_extents(path, name)
        real = self.real_extents(path, name)
        self.assertEqual(ours, real, 'bitmap %s: ours vs QEMU' % name)
        if expect is not None:
            self.assertEqual(ours, expect, 'bitmap %s: vs model' % name)
        return ours

    # -- workloads --------------------------------------------------------

    def random_writes(self, which, path, size, n=40, seed=1,
                      max_len=3 * MiB, kinds=('write', 'zero', 'discard')):
        """Random writes/zeroes/discards through qemu-io; returns the
        ranges touched."""
        rnd = random.Random(seed)
        cmds, ranges = [], []
        for _ in range(n):
            length = rnd.randrange(1, max_len) // 512 * 512 + 512
            start = rnd.randrange(0, size - length) // 512 * 512
            kind = rnd.choice(kinds)
            if kind == 'write':
                cmds.append('write -P %d %d %d' % (rnd.randrange(1, 255),
                                                   start, length))
            elif kind == 'zero':
                cmds.append('write -z %d %d' % (start, length))
            else:
                cmds.append('discard %d %d' % (start, length))
            ranges.append((start, length))
        self.io(which, path, *cmds)
        return ranges
