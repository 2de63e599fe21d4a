#!/usr/bin/python3
"""Style checker for blockpoint C sources (stdlib only).

    scripts/checkpatch.py [-q] FILE...      check the given files
    scripts/checkpatch.py [-q] --all        every tracked or new *.c/*.h

Errors (exit code 1): tab characters, trailing whitespace, CR line ends,
lines over 100 columns, // comments, if/for/while/else/do bodies without
braces (best effort), and exit()/abort() calls in library directories.
Warnings (exit code stays 0): lines over 80 columns, no final newline.
Output: "path:line: ERROR|WARNING: message", then a one-line summary.
"""

import argparse
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HARD_WIDTH = 100
SOFT_WIDTH = 80
# Library code must report errors, never end the process.
LIBRARY_DIRS = ('util', 'block', 'qapi', 'monitor', 'nbd', 'migration')
FORBIDDEN_CALL = re.compile(r'(?<![\w.>$])(exit|abort)\s*\(')
CONTROL = re.compile(r'(if|for|while|switch)\s*\(')
WORD_ELSE = re.compile(r'else\b')
WORD_DO = re.compile(r'do\b')


class Checker:
    def __init__(self, quiet=False):
        self.quiet = quiet
        self.errors = 0
        self.warnings = 0

    def report(self, path, lineno, level, msg):
        self.pending.append((lineno, level, msg))

    def flush(self, path):
        for lineno, level, msg in sorted(self.pending,
                                         key=lambda p: p[0]):
            if level == 'ERROR':
                self.errors += 1
            else:
                self.warnings += 1
                if self.quiet:
                    continue
            print('%s:%d: %s: %s' % (path, lineno, level, msg))
        self.pending = []

    def check_file(self, path):
        rel = os.path.relpath(os.path.abspath(path), ROOT)
        self.pending = []
        self._check_file(path, rel)
        self.flush(rel)

    def _check_file(self, path, rel):
        try:
            with open(path, 'rb') as f:
                raw = f.read()
        except OSError as e:
            self.report(rel, 0, 'ERROR', 'cannot read: %s' % e.strerror)
            return
        text = raw.decode('utf-8', 'replace')
        lines = text.split('\n')
        if lines and lines[-1] == '':
            lines.pop()
        elif text:
            self.report(rel, len(lines), 'WARNING', 'no newline at end of '
                        'file')
        for n, line in enumerate(lines, 1):
            self.check_layout(rel, n, line)
        code, comment_lines, pp = strip_c(lines)
        for n, has in enumerate(comment_lines, 1):
            if has:
                self.report(rel, n, 'ERROR', '// comment (use /* */)')
        top = rel.split(os.sep, 1)[0]
        if top in LIBRARY_DIRS:
            for n, c in enumerate(code, 1):
                m = FORBIDDEN_CALL.search(c)
                if m:
                    self.report(rel, n, 'ERROR', '%s() in library code '
                                '(%s/): report an error to the caller '
                                'instead' % (m.group(1), top))
        for n, msg in check_braces(code, pp):
            self.report(rel, n, 'ERROR', msg)

    def check_layout(self, rel, n, line):
        if line.endswith('\r'):
            self.report(rel, n, 'ERROR', 'DOS line ending')
            line = line[:-1]
        if '\t' in line:
            self.report(rel, n, 'ERROR', 'tab character (indent with '
                        'spaces)')
        if line != line.rstrip():
            self.report(rel, n, 'ERROR', 'trailing whitespace')
        width = len(line.expandtabs(8))
        if width > HARD_WIDTH:
            self.report(rel, n, 'ERROR', 'line is %d columns (limit %d)'
                        % (width, HARD_WIDTH))
        elif width > SOFT_WIDTH:
            self.report(rel, n, 'WARNING', 'line is %d columns (aim for %d)'
                        % (width, SOFT_WIDTH))


def strip_c(lines):
    """Blank out comments and string/char literal contents, keeping
    columns.  Returns (code lines, per-line "has // comment",
    per-line "is a preprocessor line")."""
    code, slashes, pp = [], [], []
    in_block = False
    in_pp = False
    for line in lines:
        out = []
        has_slash = False
        is_pp = in_pp or (not in_block and line.lstrip().startswith('#'))
        i, n = 0, len(line)
        while i < n:
            ch = line[i]
            if in_block:
                if line.startswith('*/', i):
                    in_block = False
                    out.append('  ')
                    i += 2
                else:
                    out.append(' ')
                    i += 1
            elif line.startswith('/*', i):
                in_block = True
                out.append('  ')
                i += 2
            elif line.startswith('//', i):
                has_slash = True
                out.append(' ' * (n - i))
                break
            elif ch in '"\'':
                j = i + 1
                while j < n and line[j] != ch:
                    j += 2 if line[j] == '\\' else 1
                out.append(ch + 'x' * (min(j, n) - i - 1)
                           + (ch if j < n else ''))
                i = j + 1
            else:
                out.append(ch)
                i += 1
        code.append(''.join(out))
        slashes.append(has_slash)
        pp.append(is_pp)
        in_pp = is_pp and line.rstrip().endswith('\\')
    return code, slashes, pp


def _next_code(code, pp, start):
    for k in range(start, len(code)):
        if not pp[k] and code[k].strip():
            return k
    return None


def _close_paren(code, pp, lineno, col):
    """From the '(' at code[lineno][col], return (line, col) just past
    its matching ')' (looking at most 20 lines ahead), or None."""
    depth = 0
    for k in range(lineno, min(len(code), lineno + 20)):
        if pp[k] and k != lineno:
            return None
        text = code[k]
        for c in range(col if k == lineno else 0, len(text)):
            if text[c] == '(':
                depth += 1
            elif text[c] == ')':
                depth -= 1
                if depth == 0:
                    return k, c + 1
    return None


def _body_ok(code, pp, k, rest, allow_semicolon):
    """Is the body after a control header braced?  `rest` is the code
    after the header on line k."""
    rest = rest.strip()
    if rest.startswith('{'):
        return True
    if rest == ';' and allow_semicolon:
        return True
    if rest:
        return False
    nxt = _next_code(code, pp, k + 1)
    return nxt is not None and code[nxt].strip().startswith('{')


def check_braces(code, pp):
    """Best-effort detection of unbraced if/for/while/else/do bodies."""
    problems = []
    for i, line in enumerate(code):
        if pp[i]:
            continue
        s = line.strip()
        closed_brace = s.startswith('}')
        s = s.lstrip('}').strip()
        base = len(line) - len(s) if s else 0
        if WORD_ELSE.match(s):
            rest = s[4:].strip()
            if rest.startswith('if') and CONTROL.match(rest):
                s = rest
                base = line.index(rest, base)
            else:
                nxt = _next_code(code, pp, i + 1)
                if not (rest.startswith('{') or (
                        not rest and nxt is not None
                        and code[nxt].strip().startswith('{'))):
                    problems.append((i + 1, 'else body without braces'))
                continue
        if WORD_DO.match(s) and not s.startswith('double'):
            if not _body_ok(code, pp, i, s[2:], False):
                problems.append((i + 1, 'do body without braces'))
            continue
        m = CONTROL.match(s)
        if not m or m.group(1) == 'switch':
            continue
        found = _close_paren(code, pp, i, base + m.end() - 1)
        if found is None:
            continue
        k, c = found
        rest = code[k][c:]
        # "} while (x);" ends a do-while.
        allow = m.group(1) == 'while' and closed_brace
        if not _body_ok(code, pp, k, rest, allow):
            problems.append((i + 1, '%s body without braces'
                             % m.group(1)))
    return problems


def all_files():
    try:
        out = subprocess.run(['git', 'ls-files', '--cached', '--others',
                              '--exclude-standard', '--', '*.c', '*.h'],
                             cwd=ROOT, check=True, capture_output=True,
                             text=True).stdout.split('\n')
    except (OSError, subprocess.CalledProcessError):
        out = []
        for d, dirs, files in os.walk(ROOT):
            dirs[:] = [x for x in dirs if not x.startswith(('.', 'build'))]
            out += [os.path.relpath(os.path.join(d, f), ROOT)
                    for f in files if f.endswith(('.c', '.h'))]
    files = sorted({f for f in out if f and not f.startswith('build')})
    return [os.path.join(ROOT, f) for f in files
            if os.path.isfile(os.path.join(ROOT, f))]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--all', action='store_true',
                    help='check every *.c/*.h in the tree')
    ap.add_argument('-q', '--quiet', action='store_true',
                    help='print errors only')
    ap.add_argument('files', nargs='*')
    args = ap.parse_args()
    if not args.all and not args.files:
        ap.error('give files or --all')
    files = all_files() if args.all else args.files
    ck = Checker(args.quiet)
    for f in files:
        ck.check_file(f)
    print('checkpatch: %d files, %d errors, %d warnings'
          % (len(files), ck.errors, ck.warnings))
    return 1 if ck.errors else 0


if __name__ == '__main__':
    sys.exit(main())
