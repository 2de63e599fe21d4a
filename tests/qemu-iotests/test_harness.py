#!/usr/bin/python3
"""Self-test of the iotest harness: harness/qcow2.py against images made
by the real qemu-img/qemu-io, IotestCase's end-of-test image check, and
the process helpers in harness/proc.py."""

import json
import os
import unittest

from harness import IotestCase, proc, qcow2, requires_module, requires_real

KiB = 1024
MiB = 1024 * KiB


@requires_real('qemu-img', 'qemu-io')
class Qcow2Base(IotestCase):

    def create(self, name, size='64M', *opts, check=True):
        path = self.img(name)
        argv = [self.real('qemu-img'), 'create', '-q', '-f', 'qcow2']
        for o in opts:
            argv += ['-o', o]
        self.run_ok(argv + [path, size])
        return self.checked(path) if check else self.unchecked(path)

    def qemu_io(self, path, *cmds):
        argv = [self.real('qemu-io'), '-f', 'qcow2']
        for c in cmds:
            argv += ['-c', c]
        return self.run_ok(argv + [path])

    def info(self, path):
        return json.loads(self.run_ok([self.real('qemu-img'), 'info', '-f',
                                       'qcow2', '--output=json', path]))


class TestHeader(Qcow2Base):

    def test_v2_header(self):
        p = self.create('v2.qcow2', '1M', 'compat=0.10')
        h = qcow2.Image(p).header()
        self.assertEqual(h.magic, qcow2.MAGIC)
        self.assertEqual(h.version, 2)
        self.assertEqual(h.size, MiB)
        self.assertEqual(h.cluster_bits, 16)
        self.assertEqual(h.header_length, qcow2.V2_HEADER_LENGTH)
        self.assertEqual(h.refcount_order, 4)
        self.assertEqual(h.backing_file_offset, 0)
        self.assertEqual(h.nb_snapshots, 0)
        self.assertGreaterEqual(h.l1_size, 1)
        self.assertEqual(h.l1_table_offset % h.cluster_size, 0)
        self.assertEqual(h.refcount_table_offset % h.cluster_size, 0)
        self.assertEqual(qcow2.Image(p).extensions(), [])
        info = self.info(p)
        self.assertEqual(info['virtual-size'], h.size)
        self.assertEqual(info['cluster-size'], h.cluster_size)

    def test_v3_header_small_clusters(self):
        p = self.create('v3.qcow2', '16M', 'compat=1.1', 'cluster_size=4k',
                        'refcount_bits=64', 'lazy_refcounts=on')
        img = qcow2.Image(p)
        h = img.header()
        self.assertEqual(h.version, 3)
        self.assertEqual(h.cluster_bits, 12)
        self.assertEqual(h.refcount_order, 6)
        self.assertEqual(h.refcount_bits, 64)
        self.assertGreaterEqual(h.header_length, qcow2.V3_MIN_HEADER_LENGTH)
        self.assertEqual(h.header_length % 8, 0)
        self.assertEqual(h.incompatible_features, 0)
        self.assertTrue(img.feature_bit('compatible',
                                        qcow2.COMPAT_LAZY_REFCOUNTS))
        self.assertEqual(h.compression_type, 0)
        info = self.info(p)['format-specific']['data']
        self.assertEqual(info['refcount-bits'], 64)
        self.assertTrue(info['lazy-refcounts'])

    def test_feature_name_table(self):
        p = self.create('ft.qcow2', '1M')
        img = qcow2.Image(p)
        names = {(f.kind, f.bit): f.name for f in img.feature_table()}
        self.assertEqual(names[('incompatible', 0)], 'dirty bit')
        self.assertEqual(names[('incompatible', 1)], 'corrupt bit')
        self.assertEqual(names[('compatible', 0)], 'lazy refcounts')
        self.assertEqual(names[('autoclear', 0)], 'bitmaps')
        ext = img.extension(qcow2.EXT_FEATURE_TABLE)
        self.assertEqual(ext.length % qcow2.FEATURE_ENTRY_SIZE, 0)
        self.assertEqual(ext.offset, img.header().header_length)

    def test_zstd_compression_type(self):
        p = self.create('z.qcow2', '1M', 'compression_type=zstd')
        img = qcow2.Image(p)
        self.assertEqual(img.header().compression_type, 1)
        self.assertTrue(img.feature_bit('incompatible',
                                        qcow2.INCOMPAT_COMPRESSION))

    def test_backing_file(self):
        base = self.create('base.qcow2', '1M')
        top = self.img('top.qcow2')
        self.run_ok([self.real('qemu-img'), 'create', '-q', '-f', 'qcow2',
                     '-b', base, '-F', 'qcow2', top])
        self.checked(top)
        img = qcow2.Image(top)
        self.assertEqual(img.backing_file(), base)
        self.assertEqual(img.backing_format(), 'qcow2')
        self.assertEqual(img.header().backing_file_size, len(base))


class TestTables(Qcow2Base):

    def test_refcounts_all_widths(self):
        for bits in (1, 2, 4, 8, 16, 32, 64):
            with self.subTest(refcount_bits=bits):
                p = self.create('r%d.qcow2' % bits, '1M',
                                'refcount_bits=%d' % bits)
                img = qcow2.Image(p)
                h = img.header()
                self.assertEqual(h.refcount_bits, bits)
                for off in (0, h.refcount_table_offset, h.l1_table_offset):
                    self.assertEqual(img.refcount(off), 1)
                rt = img.refcount_table()
                self.assertEqual(img.refcount(rt[0]), 1)
                end = qcow2.align_up(os.path.getsize(p), h.cluster_size)
                self.assertEqual(img.refcount(end), 0)

    def test_l1_l2_mapping(self):
        p = self.create('map.qcow2', '64M')
        self.qemu_io(p, 'write -P 0xab 0 64k', 'write -P 0xcd 5M 128k')
        img = qcow2.Image(p)
        l1 = img.l1_table()
        self.assertTrue(l1[0] & qcow2.L1E_COPIED)
        l2_off = l1[0] & qcow2.OFFSET_MASK
        self.assertEqual(img.refcount(l2_off), 1)
        for guest, pattern in ((0, 0xab), (5 * MiB + 100, 0xcd),
                               (5 * MiB + 64 * KiB, 0xcd)):
            host = img.host_offset(guest)
            self.assertIsNotNone(host)
            self.assertEqual(qcow2.read_bytes(p, host, 16),
                             bytes([pattern]) * 16)
            self.assertEqual(img.refcount(host), 1)
            self.assertTrue(img.l2_entry(guest) & qcow2.L2E_COPIED)
        self.assertIsNone(img.host_offset(1 * MiB))
        self.assertEqual(img.locate(5 * MiB), (0, 80))
        self.assertEqual(img.l2_table(0)[80], img.l2_entry(5 * MiB))

    def test_zero_cluster_flag(self):
        p = self.create('zero.qcow2', '1M')
        self.qemu_io(p, 'write -P 1 0 64k', 'write -z 0 64k')
        img = qcow2.Image(p)
        self.assertTrue(img.l2_entry(0) & qcow2.L2E_ZERO)
        self.assertIsNone(img.host_offset(0))


class TestBitmaps(Qcow2Base):

    def test_bitmap_directory(self):
        p = self.create('bm.qcow2', '64M')
        qi = self.real('qemu-img')
        self.run_ok([qi, 'bitmap', '--add', p, 'b1'])
        self.run_ok([qi, 'bitmap', '--add', '-g', '1M', '--disable', p,
                     'second-bitmap'])
        self.qemu_io(p, 'write 0 64k', 'write 5M 128k')
        img = qcow2.Image(p)
        self.assertTrue(img.feature_bit('autoclear',
                                        qcow2.AUTOCLEAR_BITMAPS))
        ext = img.bitmaps_ext()
        self.assertEqual(ext.nb_bitmaps, 2)
        self.assertEqual(ext.reserved, 0)
        self.assertEqual(ext.directory_offset % img.cluster_size, 0)
        d = img.bitmap_directory()
        self.assertEqual([b.name for b in d], ['b1', 'second-bitmap'])
        self.assertEqual(sum(qcow2.align_up(24 + b.name_size, 8)
                             for b in d), ext.directory_size)
        b1, b2 = d
        self.assertTrue(b1.auto)
        self.assertFalse(b1.in_use)
        self.assertEqual(b1.granularity, 64 * KiB)
        self.assertEqual(b1.type, qcow2.BITMAP_TYPE_DIRTY_TRACKING)
        self.assertFalse(b2.auto)
        self.assertEqual(b2.granularity_bits, 20)
        self.assertEqual(b2.name_size, len('second-bitmap'))
        self.assertEqual(img.bitmap_dirty_ranges('b1'),
                         [(0, 64 * KiB), (5 * MiB, 128 * KiB)])
        self.assertEqual(img.bitmap_dirty_bits('b1'), [0, 80, 81])
        self.assertEqual(img.bitmap_dirty_ranges('second-bitmap'), [])
        table = img.bitmap_table('b1')
        self.assertEqual(len(table), b1.table_size)
        self.assertEqual(img.refcount(table[0] & qcow2.OFFSET_MASK), 1)
        info = self.info(p)['format-specific']['data']['bitmaps']
        self.assertEqual([(b['name'], b['granularity']) for b in info],
                         [(b.name, b.granularity) for b in d])

    def test_poke_bitmap_granularity_rejected(self):
        p = self.create('bmg.qcow2', '1M')
        self.run_ok([self.real('qemu-img'), 'bitmap', '--add', p, 'b'])
        img = qcow2.Image(p)
        img.set_bitmap_field('b', 'granularity_bits', 8)
        self.assertEqual(img.bitmap('b').granularity_bits, 8)
        _, err = self.run_fail([self.real('qemu-img'), 'info', '-f', 'qcow2',
                                p], rc=1)
        self.assertIn("Bitmap 'b'", err)
        img.set_bitmap_field('b', 'granularity_bits', 16)
        self.info(p)

    def test_in_use_flag(self):
        p = self.create('iu.qcow2', '1M')
        self.run_ok([self.real('qemu-img'), 'bitmap', '--add', p, 'b'])
        img = qcow2.Image(p)
        img.set_bitmap_field('b', 'flags',
                             qcow2.BME_FLAG_IN_USE | qcow2.BME_FLAG_AUTO)
        self.assertTrue(img.bitmap('b').in_use)
        info = self.info(p)['format-specific']['data']['bitmaps']
        self.assertIn('in-use', info[0]['flags'])


class TestPoke(Qcow2Base):

    def test_version_rejected(self):
        p = self.create('ver.qcow2', '1M', check=False)
        qcow2.set_header_field(p, 'version', 1)
        self.assertEqual(qcow2.Image(p).header().version, 1)
        _, err = self.run_fail([self.real('qemu-img'), 'info', '-f', 'qcow2',
                                p], rc=1)
        self.assertIn('version', err)

    def test_unknown_incompatible_bit(self):
        p = self.create('inc.qcow2', '1M')
        before = qcow2.read_bytes(p, 0, 4096)
        qcow2.set_feature_bit(p, 'incompatible', 40)
        self.assertTrue(qcow2.Image(p).feature_bit('incompatible', 40))
        _, err = self.run_fail([self.real('qemu-img'), 'info', '-f', 'qcow2',
                                p], rc=1)
        self.assertIn('feature', err)
        qcow2.set_feature_bit(p, 'incompatible', 40, on=False)
        self.assertEqual(qcow2.read_bytes(p, 0, 4096), before)
        self.info(p)

    def test_corrupt_bit(self):
        p = self.create('cor.qcow2', '1M', check=False)
        qcow2.set_feature_bit(p, 'incompatible', qcow2.INCOMPAT_CORRUPT)
        info = self.info(p)['format-specific']['data']
        self.assertTrue(info['corrupt'])

    def test_corrupt_l2_entry_detected_by_check(self):
        p = self.create('l2.qcow2', '1M', check=False)
        self.qemu_io(p, 'write 0 64k')
        qcow2.corrupt_l2_entry(p, 0)
        rc, out = self.check_image(p)
        self.assertEqual(rc, 2, out)

    def test_corrupt_l1_entry_detected_by_check(self):
        p = self.create('l1.qcow2', '1M', check=False)
        self.qemu_io(p, 'write 0 64k')
        qcow2.corrupt_l1_entry(p, 0)
        rc, out = self.check_image(p)
        self.assertEqual(rc, 2, out)

    def test_rewrite_extensions_in_place(self):
        p = self.create('ext.qcow2', '1M')
        self.run_ok([self.real('qemu-img'), 'bitmap', '--add', p, 'b'])
        before = qcow2.read_bytes(p, 0, 65536)
        img = qcow2.Image(p)
        exts = img.extensions()
        self.assertEqual([e.type for e in exts],
                         [qcow2.EXT_FEATURE_TABLE, qcow2.EXT_BITMAPS])
        qcow2.write_extensions(p, exts)
        self.assertEqual(qcow2.read_bytes(p, 0, 65536), before)
        # Drop the feature name table: still a valid image.
        qcow2.write_extensions(p, exts[1:])
        self.assertEqual(qcow2.Image(p).feature_table(), [])
        self.assertEqual(qcow2.Image(p).bitmap('b').name, 'b')
        self.info(p)

    def test_bitmaps_ext_poke(self):
        p = self.create('bext.qcow2', '1M', check=False)
        self.run_ok([self.real('qemu-img'), 'bitmap', '--add', p, 'b'])
        img = qcow2.Image(p)
        img.set_bitmaps_ext_field('nb_bitmaps', 2)
        self.assertEqual(img.bitmaps_ext().nb_bitmaps, 2)
        self.run_fail([self.real('qemu-img'), 'info', '-f', 'qcow2', p],
                      rc=1)


class TestIotestCase(Qcow2Base):
    """IotestCase's own behaviour, by running inner test cases."""

    def run_inner(self, body):
        outer = self

        class Inner(IotestCase):
            def runTest(self):
                body(self, outer)

        result = unittest.TestResult()
        Inner().run(result)
        return result

    def test_clean_image_passes(self):
        def body(t, outer):
            p = t.checked(t.img('ok.qcow2'))
            t.run_ok([t.real('qemu-img'), 'create', '-q', '-f', 'qcow2', p,
                      '1M'])
        r = self.run_inner(body)
        self.assertTrue(r.wasSuccessful(), r.failures + r.errors)

    def test_corrupt_image_fails(self):
        def body(t, outer):
            p = t.checked(t.img('bad.qcow2'))
            t.run_ok([t.real('qemu-img'), 'create', '-q', '-f', 'qcow2', p,
                      '1M'])
            t.run_ok([t.real('qemu-io'), '-c', 'write 0 64k', p])
            qcow2.corrupt_l2_entry(p, 0)
        r = self.run_inner(body)
        self.assertEqual(len(r.failures), 1, r.errors)
        msg = r.failures[0][1]
        self.assertIn('qemu-img check bad.qcow2: exit code 2', msg)

    def test_leaks_pass(self):
        def body(t, outer):
            p = t.checked(t.img('leak.qcow2'))
            t.run_ok([t.real('qemu-img'), 'create', '-q', '-f', 'qcow2', p,
                      '1M'])
            end = qcow2.align_up(os.path.getsize(p), 65536)
            os.truncate(p, end + 65536)
            qcow2.Image(p).set_refcount(end, 1)
            outer.assertEqual(t.check_image(p)[0], 3)
        r = self.run_inner(body)
        self.assertTrue(r.wasSuccessful(), r.failures + r.errors)

    def test_missing_binary_skips(self):
        def body(t, outer):
            t.ours('no-such-binary-xyz')
            outer.fail('not reached')
        r = self.run_inner(body)
        self.assertEqual(len(r.skipped), 1)
        self.assertIn('not built yet', r.skipped[0][1])

    def test_daemons_stopped_before_check(self):
        def body(t, outer):
            t.start_daemon(['sleep', '600'])
            outer.d = t._daemons[0]
        r = self.run_inner(body)
        self.assertTrue(r.wasSuccessful(), r.failures + r.errors)
        self.assertFalse(self.d.running())


class TestProc(IotestCase):

    def test_run_output_and_rc(self):
        rc, out, err = proc.run(['/bin/sh', '-c',
                                 'cat; echo err >&2; exit 3'], input='in\n')
        self.assertEqual((rc, out, err), (3, 'in\n', 'err\n'))

    def test_run_signal_rc(self):
        rc, _, _ = proc.run(['/bin/sh', '-c', 'kill -9 $$'])
        self.assertEqual(rc, -9)

    def test_run_timeout(self):
        with self.assertRaises(proc.ProcTimeout):
            proc.run(['sleep', '60'], timeout=0.2)

    def test_real_and_ours(self):
        self.assertEqual(proc.real('qemu-img'), '/usr/bin/qemu-img')
        self.assertIsNone(proc.ours('no-such-binary-xyz'))

    def test_sanitizer_report(self):
        text = 'hello\n==1==ERROR: AddressSanitizer: heap-use-after-free\n'
        self.assertTrue(proc.sanitizer_report(text).startswith('==1==ERROR'))
        self.assertIsNone(proc.sanitizer_report('all fine\n'))
        self.assertIn('runtime error',
                      proc.sanitizer_report('x.c:3:5: runtime error: shift'))

    def test_daemon_kill(self):
        d = self.start_daemon(['sleep', '600'])
        self.assertTrue(d.running())
        self.assertEqual(d.kill(), -9)

    def test_daemon_early_exit_reported(self):
        with self.assertRaises(AssertionError) as cm:
            self.start_daemon(['/bin/sh', '-c', 'echo nope; exit 4'],
                              socket_path=self.sock('never'))
        self.assertIn('nope', str(cm.exception))

    @requires_real('qemu-nbd')
    @requires_module('nbd')
    def test_nbd_daemon_on_unix_socket(self):
        import nbd
        img = self.checked(self.img('exp.qcow2'))
        self.run_ok([self.real('qemu-img'), 'create', '-q', '-f', 'qcow2',
                     img, '4M'])
        sock = self.sock('nbd.sock')
        d = self.start_daemon([self.real('qemu-nbd'), '--persistent', '-f',
                               'qcow2', '-k', sock, img], socket_path=sock)
        self.assertTrue(proc.unix_socket_listening(sock))
        for _ in range(2):
            h = nbd.NBD()
            h.connect_unix(sock)
            self.assertEqual(h.get_size(), 4 * MiB)
            h.pwrite(b'\x5a' * 512, 0)
            h.shutdown()
        self.assertEqual(d.stop(), 0)


if __name__ == '__main__':
    unittest.main()
