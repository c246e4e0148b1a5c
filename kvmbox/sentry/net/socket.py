"""The socket file every address family builds on: readiness, O_NONBLOCK, SOL_SOCKET options,
timeouts, and the family table socket(2) dispatches on.

A family module (FAMILIES maps the family number to it) exposes
`create(kernel, creds, stype, protocol, flags) -> Socket`, raising Linux's errno for a type
or protocol it lacks.  Its sockets subclass Socket and override the operations they
support; the defaults answer as Linux's sock_no_* stubs (EOPNOTSUPP).  Operations never
block: one that cannot proceed raises EAGAIN, and the syscall layer waits on `queue`
(notified on every state change) and tries again, until SO_RCVTIMEO / SO_SNDTIMEO pass
(then EAGAIN), a signal comes (EINTR with a timeout set, else a restart), or the run stops.
"""
from __future__ import annotations

import errno
import importlib
import os
import stat as S
import time

from kvmbox.abi.fcntl import O_NONBLOCK, O_RDWR
from kvmbox.abi.socket import (
    LINGER, SO_ACCEPTCONN, SO_BROADCAST, SO_BSDCOMPAT, SO_DEBUG, SO_DOMAIN, SO_DONTROUTE,
    SO_ERROR, SO_KEEPALIVE, SO_LINGER, SO_MARK, SO_OOBINLINE, SO_PASSCRED, SO_PASSSEC,
    SO_PEERCRED, SO_PRIORITY, SO_PROTOCOL, SO_RCVBUF, SO_RCVBUFFORCE, SO_RCVLOWAT,
    SO_RCVTIMEO_NEW, SO_RCVTIMEO_OLD, SO_REUSEADDR, SO_REUSEPORT, SO_SNDBUF, SO_SNDBUFFORCE,
    SO_SNDLOWAT, SO_SNDTIMEO_NEW, SO_SNDTIMEO_OLD, SO_TIMESTAMP, SO_TYPE, SOCK_BUF_DEFAULT,
    SOCK_BUF_MAX, SOCK_MIN_RCVBUF, SOCK_MIN_SNDBUF, SOCK_NONBLOCK, SOL_SOCKET, UCRED,
)
from kvmbox.abi.structs import S32, TIMEVAL
from kvmbox.errors import SyscallError
from kvmbox.record import field, record
from kvmbox.sentry.files import FileDescription, anon_ino
from kvmbox.sentry.vfs.node import Attr
from kvmbox.sentry.waiter import WaitQueue

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from kvmbox.sentry.task import Task

POLLRDHUP = 0x2000
SOCKFS_DEV = 0x8                 # sockfs's st_dev on Linux (an anonymous 0:8)
CAP_NET_ADMIN = 12

# Address family -> the module implementing it (imported on first use), "module" for its
# create() or "module:function".  A family not listed gets EAFNOSUPPORT, as a kernel
# without it.
FAMILIES: dict[int, str] = {
    1: "kvmbox.sentry.net.unix",                 # AF_UNIX
    2: "kvmbox.sentry.net.inet",                 # AF_INET: the sandbox's loopback
    10: "kvmbox.sentry.net.inet:create6",        # AF_INET6
    16: "kvmbox.sentry.net.netlink",             # AF_NETLINK: NETLINK_ROUTE, lo only, read-only
}

# SOL_SOCKET options that are plain ints stored and reported back (booleans normalised).
_BOOL_OPTS = frozenset({SO_DEBUG, SO_REUSEADDR, SO_DONTROUTE, SO_BROADCAST, SO_KEEPALIVE,
                        SO_OOBINLINE, SO_REUSEPORT, SO_TIMESTAMP, SO_PASSSEC})
_INT_OPTS = frozenset({SO_PRIORITY, SO_RCVLOWAT, SO_MARK})


def create(kernel, creds, domain: int, stype: int, protocol: int, flags: int) -> "Socket":
    """A new socket of `domain` (EAFNOSUPPORT for a family the Sentry lacks)."""
    name = FAMILIES.get(domain)
    if name is None:
        raise SyscallError(errno.EAFNOSUPPORT)
    module, _, func = name.partition(":")
    return getattr(importlib.import_module(module), func or "create")(
        kernel, creds, stype, protocol, flags)


@record
class Ancillary:
    """Control data a send carries: SCM_RIGHTS descriptions (each holding an in-flight
    reference), SCM_CREDENTIALS (pid, uid, gid), and other (level, type, data) items."""
    rights: list = field(default_factory=list)
    creds: tuple[int, int, int] | None = None
    other: list = field(default_factory=list)


@record
class Received:
    """What one receive gives: the bytes, the sender's address (None: not known), the
    msg_flags (MSG_TRUNC, MSG_EOR ...), the message's full length (for MSG_TRUNC), and its
    control data (rights in flight, creds, other cmsgs)."""
    data: bytes
    addr: bytes | None = None
    flags: int = 0
    length: int = -1
    rights: list | None = None
    creds: tuple[int, int, int] | None = None
    other: list = field(default_factory=list)


def hold(f: FileDescription) -> None:
    """Take an in-flight reference on `f` (an SCM_RIGHTS description in a queue)."""
    f.fd_refs += 1


def drop(f: FileDescription) -> None:
    """Drop an in-flight reference; the last one releases `f` (as closing its last fd)."""
    from kvmbox.sentry.files import FdTable
    FdTable._unref(f)


def task_creds(t: "Task") -> tuple[int, int, int]:
    """(pid, uid, gid) Linux records for `t` in SO_PEERCRED and SCM_CREDENTIALS."""
    return t.tg.tgid, t.creds.euid, t.creds.egid


class Socket(FileDescription):
    """An open socket; families override the operations."""

    family = 0
    readable = True
    writable = True
    mode = S.S_IFSOCK | 0o777

    def __init__(self, kernel, creds, stype: int, protocol: int, flags: int) -> None:
        self.kernel = kernel
        self.stype = stype
        self.protocol = protocol
        self.flags = O_RDWR | (O_NONBLOCK if flags & SOCK_NONBLOCK else 0)
        self.queue = WaitQueue()
        self.rcvbuf = SOCK_BUF_DEFAULT
        self.sndbuf = SOCK_BUF_DEFAULT
        self.rcvtimeo = 0                   # microseconds; 0: wait without limit
        self.sndtimeo = 0
        self.error = 0                      # SO_ERROR, cleared when read
        self.passcred = False
        self.linger = (0, 0)
        self.opts: dict[int, int] = {}
        self.uid = creds.euid if creds is not None else os.geteuid()
        self.gid = creds.egid if creds is not None else os.getegid()
        self.owner_creds = (0, self.uid, self.gid)   # (pid, uid, gid) of its maker: the
        # syscall layer sets it (task_creds) when a task makes the socket
        self.ino = anon_ino()
        self.ctime_ns = time.time_ns()

    # --- the file ---------------------------------------------------------------------
    def attr(self) -> Attr:
        t = self.ctime_ns
        return Attr(dev=SOCKFS_DEV, ino=self.ino, mode=self.mode, nlink=1, uid=self.uid,
                    gid=self.gid, size=0, blksize=4096, atime_ns=t, mtime_ns=t, ctime_ns=t)

    def watch(self, w) -> None:
        self.queue.watch(w)

    def unwatch(self, w) -> None:
        self.queue.unwatch(w)

    def changed(self) -> None:
        """Wake whoever waits on or polls this socket."""
        self.queue.notify()

    def wait_timeout(self, events: int) -> float | None:
        """Seconds a blocked read (POLLIN) or write waits before EAGAIN (None: no limit)."""
        from kvmbox.abi.poll import POLLIN
        us = self.rcvtimeo if events & POLLIN else self.sndtimeo
        return us / 1e6 if us else None

    def read(self, n: int) -> bytes:
        r = self.recvmsg(None, n, 0)
        for f in r.rights or ():
            drop(f)
        return r.data

    def write(self, data: bytes) -> int:
        return self.sendmsg(None, data, None, None, 0)

    def readable_bytes(self) -> int:
        return 0

    def unsent_bytes(self) -> int:
        """SIOCOUTQ: bytes sent but not yet taken by the peer (nothing is, unless a
        family says so)."""
        return 0

    # --- operations (Linux's sock_no_* answers) ---------------------------------------
    def bind(self, t: "Task", addr: bytes) -> None:
        raise SyscallError(errno.EOPNOTSUPP)

    def listen(self, t: "Task", backlog: int) -> None:
        raise SyscallError(errno.EOPNOTSUPP)

    def accept(self, t: "Task", flags: int) -> "Socket":
        raise SyscallError(errno.EOPNOTSUPP)

    def connect(self, t: "Task", addr: bytes) -> None:
        raise SyscallError(errno.EOPNOTSUPP)

    def pair(self, t: "Task", other: "Socket") -> None:
        """socketpair(2): connect this new socket to `other`."""
        raise SyscallError(errno.EOPNOTSUPP)

    def sendmsg(self, t: "Task | None", data: bytes, addr: bytes | None,
                anc: Ancillary | None, flags: int) -> int:
        """Queue what fits now of `data` (to `addr` if given); EAGAIN when nothing fits."""
        raise SyscallError(errno.EOPNOTSUPP)

    def send_precheck(self, n: int, flags: int) -> None:
        """The errors a send of `n` bytes meets before its bytes are read from the guest
        (a datagram's EMSGSIZE comes before an EFAULT on Linux)."""

    def recvmsg(self, t: "Task | None", n: int, flags: int) -> Received:
        """Up to `n` bytes now; EAGAIN when nothing is there yet."""
        raise SyscallError(errno.EOPNOTSUPP)

    def shutdown(self, how: int) -> None:
        raise SyscallError(errno.EOPNOTSUPP)

    def getsockname(self) -> bytes:
        raise SyscallError(errno.EOPNOTSUPP)

    def getpeername(self) -> bytes:
        raise SyscallError(errno.ENOTCONN)

    def stream_like(self) -> bool:
        """Whether a blocking send goes on until every byte is taken (SOCK_STREAM)."""
        return False

    def listening(self) -> bool:
        return False

    def peer_creds(self) -> tuple[int, int, int]:
        """SO_PEERCRED: (pid, uid, gid) of the peer; (0, -1, -1) when there is none."""
        return 0, 0xFFFFFFFF, 0xFFFFFFFF

    # --- options ----------------------------------------------------------------------
    def getsockopt(self, t: "Task", level: int, name: int) -> bytes:
        """The option's value bytes (the syscall layer trims them to optlen)."""
        if level != SOL_SOCKET:
            return self.proto_getsockopt(t, level, name)
        if name == SO_TYPE:
            v = self.stype
        elif name == SO_DOMAIN:
            v = self.family
        elif name == SO_PROTOCOL:
            v = self.protocol
        elif name == SO_ERROR:
            v, self.error = self.error, 0
        elif name == SO_ACCEPTCONN:
            v = int(self.listening())
        elif name == SO_RCVBUF:
            v = self.rcvbuf
        elif name == SO_SNDBUF:
            v = self.sndbuf
        elif name == SO_PASSCRED:
            v = int(self.passcred)
        elif name == SO_PEERCRED:
            return UCRED.pack(*self.peer_creds())
        elif name == SO_LINGER:
            return LINGER.pack(*self.linger)
        elif name in (SO_RCVTIMEO_OLD, SO_RCVTIMEO_NEW, SO_SNDTIMEO_OLD, SO_SNDTIMEO_NEW):
            us = self.rcvtimeo if name in (SO_RCVTIMEO_OLD, SO_RCVTIMEO_NEW) else self.sndtimeo
            return TIMEVAL.pack(us // 1_000_000, us % 1_000_000)
        elif name == SO_SNDLOWAT:
            v = 1
        elif name == SO_BSDCOMPAT:
            v = 0
        elif name in _BOOL_OPTS or name in _INT_OPTS:
            v = self.opts.get(name, 1 if name == SO_RCVLOWAT else 0)
        else:
            raise SyscallError(errno.ENOPROTOOPT)
        return S32.pack(v)

    def setsockopt(self, t: "Task", level: int, name: int, value: bytes) -> None:
        """Set an option from the guest's `value` bytes (EINVAL when too short)."""
        if level != SOL_SOCKET:
            self.proto_setsockopt(t, level, name, value)
            return
        if name in (SO_RCVTIMEO_OLD, SO_RCVTIMEO_NEW, SO_SNDTIMEO_OLD, SO_SNDTIMEO_NEW):
            us = _timeout(value)
            if name in (SO_RCVTIMEO_OLD, SO_RCVTIMEO_NEW):
                self.rcvtimeo = us
            else:
                self.sndtimeo = us
            return
        if name == SO_LINGER:
            if len(value) < LINGER.size:
                raise SyscallError(errno.EINVAL)
            on, secs = LINGER.unpack_from(value)
            self.linger = (1 if on else 0, max(secs, 0) if on else self.linger[1])
            return
        if len(value) < 4:
            raise SyscallError(errno.EINVAL)
        v = S32.unpack_from(value)[0]
        if name in (SO_RCVBUF, SO_RCVBUFFORCE, SO_SNDBUF, SO_SNDBUFFORCE):
            if name in (SO_RCVBUFFORCE, SO_SNDBUFFORCE) and not _has_net_admin(t):
                raise SyscallError(errno.EPERM)
            if name in (SO_RCVBUF, SO_SNDBUF):
                v = min(v & 0xFFFFFFFF, SOCK_BUF_MAX)
            v = min(max(v, 0) * 2, 0x7FFFFFFF)           # Linux doubles it for overhead
            if name in (SO_RCVBUF, SO_RCVBUFFORCE):
                self.rcvbuf = max(v, SOCK_MIN_RCVBUF)
            else:
                self.sndbuf = max(v, SOCK_MIN_SNDBUF)
            self.changed()
        elif name == SO_PASSCRED:
            self.passcred = bool(v)
        elif name in _BOOL_OPTS:
            self.opts[name] = int(bool(v))
        elif name in _INT_OPTS:
            if name == SO_RCVLOWAT:
                v = max(v, 1) if v >= 0 else 0x7FFFFFFF
            self.opts[name] = v
        elif name in (SO_TYPE, SO_PROTOCOL, SO_DOMAIN, SO_ERROR, SO_ACCEPTCONN, SO_PEERCRED):
            raise SyscallError(errno.ENOPROTOOPT)
        elif name in (SO_SNDLOWAT, SO_BSDCOMPAT):
            if name == SO_SNDLOWAT:
                raise SyscallError(errno.ENOPROTOOPT)
        else:
            raise SyscallError(errno.ENOPROTOOPT)

    def proto_getsockopt(self, t: "Task", level: int, name: int) -> bytes:
        """An option of another level than SOL_SOCKET (the family's own)."""
        raise SyscallError(errno.EOPNOTSUPP)

    def proto_setsockopt(self, t: "Task", level: int, name: int, value: bytes) -> None:
        raise SyscallError(errno.EOPNOTSUPP)


def _timeout(value: bytes) -> int:
    """SO_RCVTIMEO/SO_SNDTIMEO's struct timeval in microseconds (Linux's sock_set_timeout:
    EINVAL when short, EDOM for tv_usec out of range, a negative time is no wait)."""
    if len(value) < TIMEVAL.size:
        raise SyscallError(errno.EINVAL)
    sec, usec = TIMEVAL.unpack_from(value)
    if usec < 0 or usec >= 1_000_000:
        raise SyscallError(errno.EDOM)
    if sec < 0:
        return 0
    return sec * 1_000_000 + usec


def _has_net_admin(t: "Task") -> bool:
    eff = getattr(t.creds, "cap_effective", 0)
    return bool(eff & (1 << CAP_NET_ADMIN))
