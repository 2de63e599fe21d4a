"""Byte-level qcow2 inspector and poker for iotests (stdlib only).

Reads the structures of a qcow2 file straight from disk (header, header
extensions, feature name table, L1/L2 tables, refcount table and blocks,
bitmap directory and bitmap tables) so tests can check what a writer put
on disk, and writes single fields or raw bytes so tests can craft bad
input.  Layouts follow qemu's docs/interop/qcow2.txt; every parse re-reads
the file, so an Image object never caches stale data.

Nothing here validates: a poked image is supposed to be invalid.
"""

import os
import struct

MAGIC = 0x514649FB  # "QFI\xfb"

# (name, byte offset, struct format, first version that has it)
HEADER_FIELDS = [
    ('magic', 0, '>I', 2),
    ('version', 4, '>I', 2),
    ('backing_file_offset', 8, '>Q', 2),
    ('backing_file_size', 16, '>I', 2),
    ('cluster_bits', 20, '>I', 2),
    ('size', 24, '>Q', 2),
    ('crypt_method', 32, '>I', 2),
    ('l1_size', 36, '>I', 2),
    ('l1_table_offset', 40, '>Q', 2),
    ('refcount_table_offset', 48, '>Q', 2),
    ('refcount_table_clusters', 56, '>I', 2),
    ('nb_snapshots', 60, '>I', 2),
    ('snapshots_offset', 64, '>Q', 2),
    ('incompatible_features', 72, '>Q', 3),
    ('compatible_features', 80, '>Q', 3),
    ('autoclear_features', 88, '>Q', 3),
    ('refcount_order', 96, '>I', 3),
    ('header_length', 100, '>I', 3),
    ('compression_type', 104, '>B', 3),
]
FIELD = {f[0]: f for f in HEADER_FIELDS}

V2_HEADER_LENGTH = 72
V3_MIN_HEADER_LENGTH = 104

# Feature bits, by feature bitmap
INCOMPAT_DIRTY = 0
INCOMPAT_CORRUPT = 1
INCOMPAT_DATA_FILE = 2
INCOMPAT_COMPRESSION = 3
INCOMPAT_EXTL2 = 4
COMPAT_LAZY_REFCOUNTS = 0
AUTOCLEAR_BITMAPS = 0
AUTOCLEAR_DATA_FILE_RAW = 1

FEATURE_FIELDS = {
    'incompatible': 'incompatible_features',
    'compatible': 'compatible_features',
    'autoclear': 'autoclear_features',
}
FEATURE_TYPE_NAMES = {0: 'incompatible', 1: 'compatible', 2: 'autoclear'}

# Header extension types
EXT_END = 0x00000000
EXT_BACKING_FORMAT = 0xE2792ACA
EXT_FEATURE_TABLE = 0x6803F857
EXT_BITMAPS = 0x23852875
EXT_CRYPTO = 0x0537BE77
EXT_DATA_FILE = 0x44415441

FEATURE_ENTRY_SIZE = 48

# L1/L2/refcount/bitmap-table entry bits
OFFSET_MASK = 0x00FFFFFFFFFFFE00   # bits 9-55
L1E_COPIED = 1 << 63
L2E_COPIED = 1 << 63
L2E_COMPRESSED = 1 << 62
L2E_ZERO = 1
REFT_OFFSET_MASK = 0xFFFFFFFFFFFFFE00  # bits 9-63
BME_ALL_ONES = 1

# Bitmap directory entry flags
BME_FLAG_IN_USE = 1 << 0
BME_FLAG_AUTO = 1 << 1
BME_FLAG_EXTRA_DATA_COMPATIBLE = 1 << 2
BITMAP_TYPE_DIRTY_TRACKING = 1
BITMAP_DIR_ENTRY_FIXED = 24


def align_up(n, a):
    return (n + a - 1) // a * a


def read_bytes(path, offset, length):
    with open(path, 'rb') as f:
        f.seek(offset)
        return f.read(length)


# Real paths of the files poked through write_bytes(): damaged on purpose,
# so the end-of-test scan of the scratch dir (case.py) leaves them alone.
TAMPERED = set()


def write_bytes(path, offset, data):
    """Overwrite bytes in place (the file is never truncated)."""
    TAMPERED.add(os.path.realpath(path))
    with open(path, 'r+b') as f:
        f.seek(offset)
        f.write(data)


def read_u64(path, offset):
    return struct.unpack('>Q', read_bytes(path, offset, 8))[0]


def write_u64(path, offset, value):
    write_bytes(path, offset, struct.pack('>Q', value))


def read_u32(path, offset):
    return struct.unpack('>I', read_bytes(path, offset, 4))[0]


def write_u32(path, offset, value):
    write_bytes(path, offset, struct.pack('>I', value))


class Record:
    """Plain attribute bag with a readable repr."""

    def __init__(self, **kw):
        self.__dict__.update(kw)

    def __repr__(self):
        inner = ', '.join('%s=%r' % kv for kv in self.__dict__.items())
        return '%s(%s)' % (type(self).__name__, inner)


class Header(Record):
    pass


class Extension(Record):
    """type, length, data (bytes), offset (of the 8-byte ext header)."""


class Feature(Record):
    """type (0/1/2), kind ('incompatible'...), bit, name."""


class BitmapsExt(Record):
    """nb_bitmaps, reserved, directory_size, directory_offset."""


class BitmapDirEntry(Record):
    """One bitmap directory entry; offset is its position in the file."""

    @property
    def in_use(self):
        return bool(self.flags & BME_FLAG_IN_USE)

    @property
    def auto(self):
        return bool(self.flags & BME_FLAG_AUTO)

    @property
    def granularity(self):
        return 1 << self.granularity_bits


class Image:
    """A qcow2 file on disk; every accessor re-reads the file."""

    def __init__(self, path):
        self.path = path

    # -- header ------------------------------------------------------------

    def header(self):
        raw = read_bytes(self.path, 0, 112)
        if len(raw) < V2_HEADER_LENGTH:
            raise ValueError('%s: file too short for a qcow2 header'
                             % self.path)
        raw = raw.ljust(112, b'\0')
        h = {}
        version = struct.unpack_from('>I', raw, 4)[0]
        for name, off, fmt, since in HEADER_FIELDS:
            # v2 fields are parsed whatever the version says (so a poked
            # version can be read back); v3 fields only for version >= 3.
            if since <= 2 or version >= since:
                h[name] = struct.unpack_from(fmt, raw, off)[0]
        if version < 3:
            h.update(incompatible_features=0, compatible_features=0,
                     autoclear_features=0, refcount_order=4,
                     header_length=V2_HEADER_LENGTH, compression_type=0)
        elif h['header_length'] <= 104:
            h['compression_type'] = 0
        hdr = Header(**h)
        hdr.cluster_size = 1 << min(hdr.cluster_bits, 63)
        hdr.refcount_bits = 1 << min(hdr.refcount_order, 63)
        return hdr

    @property
    def cluster_size(self):
        return self.header().cluster_size

    def set_header_field(self, name, value):
        set_header_field(self.path, name, value)

    def feature_bit(self, kind, bit):
        return bool(getattr(self.header(), FEATURE_FIELDS[kind]) >> bit & 1)

    def set_feature_bit(self, kind, bit, on=True):
        set_feature_bit(self.path, kind, bit, on)

    # -- header extensions -------------------------------------------------

    def extensions(self):
        """List of Extension, stopping at the end marker or the first
        cluster's end (whichever comes first)."""
        h = self.header()
        end = min(h.cluster_size, 2 * 1024 * 1024)
        off = h.header_length
        exts = []
        while off + 8 <= end:
            etype, elen = struct.unpack('>II', read_bytes(self.path, off, 8))
            if etype == EXT_END:
                break
            data = read_bytes(self.path, off + 8, min(elen, end - off - 8))
            exts.append(Extension(type=etype, length=elen, data=data,
                                  offset=off))
            off += 8 + align_up(elen, 8)
        return exts

    def extension(self, etype):
        for e in self.extensions():
            if e.type == etype:
                return e
        return None

    def feature_table(self):
        e = self.extension(EXT_FEATURE_TABLE)
        if e is None:
            return []
        out = []
        for i in range(len(e.data) // FEATURE_ENTRY_SIZE):
            chunk = e.data[i * FEATURE_ENTRY_SIZE:(i + 1) * FEATURE_ENTRY_SIZE]
            ftype, bit = chunk[0], chunk[1]
            name = chunk[2:].split(b'\0', 1)[0].decode('utf-8', 'replace')
            out.append(Feature(type=ftype, bit=bit, name=name,
                               kind=FEATURE_TYPE_NAMES.get(ftype, 'unknown')))
        return out

    def backing_file(self):
        h = self.header()
        if not h.backing_file_offset:
            return None
        return read_bytes(self.path, h.backing_file_offset,
                          h.backing_file_size).decode('utf-8', 'replace')

    def backing_format(self):
        e = self.extension(EXT_BACKING_FORMAT)
        return None if e is None else e.data.decode('utf-8', 'replace')

    # -- L1 / L2 -----------------------------------------------------------

    def l2_entries_per_table(self):
        h = self.header()
        width = 16 if h.incompatible_features >> INCOMPAT_EXTL2 & 1 else 8
        return h.cluster_size // width

    def l1_table(self):
        h = self.header()
        raw = read_bytes(self.path, h.l1_table_offset, 8 * h.l1_size)
        return list(struct.unpack('>%dQ' % (len(raw) // 8),
                                  raw[:len(raw) // 8 * 8]))

    def l1_entry_offset(self, l1_index):
        """File offset of L1 entry number l1_index."""
        return self.header().l1_table_offset + 8 * l1_index

    def l2_table(self, l1_index):
        """The L2 table referenced by L1[l1_index] as a list of entries
        (standard L2 only), or None when the L1 entry is unallocated."""
        l2_off = self.l1_table()[l1_index] & OFFSET_MASK
        if not l2_off:
            return None
        cs = self.cluster_size
        raw = read_bytes(self.path, l2_off, cs)
        return list(struct.unpack('>%dQ' % (len(raw) // 8), raw))

    def locate(self, guest_offset):
        """(l1_index, l2_index) of the guest cluster holding guest_offset."""
        cs = self.cluster_size
        per = self.l2_entries_per_table()
        cluster = guest_offset // cs
        return cluster // per, cluster % per

    def l2_entry_offset(self, guest_offset):
        """File offset of the (first 64 bits of the) L2 entry that maps
        guest_offset, or None if its L2 table is unallocated."""
        l1_index, l2_index = self.locate(guest_offset)
        l2_off = self.l1_table()[l1_index] & OFFSET_MASK
        if not l2_off:
            return None
        h = self.header()
        width = 16 if h.incompatible_features >> INCOMPAT_EXTL2 & 1 else 8
        return l2_off + width * l2_index

    def l2_entry(self, guest_offset):
        off = self.l2_entry_offset(guest_offset)
        return None if off is None else read_u64(self.path, off)

    def host_offset(self, guest_offset):
        """Host file offset of guest_offset for a standard, allocated
        cluster; None when unallocated, zero-flagged or compressed."""
        e = self.l2_entry(guest_offset)
        if e is None or e & L2E_COMPRESSED or e & L2E_ZERO:
            return None
        host = e & OFFSET_MASK
        if not host:
            return None
        return host + guest_offset % self.cluster_size

    def set_l1_entry(self, l1_index, value):
        write_u64(self.path, self.l1_entry_offset(l1_index), value)

    def set_l2_entry(self, guest_offset, value):
        off = self.l2_entry_offset(guest_offset)
        if off is None:
            raise ValueError('no L2 table maps guest offset %d'
                             % guest_offset)
        write_u64(self.path, off, value)

    # -- refcounts ---------------------------------------------------------

    def refcount_table(self):
        h = self.header()
        raw = read_bytes(self.path, h.refcount_table_offset,
                         h.refcount_table_clusters * h.cluster_size)
        return list(struct.unpack('>%dQ' % (len(raw) // 8),
                                  raw[:len(raw) // 8 * 8]))

    def refcount_block(self, rt_index):
        """Entries of the refcount block at refcount table index rt_index
        (a list of ints), or None when unallocated."""
        h = self.header()
        blk = self.refcount_table()[rt_index] & REFT_OFFSET_MASK
        if not blk:
            return None
        raw = read_bytes(self.path, blk, h.cluster_size)
        return _unpack_bits(raw, h.refcount_bits)

    def refcount(self, host_offset):
        """Refcount of the host cluster containing host_offset."""
        h = self.header()
        per_block = h.cluster_size * 8 // h.refcount_bits
        cluster = host_offset // h.cluster_size
        rt_index, blk_index = divmod(cluster, per_block)
        rt = self.refcount_table()
        if rt_index >= len(rt):
            return 0
        block = self.refcount_block(rt_index)
        return 0 if block is None else block[blk_index]

    def refcount_entry_location(self, host_offset):
        """(file offset of the refcount block, entry index) for the
        cluster containing host_offset; useful to poke refcounts."""
        h = self.header()
        per_block = h.cluster_size * 8 // h.refcount_bits
        rt_index, blk_index = divmod(host_offset // h.cluster_size,
                                     per_block)
        return self.refcount_table()[rt_index] & REFT_OFFSET_MASK, blk_index

    def set_refcount(self, host_offset, value):
        h = self.header()
        blk, index = self.refcount_entry_location(host_offset)
        if not blk:
            raise ValueError('no refcount block covers offset %d'
                             % host_offset)
        bits = h.refcount_bits
        if bits >= 8:
            nbytes = bits // 8
            write_bytes(self.path, blk + index * nbytes,
                        value.to_bytes(nbytes, 'big'))
        else:
            per_byte = 8 // bits
            boff = blk + index // per_byte
            shift = (index % per_byte) * bits
            mask = ((1 << bits) - 1) << shift
            byte = read_bytes(self.path, boff, 1)[0]
            byte = (byte & ~mask) | ((value << shift) & mask)
            write_bytes(self.path, boff, bytes([byte]))

    def set_refcount_table_entry(self, rt_index, value):
        write_u64(self.path,
                  self.header().refcount_table_offset + 8 * rt_index, value)

    # -- bitmaps -----------------------------------------------------------

    def bitmaps_ext(self):
        e = self.extension(EXT_BITMAPS)
        if e is None:
            return None
        data = e.data.ljust(24, b'\0')
        nb, res, dsize, doff = struct.unpack('>IIQQ', data[:24])
        return BitmapsExt(nb_bitmaps=nb, reserved=res, directory_size=dsize,
                          directory_offset=doff, ext_offset=e.offset)

    def set_bitmaps_ext_field(self, name, value):
        """Poke nb_bitmaps/reserved (u32) or directory_size/
        directory_offset (u64) in the bitmaps extension."""
        ext = self.bitmaps_ext()
        if ext is None:
            raise ValueError('%s has no bitmaps extension' % self.path)
        layout = {'nb_bitmaps': (0, '>I'), 'reserved': (4, '>I'),
                  'directory_size': (8, '>Q'),
                  'directory_offset': (16, '>Q')}
        off, fmt = layout[name]
        write_bytes(self.path, ext.ext_offset + 8 + off,
                    struct.pack(fmt, value))

    def bitmap_directory(self):
        """Parse bitmap directory entries.  Walks directory_size bytes and
        stops early (without raising) at a truncated entry."""
        ext = self.bitmaps_ext()
        if ext is None:
            return []
        raw = read_bytes(self.path, ext.directory_offset,
                         min(ext.directory_size, 64 * 1024 * 1024))
        out = []
        pos = 0
        while pos + BITMAP_DIR_ENTRY_FIXED <= len(raw):
            (table_offset, table_size, flags, btype, gbits, name_size,
             extra_size) = struct.unpack_from('>QIIBBHI', raw, pos)
            body = pos + BITMAP_DIR_ENTRY_FIXED
            extra = raw[body:body + extra_size]
            name_raw = raw[body + extra_size:body + extra_size + name_size]
            out.append(BitmapDirEntry(
                offset=ext.directory_offset + pos,
                table_offset=table_offset, table_size=table_size,
                flags=flags, type=btype, granularity_bits=gbits,
                name_size=name_size, extra_data_size=extra_size,
                extra_data=extra,
                name=name_raw.decode('utf-8', 'replace')))
            pos = align_up(body + extra_size + name_size, 8)
        return out

    def bitmap(self, name):
        for b in self.bitmap_directory():
            if b.name == name:
                return b
        raise KeyError('no bitmap named %r in %s' % (name, self.path))

    def set_bitmap_field(self, name, field, value):
        """Poke one fixed field of bitmap `name`'s directory entry:
        table_offset, table_size, flags, type, granularity_bits,
        name_size or extra_data_size."""
        layout = {'table_offset': (0, '>Q'), 'table_size': (8, '>I'),
                  'flags': (12, '>I'), 'type': (16, '>B'),
                  'granularity_bits': (17, '>B'), 'name_size': (18, '>H'),
                  'extra_data_size': (20, '>I')}
        off, fmt = layout[field]
        entry = self.bitmap(name)
        write_bytes(self.path, entry.offset + off, struct.pack(fmt, value))

    def bitmap_table(self, name):
        b = self.bitmap(name)
        raw = read_bytes(self.path, b.table_offset, 8 * b.table_size)
        return list(struct.unpack('>%dQ' % (len(raw) // 8),
                                  raw[:len(raw) // 8 * 8]))

    def set_bitmap_table_entry(self, name, index, value):
        b = self.bitmap(name)
        write_u64(self.path, b.table_offset + 8 * index, value)

    def bitmap_dirty_bits(self, name):
        """Sorted list of set bit numbers of bitmap `name` (bit n covers
        guest bytes [n * granularity, (n + 1) * granularity))."""
        b = self.bitmap(name)
        cs = self.cluster_size
        nbits = -(-self.header().size // b.granularity)
        bits = []
        for i, entry in enumerate(self.bitmap_table(name)):
            first = i * cs * 8
            if first >= nbits:
                break
            count = min(cs * 8, nbits - first)
            off = entry & OFFSET_MASK
            if not off:
                if entry & BME_ALL_ONES:
                    bits.extend(range(first, first + count))
                continue
            data = read_bytes(self.path, off, (count + 7) // 8)
            for byte_i, byte in enumerate(data):
                while byte:
                    low = byte & -byte
                    bit = byte_i * 8 + low.bit_length() - 1
                    if bit < count:
                        bits.append(first + bit)
                    byte ^= low
        return bits

    def bitmap_dirty_ranges(self, name):
        """Merged [(start, length)] guest byte ranges marked dirty."""
        b = self.bitmap(name)
        g = b.granularity
        size = self.header().size
        ranges = []
        for bit in self.bitmap_dirty_bits(name):
            start = bit * g
            if ranges and ranges[-1][0] + ranges[-1][1] == start:
                ranges[-1][1] += g
            else:
                ranges.append([start, g])
        return [(s, min(length, size - s)) for s, length in ranges]


def _unpack_bits(raw, bits):
    if bits >= 8:
        n = bits // 8
        return [int.from_bytes(raw[i:i + n], 'big')
                for i in range(0, len(raw) - n + 1, n)]
    per_byte = 8 // bits
    mask = (1 << bits) - 1
    out = []
    for byte in raw:
        for k in range(per_byte):
            out.append(byte >> (k * bits) & mask)
    return out


# -- module-level pokers (path based) ---------------------------------------

def set_header_field(path, name, value):
    """Write one header field (see HEADER_FIELDS) regardless of version."""
    _, off, fmt, _ = FIELD[name]
    write_bytes(path, off, struct.pack(fmt, value))


def set_feature_bit(path, kind, bit, on=True):
    """Set or clear bit `bit` of the 'incompatible', 'compatible' or
    'autoclear' feature bitmap (v3 header fields)."""
    name = FEATURE_FIELDS[kind]
    _, off, _, _ = FIELD[name]
    value = read_u64(path, off)
    value = value | (1 << bit) if on else value & ~(1 << bit)
    write_u64(path, off, value)


def set_l1_entry(path, l1_index, value):
    Image(path).set_l1_entry(l1_index, value)


def set_l2_entry(path, guest_offset, value):
    Image(path).set_l2_entry(guest_offset, value)


def corrupt_l1_entry(path, l1_index=0, value=None):
    """Point L1[l1_index] somewhere bad (default: far past EOF)."""
    if value is None:
        value = L1E_COPIED | (align_up(os.path.getsize(path), 1 << 20)
                              + (1 << 30)) & OFFSET_MASK
    set_l1_entry(path, l1_index, value)


def corrupt_l2_entry(path, guest_offset=0, value=None):
    """Point the L2 entry of guest_offset somewhere bad (default: far
    past EOF, still cluster aligned)."""
    if value is None:
        value = L2E_COPIED | (align_up(os.path.getsize(path), 1 << 20)
                              + (1 << 30)) & OFFSET_MASK
    set_l2_entry(path, guest_offset, value)


def set_extension_data(path, etype, data):
    """Replace the payload of an existing header extension.  The new
    payload must not be longer than the padded old one."""
    img = Image(path)
    e = img.extension(etype)
    if e is None:
        raise ValueError('no extension 0x%08x in %s' % (etype, path))
    if align_up(len(data), 8) > align_up(e.length, 8):
        raise ValueError('new extension data does not fit in place')
    padded = data.ljust(align_up(e.length, 8), b'\0')
    write_bytes(path, e.offset + 4, struct.pack('>I', len(data)) + padded)


def write_extensions(path, exts):
    """Rewrite the whole header extension area from a list of
    (type, data) or Extension, followed by an end marker.  Raises if the
    area would run into the first cluster's end (the backing file name,
    if any, is not moved: keep it out of the way yourself)."""
    img = Image(path)
    h = img.header()
    blob = b''
    for e in exts:
        etype, data = (e.type, e.data) if isinstance(e, Extension) else e
        blob += struct.pack('>II', etype, len(data))
        blob += data.ljust(align_up(len(data), 8), b'\0')
    blob += b'\0' * 8
    if h.header_length + len(blob) > h.cluster_size:
        raise ValueError('extensions do not fit in the first cluster')
    write_bytes(path, h.header_length, blob)


def raw_extension(etype, length, data=b''):
    """A header extension with an arbitrary (possibly lying) length, as
    bytes, for write_bytes at Image.extensions()[i].offset."""
    return struct.pack('>II', etype, length) + data
