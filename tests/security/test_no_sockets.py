"""No way out through sockets: every address family and socketpair are refused (EACCES).

Until a network issue lands the sandbox has no sockets at all.  The program
tries the families an escape would want (IPv4/6 to reach the host network,
AF_UNIX to reach host daemons by path or abstract name, netlink and packet
sockets for the kernel) and a socketpair; each must fail with EACCES, and
nothing may be created on the host.
"""
from __future__ import annotations

import os

from helpers import TEST_ENV

TRY_ALL = r"""
import socket, errno
results = []
for fam, typ in [(socket.AF_INET, socket.SOCK_STREAM), (socket.AF_INET, socket.SOCK_DGRAM),
                 (socket.AF_INET6, socket.SOCK_STREAM), (socket.AF_UNIX, socket.SOCK_STREAM),
                 (socket.AF_UNIX, socket.SOCK_DGRAM), (socket.AF_NETLINK, socket.SOCK_RAW),
                 (socket.AF_PACKET, socket.SOCK_RAW)]:
    try:
        s = socket.socket(fam, typ)
        results.append('OPEN')
        s.close()
    except OSError as e:
        results.append(errno.errorcode.get(e.errno, str(e.errno)))
try:
    socket.socketpair()
    results.append('OPEN')
except OSError as e:
    results.append(errno.errorcode.get(e.errno, str(e.errno)))
print(' '.join(results))
"""


def test_every_socket_is_refused(sandbox):
    r = sandbox.run(["/usr/bin/python3", "-c", TRY_ALL], env=dict(TEST_ENV), timeout=60)
    assert r.exit_code == 0, r.stderr
    assert r.stdout.split() == [b"EACCES"] * 8, r.stdout


def test_unix_socket_to_a_host_path_is_impossible(sandbox, tmp_path):
    """Binding a Unix socket under a host directory would create a host file: refused first."""
    path = tmp_path / "sock"
    code = f"import socket; s = socket.socket(socket.AF_UNIX); s.bind({str(path)!r})"
    r = sandbox.run(["/usr/bin/python3", "-c", code], env=dict(TEST_ENV), timeout=60)
    assert r.exit_code == 1 and b"Permission denied" in r.stderr
    assert not os.path.exists(path)
