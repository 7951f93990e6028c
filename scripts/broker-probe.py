#!/usr/bin/env python3
# The broker's cost per candidate and its LOOKUP round trip (docs/broker.md,
# "Measured"): a private ramfoldd, one client sending N made-up hashes in
# LOOKUPs of 512, the broker's Pss before and after, and query-domains.
# Usage: scripts/broker-probe.py BUILD_DIR [N]   (BUILD_DIR holds ramfoldd)
import socket, struct, subprocess, time, os, sys, random, json
B = sys.argv[1] if len(sys.argv) > 1 else 'build'; N = int(sys.argv[2]) if len(sys.argv) > 2 else 204800
tmp = '/tmp/broker-probe.%d' % os.getpid()
sock = tmp + '.sock'; ctl = tmp + '.ctl'
for p in (sock, ctl):
    try: os.unlink(p)
    except FileNotFoundError: pass
d = subprocess.Popen([B + '/ramfoldd', '--private', '--socket', sock, '--ctl', ctl])
while not os.path.exists(sock): time.sleep(0.05)
time.sleep(0.2)
def pss(pid):
    for l in open('/proc/%d/smaps_rollup' % pid):
        if l.startswith('Pss:'): return int(l.split()[1])
s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET); s.connect(sock)
hello = struct.pack('<IIIIIiQ64s', 1, 16+4+4+8+64, 1, 0, 1, -1, 0, b'probe')
s.sendmsg([hello]); s.recvmsg(4096, 64)
p0 = pss(d.pid)
rnd = random.Random(1); seq = 2; t0 = time.time()
for b in range(N // 512):
    hs = [rnd.getrandbits(64) for _ in range(512)]
    m = struct.pack('<IIII', 2, 16 + 8*512, seq, 512) + struct.pack('<512Q', *hs)
    s.send(m); r = s.recv(65536); seq += 1
dt = time.time() - t0
p1 = pss(d.pid)
c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); c.connect(ctl)
c.sendall(b'{"execute":"query-domains"}\n'); time.sleep(0.2); q = c.recv(65536).decode()
print('pss before %d kB after %d kB; %.1f us per batch; %s' % (p0, p1, dt*1e6/(N//512), q.strip()[:400]))
d.terminate(); d.wait()
for p in (sock, ctl):
    try: os.unlink(p)
    except FileNotFoundError: pass
