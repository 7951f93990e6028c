#!/usr/bin/env python3
"""Writes the seed corpus of fuzz_broker (tests/fuzz/corpus/broker/): client
sessions the fuzzer mutates from. Input format: see tests/fuzz/fuzz_broker.c."""
import os
import struct
import sys

HELLO, LOOKUP, INSERT, PUT, REPORT = 1, 2, 3, 4, 5


def connect(slot, peer=0):
    return struct.pack('<BBB', 0, slot, peer)


def disconnect(slot):
    return struct.pack('<BB', 1, slot)


def raw(slot, data):
    return struct.pack('<BBH', 2, slot, len(data)) + data


def hello(slot, dom=0, numa=-1, bad=0):
    return struct.pack('<BBBbB', 3, slot, dom, numa, bad)


def lookup(slot, keys):
    return struct.pack('<BBB', 4, slot, len(keys) - 1) + bytes(keys)


def insert(slot, entries):
    """entries: (key, wrong) pairs."""
    return struct.pack('<BBB', 5, slot, len(entries) - 1) + b''.join(
        struct.pack('<BB', k, w) for k, w in entries)


def put(slot, pgs):
    return struct.pack('<BBB', 6, slot, len(pgs) - 1) + bytes(pgs)


def report(slot, mapped):
    return struct.pack('<BBQ', 7, slot, mapped)


def time(ms):
    return struct.pack('<BH', 8, ms)


def conf(text):
    return struct.pack('<BB', 9, len(text)) + text


def hdr(typ, length, seq, count):
    return struct.pack('<IIII', typ, length, seq, count)


def two(dom=0):
    return connect(0) + hello(0, dom) + connect(1) + hello(1, dom)


SEEDS = {
    # LOOKUP miss, TWIN, INSERT, HIT: the normal path.
    'twin-insert-hit': two() + lookup(0, [1, 2, 3]) + lookup(1, [1, 2, 3]) +
    insert(1, [(1, 0), (2, 0), (3, 0)]) + lookup(0, [1, 2, 3]) + report(0, 3) + report(1, 3),
    # Wrong hashes, a full store (24 pages), PUTs held and not held.
    'bad-hash-full': two() + insert(0, [(5, 1), (6, 0)]) +
    b''.join(insert(0, [(k, 0), (k + 1, 0), (k + 2, 0)]) for k in range(10, 40, 3)) +
    put(1, [0, 1, 255]) + put(0, [0, 1, 2, 3]) + insert(1, [(60, 0)]),
    # A client leaves holding pages; candidates age out.
    'leave-and-expire': two() + lookup(0, [7, 8, 9]) + insert(0, [(7, 0), (8, 0)]) +
    lookup(1, [7, 8]) + disconnect(0) + time(60000) + lookup(1, [9]) + connect(0) +
    hello(0) + lookup(0, [9]) + disconnect(1),
    # Refusals: another uid's domain, a bad name, a bad version, node 1.
    'refusals': connect(0, 1) + hello(0, 0) + connect(1, 0x02 | 0x10) + hello(1, 1) +
    connect(2, 0x00) + hello(2, 2) + disconnect(2) + connect(2) + hello(2, 3) +
    disconnect(2) + connect(2) + hello(2, 0, 0, 1) + disconnect(2) + connect(2) +
    hello(2, 0, 1),
    # Malformed datagrams: short, unknown type, truncated batch, count over
    # the maximum, before HELLO, HELLO twice.
    'malformed': connect(0) + raw(0, b'abc') + connect(1) + raw(1, hdr(LOOKUP, 24, 1, 1) +
                                                                   b'\0' * 8) +
    connect(2) + hello(2) + raw(2, hdr(LOOKUP, 40, 2, 4) + b'\0' * 24) + disconnect(2) +
    connect(2) + hello(2) + raw(2, hdr(PUT, 16, 3, 0)) + disconnect(2) + connect(2) +
    hello(2) + hello(2) + disconnect(2) + connect(2) + hello(2) +
    raw(2, hdr(0x101, 16, 4, 0)),
    # Conf lines, good and bad.
    'conf': conf(b'x uid=1\ny gid=2 cgroup=/a/\n# c\n') + conf(b'x uid=1\nx uid=2\n') +
    conf(b'bad@ uid=1\n') + conf(b'z cgroup=rel\n') + conf(b'q\n'),
    # Two domains side by side: equal pages never meet.
    'two-domains': connect(0) + hello(0, 0) + connect(1, 0x02 | 0x20) + hello(1, 1) +
    lookup(0, [4]) + lookup(1, [4]) + insert(1, [(4, 0)]) + lookup(0, [4]) +
    insert(0, [(4, 0)]),
}


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), 'corpus', 'broker')
    os.makedirs(out, exist_ok=True)
    for name, data in SEEDS.items():
        with open(os.path.join(out, name), 'wb') as f:
            f.write(data)


if __name__ == '__main__':
    main()
