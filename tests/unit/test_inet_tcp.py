"""Loopback TCP (kvmbox/sentry/net/tcp.py) without a guest: TIME_WAIT in the bind table
and shutdown(2) of a closed socket, the Linux behaviours tests/programs/inetsock.c found
missing."""
from __future__ import annotations

import errno
from types import SimpleNamespace

import pytest

from kvmbox.abi.socket import AF_INET, SO_REUSEADDR, SOCK_STREAM
from kvmbox.errors import SyscallError
from kvmbox.sentry.net import inet
from kvmbox.sentry.net import inetaddr as A
from kvmbox.sentry.net.tcp import TcpSocket

SHUT_RD, SHUT_WR = 0, 1


@pytest.fixture
def kernel():
    return SimpleNamespace(net=inet.InetStack())


TASK = SimpleNamespace(creds=SimpleNamespace(euid=1000, egid=1000, cap_effective=0))


def sock(kernel, reuse: bool = False) -> TcpSocket:
    s = TcpSocket(kernel, TASK.creds, AF_INET, SOCK_STREAM, 6, 0)
    if reuse:
        s.opts[SO_REUSEADDR] = 1
    return s


def addr(port: int) -> bytes:
    return A.sockaddr(AF_INET, (A.LOOPBACK4, port))


def connection(kernel, reuse: bool = True):
    """(listener, client, accepted) on 127.0.0.1."""
    lst = sock(kernel, reuse)
    lst.bind(TASK, addr(0))
    lst.listen(TASK, 4)
    c = sock(kernel)
    c.connect(TASK, addr(lst.port))
    return lst, c, lst.accept(TASK, 0)


def errno_of(fn) -> int:
    with pytest.raises(SyscallError) as e:
        fn()
    return e.value.errno


def test_active_closer_leaves_time_wait(kernel):
    lst, c, a = connection(kernel)
    port, cport = lst.port, c.port
    a.release()                           # the server closes first
    c.release()
    lst.release()
    assert errno_of(lambda: sock(kernel).bind(TASK, addr(port))) == errno.EADDRINUSE
    s = sock(kernel, reuse=True)          # SO_REUSEADDR here and on the closed socket
    s.bind(TASK, addr(port))
    s.listen(TASK, 1)
    sock(kernel).bind(TASK, addr(cport))  # the passive closer left nothing


def test_time_wait_needs_reuseaddr_on_both(kernel):
    lst, c, a = connection(kernel, reuse=False)
    port = lst.port
    a.release()
    c.release()
    lst.release()
    assert errno_of(lambda: sock(kernel, reuse=True).bind(TASK, addr(port))) == errno.EADDRINUSE


def test_time_wait_expires(kernel, monkeypatch):
    lst, c, a = connection(kernel)
    port = lst.port
    a.release()
    c.release()
    lst.release()
    now = inet.time.monotonic()
    monkeypatch.setattr(inet.time, "monotonic", lambda: now + inet.TCP_TIMEWAIT_LEN + 1)
    sock(kernel).bind(TASK, addr(port))
    assert port in kernel.net.ports[SOCK_STREAM]


def test_shutdown_first_then_close_is_the_active_close(kernel):
    lst, c, a = connection(kernel)
    cport = c.port
    c.shutdown(SHUT_WR)                   # the client's FIN first
    a.release()
    c.release()
    assert errno_of(lambda: sock(kernel).bind(TASK, addr(cport))) == errno.EADDRINUSE


def test_reset_leaves_no_time_wait(kernel):
    lst, c, a = connection(kernel)
    port = lst.port
    c.sendmsg(TASK, b"unread", None, None, 0)
    a.release()                           # unread data: a reset, not a FIN
    c.release()
    lst.release()
    sock(kernel).bind(TASK, addr(port))
    assert not any(isinstance(o, inet.TimeWait)
                   for socks in kernel.net.ports[SOCK_STREAM].values() for o in socks)


def test_time_wait_refuses_connections(kernel):
    lst, c, a = connection(kernel)
    port = lst.port
    a.release()
    c.release()
    lst.release()
    c2 = sock(kernel)
    assert errno_of(lambda: c2.connect(TASK, addr(port))) == errno.ECONNREFUSED


def test_shutdown_of_a_closed_socket(kernel):
    s = sock(kernel)
    assert errno_of(lambda: s.recvmsg(TASK, 4, 0)) == errno.ENOTCONN
    assert errno_of(lambda: s.shutdown(SHUT_RD)) == errno.ENOTCONN
    assert s.recvmsg(TASK, 4, 0).data == b""      # shut all the same: EOF


def test_refused_connect_puts_the_port_back(kernel):
    """Linux keeps the name (inet_sport) but frees the port; a bound address stays."""
    free = sock(kernel)
    free.bind(TASK, addr(0))
    port = free.port
    free.release()
    c = sock(kernel)
    assert errno_of(lambda: c.connect(TASK, addr(port))) == errno.ECONNREFUSED
    assert c.port and c.ip == A.ANY4            # getsockname: 0.0.0.0:<the port it had>
    assert c.port not in kernel.net.ports[SOCK_STREAM]
    c.bind(TASK, addr(0))                       # bind is allowed again
    assert errno_of(lambda: c.connect(TASK, addr(port))) == errno.ECONNREFUSED
    assert c.ip == A.LOOPBACK4                  # bind(2) chose the address: it stays
    c.bind(TASK, addr(0))


def test_reset_frees_the_port(kernel):
    lst, c, a = connection(kernel)
    cport = c.port
    c.sendmsg(TASK, b"x", None, None, 0)
    a.release()                                 # unread data: c is reset
    assert c.port == cport
    sock(kernel).bind(TASK, addr(cport))


def test_listener_shut_down_takes_a_new_port_on_listen(kernel):
    lst = sock(kernel)
    lst.bind(TASK, addr(0))
    lst.listen(TASK, 1)
    port = lst.port
    lst.shutdown(SHUT_RD)
    assert lst.port == port                     # still its name
    lst.listen(TASK, 1)
    assert lst.port != port and lst.port in kernel.net.ports[SOCK_STREAM]


def test_a_chosen_port_stays_after_refused(kernel):
    free = sock(kernel)
    free.bind(TASK, addr(0))
    port = free.port
    free.release()
    c = sock(kernel)
    c.bind(TASK, addr(port + 1 if port < 60999 else port - 1))
    mine = c.port
    assert errno_of(lambda: c.connect(TASK, addr(port))) == errno.ECONNREFUSED
    assert kernel.net.ports[SOCK_STREAM][mine] == [c]
    assert errno_of(lambda: c.bind(TASK, addr(0))) == errno.EINVAL


def test_accepted_inherits_timeouts_and_linger(kernel):
    lst = sock(kernel)
    lst.rcvtimeo, lst.sndtimeo, lst.linger = 300000, 5, (1, 7)
    lst.bind(TASK, addr(0))
    lst.listen(TASK, 4)
    c = sock(kernel)
    c.connect(TASK, addr(lst.port))
    a = lst.accept(TASK, 0)
    assert (a.rcvtimeo, a.sndtimeo, a.linger) == (300000, 5, (1, 7))


def test_rcvlowat(kernel):
    from kvmbox.abi.poll import POLLIN
    from kvmbox.abi.socket import MSG_DONTWAIT, SO_RCVLOWAT
    lst, c, a = connection(kernel)
    a.opts[SO_RCVLOWAT] = 5
    c.sendmsg(TASK, b"abc", None, None, 0)
    assert not a.poll(POLLIN) & POLLIN
    assert errno_of(lambda: a.recvmsg(TASK, 16, 0)) == errno.EAGAIN    # blocking: waits
    assert a.recvmsg(TASK, 2, 0).data == b"ab"           # asks for fewer than the mark
    c.sendmsg(TASK, b"defg", None, None, 0)
    assert a.poll(POLLIN) & POLLIN
    assert a.recvmsg(TASK, 16, MSG_DONTWAIT).data == b"cdefg"


def test_connect_to_itself(kernel):
    """Simultaneous open with itself: Linux connects the socket to itself."""
    s = sock(kernel)
    s.bind(TASK, addr(0))
    s.connect(TASK, addr(s.port))
    assert s.peer is s and s.getpeername() == s.getsockname()
    assert s.sendmsg(TASK, b"me", None, None, 0) == 2
    assert s.recvmsg(TASK, 8, 0).data == b"me"
    s.shutdown(SHUT_WR)
    assert s.recvmsg(TASK, 8, 0).data == b""
    s.release()
    assert all(isinstance(o, inet.TimeWait)
               for socks in kernel.net.ports[SOCK_STREAM].values() for o in socks)


def _time_waits(kernel) -> int:
    return sum(isinstance(o, inet.TimeWait)
               for socks in kernel.net.ports[SOCK_STREAM].values() for o in socks)


def test_time_wait_table_is_bounded(kernel, monkeypatch):
    """Past tcp_max_tw_buckets a closing socket leaves no TIME_WAIT entry, and old
    entries are dropped as they expire even when their port is never bound again."""
    monkeypatch.setattr(inet, "TCP_MAX_TW_BUCKETS", 3)
    lst = sock(kernel, reuse=True)
    lst.bind(TASK, addr(0))
    lst.listen(TASK, 8)
    for _ in range(5):
        c = sock(kernel)
        c.connect(TASK, addr(lst.port))
        a = lst.accept(TASK, 0)
        c.release()                       # the client closes first: its port waits
        a.release()
    assert _time_waits(kernel) == 3
    now = inet.time.monotonic()
    monkeypatch.setattr(inet.time, "monotonic", lambda: now + inet.TCP_TIMEWAIT_LEN + 1)
    c = sock(kernel)
    c.connect(TASK, addr(lst.port))
    a = lst.accept(TASK, 0)
    c.release()
    a.release()
    assert _time_waits(kernel) == 1       # the three expired ones went, the new one stays
