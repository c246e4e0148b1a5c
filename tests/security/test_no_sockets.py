"""Sockets reach nothing outside the sandbox.

AF_UNIX works, entirely inside the Sentry: no host socket is ever made for it (the
Sentry holds no socket descriptor while a guest uses Unix sockets), a socket file the
guest binds on a read-write host mount exists only in the sandbox, and a host listener
on that mount (by path) or in the host's abstract namespace cannot be reached.  Other
families the sandbox does not implement are refused; packet sockets never open.
Descriptors in flight die with their socket, and 10,000 connect/close cycles leave no
socket object, name or descriptor behind in the Sentry.  AF_INET / AF_INET6 (the
sandbox's own loopback, also without a host socket) are in test_inet_isolation.py.
"""
from __future__ import annotations

import gc
import os
import socket
import threading
import time

import kvmbox
from helpers import TEST_ENV

TRY_ALL = r"""
import socket, errno
results = []
for fam, typ in [(socket.AF_UNIX, socket.SOCK_STREAM), (socket.AF_UNIX, socket.SOCK_DGRAM),
                 (socket.AF_UNIX, socket.SOCK_SEQPACKET), (socket.AF_PACKET, socket.SOCK_RAW)]:
    try:
        s = socket.socket(fam, typ)
        results.append('OPEN')
        s.close()
    except OSError as e:
        results.append(errno.errorcode.get(e.errno, str(e.errno)))
a, b = socket.socketpair()
a.send(b'x')
results.append('PAIR' if b.recv(1) == b'x' else 'BROKEN')
print(' '.join(results))
"""


def test_unix_sockets_work_packet_sockets_do_not(sandbox):
    r = sandbox.run(["/usr/bin/python3", "-c", TRY_ALL], env=dict(TEST_ENV), timeout=60)
    assert r.exit_code == 0, r.stderr
    words = r.stdout.split()
    assert words[:3] == [b"OPEN"] * 3 and words[4] == b"PAIR", r.stdout
    assert words[3] != b"OPEN", r.stdout


IN_MOUNT = r"""
import socket, os, errno, sys
d = sys.argv[1]
s = socket.socket(socket.AF_UNIX); s.bind(d + "/guestsock"); s.listen(1)
c = socket.socket(socket.AF_UNIX); c.connect(d + "/guestsock")
n, _ = s.accept(); c.send(b"inside"); print(n.recv(10).decode())
try:
    socket.socket(socket.AF_UNIX).bind(d + "/guestsock")
except OSError as e:
    print("rebind", errno.errorcode[e.errno])
for name in ("/hostsock", "/hostfile"):
    try:
        socket.socket(socket.AF_UNIX).connect(d + name)
        print(name, "CONNECTED")
    except OSError as e:
        print(name, errno.errorcode[e.errno])
try:
    socket.socket(socket.AF_UNIX).connect(sys.argv[2].encode().replace(b"@", b"\0"))
    print("abstract CONNECTED")
except OSError as e:
    print("abstract", errno.errorcode[e.errno])
"""


def test_unix_socket_on_a_rw_host_mount_stays_in_the_sandbox(platform_name, tmp_path):
    """The guest binds, listens and talks on a rw host mount: the host sees no socket file;
    the host's own listeners there (by path) and in its abstract namespace stay unreachable."""
    host = socket.socket(socket.AF_UNIX)
    host.bind(str(tmp_path / "hostsock"))
    host.listen(5)
    host.setblocking(False)
    abstract = f"@kvmbox-host-{os.getpid()}"
    habs = socket.socket(socket.AF_UNIX)
    habs.bind(abstract.replace("@", "\0"))
    habs.listen(5)
    habs.setblocking(False)
    (tmp_path / "hostfile").write_text("not a socket")
    try:
        with kvmbox.Sandbox(platform=platform_name, timeout=60,
                            mounts=[f"{tmp_path}:/mnt/w:rw"]) as sb:
            r = sb.run(["/usr/bin/python3", "-c", IN_MOUNT, "/mnt/w", abstract],
                       env=dict(TEST_ENV), timeout=60)
        assert r.exit_code == 0, r.stderr
        assert r.stdout.decode().split("\n") == [
            "inside", "rebind EADDRINUSE", "/hostsock ECONNREFUSED",
            "/hostfile ECONNREFUSED", "abstract ECONNREFUSED", ""], r.stdout
        assert not (tmp_path / "guestsock").exists()
        for listener in (host, habs):
            try:
                listener.accept()
                raise AssertionError("a sandbox connection reached a host listener")
            except BlockingIOError:
                pass
    finally:
        host.close()
        habs.close()


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
socks = [socket.socketpair() for _ in range(5)]
l = socket.socket(socket.AF_UNIX); l.bind("\0kvmbox-hold"); l.listen(5)
c = socket.socket(socket.AF_UNIX); c.connect("\0kvmbox-hold"); n, _ = l.accept()
d = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); d.bind("/tmp/hold-dgram")
open(sys.argv[1] + "/ready", "w").close()
time.sleep(3)
print("done")
"""


def test_no_host_socket_descriptor_while_guest_sockets_live(platform_name, tmp_path):
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
    assert r.exit_code == 0 and r.stdout == b"done\n", r.stderr
    assert (tmp_path / "ready").exists()
    assert seen and seen[0] <= before, f"new host sockets in the Sentry: {seen[0] - before}"


CYCLES = r"""
import socket, os
l = socket.socket(socket.AF_UNIX); l.bind("/tmp/cycles"); l.listen(8)
for i in range(10000):
    c = socket.socket(socket.AF_UNIX); c.connect("/tmp/cycles")
    n, _ = l.accept(); c.close(); n.close()
r, w = os.pipe()
os.set_blocking(r, False)
a, b = socket.socketpair()
socket.send_fds(a, [b"x"], [w])        # in flight, never received: closed with b's queue
a.close(); b.close(); os.close(w)
try:
    print("pipe EOF" if os.read(r, 1) == b"" else "data?")
except BlockingIOError:
    print("the write end in flight is still open")
l.close()
print("ok")
"""


def test_connect_close_cycles_leak_nothing(platform_name):
    from kvmbox.sentry.net.unix import UnixSocket
    from kvmbox.sentry.pipe import PipeEnd
    fds_before = len(os.listdir("/proc/self/fd"))
    with kvmbox.Sandbox(platform=platform_name, timeout=300) as sb:
        r = sb.run(["/usr/bin/python3", "-c", CYCLES], env=dict(TEST_ENV), timeout=300)
        assert r.exit_code == 0 and r.stdout == b"pipe EOF\nok\n", (r.stdout, r.stderr)
        names = sb._kernel.unix_names
        assert not names.abstract and not names.paths and not names.shadow
        assert names.inflight == 0
        gc.collect()
        live = [o for o in gc.get_objects() if isinstance(o, (UnixSocket, PipeEnd))]
        assert not live, f"{len(live)} socket/pipe objects outlive the run"
    assert len(os.listdir("/proc/self/fd")) <= fds_before
