"""UDP over the sandbox's loopback (SOCK_DGRAM in AF_INET / AF_INET6), in the Sentry.

A send looks the destination port up in the stack's UDP bind table (a connected
receiver takes only its peer's datagrams) and appends the datagram, with the sender's
address, to the receiver's queue; a full queue (SO_RCVBUF) drops it silently, as
Linux.  Nobody on the port: a connected sender learns ECONNREFUSED on its next call,
as Linux reports the ICMP port unreachable it gets on loopback.  Datagram boundaries,
MSG_TRUNC, connect filtering (AF_UNSPEC disconnects), 65507 / 65527 bytes at most
(EMSGSIZE).  No packet, no host socket.
"""
from __future__ import annotations

import errno
from collections import deque

from kvmbox.abi.fcntl import O_NONBLOCK
from kvmbox.abi.poll import POLLERR, POLLHUP, POLLIN, POLLOUT, POLLRDNORM, POLLWRBAND, POLLWRNORM
from kvmbox.abi.socket import (
    AF_INET, AF_INET6, AF_UNSPEC, IP_DEFAULT_TTL, IP_PKTINFO, IP_RECVTOS, IP_RECVTTL, IP_TOS,
    IP_TTL, IPPROTO_IP, IPPROTO_IPV6, IPV6_HOPLIMIT, IPV6_PKTINFO, IPV6_RECVHOPLIMIT,
    IPV6_RECVPKTINFO, IPV6_RECVTCLASS, IPV6_TCLASS, IPV6_UNICAST_HOPS, IP_RECVERR, IPPROTO_UDP,
    IPV6_RECVERR, LOOPBACK_IFINDEX, MSG_DONTWAIT, MSG_OOB, MSG_PEEK,
    MSG_TRUNC, RCV_SHUTDOWN, SEND_SHUTDOWN, SHUTDOWN_MASK, UDP_CORK, UDP_GRO, UDP_MAX_PAYLOAD4,
    UDP_MAX_PAYLOAD6, UDP_SEGMENT,
)
from kvmbox.abi.structs import S32
from kvmbox.errors import SyscallError
from kvmbox.sentry.net import inetaddr as A
from kvmbox.sentry.net.inet import InetSocket, _int
from kvmbox.sentry.net.socket import POLLRDHUP, Received

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from kvmbox.sentry.task import Task

OVERHEAD = 768                    # what one queued datagram costs beyond its bytes (truesize)
_UDP_OPTS = {UDP_CORK: 0, UDP_SEGMENT: 0, UDP_GRO: 0}


class UdpSocket(InetSocket):
    """A UDP socket on the loopback."""

    def __init__(self, kernel, creds, family: int, stype: int, protocol: int, flags: int) -> None:
        super().__init__(kernel, creds, family, stype, protocol, flags)
        self.rx: deque[tuple[bytes, A.Endpoint, tuple[bytes, int, int]]] = deque()
        self.rmem = 0
        self.shut = 0
        self.udpopts: dict[int, int] = {}

    # --- addresses --------------------------------------------------------------------
    def _dest(self, addr: bytes) -> A.Endpoint:
        """A sendto address (Linux's udp_sendmsg: AF_UNSPEC passes as AF_INET; port 0 EINVAL)."""
        if self.family == AF_INET and A.family_of(addr) == AF_UNSPEC and len(addr) >= 16:
            addr = AF_INET.to_bytes(2, "little") + addr[2:]
        ip, port = self.parse(addr)
        if not port:
            raise SyscallError(errno.EINVAL)
        return ip, port

    def connect(self, t: "Task", addr: bytes) -> None:
        if len(addr) < 2:
            raise SyscallError(errno.EINVAL)
        if A.family_of(addr) == AF_UNSPEC:
            self._disconnect()
            return
        dst, port = self.parse(addr)
        dst, src = self.net.route(dst)
        self.autobind(src)
        self.remote = (dst, port)
        self.changed()

    def _disconnect(self) -> None:
        """Linux's __udp_disconnect: the peer goes, and an address or port bind(2) did not
        choose."""
        self.remote = None
        if not self.addr_locked:
            self.ip = A.ANY6 if self.family == AF_INET6 else A.ANY4
        if not self.port_locked and self.port:
            self.net.unbind(self)
        self.changed()

    def shutdown(self, how: int) -> None:
        if self.remote is None:
            raise SyscallError(errno.ENOTCONN)
        self.shut |= how + 1
        self.changed()

    # --- data -------------------------------------------------------------------------
    def sendmsg(self, t, data: bytes, addr, anc, flags: int) -> int:
        if flags & MSG_OOB:
            raise SyscallError(errno.EOPNOTSUPP)
        if addr:
            dst, dport = self._dest(addr)
        elif self.remote is not None:
            dst, dport = self.remote
        else:
            raise SyscallError(errno.EDESTADDRREQ)
        limit = UDP_MAX_PAYLOAD4 if A.is_v4(dst) or self.family == AF_INET else UDP_MAX_PAYLOAD6
        if len(data) > limit:
            raise SyscallError(errno.EMSGSIZE)
        dst, src = self.net.route(dst)
        if self.shut & SEND_SHUTDOWN:
            raise SyscallError(errno.EPIPE)
        if self.error:
            err, self.error = self.error, 0
            raise SyscallError(err)
        self.autobind(src)
        me = (self.ip if not A.is_any(self.ip) else src, self.port)
        to = self.net.lookup(self.stype, dst, dport,
                             lambda s: s.remote is None or s.remote == me)
        if to is None:
            if self.remote is not None or self.ipopts.get(IP_RECVERR) \
                    or self.ipopts.get(1000 + IPV6_RECVERR):
                self.error = errno.ECONNREFUSED
                self.changed()
        elif to.rmem + len(data) <= to.rcvbuf and not to.shut & RCV_SHUTDOWN:
            to.rx.append((data, me, self._header(dst)))
            to.rmem += len(data) + OVERHEAD
            to.changed()
        return len(data)

    def recvmsg(self, t, n: int, flags: int) -> Received:
        if flags & MSG_OOB:
            raise SyscallError(errno.EINVAL)
        if self.error:
            err, self.error = self.error, 0
            raise SyscallError(err)
        if not self.rx:
            # shut for reading: a blocking receive ends with 0, a non-blocking one still
            # says EAGAIN (Linux's __skb_recv_udp / __skb_wait_for_more_packets)
            if self.shut & RCV_SHUTDOWN and not (flags & MSG_DONTWAIT or self.flags & O_NONBLOCK):
                return Received(b"", None, 0, 0)
            raise SyscallError(errno.EAGAIN)
        data, src, header = self.rx[0]
        if not flags & MSG_PEEK:
            self.rx.popleft()
            self.rmem -= len(data) + OVERHEAD
        return Received(data[:n], self.sockaddr(src), MSG_TRUNC if len(data) > n else 0,
                        len(data), other=self._rx_control(header))

    def _header(self, dst: bytes) -> tuple[bytes, int, int]:
        """What the IP header of our datagram to `dst` carries that a receiver may ask
        for: (destination, TTL or hop limit, TOS or traffic class)."""
        if A.is_v4(dst):
            return dst, self.ttl if self.ttl >= 0 else IP_DEFAULT_TTL, self.tos
        hops = self.ipopts.get(1000 + IPV6_UNICAST_HOPS, -1)
        return dst, hops if hops >= 0 else IP_DEFAULT_TTL, self.ipopts.get(1000 + IPV6_TCLASS, 0)

    def _rx_control(self, header: tuple[bytes, int, int]) -> list:
        """The cmsgs a receive gives for IP_PKTINFO / IP_RECVTTL / IP_RECVTOS and
        IPV6_RECVPKTINFO / IPV6_RECVHOPLIMIT / IPV6_RECVTCLASS, in udp(v6)_recvmsg's order
        (ip6_datagram_recv_common_ctl, then the IPv4 ones for a v4 datagram, else
        ip6_datagram_recv_specific_ctl).  Everything arrives on lo (ifindex 1)."""
        dst, ttl, tos = header
        out = []
        v6 = self.family == AF_INET6
        if v6 and self.ipopts.get(1000 + IPV6_RECVPKTINFO):
            out.append((IPPROTO_IPV6, IPV6_PKTINFO, dst + S32.pack(LOOPBACK_IFINDEX)))
        if A.is_v4(dst):
            if self.ipopts.get(IP_PKTINFO):
                out.append((IPPROTO_IP, IP_PKTINFO, S32.pack(LOOPBACK_IFINDEX) + dst[12:] + dst[12:]))
            if self.ipopts.get(IP_RECVTTL):
                out.append((IPPROTO_IP, IP_TTL, S32.pack(ttl)))
            if self.ipopts.get(IP_RECVTOS):
                out.append((IPPROTO_IP, IP_TOS, bytes([tos & 0xFF])))
        elif v6:
            if self.ipopts.get(1000 + IPV6_RECVHOPLIMIT):
                out.append((IPPROTO_IPV6, IPV6_HOPLIMIT, S32.pack(ttl)))
            if self.ipopts.get(1000 + IPV6_RECVTCLASS):
                out.append((IPPROTO_IPV6, IPV6_TCLASS, S32.pack(tos)))
        return out

    def readable_bytes(self) -> int:
        return len(self.rx[0][0]) if self.rx else 0

    # --- readiness and close ----------------------------------------------------------
    def poll(self, events: int) -> int:
        """Linux's udp_poll (datagram_poll)."""
        mask = POLLOUT | POLLWRNORM | POLLWRBAND
        if self.error:
            mask |= POLLERR
        if self.shut & RCV_SHUTDOWN:
            mask |= POLLRDHUP | POLLIN | POLLRDNORM
        if self.shut == SHUTDOWN_MASK:
            mask |= POLLHUP
        if self.rx:
            mask |= POLLIN | POLLRDNORM
        return mask & (events | POLLERR | POLLHUP)

    def release(self) -> None:
        if self.port:
            self.net.unbind(self)
        self.rx.clear()
        self.rmem = 0
        self.changed()

    # --- IPPROTO_UDP options ----------------------------------------------------------
    def l4_getsockopt(self, t: "Task", level: int, name: int) -> bytes:
        if level != IPPROTO_UDP or name not in _UDP_OPTS:
            raise SyscallError(errno.ENOPROTOOPT)
        return S32.pack(self.udpopts.get(name, _UDP_OPTS[name]))

    def l4_setsockopt(self, t: "Task", level: int, name: int, value: bytes) -> None:
        if level != IPPROTO_UDP or name not in _UDP_OPTS:
            raise SyscallError(errno.ENOPROTOOPT)
        if len(value) < 4:
            raise SyscallError(errno.EINVAL)
        self.udpopts[name] = _int(value)
