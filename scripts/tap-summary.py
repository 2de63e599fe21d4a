#!/usr/bin/python3
"""Count individual test cases of one `meson test` run.

    tap-summary.py --label NAME --meson-rc RC [--console FILE]
                   [--counts OUT] TESTLOG.json

meson 1.0's testlog JSON (one object per line) has only per-binary
results, so the TAP stream each binary printed (its "stdout") is parsed
here: "ok" counts as passed, "ok ... # SKIP" (or "not ok ... # SKIP") as
skipped, "not ok" as failed, "not ok ... # TODO" as skipped (known
failure), "ok ... # TODO" as passed.  A binary that meson did not judge
OK (crash, Bail out!, sanitizer report at exit, timeout, bad TAP) counts
its planned-but-unreported cases as failed, and at least one failure.
A binary without any TAP output counts as one case.

Prints one line per binary, failure details (failed case names, the
first lines of a sanitizer report or the stderr tail), and writes
"PASSED FAILED SKIPPED" to --counts.
"""

import argparse
import json
import os
import re
import sys

TAP_RESULT = re.compile(r'^(not )?ok\b\s*(\d+)?\s*-?\s*([^#]*?)\s*'
                        r'(?:#\s*(\w+)\b\s*(.*))?$', re.I)
TAP_PLAN = re.compile(r'^1\.\.(\d+)\s*(?:#\s*(\w+)\b\s*(.*))?$')
GOOD = ('OK', 'EXPECTEDFAIL', 'SKIP')
SANITIZER = re.compile(r'ERROR: (Address|Leak|Thread|Memory)Sanitizer|'
                       r'runtime error:')


def parse_tap(stdout):
    res = {'passed': [], 'failed': [], 'skipped': [], 'plan': None,
           'plan_skip': None, 'bail': None, 'seen': 0}
    for line in stdout.splitlines():
        if line.startswith('Bail out!'):
            res['bail'] = line
            continue
        m = TAP_PLAN.match(line)
        if m:
            res['plan'] = int(m.group(1))
            if m.group(2) and m.group(2).upper() == 'SKIP':
                res['plan_skip'] = m.group(3) or 'skipped'
            continue
        m = TAP_RESULT.match(line)
        if not m:
            continue
        res['seen'] += 1
        not_ok, num, desc, directive, why = m.groups()
        name = desc or ('#%s' % num)
        directive = (directive or '').upper()
        if directive == 'SKIP':
            res['skipped'].append(name)
        elif directive == 'TODO':
            res['skipped' if not_ok else 'passed'].append(name)
        elif not_ok:
            res['failed'].append(name)
        else:
            res['passed'].append(name)
    return res


def failure_text(entry):
    """The most useful part of a failed binary's output."""
    out = []
    stderr = entry.get('stderr') or ''
    stdout = entry.get('stdout') or ''
    m = SANITIZER.search(stderr)
    if m:
        start = stderr.rfind('\n', 0, m.start()) + 1
        lines = stderr[start:].splitlines()
        out.append('--- sanitizer report (first 40 lines):')
        out += lines[:40]
        return out
    so = [ln for ln in stdout.splitlines() if ln.strip()]
    if so:
        out.append('--- stdout tail:')
        out += so[-15:]
    se = [ln for ln in stderr.splitlines() if ln.strip()]
    if se:
        out.append('--- stderr tail:')
        out += se[-25:]
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--label', required=True)
    ap.add_argument('--meson-rc', type=int, required=True)
    ap.add_argument('--console')
    ap.add_argument('--counts')
    ap.add_argument('testlog')
    args = ap.parse_args()

    entries = []
    if os.path.exists(args.testlog):
        with open(args.testlog, encoding='utf-8', errors='replace') as f:
            for line in f:
                line = line.strip()
                if line:
                    try:
                        entries.append(json.loads(line))
                    except ValueError:
                        pass

    tot = {'passed': 0, 'failed': 0, 'skipped': 0}
    for e in entries:
        name = e.get('name', '?')
        result = e.get('result', 'UNKNOWN')
        tap = parse_tap(e.get('stdout') or '')
        p, f, s = (len(tap['passed']), len(tap['failed']),
                   len(tap['skipped']))
        notes = []
        if tap['seen'] == 0 and tap['plan'] is None:
            # Not a TAP producer (or died before printing anything).
            if result in ('OK', 'EXPECTEDFAIL'):
                p = 1
            elif result == 'SKIP':
                s = 1
            else:
                f = 1
        elif tap['plan_skip'] is not None and tap['seen'] == 0:
            s = max(1, s)
            notes.append('skipped: %s' % tap['plan_skip'])
        if result not in GOOD:
            missing = (tap['plan'] or 0) - tap['seen']
            if missing > 0:
                f += missing
                notes.append('%d planned case(s) never reported' % missing)
            if f == 0:
                f = 1
                notes.append('binary failed after its cases')
        tot['passed'] += p
        tot['failed'] += f
        tot['skipped'] += s
        line = '  %-32s %3d passed, %d failed, %d skipped' % (name, p, f, s)
        if result not in GOOD or f:
            line += '  [%s, rc %s]' % (result, e.get('returncode'))
        print(line)
        if f:
            for n in tap['failed']:
                print('      not ok: %s' % n)
            if tap['bail']:
                print('      %s' % tap['bail'])
            for n in notes:
                print('      (%s)' % n)
            for ln in failure_text(e):
                print('      ' + ln)

    if args.meson_rc != 0 and tot['failed'] == 0:
        # meson itself failed (build error, bad option...): show why.
        tot['failed'] = 1
        print('  meson test exited with %d and no test failed:'
              % args.meson_rc)
        if args.console and os.path.exists(args.console):
            with open(args.console, errors='replace') as f:
                for ln in f.read().splitlines()[-25:]:
                    print('      ' + ln)
    if not entries and args.meson_rc == 0:
        print('  (no unit tests registered)')
    if args.counts:
        with open(args.counts, 'w') as f:
            f.write('%d %d %d\n' % (tot['passed'], tot['failed'],
                                    tot['skipped']))
    print('%s: %d passed, %d failed, %d skipped'
          % (args.label, tot['passed'], tot['failed'], tot['skipped']))
    return 1 if tot['failed'] else 0


if __name__ == '__main__':
    sys.exit(main())
