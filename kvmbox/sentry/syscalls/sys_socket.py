"""Handlers for the socket calls: socket, socketpair, bind, listen, accept, connect, the
send/recv family (incl. sendmmsg/recvmmsg), shutdown, names and options.

The family does the work (kvmbox/sentry/net/: AF_UNIX in unix.py); this layer reads and
writes guest memory (sockaddrs, msghdrs, iovecs, cmsgs), applies Linux's argument checks
in Linux's order, and blocks: an operation raising EAGAIN on a blocking socket (no
O_NONBLOCK, no MSG_DONTWAIT) is waited out (syscalls/blocking.py) within SO_RCVTIMEO /
SO_SNDTIMEO.  A stream send goes on until every byte is taken; EPIPE raises SIGPIPE
unless MSG_NOSIGNAL.  No call here ever makes a host socket.
"""
from __future__ import annotations

import errno
import time

from kvmbox.abi.fcntl import O_NONBLOCK
from kvmbox.abi.poll import POLLIN, POLLOUT
from kvmbox.abi.socket import (
    MMSG_LEN_OFFSET, MMSGHDR_SIZE, MSG_CMSG_CLOEXEC, MSG_CONTROLLEN_OFFSET, MSG_DONTWAIT,
    MSG_FLAGS_OFFSET, MSG_NAMELEN_OFFSET, MSG_NOSIGNAL, MSG_PEEK, MSG_TRUNC, MSG_WAITALL,
    MSG_WAITFORONE, SHUT_RD, SHUT_RDWR, SOCK_CLOEXEC, SOCK_NONBLOCK, SOCK_MAX,
    SOCK_TYPE_MASK, SOCKADDR_STORAGE_SIZE, SOMAXCONN, AF_MAX,
)
from kvmbox.abi.structs import S32, TIMESPEC, U32
from kvmbox.errors import SyscallError
from kvmbox.sentry.net import msg as M
from kvmbox.sentry.net.socket import Received, Socket, create, task_creds
from kvmbox.sentry.syscalls.args import s32, u32
from kvmbox.sentry.syscalls.blocking import retry
from kvmbox.sentry.syscalls.sys_open import install, install_pair
from kvmbox.sentry.syscalls.table import PARTIAL, Entry

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from kvmbox.sentry.task import Task

SIGPIPE = 13
MAX_RW = 0x7FFFF000


def _sock(t: "Task", fd: int) -> Socket:
    f = t.fds.get(fd)                                  # EBADF
    if not isinstance(f, Socket):
        raise SyscallError(errno.ENOTSOCK)
    return f


def _addr_in(t: "Task", addr: int, length: int) -> bytes:
    """Linux's move_addr_to_kernel: EINVAL outside 0..sizeof(sockaddr_storage), EFAULT."""
    if length < 0 or length > SOCKADDR_STORAGE_SIZE:
        raise SyscallError(errno.EINVAL)
    return t.mm.copy_in(addr, length) if length else b""


def _addr_out(t: "Task", addr: int, lenp: int, value: bytes) -> None:
    """Linux's move_addr_to_user: copy min(*lenp, len) bytes, store the full length."""
    if not addr:
        return
    have = s32(U32.unpack(t.mm.copy_in(lenp, 4))[0])
    if have < 0:
        raise SyscallError(errno.EINVAL)
    if have and value:
        t.mm.copy_out(addr, value[:have])
    t.mm.copy_out(lenp, U32.pack(len(value)))


def _wait(t: "Task", s: Socket, op, events: int, flags: int):
    """op() now, or (blocking socket, no MSG_DONTWAIT) once it stops saying EAGAIN."""
    if flags & MSG_DONTWAIT or s.flags & O_NONBLOCK:
        return op()
    return retry(t, s, op, events)


def _type_flags(stype: int) -> tuple[int, int]:
    flags = stype & ~SOCK_TYPE_MASK
    if flags & ~(SOCK_CLOEXEC | SOCK_NONBLOCK):
        raise SyscallError(errno.EINVAL)
    return stype & SOCK_TYPE_MASK, flags


def _new(t: "Task", domain: int, stype: int, protocol: int) -> tuple[Socket, int]:
    kind, flags = _type_flags(stype)
    if domain < 0 or domain >= AF_MAX:
        raise SyscallError(errno.EAFNOSUPPORT)
    if kind >= SOCK_MAX:
        raise SyscallError(errno.EINVAL)
    s = create(t.kernel, t.creds, domain, kind, protocol, flags)
    s.owner_creds = task_creds(t)
    return s, flags


def socket(t: "Task", a) -> int:
    """Implements Linux syscall socket(2)."""
    s, flags = _new(t, s32(a[0]), s32(a[1]), s32(a[2]))
    return install(t, s, bool(flags & SOCK_CLOEXEC))


def socketpair(t: "Task", a) -> int:
    """Implements Linux syscall socketpair(2)."""
    domain, stype, protocol, sv = s32(a[0]), s32(a[1]), s32(a[2]), a[3]
    s1, flags = _new(t, domain, stype, protocol)
    try:
        s2, _ = _new(t, domain, stype, protocol)
    except SyscallError:
        s1.release()
        raise
    try:
        s1.pair(t, s2)
    except SyscallError:
        s1.release()
        s2.release()
        raise
    install_pair(t, s1, s2, bool(flags & SOCK_CLOEXEC), sv)
    return 0


def bind(t: "Task", a) -> int:
    """Implements Linux syscall bind(2)."""
    s = _sock(t, s32(a[0]))
    s.bind(t, _addr_in(t, a[1], s32(a[2])))
    return 0


def listen(t: "Task", a) -> int:
    """Implements Linux syscall listen(2)."""
    s = _sock(t, s32(a[0]))
    backlog = s32(a[1])
    if backlog & 0xFFFFFFFF > SOMAXCONN:
        backlog = SOMAXCONN
    s.listen(t, backlog)
    return 0


def _accept(t: "Task", fd: int, addr: int, lenp: int, flags: int) -> int:
    if flags & ~(SOCK_CLOEXEC | SOCK_NONBLOCK):
        raise SyscallError(errno.EINVAL)
    s = _sock(t, fd)
    new = _wait(t, s, lambda: s.accept(t, flags), POLLIN, 0)
    if flags & SOCK_NONBLOCK:
        new.flags |= O_NONBLOCK
    nfd = install(t, new, bool(flags & SOCK_CLOEXEC))
    if addr:
        try:
            _addr_out(t, addr, lenp, new.getpeername())
        except SyscallError:
            t.fds.close(nfd)
            raise
    return nfd


def accept(t: "Task", a) -> int:
    """Implements Linux syscall accept(2)."""
    return _accept(t, s32(a[0]), a[1], a[2], 0)


def accept4(t: "Task", a) -> int:
    """Implements Linux syscall accept4(2)."""
    return _accept(t, s32(a[0]), a[1], a[2], s32(a[3]))


def connect(t: "Task", a) -> int:
    """Implements Linux syscall connect(2)."""
    s = _sock(t, s32(a[0]))
    addr = _addr_in(t, a[1], s32(a[2]))
    _wait(t, s, lambda: s.connect(t, addr), POLLOUT, 0)
    return 0


def getsockname(t: "Task", a) -> int:
    """Implements Linux syscall getsockname(2)."""
    s = _sock(t, s32(a[0]))
    _addr_out(t, a[1], a[2], s.getsockname())
    return 0


def getpeername(t: "Task", a) -> int:
    """Implements Linux syscall getpeername(2)."""
    s = _sock(t, s32(a[0]))
    _addr_out(t, a[1], a[2], s.getpeername())
    return 0


def shutdown(t: "Task", a) -> int:
    """Implements Linux syscall shutdown(2)."""
    s = _sock(t, s32(a[0]))
    how = s32(a[1])
    if how < SHUT_RD or how > SHUT_RDWR:
        raise SyscallError(errno.EINVAL)
    s.shutdown(how)
    return 0


def setsockopt(t: "Task", a) -> int:
    """Implements Linux syscall setsockopt(2)."""
    s = _sock(t, s32(a[0]))
    optlen = s32(a[4])
    if optlen < 0:
        raise SyscallError(errno.EINVAL)
    value = t.mm.copy_in(a[3], min(optlen, 4096)) if optlen else b""
    s.setsockopt(t, s32(a[1]), s32(a[2]), value)
    return 0


def getsockopt(t: "Task", a) -> int:
    """Implements Linux syscall getsockopt(2)."""
    s = _sock(t, s32(a[0]))
    lenp = a[4]
    optlen = s32(U32.unpack(t.mm.copy_in(lenp, 4))[0])
    if optlen < 0:
        raise SyscallError(errno.EINVAL)
    value = s.getsockopt(t, s32(a[1]), s32(a[2]))[:optlen]
    if value:
        t.mm.copy_out(a[3], value)
    t.mm.copy_out(lenp, U32.pack(len(value)))
    return 0


# --- sending -------------------------------------------------------------------------
def _send(t: "Task", s: Socket, data: bytes, addr: bytes | None, anc, flags: int) -> int:
    """Send `data`: all of it for a blocking stream socket, else what one call takes."""
    done = 0
    try:
        while True:
            chunk, first = (data[done:] if done else data), anc
            n = _wait(t, s, lambda: s.sendmsg(t, chunk, addr, first, flags), POLLOUT, flags)
            anc = None                         # the family took the control data
            done += n
            if done >= len(data) or not s.stream_like() or flags & MSG_DONTWAIT \
                    or s.flags & O_NONBLOCK:
                return done
    except SyscallError as e:
        M.release(anc)
        if done:
            return done
        if e.errno == errno.EPIPE and not flags & MSG_NOSIGNAL:
            t.queue_signal(SIGPIPE)
        raise


def sendto(t: "Task", a) -> int:
    """Implements Linux syscall sendto(2)."""
    s = _sock(t, s32(a[0]))
    buf, n, flags = a[1], min(a[2], MAX_RW), s32(a[3])
    s.send_precheck(n, flags)
    data = t.mm.copy_in(buf, n) if n else b""
    addr = _addr_in(t, a[4], s32(a[5])) if a[4] else None
    return _send(t, s, data, addr or None, None, flags)


def _sendmsg(t: "Task", s: Socket, hdr_addr: int, flags: int) -> int:
    h = M.read_msghdr(t, hdr_addr)
    addr = t.mm.copy_in(h.name, h.namelen) if h.namelen else None
    s.send_precheck(min(sum(length for _, length in h.iov), MAX_RW), flags)
    data = M.gather(t, h.iov, MAX_RW)
    anc = M.parse_control(t, h.control, h.controllen)
    return _send(t, s, data, addr, anc, flags)


def sendmsg(t: "Task", a) -> int:
    """Implements Linux syscall sendmsg(2)."""
    return _sendmsg(t, _sock(t, s32(a[0])), a[1], s32(a[2]))


def sendmmsg(t: "Task", a) -> int:
    """Implements Linux syscall sendmmsg(2)."""
    s = _sock(t, s32(a[0]))
    vec, vlen, flags = a[1], min(u32(a[2]), M.UIO_MAXIOV), s32(a[3])
    return _each_mmsg(t, vec, vlen, lambda entry, _n: _sendmsg(t, s, entry, flags))


def _each_mmsg(t: "Task", vec: int, vlen: int, one, stop=lambda: False) -> int:
    """sendmmsg/recvmmsg: one(entry address, index) per mmsghdr, its result stored in
    msg_len, until `vlen`, stop(), or an error (returned when it is the first)."""
    done = 0
    while done < vlen:
        entry = vec + done * MMSGHDR_SIZE
        try:
            n = one(entry, done)
            t.mm.copy_out(entry + MMSG_LEN_OFFSET, U32.pack(n))
        except SyscallError:
            if done:
                return done
            raise
        done += 1
        if stop():
            break
    return done


# --- receiving -----------------------------------------------------------------------
def _recv(t: "Task", s: Socket, n: int, flags: int) -> Received:
    """One receive of up to `n` bytes; with MSG_WAITALL on a stream, until `n` bytes,
    EOF, control data, an error or a signal after some bytes."""
    r = _wait(t, s, lambda: s.recvmsg(t, n, flags), POLLIN, flags)
    if not (flags & MSG_WAITALL and s.stream_like()) or flags & (MSG_PEEK | MSG_DONTWAIT):
        return r
    parts = [r.data]
    got = len(r.data)
    while got < n and r.data and not r.rights:
        try:
            more = _wait(t, s, lambda: s.recvmsg(t, n - got, flags), POLLIN, flags)
        except SyscallError:
            break
        if not more.data:
            break
        parts.append(more.data)
        got += len(more.data)
        r.rights = more.rights
    r.data = b"".join(parts)
    return r


def _deliver(t: "Task", s: Socket, r: Received, flags: int) -> int:
    """The value a receive returns: the bytes, or with MSG_TRUNC the message's length."""
    if flags & MSG_TRUNC and r.length >= 0:
        return r.length
    return len(r.data)


def recvfrom(t: "Task", a) -> int:
    """Implements Linux syscall recvfrom(2)."""
    s = _sock(t, s32(a[0]))
    buf, n, flags = a[1], min(a[2], MAX_RW), s32(a[3])
    r = _recv(t, s, n, flags)
    M.release(r)
    if r.data:
        t.mm.copy_out(buf, r.data)
    if a[4]:
        _addr_out(t, a[4], a[5], r.addr or b"")
    return _deliver(t, s, r, flags)


def _recvmsg(t: "Task", s: Socket, hdr_addr: int, flags: int) -> int:
    h = M.read_msghdr(t, hdr_addr)
    total = sum(length for _, length in h.iov)
    r = _recv(t, s, min(total, MAX_RW), flags)
    ctrl, cflags = b"", 0
    if h.control and h.controllen > 0 or r.rights:
        ctrl, cflags = M.build_control(t, r, s.passcred, h.controllen if h.control else 0,
                                       bool(flags & MSG_CMSG_CLOEXEC))
    M.scatter(t, h.iov, r.data)
    if ctrl:
        t.mm.copy_out(h.control, ctrl)
    addr = r.addr or b""
    if h.name:
        if addr:
            t.mm.copy_out(h.name, addr[:h.namelen])
        t.mm.copy_out(hdr_addr + MSG_NAMELEN_OFFSET, S32.pack(len(addr)))
    t.mm.copy_out(hdr_addr + MSG_CONTROLLEN_OFFSET, len(ctrl).to_bytes(8, "little"))
    t.mm.copy_out(hdr_addr + MSG_FLAGS_OFFSET, S32.pack(r.flags | cflags))
    return _deliver(t, s, r, flags)


def recvmsg(t: "Task", a) -> int:
    """Implements Linux syscall recvmsg(2)."""
    return _recvmsg(t, _sock(t, s32(a[0])), a[1], s32(a[2]))


def recvmmsg(t: "Task", a) -> int:
    """Implements Linux syscall recvmmsg(2)."""
    s = _sock(t, s32(a[0]))
    vec, vlen, flags, tsp = a[1], min(u32(a[2]), M.UIO_MAXIOV), s32(a[3]), a[4]
    deadline = None
    if tsp:
        sec, nsec = TIMESPEC.unpack(t.mm.copy_in(tsp, TIMESPEC.size))
        if sec < 0 or nsec < 0 or nsec >= 1_000_000_000:
            raise SyscallError(errno.EINVAL)
        deadline = time.monotonic() + sec + nsec / 1e9
    state = {"flags": flags}

    def one(entry: int, _n: int) -> int:
        n = _recvmsg(t, s, entry, state["flags"])
        if flags & MSG_WAITFORONE:
            state["flags"] |= MSG_DONTWAIT
        return n

    return _each_mmsg(t, vec, vlen, one,
                      lambda: deadline is not None and time.monotonic() >= deadline)


_NOTE = ("AF_UNIX, and AF_INET/AF_INET6 on a loopback of its own, in the Sentry (never a "
         "host socket); see docs/network.md")
ENTRIES = tuple(Entry(name, globals()[name], PARTIAL, _NOTE) for name in (
    "socket", "socketpair", "bind", "listen", "accept", "accept4", "connect", "getsockname",
    "getpeername", "shutdown", "setsockopt", "getsockopt", "sendto", "sendmsg", "sendmmsg",
    "recvfrom", "recvmsg", "recvmmsg"))
