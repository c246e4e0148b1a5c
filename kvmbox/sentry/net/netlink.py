"""AF_NETLINK, NETLINK_ROUTE only, read-only: what getifaddrs(3), if_nameindex(3) and
friends ask (glibc's ifaddrs.c, libuv's uv_interface_addresses, Java's NetworkInterface).

The sandbox has one interface, lo (index 1) with 127.0.0.1/8 and ::1/128.  A request
is answered at once into the socket's queue, one datagram per request: RTM_GETLINK and
RTM_GETADDR (dump, or one link by index), NLMSG_DONE after a dump, an ack when
NLM_F_ACK asks.  Requests that would change something are EPERM (no CAP_NET_ADMIN),
other types EOPNOTSUPP, as rtnetlink answers them.  No multicast event ever comes.
No host socket.
"""
from __future__ import annotations

import errno
import struct
from collections import deque

from kvmbox.abi.poll import POLLIN, POLLOUT, POLLRDNORM, POLLWRNORM
from kvmbox.abi.socket import AF_INET, AF_INET6, MSG_PEEK, MSG_TRUNC, SOCK_DGRAM, SOCK_RAW
from kvmbox.errors import SyscallError
from kvmbox.sentry.net.socket import Received, Socket

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from kvmbox.sentry.task import Task

AF_NETLINK, AF_PACKET = 16, 17
NETLINK_ROUTE = 0
SOCKADDR_NL = struct.Struct("<HHII")            # nl_family, nl_pad, nl_pid, nl_groups
NLMSGHDR = struct.Struct("<IHHII")              # len, type, flags, seq, pid
NLM_F_REQUEST, NLM_F_MULTI, NLM_F_ACK, NLM_F_DUMP = 0x1, 0x2, 0x4, 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3
RTM_NEWLINK, RTM_GETLINK, RTM_NEWADDR, RTM_GETADDR = 16, 18, 20, 22
LO_INDEX = 1
ARPHRD_LOOPBACK = 772
LO_FLAGS = 0x1 | 0x8 | 0x40 | 0x10000   # IFF_UP | IFF_LOOPBACK | IFF_RUNNING | IFF_LOWER_UP
IFLA_ADDRESS, IFLA_BROADCAST, IFLA_IFNAME, IFLA_MTU = 1, 2, 3, 4
IFLA_STATS, IFLA_TXQLEN, IFLA_OPERSTATE, IFLA_STATS64 = 7, 13, 16, 23
IFA_ADDRESS, IFA_LOCAL, IFA_LABEL, IFA_CACHEINFO, IFA_FLAGS = 1, 2, 3, 6, 8
IFA_F_PERMANENT = 0x80
RT_SCOPE_HOST = 254
RCVBUF = 212992


def create(kernel, creds, stype: int, protocol: int, flags: int) -> "NetlinkSocket":
    """socket(AF_NETLINK, SOCK_RAW | SOCK_DGRAM, NETLINK_ROUTE)."""
    if stype not in (SOCK_RAW, SOCK_DGRAM):
        raise SyscallError(errno.ESOCKTNOSUPPORT)
    if protocol != NETLINK_ROUTE:
        raise SyscallError(errno.EPROTONOSUPPORT)
    return NetlinkSocket(kernel, creds, stype, protocol, flags)


def _align(n: int) -> int:
    return (n + 3) & ~3


def _attr(kind: int, data: bytes) -> bytes:
    return (struct.pack("<HH", 4 + len(data), kind) + data).ljust(_align(4 + len(data)), b"\0")


def _msg(kind: int, flags: int, seq: int, pid: int, body: bytes) -> bytes:
    return NLMSGHDR.pack(NLMSGHDR.size + len(body), kind, flags, seq, pid) + body


def _link() -> bytes:
    return (struct.pack("<BBHiII", 0, 0, ARPHRD_LOOPBACK, LO_INDEX, LO_FLAGS, 0)
            + _attr(IFLA_IFNAME, b"lo\0") + _attr(IFLA_TXQLEN, struct.pack("<I", 1000))
            + _attr(IFLA_OPERSTATE, b"\0") + _attr(IFLA_MTU, struct.pack("<I", 65536))
            + _attr(IFLA_ADDRESS, bytes(6)) + _attr(IFLA_BROADCAST, bytes(6))
            + _attr(IFLA_STATS, bytes(96)) + _attr(IFLA_STATS64, bytes(192)))


def _addrs(family: int) -> list[bytes]:
    out = []
    cache = _attr(IFA_CACHEINFO, struct.pack("<IIII", 0xFFFFFFFF, 0xFFFFFFFF, 0, 0))
    if family in (0, AF_INET):
        ip = bytes([127, 0, 0, 1])
        out.append(struct.pack("<BBBBi", AF_INET, 8, IFA_F_PERMANENT, RT_SCOPE_HOST, LO_INDEX)
                   + _attr(IFA_ADDRESS, ip) + _attr(IFA_LOCAL, ip) + _attr(IFA_LABEL, b"lo\0")
                   + _attr(IFA_FLAGS, struct.pack("<I", IFA_F_PERMANENT)) + cache)
    if family in (0, AF_INET6):
        out.append(struct.pack("<BBBBi", AF_INET6, 128, IFA_F_PERMANENT, RT_SCOPE_HOST,
                               LO_INDEX)
                   + _attr(IFA_ADDRESS, bytes(15) + b"\1") + cache
                   + _attr(IFA_FLAGS, struct.pack("<I", IFA_F_PERMANENT)))
    return out


class NetlinkSocket(Socket):
    family = AF_NETLINK

    def __init__(self, kernel, creds, stype: int, protocol: int, flags: int) -> None:
        super().__init__(kernel, creds, stype, protocol, flags)
        self.portid = 0
        self.groups = 0
        self.rx: deque[bytes] = deque()
        self.rcvbuf = RCVBUF

    def _ports(self) -> set[int]:
        ports = getattr(self.kernel, "netlink_ports", None)
        if ports is None:
            ports = self.kernel.netlink_ports = set()
        return ports

    def _autobind(self, t: "Task | None", want: int = 0) -> None:
        if self.portid:
            return
        ports = self._ports()
        pid = want or (t.tg.tgid if t is not None else 0)
        if not pid or pid in ports:
            if want:
                raise SyscallError(errno.EADDRINUSE)
            pid = -4096
            while pid in ports:
                pid -= 1
            pid &= 0xFFFFFFFF
        ports.add(pid)
        self.portid = pid

    def bind(self, t: "Task", addr: bytes) -> None:
        if len(addr) < SOCKADDR_NL.size:
            raise SyscallError(errno.EINVAL)
        fam, _, pid, groups = SOCKADDR_NL.unpack_from(addr)
        if fam != AF_NETLINK:
            raise SyscallError(errno.EINVAL)
        if self.portid and pid and pid != self.portid:
            raise SyscallError(errno.EINVAL)
        self._autobind(t, pid)
        self.groups = groups

    def connect(self, t: "Task", addr: bytes) -> None:
        if len(addr) < SOCKADDR_NL.size or SOCKADDR_NL.unpack_from(addr)[0] != AF_NETLINK:
            raise SyscallError(errno.EINVAL)
        self._autobind(t)

    def getsockname(self) -> bytes:
        return SOCKADDR_NL.pack(AF_NETLINK, 0, self.portid, self.groups)

    def getpeername(self) -> bytes:
        return SOCKADDR_NL.pack(AF_NETLINK, 0, 0, 0)

    def sendmsg(self, t, data: bytes, addr, anc, flags: int) -> int:
        if addr:
            if len(addr) < SOCKADDR_NL.size or SOCKADDR_NL.unpack_from(addr)[0] != AF_NETLINK:
                raise SyscallError(errno.EINVAL)
            if SOCKADDR_NL.unpack_from(addr)[2]:
                raise SyscallError(errno.ECONNREFUSED)   # no other netlink user here
        self._autobind(t)
        out = bytearray()
        off = 0
        while off + NLMSGHDR.size <= len(data):
            ln, kind, fl, seq, _ = NLMSGHDR.unpack_from(data, off)
            if ln < NLMSGHDR.size or off + ln > len(data):
                break
            body = data[off + NLMSGHDR.size:off + ln]
            if fl & NLM_F_REQUEST:
                out += self._answer(kind, fl, seq, body, data[off:off + ln])
            off += _align(ln)
        if out:
            if sum(map(len, self.rx)) + len(out) <= self.rcvbuf:
                self.rx.append(bytes(out))
                self.changed()
            else:
                self.error = errno.ENOBUFS
        return len(data)

    def _answer(self, kind: int, fl: int, seq: int, body: bytes, whole: bytes) -> bytes:
        pid = self.portid
        family = body[0] if body else 0
        if kind in (RTM_GETLINK, RTM_GETADDR) and fl & NLM_F_DUMP == NLM_F_DUMP:
            parts = [_link()] if kind == RTM_GETLINK else _addrs(family)
            reply = kind - 2
            return b"".join(_msg(reply, NLM_F_MULTI, seq, pid, p) for p in parts) + \
                _msg(NLMSG_DONE, NLM_F_MULTI, seq, pid, struct.pack("<i", 0))
        if kind == RTM_GETLINK:
            index = struct.unpack_from("<i", body, 4)[0] if len(body) >= 8 else 0
            if index == LO_INDEX:
                return _msg(RTM_NEWLINK, 0, seq, pid, _link())
            return self._error(errno.ENODEV, seq, whole)
        if kind < 16 or kind & 3 != 2:                     # a change, not a GET
            return self._error(errno.EPERM if kind >= 16 else errno.EOPNOTSUPP, seq, whole)
        return self._error(errno.EOPNOTSUPP, seq, whole)

    def _error(self, err: int, seq: int, whole: bytes) -> bytes:
        return _msg(NLMSG_ERROR, 0, seq, self.portid, struct.pack("<i", -err) + whole[:16])

    def recvmsg(self, t, n: int, flags: int) -> Received:
        if not self.rx:
            if self.error:
                err, self.error = self.error, 0
                raise SyscallError(err)
            raise SyscallError(errno.EAGAIN)
        data = self.rx[0] if flags & MSG_PEEK else self.rx.popleft()
        if not flags & MSG_PEEK:
            self.changed()
        return Received(data[:n], SOCKADDR_NL.pack(AF_NETLINK, 0, 0, 0),
                        MSG_TRUNC if len(data) > n else 0, len(data))

    def readable_bytes(self) -> int:
        return len(self.rx[0]) if self.rx else 0

    def poll(self, events: int) -> int:
        mask = POLLOUT | POLLWRNORM
        if self.rx:
            mask |= POLLIN | POLLRDNORM
        return mask & events

    def release(self) -> None:
        if self.portid:
            self._ports().discard(self.portid)
            self.portid = 0
        self.rx.clear()
        self.changed()


# The interface ioctls of every socket (Linux's dev_ioctl, devinet_ioctl), for lo only:
# what if_nametoindex(3), if_indextoname(3), a flags or MTU check and Java's
# NetworkInterface (SIOCGIFCONF, SIOCGIFNETMASK) ask.
SIOCGIFNAME, SIOCGIFCONF, SIOCGIFFLAGS, SIOCGIFADDR = 0x8910, 0x8912, 0x8913, 0x8915
SIOCGIFNETMASK, SIOCGIFMTU, SIOCGIFINDEX = 0x891B, 0x8921, 0x8933
DEV_IOCTLS = frozenset({SIOCGIFNAME, SIOCGIFCONF, SIOCGIFFLAGS, SIOCGIFADDR, SIOCGIFNETMASK,
                        SIOCGIFMTU, SIOCGIFINDEX})
IFREQ_SIZE, IFNAMSIZ = 40, 16
IFCONF = struct.Struct("<i4xQ")                    # ifc_len, ifc_buf


def _sin(ip: bytes) -> bytes:
    return struct.pack("<H2s4s8x", AF_INET, b"\0\0", ip)


def dev_ioctl(t: "Task", request: int, arg: int) -> int:
    if request == SIOCGIFCONF:
        length, buf = IFCONF.unpack(t.mm.copy_in(arg, IFCONF.size))
        entry = b"lo".ljust(IFNAMSIZ, b"\0") + _sin(bytes([127, 0, 0, 1])).ljust(24, b"\0")
        n = len(entry) if not buf or length >= len(entry) else 0
        if buf and n:
            t.mm.copy_out(buf, entry)
        t.mm.copy_out(arg, struct.pack("<i", n))
        return 0
    ifr = bytearray(t.mm.copy_in(arg, IFREQ_SIZE))
    if request == SIOCGIFNAME:
        if struct.unpack_from("<i", ifr, IFNAMSIZ)[0] != LO_INDEX:
            raise SyscallError(errno.ENODEV)
        t.mm.copy_out(arg, b"lo".ljust(IFNAMSIZ, b"\0"))
        return 0
    if bytes(ifr[:IFNAMSIZ]).split(b"\0", 1)[0] != b"lo":
        raise SyscallError(errno.ENODEV)
    if request == SIOCGIFINDEX:
        value = struct.pack("<i", LO_INDEX)
    elif request == SIOCGIFFLAGS:
        value = struct.pack("<H", LO_FLAGS & 0xFFFF)
    elif request == SIOCGIFADDR:
        value = _sin(bytes([127, 0, 0, 1]))
    elif request == SIOCGIFNETMASK:
        value = _sin(bytes([255, 0, 0, 0]))
    else:
        value = struct.pack("<i", 65536)
    t.mm.copy_out(arg + IFNAMSIZ, value)
    return 0
