"""AF_INET / AF_INET6 sockets of a `--network host` sandbox: host TCP and UDP sockets the
Sentry makes and drives on the program's behalf.

The guest gets a Sentry file description (HostInetSocket), never the host descriptor:
the host socket is non-blocking and close-on-exec, and only the Sentry calls it.  Every
operation goes through the sandbox's NetPolicy first: connect and sendto only to an
allowed destination (else ECONNREFUSED and one notice), bind of a fixed port and listen
only on a published port (else EACCES and one notice); port 0 for a client is allowed.
Blocking is the syscall layer's as for every socket: an operation that would block
raises EAGAIN, and the wait polls the host descriptor (`host_wait`), so a kill, a
timeout or a signal still ends it at once.  epoll polls these sockets at each scan
(`host_polled`), as it does the host standard streams.

Only SOCK_STREAM (TCP) and SOCK_DGRAM (UDP) reach here (inet.py's create); raw,
packet and netlink sockets never become host sockets.  Control messages (IP_PKTINFO
and the like) are not passed through.
"""
from __future__ import annotations

import errno
import fcntl
import select
import socket as host_socket

from kvmbox.abi.fcntl import O_NONBLOCK
from kvmbox.abi.poll import POLLERR, POLLHUP, POLLIN, POLLOUT
from kvmbox.abi.socket import (
    AF_INET, AF_INET6, AF_UNSPEC, IPPROTO_IP, IPPROTO_IPV6, IPPROTO_TCP, IPV6_V6ONLY,
    MSG_DONTWAIT, MSG_NOSIGNAL, MSG_PEEK, MSG_TRUNC, SOCK_STREAM, SOL_SOCKET, SO_ERROR,
)
from kvmbox.abi.structs import S32
from kvmbox.errors import SyscallError
from kvmbox.sentry.net import inetaddr as A
from kvmbox.sentry.net.socket import POLLRDHUP, Received, Socket

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from kvmbox.sentry.task import Task

# Options passed to the host socket as they are (int-valued), by level.  Everything else
# at SOL_SOCKET is the Sentry's own (timeouts, buffers as the guest sees them ...).
_PASS = {
    SOL_SOCKET: frozenset({2, 6, 9, 15}),        # SO_REUSEADDR, SO_BROADCAST, SO_KEEPALIVE, SO_REUSEPORT
    IPPROTO_TCP: frozenset({1, 2, 4, 5, 6, 18}),  # NODELAY, MAXSEG, KEEPIDLE, KEEPINTVL, KEEPCNT, USER_TIMEOUT
    IPPROTO_IP: frozenset({1, 2}),                # IP_TOS, IP_TTL
    IPPROTO_IPV6: frozenset({16, IPV6_V6ONLY, 67}),   # UNICAST_HOPS, V6ONLY, TCLASS
}
FIONREAD = 0x541B                                # bytes waiting to be read
_SEND_FLAGS = 0x8000 | 0x80                      # MSG_MORE, MSG_EOR: passed through
_RECV_FLAGS = MSG_PEEK | MSG_TRUNC
# Most bytes one receive asks the host for: Python allocates the whole buffer up front, so
# a guest's recv(fd, buf, 1 << 30) must not become a 1 GiB allocation in the Sentry.  A
# stream receive returns less (as any may); no datagram is larger (UDP: 65,507 bytes).
RECV_MAX = 1 << 20


def _err(e: OSError) -> SyscallError:
    return SyscallError(e.errno if e.errno else errno.EIO)


class HostInetSocket(Socket):
    """A guest TCP or UDP socket backed by a host socket (network=host)."""

    host_polled = True          # epoll polls it at each scan (it announces no changes)

    def __init__(self, kernel, creds, family: int, stype: int, protocol: int, flags: int,
                 host: host_socket.socket | None = None) -> None:
        super().__init__(kernel, creds, stype, protocol, flags)
        self.family = family
        self.policy = kernel.net_policy
        self.host = host if host is not None else host_socket.socket(family, stype, protocol)
        self.host.setblocking(False)
        self.connecting = False
        self.listens = False
        self.bound_port = 0                       # the port bind(2) named (0: none)

    # --- addresses and policy ---------------------------------------------------------
    def _endpoint(self, addr: bytes) -> tuple[str, int]:
        """The guest sockaddr as the (host text, port) the host socket takes."""
        ip, port = A.parse(self.family, addr)
        if self.family == AF_INET:
            return A.text(ip), port
        if A.is_v4(ip):
            return "::ffff:" + A.text(ip), port
        return A.text(ip), port

    def _guest_addr(self, name) -> bytes:
        """A host socket's name tuple as the guest's sockaddr bytes."""
        if self.family == AF_INET:
            return A.sockaddr(AF_INET, (A.v4(host_socket.inet_aton(name[0])), name[1]))
        ip = host_socket.inet_pton(AF_INET6, name[0].split("%", 1)[0])
        return A.sockaddr(AF_INET6, (ip, name[1]))

    def _may_reach(self, host: str, port: int) -> None:
        if not self.policy.may_connect(host, port):
            self.kernel.notice_once(f"net-allow {host} {port}",
                                    f"network: {host} port {port} is not in --allow-net; refused")
            raise SyscallError(errno.ECONNREFUSED)

    def _may_hold(self, port: int, what: str) -> None:
        if not self.policy.may_bind(port):
            self.kernel.notice_once(f"net-publish {port}",
                                    f"network: {what} port {port} needs --publish {port}; refused")
            raise SyscallError(errno.EACCES)

    # --- operations -------------------------------------------------------------------
    def bind(self, t: "Task", addr: bytes) -> None:
        host, port = self._endpoint(addr)
        self._may_hold(port, "binding")
        try:
            self.host.bind((host, port))
        except OSError as e:
            raise _err(e) from None
        self.bound_port = port

    def listen(self, t: "Task", backlog: int) -> None:
        if self.stype != SOCK_STREAM:
            raise SyscallError(errno.EOPNOTSUPP)
        port = self.host.getsockname()[1]
        if not self.policy.may_listen(port, self.bound_port):
            # a listener on a port bind(2) did not name (0, or none) is a host port nobody
            # published: only --publish '*' allows that
            self.kernel.notice_once(f"net-listen {port}",
                                    f"network: listening on host port {port} needs --publish; refused")
            raise SyscallError(errno.EACCES)
        try:
            self.host.listen(max(0, min(backlog, 4096)))
        except OSError as e:
            raise _err(e) from None
        self.listens = True

    def accept(self, t: "Task", flags: int) -> "HostInetSocket":
        try:
            conn, _ = self.host.accept()
        except BlockingIOError:
            raise SyscallError(errno.EAGAIN) from None
        except OSError as e:
            raise _err(e) from None
        return HostInetSocket(self.kernel, None, self.family, self.stype, self.protocol, flags,
                              host=conn)

    def connect(self, t: "Task", addr: bytes) -> None:
        if self.connecting:                       # a blocking connect's retry: done yet?
            if not self.poll(POLLOUT) & (POLLOUT | POLLERR | POLLHUP):
                raise SyscallError(errno.EAGAIN)
            self.connecting = False
            err = self.host.getsockopt(SOL_SOCKET, SO_ERROR)
            if err:
                raise SyscallError(err)
            return
        if A.family_of(addr) == AF_UNSPEC and self.stype != SOCK_STREAM:
            self.host.connect(("0.0.0.0", 0) if self.family == AF_INET else ("::", 0))
            return
        host, port = self._endpoint(addr)
        self._may_reach(host, port)
        rc = self.host.connect_ex((host, port))
        if rc == errno.EINPROGRESS:
            if self.flags & O_NONBLOCK:           # the guest polls for it
                raise SyscallError(errno.EINPROGRESS)
            self.connecting = True
            raise SyscallError(errno.EAGAIN)
        if rc:
            raise SyscallError(rc)

    def sendmsg(self, t, data: bytes, addr, anc, flags: int) -> int:
        hflags = (flags & _SEND_FLAGS) | MSG_DONTWAIT | MSG_NOSIGNAL
        try:
            if addr is not None and self.stype != SOCK_STREAM:
                host, port = self._endpoint(addr)
                self._may_reach(host, port)
                return self.host.sendto(data, hflags, (host, port))
            return self.host.send(data, hflags)
        except BlockingIOError:
            raise SyscallError(errno.EAGAIN) from None
        except OSError as e:
            raise _err(e) from None

    def recvmsg(self, t, n: int, flags: int) -> Received:
        try:
            data, _anc, mflags, addr = self.host.recvmsg(max(0, min(n, RECV_MAX)), 0,
                                                          (flags & _RECV_FLAGS) | MSG_DONTWAIT)
        except BlockingIOError:
            raise SyscallError(errno.EAGAIN) from None
        except OSError as e:
            raise _err(e) from None
        guest_addr = self._guest_addr(addr) if addr and self.stype != SOCK_STREAM else None
        return Received(data, guest_addr, mflags & MSG_TRUNC, len(data))

    def shutdown(self, how: int) -> None:
        try:
            self.host.shutdown(how)
        except OSError as e:
            raise _err(e) from None

    def getsockname(self) -> bytes:
        return self._guest_addr(self.host.getsockname())

    def getpeername(self) -> bytes:
        try:
            return self._guest_addr(self.host.getpeername())
        except OSError as e:
            raise _err(e) from None

    def stream_like(self) -> bool:
        return self.stype == SOCK_STREAM

    def listening(self) -> bool:
        return self.listens

    def readable_bytes(self) -> int:
        buf = bytearray(4)
        fcntl.ioctl(self.host.fileno(), FIONREAD, buf)
        return S32.unpack(bytes(buf))[0]

    # --- options ----------------------------------------------------------------------
    def getsockopt(self, t: "Task", level: int, name: int) -> bytes:
        if level == SOL_SOCKET and name == SO_ERROR:
            return S32.pack(self.host.getsockopt(SOL_SOCKET, SO_ERROR))
        if name in _PASS.get(level, ()):
            try:
                return S32.pack(self.host.getsockopt(level, name))
            except OSError as e:
                raise _err(e) from None
        if level != SOL_SOCKET:
            raise SyscallError(errno.ENOPROTOOPT)
        return super().getsockopt(t, level, name)

    def setsockopt(self, t: "Task", level: int, name: int, value: bytes) -> None:
        if name in _PASS.get(level, ()):
            if len(value) < 4:
                raise SyscallError(errno.EINVAL)
            try:
                self.host.setsockopt(level, name, S32.unpack_from(value)[0])
            except OSError as e:
                raise _err(e) from None
            if level == SOL_SOCKET:
                self.opts[name] = int(bool(S32.unpack_from(value)[0]))
            return
        if level != SOL_SOCKET:
            raise SyscallError(errno.ENOPROTOOPT)
        super().setsockopt(t, level, name, value)

    # --- readiness and close ----------------------------------------------------------
    def poll(self, events: int) -> int:
        p = select.poll()
        p.register(self.host.fileno(), POLLIN | POLLOUT | POLLRDHUP)
        got = p.poll(0)
        return got[0][1] if got else 0

    def host_wait(self, events: int) -> tuple[int, int] | None:
        return self.host.fileno(), events | POLLRDHUP

    def release(self) -> None:
        self.host.close()
