#!/usr/bin/python3
"""`make demo`: one complete incremental-backup cycle, step by step.

    /usr/bin/python3 scripts/demo.py BUILD_DIR [--daemon auto|ours|real|PATH]
                                               [--method auto|checkpoints|
                                                bitmaps] [--keep]

A qcow2 disk is served by a qemu-storage-daemon (ours from BUILD_DIR, or
the installed QEMU one) over NBD; the demo writes to it, takes a full
backup at checkpoint c1, writes more, moves on to checkpoint c2, takes an
incremental backup of what changed since c1, restores full + increment,
and checks with the real `qemu-img compare` that the result equals the
disk at c2.  The backup client is tools/bp-backup.

Two ways to track changes, sharing every other step:
  checkpoints  our daemon's block-checkpoint-add; the export serves
               qemu:dirty-bitmap:c1 from `checkpoints: ["c1"]`
  bitmaps      plain QEMU: a persistent dirty bitmap per checkpoint,
               disabled when the next one starts ("bitmap juggling");
               the export serves it from `bitmaps: ["c1"]`
`auto` picks ours with checkpoints when BUILD_DIR/qemu-storage-daemon
lists block-checkpoint-add in query-commands, else the real daemon with
bitmaps.  BP_DEMO_DAEMON and BP_DEMO_METHOD set the defaults.
"""

import argparse
import json
import os
import random
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time

SRC = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(SRC, 'tools'))

from bplib.qmp import QMPClient, QMPError      # noqa: E402

BP_BACKUP = os.path.join(SRC, 'tools', 'bp-backup')
REAL_DIR = '/usr/bin'
DISK_SIZE = 64 * 1024 * 1024
GRANULARITY = 64 * 1024
NODE = 'disk0'
MAX_WRITE = 16 * 1024 * 1024        # below every NBD server's limit
MiB = 1024 * 1024

# (offset, length, kind) of the writes; 'data' is pseudo-random bytes,
# 'zero' a write-zeroes request (the bitmap must record those too).
WRITES_BEFORE_C1 = [(0, 4 * MiB, 'data'), (16 * MiB, 1 * MiB, 'data'),
                    (40 * MiB, 2 * MiB, 'data')]
WRITES_AFTER_C1 = [(1 * MiB, 4096, 'data'), (10 * MiB + 12345, 100, 'data'),
                   (40 * MiB, 64 * 1024, 'zero'),
                   (50 * MiB, 256 * 1024, 'data')]


class StepFailed(Exception):
    pass


def human(n):
    if n >= MiB:
        return '%.1f MiB' % (n / MiB)
    if n >= 1024:
        return '%.1f KiB' % (n / 1024)
    return '%d bytes' % n


def say(text='', indent=2):
    for line in text.splitlines() or ['']:
        print(' ' * indent + line if line else '')
    sys.stdout.flush()


def run_shown(argv, what, show_output=True):
    """Run a command, show it and its output (stdout and stderr in the
    order printed); StepFailed if rc != 0.  Returns the output."""
    say('$ ' + shlex.join(argv))
    try:
        cp = subprocess.run(argv, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, timeout=600)
    except OSError as e:
        raise StepFailed('cannot run %s: %s' % (argv[0], e)) from None
    except subprocess.TimeoutExpired:
        raise StepFailed('%s did not finish within 600s' % what) from None
    out = cp.stdout.rstrip()
    if out and (show_output or cp.returncode != 0):
        say(out, indent=4)
    if cp.returncode != 0:
        raise StepFailed('%s exited with code %d' % (what, cp.returncode))
    return cp.stdout


# -- the two ways of tracking changes -----------------------------------

class BitmapWay:
    """Plain QEMU: one persistent dirty bitmap per checkpoint."""
    name = 'bitmaps'

    def first(self, demo, cp):
        demo.qmp('block-dirty-bitmap-add', node=NODE, name=cp,
                 persistent=True, granularity=GRANULARITY)

    def next(self, demo, prev, cp):
        # Atomically freeze `prev` (it now holds exactly the writes
        # between prev and cp) and start recording into `cp`.
        demo.qmp('transaction', actions=[
            {'type': 'block-dirty-bitmap-disable',
             'data': {'node': NODE, 'name': prev}},
            {'type': 'block-dirty-bitmap-add',
             'data': {'node': NODE, 'name': cp, 'persistent': True,
                      'granularity': GRANULARITY}}])

    def export_args(self, since):
        return {'bitmaps': [since]}

    def show(self, demo):
        try:
            nodes = demo.qmp('query-named-block-nodes', quiet=True)
        except StepFailed as e:        # only informational
            say('(query-named-block-nodes: %s)' % e)
            return
        for n in nodes:
            if n.get('node-name') == NODE:
                for b in n.get('dirty-bitmaps', []):
                    say('bitmap %s: %d dirty bytes, recording=%s'
                        % (b.get('name'), b.get('count', 0),
                           b.get('recording')))


class CheckpointWay:
    """Our daemon: first-class checkpoints."""
    name = 'checkpoints'

    def first(self, demo, cp):
        demo.qmp('block-checkpoint-add', node=NODE, name=cp,
                 granularity=GRANULARITY)

    def next(self, demo, prev, cp):
        demo.qmp('block-checkpoint-add', node=NODE, name=cp,
                 granularity=GRANULARITY)

    def export_args(self, since):
        return {'checkpoints': [since]}

    def show(self, demo):
        try:
            res = demo.qmp('query-block-checkpoints', quiet=True)
        except StepFailed as e:
            say('(query-block-checkpoints: %s)' % e)
            return
        say(json.dumps(res, indent=1))


# -- the demo ------------------------------------------------------------

class Demo:
    def __init__(self, opts):
        self.opts = opts
        self.build = os.path.abspath(opts.build_dir)
        self.workdir = tempfile.mkdtemp(prefix='bp-demo-', dir='/tmp')
        self.disk = os.path.join(self.workdir, 'disk.qcow2')
        self.qmp_path = os.path.join(self.workdir, 'qmp.sock')
        self.nbd_path = os.path.join(self.workdir, 'nbd.sock')
        self.full = os.path.join(self.workdir, 'full-c1.raw')
        self.inc = os.path.join(self.workdir, 'inc-c1-c2.raw')
        self.restored = os.path.join(self.workdir, 'restored-c2.raw')
        self.daemon = None          # subprocess.Popen
        self.daemon_log = os.path.join(self.workdir, 'daemon.log')
        self.client = None          # QMPClient
        self.daemon_bin = None
        self.daemon_kind = None
        self.way = None
        self.qemu_img = None
        self.rng = random.Random(20240601)
        self.step_no = 0

    # -- helpers -----------------------------------------------------

    def ours(self, name):
        p = os.path.join(self.build, name)
        return p if os.access(p, os.X_OK) and os.path.isfile(p) else None

    def qmp(self, cmd, args=None, quiet=False, **kw):
        args = dict(args or {}, **kw)
        if not quiet:
            say('qmp> ' + json.dumps({'execute': cmd, 'arguments': args}
                                     if args else {'execute': cmd}))
        try:
            ret = self.client.cmd(cmd, args)
        except QMPError as e:
            raise StepFailed('QMP %s' % e) from None
        if not quiet:
            say('<--- ' + json.dumps({'return': ret}))
        return ret

    def start_daemon(self, binary, qmp_path, log_path):
        argv = [binary, '--chardev',
                'socket,id=qmp0,path=%s,server=on,wait=off' % qmp_path,
                '--monitor', 'chardev=qmp0']
        log = open(log_path, 'ab')
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                    stdout=log, stderr=subprocess.STDOUT)
        except OSError as e:
            raise StepFailed('cannot start %s: %s' % (binary, e)) from None
        finally:
            log.close()
        try:
            client = QMPClient.connect_retry(
                qmp_path, timeout=30, alive=lambda: proc.poll() is None)
        except QMPError as e:
            if proc.poll() is not None:
                raise StepFailed('%s exited with code %d before its QMP '
                                 'monitor answered' % (binary,
                                                       proc.returncode)) \
                    from None
            stop_process(proc)
            raise StepFailed('%s: %s' % (binary, e)) from None
        return argv, proc, client

    def probe_checkpoints(self, binary):
        """Does `binary` list block-checkpoint-add?  Starts it briefly."""
        sock = os.path.join(self.workdir, 'probe.sock')
        try:
            _, proc, client = self.start_daemon(
                binary, sock, os.path.join(self.workdir, 'probe.log'))
        except StepFailed as e:
            say('probe failed: %s' % e)
            return False
        try:
            return 'block-checkpoint-add' in client.command_names()
        except QMPError as e:
            say('probe failed: %s' % e)
            return False
        finally:
            client.close()
            stop_process(proc)

    def nbd_write(self, writes, label):
        import nbd
        uri = 'nbd+unix:///disk?socket=%s' % self.nbd_path
        h = nbd.NBD()
        try:
            h.connect_uri(uri)
            for off, length, kind in writes:
                if kind == 'zero':
                    h.zero(length, off)
                else:
                    data = self.rng.randbytes(length)
                    for i in range(0, length, MAX_WRITE):
                        h.pwrite(data[i:i + MAX_WRITE], off + i)
                say('%-5s %9s at offset %d' % (kind, human(length), off))
            h.flush()
            h.shutdown()
        except nbd.Error as e:
            raise StepFailed('NBD %s via %s: %s' % (label, uri, e.string))
        say('(flushed and disconnected: no writes in flight)')

    def export(self, exp_id, name, writable=False, extra=None):
        args = {'type': 'nbd', 'id': exp_id, 'node-name': NODE,
                'name': name, 'writable': writable}
        args.update(extra or {})
        self.qmp('block-export-add', args)
        return 'nbd+unix:///%s?socket=%s' % (name, self.nbd_path)

    def unexport(self, exp_id):
        # block-export-del may return before the export is gone (it waits
        # for its clients); ours are closed, so poll query-block-exports.
        self.qmp('block-export-del', id=exp_id)
        deadline = time.monotonic() + 30
        while any(e.get('id') == exp_id
                  for e in self.qmp('query-block-exports', quiet=True)):
            if time.monotonic() > deadline:
                raise StepFailed('export %s still listed 30s after '
                                 'block-export-del' % exp_id)
            time.sleep(0.05)

    # -- steps -------------------------------------------------------

    def steps(self):
        return [
            ('Choose the storage daemon', self.s_choose),
            ('Create a 64 MiB qcow2 image', self.s_create),
            ('Start the daemon with a QMP monitor', self.s_start),
            ('Attach the image and serve it over NBD (writable)',
             self.s_attach),
            ('Write initial data through NBD', self.s_write1),
            ('Create checkpoint c1', self.s_c1),
            ('Full backup over NBD', self.s_full),
            ('More writes through NBD', self.s_write2),
            ('Create checkpoint c2', self.s_c2),
            ('Incremental backup: only what changed since c1',
             self.s_incremental),
            ('Stop the daemon', self.s_stop),
            ('Restore: full backup + increment', self.s_restore),
            ('Compare the restored image with the disk at c2',
             self.s_compare),
        ]

    def s_choose(self):
        o = self.opts
        real = os.path.join(REAL_DIR, 'qemu-storage-daemon')
        ours = self.ours('qemu-storage-daemon')
        choice = o.daemon
        if choice == 'auto':
            say('Prefer our daemon when it is built and supports '
                'checkpoints; otherwise QEMU\'s.')
            if ours and self.probe_checkpoints(ours):
                choice = 'ours'
            else:
                say('%s: %s' % (ours or os.path.join(
                    self.build, 'qemu-storage-daemon'),
                    'no block-checkpoint-add' if ours else 'not built'))
                choice = 'real'
        if choice == 'ours':
            if not ours:
                raise StepFailed('%s/qemu-storage-daemon is not built'
                                 % self.build)
            self.daemon_bin, self.daemon_kind = ours, 'ours'
        elif choice == 'real':
            self.daemon_bin, self.daemon_kind = real, 'real'
        else:
            self.daemon_bin, self.daemon_kind = os.path.abspath(choice), \
                'given'
        if not os.access(self.daemon_bin, os.X_OK):
            raise StepFailed('%s is not an executable' % self.daemon_bin)
        self.qemu_img = o.qemu_img or (
            self.ours('qemu-img') if self.daemon_kind == 'ours' else None) \
            or os.path.join(REAL_DIR, 'qemu-img')
        try:
            import nbd      # noqa: F401
        except ImportError:
            raise StepFailed('python3-libnbd (module nbd) is missing; '
                             'run scripts/install-deps.sh') from None
        say('daemon:   %s (%s)' % (self.daemon_bin, self.daemon_kind))
        say('qemu-img: %s' % self.qemu_img)
        say('client:   %s' % BP_BACKUP)
        say('work dir: %s' % self.workdir)

    def s_create(self):
        say('The disk to protect.  Writes will go through the daemon.')
        run_shown([self.qemu_img, 'create', '-q', '-f', 'qcow2', self.disk,
                   str(DISK_SIZE)], 'qemu-img create')

    def s_start(self):
        argv, self.daemon, self.client = self.start_daemon(
            self.daemon_bin, self.qmp_path, self.daemon_log)
        say('$ ' + shlex.join(argv) + ' &')
        say('QMP greeting: %s' % json.dumps(self.client.greeting))
        names = self.client.command_names()
        has_cp = 'block-checkpoint-add' in names
        want = self.opts.method
        if want == 'auto':
            want = 'checkpoints' if has_cp else 'bitmaps'
        if want == 'checkpoints' and not has_cp:
            raise StepFailed('this daemon has no block-checkpoint-add; '
                             'use --method bitmaps')
        self.way = CheckpointWay() if want == 'checkpoints' else BitmapWay()
        say('query-commands: %d commands; block-checkpoint-add %s -> '
            'tracking changes with %s'
            % (len(names), 'present' if has_cp else 'absent', self.way.name))

    def s_attach(self):
        say('blockdev-add opens the image as node %s; the NBD server and '
            'a writable\nexport "disk" stand in for a running guest.' % NODE)
        self.qmp('blockdev-add', {'driver': 'qcow2', 'node-name': NODE,
                                  'file': {'driver': 'file',
                                           'filename': self.disk}})
        self.qmp('nbd-server-start', {'addr': {'type': 'unix', 'data': {
            'path': self.nbd_path}}})
        self.export('disk', 'disk', writable=True)

    def s_write1(self):
        self.nbd_write(WRITES_BEFORE_C1, 'write')

    def s_c1(self):
        say('[%s way]' % self.way.name)
        if self.way.name == 'checkpoints':
            say('From now on, every write is recorded in checkpoint c1.')
        else:
            say('A persistent dirty bitmap c1 records every write from '
                'now on.')
        self.way.first(self, 'c1')
        self.way.show(self)

    def s_full(self):
        say('A point-in-time read needs the writes quiesced: this demo '
            'simply does no\nwrites while a backup runs.  The full copy '
            'skips what base:allocation\nreports as zero.')
        uri = self.export('backup-full', 'backup-full')
        run_shown([BP_BACKUP, 'full', '--uri', uri, '--output', self.full],
                  'bp-backup full')
        say('check: the copy equals the export (real qemu-img compare)')
        run_shown([os.path.join(REAL_DIR, 'qemu-img'), 'compare', '-f',
                   'raw', '-F', 'raw', self.full, uri], 'qemu-img compare')
        self.unexport('backup-full')

    def s_write2(self):
        self.nbd_write(WRITES_AFTER_C1, 'write')
        self.way.show(self)

    def s_c2(self):
        say('[%s way]' % self.way.name)
        if self.way.name == 'checkpoints':
            say('Checkpoint c2 starts; c1 now holds exactly the writes '
                'between c1 and c2.')
        else:
            say('One transaction disables c1 (it now holds exactly the '
                'writes between\nc1 and c2) and starts bitmap c2 for the '
                'next backup.')
        self.way.next(self, 'c1', 'c2')
        self.way.show(self)

    def s_incremental(self):
        say('A read-only export with %s serves the meta context\n'
            'qemu:dirty-bitmap:c1; bp-backup reads only the extents it '
            'reports dirty.' % json.dumps(self.way.export_args('c1')))
        uri = self.export('backup-inc', 'backup-inc',
                          extra=self.way.export_args('c1'))
        run_shown([BP_BACKUP, 'incremental', '--uri', uri, '--bitmap',
                   'qemu:dirty-bitmap:c1', '--output', self.inc],
                  'bp-backup incremental')
        self.unexport('backup-inc')
        with open(self.inc + '.json') as f:
            meta = json.load(f)
        want = expected_dirty_bytes(WRITES_AFTER_C1, GRANULARITY,
                                    DISK_SIZE)
        say('read %s of the %s disk; the writes since c1 cover %s\n'
            'at the %s bitmap granularity'
            % (human(meta['bytes-read']), human(DISK_SIZE), human(want),
               human(GRANULARITY)))
        if meta['bytes-read'] != want:
            raise StepFailed('the increment has %d bytes, expected %d'
                             % (meta['bytes-read'], want))

    def s_stop(self):
        say('quit: the daemon flushes the image and stores the %s in it.'
            % self.way.name)
        self.qmp('quit')
        code = stop_process(self.daemon, graceful_only=True)
        self.client.close()
        self.client = None
        self.daemon = None
        if code != 0:
            raise StepFailed('the daemon exited with code %s' % code)
        out = run_shown([os.path.join(REAL_DIR, 'qemu-img'), 'info',
                         '--output=json', self.disk], 'qemu-img info',
                        show_output=False)
        try:
            spec = json.loads(out)['format-specific']['data']
            names = [b['name'] for b in spec.get('bitmaps', [])]
        except (ValueError, KeyError, TypeError):
            names = []
        say('persistent bitmaps stored in the image: %s'
            % (', '.join(sorted(names)) or 'none'))

    def s_restore(self):
        run_shown([BP_BACKUP, 'restore', '--full', self.full,
                   '--increment', self.inc, '--output', self.restored],
                  'bp-backup restore')

    def s_compare(self):
        run_shown([os.path.join(REAL_DIR, 'qemu-img'), 'compare', '-f',
                   'qcow2', '-F', 'raw', self.disk, self.restored],
                  'qemu-img compare')

    # -- driver ------------------------------------------------------

    def run(self):
        steps = self.steps()
        print('blockpoint demo: a full and an incremental backup over NBD, '
              'then a restore')
        for n, (title, fn) in enumerate(steps, 1):
            self.step_no = n
            print()
            print('Step %d/%d: %s' % (n, len(steps), title))
            try:
                fn()
            except StepFailed as e:
                self.report_failure(n, title, str(e))
                return 1
            except Exception as e:         # a bug: still name the step
                self.report_failure(n, title, '%s: %s'
                                    % (type(e).__name__, e))
                raise
        print()
        print('Done: all %d steps passed.  The restored image equals the '
              'disk at c2,\nand the increment held only what changed since '
              'c1 (%s way, %s daemon).'
              % (len(steps), self.way.name, self.daemon_kind))
        return 0

    def report_failure(self, n, title, msg):
        print()
        print('FAILED at step %d (%s): %s' % (n, title, msg))
        if self.daemon is not None or os.path.exists(self.daemon_log):
            try:
                with open(self.daemon_log, errors='replace') as f:
                    tail = f.read().splitlines()[-20:]
            except OSError:
                tail = []
            if tail:
                print('daemon log (last lines):')
                say('\n'.join(tail), indent=4)
        sys.stdout.flush()

    def cleanup(self):
        # A second Ctrl-C or SIGTERM must not cut the cleanup short.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if self.client is not None:
            try:
                self.client.cmd('quit')
            except QMPError:
                pass
            self.client.close()
        if self.daemon is not None:
            stop_process(self.daemon)
        if self.opts.keep:
            print('(kept %s)' % self.workdir)
        else:
            shutil.rmtree(self.workdir, ignore_errors=True)


def expected_dirty_bytes(writes, granularity, size):
    blocks = set()
    for off, length, _ in writes:
        blocks.update(range(off // granularity,
                            (off + length - 1) // granularity + 1))
    return sum(min(granularity, size - b * granularity) for b in blocks)


def stop_process(proc, graceful_only=False, timeout=30):
    """Wait for a process that was asked to quit; SIGTERM, then SIGKILL,
    if it does not.  Returns its exit code."""
    if proc is None:
        return None
    for sig in ((None, signal.SIGTERM, signal.SIGKILL) if not graceful_only
                else (None, signal.SIGKILL)):
        if sig is not None and proc.poll() is None:
            try:
                proc.send_signal(sig)
            except ProcessLookupError:
                pass
        try:
            return proc.wait(timeout if sig != signal.SIGKILL else None)
        except subprocess.TimeoutExpired:
            continue
    return proc.returncode


def parse_args(argv):
    ap = argparse.ArgumentParser(description='blockpoint incremental '
                                 'backup walkthrough')
    ap.add_argument('build_dir', nargs='?', default=os.path.join(SRC,
                                                                 'build'))
    ap.add_argument('--daemon', default=os.environ.get('BP_DEMO_DAEMON',
                                                       'auto'),
                    help='auto (default), ours, real, or a path to a '
                    'qemu-storage-daemon binary')
    ap.add_argument('--method', default=os.environ.get('BP_DEMO_METHOD',
                                                       'auto'),
                    choices=('auto', 'checkpoints', 'bitmaps'))
    ap.add_argument('--qemu-img', help='qemu-img used to create the image '
                    '(default: ours with our daemon, else the real one)')
    ap.add_argument('--keep', action='store_true',
                    help='keep the work directory')
    return ap.parse_args(argv)


def _on_sigterm(signum, frame):
    raise KeyboardInterrupt


def main(argv=None):
    opts = parse_args(argv)
    signal.signal(signal.SIGTERM, _on_sigterm)
    demo = Demo(opts)
    try:
        return demo.run()
    except KeyboardInterrupt:
        print('\ninterrupted at step %d' % demo.step_no)
        return 130
    except BrokenPipeError:
        # stdout went away (e.g. piped into head): finish quietly.
        sys.stdout = open(os.devnull, 'w')
        return 1
    finally:
        demo.cleanup()


if __name__ == '__main__':
    sys.exit(main())
