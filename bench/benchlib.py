"""Helpers shared by the bench scripts (standard library only)."""

import json
import os
import subprocess

MiB = 1024 * 1024
QEMU_IMG = '/usr/bin/qemu-img'


def host_ranges(image, span):
    """Where guest bytes [0, span) of the qcow2 `image` live in the file:
    [(file offset, length)], from the real qemu-img map."""
    out = subprocess.run([QEMU_IMG, 'map', '-U', '--output=json', image],
                         check=True, stdout=subprocess.PIPE).stdout
    ranges = []
    for e in json.loads(out):
        if e['data'] and 'offset' in e and e['start'] < span:
            ranges.append((e['offset'], min(e['length'], span - e['start'])))
    return ranges


def settle_pages(image, ranges):
    """The same page-cache state before every measured write run: the file
    written back (so the kernel's flusher has nothing to do during the next
    30 s), then every page of the hot region rewritten with its own content
    (dirty, so each daemon pays the same kernel cost per write).  Without
    this, the runs that follow a writeback pay ~20 us more per write on
    the pages it cleaned, whichever daemon they measure."""
    os.sync()
    fd = os.open(image, os.O_RDWR)
    try:
        for off, length in ranges:
            for o in range(off, off + length, MiB):
                n = min(MiB, off + length - o)
                os.pwrite(fd, os.pread(fd, n, o), o)
    finally:
        os.close(fd)
