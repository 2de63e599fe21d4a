"""Helpers shared by the bench scripts (standard library only)."""

import json
import mmap
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


def settle_pages(image, ranges, folios='small'):
    """The same page-cache state before every measured write run: the file
    written back (so the kernel's flusher has nothing to do during the next
    30 s), the hot region evicted, then every page of it written again with
    its own content (dirty, so each daemon pays the same kernel cost per
    write).  Without this, the runs that follow a writeback pay ~20 us more
    per write on the pages it cleaned, whichever daemon they measure.

    `folios` says how the kernel caches the region afterwards.  'small':
    4 KiB pages, as on the reference platform (Debian 12's Linux 6.1 caches
    ext4 files in 4 KiB pages only); the region is read with O_DIRECT and
    written back 4 KiB at a time.  'large': 1 MiB writes, which newer
    kernels (this machine's 6.18) cache in large folios on ext4; there a
    4 KiB write into a large folio costs the kernel several microseconds
    (it walks the folio's block buffers), the same for every writer."""
    os.sync()
    fd = os.open(image, os.O_RDWR)
    dfd = os.open(image, os.O_RDONLY | os.O_DIRECT) if folios == 'small' \
        else -1
    buf = mmap.mmap(-1, MiB)                    # page-aligned for O_DIRECT
    try:
        for off, length in ranges:
            os.posix_fadvise(fd, off, length, os.POSIX_FADV_DONTNEED)
        for off, length in ranges:
            for o in range(off, off + length, MiB):
                n = min(MiB, off + length - o)
                if folios == 'small':
                    got = os.preadv(dfd, [memoryview(buf)[:n]], o)
                    for p in range(0, got, 4096):
                        os.pwrite(fd, buf[p:p + 4096], o + p)
                else:
                    os.pwrite(fd, os.pread(fd, n, o), o)
    finally:
        buf.close()
        if dfd >= 0:
            os.close(dfd)
        os.close(fd)
