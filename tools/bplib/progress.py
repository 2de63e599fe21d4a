"""Progress lines on stderr for long transfers.

On a terminal the line is redrawn in place (at most five times a second);
otherwise a plain line is printed at every 10% step, and only for jobs of
at least 256 MiB so that short runs and logs stay quiet.
"""

import sys
import time

LARGE = 256 * 1024 * 1024


def human(n):
    for unit in ('bytes', 'KiB', 'MiB', 'GiB', 'TiB'):
        if n < 1024 or unit == 'TiB':
            if unit == 'bytes':
                return '%d bytes' % n
            return '%.1f %s' % (n, unit)
        n /= 1024.0
    return str(n)


class Progress:
    def __init__(self, label, total, enabled=True, stream=None):
        self.label = label
        self.total = max(total, 1)
        self.stream = stream or sys.stderr
        self.tty = enabled and self.stream.isatty()
        self.enabled = enabled and (self.tty or total >= LARGE)
        self._last_time = 0.0
        self._last_step = -1
        self._drawn = False

    def update(self, position, read):
        """`position`: how far into the disk we are; `read`: bytes
        transferred so far."""
        if not self.enabled:
            return
        pct = 100.0 * min(position, self.total) / self.total
        text = '%s: %5.1f%% of the disk scanned, %s read' % (
            self.label, pct, human(read))
        if self.tty:
            now = time.monotonic()
            if now - self._last_time < 0.2 and position < self.total:
                return
            self._last_time = now
            self.stream.write('\r' + text + '\033[K')
            self._drawn = True
        else:
            step = int(pct // 10)
            if step == self._last_step:
                return
            self._last_step = step
            self.stream.write(text + '\n')
        self.stream.flush()

    def finish(self):
        if self.tty and self._drawn:
            self.stream.write('\n')
            self.stream.flush()
            self._drawn = False
