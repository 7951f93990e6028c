#!/usr/bin/env python3
"""Writes the seed corpus of fuzz_balloon (tests/fuzz/corpus/balloon/): valid driver
sessions the fuzzer mutates from. Input format: see tests/fuzz/fuzz_balloon.c."""
import os
import struct
import sys

FEAT = (1 << 32) | (1 << 29) | (1 << 28) | 0x37  # offered by default


def handshake(f=FEAT, qsize=256):
    return struct.pack('<BQH', 6, f, qsize)


def pfns(q, lst):
    return struct.pack('<BBB', 8, q, len(lst)) + b''.join(struct.pack('<I', p) for p in lst)


def report(q, gpa, ln):
    return struct.pack('<BBII', 9, q, gpa, ln)


def mmio_w(off, val, w=2):
    return struct.pack('<BHBQ', 0, off, w, val)


def mmio_r(off, w=2):
    return struct.pack('<BHB', 1, off, w)


def target(pages):
    return struct.pack('<BI', 4, pages)


def tick(ms):
    return struct.pack('<BH', 5, ms)


def cfg(off, write, val, w=2):
    return struct.pack('<BQBBQ', 7, off, w, write, val)


def stats(q, entries):
    raw = b''.join(struct.pack('<HQ', t, v) for t, v in entries)
    raw += b'\0' * (-len(raw) % 4)
    words = [struct.unpack_from('<I', raw, i)[0] for i in range(0, len(raw), 4)]
    return pfns(q, words)


def pending(q, lst):
    """A pfn buffer made available, not notified (op 13)."""
    return struct.pack('<BBB', 13, q, len(lst)) + b''.join(struct.pack('<I', p) for p in lst)


def notify(q):
    return struct.pack('<BB', 2, q)


def migrate(mode=0, off=0, data=b''):
    """rf_balloon_save, reset, new device, rf_balloon_restore (op 12)."""
    return struct.pack('<BBHB', 12, mode, off, len(data)) + data


MID_INFLATE = (handshake() + target(96) + pfns(0, list(range(16, 48)) + [0x200, 0x201]) +
               stats(2, [(4, 1), (5, 2)]) + pending(0, list(range(60, 70))))


def own_status(st, f):
    return struct.pack('<BBQ', 10, st, f)


def own_queue(q, size, d, a, u):
    return struct.pack('<BBHQQQ', 11, q, size, d, a, u)


seeds = {
    'inflate-deflate': handshake() + target(128) + pfns(0, list(range(16, 80))) +
    pfns(1, list(range(16, 48))) + mmio_w(0x104, 32) + tick(1),
    'stats': handshake() + stats(2, [(i, 1000 + i) for i in range(16)]) + tick(1) + tick(0) +
    stats(2, [(4, 5), (4, 6), (99, 1)]),
    'report': handshake() + pfns(0, [20]) + report(3, 0x10000, 0x10000) +
    cfg(12, 1, 0xaa) + report(3, 0x20000, 0x1000),
    'report-no-stats': handshake((1 << 32) | (1 << 5) | (1 << 28)) + report(2, 0x2000, 0x2000),
    'registers': b''.join(mmio_r(o) for o in range(0, 0x110, 4)) + mmio_w(0x70, 1) +
    mmio_w(0x70, 3) + mmio_w(0x70, 11) + mmio_w(0x30, 0) + mmio_w(0x38, 16) + mmio_w(0x44, 1),
    'hole-and-high': handshake() + pfns(0, [0x100, 0x200, 0x201, 0xffffffff, 0x80000000]) +
    pfns(0, [0x200 + i for i in range(16)]),
    'own-transport': own_status(3, FEAT) + own_status(11, FEAT) +
    own_queue(0, 64, 0x40000, 0x41000, 0x42000) + own_queue(1, 64, 0x48000, 0x49000, 0x4a000) +
    own_status(15, FEAT) + pfns(0, [9, 10]) + pfns(1, [9]),
    'stats-due': handshake() + stats(2, [(4, 1), (5, 2)]) + tick(2) + stats(2, [(5, 2), (6, 3)]) + tick(5),
    'small-queue': handshake(FEAT, 4) + pfns(0, [1, 2, 3]) + pfns(0, [4]) + pfns(0, [5]) +
    pfns(0, [6]) + pfns(0, [7]) + pfns(1, [1, 2, 3, 4, 5, 6, 7]),
    # A real rf_balloon_save mid-inflate (a buffer pending, a stats buffer
    # held), restored, and the restored device driven on.
    'restore-mid-inflate': MID_INFLATE + migrate() + notify(0) + pfns(1, list(range(16, 24))) +
    tick(2) + b''.join(mmio_r(o) for o in (0x34, 0x44, 0x60, 0x70, 0x104)) + migrate() +
    pfns(0, [100, 101]) + mmio_w(0x70, 0),
    # The same image with a field changed and the checksum made right.
    'restore-patched': MID_INFLATE + migrate(1, 40 + 72 + 8 * 3, b'\xff\xff') + notify(0) +
    pfns(1, [16]),
    # A hostile image alone: a header with nothing behind it.
    'restore-raw': handshake() + migrate(5, 0, b'RFBL' + struct.pack('<HHIIHHHHQQ', 1, 0, 40, 0,
                                                                       0, 0, 0, 0, 0, 0)),
}

out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), 'corpus',
                                                         'balloon')
os.makedirs(out, exist_ok=True)
for name, data in seeds.items():
    with open(os.path.join(out, name), 'wb') as fh:
        fh.write(data)
print(f'{len(seeds)} seeds in {out}')
