"""Process helpers for iotests: find binaries, run them with a timeout,
start daemons on unix sockets, and make sure nothing outlives a test.

`ours(name)` is the binary we build, `real(name)` is the installed QEMU
7.2 tool used as an oracle.  A hang is a failure, never a silent wait:
every wait has a timeout and raises ProcTimeout (an AssertionError, so
unittest reports it as FAIL).  Sanitizer reports in the stderr of one of
our binaries fail the test even when the exit code looked right.
"""

import atexit
import glob
import os
import shlex
import signal
import socket
import stat
import subprocess
import time

from . import env

REAL_DIR = '/usr/bin'
DEFAULT_TIMEOUT = 60

# Subdirectories of the build dir where a front-end binary might land.
_CANDIDATE_SUBDIRS = ('', 'qemu-img', 'qemu-io', 'qemu-nbd',
                      'storage-daemon')

SANITIZER_MARKERS = ('ERROR: AddressSanitizer', 'ERROR: LeakSanitizer',
                     'runtime error:', 'ERROR: ThreadSanitizer',
                     'WARNING: ThreadSanitizer')


class ProcTimeout(AssertionError):
    pass


class SanitizerError(AssertionError):
    pass


def _is_exe(path):
    try:
        st = os.stat(path)
    except OSError:
        return False
    return stat.S_ISREG(st.st_mode) and os.access(path, os.X_OK)


def ours(name):
    """Path of our build of `name`, or None if it is not built (yet)."""
    for sub in _CANDIDATE_SUBDIRS:
        p = os.path.join(env.BUILD, sub, name)
        if _is_exe(p):
            return p
    for p in sorted(glob.glob(os.path.join(env.BUILD, '*', name))):
        if _is_exe(p):
            return p
    return None


def have_ours(name):
    return ours(name) is not None


def real(name):
    """Path of the installed QEMU tool `name` (the oracle)."""
    return os.path.join(REAL_DIR, name)


def have_real(name):
    return _is_exe(real(name))


def is_ours(path):
    return os.path.abspath(path).startswith(env.BUILD + os.sep)


def child_env(extra=None, argv=None):
    """Environment for a child: sanitizer defaults (unless already set),
    GLib criticals fatal for our own binaries, plus `extra`."""
    e = dict(os.environ)
    e.setdefault('ASAN_OPTIONS', 'detect_leaks=1:halt_on_error=1')
    e.setdefault('UBSAN_OPTIONS', 'print_stacktrace=1:halt_on_error=1')
    if argv and any(is_ours(str(a)) for a in argv[:3]):
        e.setdefault('G_DEBUG', 'fatal-criticals')
    if extra:
        e.update(extra)
    return e


def _wrap(argv):
    """Apply BP_WRAPPER (e.g. "valgrind -q --error-exitcode=99") to our
    own binaries only."""
    argv = [str(a) for a in argv]
    wrapper = os.environ.get('BP_WRAPPER')
    if wrapper and is_ours(argv[0]):
        return shlex.split(wrapper) + argv
    return argv


def sanitizer_report(text):
    """The sanitizer report in `text` (from its first marker), or None."""
    if not text:
        return None
    idx = [text.find(m) for m in SANITIZER_MARKERS]
    idx = [i for i in idx if i >= 0]
    if not idx:
        return None
    start = text.rfind('\n', 0, min(idx)) + 1
    return text[start:start + 6000]


def _signal(proc, sig):
    try:
        proc.send_signal(sig)
    except ProcessLookupError:
        pass


def run(argv, timeout=DEFAULT_TIMEOUT, input=None, env=None, cwd=None,
        binary=False, check_sanitizer=True):
    """Run argv, return (rc, stdout, stderr) as str (bytes if binary).

    `input` is str/bytes fed to stdin (stdin is /dev/null otherwise).
    Raises ProcTimeout if it runs longer than `timeout` seconds, and
    SanitizerError if one of our binaries printed a sanitizer report.
    A negative rc means killed by that signal.
    """
    argv = _wrap(argv)
    if isinstance(input, str):
        input = input.encode()
    try:
        cp = subprocess.run(argv, input=input,
                            stdin=None if input is not None
                            else subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=child_env(env, argv), cwd=cwd,
                            timeout=timeout)
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b'')[-2000:].decode('utf-8', 'replace')
        err = (e.stderr or b'')[-2000:].decode('utf-8', 'replace')
        raise ProcTimeout('timed out after %ss: %s\n--- stdout tail:\n%s\n'
                          '--- stderr tail:\n%s'
                          % (timeout, shlex.join(argv), out, err)) from None
    out, err = cp.stdout, cp.stderr
    if not binary:
        out = out.decode('utf-8', 'replace')
        err = err.decode('utf-8', 'replace')
    if check_sanitizer and any(is_ours(a) for a in argv[:3]):
        rep = sanitizer_report(err if not binary
                               else err.decode('utf-8', 'replace'))
        if rep:
            raise SanitizerError('sanitizer report from %s:\n%s'
                                 % (shlex.join(argv), rep))
    return cp.returncode, out, err


def wait_for(predicate, timeout=30, interval=0.02, what='condition'):
    """Poll predicate() until true; raise ProcTimeout after timeout s."""
    deadline = time.monotonic() + timeout
    while True:
        v = predicate()
        if v:
            return v
        if time.monotonic() > deadline:
            raise ProcTimeout('timed out after %ss waiting for %s'
                              % (timeout, what))
        time.sleep(interval)


def unix_socket_listening(path):
    """True when some process listens on the unix socket `path`.

    Reads /proc/net/unix instead of connecting, because a probe
    connection would count as a client (qemu-nbd without --persistent
    exits after its first client).  Falls back to "the path is a socket".
    """
    try:
        with open('/proc/net/unix') as f:
            lines = f.readlines()[1:]
    except OSError:
        lines = None
    if lines is None:
        try:
            return stat.S_ISSOCK(os.stat(path).st_mode)
        except OSError:
            return False
    for line in lines:
        parts = line.split()
        # Num RefCount Protocol Flags Type St Inode [Path]
        if len(parts) >= 8 and parts[7] == path:
            if int(parts[3], 16) & 0x10000:   # __SO_ACCEPTCON: listening
                return True
    return False


class Daemon:
    """A background process, its log file and (optionally) the unix
    socket it serves.  Use stop() for a graceful end, kill() to crash it.
    """

    _live = []

    def __init__(self, argv, log_path, env=None, cwd=None):
        self.argv = _wrap(argv)
        self.log_path = log_path
        self.log = open(log_path, 'wb')
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL,
                                     stdout=self.log,
                                     stderr=subprocess.STDOUT,
                                     env=child_env(env, self.argv),
                                     cwd=cwd)
        self.returncode = None
        Daemon._live.append(self)

    @property
    def pid(self):
        return self.proc.pid

    def running(self):
        return self.proc.poll() is None

    def output(self):
        """Everything the daemon printed so far (stdout+stderr)."""
        if not self.log.closed:
            self.log.flush()
        with open(self.log_path, 'rb') as f:
            return f.read().decode('utf-8', 'replace')

    def _tail(self, n=40):
        return '\n'.join(self.output().splitlines()[-n:])

    def wait_for_socket(self, path, timeout=30):
        def ready():
            if self.proc.poll() is not None:
                raise AssertionError(
                    'daemon exited with %s before listening on %s: %s\n%s'
                    % (self.proc.returncode, path, shlex.join(self.argv),
                       self._tail()))
            return unix_socket_listening(path)
        try:
            wait_for(ready, timeout, what='socket %s' % path)
        except ProcTimeout:
            self.kill()
            raise ProcTimeout('daemon did not listen on %s within %ss: '
                              '%s\n%s' % (path, timeout,
                                          shlex.join(self.argv),
                                          self._tail())) from None

    def wait(self, timeout=DEFAULT_TIMEOUT):
        """Wait for a daemon that is expected to exit by itself."""
        try:
            self.returncode = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise ProcTimeout('daemon still running after %ss: %s'
                              % (timeout, shlex.join(self.argv))) from None
        self._finish()
        return self.returncode

    def stop(self, timeout=30, sig=signal.SIGTERM, check_sanitizer=True):
        """Ask the daemon to quit (SIGTERM), SIGKILL it after `timeout`.
        Returns its exit code; raises SanitizerError on a sanitizer
        report in its log (our binaries only)."""
        if self.proc.poll() is None:
            _signal(self.proc, sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                raise ProcTimeout('daemon ignored signal %d for %ss: %s'
                                  % (sig, timeout, shlex.join(self.argv)))
        self.returncode = self.proc.returncode
        self._finish()
        if check_sanitizer and any(is_ours(a) for a in self.argv[:3]):
            rep = sanitizer_report(self.output())
            if rep:
                raise SanitizerError('sanitizer report from daemon %s:\n%s'
                                     % (shlex.join(self.argv), rep))
        return self.returncode

    def kill(self):
        """SIGKILL (simulated crash); returns the exit code."""
        if self.proc.poll() is None:
            _signal(self.proc, signal.SIGKILL)
            self.proc.wait()
        self.returncode = self.proc.returncode
        self._finish()
        return self.returncode

    def _finish(self):
        if not self.log.closed:
            self.log.close()
        if self in Daemon._live:
            Daemon._live.remove(self)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def start_daemon(argv, socket_path=None, log_path=None, timeout=30,
                 env=None, cwd=None):
    """Start argv in the background with output to log_path (default:
    <socket_path or scratch>.log) and, if socket_path is given, wait until
    it listens there.  Returns a Daemon."""
    if log_path is None:
        base = socket_path or os.path.join(
            env_scratch(), os.path.basename(str(argv[0])))
        log_path = base + '.log'
    d = Daemon(argv, log_path, env=env, cwd=cwd)
    if socket_path is not None:
        d.wait_for_socket(socket_path, timeout)
    return d


def env_scratch():
    return env.SCRATCH


def kill_all():
    """SIGKILL every daemon this process started and has not reaped."""
    for d in list(Daemon._live):
        d.kill()


def connect_unix(path, timeout=30):
    """A connected AF_UNIX stream socket (with `timeout` on its I/O)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(path)
    return s


atexit.register(kill_all)
