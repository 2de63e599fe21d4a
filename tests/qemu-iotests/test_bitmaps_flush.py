"""A front-end flush stores persistent bitmaps: after qemu-io's `flush`
the stored bitmap is consistent (no in-use flag) even while the process
keeps the image open, and a crash right after loses nothing."""

import json
import signal
import subprocess
import time
import unittest

from harness import IotestCase


class TestFlushStoresBitmaps(IotestCase):

    def bitmap_flags(self, path):
        info = json.loads(self.run_ok([self.real('qemu-img'), 'info', '-U',
                                       '--output=json', path]))
        return {b['name']: b['flags']
                for b in info['format-specific']['data'].get('bitmaps', [])}

    def run_and_kill(self, path, commands):
        """Run qemu-io interactively, wait for the commands' output, then
        SIGKILL it (a crash with the image still open)."""
        p = subprocess.Popen([self.ours('qemu-io'), path],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
        self.addCleanup(lambda: p.poll() is None and p.kill())
        p.stdin.write(''.join(c + '\n' for c in commands).encode())
        p.stdin.write(b'length\n')
        p.stdin.flush()
        deadline = time.monotonic() + 30
        out = b''
        # "length" answers with the image size: all commands before it ran.
        while b'64 MiB\n' not in out and time.monotonic() < deadline:
            out += p.stdout.read1(4096)
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=30)
        return out.decode()

    def test_flush_clears_in_use(self):
        path = self.checked(self.img('f.qcow2'))
        self.run_ok([self.ours('qemu-img'), 'create', '-q', '-f', 'qcow2',
                     path, '64M'])
        self.run_ok([self.ours('qemu-img'), 'bitmap', '--add', path, 'b'])
        self.run_and_kill(path, ['write 0 64k', 'flush'])
        self.assertEqual(self.bitmap_flags(path), {'b': ['auto']})
        out = self.run_ok([self.ours('qemu-img'), 'map', '--output=json',
                           '--bitmap', 'b', path])
        self.assertIn('"dirty":true', out.replace(' ', ''))

    def test_no_flush_leaves_in_use(self):
        path = self.checked(self.img('g.qcow2'))
        self.run_ok([self.ours('qemu-img'), 'create', '-q', '-f', 'qcow2',
                     path, '64M'])
        self.run_ok([self.ours('qemu-img'), 'bitmap', '--add', path, 'b'])
        self.run_and_kill(path, ['write 0 64k'])
        self.assertIn('in-use', self.bitmap_flags(path)['b'])


if __name__ == '__main__':
    unittest.main()
