"""Handlers for the descriptor table itself: close, close_range, dup/dup2/dup3, fcntl, flock,
and the objects made without a path: pipe/pipe2, eventfd/eventfd2.

Locks (fcntl's record locks, OFD locks, flock): the handlers check their arguments as
Linux does and hand them to the sandbox's LockTable (kvmbox/sentry/locks.py).
"""
from __future__ import annotations

import errno
import struct

from kvmbox.abi.fcntl import (FASYNC, FD_CLOEXEC, F_ADD_SEALS, F_DUPFD, F_DUPFD_CLOEXEC, F_GETFD, F_GETFL,
                              F_GETLEASE, F_GETLK, F_GETOWN, F_GETPIPE_SZ, F_GETSIG, F_GET_SEALS, F_OFD_GETLK,
                              F_OFD_SETLK, F_OFD_SETLKW, F_RDLCK, F_SETFD, F_SETFL, F_SETLK, F_SETLKW,
                              F_SETOWN, F_SETPIPE_SZ, F_SETSIG, F_UNLCK, F_WRLCK, O_APPEND, O_CLOEXEC,
                              O_DIRECT, O_NOATIME, O_NONBLOCK)
from kvmbox.abi.flock import (FLOCK, LOCK_EX, LOCK_MAND, LOCK_NB, LOCK_SH, LOCK_UN, OFFSET_MAX,
                              SEEK_CUR, SEEK_END, SEEK_SET)
from kvmbox.errors import SyscallError
from kvmbox.sentry import locks
from kvmbox.sentry.syscalls.args import s32, s64, u32
from kvmbox.sentry.syscalls.sys_open import install, install_pair, nofile_limit
from kvmbox.sentry.syscalls.table import PARTIAL, SUPPORTED, Entry
from kvmbox.sentry.vfs.opath import is_path_only

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from kvmbox.sentry.files import FileDescription
    from kvmbox.sentry.task import Task

Args = tuple[int, int, int, int, int, int]

SETFL_MASK = O_APPEND | O_NONBLOCK | O_DIRECT | O_NOATIME | FASYNC
CLOSE_RANGE_UNSHARE, CLOSE_RANGE_CLOEXEC = 1 << 1, 1 << 2
_FLOCK_TYPES = {LOCK_SH: F_RDLCK, LOCK_EX: F_WRLCK, LOCK_UN: F_UNLCK}


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
def _lock_range(f: "FileDescription", whence: int, start: int, length: int) -> tuple[int, int]:
    """[begin, end] of a struct flock's l_whence/l_start/l_len, with Linux's checks and
    their order (flock64_to_posix_lock)."""
    if whence == SEEK_SET:
        base = 0
    elif whence == SEEK_CUR:
        try:
            base = f.seek(0, SEEK_CUR)
        except SyscallError:                        # a pipe: f_pos, which stays 0
            base = 0
    elif whence == SEEK_END:
        base = f.attr().size
    else:
        raise SyscallError(errno.EINVAL)
    if start > OFFSET_MAX - base:
        raise SyscallError(errno.EOVERFLOW)
    begin = base + start
    if begin < 0:
        raise SyscallError(errno.EINVAL)
    if length > 0:
        if length - 1 > OFFSET_MAX - begin:
            raise SyscallError(errno.EOVERFLOW)
        return begin, begin + length - 1
    if length < 0:
        if begin + length < 0:
            raise SyscallError(errno.EINVAL)
        return begin + length, begin - 1
    return begin, OFFSET_MAX


def _lock(t: "Task", f: "FileDescription", cmd: int, arg: int) -> int:
    """F_GETLK, F_SETLK, F_SETLKW and the OFD three, with Linux's order of checks."""
    ltype, whence, start, length, pid = FLOCK.unpack(t.mm.copy_in(arg, FLOCK.size))
    ofd = cmd in (F_OFD_GETLK, F_OFD_SETLK, F_OFD_SETLKW)
    owner = f if ofd else locks.posix_owner(t)
    table = t.kernel.file_locks
    if cmd in (F_GETLK, F_OFD_GETLK):
        if ltype not in (F_RDLCK, F_WRLCK) and not (ofd and ltype == F_UNLCK):
            raise SyscallError(errno.EINVAL)
        begin, end = _lock_range(f, whence, start, length)
        if ofd and pid != 0:
            raise SyscallError(errno.EINVAL)
        hit = table.test(f.lock_key(), locks.Record(owner, ltype, begin, end))
        if hit is None:
            t.mm.copy_out(arg, struct.pack("<h", F_UNLCK))
        else:
            size = 0 if hit.end == OFFSET_MAX else hit.end - hit.start + 1
            t.mm.copy_out(arg, FLOCK.pack(hit.type, SEEK_SET, hit.start, size,
                                          -1 if hit.ofd else hit.pid))
        return 0
    begin, end = _lock_range(f, whence, start, length)
    if ltype not in (F_RDLCK, F_WRLCK, F_UNLCK):
        raise SyscallError(errno.EINVAL)
    if ltype == F_RDLCK and not f.readable or ltype == F_WRLCK and not f.writable:
        raise SyscallError(errno.EBADF)
    if ofd and pid != 0:
        raise SyscallError(errno.EINVAL)
    req = locks.Record(owner, ltype, begin, end, locks.holder_pid(t), ofd)
    table.set_range(t, f.lock_key(), req, wait=cmd in (F_SETLKW, F_OFD_SETLKW))
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
    fd, op = s32(a[0]), u32(a[1])
    if op & LOCK_MAND:
        return 0                 # Linux now ignores these (they never locked anything)
    ltype = _FLOCK_TYPES.get(op & ~LOCK_NB)
    if ltype is None:
        raise SyscallError(errno.EINVAL)
    f = t.fds.get(fd)
    if is_path_only(f) or ltype != F_UNLCK and not (f.readable or f.writable):
        raise SyscallError(errno.EBADF)
    t.kernel.file_locks.flock(t, f.lock_key(), f, ltype, not op & LOCK_NB, locks.holder_pid(t))
    return 0


# --- pipes and eventfds --------------------------------------------------------------------
def _pipe(t: "Task", addr: int, flags: int) -> int:
    from kvmbox.sentry.pipe import make_pipe
    if flags & ~(O_CLOEXEC | O_NONBLOCK | O_DIRECT):
        raise SyscallError(errno.EINVAL)
    r, w = make_pipe(flags)
    install_pair(t, r, w, bool(flags & O_CLOEXEC), addr)
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
    Entry("fcntl", fcntl, PARTIAL, "POSIX and OFD record locks sandbox-wide (EDEADLK, blocking "
          "waits); no leases, notify or signal-driven I/O; seals only on memfds"),
    Entry("flock", flock, SUPPORTED, "sandbox-wide, owned by the open file description"),
    Entry("pipe", pipe, SUPPORTED, "in-Sentry buffers, Linux's page-slot accounting"),
    Entry("pipe2", pipe2, PARTIAL, "O_DIRECT recorded, not packet mode"),
    Entry("eventfd", eventfd, SUPPORTED),
    Entry("eventfd2", eventfd2, SUPPORTED),
)
