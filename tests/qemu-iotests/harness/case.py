"""IotestCase: the base class of every iotest.

Gives each test its own scratch directory, image path helpers, binary
lookup that skips (not fails) when one of our front-ends is not built
yet, daemons that are always stopped, and a final `qemu-img check` (the
real one, as an oracle) of every qcow2 image the test registered with
checked().  Exit code 1 (check could not run) or 2 (corruption) fails the
test; 0 and 3 (leaks only) pass.
"""

import os
import re
import shutil
import tempfile
import unittest

from . import env, proc


def requires_ours(*names):
    """Class or method decorator: skip unless all our binaries exist."""
    missing = [n for n in names if not proc.have_ours(n)]
    return unittest.skipIf(bool(missing), 'not built yet: %s'
                           % ', '.join(missing))


def requires_real(*names):
    missing = [n for n in names if not proc.have_real(n)]
    return unittest.skipIf(bool(missing), 'not installed: %s'
                           % ', '.join(missing))


def requires_module(name):
    """Skip unless the Python module `name` (e.g. 'nbd') imports."""
    try:
        __import__(name)
        ok = True
    except ImportError:
        ok = False
    return unittest.skipUnless(ok, 'python module %s not available' % name)


class IotestCase(unittest.TestCase):
    """Base class for iotests.  Subclasses that override setUp or tearDown
    must call super(); checked()/img() also work without super().setUp().
    """

    # Per-image exit codes of `qemu-img check` that fail the test.
    CHECK_FAIL_CODES = (1, 2)

    def setUp(self):
        super().setUp()
        self._ensure_setup()

    def _ensure_setup(self):
        if getattr(self, '_iot_ready', False):
            return
        self._iot_ready = True
        self._checked_images = []
        self._daemons = []
        short = re.sub(r'[^A-Za-z0-9_]', '_', self._testMethodName)[:24]
        self.scratch = tempfile.mkdtemp(prefix=short + '-', dir=env.SCRATCH)
        # Registered first, so it runs last: after daemons are stopped.
        self.addCleanup(self._final_checks)

    # -- paths ---------------------------------------------------------

    def img(self, name):
        """Path of `name` inside this test's scratch directory."""
        self._ensure_setup()
        return os.path.join(self.scratch, name)

    def sock(self, name='sock'):
        """A unix socket path for this test (kept short: sun_path has a
        108-byte limit)."""
        p = self.img(name)
        if len(p.encode()) < 100:
            return p
        d = tempfile.mkdtemp(prefix='bp-s', dir='/tmp')
        self.addCleanup(shutil.rmtree, d, True)
        return os.path.join(d, name)

    def checked(self, path, fmt='qcow2'):
        """Register an image for the end-of-test `qemu-img check`;
        returns `path` so it can wrap an img() call."""
        self._ensure_setup()
        self._checked_images.append((path, fmt))
        return path

    # -- binaries ------------------------------------------------------

    def ours(self, name):
        """Path of our `name`; skips the test if it is not built."""
        p = proc.ours(name)
        if p is None:
            self.skipTest('%s not built yet' % name)
        return p

    def real(self, name):
        p = proc.real(name)
        if not proc.have_real(name):
            self.skipTest('%s not installed' % p)
        return p

    def run_cmd(self, argv, **kw):
        """proc.run: returns (rc, stdout, stderr)."""
        return proc.run(argv, **kw)

    def run_ok(self, argv, **kw):
        """Run and assert exit code 0; returns stdout."""
        rc, out, err = proc.run(argv, **kw)
        if rc != 0:
            self.fail('exit code %d from %s\n--- stdout:\n%s\n--- stderr:\n'
                      '%s' % (rc, ' '.join(map(str, argv)), out[-3000:],
                              err[-3000:]))
        return out

    def run_fail(self, argv, rc=None, **kw):
        """Run and assert failure (non-zero, not killed by a signal; exact
        `rc` if given).  Returns (stdout, stderr)."""
        code, out, err = proc.run(argv, **kw)
        if code < 0:
            self.fail('%s killed by signal %d\n%s'
                      % (' '.join(map(str, argv)), -code, err[-3000:]))
        if code == 0 or (rc is not None and code != rc):
            self.fail('expected exit code %s, got %d from %s\n--- stdout:'
                      '\n%s\n--- stderr:\n%s'
                      % (rc if rc is not None else 'non-zero', code,
                         ' '.join(map(str, argv)), out[-3000:],
                         err[-3000:]))
        return out, err

    # -- daemons -------------------------------------------------------

    def start_daemon(self, argv, socket_path=None, timeout=30, env=None,
                     log_name=None):
        """proc.start_daemon, stopped automatically at the end of the
        test (before the image checks)."""
        self._ensure_setup()
        log = self.img(log_name) if log_name else None
        d = proc.start_daemon(argv, socket_path=socket_path, log_path=log
                              or (socket_path + '.log' if socket_path
                                  else self.img(
                                      os.path.basename(str(argv[0]))
                                      + '-%d.log' % len(self._daemons))),
                              timeout=timeout, env=env)
        self._daemons.append(d)
        return d

    def _stop_daemons(self):
        errors = []
        for d in reversed(self._daemons):
            try:
                d.stop()
            except AssertionError as e:
                errors.append(str(e))
        self._daemons = []
        return errors

    # -- end of test ---------------------------------------------------

    def check_image(self, path, fmt='qcow2'):
        """Run the real `qemu-img check`; returns (rc, output)."""
        rc, out, err = proc.run([proc.real('qemu-img'), 'check', '-f', fmt,
                                 path], timeout=300)
        return rc, (out + err).strip()

    def _final_checks(self):
        problems = self._stop_daemons()
        for path, fmt in self._checked_images:
            if not os.path.exists(path):
                continue
            rc, text = self.check_image(path, fmt)
            if rc in self.CHECK_FAIL_CODES:
                problems.append('qemu-img check %s: exit code %d\n%s'
                                % (os.path.basename(path), rc,
                                   text[-3000:]))
        if problems:
            self.fail('\n'.join(problems))
        # Keep the scratch dir of a failed test for post-mortems.
        outcome = getattr(self, '_outcome', None)
        if (getattr(outcome, 'success', False)
                and not os.environ.get('BP_KEEP_SCRATCH')):
            shutil.rmtree(self.scratch, ignore_errors=True)
