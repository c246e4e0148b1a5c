"""Handlers for the descriptor table itself: close, close_range, dup/dup2/dup3, fcntl, flock,
and the objects made without a path: pipe/pipe2, eventfd/eventfd2.

Locks: one process owns every descriptor, so POSIX record locks never conflict
with each other; they are kept per node in FdTable.posix_locks (dropped when
any descriptor of the node closes).  flock(2) and OFD locks belong to open
file descriptions, so two opens of one file in this process can conflict (and
OFD locks conflict with the process's POSIX locks): they are recorded on the
descriptions and checked against the others in the table naming the same node.
"""
from __future__ import annotations

import errno
import struct

from kvmbox.abi.fcntl import (FASYNC, FD_CLOEXEC, F_ADD_SEALS, F_DUPFD, F_DUPFD_CLOEXEC, F_GETFD, F_GETFL,
                              F_GETLEASE, F_GETLK, F_GETOWN, F_GETPIPE_SZ, F_GETSIG, F_GET_SEALS, F_OFD_GETLK,
                              F_OFD_SETLK, F_OFD_SETLKW, F_RDLCK, F_SETFD, F_SETFL, F_SETLK, F_SETLKW,
                              F_SETOWN, F_SETPIPE_SZ, F_SETSIG, F_UNLCK, F_WRLCK, O_APPEND, O_CLOEXEC,
                              O_DIRECT, O_NOATIME, O_NONBLOCK)
from kvmbox.errors import SyscallError
from kvmbox.sentry.syscalls.args import s32, s64, u32
from kvmbox.sentry.syscalls.sys_open import install, nofile_limit
from kvmbox.sentry.syscalls.table import PARTIAL, SUPPORTED, Entry
from kvmbox.sentry.vfs.opath import is_path_only

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from kvmbox.sentry.files import FileDescription
    from kvmbox.sentry.task import Task

Args = tuple[int, int, int, int, int, int]

SETFL_MASK = O_APPEND | O_NONBLOCK | O_DIRECT | O_NOATIME | FASYNC
CLOSE_RANGE_UNSHARE, CLOSE_RANGE_CLOEXEC = 1 << 1, 1 << 2
FLOCK = struct.Struct("<hh4xqqi4x")
LOCK_SH, LOCK_EX, LOCK_NB, LOCK_UN = 1, 2, 4, 8
OFFSET_MAX = (1 << 63) - 1


# --- closing and duplicating ---------------------------------------------------------------
def close(t: "Task", a: Args) -> int:
    """Implements Linux syscall close(2)."""
    t.fds.close(s32(a[0]))
    return 0


def close_range(t: "Task", a: Args) -> int:
    """Implements Linux syscall close_range(2)."""
    first, last, flags = u32(a[0]), u32(a[1]), u32(a[2])
    if flags & ~(CLOSE_RANGE_UNSHARE | CLOSE_RANGE_CLOEXEC) or first > last:
        raise SyscallError(errno.EINVAL)
    t.fds.close_range(first, last, bool(flags & CLOSE_RANGE_CLOEXEC))
    return 0


def dup(t: "Task", a: Args) -> int:
    """Implements Linux syscall dup(2)."""
    f = t.fds.get(s32(a[0]))
    return t.fds.alloc(f, limit=nofile_limit(t))


def _dup_to(t: "Task", old: int, new: int, cloexec: bool) -> int:
    f = t.fds.get(old)
    if new < 0 or new >= nofile_limit(t):
        raise SyscallError(errno.EBADF)
    t.fds.install(new, f, cloexec)
    return new


def dup2(t: "Task", a: Args) -> int:
    """Implements Linux syscall dup2(2)."""
    old, new = s32(a[0]), s32(a[1])
    if old == new:
        t.fds.get(old)                       # EBADF when not open
        return new
    return _dup_to(t, old, new, False)


def dup3(t: "Task", a: Args) -> int:
    """Implements Linux syscall dup3(2)."""
    old, new, flags = s32(a[0]), s32(a[1]), s32(a[2])
    if flags & ~O_CLOEXEC:
        raise SyscallError(errno.EINVAL)
    if old == new:
        raise SyscallError(errno.EINVAL)
    return _dup_to(t, old, new, bool(flags & O_CLOEXEC))


# --- fcntl ---------------------------------------------------------------------------------
def _read_flock(t: "Task", addr: int, f: "FileDescription") -> tuple[int, int, int, int]:
    """(type, whence, start, len) of a struct flock, with Linux's validation."""
    ltype, whence, start, length, _pid = FLOCK.unpack(t.mm.copy_in(addr, FLOCK.size))
    if ltype not in (F_RDLCK, F_WRLCK, F_UNLCK) or whence not in (0, 1, 2):
        raise SyscallError(errno.EINVAL)
    if whence == 1:
        base = f.seek(0, 1)
    elif whence == 2:
        base = f.attr().size
    else:
        base = 0
    begin = base + start
    if length < 0:
        begin, end = begin + length, begin - 1
    else:
        end = begin + length - 1 if length else OFFSET_MAX
    if begin < 0 or end < begin - 1:
        raise SyscallError(errno.EINVAL)
    return ltype, begin, end, length


def _node_of(f: "FileDescription"):
    loc = f.location
    return getattr(f, "node", None) or (loc.node if loc is not None else None)


def _conflict(t: "Task", f: "FileDescription", ofd: bool, ltype: int, begin: int, end: int):
    """(type, begin, end, pid) of a lock another owner holds that conflicts, or None.

    Owners: each description for OFD locks, the process for POSIX locks; so a POSIX
    request meets only OFD locks, and an OFD request meets other descriptions' OFD
    locks and the process's POSIX locks."""
    node = _node_of(f)
    if node is None:
        return None

    def hits(locks, pid):
        for otype, ob, oe in locks:
            if ob <= end and begin <= oe and (ltype == F_WRLCK or otype == F_WRLCK):
                return otype, ob, oe, pid
        return None

    if ofd:
        hit = hits(t.fds.posix_locks.get(node, ()), t.tgid)
        if hit:
            return hit
    for _fd, other in t.fds.items():
        if (ofd and other is f) or _node_of(other) is not node:
            continue
        hit = hits(getattr(other, "_ofd_locks", ()), -1)
        if hit:
            return hit
    return None


def _merge(locks, ltype: int, begin: int, end: int) -> list:
    """`locks` with [begin, end] set to ltype (F_UNLCK removes), older ranges split."""
    kept = []
    for otype, ob, oe in locks:
        if oe < begin or ob > end:
            kept.append((otype, ob, oe))
            continue
        if ob < begin:
            kept.append((otype, ob, begin - 1))
        if oe > end:
            kept.append((otype, end + 1, oe))
    if ltype != F_UNLCK:
        kept.append((ltype, begin, end))
    return kept


def _lock(t: "Task", f: "FileDescription", cmd: int, arg: int) -> int:
    ltype, begin, end, _len = _read_flock(t, arg, f)
    ofd = cmd in (F_OFD_GETLK, F_OFD_SETLK, F_OFD_SETLKW)
    if ofd and FLOCK.unpack(t.mm.copy_in(arg, FLOCK.size))[4] != 0:
        raise SyscallError(errno.EINVAL)                # l_pid must be 0 for OFD locks
    if cmd in (F_GETLK, F_OFD_GETLK):
        if ltype == F_UNLCK:
            raise SyscallError(errno.EINVAL)
        hit = _conflict(t, f, ofd, ltype, begin, end)
        if hit is None:
            t.mm.copy_out(arg, struct.pack("<h", F_UNLCK))
        else:
            otype, ob, oe, pid = hit
            t.mm.copy_out(arg, FLOCK.pack(otype, 0, ob, 0 if oe == OFFSET_MAX else oe - ob + 1, pid))
        return 0
    if ltype == F_RDLCK and not f.readable or ltype == F_WRLCK and not f.writable:
        raise SyscallError(errno.EBADF)
    if ltype != F_UNLCK and _conflict(t, f, ofd, ltype, begin, end) is not None:
        if cmd in (F_SETLKW, F_OFD_SETLKW):
            _wait_forever(t)                         # only this process could release it
        raise SyscallError(errno.EAGAIN)
    node = _node_of(f)
    if ofd:
        f._ofd_locks = _merge(getattr(f, "_ofd_locks", ()), ltype, begin, end)  # type: ignore
    elif node is not None:
        locks = _merge(t.fds.posix_locks.get(node, ()), ltype, begin, end)
        if locks:
            t.fds.posix_locks[node] = locks
        else:
            t.fds.posix_locks.pop(node, None)
    return 0


def fcntl(t: "Task", a: Args) -> int:
    """Implements Linux syscall fcntl(2)."""
    fd, cmd, arg = s32(a[0]), s32(a[1]), a[2]
    f = t.fds.get(fd)
    if cmd in (F_DUPFD, F_DUPFD_CLOEXEC):
        lowest = s64(arg)
        if lowest < 0 or lowest >= nofile_limit(t):
            raise SyscallError(errno.EINVAL)
        return t.fds.alloc(f, cloexec=cmd == F_DUPFD_CLOEXEC, lowest=lowest,
                           limit=nofile_limit(t))
    if cmd == F_GETFD:
        return FD_CLOEXEC if t.fds.get_cloexec(fd) else 0
    if cmd == F_SETFD:
        t.fds.set_cloexec(fd, bool(arg & FD_CLOEXEC))
        return 0
    if cmd == F_GETFL:
        return f.flags
    if is_path_only(f):
        raise SyscallError(errno.EBADF)
    if cmd == F_SETFL:
        f.flags = (f.flags & ~SETFL_MASK) | (u32(arg) & SETFL_MASK)
        return 0
    if cmd in (F_GETLK, F_SETLK, F_SETLKW, F_OFD_GETLK, F_OFD_SETLK, F_OFD_SETLKW):
        return _lock(t, f, cmd, arg)
    if cmd == F_GETPIPE_SZ:
        size = getattr(f, "pipe_size", None)
        if size is None:
            raise SyscallError(errno.EBADF)
        return size()
    if cmd == F_SETPIPE_SZ:
        setter = getattr(f, "set_pipe_size", None)
        if setter is None:
            raise SyscallError(errno.EBADF)
        return setter(u32(arg), t.creds.euid == 0)
    if cmd in (F_ADD_SEALS, F_GET_SEALS):
        seals = getattr(f, "seals", None)
        if seals is None:
            raise SyscallError(errno.EINVAL)
        return seals(cmd, u32(arg))
    if cmd == F_GETOWN:
        return getattr(f, "owner", 0)
    if cmd == F_SETOWN:
        f.owner = s32(arg)                               # type: ignore[attr-defined]
        return 0
    if cmd == F_GETSIG:
        return getattr(f, "sig", 0)
    if cmd == F_SETSIG:
        if not 0 <= arg <= 64:
            raise SyscallError(errno.EINVAL)
        f.sig = arg                                      # type: ignore[attr-defined]
        return 0
    if cmd == F_GETLEASE:
        return F_UNLCK
    raise SyscallError(errno.EINVAL)


def flock(t: "Task", a: Args) -> int:
    """Implements Linux syscall flock(2)."""
    fd, op = s32(a[0]), s32(a[1])
    f = t.fds.get(fd)
    if is_path_only(f):
        raise SyscallError(errno.EBADF)
    kind = op & ~LOCK_NB
    if kind not in (LOCK_SH, LOCK_EX, LOCK_UN):
        raise SyscallError(errno.EINVAL)
    if kind == LOCK_UN:
        f._flock = 0                                     # type: ignore[attr-defined]
        return 0
    node = _node_of(f)
    for _fd, other in t.fds.items():
        if other is f or node is None or _node_of(other) is not node:
            continue
        held = getattr(other, "_flock", 0)
        if held and (held == LOCK_EX or kind == LOCK_EX):
            if not op & LOCK_NB:
                _wait_forever(t)                         # nothing else could unlock it
            raise SyscallError(errno.EWOULDBLOCK)
    f._flock = kind                                      # type: ignore[attr-defined]
    return 0


def _wait_forever(t: "Task") -> None:
    """A lock wait nothing in a one-process sandbox can satisfy: it ends by a signal
    (ERESTARTSYS: EINTR, or a restart under SA_RESTART) or a stop."""
    from kvmbox.sentry.signals.deliver import ERESTARTSYS
    from kvmbox.sentry.waiter import block
    block(t, lambda: False, interrupt=ERESTARTSYS)


# --- pipes and eventfds --------------------------------------------------------------------
def _pipe(t: "Task", addr: int, flags: int) -> int:
    from kvmbox.sentry.pipe import make_pipe
    if flags & ~(O_CLOEXEC | O_NONBLOCK | O_DIRECT):
        raise SyscallError(errno.EINVAL)
    r, w = make_pipe(flags)
    cloexec = bool(flags & O_CLOEXEC)
    try:
        rfd = install(t, r, cloexec)
    except SyscallError:
        w.release()
        raise
    try:
        wfd = install(t, w, cloexec)
    except SyscallError:
        t.fds.close(rfd)
        raise
    try:
        t.mm.copy_out(addr, struct.pack("<ii", rfd, wfd))
    except SyscallError:
        t.fds.close(rfd)
        t.fds.close(wfd)
        raise
    return 0


def pipe(t: "Task", a: Args) -> int:
    """Implements Linux syscall pipe(2)."""
    return _pipe(t, a[0], 0)


def pipe2(t: "Task", a: Args) -> int:
    """Implements Linux syscall pipe2(2)."""
    return _pipe(t, a[0], s32(a[1]))


def _eventfd(t: "Task", initval: int, flags: int) -> int:
    from kvmbox.sentry.eventfd import EFD_CLOEXEC, EFD_NONBLOCK, EFD_SEMAPHORE, EventFd
    if flags & ~(EFD_CLOEXEC | EFD_NONBLOCK | EFD_SEMAPHORE):
        raise SyscallError(errno.EINVAL)
    return install(t, EventFd(t.kernel, initval, flags), bool(flags & EFD_CLOEXEC))


def eventfd(t: "Task", a: Args) -> int:
    """Implements Linux syscall eventfd(2)."""
    return _eventfd(t, u32(a[0]), 0)


def eventfd2(t: "Task", a: Args) -> int:
    """Implements Linux syscall eventfd2(2)."""
    return _eventfd(t, u32(a[0]), s32(a[1]))


ENTRIES = (
    Entry("close", close, SUPPORTED),
    Entry("close_range", close_range, SUPPORTED, "CLOSE_RANGE_UNSHARE is a no-op (one table)"),
    Entry("dup", dup, SUPPORTED),
    Entry("dup2", dup2, SUPPORTED),
    Entry("dup3", dup3, SUPPORTED),
    Entry("fcntl", fcntl, PARTIAL, "POSIX locks never conflict (one process); OFD locks checked "
          "within the process; no leases, notify or signal-driven I/O; seals only on memfds"),
    Entry("flock", flock, PARTIAL, "conflicts between descriptions of this process"),
    Entry("pipe", pipe, SUPPORTED, "in-Sentry buffers, Linux's page-slot accounting"),
    Entry("pipe2", pipe2, PARTIAL, "O_DIRECT recorded, not packet mode"),
    Entry("eventfd", eventfd, SUPPORTED),
    Entry("eventfd2", eventfd2, SUPPORTED),
)
