"""AF_INET / AF_INET6 destinations off the loopback, in the sandbox only.

The sandbox's network is its own loopback: any other destination has no route, so
connect and sendto fail at once with ENETUNREACH and nothing leaves the Sentry.  These
cases never run natively: natively they would send real traffic off this machine (the
loopback behaviour is compared with Linux by tests/programs/inetsock.c instead).
"""
from __future__ import annotations

import pytest

from helpers import run_sandbox

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
