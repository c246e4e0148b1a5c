"""Loopback UDP (kvmbox/sentry/net/udp.py) without a guest: the control messages of
IP_PKTINFO / IP_RECVTTL / IP_RECVTOS / IPV6_RECVPKTINFO, and a receive after SHUT_RD."""
from __future__ import annotations

import errno
import struct
from types import SimpleNamespace

import pytest

from kvmbox.abi.socket import (
    AF_INET, AF_INET6, IP_PKTINFO, IP_RECVTOS, IP_RECVTTL, IP_TOS, IP_TTL, IPPROTO_IP,
    IPPROTO_IPV6, IPV6_PKTINFO, IPV6_RECVPKTINFO, MSG_DONTWAIT, SOCK_DGRAM,
)
from kvmbox.errors import SyscallError
from kvmbox.sentry.net import inet
from kvmbox.sentry.net import inetaddr as A
from kvmbox.sentry.net.udp import UdpSocket

TASK = SimpleNamespace(creds=SimpleNamespace(euid=1000, egid=1000, cap_effective=0))
I32 = struct.Struct("<i")


@pytest.fixture
def kernel():
    return SimpleNamespace(net=inet.InetStack())


def udp(kernel, family: int = AF_INET) -> UdpSocket:
    s = UdpSocket(kernel, TASK.creds, family, SOCK_DGRAM, 17, 0)
    lo = A.LOOPBACK4 if family == AF_INET else A.LOOPBACK6
    s.bind(TASK, A.sockaddr(family, (lo, 0)))
    return s


def test_ipv4_control_messages_in_linux_order(kernel):
    rx, tx = udp(kernel), udp(kernel)
    for opt in (IP_PKTINFO, IP_RECVTTL, IP_RECVTOS):
        rx.setsockopt(TASK, IPPROTO_IP, opt, I32.pack(1))
    tx.setsockopt(TASK, IPPROTO_IP, IP_TTL, I32.pack(9))
    tx.setsockopt(TASK, IPPROTO_IP, IP_TOS, I32.pack(0x20))
    tx.sendmsg(TASK, b"pk", A.sockaddr(AF_INET, (A.LOOPBACK4, rx.port)), None, 0)
    r = rx.recvmsg(TASK, 16, 0)
    lo = A.LOOPBACK4[12:]
    assert r.other == [(IPPROTO_IP, IP_PKTINFO, I32.pack(1) + lo + lo),
                       (IPPROTO_IP, IP_TTL, I32.pack(9)), (IPPROTO_IP, IP_TOS, b"\x20")]


def test_ipv6_pktinfo_and_none_unasked(kernel):
    rx, tx = udp(kernel, AF_INET6), udp(kernel, AF_INET6)
    to = A.sockaddr(AF_INET6, (A.LOOPBACK6, rx.port))
    tx.sendmsg(TASK, b"a", to, None, 0)
    assert rx.recvmsg(TASK, 16, 0).other == []
    rx.setsockopt(TASK, IPPROTO_IPV6, IPV6_RECVPKTINFO, I32.pack(1))
    tx.sendmsg(TASK, b"b", to, None, 0)
    assert rx.recvmsg(TASK, 16, 0).other == [(IPPROTO_IPV6, IPV6_PKTINFO,
                                              A.LOOPBACK6 + I32.pack(1))]


def test_receive_after_shut_rd(kernel):
    s, peer = udp(kernel), udp(kernel)
    s.connect(TASK, A.sockaddr(AF_INET, (A.LOOPBACK4, peer.port)))
    s.shutdown(0)
    with pytest.raises(SyscallError) as e:
        s.recvmsg(TASK, 8, MSG_DONTWAIT)
    assert e.value.errno == errno.EAGAIN
    assert s.recvmsg(TASK, 8, 0).data == b""
