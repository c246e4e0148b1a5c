"""AF_UNIX sockets, entirely in the Sentry: SOCK_STREAM, SOCK_DGRAM and SOCK_SEQPACKET.

Each socket has a receive queue of messages (bytes, SCM_RIGHTS descriptions in flight,
the sender's credentials, the sender).  A stream read merges messages (stopping after
one that carries descriptors, and between differing credentials with SO_PASSCRED); a
datagram or seqpacket read takes one message (MSG_TRUNC beyond the buffer).  A sender
is charged the bytes it has queued (Linux's sk_wmem_alloc) against its SO_SNDBUF;
datagrams also meet the receiver's queue limit (net.unix.max_dgram_qlen) unless the
receiver is connected back.  A listener keeps connected-but-unaccepted sockets in
its backlog; connect is refused when more than `backlog` wait (EAGAIN, or it waits).
Names: unixnames.py.  Nothing here ever touches a host socket.
"""
from __future__ import annotations

import errno
from collections import deque

from kvmbox.abi.poll import POLLERR, POLLHUP, POLLIN, POLLOUT, POLLRDNORM, POLLWRBAND, POLLWRNORM
from kvmbox.abi.socket import (
    AF_UNIX, AF_UNSPEC, MSG_OOB, MSG_PEEK, MSG_TRUNC, RCV_SHUTDOWN, SEND_SHUTDOWN,
    SHUTDOWN_MASK, SOCK_DGRAM, SOCK_RAW, SOCK_SEQPACKET, SOCK_STREAM,
)
from kvmbox.errors import SyscallError
from kvmbox.sentry.net import unixnames as N
from kvmbox.sentry.net.socket import POLLRDHUP, Received, Socket, drop, hold, task_creds

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from kvmbox.sentry.task import Task

CLOSE, LISTEN, CONNECTED = 0, 1, 2
MAX_DGRAM_QLEN = 10              # net.unix.max_dgram_qlen
OVERHEAD = 576                   # what one queued message costs beyond its bytes (truesize)
CAP_SYS_ADMIN, CAP_SYS_RESOURCE = 21, 24


def create(kernel, creds, stype: int, protocol: int, flags: int) -> "UnixSocket":
    """socket(AF_UNIX, ...): EPROTONOSUPPORT, ESOCKTNOSUPPORT as Linux's unix_create."""
    if protocol and protocol != AF_UNIX:
        raise SyscallError(errno.EPROTONOSUPPORT)
    if stype == SOCK_RAW:
        stype = SOCK_DGRAM
    if stype not in (SOCK_STREAM, SOCK_DGRAM, SOCK_SEQPACKET):
        raise SyscallError(errno.ESOCKTNOSUPPORT)
    return UnixSocket(kernel, creds, stype, 0, flags)


class Message:
    """One queued send."""
    __slots__ = ("data", "rights", "creds", "sender", "cost")

    def __init__(self, data: bytes, rights, creds, sender: "UnixSocket") -> None:
        self.data = data
        self.rights = rights or None
        self.creds = creds
        self.sender = sender
        self.cost = len(data) + OVERHEAD


class UnixSocket(Socket):
    family = AF_UNIX

    def __init__(self, kernel, creds, stype: int, protocol: int, flags: int) -> None:
        super().__init__(kernel, creds, stype, protocol, flags)
        self.ns: N.UnixNames = N.names(kernel)
        self.state = CLOSE
        self.peer: UnixSocket | None = None
        self.addr: bytes | None = None          # the bound sockaddr_un
        self.bound_key = None
        self.rx: deque[Message] = deque()
        self.backlog: deque[UnixSocket] = deque()
        self.max_backlog = MAX_DGRAM_QLEN if stype == SOCK_DGRAM else 0
        self.shut = 0
        self.wmem = 0
        self.peercred: tuple[int, int, int] | None = None
        self.blocked_senders: set[UnixSocket] = set()
        self.dead = False
        self.unaccepted = False             # in a listener's backlog (Linux's embryo)

    # --- helpers ----------------------------------------------------------------------
    def _connection(self) -> bool:
        return self.stype in (SOCK_STREAM, SOCK_SEQPACKET)

    def stream_like(self) -> bool:
        return self.stype == SOCK_STREAM

    def listening(self) -> bool:
        return self.state == LISTEN

    def peer_creds(self) -> tuple[int, int, int]:
        return self.peercred if self.peercred is not None else super().peer_creds()

    def _wake_senders(self) -> None:
        senders, self.blocked_senders = self.blocked_senders, set()
        for s in senders:
            s.changed()

    def _autobind(self) -> None:
        if self.addr is None:
            self.addr = self.ns.autobind(self)
            self.bound_key = ("abstract", (self.addr[2:], self.stype))

    def _creds(self, t: "Task | None") -> tuple[int, int, int]:
        """The sender's credentials for a message: the task's, or for a write(2) (no task at
        hand) those of the task that made or accepted the socket."""
        return task_creds(t) if t is not None else self.owner_creds

    # --- names ------------------------------------------------------------------------
    def bind(self, t: "Task", addr: bytes) -> None:
        if len(addr) == 2 and int.from_bytes(addr, "little") == AF_UNIX:
            if self.addr is not None:
                raise SyscallError(errno.EINVAL)
            self._autobind()
            return
        kind, name = N.parse(addr)
        if kind == "abstract":
            if self.addr is not None:
                raise SyscallError(errno.EINVAL)
            key = (name, self.stype)
            if key in self.ns.abstract:
                raise SyscallError(errno.EADDRINUSE)
            self.ns.abstract[key] = self
            self.bound_key = ("abstract", key)
        else:
            self.bound_key = N.bind_path(t, self.ns, self, name, self.addr is not None)
        self.addr = N.sockaddr(kind, name)

    def getsockname(self) -> bytes:
        return self.addr if self.addr is not None else N.UNNAMED

    def getpeername(self) -> bytes:
        p = self.peer
        if p is None or (self._connection() and self.state != CONNECTED):
            raise SyscallError(errno.ENOTCONN)
        return p.addr if p.addr is not None else N.UNNAMED

    # --- connections ------------------------------------------------------------------
    def listen(self, t: "Task", backlog: int) -> None:
        if not self._connection():
            raise SyscallError(errno.EOPNOTSUPP)
        if self.addr is None or self.state not in (CLOSE, LISTEN):
            raise SyscallError(errno.EINVAL)
        self.max_backlog = backlog
        self.state = LISTEN
        self.peercred = task_creds(t)
        self._wake_senders()
        self.changed()

    def pair(self, t: "Task", other: "Socket") -> None:
        assert isinstance(other, UnixSocket)
        creds = task_creds(t)
        for a, b in ((self, other), (other, self)):
            a.peer, a.state, a.peercred = b, CONNECTED, creds

    def connect(self, t: "Task", addr: bytes) -> None:
        if not self._connection():
            self._dgram_connect(t, addr)
            return
        if self.passcred:
            self._autobind()
        other = N.lookup(t, self.ns, addr, self.stype)
        if other.stype != self.stype:
            raise SyscallError(errno.EPROTOTYPE)
        if other.state != LISTEN or other.shut & RCV_SHUTDOWN or other.dead:
            raise SyscallError(errno.ECONNREFUSED)
        if len(other.backlog) > other.max_backlog:
            other.blocked_senders.add(self)
            raise SyscallError(errno.EAGAIN)
        if self.state == CONNECTED:
            raise SyscallError(errno.EISCONN)
        if self.state == LISTEN:
            raise SyscallError(errno.EINVAL)
        new = UnixSocket(self.kernel, None, self.stype, 0, 0)
        new.uid, new.gid = other.uid, other.gid
        new.addr = other.addr
        new.passcred = other.passcred
        new.unaccepted = True
        new.peer, new.state, new.peercred = self, CONNECTED, task_creds(t)
        self.peer, self.state, self.peercred = new, CONNECTED, other.peercred
        other.backlog.append(new)
        other.changed()
        self.changed()

    def _dgram_connect(self, t: "Task", addr: bytes) -> None:
        if len(addr) >= 2 and int.from_bytes(addr[:2], "little") == AF_UNSPEC:
            self._disconnect()
            return
        N.parse(addr)
        if self.passcred:
            self._autobind()
        other = N.lookup(t, self.ns, addr, self.stype)
        if other.stype != self.stype:
            raise SyscallError(errno.EPROTOTYPE)
        if other.peer is not None and other.peer is not self:
            raise SyscallError(errno.EPERM)
        self.peer, self.state = other, CONNECTED
        self.changed()

    def _disconnect(self) -> None:
        self.peer, self.state = None, CLOSE
        self.changed()

    def accept(self, t: "Task", flags: int) -> "UnixSocket":
        if self.state != LISTEN:
            raise SyscallError(errno.EINVAL)
        if not self.backlog:
            raise SyscallError(errno.EAGAIN)
        new = self.backlog.popleft()
        new.unaccepted = False
        new.uid, new.gid = t.creds.euid, t.creds.egid
        new.owner_creds = task_creds(t)
        self._wake_senders()
        self.changed()
        return new

    def shutdown(self, how: int) -> None:
        mode = how + 1
        self.shut |= mode
        self.changed()
        p = self.peer
        if p is not None and self._connection():
            if mode & RCV_SHUTDOWN:
                p.shut |= SEND_SHUTDOWN
            if mode & SEND_SHUTDOWN:
                p.shut |= RCV_SHUTDOWN
            p.changed()

    # --- data -------------------------------------------------------------------------
    def _check_rights(self, t: "Task | None", anc) -> None:
        if anc is None or not anc.rights or t is None:
            return
        from kvmbox.sentry.syscalls.sys_open import nofile_limit
        eff = getattr(t.creds, "cap_effective", 0)
        privileged = eff & ((1 << CAP_SYS_ADMIN) | (1 << CAP_SYS_RESOURCE))
        if self.ns.inflight > nofile_limit(t) and not privileged:
            raise SyscallError(errno.ETOOMANYREFS)

    def _queue(self, to: "UnixSocket", data: bytes, anc, t: "Task | None") -> None:
        rights = anc.rights if anc is not None else None
        creds = anc.creds if anc is not None and anc.creds is not None else self._creds(t)
        m = Message(data, rights, creds, self)
        if anc is not None:
            anc.rights = []
        self.ns.inflight += len(m.rights or ())
        to.rx.append(m)
        self.wmem += m.cost
        to.changed()

    def sendmsg(self, t, data: bytes, addr, anc, flags: int) -> int:
        if flags & MSG_OOB:
            raise SyscallError(errno.EOPNOTSUPP)
        if self.stype == SOCK_STREAM:
            return self._stream_send(t, data, addr, anc)
        if self.stype == SOCK_SEQPACKET:
            if self.state != CONNECTED:
                raise SyscallError(errno.ENOTCONN)
            addr = None
        return self._dgram_send(t, data, addr, anc)

    def send_precheck(self, n: int, flags: int) -> None:
        if flags & MSG_OOB:
            raise SyscallError(errno.EOPNOTSUPP)
        if self.stype != SOCK_STREAM and n > self.sndbuf - 32:
            raise SyscallError(errno.EMSGSIZE)

    def _stream_send(self, t, data: bytes, addr, anc) -> int:
        if addr:
            raise SyscallError(errno.EISCONN if self.state == CONNECTED else errno.EOPNOTSUPP)
        p = self.peer
        if p is None or self.state != CONNECTED:
            raise SyscallError(errno.ENOTCONN)
        if not data:
            return 0
        if self.shut & SEND_SHUTDOWN or p.dead or p.shut & RCV_SHUTDOWN:
            raise SyscallError(errno.EPIPE)
        self._check_rights(t, anc)
        if self.passcred or p.passcred:
            self._autobind()
        done = 0
        piece = max((self.sndbuf >> 1) - 64, 1)
        while done < len(data) and self.wmem < self.sndbuf:
            chunk = data[done:done + piece]
            self._queue(p, chunk, anc if not done else None, t)
            done += len(chunk)
        if not done:
            raise SyscallError(errno.EAGAIN)
        return done

    def _dgram_send(self, t, data: bytes, addr, anc) -> int:
        if addr:
            N.parse(addr)
            other = None
        else:
            other = self.peer
            if other is None:
                raise SyscallError(errno.ENOTCONN)
        if self.passcred:
            self._autobind()
        if len(data) > self.sndbuf - 32:
            raise SyscallError(errno.EMSGSIZE)
        if self.shut & SEND_SHUTDOWN:
            raise SyscallError(errno.EPIPE)
        self._check_rights(t, anc)
        if self.wmem + len(data) + OVERHEAD > self.sndbuf and self.wmem:
            raise SyscallError(errno.EAGAIN)
        if other is None:
            other = N.lookup(t, self.ns, addr, self.stype)
            if other.stype != self.stype:
                raise SyscallError(errno.EPROTOTYPE)
        if other.dead:
            if self.stype == SOCK_SEQPACKET:
                raise SyscallError(errno.EPIPE)
            if self.peer is other:
                self._disconnect()
            raise SyscallError(errno.ECONNREFUSED)
        if other.peer is not None and other.peer is not self and other is not self:
            raise SyscallError(errno.EPERM)
        if other.shut & RCV_SHUTDOWN:
            raise SyscallError(errno.EPIPE)
        if other.peer is not self and len(other.rx) > other.max_backlog:
            other.blocked_senders.add(self)
            raise SyscallError(errno.EAGAIN)
        self._queue(other, data, anc, t)
        return len(data)

    def _consumed(self, m: Message) -> None:
        s = m.sender
        s.wmem -= m.cost
        s.changed()
        self._wake_senders()

    def _take_rights(self, m: Message, peek: bool):
        if not m.rights:
            return None
        if peek:
            for f in m.rights:
                hold(f)
            return list(m.rights)
        rights, m.rights = m.rights, None
        self.ns.inflight -= len(rights)
        return rights

    def recvmsg(self, t, n: int, flags: int) -> Received:
        if flags & MSG_OOB:
            raise SyscallError(errno.EOPNOTSUPP)
        peek = bool(flags & MSG_PEEK)
        if self.stype == SOCK_STREAM:
            if self.state != CONNECTED:
                raise SyscallError(errno.EINVAL)
            return self._stream_recv(n, peek)
        if self.stype == SOCK_SEQPACKET and self.state != CONNECTED:
            raise SyscallError(errno.ENOTCONN)
        if not self.rx:
            self._empty()
            return Received(b"", None, 0, 0)
        m = self.rx[0]
        r = Received(m.data[:n], self._sender_addr(m), MSG_TRUNC if len(m.data) > n else 0,
                     len(m.data), self._take_rights(m, peek), m.creds)
        if not peek:
            self.rx.popleft()
            self._consumed(m)
        return r

    def _empty(self) -> None:
        """An empty queue: ECONNRESET once after a reset, EOF after a shutdown, else EAGAIN."""
        if self.error:
            e, self.error = self.error, 0
            raise SyscallError(e)
        if self.shut & RCV_SHUTDOWN:
            return
        raise SyscallError(errno.EAGAIN)

    @staticmethod
    def _sender_addr(m: Message) -> bytes:
        return m.sender.addr or b""

    def _stream_recv(self, n: int, peek: bool) -> Received:
        if not self.rx:
            self._empty()
            return Received(b"")
        out = bytearray()
        creds = None
        rights = None
        first = self.rx[0]
        for m in list(self.rx):
            if out and (self.passcred and m.creds != creds):
                break
            creds = m.creds
            k = min(n - len(out), len(m.data))
            out += m.data[:k]
            rights = self._take_rights(m, peek)
            if not peek:
                if k == len(m.data):
                    self.rx.popleft()
                    self._consumed(m)
                else:
                    m.data = m.data[k:]
                    m.sender.wmem -= k
                    m.cost -= k
            if rights or len(out) >= n:
                break
        return Received(bytes(out), self._sender_addr(first), 0, -1, rights, creds)

    def unsent_bytes(self) -> int:
        """SIOCOUTQ: what we queued that the receiver has not read (unix_outq_len)."""
        return self.wmem

    def readable_bytes(self) -> int:
        if self.stype == SOCK_STREAM:
            return sum(len(m.data) for m in self.rx)
        return len(self.rx[0].data) if self.rx else 0

    # --- readiness and close ----------------------------------------------------------
    def poll(self, events: int) -> int:
        mask = 0
        if self.error:
            mask |= POLLERR
        if self.shut == SHUTDOWN_MASK:
            mask |= POLLHUP
        if self.shut & RCV_SHUTDOWN:
            mask |= POLLRDHUP | POLLIN | POLLRDNORM
        if self.rx or self.backlog:
            mask |= POLLIN | POLLRDNORM
        if self._connection() and self.state == CLOSE:
            mask |= POLLHUP
        writable = self.state != LISTEN and self.wmem << 2 <= self.sndbuf
        if writable and self.stype == SOCK_DGRAM:
            p = self.peer
            if p is not None and p.peer is not self and len(p.rx) > p.max_backlog:
                p.blocked_senders.add(self)
                writable = False
        if writable:
            mask |= POLLOUT | POLLWRNORM | POLLWRBAND
        return mask & (events | POLLERR | POLLHUP)

    def release(self) -> None:
        if self.dead:
            return
        self.dead = True
        if self.bound_key is not None:
            self.ns.forget(self.bound_key)
        p = self.peer
        if p is not None and self._connection():
            p.shut = SHUTDOWN_MASK
            if self.rx or self.unaccepted:
                p.error = errno.ECONNRESET
            p.changed()
        self.peer = None
        self._flush()
        while self.backlog:
            self.backlog.popleft().release()
        self._wake_senders()
        self.changed()

    def _flush(self) -> None:
        """Close what the queue holds: descriptors in flight never received go."""
        rx, self.rx = self.rx, deque()
        for m in rx:
            if m.rights:
                self.ns.inflight -= len(m.rights)
                for f in m.rights:
                    drop(f)
            m.sender.wmem -= m.cost
            m.sender.changed()
