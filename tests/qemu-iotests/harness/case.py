"""IotestCase: the base class of every iotest.

Gives each test its own scratch directory, image path helpers, binary
lookup that skips (not fails) when one of our front-ends is not built
yet, daemons that are always stopped, and a final `qemu-img check` (the
real one, as an oracle) of every qcow2 image the test leaves behind: each
file in its scratch directory that starts with the qcow2 magic, plus any
image registered with checked() (which may live elsewhere or be of
another format), minus the images opted out with unchecked() (corrupted
or left inconsistent on purpose) and those the scan finds poked through
harness/qcow2.py.  Exit code 1 (check could not run) or
2 (corruption) fails the test; 0 and 3 (leaks only) pass.
"""

import json
import os
import re
import shutil
import stat
import tempfile
import unittest

from . import env, proc, qcow2


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
    QCOW2_MAGIC = b'QFI\xfb'

    def setUp(self):
        super().setUp()
        self._ensure_setup()

    def _ensure_setup(self):
        if getattr(self, '_iot_ready', False):
            return
        self._iot_ready = True
        self._checked_images = []
        self._unchecked = set()
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

    def unchecked(self, path):
        """Opt `path` out of the end-of-test `qemu-img check` (an image
        the test corrupts on purpose or expects to be inconsistent; say
        why in a comment next to the call).  Returns `path`."""
        self._ensure_setup()
        self._unchecked.add(os.path.realpath(path))
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
        """Run the real `qemu-img check`; returns (rc, output).  A qcow2
        image is opened without its backing chain: check looks at one
        image only, and a test may leave a backing file missing on
        purpose (create -u)."""
        if fmt == 'qcow2':
            spec = json.dumps({'driver': 'qcow2', 'backing': None,
                               'file': {'driver': 'file',
                                        'filename': os.path.abspath(path)}})
            argv = ['check', 'json:' + spec]
        else:
            argv = ['check', '-f', fmt, path]
        rc, out, err = proc.run([proc.real('qemu-img')] + argv, timeout=300)
        return rc, (out + err).strip()

    def _scratch_qcow2_images(self):
        """Every regular file under the scratch dir with the qcow2
        magic (sockets, fifos and symlinks are left alone)."""
        found = []
        for root, dirs, files in os.walk(self.scratch):
            dirs.sort()
            for name in sorted(files):
                p = os.path.join(root, name)
                try:
                    if not stat.S_ISREG(os.lstat(p).st_mode):
                        continue
                    with open(p, 'rb') as f:
                        magic = f.read(4)
                except OSError:
                    continue
                if magic == self.QCOW2_MAGIC:
                    found.append(p)
        return found

    def _images_to_check(self):
        """Registered images first, then the scratch scan; each file at
        most once, opted-out ones never.  The scan also skips files poked
        with harness/qcow2.py (damaged on purpose); registering such a
        file with checked() still checks it."""
        seen = set(self._unchecked)
        todo = []
        cands = list(self._checked_images)
        cands += [(p, 'qcow2') for p in self._scratch_qcow2_images()
                  if os.path.realpath(p) not in qcow2.TAMPERED]
        for path, fmt in cands:
            real = os.path.realpath(path)
            if real in seen or not os.path.exists(path):
                continue
            seen.add(real)
            todo.append((path, fmt))
        return todo

    def _final_checks(self):
        problems = self._stop_daemons()
        for path, fmt in self._images_to_check():
            rc, text = self.check_image(path, fmt)
            log = os.environ.get('BP_CHECK_LOG')
            if log:
                # Bookkeeping of what the teardown covered (README.md).
                with open(log, 'a') as f:
                    f.write('%s %s %d\n' % (self.id(), path, rc))
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
