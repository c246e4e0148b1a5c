"""`--network host` (Sandbox(network="host")): host TCP and UDP sockets made by the Sentry,
under the allow-list and published ports, on kvm and ptrace.

Every listener here is one the test itself opens on the host's 127.0.0.1 or ::1; no
traffic goes anywhere else.  The host side checks what it received (and that a refused
destination saw no connection at all); the Sentry's own descriptors come back to where
they were; raw and packet sockets stay refused; bad option values are one-line errors.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading

import pytest

import kvmbox
from helpers import TEST_ENV

PY = "/usr/bin/python3"


def _listener(family=socket.AF_INET, host="127.0.0.1") -> socket.socket:
    s = socket.socket(family, socket.SOCK_STREAM)
    s.bind((host, 0))
    s.listen(8)
    s.settimeout(10)
    return s


def _echo_upper(lst: socket.socket, count: int = 1) -> threading.Thread:
    def serve():
        for _ in range(count):
            c, _ = lst.accept()
            with c:
                c.sendall(c.recv(1000).upper())
    th = threading.Thread(target=serve, daemon=True)
    th.start()
    return th


def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _socket_fds() -> int:
    n = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            n += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
        except OSError:
            pass
    return n


CLIENT = r"""
import socket, sys, errno
port, other = int(sys.argv[1]), int(sys.argv[2])
c = socket.create_connection(("127.0.0.1", port), timeout=10)
print("fd", c.fileno() < 10)
c.sendall(b"hello host")
print(c.recv(100).decode())
c.close()
try:
    socket.create_connection(("127.0.0.1", other), timeout=5)
    print("other: connected")
except OSError as e:
    print("other:", errno.errorcode.get(e.errno, e))
"""


def test_allow_list_reaches_one_port_and_refuses_another(platform_name):
    lst, other = _listener(), _listener()
    other.settimeout(0.5)
    th = _echo_upper(lst)
    before = _socket_fds()
    with kvmbox.Sandbox(platform=platform_name, timeout=60,
                        allow_net=[f"127.0.0.1:{lst.getsockname()[1]}"]) as sb:
        r = sb.run([PY, "-c", CLIENT, str(lst.getsockname()[1]), str(other.getsockname()[1])],
                   env=dict(TEST_ENV), timeout=60)
        assert r.exit_code == 0, r.stderr
        assert r.stdout == b"fd True\nHELLO HOST\nother: ECONNREFUSED\n", r.stdout
        assert any("not in --allow-net" in n for n in r.notices), r.notices
    th.join(5)
    with pytest.raises(socket.timeout):
        other.accept()                       # the refused destination saw nothing
    assert _socket_fds() <= before           # the Sentry's host sockets are closed
    lst.close()
    other.close()


ASYNC_V6_UDP = r"""
import asyncio, socket, sys
tcp6, udp = int(sys.argv[1]), int(sys.argv[2])
async def main():
    r, w = await asyncio.open_connection("::1", tcp6)
    w.write(b"through epoll"); await w.drain()
    print((await r.read(100)).decode())
    w.close(); await w.wait_closed()
asyncio.run(main())
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.settimeout(10)
u.sendto(b"ping", ("127.0.0.1", udp))
data, addr = u.recvfrom(100)
print(data.decode(), addr[0], addr[1] == udp)
"""


def test_asyncio_over_v6_and_udp_with_host_sockets(platform_name):
    if not socket.has_ipv6:
        pytest.skip("the host has no IPv6")
    try:
        lst = _listener(socket.AF_INET6, "::1")
    except OSError:
        pytest.skip("the host has no ::1")
    th = _echo_upper(lst)
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.bind(("127.0.0.1", 0))
    u.settimeout(10)

    def udp_echo():
        data, addr = u.recvfrom(100)
        u.sendto(data + b" pong", addr)
    th2 = threading.Thread(target=udp_echo, daemon=True)
    th2.start()
    with kvmbox.Sandbox(platform=platform_name, timeout=60, network="host") as sb:
        r = sb.run([PY, "-c", ASYNC_V6_UDP, str(lst.getsockname()[1]), str(u.getsockname()[1])],
                   env=dict(TEST_ENV), timeout=60)
    assert r.exit_code == 0, r.stderr
    assert r.stdout == b"THROUGH EPOLL\nping pong 127.0.0.1 True\n", r.stdout
    th.join(5)
    th2.join(5)
    lst.close()
    u.close()


SERVER = r"""
import socket, sys, errno
port, unpublished = int(sys.argv[1]), int(sys.argv[2])
try:
    socket.socket().bind(("127.0.0.1", unpublished))
    print("unpublished: bound")
except OSError as e:
    print("unpublished:", errno.errorcode.get(e.errno, e))
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", port)); s.listen(1)
print("listening", flush=True)
c, _ = s.accept()
c.sendall(c.recv(100)[::-1]); c.close()
"""


def test_published_port_is_reachable_from_the_host(platform_name):
    port, unpublished = _free_port(), _free_port()
    with kvmbox.Sandbox(platform=platform_name, timeout=60, publish=[port]) as sb:
        out: list = []
        th = threading.Thread(target=lambda: out.append(
            sb.run([PY, "-c", SERVER, str(port), str(unpublished)], env=dict(TEST_ENV),
                   timeout=60)), daemon=True)
        th.start()
        for _ in range(200):
            try:
                c = socket.create_connection(("127.0.0.1", port), timeout=10)
                break
            except ConnectionRefusedError:
                th.join(0.05)
        else:
            pytest.fail("the sandbox's published listener never came up")
        c.sendall(b"published")
        assert c.recv(100) == b"dehsilbup"
        c.close()
        th.join(30)
    r = out[0]
    assert r.exit_code == 0, r.stderr
    assert r.stdout == b"unpublished: EACCES\nlistening\n", r.stdout


REFUSED = r"""
import socket, errno
out = []
for args in [(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP),
             (socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6),
             (socket.AF_PACKET, socket.SOCK_RAW, 0),
             (socket.AF_NETLINK, socket.SOCK_RAW, 4)]:           # NETLINK_SOCK_DIAG
    try:
        socket.socket(*args).close()
        out.append("OPEN")
    except OSError as e:
        out.append(errno.errorcode.get(e.errno, str(e.errno)))
s = socket.socket()
try:
    s.bind(("127.0.0.1", 0)); s.listen()
    out.append("LISTEN")
except OSError as e:
    out.append(errno.errorcode.get(e.errno, str(e.errno)))
print(" ".join(out))
"""


def test_host_mode_refuses_raw_packet_and_unpublished_listeners(platform_name):
    with kvmbox.Sandbox(platform=platform_name, timeout=60, network="host") as sb:
        r = sb.run([PY, "-c", REFUSED], env=dict(TEST_ENV), timeout=60)
    assert r.exit_code == 0, r.stderr
    assert r.stdout == b"EPERM EPERM EAFNOSUPPORT EPROTONOSUPPORT EACCES\n", r.stdout


BLOCKED = r"""
import socket, sys
c = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
print("connected", flush=True)
c.recv(10)
"""


def test_a_wait_on_a_host_socket_ends_at_the_timeout(platform_name):
    lst = _listener()
    with kvmbox.Sandbox(platform=platform_name, network="host") as sb:
        r = sb.run([PY, "-c", BLOCKED, str(lst.getsockname()[1])], env=dict(TEST_ENV),
                   timeout=3)
    assert r.timed_out and r.stdout == b"connected\n", (r.stdout, r.stderr)
    lst.close()


@pytest.mark.parametrize("args, words", [
    (["--network", "bogus"], "--network"),
    (["--publish", "70000"], "--publish"),
    (["--network", "none", "--allow-net", "127.0.0.1"], "--network host"),
    (["--allow-net", "999.1.2.3:80"], "--allow-net"),
])
def test_bad_network_options_are_one_line_errors(args, words):
    r = subprocess.run([sys.executable, "-m", "kvmbox", "run", *args, "/bin/true"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 125, (r.returncode, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0] and "Traceback" not in r.stderr, r.stderr
