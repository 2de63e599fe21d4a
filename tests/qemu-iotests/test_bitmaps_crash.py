#!/usr/bin/python3
"""Crashes and persistent bitmaps: a process killed while a bitmap records
leaves it in-use on disk; the next open reports it inconsistent, nothing
serves or copies it (NBD export, map, merge, convert unless told to skip
it), and `qemu-img bitmap --remove` deletes it cleanly (real check clean).
A clean stop clears the flag; opening read-only changes no byte."""

import signal
import unittest

from bitmap_util import BitmapCase, KiB, MiB, file_sha, round_out
from harness import qcow2, requires_module

SIZE = 64 * MiB


@requires_module('nbd')
class TestCrash(BitmapCase):

    def serve_ours(self, path, *extra):
        sock = self.sock('ours-%d.sock' % len(self._daemons))
        d = self.start_daemon([self.ours('qemu-nbd'), '-t', '-f', 'qcow2',
                               '-k', sock] + list(extra) + [path],
                              socket_path=sock)
        return d, sock

    def write_over_nbd(self, sock, writes):
        import nbd
        h = nbd.NBD()
        h.connect_unix(sock)
        for off, n in writes:
            h.pwrite(b'\xa5' * n, off)
        h.flush()
        h.shutdown()

    def make(self):
        path = self.create('img.qcow2', SIZE)
        self.real_ok('bitmap', '--add', path, 'rec')
        self.real_ok('bitmap', '--add', '--disable', path, 'off')
        self.io('real', path, 'write 1M 64k')       # rec has something
        return path

    def test_kill_while_recording(self):
        path = self.make()
        d, sock = self.serve_ours(path)
        self.write_over_nbd(sock, [(8 * MiB, 4 * KiB)])
        # Flagged before the write reached the disk.
        self.assertTrue(qcow2.Image(path).bitmap('rec').in_use)
        self.assertFalse(qcow2.Image(path).bitmap('off').in_use)
        d.kill()
        info = self.info_bitmaps(path)
        self.assertEqual(info[0], {'flags': ['in-use', 'auto'],
                                   'name': 'rec', 'granularity': 65536})
        self.assertEqual(info[1]['flags'], [])
        listed = {b['name']: b for b in self.our_list(path)}
        self.assertTrue(listed['rec']['inconsistent'])
        self.assertTrue(listed['rec']['in-use'])
        self.assertFalse(listed['rec']['recording'])
        self.assertNotIn('count', listed['rec'])
        self.assertFalse(listed['off']['inconsistent'])
        ours = self.ours('qemu-img')
        # Nothing uses it.
        _, err = self.run_fail([ours, 'map', '--bitmap', 'rec', path], rc=1)
        self.assertIn("Bitmap 'rec' is inconsistent", err)
        _, err = self.run_fail([ours, 'bitmap', '--merge', 'rec', path,
                                'off'], rc=1)
        self.assertIn("Operation merge on bitmap off failed: Bitmap 'rec' "
                      "is inconsistent and cannot be used", err)
        _, err = self.run_fail([ours, 'bitmap', '--clear', path, 'rec'],
                               rc=1)
        self.assertIn('inconsistent', err)
        out = self.img('out.qcow2')
        _, err = self.run_fail([ours, 'convert', '--bitmaps', '-O', 'qcow2',
                                path, out], rc=1)
        self.assertIn("Cannot copy inconsistent bitmap 'rec'", err)
        self.assertIn('--skip-broken-bitmaps', err)
        self.run_ok([ours, 'convert', '--bitmaps', '--skip-broken-bitmaps',
                     '-O', 'qcow2', path, self.checked(out)])
        self.assertEqual([b['name'] for b in self.info_bitmaps(out)],
                         ['off'])
        sock2 = self.sock('refuse.sock')
        rc, _, err = self.run_cmd([self.ours('qemu-nbd'), '-f', 'qcow2',
                                   '-k', sock2, '-B', 'rec', path],
                                  timeout=30)
        self.assertNotEqual(rc, 0)
        self.assertGreater(rc, 0)
        # Resizing follows QEMU: refused while a bitmap is inconsistent.
        _, err = self.run_fail([ours, 'resize', path, '128M'], rc=1)
        self.assertIn("Bitmap 'rec' is inconsistent", err)
        # Removal works and leaves a clean image.
        self.ours_ok('bitmap', '--remove', path, 'rec')
        self.assertEqual([b['name'] for b in self.info_bitmaps(path)],
                         ['off'])
        rc, text = self.check_image(path)
        self.assertEqual(rc, 0, text)

    def test_clean_stop_clears_in_use(self):
        path = self.make()
        d, sock = self.serve_ours(path)
        writes = [(8 * MiB, 4 * KiB), (20 * MiB + 1, 70 * KiB)]
        self.write_over_nbd(sock, writes)
        d.stop(sig=signal.SIGTERM)
        self.assertFalse(qcow2.Image(path).bitmap('rec').in_use)
        want = round_out(writes + [(1 * MiB, 64 * KiB)], 64 * KiB, SIZE)
        self.assert_same_extents(path, 'rec', want)
        self.assertEqual(self.real_extents(path, 'off'), [])

    def test_no_write_no_flag(self):
        """A read-write open that never writes does not touch the
        directory, so a crash then costs nothing."""
        path = self.make()
        before = file_sha(path)
        d, sock = self.serve_ours(path)
        import nbd
        h = nbd.NBD()
        h.connect_unix(sock)
        h.pread(4096, 0)
        h.shutdown()
        d.kill()
        self.assertEqual(file_sha(path), before)
        self.assertEqual(self.info_bitmaps(path)[0]['flags'], ['auto'])

    def test_killed_real_qemu(self):
        """In-use left by real QEMU is inconsistent for us too."""
        path = self.make()
        sock = self.sock()
        d = self.start_daemon([
            self.real('qemu-storage-daemon'),
            '--blockdev', 'driver=file,filename=%s,node-name=f' % path,
            '--blockdev', 'driver=qcow2,file=f,node-name=d',
            '--nbd-server', 'addr.type=unix,addr.path=%s' % sock,
            '--export', 'type=nbd,id=e,node-name=d,name=,writable=on'],
            socket_path=sock)
        self.write_over_nbd(sock, [(0, 512)])
        d.kill()
        listed = {b['name']: b for b in self.our_list(path)}
        self.assertTrue(listed['rec']['inconsistent'])
        self.ours_ok('bitmap', '--remove', path, 'rec')
        rc, text = self.check_image(path)
        self.assertEqual(rc, 0, text)


class TestReadOnly(BitmapCase):

    def test_read_only_opens_change_nothing(self):
        path = self.create('img.qcow2', SIZE)
        self.real_ok('bitmap', '--add', path, 'a')
        self.real_ok('bitmap', '--add', '-g', '512', '--disable', path, 'b')
        self.io('real', path, 'write 0 1M')
        before = file_sha(path)
        ours = self.ours('qemu-img')
        self.run_ok([ours, 'info', path])
        self.run_ok([ours, 'info', '--output=json', path])
        self.run_ok([ours, 'bitmap', '--list', path])
        self.run_ok([ours, 'map', '--bitmap', 'a', path])
        self.run_ok([ours, 'check', path])
        self.run_ok([self.ours('qemu-io'), '-r', '-c', 'read 0 1M', path])
        self.assertEqual(file_sha(path), before)


if __name__ == '__main__':
    unittest.main()
