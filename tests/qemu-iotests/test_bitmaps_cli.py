#!/usr/bin/python3
"""qemu-img bitmap's command line against the real one: for each argument
vector, the same exit code and the same message (automatic node names
such as '#block123' are normalized), and the same effect on the image.
Then the checks QEMU does not have: --list usage and -U."""

import re
import shutil
import unittest

from bitmap_util import BitmapCase, MiB

# Arguments after `qemu-img bitmap`; IMG is the image, SRC a second one.
CASES = [
    [],
    ['IMG', 'b'],
    ['--add', 'IMG'],
    ['--add', 'IMG', 'x', 'y'],
    ['--add', 'IMG', 'b0'],
    ['--add', 'IMG', ''],
    ['--add', 'IMG', 'n' * 1024],
    ['--add', 'IMG', 'n' * 1023],
    ['--add', '-g', '1000', 'IMG', 'x'],
    ['--add', '-g', '256', 'IMG', 'x'],
    ['--add', '-g', 'abc', 'IMG', 'x'],
    ['--add', '-g', '8E', 'IMG', 'x'],
    ['--add', '-g', '4G', 'IMG', 'x'],
    ['--add', '-g', '0', 'IMG', 'zero-g'],
    ['--add', '-g', '2G', 'IMG', 'big'],
    ['--remove', 'IMG', 'nope'],
    ['--clear', 'IMG', 'nope'],
    ['--enable', 'IMG', 'nope'],
    ['--disable', 'IMG', 'nope'],
    ['--merge', 'nope', 'IMG', 'b0'],
    ['--merge', 'b1', 'IMG', 'nope'],
    ['--enable', '-g', '1M', 'IMG', 'b0'],
    ['--add', '-b', 'SRC', 'IMG', 'x'],
    ['--add', '-F', 'qcow2', 'IMG', 'x'],
    ['--merge', 'b1', '-F', 'qcow2', 'IMG', 'b0'],
    ['--merge', 's', '-b', 'NOFILE', 'IMG', 'b0'],
    ['--merge', 'nope', '-b', 'SRC', '-F', 'qcow2', 'IMG', 'b0'],
    ['--add', '--remove', '--add', '-g', '1M', 'IMG', 'again'],
    ['--remove', '--add', 'IMG', 'never'],
    ['--add', '--clear', '--disable', 'IMG', 'cd'],
    ['--frob', 'IMG', 'b0'],
    ['--add', 'NOFILE', 'x'],
    ['--disable', '--disable', 'IMG', 'b0'],
    ['--merge', 'b0', 'IMG', 'b0'],
]


def normalize(text):
    text = re.sub(r"#block\d+", '#blockN', text)
    return text.strip()


class TestCliParity(BitmapCase):

    def setup_images(self, tag):
        img = self.checked(self.img('img-%s.qcow2' % tag))
        src = self.checked(self.img('src-%s.qcow2' % tag))
        shutil.copy(self.base_img, img)
        shutil.copy(self.base_src, src)
        return img, src

    def test_same_behaviour(self):
        self.base_img = self.create('base-img.qcow2', 64 * MiB, check=False)
        self.base_src = self.create('base-src.qcow2', 64 * MiB, check=False)
        self.real_ok('bitmap', '--add', self.base_img, 'b0')
        self.real_ok('bitmap', '--add', '--disable', self.base_img, 'b1')
        self.real_ok('bitmap', '--add', self.base_src, 's')
        self.io('real', self.base_img, 'write 0 1M')
        self.io('real', self.base_src, 'write 8M 1M')
        for i, case in enumerate(CASES):
            with self.subTest(args=' '.join(case)[:80]):
                results = {}
                for who in ('real', 'ours'):
                    img, src = self.setup_images('%s%d' % (who, i))
                    subst = {'IMG': img, 'SRC': src,
                             'NOFILE': self.img('missing.qcow2')}
                    argv = [self.qimg(who), 'bitmap'] + \
                        [subst.get(a, a) for a in case]
                    rc, out, err = self.run_cmd(argv)
                    self.assertGreaterEqual(rc, 0, err)
                    text = normalize((out + err).replace(img, 'IMG')
                                     .replace(src, 'SRC'))
                    results[who] = (rc, text, self.info_bitmaps(img),
                                    self.disk_bits(img, 'b0'))
                self.assertEqual(results['ours'], results['real'])


class TestList(BitmapCase):

    def test_list_usage(self):
        path = self.create('img.qcow2', 64 * MiB)
        ours = self.ours('qemu-img')
        _, err = self.run_fail([ours, 'bitmap', '--list', '--add', path,
                                'x'], rc=1)
        self.assertIn('--list cannot be combined with changes', err)
        _, err = self.run_fail([ours, 'bitmap', '--list', path, 'x'], rc=1)
        self.assertIn('Expecting one filename with --list', err)
        _, err = self.run_fail([ours, 'bitmap', '--list', '--output=xml',
                                path], rc=1)
        _, err = self.run_fail([ours, 'bitmap', '-U', '--add', path, 'x'],
                               rc=1)
        self.assertIn('-U is only supported with --list', err)
        # -U lets --list read an image another process holds.
        self.real_ok('bitmap', '--add', path, 'b')
        sock = self.sock()
        self.start_daemon([self.real('qemu-nbd'), '-f', 'qcow2', '-k', sock,
                           path], socket_path=sock)
        self.run_fail([ours, 'bitmap', '--list', path], rc=1)
        self.assertEqual([b['name'] for b in self.our_list(path)], ['b'])


if __name__ == '__main__':
    unittest.main()
