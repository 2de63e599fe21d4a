#!/usr/bin/python3
"""qemu-img info: human and JSON output byte for byte like QEMU 7.2 on
images laid out by the real tools (field names, key order, 4-space
indent, format-specific data, backing chains), plus open errors."""

import json
import os
import re
import subprocess
import time
import unittest

from fe_util import FrontendCase
from harness import proc, requires_real


def same_except_disk_size(text):
    """Disk usage depends on how each tool allocated the file; info on
    identical copies must agree, so only images made by the real tools are
    compared and nothing is filtered there.  This filter is for images
    each side created itself."""
    text = re.sub(r'(?m)^disk size: .*$', 'disk size: X', text)
    return re.sub(r'"actual-size": \d+', '"actual-size": X', text)


@requires_real('qemu-img', 'qemu-io')
class TestInfo(FrontendCase):

    def make_both(self, *create_args):
        """Create the same image with the real qemu-img in both dirs."""
        for d in self.dirs.values():
            self.run_ok([self.real('qemu-img'), 'create', '-q'] +
                        list(create_args), cwd=d)

    def info_same(self, *args):
        for out in (['--output=human'], [], ['--output=json']):
            with self.subTest(args=args + tuple(out)):
                self.assert_same(['qemu-img', 'info'] + out + list(args))

    def test_raw(self):
        self.make_both('-f', 'raw', 'a.img', '1G')
        self.info_same('a.img')
        self.info_same('-f', 'raw', 'a.img')
        self.info_same('-U', 'a.img')

    def test_raw_sizes(self):
        for size in ('0', '1000', '1023k', '1536', '5T'):
            with self.subTest(size=size):
                self.make_both('-f', 'raw', 's%s.img' % size, size)
                self.info_same('s%s.img' % size)

    def test_qcow2_v3_and_v2(self):
        self.make_both('-f', 'qcow2', 'b.qcow2', '1G')
        self.make_both('-f', 'qcow2', '-o', 'compat=0.10', 'v2.qcow2', '1M')
        self.make_both('-f', 'qcow2', '-o',
                       'cluster_size=4k,lazy_refcounts=on,refcount_bits=8',
                       'c.qcow2', '64M')
        for name in ('b.qcow2', 'v2.qcow2', 'c.qcow2'):
            self.info_same(name)

    def test_qcow2_with_data(self):
        self.make_both('-f', 'qcow2', 'd.qcow2', '64M')
        for d in self.dirs.values():
            self.run_ok([self.real('qemu-io'), '-c', 'write 0 1M', '-c',
                         'write 10M 64k', 'd.qcow2'], cwd=d)
        self.info_same('d.qcow2')

    def test_backing_chain(self):
        self.make_both('-f', 'qcow2', 'base.qcow2', '1G')
        self.make_both('-f', 'qcow2', '-b', 'base.qcow2', '-F', 'qcow2',
                       'mid.qcow2')
        self.make_both('-f', 'qcow2', '-b', 'mid.qcow2', '-F', 'qcow2',
                       'top.qcow2')
        self.info_same('top.qcow2')
        self.info_same('--backing-chain', 'top.qcow2')

    def test_absolute_path_shows_actual_path(self):
        self.make_both('-f', 'qcow2', 'base.qcow2', '1G')
        self.make_both('-f', 'qcow2', '-b', 'base.qcow2', '-F', 'qcow2',
                       'top.qcow2')
        outs = {}
        for side, d in self.dirs.items():
            rc, out, err = self.run_side(side, ['qemu-img', 'info',
                                                os.path.join(d, 'top.qcow2')])
            self.assertEqual(rc, 0, err)
            outs[side] = out.replace(d, 'DIR')
        self.assertEqual(outs['ours'], outs['real'])
        self.assertIn('(actual path: DIR/base.qcow2)', outs['ours'])

    def test_missing_backing_file(self):
        self.make_both('-f', 'qcow2', '-u', '-b', 'nonexist', '-F', 'qcow2',
                       'top.qcow2', '1M')
        self.info_same('top.qcow2')
        ours, real = self.run_both(['qemu-img', 'info', '--backing-chain',
                                    'top.qcow2'])
        self.assertEqual(ours[0], 1)
        self.assertEqual(real[0], 1)
        self.assertIn('nonexist', ours[2])

    def test_bitmaps_in_format_specific(self):
        self.make_both('-f', 'qcow2', 'bm.qcow2', '1G')
        for d in self.dirs.values():
            self.run_ok([self.real('qemu-img'), 'bitmap', '--add',
                         'bm.qcow2', 'b0'], cwd=d)
            self.run_ok([self.real('qemu-img'), 'bitmap', '--add', '-g',
                         '128k', '--disable', 'bm.qcow2', 'b1'], cwd=d)
        self.info_same('bm.qcow2')

    def test_image_opts_and_json_filename(self):
        self.make_both('-f', 'raw', 'a.img', '1M')
        self.info_same('--image-opts', 'driver=raw,file.filename=a.img')
        self.info_same('json:{"driver":"raw","file":{"driver":"file",'
                       '"filename":"a.img"}}')

    def test_errors(self):
        self.make_both('-f', 'raw', 'a.img', '1M')
        for args in (['nonexist'], [], ['-f', 'foo', 'a.img'],
                     ['-f', 'qcow2', 'a.img'], ['--output=xml', 'a.img'],
                     ['-Z', 'a.img'], ['-f'], ['a.img', 'b.img'],
                     ['--image-opts', 'driver=raw,file.filename=nonexist'],
                     ['--image-opts', 'driver=raw,file.filename=a.img,x=y'],
                     ['--image-opts', '-f', 'raw',
                      'driver=raw,file.filename=a.img'],
                     ['--object', 'foo,id=x', 'a.img'],
                     ['--object', 'secret,id=s0', 'a.img']):
            with self.subTest(args=args):
                rc, _, _ = self.assert_same(['qemu-img', 'info'] + args)
                self.assertEqual(rc, 1)

    def test_locked_by_another_process(self):
        """An image held open read-write by the real qemu-io: refused
        unless -U, with QEMU's message."""
        self.make_both('-f', 'qcow2', 'lk.qcow2', '1M')
        for d in self.dirs.values():
            log = open(os.path.join(d, 'holder.log'), 'w')
            self.addCleanup(log.close)
            # qemu-io's own `sleep` keeps the image open (and locked).
            h = subprocess.Popen([self.real('qemu-io'), '-c', 'sleep 60000',
                                  'lk.qcow2'], cwd=d,
                                 stdin=subprocess.DEVNULL, stdout=log,
                                 stderr=subprocess.STDOUT)
            self.addCleanup(h.wait, 30)
            self.addCleanup(h.kill)

            # Watch /proc/locks rather than probing with another tool,
            # whose own lock would make the holder's open fail.
            ino = os.stat(os.path.join(d, 'lk.qcow2')).st_ino

            def locked(d=d, h=h, ino=ino):
                if h.poll() is not None:
                    self.fail('qemu-io holder exited early: %s' % open(
                        os.path.join(d, 'holder.log')).read())
                with open('/proc/locks') as f:
                    held = [l for l in f if ':%d ' % ino in l]
                return len(held) >= 2
            proc.wait_for(locked, timeout=60, what='qemu-io holding the lock')
            time.sleep(0.2)     # let it finish taking its lock bytes
        for args in (['info'], ['check'], ['map']):
            with self.subTest(args=args):
                rc, _, err = self.assert_same(['qemu-img'] + args +
                                              ['lk.qcow2'])
                self.assertEqual(rc, 1)
                self.assertIn('Failed to get shared "write" lock', err)
        self.info_same('-U', 'lk.qcow2')

    def test_object_secret_accepted(self):
        self.make_both('-f', 'raw', 'a.img', '1M')
        self.assert_same(['qemu-img', 'info', '--object',
                          'secret,id=s0,data=x', 'a.img'])

    def test_our_images_parse_like_real(self):
        """Images we create: the same fields with the same values (disk
        usage aside)."""
        self.qcow2_ok()
        for side in self.dirs:
            for args in (['-f', 'raw', 'a.img', '1M'],
                         ['-f', 'qcow2', 'b.qcow2', '1G'],
                         ['-f', 'qcow2', '-o', 'compat=0.10', 'c.qcow2',
                          '1M']):
                rc, _, err = self.run_side(side, ['qemu-img', 'create', '-q']
                                           + args)
                self.assertEqual(rc, 0, err)
            self.checked(os.path.join(self.dirs[side], 'b.qcow2'))
            self.checked(os.path.join(self.dirs[side], 'c.qcow2'))
        for name in ('a.img', 'b.qcow2', 'c.qcow2'):
            for out in ([], ['--output=json']):
                self.assert_same(['qemu-img', 'info'] + out + [name],
                                 filt=same_except_disk_size)
        info = json.loads(self.run_side('ours', ['qemu-img', 'info',
                                                 '--output=json',
                                                 'b.qcow2'])[1])
        for key in ('virtual-size', 'filename', 'format', 'actual-size',
                    'dirty-flag', 'cluster-size', 'format-specific'):
            self.assertIn(key, info)


if __name__ == '__main__':
    unittest.main()
