"""AF_INET and AF_INET6 on the sandbox's own loopback: the per-sandbox stack (port tables,
ephemeral ports, the route decision) and what TCP and UDP sockets share (bind, names,
the IPPROTO_IP / IPPROTO_IPV6 options).

The sandbox has one interface, lo, with 127.0.0.0/8 and ::1; no packet ever leaves the
Sentry and no host socket is made.  Each socket is bound at most once to (ip16, port)
(inetaddr.py: IPv4 addresses in v4-mapped form); the bind table per protocol applies
Linux's conflict rules (inet_csk_bind_conflict, udp_lib_lport_inuse): two sockets whose
addresses overlap share a port only when both set SO_REUSEADDR and neither listens (TCP;
for UDP, both SO_REUSEADDR), or both set SO_REUSEPORT with the same owner.  `route` is
the one place deciding where a destination goes: a loopback destination gets its source
address, anything else ENETUNREACH (a host-network mode plugs in there).
Streams: tcp.py; datagrams: udp.py.
"""
from __future__ import annotations

import errno
import os
import time
from collections import deque

from kvmbox.abi.socket import (
    AF_INET, AF_INET6, AF_UNSPEC, EPHEMERAL_HIGH, EPHEMERAL_LOW, INET_ECN_MASK,
    IP_DEFAULT_TTL, IP_MTU_DISCOVER, IP_MULTICAST_LOOP, IP_MULTICAST_TTL, IP_PKTINFO,
    IP_PMTUDISC_WANT, IP_RECVERR, IP_RECVTOS, IP_RECVTTL, IP_TOS, IP_TTL, IP_FREEBIND,
    IP_BIND_ADDRESS_NO_PORT, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_IP, IPPROTO_IPV6, IPPROTO_TCP, IPPROTO_UDP,
    IPV6_MULTICAST_HOPS, IPV6_MULTICAST_LOOP, IPV6_RECVERR, IPV6_RECVPKTINFO, IPV6_TCLASS,
    IPV6_UNICAST_HOPS, IPV6_V6ONLY, IPV6_MTU_DISCOVER, IPV6_RECVHOPLIMIT, IPV6_RECVTCLASS,
    SO_REUSEADDR, SO_REUSEPORT,
    SOCK_DGRAM, SOCK_RAW, SOCK_STREAM,
)
from kvmbox.abi.structs import S32
from kvmbox.errors import SyscallError
from kvmbox.sentry.net import inetaddr as A
from kvmbox.sentry.net.socket import Socket

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from kvmbox.sentry.task import Task

CAP_NET_BIND_SERVICE = 10
UNPRIVILEGED_PORT_START = 1024           # net.ipv4.ip_unprivileged_port_start
TCP_TIMEWAIT_LEN = 60.0                  # seconds a closed connection holds its port
# net.ipv4.tcp_max_tw_buckets: past this many TIME_WAIT entries a closing socket leaves
# none ("time wait bucket table overflow").  Linux scales it with memory (up to 262144);
# a sandbox gets a fixed bound so that a guest cycling connections over 127.x.y.z
# addresses cannot grow the Sentry's table without limit.
TCP_MAX_TW_BUCKETS = 16384
TCP_TIME_WAIT = 6                        # include/net/tcp_states.h

# Options of the IP and IPv6 levels that are ints stored and reported back, with defaults.
_IP_INTS = {IP_RECVERR: 0, IP_PKTINFO: 0, IP_RECVTTL: 0, IP_RECVTOS: 0, IP_FREEBIND: 0,
            IP_BIND_ADDRESS_NO_PORT: 0, IP_MTU_DISCOVER: IP_PMTUDISC_WANT,
            IP_MULTICAST_TTL: 1, IP_MULTICAST_LOOP: 1}
_IP_BOOLS = frozenset({IP_RECVERR, IP_PKTINFO, IP_RECVTTL, IP_RECVTOS, IP_FREEBIND,
                       IP_BIND_ADDRESS_NO_PORT, IP_MULTICAST_LOOP})
_IPV6_INTS = {IPV6_RECVERR: 0, IPV6_RECVPKTINFO: 0, IPV6_MULTICAST_LOOP: 1,
              IPV6_MTU_DISCOVER: IP_PMTUDISC_WANT, IPV6_TCLASS: 0, IPV6_RECVHOPLIMIT: 0,
              IPV6_RECVTCLASS: 0}
_IPV6_BOOLS = frozenset({IPV6_RECVERR, IPV6_RECVPKTINFO, IPV6_MULTICAST_LOOP,
                         IPV6_RECVHOPLIMIT, IPV6_RECVTCLASS})


def create(kernel, creds, stype: int, protocol: int, flags: int) -> Socket:
    """socket(AF_INET, ...)."""
    return _create(kernel, creds, AF_INET, stype, protocol, flags)


def create6(kernel, creds, stype: int, protocol: int, flags: int) -> Socket:
    """socket(AF_INET6, ...)."""
    return _create(kernel, creds, AF_INET6, stype, protocol, flags)


def _create(kernel, creds, family: int, stype: int, protocol: int, flags: int) -> Socket:
    """Linux's inet_create: the protocol must suit the type (EPROTONOSUPPORT), a type with
    no protocol is ESOCKTNOSUPPORT; raw sockets need CAP_NET_RAW, which a sandbox never
    has here (EPERM: there is no raw IP to give); ping sockets need a group in
    net.ipv4.ping_group_range, empty by default (EACCES)."""
    if stype == SOCK_STREAM:
        if protocol not in (0, IPPROTO_TCP):
            raise SyscallError(errno.EPROTONOSUPPORT)
        if kernel.net_policy.host:
            return _host(kernel, creds, family, stype, IPPROTO_TCP, flags)
        from kvmbox.sentry.net.tcp import TcpSocket
        return TcpSocket(kernel, creds, family, stype, IPPROTO_TCP, flags)
    if stype == SOCK_DGRAM:
        if protocol == (IPPROTO_ICMP if family == AF_INET else IPPROTO_ICMPV6):
            raise SyscallError(errno.EACCES)      # a ping socket: net.ipv4.ping_group_range
        if protocol not in (0, IPPROTO_UDP):
            raise SyscallError(errno.EPROTONOSUPPORT)
        if kernel.net_policy.host:
            return _host(kernel, creds, family, stype, IPPROTO_UDP, flags)
        from kvmbox.sentry.net.udp import UdpSocket
        return UdpSocket(kernel, creds, family, stype, IPPROTO_UDP, flags)
    if stype == SOCK_RAW:
        raise SyscallError(errno.EPERM)
    raise SyscallError(errno.ESOCKTNOSUPPORT)


def _host(kernel, creds, family: int, stype: int, protocol: int, flags: int) -> Socket:
    """--network host: every TCP and UDP socket is a host socket the Sentry drives
    (hostinet.py), as docker's host network: the program reaches the host's own
    127.0.0.1 services and the network the policy allows, and its listeners are host
    ports (published ones only).  The sandbox's own loopback is not used then."""
    from kvmbox.sentry.net.hostinet import HostInetSocket
    try:
        return HostInetSocket(kernel, creds, family, stype, protocol, flags)
    except OSError as e:
        raise SyscallError(e.errno or errno.ENOBUFS) from None


def stack(kernel) -> "InetStack":
    """The kernel's loopback stack."""
    return kernel.net


class InetStack:
    """One sandbox's IP state: a bind table per protocol and the ephemeral port cursor."""

    def __init__(self) -> None:
        self.ports: dict[int, dict[int, list[InetSocket]]] = {SOCK_STREAM: {}, SOCK_DGRAM: {}}
        self.time_waits: deque[TimeWait] = deque()   # every TIME_WAIT entry, oldest first
        self.next_port = EPHEMERAL_LOW + int.from_bytes(os.urandom(2), "little") % (
            EPHEMERAL_HIGH - EPHEMERAL_LOW + 1)
        self.spread = 0                   # SO_REUSEPORT round-robin counter

    # --- routing ----------------------------------------------------------------------
    def route(self, dst: bytes) -> tuple[bytes, bytes]:
        """(destination, source address) for a packet to `dst`: the unspecified address
        means this host's loopback (as Linux's ip_route_connect); a loopback address gets
        127.0.0.1 or ::1 as source; anything else is ENETUNREACH (no network here)."""
        if dst == A.ANY4:
            dst = A.LOOPBACK4
        elif dst == A.ANY6:
            dst = A.LOOPBACK6
        if A.is_loopback(dst):
            return dst, A.LOOPBACK4 if A.is_v4(dst) else A.LOOPBACK6
        raise SyscallError(errno.ENETUNREACH)

    @staticmethod
    def is_local(ip: bytes) -> bool:
        """Whether a socket may bind `ip` (an address of lo, or a wildcard)."""
        return A.is_any(ip) or A.is_loopback(ip)

    # --- the bind table ---------------------------------------------------------------
    @staticmethod
    def _conflict(s: "InetSocket", other: "InetSocket") -> bool:
        if other is s or not (s.accepts(s.ip) and other.accepts(s.ip)
                              or s.accepts(other.ip) and other.accepts(other.ip)):
            return False                  # no address both would take: no overlap
        if s.reuseaddr() and other.reuseaddr() and not other.listening():
            return False
        if s.reuseport() and other.reuseport() and (
                s.uid == other.uid or isinstance(other, TimeWait)):
            return False
        return True

    def can_bind(self, s: "InetSocket", port: int) -> bool:
        """Whether `s` (its address set) may hold `port` beside the sockets bound there."""
        self._expire(s.stype, port)
        return not any(self._conflict(s, o)
                       for o in self.ports[s.stype].get(port, ()))

    def time_wait(self, s: "InetSocket") -> None:
        """`s` closed first (it sent the first FIN): its address and port stay taken for
        TCP_TIMEWAIT_LEN, as Linux's TIME_WAIT (and orphaned FIN_WAIT2) sockets, which a
        bind(2) meets unless both it and the closed socket set SO_REUSEADDR."""
        while self.time_waits and self.time_waits[0].expires <= time.monotonic():
            old = self.time_waits.popleft()
            self._expire(old.stype, old.port)
        if s.port and len(self.time_waits) < TCP_MAX_TW_BUCKETS:
            tw = TimeWait(s)
            self.time_waits.append(tw)
            self.ports[s.stype].setdefault(s.port, []).append(tw)

    def _expire(self, stype: int, port: int) -> None:
        """Drop the TIME_WAIT entries on `port` whose time is up."""
        socks = self.ports[stype].get(port)
        if not socks:
            return
        now = time.monotonic()
        keep = [o for o in socks if not isinstance(o, TimeWait) or o.expires > now]
        if len(keep) != len(socks):
            if keep:
                socks[:] = keep
            else:
                del self.ports[stype][port]

    def bind(self, s: "InetSocket", ip: bytes, port: int) -> None:
        """Bind `s` to (ip, port); port 0 picks a free ephemeral port (EADDRINUSE)."""
        table = self.ports[s.stype]
        s.ip = ip
        if port == 0:
            port = self._ephemeral(s)
        elif not self.can_bind(s, port):
            s.ip = A.ANY6 if s.family == AF_INET6 else A.ANY4
            raise SyscallError(errno.EADDRINUSE)
        s.port, s.port_put = port, False
        table.setdefault(port, []).append(s)

    def _ephemeral(self, s: "InetSocket") -> int:
        span = EPHEMERAL_HIGH - EPHEMERAL_LOW + 1
        table = self.ports[s.stype]
        for _ in range(span):
            p = self.next_port
            self.next_port = EPHEMERAL_LOW + (p + 1 - EPHEMERAL_LOW) % span
            self._expire(s.stype, p)
            if p not in table:
                return p
        for _ in range(span):                 # all used: share one where the rules allow
            p = self.next_port               # (or held only by TIME_WAIT: Linux reuses those
            self.next_port = EPHEMERAL_LOW + (p + 1 - EPHEMERAL_LOW) % span  # for new 4-tuples)
            if self.can_bind(s, p) or all(isinstance(o, TimeWait) for o in table.get(p, ())):
                return p
        raise SyscallError(errno.EADDRINUSE)

    def put_port(self, s: "InetSocket") -> None:
        """Take `s` out of the table, leaving its port as a name only."""
        port = s.port
        self.unbind(s)
        s.port, s.port_put = port, True

    def unbind(self, s: "InetSocket") -> None:
        table = self.ports[s.stype]
        socks = table.get(s.port)
        if socks is not None:
            try:
                socks.remove(s)
            except ValueError:
                pass
            if not socks:
                del table[s.port]
        s.port = 0

    def add_child(self, s: "InetSocket") -> None:
        """An accepted connection holds its listener's port (Linux's inet_inherit_port)."""
        self.ports[s.stype].setdefault(s.port, []).append(s)

    def lookup(self, stype: int, dst: bytes, port: int, want) -> "InetSocket | None":
        """The socket bound on `port` that takes traffic to `dst` and satisfies want(s): an
        exact address before a wildcard; among equals (SO_REUSEPORT) in turn."""
        best: list[InetSocket] = []
        score = 0
        for s in self.ports[stype].get(port, ()):
            if not s.accepts(dst) or not want(s):
                continue
            sc = 2 if s.ip == dst else 1
            if sc > score:
                best, score = [s], sc
            elif sc == score:
                best.append(s)
        if not best:
            return None
        if len(best) == 1:
            return best[0]
        self.spread += 1
        return best[self.spread % len(best)]


class TimeWait:
    """What a TCP socket that closed first leaves in the bind table: its local address,
    port and SO_REUSEADDR / SO_REUSEPORT, for TCP_TIMEWAIT_LEN seconds.  It takes no
    connection (lookup wants a listener) and never conflicts through SO_REUSEPORT with a
    socket of another owner (Linux lets TIME_WAIT sockets share a reuseport group)."""

    state = TCP_TIME_WAIT

    def __init__(self, s: "InetSocket") -> None:
        self.stype, self.family, self.ip, self.port = s.stype, s.family, s.ip, s.port
        self.v6only, self.uid = s.v6only, s.uid
        self.opts = {k: v for k, v in s.opts.items() if k in (SO_REUSEADDR, SO_REUSEPORT)}
        self.expires = time.monotonic() + TCP_TIMEWAIT_LEN

    def accepts(self, dst: bytes) -> bool:
        return InetSocket.accepts(self, dst)  # type: ignore[arg-type]

    def reuseaddr(self) -> bool:
        return bool(self.opts.get(SO_REUSEADDR))

    def reuseport(self) -> bool:
        return bool(self.opts.get(SO_REUSEPORT))

    def listening(self) -> bool:
        return False


class InetSocket(Socket):
    """What TCP and UDP sockets share: the local endpoint, the family's names, and the
    options of the IP and IPv6 levels."""

    def __init__(self, kernel, creds, family: int, stype: int, protocol: int, flags: int) -> None:
        super().__init__(kernel, creds, stype, protocol, flags)
        self.family = family
        self.net: InetStack = stack(kernel)
        self.ip = A.ANY6 if family == AF_INET6 else A.ANY4   # local address (bound or not)
        self.port = 0                                        # local port; 0: unbound
        self.user_bound = False                              # bind(2) chose it
        self.addr_locked = False    # bind(2) chose the address (Linux's SOCK_BINDADDR_LOCK)
        self.port_locked = False    # ... and the port (SOCK_BINDPORT_LOCK)
        self.port_put = False       # `port` is only the name: the table let it go
        self.remote: A.Endpoint | None = None
        self.v6only = False                                  # net.ipv6.bindv6only = 0
        self.ttl = -1                                        # -1: the default (64)
        self.tos = 0
        self.ipopts: dict[int, int] = {}

    # --- addresses --------------------------------------------------------------------
    def accepts(self, dst: bytes) -> bool:
        """Whether this socket's local address takes traffic addressed to `dst`."""
        if A.is_v4(dst):
            if self.family == AF_INET6 and self.v6only:
                return False
            return self.ip == dst or self.ip == A.ANY4 or (
                self.ip == A.ANY6 and self.family == AF_INET6)
        return self.family == AF_INET6 and (self.ip == dst or self.ip == A.ANY6)

    def reuseaddr(self) -> bool:
        return bool(self.opts.get(SO_REUSEADDR))

    def reuseport(self) -> bool:
        return bool(self.opts.get(SO_REUSEPORT))

    def parse(self, addr: bytes) -> A.Endpoint:
        """A destination sockaddr as (ip16, port) (EINVAL, EAFNOSUPPORT; ENETUNREACH for a
        v4-mapped one on an IPV6_V6ONLY socket)."""
        ip, port = A.parse(self.family, addr)
        if self.family == AF_INET6 and A.is_v4(ip) and self.v6only:
            raise SyscallError(errno.ENETUNREACH)
        return ip, port

    def sockaddr(self, ep: A.Endpoint) -> bytes:
        return A.sockaddr(self.family, ep)

    def bind(self, t: "Task", addr: bytes) -> None:
        """Linux's inet_bind / inet6_bind."""
        if self.family == AF_INET and A.family_of(addr) == AF_UNSPEC and len(addr) >= 16 \
                and addr[4:8] == b"\0\0\0\0":
            addr = AF_INET.to_bytes(2, "little") + addr[2:]  # the old INADDR_ANY compat
        ip, port = A.parse(self.family, addr)
        if self.family == AF_INET6 and A.is_v4(ip) and self.v6only:
            raise SyscallError(errno.EINVAL)
        if not self.net.is_local(ip) and not self.ipopts.get(IP_FREEBIND):
            raise SyscallError(errno.EADDRNOTAVAIL)
        if port and port < UNPRIVILEGED_PORT_START and not _capable(t, CAP_NET_BIND_SERVICE):
            raise SyscallError(errno.EACCES)
        if self.port and not self.port_put or not self.bindable():
            raise SyscallError(errno.EINVAL)
        self.net.bind(self, ip, port)
        self.user_bound = True
        self.addr_locked, self.port_locked = not A.is_any(ip), bool(port)

    def bindable(self) -> bool:
        """Whether the socket is in a state a bind may happen in (unbound is checked apart)."""
        return True

    def autobind(self, src: bytes | None = None) -> None:
        """Take an ephemeral port (and the source address `src` when the socket's address
        is a wildcard) unless bound already."""
        if src is not None and A.is_any(self.ip):
            if self.family == AF_INET6 and self.ip == A.ANY6 or self.family == AF_INET:
                self.ip = src
        if not self.port or self.port_put:
            self.net.bind(self, self.ip, 0)

    def put_port(self) -> None:
        """The socket is closed but open (refused, reset, disconnected, no longer listening):
        a port bind(2) did not choose goes back to the table, while getsockname still
        names it, and the next connect or listen takes a new one (Linux's inet_put_port
        from tcp_set_state(TCP_CLOSE), which leaves inet_sport)."""
        if self.port and not self.port_put and not self.port_locked:
            self.net.put_port(self)

    def getsockname(self) -> bytes:
        return self.sockaddr((self.ip, self.port))

    def getpeername(self) -> bytes:
        if self.remote is None:
            raise SyscallError(errno.ENOTCONN)
        return self.sockaddr(self.remote)

    # --- IP-level options -------------------------------------------------------------
    def proto_getsockopt(self, t: "Task", level: int, name: int) -> bytes:
        if level == IPPROTO_IP:
            if name == IP_TOS:
                return S32.pack(self.tos)
            if name == IP_TTL:
                return S32.pack(self.ttl if self.ttl >= 0 else IP_DEFAULT_TTL)
            if name in _IP_INTS:
                return S32.pack(self.ipopts.get(name, _IP_INTS[name]))
            raise SyscallError(errno.ENOPROTOOPT)
        if level == IPPROTO_IPV6 and self.family == AF_INET6:
            if name == IPV6_V6ONLY:
                return S32.pack(int(self.v6only))
            if name in (IPV6_UNICAST_HOPS, IPV6_MULTICAST_HOPS):
                v = self.ipopts.get(1000 + name, -1)
                return S32.pack(v if v >= 0 else (IP_DEFAULT_TTL if name == IPV6_UNICAST_HOPS
                                                  else 1))
            if name in _IPV6_INTS:
                return S32.pack(self.ipopts.get(1000 + name, _IPV6_INTS[name]))
            raise SyscallError(errno.ENOPROTOOPT)
        if level == IPPROTO_IPV6:
            raise SyscallError(errno.EOPNOTSUPP)
        return self.l4_getsockopt(t, level, name)

    def proto_setsockopt(self, t: "Task", level: int, name: int, value: bytes) -> None:
        if level not in (IPPROTO_IP, IPPROTO_IPV6):
            self.l4_setsockopt(t, level, name, value)
            return
        if level == IPPROTO_IPV6 and self.family != AF_INET6:
            raise SyscallError(errno.ENOPROTOOPT)
        known = (name in (IP_TOS, IP_TTL) or name in _IP_INTS) if level == IPPROTO_IP else (
            name in (IPV6_V6ONLY, IPV6_UNICAST_HOPS, IPV6_MULTICAST_HOPS) or name in _IPV6_INTS)
        if not known:
            raise SyscallError(errno.ENOPROTOOPT)
        v = _int(value)
        if level == IPPROTO_IP:
            if name == IP_TOS:
                if self.stype == SOCK_STREAM:
                    v = (v & ~INET_ECN_MASK) | (self.tos & INET_ECN_MASK)
                self.tos = v & 0xFF
            elif name == IP_TTL:
                if v != -1 and not 1 <= v <= 255:
                    raise SyscallError(errno.EINVAL)
                self.ttl = v
            else:
                self.ipopts[name] = int(bool(v)) if name in _IP_BOOLS else v
            return
        if name == IPV6_V6ONLY:
            if self.port:
                raise SyscallError(errno.EINVAL)
            self.v6only = bool(v)
        elif name in (IPV6_UNICAST_HOPS, IPV6_MULTICAST_HOPS):
            if v < -1 or v > 255:
                raise SyscallError(errno.EINVAL)
            self.ipopts[1000 + name] = v
        else:
            self.ipopts[1000 + name] = int(bool(v)) if name in _IPV6_BOOLS else v

    def l4_getsockopt(self, t: "Task", level: int, name: int) -> bytes:
        """An option of the transport's level (IPPROTO_TCP, IPPROTO_UDP)."""
        raise SyscallError(errno.ENOPROTOOPT)

    def l4_setsockopt(self, t: "Task", level: int, name: int, value: bytes) -> None:
        raise SyscallError(errno.ENOPROTOOPT)


def _int(value: bytes) -> int:
    """An option's int value (Linux takes a single byte too for the IP level)."""
    if len(value) >= 4:
        return S32.unpack_from(value)[0]
    if len(value) >= 1:
        return value[0]
    raise SyscallError(errno.EINVAL)


def _capable(t: "Task", cap: int) -> bool:
    return bool(getattr(t.creds, "cap_effective", 0) & (1 << cap))
