"""net/hostinet.py without a guest: a host socket behind a Sentry socket (here one end of
a host socketpair), its receive bound and its policy checks."""
from __future__ import annotations

import errno
import socket
from types import SimpleNamespace

import pytest

from kvmbox.abi.socket import AF_INET, SOCK_STREAM
from kvmbox.errors import SyscallError
from kvmbox.sentry.net import inetaddr as A
from kvmbox.sentry.net.hostinet import RECV_MAX, HostInetSocket
from kvmbox.sentry.net.policy import make_policy


def _kernel(**policy):
    notes: list[str] = []
    return SimpleNamespace(net_policy=make_policy("host", **policy), notes=notes,
                           notice_once=lambda key, msg: notes.append(msg))


def test_a_huge_receive_asks_the_host_for_a_bounded_buffer():
    a, b = socket.socketpair()
    s = HostInetSocket(_kernel(), None, AF_INET, SOCK_STREAM, 6, 0, host=a)
    b.sendall(b"x" * 100)
    r = s.recvmsg(None, 1 << 40, 0)             # no terabyte buffer in the Sentry
    assert r.data == b"x" * 100
    a.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    b.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    b.setblocking(False)
    sent = b.send(b"y" * (RECV_MAX + 10))
    got = b""
    while len(got) < sent:
        chunk = s.recvmsg(None, 1 << 40, 0).data
        assert len(chunk) <= RECV_MAX
        got += chunk
    with pytest.raises(SyscallError) as e:
        s.recvmsg(None, 10, 0)                  # nothing left: EAGAIN, never a blocked Sentry
    assert e.value.errno == errno.EAGAIN
    s.release()
    b.close()


def test_unlisted_destination_and_unpublished_port_are_refused_before_the_host():
    k = _kernel(allow_net=["127.0.0.1:9"], publish=[])
    s = HostInetSocket(k, None, AF_INET, SOCK_STREAM, 6, 0)
    with pytest.raises(SyscallError) as e:
        s.connect(None, A.sockaddr(AF_INET, (A.LOOPBACK4, 10)))
    assert e.value.errno == errno.ECONNREFUSED
    with pytest.raises(SyscallError) as e:
        s.bind(None, A.sockaddr(AF_INET, (A.LOOPBACK4, 8080)))
    assert e.value.errno == errno.EACCES
    assert s.host.getsockname()[1] == 0         # the host socket was never bound
    assert len(k.notes) == 2
    s.release()
