#!/usr/bin/python3
"""qemu-img command line: --help lists every subcommand, per-command
--help, --version, and the usage errors QEMU gives for a missing or
unknown command and unknown/missing options (exit code 1)."""

import re
import unittest

from fe_util import FrontendCase
from harness import requires_real

COMMANDS = ('bench', 'check', 'compare', 'convert', 'create', 'info', 'map',
            'resize')


@requires_real('qemu-img')
class TestCli(FrontendCase):

    def test_global_help(self):
        out = self.our_img('--help')
        self.assertTrue(out.startswith('qemu-img version '))
        for name in COMMANDS:
            self.assertRegex(out, r'(?m)^  %s \[' % name)
        self.assertIn('Supported formats:', out)
        self.assertRegex(out, r'Supported formats:.* qcow2\b')
        self.assertEqual(self.our_img('-h'), out)

    def test_per_command_help(self):
        for name in COMMANDS:
            with self.subTest(cmd=name):
                out = self.our_img(name, '--help')
                self.assertTrue(out.startswith('Usage: qemu-img %s ' % name),
                                out)
                self.assertEqual(self.our_img(name, '-h'), out)
                # Every option in the synopsis is explained below it.
                synopsis = out.split('\n')[0]
                for opt in set(re.findall(r'\[(-[A-Za-z])\b', synopsis)):
                    self.assertIn(opt, out.split('\n', 1)[1], opt)

    def test_version(self):
        out = self.our_img('--version')
        self.assertRegex(out, r'^qemu-img version \d+\.\d+\.\d+ ')
        self.assertEqual(self.our_img('-V'), out)

    def test_usage_errors_match_qemu(self):
        for args in ([], ['frob'], ['-Z'], ['--bogus'], ['-T'],
                     ['info', '-Z', 'x'], ['info', '--bogus', 'x'],
                     ['info', '-f'], ['info', '--output'],
                     ['create', '-o'], ['check', '-r']):
            with self.subTest(args=args):
                rc, _, err = self.assert_same(['qemu-img'] + args)
                self.assertEqual(rc, 1)
                self.assertIn("Try 'qemu-img --help' for more information",
                              err)

    def test_trace_option_accepted(self):
        for d in self.dirs.values():
            self.run_ok([self.real('qemu-img'), 'create', '-q', '-f', 'raw',
                         'a.img', '1M'], cwd=d)
        self.assert_same(['qemu-img', '-T', 'foo*', 'info', 'a.img'])


if __name__ == '__main__':
    unittest.main()
