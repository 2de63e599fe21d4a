#!/usr/bin/python3
"""NBD protocol conformance of qemu-nbd, with the stdlib client
(harness/nbd.py): fixed newstyle options (LIST, INFO, GO, EXPORT_NAME,
ABORT, STRUCTURED_REPLY, LIST/SET_META_CONTEXT, refused STARTTLS and
unknown options) and every transmission command with simple and
structured replies.  Each case runs against our qemu-nbd and, as the
oracle, the real one: both must behave as asserted."""

import os
import struct
import unittest

from harness import IotestCase
from harness import nbd as N

KiB = 1024
MiB = 1024 * KiB
SIZE = 64 * MiB


class ProtocolBase(IotestCase):
    WHICH = 'ours'

    def assert_error(self, got, want, msg=None):
        """Our server answers exactly `want`; QEMU 7.2 sometimes answers
        another error (EINVAL for writes past the end or on a read-only
        export), so for the oracle any error will do."""
        if self.WHICH == 'ours':
            self.assertEqual(got, want, msg)
        else:
            self.assertNotEqual(got, 0, msg)

    def only_ours(self, why):
        if self.WHICH != 'ours':
            self.skipTest('QEMU 7.2 differs: ' + why)

    def qemu_nbd(self):
        if self.WHICH == 'ours':
            return self.ours('qemu-nbd')
        return self.real('qemu-nbd')

    def setUp(self):
        super().setUp()
        self.path = self.img('disk.raw')
        with open(self.path, 'wb') as f:
            f.truncate(SIZE)
            f.seek(1 * MiB)
            f.write(b'\x11' * MiB)
            f.seek(8 * MiB)
            f.write(bytes(range(256)) * 256)
        self.sock_path = self.sock()

    def serve(self, *extra, name='exp', desc='a test disk'):
        argv = [self.qemu_nbd(), '-t', '-e', '0', '-k', self.sock_path,
                '-f', 'raw', '-x', name]
        if desc is not None:
            argv += ['-D', desc]
        self.start_daemon(argv + list(extra) + [self.path],
                          socket_path=self.sock_path)

    def client(self, strict=True):
        c = N.NbdClient.unix(self.sock_path, strict=strict)
        self.addCleanup(c.close)
        return c

    def connected(self, *extra, contexts=(), structured=True, **kw):
        self.serve(*extra, **kw)
        c = self.client()
        c.negotiate('exp', structured=structured, contexts=contexts)
        return c


class TestHandshake(ProtocolBase):

    def test_greeting_flags(self):
        self.serve()
        c = self.client()
        flags = c.greeting()
        self.assertEqual(flags, N.FLAG_FIXED_NEWSTYLE | N.FLAG_NO_ZEROES)

    def test_list(self):
        self.serve()
        c = self.client()
        c.start()
        self.assertEqual(c.opt_list(), [('exp', 'a test disk')])
        # The session goes on after LIST.
        self.assertEqual(c.opt_info('exp')['size'], SIZE)

    def test_list_with_data_is_invalid(self):
        self.serve()
        c = self.client()
        c.start()
        c.send_option(N.OPT_LIST, b'junk')
        _, rtype, _ = c.option_reply(N.OPT_LIST)
        self.assertEqual(rtype, N.REP_ERR_INVALID)
        self.assertEqual(c.opt_list(), [('exp', 'a test disk')])

    def test_info(self):
        self.serve()
        c = self.client()
        c.start()
        info = c.opt_info('exp')
        self.assertEqual(info['size'], SIZE)
        self.assertEqual(info['name'], 'exp')
        self.assertEqual(info['description'], 'a test disk')
        mn, pref, mx = info['block_size']
        self.assertEqual((mn, pref, mx), (1, 4096, 32 * MiB))
        self.assertTrue(info['flags'] & N.FLAG_HAS_FLAGS)
        self.assertFalse(info['flags'] & N.FLAG_READ_ONLY)
        # INFO does not end negotiation: GO still works.
        go = c.opt_go('exp')
        self.assertEqual(go['size'], SIZE)
        self.assertEqual(c.read(1 * MiB, 4096), b'\x11' * 4096)

    def test_info_unknown_export(self):
        self.serve()
        c = self.client()
        c.start()
        with self.assertRaises(N.NbdOptionError) as cm:
            c.opt_info('nope')
        self.assertEqual(cm.exception.rep, N.REP_ERR_UNKNOWN)
        with self.assertRaises(N.NbdOptionError) as cm:
            c.opt_go('nope')
        self.assertEqual(cm.exception.rep, N.REP_ERR_UNKNOWN)
        c.opt_go('exp')
        self.assertEqual(c.size, SIZE)

    def test_info_malformed(self):
        self.serve()
        c = self.client(strict=False)
        c.start()
        # Name length beyond the option data.
        c.send_option(N.OPT_GO, struct.pack('>I', 100) + b'exp')
        _, rtype, _ = c.option_reply(N.OPT_GO)
        self.assertEqual(rtype, N.REP_ERR_INVALID)
        # Number of information requests does not match the length.
        c.send_option(N.OPT_INFO, struct.pack('>I', 3) + b'exp'
                      + struct.pack('>HH', 5, 1))
        _, rtype, _ = c.option_reply(N.OPT_INFO)
        self.assertEqual(rtype, N.REP_ERR_INVALID)
        c.opt_go('exp')
        self.assertEqual(c.size, SIZE)

    def test_go_default_block_size_info(self):
        self.serve()
        c = self.client()
        c.start()
        info = c.opt_go('exp', infos=())
        self.assertEqual(info['size'], SIZE)

    def test_export_name(self):
        self.serve()
        c = self.client()
        c.start()
        size, flags = c.opt_export_name('exp')
        self.assertEqual(size, SIZE)
        self.assertTrue(flags & N.FLAG_HAS_FLAGS)
        self.assertEqual(c.read(1 * MiB, 512), b'\x11' * 512)

    def test_export_name_with_zeroes(self):
        self.serve()
        c = self.client()
        c.greeting()
        c.client_flags(N.FLAG_C_FIXED_NEWSTYLE)    # no NO_ZEROES
        size, _ = c.opt_export_name('exp')          # reads 134 bytes
        self.assertEqual(size, SIZE)
        self.assertEqual(c.read(0, 512), bytes(512))

    def test_export_name_unknown_closes(self):
        self.serve()
        c = self.client()
        c.start()
        c.send_option(N.OPT_EXPORT_NAME, b'nope')
        self.assertTrue(c.at_eof())

    def test_unfixed_newstyle_export_name(self):
        self.serve()
        c = self.client()
        c.greeting()
        c.client_flags(0)
        size, _ = c.opt_export_name('exp')
        self.assertEqual(size, SIZE)

    def test_abort(self):
        self.serve()
        c = self.client()
        c.start()
        self.assertIn(c.opt_abort(), (N.REP_ACK, None))
        self.assertTrue(c.at_eof())

    def test_starttls_refused(self):
        self.serve()
        c = self.client()
        c.start()
        c.send_option(N.OPT_STARTTLS)
        _, rtype, _ = c.option_reply(N.OPT_STARTTLS)
        self.assertTrue(rtype & N.REP_ERR)
        c.opt_go('exp')

    def test_unknown_option(self):
        self.serve()
        c = self.client()
        c.start()
        for opt in (4, 12, 0x7fffffff, 0xffffffff):
            c.send_option(opt, b'some data')
            ropt, rtype, _ = c.option_reply()
            self.assertEqual((ropt, rtype), (opt, N.REP_ERR_UNSUP))
        c.opt_go('exp')

    def test_structured_reply_twice(self):
        self.serve()
        c = self.client()
        c.start()
        c.opt_structured_reply()
        with self.assertRaises(N.NbdOptionError) as cm:
            c.opt_structured_reply()
        self.assertEqual(cm.exception.rep, N.REP_ERR_INVALID)

    def test_structured_reply_with_data(self):
        self.serve()
        c = self.client()
        c.start()
        c.send_option(N.OPT_STRUCTURED_REPLY, b'x')
        _, rtype, _ = c.option_reply(N.OPT_STRUCTURED_REPLY)
        self.assertEqual(rtype, N.REP_ERR_INVALID)

    def test_meta_context_needs_structured_replies(self):
        self.only_ours('answers without structured replies')
        self.serve()
        c = self.client()
        c.start()
        for op in (c.opt_list_meta_context, c.opt_set_meta_context):
            with self.assertRaises(N.NbdOptionError) as cm:
                op('exp', ['base:allocation'])
            self.assertEqual(cm.exception.rep, N.REP_ERR_INVALID)

    def test_meta_context_unknown_export(self):
        self.serve()
        c = self.client()
        c.start()
        c.opt_structured_reply()
        with self.assertRaises(N.NbdOptionError) as cm:
            c.opt_set_meta_context('nope', ['base:allocation'])
        self.assertEqual(cm.exception.rep, N.REP_ERR_UNKNOWN)

    def test_list_meta_context_queries(self):
        self.serve('-A')
        c = self.client()
        c.start()
        c.opt_structured_reply()
        lst = c.opt_list_meta_context
        self.assertEqual(sorted(lst('exp')),
                         ['base:allocation', 'qemu:allocation-depth'])
        self.assertEqual(lst('exp', ['base:']), ['base:allocation'])
        self.assertEqual(lst('exp', ['qemu:']), ['qemu:allocation-depth'])
        self.assertEqual(lst('exp', ['qemu:dirty-bitmap:']), [])
        self.assertEqual(lst('exp', ['qemu:allocation-depth']),
                         ['qemu:allocation-depth'])
        self.assertEqual(lst('exp', ['x-unknown:foo', 'base:nope']), [])

    def test_set_meta_context(self):
        self.serve('-A')
        c = self.client()
        c.start()
        c.opt_structured_reply()
        got = c.opt_set_meta_context('exp', ['qemu:allocation-depth',
                                             'base:allocation', 'qemu:'])
        self.assertEqual(sorted(got), ['base:allocation',
                                       'qemu:allocation-depth'])
        # A later SET replaces the selection.
        got = c.opt_set_meta_context('exp', ['base:allocation'])
        self.assertEqual(list(got), ['base:allocation'])
        c.opt_go('exp')
        ext = c.block_status(0, SIZE)
        self.assertEqual(list(ext), ['base:allocation'])


class TestTransmission(ProtocolBase):

    def test_read_write_structured(self):
        c = self.connected()
        data = os.urandom(64 * KiB)
        c.write(3 * MiB + 100, data)
        self.assertEqual(c.read(3 * MiB + 100, len(data)), data)
        self.assertEqual(c.read(8 * MiB, 65536), bytes(range(256)) * 256)

    def test_read_write_simple(self):
        c = self.connected(structured=False)
        data = os.urandom(4 * KiB)
        c.write(5 * MiB, data)
        self.assertEqual(c.read(5 * MiB, len(data)), data)
        self.assertFalse(c.tx_flags & N.FLAG_SEND_DF)

    def test_sparse_read(self):
        c = self.connected()
        data = c.read(0, 4 * MiB)
        self.assertEqual(data[:MiB], bytes(MiB))
        self.assertEqual(data[MiB:2 * MiB], b'\x11' * MiB)
        self.assertEqual(data[2 * MiB:], bytes(2 * MiB))

    def test_read_df(self):
        c = self.connected()
        self.assertTrue(c.tx_flags & N.FLAG_SEND_DF)
        c.request(N.CMD_READ, 0, 2 * MiB, N.CMD_FLAG_DF)
        r = c.reply()
        self.assertEqual(r.error, 0)
        content = [t for _, t, _ in r.chunks
                   if t in (N.REPLY_TYPE_OFFSET_DATA,
                            N.REPLY_TYPE_OFFSET_HOLE)]
        self.assertEqual(content, [N.REPLY_TYPE_OFFSET_DATA])
        self.assertEqual(r.data[MiB:], b'\x11' * MiB)

    def test_read_32m(self):
        c = self.connected()
        data = c.read(0, 32 * MiB)
        self.assertEqual(len(data), 32 * MiB)
        self.assertEqual(data[MiB:MiB + 4], b'\x11' * 4)

    def test_write_fua_and_flush(self):
        c = self.connected()
        c.write(0, b'\xaa' * 4096, N.CMD_FLAG_FUA)
        c.flush()
        with open(self.path, 'rb') as f:
            self.assertEqual(f.read(4096), b'\xaa' * 4096)

    def test_write_zeroes(self):
        c = self.connected()
        c.write_zeroes(1 * MiB, 64 * KiB)
        c.write_zeroes(1 * MiB + 64 * KiB, 64 * KiB, N.CMD_FLAG_NO_HOLE)
        c.write_zeroes(1 * MiB + 128 * KiB, 64 * KiB,
                       N.CMD_FLAG_FUA | N.CMD_FLAG_NO_HOLE)
        self.assertEqual(c.read(1 * MiB, 192 * KiB), bytes(192 * KiB))
        self.assertEqual(c.read(1 * MiB + 192 * KiB, 4), b'\x11' * 4)

    def test_write_zeroes_fast(self):
        c = self.connected()
        self.assertTrue(c.tx_flags & N.FLAG_SEND_FAST_ZERO)
        c.request(N.CMD_WRITE_ZEROES, 1 * MiB, 64 * KiB, N.CMD_FLAG_FAST_ZERO)
        r = c.reply()
        # Either done quickly or refused with ENOTSUP, nothing else.
        self.assertIn(r.error, (0, N.ENOTSUP))
        if r.error == 0:
            self.assertEqual(c.read(1 * MiB, 64 * KiB), bytes(64 * KiB))

    def test_trim_and_cache(self):
        c = self.connected()
        c.trim(1 * MiB, 64 * KiB)
        c.trim(0, SIZE, N.CMD_FLAG_FUA)
        c.cache(0, 4 * MiB)
        c.cache(8 * MiB, 4096)
        # Default --discard=ignore: the data is still there.
        self.assertEqual(c.read(1 * MiB, 4), b'\x11' * 4)

    def test_block_status_base(self):
        c = self.connected(contexts=['base:allocation'])
        m = c.map()
        # Fully covered, and the written areas are data.
        self.assertEqual(sum(n for _, n, _ in m), SIZE)
        for off in (1 * MiB, 8 * MiB):
            fl = [f for o, n, f in m if o <= off < o + n][0]
            self.assertEqual(fl & N.STATE_HOLE, 0)
        # The tail of the file was never written.
        self.assertEqual(m[-1][2], N.STATE_HOLE | N.STATE_ZERO)

    def test_block_status_req_one(self):
        c = self.connected(contexts=['base:allocation'])
        ext = c.block_status(0, SIZE, N.CMD_FLAG_REQ_ONE)['base:allocation']
        self.assertEqual(len(ext), 1)
        self.assertEqual(ext[0][1], N.STATE_HOLE | N.STATE_ZERO)
        self.assertLessEqual(ext[0][0], 1 * MiB)

    def test_block_status_two_contexts(self):
        c = self.connected('-A', contexts=['base:allocation',
                                           'qemu:allocation-depth'])
        ext = c.block_status(0, 4 * MiB)
        self.assertEqual(sorted(ext), ['base:allocation',
                                       'qemu:allocation-depth'])
        for name, e in ext.items():
            self.assertEqual(sum(n for n, _ in e), 4 * MiB, name)
        depth = c.map('qemu:allocation-depth')
        self.assertEqual(sum(n for _, n, _ in depth), SIZE)
        # A raw file: every byte is "local" (depth 1) as in QEMU.
        self.assertEqual({f for _, _, f in depth}, {1})

    def test_block_status_without_context(self):
        c = self.connected()
        c.strict = False
        c.request(N.CMD_BLOCK_STATUS, 0, 4096)
        self.assertEqual(c.reply().error, N.EINVAL)
        self.assertEqual(c.read(1 * MiB, 4), b'\x11' * 4)

    def test_pipelined_requests(self):
        c = self.connected()
        expect = {}
        for i in range(64):
            off = 16 * MiB + i * 64 * KiB
            data = bytes([i]) * (64 * KiB)
            h = c.request(N.CMD_WRITE, off, len(data), 0, data)
            expect[h] = ('w', off, data)
        for _ in range(64):
            r = c.reply()
            self.assertEqual(r.error, 0)
            del expect[r.handle]
        for i in range(64):
            off = 16 * MiB + i * 64 * KiB
            h = c.request(N.CMD_READ, off, 64 * KiB)
            expect[h] = ('r', off, bytes([i]) * (64 * KiB))
        for _ in range(64):
            r = c.reply()
            self.assertEqual(r.data, expect.pop(r.handle)[2])
        self.assertEqual(expect, {})

    def test_errors_keep_connection(self):
        c = self.connected()
        c.strict = False
        cases = [
            (N.CMD_READ, SIZE - 512, 1024, 0, N.EINVAL),
            (N.CMD_READ, 0, 512, 0x8000, N.EINVAL),
            (N.CMD_WRITE_ZEROES, SIZE, 512, 0, N.ENOSPC),
            (N.CMD_TRIM, SIZE - 1, 2, 0, N.EINVAL),
            (N.CMD_CACHE, 2 ** 64 - 512, 1024, 0, N.EINVAL),
            (77, 0, 0, 0, N.EINVAL),
        ]
        for cmd, off, ln, fl, err in cases:
            c.request(cmd, off, ln, fl)
            r = c.reply()
            self.assert_error(r.error, err, (cmd, off, ln, fl))
        c.request(N.CMD_WRITE, SIZE - 512, 1024, 0, b'x' * 1024)
        self.assert_error(c.reply().error, N.ENOSPC)
        self.assertEqual(c.read(1 * MiB, 4), b'\x11' * 4)

    def test_read_only(self):
        c = self.connected('-r')
        self.assertTrue(c.tx_flags & N.FLAG_READ_ONLY)
        c.strict = False
        c.request(N.CMD_WRITE, 0, 512, 0, b'\xff' * 512)
        self.assert_error(c.reply().error, N.EPERM)
        c.request(N.CMD_TRIM, 0, 512)
        self.assert_error(c.reply().error, N.EPERM)
        c.request(N.CMD_WRITE_ZEROES, 1 * MiB, 512)
        self.assert_error(c.reply().error, N.EPERM)
        self.assertEqual(c.read(0, 512), bytes(512))
        self.assertEqual(c.read(1 * MiB, 512), b'\x11' * 512)
        c.flush()

    def test_disc_answers_pending(self):
        self.only_ours('closes without answering requests in flight')
        c = self.connected()
        handles = [c.request(N.CMD_READ, 1 * MiB, 256 * KiB)
                   for _ in range(8)]
        c.send_raw(struct.pack('>IHHQQI', N.REQUEST_MAGIC, 0, N.CMD_DISC,
                               999, 0, 0))
        got = sorted(c.reply().handle for _ in handles)
        self.assertEqual(got, sorted(handles))
        self.assertTrue(c.at_eof())


class TestHandshakeReal(TestHandshake):
    WHICH = 'real'


class TestTransmissionReal(TestTransmission):
    WHICH = 'real'


if __name__ == '__main__':
    unittest.main()
