"""AF_INET and AF_INET6 reach nothing outside the sandbox.

The sandbox's TCP and UDP live on its own loopback, inside the Sentry: the host's
listeners on 127.0.0.1 and ::1 cannot be reached (a connect is refused by the sandbox's
own empty port, the host listener sees nothing; a datagram never arrives), the same port
can be bound in the sandbox while the host holds it, the Sentry holds no host socket
while guests use TCP and UDP, any address off the loopback is ENETUNREACH at once and a
DNS lookup fails quickly, raw and packet sockets do not open, and 10,000 TCP
connect/close cycles (and UDP socket churn) leave no socket, port binding or
descriptor behind.  Two sandboxes have two loopbacks: a listener in one is reachable
from neither the host nor the other.

Native code here only ever listens on the host's 127.0.0.1 / ::1; every non-loopback
address is tried by the sandboxed program only.
"""
from __future__ import annotations

import gc
import os
import socket
import threading
import time

import kvmbox
from helpers import TEST_ENV


def _have_loopback6() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


HOSTS = ["127.0.0.1", "::1"] if _have_loopback6() else ["127.0.0.1"]


def _family(host: str) -> int:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


REACH_HOST = r"""
import socket, errno, sys
def fam(h):
    return socket.AF_INET6 if ":" in h else socket.AF_INET
out = []
for spec in sys.argv[1:]:
    kind, host, port = spec.split(",")
    port = int(port)
    if kind == "tcp":
        s = socket.socket(fam(host))
        try:
            s.connect((host, port)); out.append("tcp %s CONNECTED" % host)
        except OSError as e:
            out.append("tcp %s %s" % (host, errno.errorcode[e.errno]))
        s.close()
        # the port is free in the sandbox: bind it, listen and talk to ourselves
        l = socket.socket(fam(host)); l.bind((host, port)); l.listen(1)
        c = socket.create_connection((host, port), timeout=10)
        n, _ = l.accept(); c.sendall(b"own loopback"); out.append(n.recv(100).decode())
        for x in (c, n, l): x.close()
    else:
        s = socket.socket(fam(host), socket.SOCK_DGRAM); s.settimeout(5)
        s.sendto(b"escape?", (host, port))          # unconnected: nobody, no error
        s.connect((host, port))
        s.send(b"escape?")
        try:
            s.recv(10); out.append("udp %s ANSWERED" % host)
        except OSError as e:
            out.append("udp %s %s" % (host, errno.errorcode[e.errno]))
        s.close()
print("\n".join(out))
"""


def test_host_loopback_listeners_are_unreachable(platform_name):
    """Host TCP listeners and UDP sockets on 127.0.0.1 (and ::1) get nothing from the
    sandbox, whose connects to them are refused by its own empty loopback."""
    socks: list[tuple[str, str, socket.socket]] = []
    specs = []
    try:
        for host in HOSTS:
            t = socket.socket(_family(host))
            t.bind((host, 0))
            t.listen(16)
            t.settimeout(0.5)
            u = socket.socket(_family(host), socket.SOCK_DGRAM)
            u.bind((host, 0))
            u.settimeout(0.5)
            socks += [("tcp", host, t), ("udp", host, u)]
            specs += [f"tcp,{host},{t.getsockname()[1]}", f"udp,{host},{u.getsockname()[1]}"]
        with kvmbox.Sandbox(platform=platform_name, timeout=60) as sb:
            r = sb.run(["/usr/bin/python3", "-c", REACH_HOST, *specs],
                       env=dict(TEST_ENV), timeout=60)
        assert r.exit_code == 0, r.stderr
        want = []
        for host in HOSTS:
            want += [f"tcp {host} ECONNREFUSED", "own loopback", f"udp {host} ECONNREFUSED"]
        assert r.stdout.decode().splitlines() == want, r.stdout
        for kind, host, s in socks:
            try:
                if kind == "tcp":
                    conn, peer = s.accept()
                    conn.close()
                    raise AssertionError(f"a sandbox connection reached the host's {host}: {peer}")
                data = s.recvfrom(100)
                raise AssertionError(f"a sandbox datagram reached the host's {host}: {data}")
            except (socket.timeout, BlockingIOError):
                pass
    finally:
        for _, _, s in socks:
            s.close()


def _socket_fds() -> set[str]:
    out = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            link = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:"):
            out.add(f"{fd}:{link}")
    return out


HOLD = r"""
import socket, time, sys
held = []
for fam, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
    l = socket.socket(fam); l.bind((host, 0)); l.listen(5)
    c = socket.create_connection(l.getsockname()[:2]); n, _ = l.accept()
    c.sendall(b"x" * 1000)
    u = socket.socket(fam, socket.SOCK_DGRAM); u.bind((host, 0))
    v = socket.socket(fam, socket.SOCK_DGRAM); v.connect(u.getsockname())
    v.send(b"queued")
    held += [l, c, n, u, v]
open(sys.argv[1] + "/ready", "w").close()
time.sleep(1.5)
print("done", len(held))
"""


def test_no_host_socket_descriptor_while_guest_inet_sockets_live(platform_name, tmp_path):
    before = _socket_fds()
    seen: list[set[str]] = []
    with kvmbox.Sandbox(platform=platform_name, timeout=60,
                        mounts=[f"{tmp_path}:/mnt/w:rw"]) as sb:
        def watch() -> None:
            deadline = time.monotonic() + 50
            while time.monotonic() < deadline and not (tmp_path / "ready").exists():
                time.sleep(0.05)
            seen.append(_socket_fds())
        w = threading.Thread(target=watch)
        w.start()
        r = sb.run(["/usr/bin/python3", "-c", HOLD, "/mnt/w"], env=dict(TEST_ENV), timeout=60)
        w.join()
    assert r.exit_code == 0 and r.stdout == b"done 10\n", (r.stdout, r.stderr)
    assert (tmp_path / "ready").exists()
    assert seen and seen[0] <= before, f"new host sockets in the Sentry: {seen[0] - before}"


OUTSIDE = r"""
import socket, errno, time
out = []
for fam, typ, addr in [
        (socket.AF_INET, socket.SOCK_STREAM, ("10.0.0.1", 80)),
        (socket.AF_INET, socket.SOCK_STREAM, ("192.168.1.1", 80)),
        (socket.AF_INET, socket.SOCK_STREAM, ("8.8.8.8", 53)),
        (socket.AF_INET, socket.SOCK_DGRAM, ("8.8.8.8", 53)),
        (socket.AF_INET, socket.SOCK_STREAM, ("169.254.169.254", 80)),
        (socket.AF_INET6, socket.SOCK_STREAM, ("2001:db8::1", 80)),
        (socket.AF_INET6, socket.SOCK_DGRAM, ("2001:db8::1", 53)),
        (socket.AF_INET6, socket.SOCK_STREAM, ("::ffff:10.0.0.1", 80))]:
    start = time.monotonic()
    s = socket.socket(fam, typ)
    try:
        s.connect(addr); r = "CONNECTED"
    except OSError as e:
        r = errno.errorcode[e.errno]
    s.close()
    if typ == socket.SOCK_DGRAM:
        s = socket.socket(fam, typ)
        try:
            s.sendto(b"x", addr); r += " SENT"
        except OSError as e:
            r += " " + errno.errorcode[e.errno]
        s.close()
    out.append("%s %s %s" % (addr[0], r, "fast" if time.monotonic() - start < 1 else "SLOW"))
start = time.monotonic()
try:
    socket.getaddrinfo("example.com", 80)
    out.append("resolved")
except socket.gaierror as e:
    out.append("gaierror %s" % ("fast" if time.monotonic() - start < 10 else "SLOW"))
s = socket.socket(); s.setblocking(False)
try:
    s.connect(("10.0.0.1", 80)); out.append("nonblocking CONNECTED")
except OSError as e:
    out.append("nonblocking " + errno.errorcode[e.errno])
print("\n".join(out))
"""


def test_addresses_off_the_loopback_are_unreachable(platform_name):
    """Sandbox only: every destination off lo is ENETUNREACH at once (connect and sendto,
    TCP and UDP, v4, v6 and v4-mapped), and a DNS lookup fails cleanly within seconds."""
    with kvmbox.Sandbox(platform=platform_name, timeout=60) as sb:
        r = sb.run(["/usr/bin/python3", "-c", OUTSIDE], env=dict(TEST_ENV), timeout=60)
    assert r.exit_code == 0, r.stderr
    assert r.stdout.decode().splitlines() == [
        "10.0.0.1 ENETUNREACH fast", "192.168.1.1 ENETUNREACH fast", "8.8.8.8 ENETUNREACH fast",
        "8.8.8.8 ENETUNREACH ENETUNREACH fast", "169.254.169.254 ENETUNREACH fast",
        "2001:db8::1 ENETUNREACH fast", "2001:db8::1 ENETUNREACH ENETUNREACH fast",
        "::ffff:10.0.0.1 ENETUNREACH fast", "gaierror fast", "nonblocking ENETUNREACH"], r.stdout


RAW = r"""
import socket, errno
out = []
for name, fam, typ, proto in [
        ("raw4-icmp", socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP),
        ("raw4-tcp", socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP),
        ("raw4-raw", socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW),
        ("raw6-icmp", socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6),
        ("ping4", socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP),
        ("ping6", socket.AF_INET6, socket.SOCK_DGRAM, socket.IPPROTO_ICMPV6),
        ("packet-raw", socket.AF_PACKET, socket.SOCK_RAW, 0x0300),
        ("packet-dgram", socket.AF_PACKET, socket.SOCK_DGRAM, 0x0300),
        ("netlink-route", socket.AF_NETLINK, socket.SOCK_RAW, 0)]:
    try:
        socket.socket(fam, typ, proto).close()
        out.append(name + " OPEN")
    except OSError as e:
        out.append(name + " " + errno.errorcode[e.errno])
print("\n".join(out))
"""


def test_raw_and_packet_sockets_are_refused(sandbox):
    r = sandbox.run(["/usr/bin/python3", "-c", RAW], env=dict(TEST_ENV), timeout=60)
    assert r.exit_code == 0, r.stderr
    lines = r.stdout.decode().splitlines()
    assert len(lines) == 9, r.stdout
    opened = [ln for ln in lines if ln.endswith(" OPEN")]
    assert opened == ["netlink-route OPEN"], r.stdout      # read-only, lo only: see below
    assert lines[:4] == ["raw4-icmp EPERM", "raw4-tcp EPERM", "raw4-raw EPERM",
                         "raw6-icmp EPERM"], r.stdout


CYCLES = r"""
import socket
for fam, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
    l = socket.socket(fam); l.bind((host, 0)); l.listen(8)
    addr = l.getsockname()
    for i in range(5000):
        c = socket.socket(fam); c.connect(addr)
        n, _ = l.accept()
        if i % 3 == 0:
            c.send(b"unread")            # a close with unread data: a reset
        c.close(); n.close()
    # connects that never get accepted, then the listener goes
    pending = [socket.create_connection(addr[:2]) for _ in range(5)]
    l.close()
    for p in pending:
        p.close()
    for i in range(500):
        u = socket.socket(fam, socket.SOCK_DGRAM); u.bind((host, 0))
        v = socket.socket(fam, socket.SOCK_DGRAM); v.connect(u.getsockname())
        v.send(b"left in the queue")
        u.close(); v.close()
print("ok")
"""


def _assert_only_time_wait(ports) -> None:
    """Nothing is left in the bind table but TIME_WAIT entries (the active closer's port
    held for 60 s, as Linux; they hold no socket and their number is bounded)."""
    from kvmbox.sentry.net.inet import TCP_MAX_TW_BUCKETS, TimeWait
    left = [o for table in ports.values() for socks in table.values() for o in socks]
    assert all(isinstance(o, TimeWait) for o in left), \
        [(type(o).__name__, o.port) for o in left if not isinstance(o, TimeWait)][:5]
    assert len(left) <= TCP_MAX_TW_BUCKETS


def test_inet_connect_close_cycles_leak_nothing(platform_name):
    """10,000 TCP connect/accept/close cycles (v4 and v6), connects left in a listener's
    queue, and UDP churn: afterwards the Sentry has no port binding but TIME_WAIT, no live TCP or UDP
    socket object and no more descriptors than before."""
    from kvmbox.sentry.net.tcp import TcpSocket
    from kvmbox.sentry.net.udp import UdpSocket
    fds_before = len(os.listdir("/proc/self/fd"))
    with kvmbox.Sandbox(platform=platform_name, timeout=300) as sb:
        r = sb.run(["/usr/bin/python3", "-c", CYCLES], env=dict(TEST_ENV), timeout=300)
        assert r.exit_code == 0 and r.stdout == b"ok\n", (r.stdout, r.stderr)
        _assert_only_time_wait(sb._kernel.net.ports)
        gc.collect()
        live = [o for o in gc.get_objects() if isinstance(o, (TcpSocket, UdpSocket))]
        assert not live, f"{len(live)} TCP/UDP socket objects outlive the run"
    assert len(os.listdir("/proc/self/fd")) <= fds_before


SERVE = r"""
import socket, select, sys, os
port = int(sys.argv[2])
t = socket.socket(); t.bind(("127.0.0.1", port)); t.listen(5)
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("127.0.0.1", port))
open(sys.argv[1] + "/ready", "w").close()
while not os.path.exists(sys.argv[1] + "/done"):
    r, _, _ = select.select([t, u], [], [], 0.05)
    if r:
        print("GOT SOMETHING", r)
        break
c = socket.create_connection(("127.0.0.1", port)); n, _ = t.accept()
c.sendall(b"own"); print("serving", n.recv(10).decode())
"""

KNOCK = r"""
import socket, errno, sys
port = int(sys.argv[1])
out = []
try:
    socket.create_connection(("127.0.0.1", port), timeout=5); out.append("CONNECTED")
except OSError as e:
    out.append(errno.errorcode[e.errno])
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.settimeout(5)
u.connect(("127.0.0.1", port)); u.send(b"knock")
try:
    u.recv(10); out.append("ANSWERED")
except OSError as e:
    out.append(errno.errorcode[e.errno])
print(" ".join(out))
"""


def test_a_sandbox_listener_is_reachable_from_neither_the_host_nor_another_sandbox(
        platform_name, tmp_path):
    """Sandbox A listens (TCP and UDP) on 127.0.0.1:P.  The host holds P bound but not
    listening (so no host program can take it and a host connect is refused by the host
    kernel, not by anything of A); the host's connect and datagram, and sandbox B's
    connect and datagram, reach nothing of A."""
    hold_t = socket.socket()
    hold_t.bind(("127.0.0.1", 0))
    port = hold_t.getsockname()[1]
    hold_u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    hold_u.bind(("127.0.0.1", port))
    result: list = []
    try:
        with kvmbox.Sandbox(platform=platform_name, timeout=60,
                            mounts=[f"{tmp_path}:/mnt/w:rw"]) as a, \
                kvmbox.Sandbox(platform=platform_name, timeout=60) as b:
            ta = threading.Thread(target=lambda: result.append(a.run(
                ["/usr/bin/python3", "-c", SERVE, "/mnt/w", str(port)],
                env=dict(TEST_ENV), timeout=60)))
            ta.start()
            try:
                deadline = time.monotonic() + 50
                while not (tmp_path / "ready").exists() and time.monotonic() < deadline \
                        and ta.is_alive():
                    time.sleep(0.05)
                assert (tmp_path / "ready").exists(), "sandbox A did not start listening"
                with socket.socket() as h:
                    h.settimeout(5)
                    try:
                        h.connect(("127.0.0.1", port))
                        raise AssertionError("the host reached sandbox A's listener")
                    except ConnectionRefusedError:
                        pass
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as h:
                    h.sendto(b"knock", ("127.0.0.1", port))     # lands in hold_u, if anywhere
                rb = b.run(["/usr/bin/python3", "-c", KNOCK, str(port)], env=dict(TEST_ENV),
                           timeout=60)
            finally:
                (tmp_path / "done").touch()
                ta.join()
        assert rb.exit_code == 0 and rb.stdout == b"ECONNREFUSED ECONNREFUSED\n", \
            (rb.stdout, rb.stderr)
        ra = result[0]
        assert ra.exit_code == 0 and ra.stdout == b"serving own\n", (ra.stdout, ra.stderr)
    finally:
        hold_t.close()
        hold_u.close()


KILLED = r"""
import socket, threading, os, time, signal
l = socket.socket(); l.bind(("127.0.0.1", 0)); l.listen(1)
addr = l.getsockname()
held = [socket.create_connection(addr) for _ in range(2)]        # in the accept queue
def blocked():
    try:
        socket.create_connection(addr)            # waits: backlog full
    except OSError as e:
        print("blocked connect", e)
for _ in range(3):
    threading.Thread(target=blocked, daemon=True).start()
l6 = socket.socket(socket.AF_INET6); l6.bind(("::1", 0)); l6.listen()
c6 = socket.create_connection(l6.getsockname()[:2]); n6, _ = l6.accept()
c6.sendall(b"y" * 1000)
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("127.0.0.1", 0))
u.sendto(b"q", u.getsockname())
pid = os.fork()
if pid == 0:
    time.sleep(30)
    os._exit(0)
time.sleep(0.3)
print("exiting", flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_guest_killed_holding_inet_sockets_leaves_nothing(platform_name):
    """SIGKILL with a full accept queue, connects waiting on it, an established v6
    connection with unread data, a UDP socket with a queued datagram, and a forked child
    sharing all of them: afterwards no port is bound and no socket object lives."""
    from kvmbox.sentry.net.tcp import TcpSocket
    from kvmbox.sentry.net.udp import UdpSocket
    with kvmbox.Sandbox(platform=platform_name, timeout=60) as sb:
        r = sb.run(["/usr/bin/python3", "-c", KILLED], env=dict(TEST_ENV), timeout=60)
        assert (r.signal, r.stdout) == (9, b"exiting\n"), (r.signal, r.stdout, r.stderr)
        _assert_only_time_wait(sb._kernel.net.ports)
        gc.collect()
        live = [o for o in gc.get_objects() if isinstance(o, (TcpSocket, UdpSocket))]
        assert not live, f"{len(live)} TCP/UDP socket objects outlive the killed guest"


NETLINK = r"""
import socket, struct, errno, os
print(socket.if_nameindex(), socket.if_nametoindex("lo"))
for name in ("eth0", "docker0"):
    try:
        socket.if_nametoindex(name); print(name, "FOUND")
    except OSError as e:
        print(name, "absent")
s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
s.bind((0, 0))
# RTM_NEWADDR 10.0.0.1/8 on lo, with NLM_F_ACK: must be refused
body = struct.pack("<BBBBi", socket.AF_INET, 8, 0, 0, 1) + struct.pack("<HH4s", 8, 2, bytes([10, 0, 0, 1]))
s.send(struct.pack("<IHHII", 16 + len(body), 20, 0x1 | 0x4 | 0x400 | 0x200, 1, 0) + body)
data = s.recv(4096)
ln, kind, flags, seq, pid = struct.unpack_from("<IHHII", data)
print("newaddr", kind, errno.errorcode.get(-struct.unpack_from("<i", data, 16)[0]))
for proto in (4, 9, 15):                      # NETLINK_SOCK_DIAG, NETLINK_AUDIT, NETLINK_KOBJECT_UEVENT
    try:
        socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, proto); print(proto, "OPEN")
    except OSError as e:
        print(proto, errno.errorcode[e.errno])
"""


def test_netlink_shows_only_lo_and_changes_nothing(sandbox):
    """NETLINK_ROUTE answers getifaddrs and if_nameindex with lo alone; the host's
    interfaces are not there; an address change is EPERM; other netlink protocols
    (sock_diag, audit, uevents) do not open."""
    r = sandbox.run(["/usr/bin/python3", "-c", NETLINK], env=dict(TEST_ENV), timeout=60)
    assert r.exit_code == 0, r.stderr
    assert r.stdout.decode().splitlines() == [
        "[(1, 'lo')] 1", "eth0 absent", "docker0 absent", "newaddr 2 EPERM",
        "4 EPROTONOSUPPORT", "9 EPROTONOSUPPORT", "15 EPROTONOSUPPORT"], r.stdout
