"""Run one iotest file's unittest cases and record each outcome as JSON.

Used by ../check as:
    /usr/bin/python3 harness/runner.py --json OUT [-k PAT]... FILE [SEL]...
SEL is a name inside the module (Class or Class.method).  The verbose
unittest text still goes to stdout (the per-file log); OUT is rewritten
after every test so a timeout still leaves the finished cases and the one
in progress ("current").

OUT format:
  {"file": "test_x.py", "finished": bool, "current": name or null,
   "cases": [{"name": "test_x.Class.method",
              "status": "ok|fail|error|skip|xfail|upass",
              "message": str, "duration": seconds}]}
"""

import argparse
import importlib.util
import json
import os
import sys
import time
import traceback
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
IOTESTS = os.path.dirname(HERE)

# Worst status wins when one test reports twice (e.g. body + cleanup).
_RANK = {'ok': 0, 'xfail': 0, 'skip': 1, 'upass': 2, 'fail': 3, 'error': 4}


class Recorder:
    def __init__(self, out_path, file_name):
        self.out_path = out_path
        self.doc = {'file': file_name, 'finished': False, 'current': None,
                    'cases': []}
        self.by_name = {}

    def record(self, name, status, message='', duration=0.0):
        case = self.by_name.get(name)
        if case is None:
            case = {'name': name, 'status': status, 'message': message,
                    'duration': round(duration, 3)}
            self.by_name[name] = case
            self.doc['cases'].append(case)
        else:
            if _RANK[status] > _RANK[case['status']]:
                case['status'] = status
            if message:
                case['message'] = (case['message'] + '\n' + message).strip()
        self.flush()

    def set_current(self, name):
        self.doc['current'] = name
        self.flush()

    def flush(self):
        tmp = self.out_path + '.tmp'
        with open(tmp, 'w') as f:
            json.dump(self.doc, f, indent=1)
        os.replace(tmp, self.out_path)


class JsonResult(unittest.TextTestResult):
    recorder = None

    def startTest(self, test):
        self._t0 = time.monotonic()
        self.recorder.set_current(test.id())
        super().startTest(test)

    def _dur(self):
        return time.monotonic() - getattr(self, '_t0', time.monotonic())

    def _rec(self, test, status, message=''):
        self.recorder.record(test.id(), status, message, self._dur())

    def addSuccess(self, test):
        super().addSuccess(test)
        self._rec(test, 'ok')

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self._rec(test, 'fail', self._exc_info_to_string(err, test))

    def addError(self, test, err):
        super().addError(test, err)
        self._rec(test, 'error', self._exc_info_to_string(err, test))

    def addSkip(self, test, reason):
        super().addSkip(test, reason)
        self._rec(test, 'skip', str(reason))

    def addExpectedFailure(self, test, err):
        super().addExpectedFailure(test, err)
        self._rec(test, 'xfail')

    def addUnexpectedSuccess(self, test):
        super().addUnexpectedSuccess(test)
        self._rec(test, 'upass', 'unexpected success')

    def addSubTest(self, test, subtest, err):
        super().addSubTest(test, subtest, err)
        if err is not None:
            failed = issubclass(err[0], test.failureException)
            self.recorder.record(subtest.id(), 'fail' if failed else 'error',
                                 self._exc_info_to_string(err, test),
                                 self._dur())

    def stopTestRun(self):
        super().stopTestRun()
        self.recorder.doc['current'] = None
        self.recorder.doc['finished'] = True
        self.recorder.flush()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--json', required=True)
    ap.add_argument('-k', dest='patterns', action='append', default=[])
    ap.add_argument('file')
    ap.add_argument('selectors', nargs='*')
    args = ap.parse_args()

    # Python put this script's own folder (harness/) first on the path; its
    # modules must be imported as harness.X, or harness/nbd.py would hide
    # python3-libnbd's `nbd`.
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or '.') != HERE]
    sys.path.insert(0, IOTESTS)
    path = os.path.abspath(args.file)
    stem = os.path.splitext(os.path.basename(path))[0]
    rec = Recorder(args.json, os.path.basename(path))
    rec.flush()

    loader = unittest.TestLoader()
    if args.patterns:
        loader.testNamePatterns = [p if '*' in p else '*%s*' % p
                                   for p in args.patterns]
    try:
        spec = importlib.util.spec_from_file_location(stem, path)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[stem] = mod
        spec.loader.exec_module(mod)
        if args.selectors:
            suite = loader.loadTestsFromNames(args.selectors, mod)
        else:
            suite = loader.loadTestsFromModule(mod)
    except Exception:
        msg = traceback.format_exc()
        sys.stdout.write(msg)
        rec.record(stem, 'error', 'cannot load tests:\n' + msg)
        rec.doc['finished'] = True
        rec.flush()
        return 1

    JsonResult.recorder = rec
    runner = unittest.TextTestRunner(stream=sys.stdout, verbosity=2,
                                     resultclass=JsonResult)
    result = runner.run(suite)
    return 0 if result.wasSuccessful() else 1


if __name__ == '__main__':
    sys.exit(main())
