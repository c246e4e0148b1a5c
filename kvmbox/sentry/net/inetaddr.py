"""sockaddr_in and sockaddr_in6: parsing a guest's address bytes and formatting ours.

Every IP address inside the Sentry is 16 bytes: an IPv4 address is held in its
v4-mapped form (::ffff:a.b.c.d), so one table and one comparison serve both families,
and a dual-stack AF_INET6 socket sees IPv4 peers as ::ffff:a.b.c.d exactly as Linux
shows them.  An endpoint is (ip16, port).  The errors are those of Linux's
inet_bind/inet6_bind/tcp_v4_connect/tcp_v6_connect/udp_sendmsg address checks.
Shared by the loopback stack (inet.py) and any family that wraps host sockets.
"""
from __future__ import annotations

import errno
import struct

from kvmbox.abi.socket import AF_INET, AF_INET6, AF_UNSPEC
from kvmbox.errors import SyscallError

V4MAPPED = b"\0" * 10 + b"\xff\xff"
ANY6 = b"\0" * 16                          # in6addr_any
ANY4 = V4MAPPED + b"\0\0\0\0"              # INADDR_ANY, mapped
LOOPBACK6 = b"\0" * 15 + b"\x01"           # ::1
LOOPBACK4 = V4MAPPED + b"\x7f\0\0\x01"     # 127.0.0.1, mapped

SOCKADDR_IN_SIZE = 16                      # struct sockaddr_in
SOCKADDR_IN6_SIZE = 28                     # struct sockaddr_in6
SIN6_LEN_RFC2133 = 24                      # a sockaddr_in6 without sin6_scope_id
# struct sockaddr_in { sa_family_t; in_port_t (big endian); struct in_addr; char zero[8] }
SOCKADDR_IN = struct.Struct("<H2s4s8x")
# struct sockaddr_in6 { sa_family_t; in_port_t; uint32_t flowinfo; struct in6_addr; uint32_t scope_id }
SOCKADDR_IN6 = struct.Struct("<H2sI16sI")

Endpoint = tuple[bytes, int]


def family_of(addr: bytes) -> int:
    """The sa_family of a guest sockaddr (AF_UNSPEC when too short to hold one)."""
    return int.from_bytes(addr[:2], "little") if len(addr) >= 2 else AF_UNSPEC


def is_v4(ip: bytes) -> bool:
    """Whether a 16-byte address is v4-mapped (an IPv4 address)."""
    return ip[:12] == V4MAPPED


def is_any(ip: bytes) -> bool:
    return ip == ANY6 or ip == ANY4


def is_loopback(ip: bytes) -> bool:
    """127.0.0.0/8 and ::1."""
    return ip == LOOPBACK6 or (is_v4(ip) and ip[12] == 127)


def v4(ip4: bytes) -> bytes:
    """A 4-byte IPv4 address in its 16-byte form."""
    return V4MAPPED + ip4


def parse(family: int, addr: bytes) -> Endpoint:
    """The (ip16, port) of a guest sockaddr for a socket of `family` (AF_INET: EINVAL under
    16 bytes, EAFNOSUPPORT for another family; AF_INET6: EINVAL under 24 bytes,
    EAFNOSUPPORT).  The caller deals with AF_UNSPEC first where it means something."""
    if family == AF_INET:
        if len(addr) < SOCKADDR_IN_SIZE:
            raise SyscallError(errno.EINVAL)
        fam, port, ip4 = SOCKADDR_IN.unpack_from(addr)
        if fam != AF_INET:
            raise SyscallError(errno.EAFNOSUPPORT)
        return v4(ip4), int.from_bytes(port, "big")
    if len(addr) < SIN6_LEN_RFC2133:
        raise SyscallError(errno.EINVAL)
    fam, port, _flow, ip6, _scope = SOCKADDR_IN6.unpack_from(addr.ljust(SOCKADDR_IN6_SIZE, b"\0"))
    if fam != AF_INET6:
        raise SyscallError(errno.EAFNOSUPPORT)
    return ip6, int.from_bytes(port, "big")


def sockaddr(family: int, ep: Endpoint) -> bytes:
    """A sockaddr_in (16 bytes) or sockaddr_in6 (28 bytes; flowinfo and scope_id zero) for
    `ep` as a socket of `family` reports it."""
    ip, port = ep
    p = port.to_bytes(2, "big")
    if family == AF_INET:
        return SOCKADDR_IN.pack(AF_INET, p, ip[12:] if is_v4(ip) else b"\0\0\0\0")
    return SOCKADDR_IN6.pack(AF_INET6, p, 0, ip, 0)


def text(ip: bytes) -> str:
    """The usual text form (for messages and /proc-style tables)."""
    import ipaddress
    if is_v4(ip):
        return str(ipaddress.IPv4Address(ip[12:]))
    return str(ipaddress.IPv6Address(ip))
