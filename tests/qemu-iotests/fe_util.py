"""Helpers shared by the qemu-img / qemu-io front-end tests
(test_qemu_io.py, test_qemu_img_*.py): run our tool and the real QEMU 7.2
one side by side on identical files, filter the parts that legitimately
differ (timing lines, program versions), and skip cleanly when our qcow2
driver is not there yet."""

import os
import re
import shutil

from harness import IotestCase, proc

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

# qemu-io statistics lines: "4 KiB, 1 ops; 00.00 sec (1.3 MiB/sec and ...)"
TIMING_RE = re.compile(r'^.*ops; .*sec.* ops/sec\)$')
# qemu-io -C lines: "bytes,ops,time,bytes/sec,ops/sec"
MACHINE_RE = re.compile(r'^\d+,\d+,\d+:\d\d:\d\d\.\d\d,([\d.]+|inf|nan),'
                        r'([\d.]+|inf|nan)$')


def filter_timing(text):
    """Drop qemu-io's timing lines (never compared: tests do not assert on
    timing)."""
    return '\n'.join(l for l in text.split('\n')
                     if not TIMING_RE.match(l) and not MACHINE_RE.match(l))


def filter_bench(text):
    """Drop `qemu-img bench`'s elapsed-time line."""
    return '\n'.join(l for l in text.split('\n')
                     if not l.startswith('Run completed in '))


class FrontendCase(IotestCase):
    """Base for the front-end tests: both tools, two mirrored dirs."""

    def setUp(self):
        super().setUp()
        self.dirs = {}
        for side in ('ours', 'real'):
            d = self.img(side)
            os.makedirs(d, exist_ok=True)
            self.dirs[side] = d

    def tool(self, side, name):
        return self.ours(name) if side == 'ours' else self.real(name)

    def qcow2_ok(self):
        """Skip unless our qemu-img can create a qcow2 image."""
        d = self.img('probe-qcow2')
        os.makedirs(d, exist_ok=True)
        rc, out, err = proc.run([self.ours('qemu-img'), 'create', '-q',
                                 '-f', 'qcow2', os.path.join(d, 'p.qcow2'),
                                 '1M'])
        if rc != 0:
            self.skipTest('our qcow2 driver cannot create images yet: %s'
                          % err.strip())

    def run_side(self, side, argv, cwd=None, **kw):
        """Run argv (first element a tool name, e.g. 'qemu-img') with the
        side's tool, in the side's directory.  Returns (rc, out, err)."""
        full = [self.tool(side, argv[0])] + list(argv[1:])
        return proc.run(full, cwd=cwd or self.dirs[side], **kw)

    def run_both(self, argv, **kw):
        return (self.run_side('ours', argv, **kw),
                self.run_side('real', argv, **kw))

    def assert_same(self, argv, filt=None, stderr=True, **kw):
        """Run argv on both sides; assert identical rc/stdout(/stderr)
        after `filt`.  Returns our (rc, out, err)."""
        ours, real = self.run_both(argv, **kw)
        f = filt or (lambda s: s)
        what = ' '.join(argv)
        self.assertEqual(f(ours[1]), f(real[1]), 'stdout of %s' % what)
        if stderr:
            self.assertEqual(f(ours[2]), f(real[2]), 'stderr of %s' % what)
        self.assertEqual(ours[0], real[0], 'exit code of %s\nours: %s\n'
                         'real: %s' % (what, ours[2], real[2]))
        return ours

    def copy_to_both(self, path, name=None):
        """Copy an image into both side directories under `name`."""
        name = name or os.path.basename(path)
        for d in self.dirs.values():
            shutil.copyfile(path, os.path.join(d, name))
        return name

    def real_img(self, *args):
        return self.run_ok([self.real('qemu-img')] + list(args))

    def real_io(self, *args):
        return self.run_ok([self.real('qemu-io')] + list(args))

    def our_img(self, *args):
        return self.run_ok([self.ours('qemu-img')] + list(args))

    def our_io(self, *args):
        return self.run_ok([self.ours('qemu-io')] + list(args))
