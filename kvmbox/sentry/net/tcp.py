"""TCP over the sandbox's loopback (SOCK_STREAM in AF_INET / AF_INET6), in the Sentry.

A connection is two TcpSockets pointing at each other; a send appends to the peer's
receive buffer, within the peer's SO_RCVBUF plus our SO_SNDBUF (flow control: a writer
waits while the reader does not read).  connect finds a listener through the stack's
bind table; while the listener's accept queue holds more than `backlog` connections a
connect waits in SYN_SENT (EINPROGRESS when non-blocking) and completes when accept
makes room (Linux instead drops the SYN and retransmits a second later).  The states
follow Linux (tcp_states.h) as a program sees them through tcp_poll, TCP_INFO and the
errors: FIN (shutdown SHUT_WR, close) gives the peer EOF; a close with unread data, or
with SO_LINGER {1, 0}, resets the peer (ECONNRESET; EPIPE in CLOSE_WAIT); a send to a
peer that closed is answered by a reset.  The side that sent the first FIN leaves its
address and port in the bind table for 60 s (TIME_WAIT: a bind there needs SO_REUSEADDR
on both); nothing else of a closed connection stays.  No packet, no host socket.
"""
from __future__ import annotations

import errno
import struct
from collections import deque

from kvmbox.abi.fcntl import O_NONBLOCK
from kvmbox.abi.poll import POLLERR, POLLHUP, POLLIN, POLLOUT, POLLRDNORM, POLLWRNORM
from kvmbox.abi.socket import (
    AF_INET6, MSG_DONTWAIT, MSG_OOB, MSG_PEEK, MSG_TRUNC, SO_RCVLOWAT, MAX_TCP_KEEPCNT,
    MAX_TCP_KEEPIDLE, MAX_TCP_KEEPINTVL, RCV_SHUTDOWN, SEND_SHUTDOWN, SHUTDOWN_MASK,
    IPPROTO_TCP, TCP_CONGESTION,
    TCP_CORK, TCP_DEFER_ACCEPT, TCP_INFO, TCP_KEEPCNT, TCP_KEEPCNT_DEFAULT, TCP_KEEPIDLE,
    TCP_KEEPIDLE_DEFAULT, TCP_KEEPINTVL, TCP_KEEPINTVL_DEFAULT, TCP_LINGER2, TCP_MAXSEG,
    TCP_MAXSEG_DEFAULT, TCP_NODELAY, TCP_NOTSENT_LOWAT, TCP_QUICKACK, TCP_SYNCNT,
    TCP_USER_TIMEOUT, TCP_WINDOW_CLAMP, AF_UNSPEC,
)
from kvmbox.abi.structs import S32
from kvmbox.errors import SyscallError
from kvmbox.sentry.net import inetaddr as A
from kvmbox.sentry.net.inet import InetSocket, _int
from kvmbox.sentry.net.socket import POLLRDHUP, Received

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from kvmbox.sentry.task import Task

# include/net/tcp_states.h
ESTABLISHED, SYN_SENT, FIN_WAIT2, CLOSE, CLOSE_WAIT, LISTEN = 1, 2, 5, 7, 8, 10
# socket states of the connect(2) protocol (Linux's SS_*)
UNCONNECTED, CONNECTING, CONNECTED = 0, 1, 2
TCP_RMEM_DEFAULT, TCP_WMEM_DEFAULT = 131072, 16384     # net.ipv4.tcp_{r,w}mem[1]
LOOPBACK_MSS4, LOOPBACK_MSS6 = 65483, 65476            # lo's 65536 MTU minus headers
TCP_MIN_MSS, MAX_TCP_WINDOW = 88, 32767
TCP_INFO_SIZE = 280                                    # struct tcp_info on Linux 6.x
_TCP_INFO_HEAD = struct.Struct("<BBBBBBBB" + "I" * 24)

_TCP_INTS = {TCP_NODELAY: 0, TCP_CORK: 0, TCP_KEEPIDLE: TCP_KEEPIDLE_DEFAULT,
             TCP_KEEPINTVL: TCP_KEEPINTVL_DEFAULT, TCP_KEEPCNT: TCP_KEEPCNT_DEFAULT,
             TCP_SYNCNT: 6, TCP_LINGER2: 60, TCP_DEFER_ACCEPT: 0, TCP_WINDOW_CLAMP: 0,
             TCP_USER_TIMEOUT: 0, TCP_NOTSENT_LOWAT: 0, TCP_QUICKACK: 1}
_TCP_LIMITS = {TCP_KEEPIDLE: (1, MAX_TCP_KEEPIDLE), TCP_KEEPINTVL: (1, MAX_TCP_KEEPINTVL),
               TCP_KEEPCNT: (1, MAX_TCP_KEEPCNT), TCP_SYNCNT: (1, 127),
               TCP_USER_TIMEOUT: (0, 0x7FFFFFFF)}
_TCP_BOOLS = frozenset({TCP_NODELAY, TCP_CORK, TCP_QUICKACK})


class TcpSocket(InetSocket):
    """One end of a loopback TCP connection, or a listener."""

    def __init__(self, kernel, creds, family: int, stype: int, protocol: int, flags: int) -> None:
        super().__init__(kernel, creds, family, stype, protocol, flags)
        self.rcvbuf, self.sndbuf = TCP_RMEM_DEFAULT, TCP_WMEM_DEFAULT
        self.state = CLOSE
        self.sock_state = UNCONNECTED
        self.peer: TcpSocket | None = None
        self.was_connected = False
        self.fin_in = False                 # the peer's FIN came (EOF after the data)
        self.shut = 0                       # Linux's sk_shutdown
        self.rx = bytearray()
        self.accq: deque[TcpSocket] = deque()    # a listener's accept queue
        self.synq: deque[TcpSocket] = deque()    # connectors waiting for room (SYN_SENT)
        self.backlog = 0
        self.listener: TcpSocket | None = None   # the listener a waiting connector waits on
        self.tcpopts: dict[int, int] = {}
        self.dead = False
        self.closed_first = False           # our FIN went before the peer's: TIME_WAIT at close

    # --- state ------------------------------------------------------------------------
    def stream_like(self) -> bool:
        return True

    def listening(self) -> bool:
        return self.state == LISTEN

    def bindable(self) -> bool:
        return self.state == CLOSE

    def getpeername(self) -> bytes:
        if self.state in (CLOSE, SYN_SENT, LISTEN) or self.remote is None:
            raise SyscallError(errno.ENOTCONN)
        return self.sockaddr(self.remote)

    def tcp_state(self) -> int:
        """The state TCP_INFO reports (loopback ACKs are instant: no FIN_WAIT1/LAST_ACK)."""
        if self.state != ESTABLISHED:
            return self.state
        out = bool(self.shut & SEND_SHUTDOWN)
        if out and self.fin_in:
            return CLOSE
        return FIN_WAIT2 if out else CLOSE_WAIT if self.fin_in else ESTABLISHED

    def _reset(self, err: int | None = None) -> None:
        """A reset came: the connection is over (Linux's tcp_reset)."""
        if self.state == CLOSE:
            return
        if err is None:
            err = errno.EPIPE if self.tcp_state() == CLOSE_WAIT else errno.ECONNRESET
        self.error = err
        self.state = CLOSE
        self.shut = SHUTDOWN_MASK
        self.peer = None
        self.put_port()
        self.changed()

    # --- connections ------------------------------------------------------------------
    def listen(self, t: "Task", backlog: int) -> None:
        if self.sock_state != UNCONNECTED or self.state not in (CLOSE, LISTEN):
            raise SyscallError(errno.EINVAL)
        if self.state != LISTEN:
            if not self.port or self.port_put:
                self.autobind()
            elif not self.net.can_bind(self, self.port):
                raise SyscallError(errno.EADDRINUSE)
            self.state = LISTEN
        self.backlog = max(backlog, 0)
        self._admit()
        self.changed()

    def connect(self, t: "Task", addr: bytes) -> None:
        """Linux's __inet_stream_connect over tcp_v4_connect / tcp_v6_connect."""
        if len(addr) < 2:
            raise SyscallError(errno.EINVAL)
        if A.family_of(addr) == AF_UNSPEC:
            self._disconnect()
            return
        nonblock = bool(self.flags & O_NONBLOCK)
        if self.sock_state == CONNECTED:
            raise SyscallError(errno.EISCONN)
        if self.sock_state == CONNECTING:
            if self.state == SYN_SENT:
                raise SyscallError(errno.EALREADY if nonblock else errno.EAGAIN)
            if self.state == CLOSE:
                err, self.error = self.error or errno.ECONNABORTED, 0
                self.sock_state, self.shut = UNCONNECTED, 0
                raise SyscallError(err)
            self.sock_state = CONNECTED
            return
        if self.state != CLOSE:
            raise SyscallError(errno.EISCONN)
        dst, dport = self.parse(addr)
        dst, src = self.net.route(dst)
        if self.family == AF_INET6 and A.is_v4(self.ip) != A.is_v4(dst) and not A.is_any(self.ip):
            raise SyscallError(errno.ENETUNREACH if A.is_v4(dst) else errno.EAFNOSUPPORT)
        self.autobind(src)
        self.remote = (dst, dport)
        self.sock_state = CONNECTING
        self.state = SYN_SENT
        lst = self.net.lookup(self.stype, dst, dport, lambda s: s.state == LISTEN)
        if lst is None and (dst, dport) == (self.ip, self.port):
            # a SYN to itself: Linux's simultaneous open connects the socket to itself
            self.state, self.was_connected, self.peer = ESTABLISHED, True, self
            self.changed()
        elif lst is None:
            self._refused(nonblock)
        elif len(lst.accq) > lst.backlog:
            self.listener = lst
            lst.synq.append(self)
        else:
            lst._establish(self)
        if self.state == CLOSE:               # refused
            err, self.error = self.error, 0
            self.sock_state, self.shut = UNCONNECTED, 0
            raise SyscallError(err)
        if nonblock:
            raise SyscallError(errno.EINPROGRESS)
        if self.state == SYN_SENT:
            raise SyscallError(errno.EAGAIN)     # the syscall layer waits and calls again
        self.sock_state = CONNECTED

    def _refused(self, nonblock: bool) -> None:
        self.state = CLOSE
        self.remote = None
        if not self.addr_locked:
            self.ip = A.ANY6 if self.family == AF_INET6 else A.ANY4
        self.put_port()
        self.error = errno.ECONNREFUSED
        if nonblock:
            self.shut = SHUTDOWN_MASK
            raise SyscallError(errno.EINPROGRESS)

    def _establish(self, c: "TcpSocket") -> None:
        """Listener: take connector `c` (in SYN_SENT) into the accept queue."""
        new = TcpSocket(self.kernel, None, self.family, self.stype, self.protocol, 0)
        new.uid, new.gid = self.uid, self.gid
        new.opts = dict(self.opts)
        new.tcpopts = dict(self.tcpopts)
        new.ipopts = dict(self.ipopts)
        new.rcvbuf, new.sndbuf = self.rcvbuf, self.sndbuf
        new.rcvtimeo, new.sndtimeo, new.linger = self.rcvtimeo, self.sndtimeo, self.linger
        new.ttl, new.tos, new.v6only = self.ttl, self.tos, self.v6only
        dst = c.remote[0]
        new.ip = dst
        new.port = self.port
        new.user_bound = True
        new.addr_locked, new.port_locked = self.addr_locked, self.port_locked
        new.remote = (c.ip, c.port)
        new.state, new.sock_state, new.was_connected = ESTABLISHED, CONNECTED, True
        new.listener = self
        self.net.add_child(new)
        c.listener = None
        c.state, c.was_connected = ESTABLISHED, True
        c.peer, new.peer = new, c
        self.accq.append(new)
        self.changed()
        c.changed()

    def _admit(self) -> None:
        """Listener: complete waiting connects while the accept queue has room."""
        while self.synq and len(self.accq) <= self.backlog:
            c = self.synq.popleft()
            if c.state == SYN_SENT and not c.dead:
                self._establish(c)

    def accept(self, t: "Task", flags: int) -> "TcpSocket":
        if self.state != LISTEN:
            raise SyscallError(errno.EINVAL)
        if not self.accq:
            raise SyscallError(errno.EAGAIN)
        new = self.accq.popleft()
        new.listener = None
        new.uid, new.gid = t.creds.euid, t.creds.egid
        self._admit()
        self.changed()
        return new

    def _disconnect(self) -> None:
        """connect(AF_UNSPEC): Linux's tcp_disconnect (a reset to a connected peer)."""
        if self.state == LISTEN:
            self._stop_listening()
        elif self.peer is not None:
            self.peer._reset()
        self._leave_synq()
        self.peer = None
        self.state, self.sock_state, self.shut, self.fin_in = CLOSE, UNCONNECTED, 0, False
        self.rx.clear()
        self.remote = None
        if not self.addr_locked:
            self.ip = A.ANY6 if self.family == AF_INET6 else A.ANY4
        self.put_port()
        self.changed()

    def shutdown(self, how: int) -> None:
        """Linux's inet_shutdown: on a closed socket the directions are shut all the same
        (later reads see EOF) and the answer is ENOTCONN; a connect still waiting is
        abandoned (tcp_disconnect)."""
        mode = how + 1
        if self.state == CLOSE:
            self.shut |= mode
            self.changed()
            raise SyscallError(errno.ENOTCONN)
        if self.state == SYN_SENT:
            self._disconnect()
            return
        if self.state == LISTEN:
            if mode & RCV_SHUTDOWN:
                self._stop_listening()
                self.put_port()
                self.changed()
            return
        if mode & SEND_SHUTDOWN and not self.shut & SEND_SHUTDOWN:
            self.closed_first = not self.fin_in
        self.shut |= mode
        p = self.peer
        if mode & SEND_SHUTDOWN and p is not None and not p.fin_in:
            p.fin_in = True
            p.shut |= RCV_SHUTDOWN
            p.changed()
        self.changed()

    # --- data -------------------------------------------------------------------------
    def _room(self, p: "TcpSocket") -> int:
        return p.rcvbuf + self.sndbuf - len(p.rx)

    def sendmsg(self, t, data: bytes, addr, anc, flags: int) -> int:
        if flags & MSG_OOB:
            raise SyscallError(errno.EOPNOTSUPP)
        if self.state == SYN_SENT:
            raise SyscallError(errno.EAGAIN)
        if self.error:
            err, self.error = self.error, 0
            raise SyscallError(err)
        if self.state != ESTABLISHED or self.shut & SEND_SHUTDOWN:
            raise SyscallError(errno.EPIPE)
        if not data:
            return 0
        p = self.peer
        if p is None:                         # the peer closed: its reset answers
            self._reset()
            return len(data)
        room = self._room(p)
        if room <= 0:
            raise SyscallError(errno.EAGAIN)
        n = min(len(data), room)
        p.rx += data[:n]
        p.changed()
        return n

    def recvmsg(self, t, n: int, flags: int) -> Received:
        if flags & MSG_OOB:
            raise SyscallError(errno.EINVAL)
        if self.state == LISTEN or (self.state == CLOSE and not self.was_connected
                                    and not self.shut & RCV_SHUTDOWN):
            raise SyscallError(errno.ENOTCONN)
        if self.rx and n:
            if len(self.rx) < min(self._lowat(), n) and not self.shut & RCV_SHUTDOWN \
                    and not (flags & MSG_DONTWAIT or self.flags & O_NONBLOCK):
                raise SyscallError(errno.EAGAIN)   # a blocking receive waits for SO_RCVLOWAT
            data = bytes(self.rx[:n])
            if not flags & MSG_PEEK:
                del self.rx[:len(data)]
                if self.peer is not None:
                    self.peer.changed()
            return Received(b"" if flags & MSG_TRUNC else data, None, 0, len(data)
                            if flags & MSG_TRUNC else -1)
        if self.error:
            err, self.error = self.error, 0
            raise SyscallError(err)
        if self.shut & RCV_SHUTDOWN or self.state == CLOSE or not n:
            return Received(b"")
        raise SyscallError(errno.EAGAIN)

    def readable_bytes(self) -> int:
        if self.state == LISTEN:
            raise SyscallError(errno.EINVAL)     # tcp_ioctl: SIOCINQ on a listener
        return len(self.rx)

    def _lowat(self) -> int:
        """SO_RCVLOWAT: the bytes that make the socket readable (Linux's sock_rcvlowat)."""
        return max(self.opts.get(SO_RCVLOWAT, 1), 1)

    def unsent_bytes(self) -> int:
        """SIOCOUTQ: loopback ACKs what the peer's receive buffer holds; what lies past
        it waits in our send queue."""
        if self.state == LISTEN:
            raise SyscallError(errno.EINVAL)
        p = self.peer
        return max(0, len(p.rx) - p.rcvbuf) if p is not None else 0

    # --- readiness and close ----------------------------------------------------------
    def poll(self, events: int) -> int:
        """Linux's tcp_poll."""
        if self.state == LISTEN:
            return (POLLIN | POLLRDNORM) & events if self.accq else 0
        mask = 0
        if self.shut == SHUTDOWN_MASK or self.state == CLOSE:
            mask |= POLLHUP
        if self.shut & RCV_SHUTDOWN:
            mask |= POLLIN | POLLRDNORM | POLLRDHUP
        if self.state != SYN_SENT:
            if self.rx and len(self.rx) >= self._lowat():
                mask |= POLLIN | POLLRDNORM
            if self.shut & SEND_SHUTDOWN or self.peer is None or \
                    self._room(self.peer) * 3 >= self.peer.rcvbuf + self.sndbuf:
                mask |= POLLOUT | POLLWRNORM
        if self.error:
            mask |= POLLERR
        return mask & (events | POLLERR | POLLHUP)

    def _leave_synq(self) -> None:
        lst, self.listener = self.listener, None
        if lst is not None and self in lst.synq:
            lst.synq.remove(self)

    def _stop_listening(self) -> None:
        """A listener closes: queued connections are reset, waiting connects refused."""
        self.state = CLOSE
        while self.accq:
            self.accq.popleft().release()
        while self.synq:
            c = self.synq.popleft()
            c.listener = None
            c._reset(errno.ECONNREFUSED)

    def release(self) -> None:
        if self.dead:
            return
        self.dead = True
        if self.state == LISTEN:
            self._stop_listening()
        elif self.state == SYN_SENT:
            self._leave_synq()
        p = self.peer
        orderly = self.state == ESTABLISHED and self.was_connected   # FINs, not a reset
        if p is not None:
            if self.rx or self.linger == (1, 0) or self.listener is not None:
                p._reset()
                orderly = False
            else:
                if not self.shut & SEND_SHUTDOWN:
                    self.closed_first = not self.fin_in
                if not p.fin_in:
                    p.fin_in = True
                    p.shut |= RCV_SHUTDOWN
                p.peer = None
                p.changed()
        self.peer = None
        self.rx = bytearray()
        self.state = CLOSE
        if self.port:
            if orderly and self.closed_first:
                self.net.time_wait(self)
            self.net.unbind(self)
        self.changed()

    # --- IPPROTO_TCP options ----------------------------------------------------------
    def _mss(self) -> int:
        user = self.tcpopts.get(TCP_MAXSEG, 0)
        if self.state in (ESTABLISHED, CLOSE) and self.was_connected:
            mss = LOOPBACK_MSS6 if self.family == AF_INET6 and not A.is_v4(self.ip) \
                else LOOPBACK_MSS4
            return min(mss, user) if user else mss
        return user or TCP_MAXSEG_DEFAULT

    def l4_getsockopt(self, t: "Task", level: int, name: int) -> bytes:
        if level != IPPROTO_TCP:
            raise SyscallError(errno.EOPNOTSUPP)
        if name == TCP_MAXSEG:
            return S32.pack(self._mss())
        if name == TCP_INFO:
            return self._tcp_info()
        if name == TCP_CONGESTION:
            return b"cubic".ljust(16, b"\0")
        if name in _TCP_INTS:
            return S32.pack(self.tcpopts.get(name, _TCP_INTS[name]))
        raise SyscallError(errno.ENOPROTOOPT)

    def l4_setsockopt(self, t: "Task", level: int, name: int, value: bytes) -> None:
        if level != IPPROTO_TCP:
            raise SyscallError(errno.ENOPROTOOPT)
        if name == TCP_CONGESTION:
            if value.split(b"\0", 1)[0] not in (b"cubic", b"reno"):
                raise SyscallError(errno.ENOENT)
            return
        if name != TCP_MAXSEG and name not in _TCP_INTS:
            raise SyscallError(errno.ENOPROTOOPT)
        if len(value) < 4:
            raise SyscallError(errno.EINVAL)
        v = _int(value)
        if name == TCP_MAXSEG:
            if v and not TCP_MIN_MSS <= v <= MAX_TCP_WINDOW:
                raise SyscallError(errno.EINVAL)
        elif name in _TCP_LIMITS:
            lo, hi = _TCP_LIMITS[name]
            if not lo <= v <= hi:
                raise SyscallError(errno.EINVAL)
        elif name in _TCP_BOOLS:
            v = int(bool(v))
        self.tcpopts[name] = v

    def _tcp_info(self) -> bytes:
        """A plausible struct tcp_info: the state, MSS, windows; no losses, no retransmits."""
        mss = self._mss()
        head = _TCP_INFO_HEAD.pack(
            self.tcp_state(), 0, 0, 0, 0, 0x7 if self.was_connected else 0,
            0x77 if self.was_connected else 0, 0,
            200000, 40000, mss, mss, 0, 0, 0, 0, 0,    # rto, ato, snd_mss, rcv_mss ...
            0, 0, 0, 0,                                # last_data_sent ... last_ack_recv
            65536, self.rcvbuf, 20, 10, 0x7FFFFFFF, 10, mss, 3, 0, self.rcvbuf, 0)
        return head.ljust(TCP_INFO_SIZE, b"\0")
