"""AF_INET / AF_INET6 in the sandbox only: destinations off the loopback, and what
connection cycles leave behind.

The sandbox's network is its own loopback: any other destination has no route, so
connect and sendto fail at once with ENETUNREACH and nothing leaves the Sentry.  These
cases never run natively: natively they would send real traffic off this machine (the
loopback behaviour is compared with Linux by tests/programs/inetsock.c instead).
"""
from __future__ import annotations

import gc
import os

import pytest

import kvmbox
from helpers import TEST_ENV, run_sandbox

PY = "/usr/bin/python3"

_PROBE = r"""
import errno, socket, time

def outcome(fn):
    t0 = time.monotonic()
    try:
        fn()
        r = "ok"
    except OSError as e:
        r = errno.errorcode.get(e.errno, str(e.errno))
    return r + (" at once" if time.monotonic() - t0 < 2 else " slowly")

DESTS = [(socket.AF_INET, "10.0.0.1"), (socket.AF_INET, "8.8.8.8"),
         (socket.AF_INET6, "2001:db8::1"), (socket.AF_INET6, "::ffff:10.0.0.1")]
for fam, ip in DESTS:
    s = socket.socket(fam, socket.SOCK_STREAM)
    print("tcp connect", ip, outcome(lambda: s.connect((ip, 80))))
    s.close()
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.setblocking(False)
    print("tcp nonblocking connect", ip, outcome(lambda: s.connect((ip, 80))))
    s.close()
    s = socket.socket(fam, socket.SOCK_DGRAM)
    print("udp sendto", ip, outcome(lambda: s.sendto(b"x", (ip, 53))))
    print("udp connect", ip, outcome(lambda: s.connect((ip, 53))))
    print("udp bind", ip, outcome(lambda: s.bind((ip, 0))))
    s.close()
# a UDP socket connected on the loopback still cannot sendto elsewhere
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.connect(("127.0.0.1", 9))
print("connected udp sendto elsewhere", outcome(lambda: s.sendto(b"x", ("8.8.8.8", 53))))
s.close()
print("done")
"""

_EXPECTED = "".join(
    f"tcp connect {ip} ENETUNREACH at once\n"
    f"tcp nonblocking connect {ip} ENETUNREACH at once\n"
    f"udp sendto {ip} ENETUNREACH at once\n"
    f"udp connect {ip} ENETUNREACH at once\n"
    f"udp bind {ip} EADDRNOTAVAIL at once\n"
    for ip in ("10.0.0.1", "8.8.8.8", "2001:db8::1", "::ffff:10.0.0.1")
) + "connected udp sendto elsewhere ENETUNREACH at once\ndone\n"


def test_off_loopback_destinations_are_unreachable(sandbox):
    """connect/sendto to 10.0.0.1, 8.8.8.8, 2001:db8::1 (and a v4-mapped one): ENETUNREACH
    at once, TCP and UDP, blocking or not; binding such an address EADDRNOTAVAIL."""
    r = run_sandbox(PY, ["-c", _PROBE], sandbox=sandbox)
    assert r.exit_code == 0, r.stderr.decode(errors="replace")[-2000:]
    assert r.stdout.decode() == _EXPECTED


@pytest.mark.parametrize("ip", ["192.0.2.1", "2001:db8::2"])
def test_no_route_even_with_a_loopback_bind(ip, sandbox):
    """A socket bound on the loopback first gets the same ENETUNREACH."""
    fam = "AF_INET6" if ":" in ip else "AF_INET"
    lo = "::1" if ":" in ip else "127.0.0.1"
    probe = (f"import socket, errno\ns = socket.socket(socket.{fam})\ns.bind(('{lo}', 0))\n"
             f"try:\n    s.connect(('{ip}', 443))\n    print('ok')\n"
             f"except OSError as e:\n    print(errno.errorcode[e.errno])\n")
    r = run_sandbox(PY, ["-c", probe], sandbox=sandbox)
    assert r.stdout == b"ENETUNREACH\n", r.stderr.decode(errors="replace")[-2000:]


def _host_socket_fds() -> set[str]:
    """This (the Sentry's) process's socket descriptors, as their /proc link targets."""
    out = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:"):
            out.add(target)
    return out


CYCLES = r"""
import socket
for fam, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
    l = socket.socket(fam); l.bind((host, 0)); l.listen(8)
    for i in range(1000):
        c = socket.socket(fam); c.connect(l.getsockname()[:2])
        n, _ = l.accept(); c.sendall(b"x"); n.recv(1)
        (c if i % 2 else n).close(); (n if i % 2 else c).close()
    l.close()
    u = socket.socket(fam, socket.SOCK_DGRAM); u.bind((host, 0))
    v = socket.socket(fam, socket.SOCK_DGRAM)
    for i in range(200):
        v.sendto(b"d", u.getsockname()[:2]); u.recv(1)
    u.close(); v.close()
print("ok")
"""


def test_tcp_udp_cycles_leave_only_time_wait_and_no_host_socket(platform_name):
    """2000 TCP connections (either side closing first) and 400 datagrams: afterwards no
    socket object is left, the bind table holds only TIME_WAIT entries, and the Sentry
    never held a host socket."""
    from kvmbox.sentry.net.inet import InetSocket, TimeWait
    before = _host_socket_fds()
    with kvmbox.Sandbox(platform=platform_name, timeout=300) as sb:
        r = sb.run([PY, "-c", CYCLES], env=dict(TEST_ENV), timeout=300)
        assert r.exit_code == 0 and r.stdout == b"ok\n", (r.stdout, r.stderr[-2000:])
        assert _host_socket_fds() <= before
        left = [o for socks in sb._kernel.net.ports.values() for entries in socks.values()
                for o in entries]
        assert all(isinstance(o, TimeWait) for o in left), left[:5]
        assert 0 < len(left) <= 2000
        gc.collect()
        live = [o for o in gc.get_objects() if isinstance(o, InetSocket)]
        assert not live, f"{len(live)} inet socket objects outlive the run"


PROC_NET = r"""
import socket
l = socket.socket(); l.bind(("127.0.0.1", 0)); l.listen()
c = socket.create_connection(l.getsockname()); a, _ = l.accept()
u = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); u.bind(("::1", 0))
lp, cp, up = l.getsockname()[1], c.getsockname()[1], u.getsockname()[1]
def rows(name):
    lines = open("/proc/net/" + name).read().splitlines()
    return lines[0], [ln.split() for ln in lines[1:]]
head, tcp = rows("tcp")
print(head.split()[:4])
print(sorted((r[1], r[2], r[3]) for r in tcp) == sorted([
    ("0100007F:%04X" % lp, "00000000:0000", "0A"),
    ("0100007F:%04X" % cp, "0100007F:%04X" % lp, "01"),
    ("0100007F:%04X" % lp, "0100007F:%04X" % cp, "01")]))
print(sorted(int(r[9]) for r in tcp) == sorted(__import__("os").fstat(s.fileno()).st_ino for s in (l, c, a)))
_, udp6 = rows("udp6")
print([(r[1], r[3]) for r in udp6] == [("0" * 24 + "01000000:%04X" % up, "07")])
print([ln.split(":")[0].strip() for ln in open("/proc/net/dev").read().splitlines()[2:]])
print(len(open("/proc/net/route").read().splitlines()))
print(rows("tcp6")[1], rows("udp")[1])
"""


def test_proc_net_shows_lo_and_the_sandbox_sockets_only(sandbox):
    """/proc/net/dev shows lo only, route the header only (a namespace with just lo), and
    tcp/udp6 list the sandbox's own listener, both ends of its connection and its UDP
    socket, in Linux's hex format, with their inodes (nothing of the host's)."""
    r = run_sandbox(PY, ["-c", PROC_NET], sandbox=sandbox)
    assert r.exit_code == 0, r.stderr.decode(errors="replace")[-2000:]
    assert r.stdout.decode() == ("['sl', 'local_address', 'rem_address', 'st']\nTrue\nTrue\n"
                                 "True\n['lo']\n1\n[] []\n")
