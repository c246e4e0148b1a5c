"""Handlers that change a file's attributes or size: chmod, chown, utimensat and the older
time setters, truncate, ftruncate, fallocate; and the sync family.

Ownership rules follow Linux for the task's credentials: the owner (or root)
may chmod and set explicit times; only root may give a file away; an owner may
change the group to one of its own; setting times to "now" needs ownership or
write permission.
"""
from __future__ import annotations

import errno
import stat as S
import struct
import time

from kvmbox.errors import SyscallError
from kvmbox.sentry.syscalls.args import s32, s64, u32
from kvmbox.sentry.syscalls.fsize import check_allocate, check_growth
from kvmbox.sentry.syscalls.table import PARTIAL, SUPPORTED, Entry
from kvmbox.sentry.vfs import at, perm
from kvmbox.sentry.vfs.opath import is_path_only
from kvmbox.sentry.vfs.path import Location

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from kvmbox.sentry.task import Task

Args = tuple[int, int, int, int, int, int]

UTIME_NOW, UTIME_OMIT = (1 << 30) - 1, (1 << 30) - 2
TIMESPEC2 = struct.Struct("<qqqq")
TIMEVAL2 = struct.Struct("<qqqq")
UTIMBUF = struct.Struct("<qq")
FALLOC_FL_KEEP_SIZE = 0x01
FALLOC_SUPPORTED_MASK = 0x7F
NO_ID = 0xFFFFFFFF


def _fd_location(t: "Task", fd: int, *, allow_path: bool = False) -> Location:
    f = t.fds.get(fd)
    if is_path_only(f) and not allow_path:
        raise SyscallError(errno.EBADF)
    if f.location is None:
        raise SyscallError(errno.EBADF if allow_path else errno.EINVAL)
    return f.location


def _is_owner(t: "Task", loc: Location) -> bool:
    return t.creds.euid == 0 or t.creds.euid == loc.node.attr().uid


# --- chmod -----------------------------------------------------------------------------------
def do_chmod(t: "Task", loc: Location, mode: int) -> int:
    perm.check_writable(loc)
    if not _is_owner(t, loc):
        raise SyscallError(errno.EPERM)
    mode &= 0o7777
    a = loc.node.attr()
    if t.creds.euid != 0 and mode & S.S_ISGID and a.gid != t.creds.egid and \
            a.gid not in getattr(t.creds, "groups", ()):
        mode &= ~S.S_ISGID
    loc.node.setattr(mode=mode)
    return 0


def chmod(t: "Task", a: Args) -> int:
    """Implements Linux syscall chmod(2)."""
    return do_chmod(t, at.path_at(t, at.AT_FDCWD, a[0]), u32(a[1]))


def fchmod(t: "Task", a: Args) -> int:
    """Implements Linux syscall fchmod(2)."""
    f = t.fds.get(s32(a[0]))
    if is_path_only(f):
        raise SyscallError(errno.EBADF)
    if f.location is None:
        f.mode = S.S_IFMT(f.mode) | (u32(a[1]) & 0o7777)   # pipes: the anonymous inode
        return 0
    return do_chmod(t, f.location, u32(a[1]))


def fchmodat(t: "Task", a: Args) -> int:
    """Implements Linux syscall fchmodat(2)."""
    return do_chmod(t, at.path_at(t, s32(a[0]), a[1]), u32(a[2]))


# --- chown -----------------------------------------------------------------------------------
def do_chown(t: "Task", loc: Location, uid: int, gid: int) -> int:
    perm.check_writable(loc)
    a = loc.node.attr()
    c = t.creds
    new_uid = None if uid == NO_ID else uid
    new_gid = None if gid == NO_ID else gid
    if c.euid != 0:
        if new_uid is not None and new_uid != a.uid:
            raise SyscallError(errno.EPERM)
        if new_gid is not None and new_gid != a.gid and (
                c.euid != a.uid or (new_gid != c.egid and new_gid not in getattr(c, "groups", ()))):
            raise SyscallError(errno.EPERM)
        if (new_uid is not None or new_gid is not None) and c.euid != a.uid:
            raise SyscallError(errno.EPERM)
    mode = None
    if not S.S_ISDIR(a.mode) and not S.S_ISLNK(a.mode) and (new_uid is not None or
                                                             new_gid is not None):
        m = a.mode & 0o7777
        if m & S.S_ISUID:
            m &= ~S.S_ISUID
        if m & S.S_ISGID and m & S.S_IXGRP:
            m &= ~S.S_ISGID
        if m != a.mode & 0o7777:
            mode = m
    loc.node.setattr(uid=new_uid, gid=new_gid, mode=mode)
    return 0


def chown(t: "Task", a: Args) -> int:
    """Implements Linux syscall chown(2)."""
    return do_chown(t, at.path_at(t, at.AT_FDCWD, a[0]), u32(a[1]), u32(a[2]))


def lchown(t: "Task", a: Args) -> int:
    """Implements Linux syscall lchown(2)."""
    return do_chown(t, at.path_at(t, at.AT_FDCWD, a[0], follow=False), u32(a[1]), u32(a[2]))


def fchown(t: "Task", a: Args) -> int:
    """Implements Linux syscall fchown(2)."""
    f = t.fds.get(s32(a[0]))
    if is_path_only(f):
        raise SyscallError(errno.EBADF)
    if f.location is None:
        return 0                                    # anonymous inodes: nothing kept
    return do_chown(t, f.location, u32(a[1]), u32(a[2]))


def fchownat(t: "Task", a: Args) -> int:
    """Implements Linux syscall fchownat(2)."""
    dirfd, path, uid, gid, flags = s32(a[0]), a[1], u32(a[2]), u32(a[3]), s32(a[4])
    if flags & ~(at.AT_SYMLINK_NOFOLLOW | at.AT_EMPTY_PATH):
        raise SyscallError(errno.EINVAL)
    x = at.target(t, dirfd, path, flags)
    if not isinstance(x, Location):
        return 0
    return do_chown(t, x, uid, gid)


# --- times -----------------------------------------------------------------------------------
def set_times(t: "Task", loc: Location, atime: int | None, mtime: int | None,
              explicit: bool, now: int | None = None) -> int:
    """Set atime/mtime (ns; None: leave); `explicit`: given times rather than "now";
    `now`: the instant the UTIME_NOW values were taken (ctime gets the same one)."""
    perm.check_writable(loc)
    if explicit:
        if not _is_owner(t, loc):
            raise SyscallError(errno.EPERM)
    elif not _is_owner(t, loc) and not perm.may_access(loc.node.attr(), t.creds, perm.MAY_WRITE):
        raise SyscallError(errno.EACCES)
    loc.node.setattr(atime_ns=atime, mtime_ns=mtime, now=now)
    return 0


def _ts_value(sec: int, nsec: int, now: int) -> tuple[int | None, bool]:
    """(ns or None for UTIME_OMIT, explicit?) of one timespec."""
    if nsec == UTIME_NOW:
        return now, False
    if nsec == UTIME_OMIT:
        return None, False
    if not 0 <= nsec < 10**9:
        raise SyscallError(errno.EINVAL)
    return sec * 10**9 + nsec, True


def utimensat(t: "Task", a: Args) -> int:
    """Implements Linux syscall utimensat(2)."""
    dirfd, path, times, flags = s32(a[0]), a[1], a[2], s32(a[3])
    if flags & ~(at.AT_SYMLINK_NOFOLLOW | at.AT_EMPTY_PATH):
        raise SyscallError(errno.EINVAL)
    now = time.time_ns()
    atime = mtime = now
    explicit = False
    if times:
        asec, ansec, msec, mnsec = TIMESPEC2.unpack(t.mm.copy_in(times, TIMESPEC2.size))
        atime, ea = _ts_value(asec, ansec, now)
        mtime, em = _ts_value(msec, mnsec, now)
        explicit = ea or em
    if path == 0:
        if flags & at.AT_SYMLINK_NOFOLLOW:
            raise SyscallError(errno.EINVAL)
        loc = _fd_location(t, dirfd) if dirfd != at.AT_FDCWD else None
        if loc is None:
            raise SyscallError(errno.EFAULT if dirfd == at.AT_FDCWD else errno.EINVAL)
    else:
        x = at.target(t, dirfd, path, flags)
        if not isinstance(x, Location):
            return 0
        loc = x
    if atime is None and mtime is None:
        return 0
    return set_times(t, loc, atime, mtime, explicit, now)


def _timeval_times(t: "Task", addr: int) -> tuple[int, int, bool]:
    if not addr:
        now = time.time_ns()
        return now, now, False           # set_times gets now=atime: ctime the same instant
    asec, ausec, msec, musec = TIMEVAL2.unpack(t.mm.copy_in(addr, TIMEVAL2.size))
    if not (0 <= ausec < 10**6 and 0 <= musec < 10**6):
        raise SyscallError(errno.EINVAL)
    return asec * 10**9 + ausec * 1000, msec * 10**9 + musec * 1000, True


def futimesat(t: "Task", a: Args) -> int:
    """Implements Linux syscall futimesat(2)."""
    dirfd, path, times = s32(a[0]), a[1], a[2]
    atime, mtime, explicit = _timeval_times(t, times)
    loc = at.path_at(t, dirfd, path) if path else _fd_location(t, dirfd)
    return set_times(t, loc, atime, mtime, explicit, None if explicit else atime)


def utimes(t: "Task", a: Args) -> int:
    """Implements Linux syscall utimes(2)."""
    atime, mtime, explicit = _timeval_times(t, a[1])
    return set_times(t, at.path_at(t, at.AT_FDCWD, a[0]), atime, mtime, explicit,
                     None if explicit else atime)


def utime(t: "Task", a: Args) -> int:
    """Implements Linux syscall utime(2)."""
    path, buf = a[0], a[1]
    if buf:
        asec, msec = UTIMBUF.unpack(t.mm.copy_in(buf, UTIMBUF.size))
        atime, mtime, explicit = asec * 10**9, msec * 10**9, True
    else:
        atime = mtime = time.time_ns()
        explicit = False
    return set_times(t, at.path_at(t, at.AT_FDCWD, path), atime, mtime, explicit,
                     None if explicit else atime)


# --- size ------------------------------------------------------------------------------------
def truncate(t: "Task", a: Args) -> int:
    """Implements Linux syscall truncate(2)."""
    path, length = a[0], s64(a[1])
    if length < 0:
        raise SyscallError(errno.EINVAL)
    loc = at.path_at(t, at.AT_FDCWD, path)
    m = loc.node.mode
    if S.S_ISDIR(m):
        raise SyscallError(errno.EISDIR)
    if not S.S_ISREG(m):
        raise SyscallError(errno.EINVAL)
    perm.check_writable(loc)
    attr = loc.node.attr()
    perm.check_access(attr, t.creds, perm.MAY_WRITE)
    check_growth(t, attr.size, length)
    loc.node.setattr(size=length)
    return 0


def ftruncate(t: "Task", a: Args) -> int:
    """Implements Linux syscall ftruncate(2)."""
    fd, length = s32(a[0]), s64(a[1])
    if length < 0:
        raise SyscallError(errno.EINVAL)
    f = t.fds.get(fd)
    if is_path_only(f):
        raise SyscallError(errno.EBADF)
    if not f.writable or not S.S_ISREG(f.mode):
        raise SyscallError(errno.EINVAL)
    check_growth(t, f.attr().size, length)
    f.truncate(length)
    return 0


def fallocate(t: "Task", a: Args) -> int:
    """Implements Linux syscall fallocate(2)."""
    fd, mode, offset, length = s32(a[0]), s32(a[1]), s64(a[2]), s64(a[3])
    f = t.fds.get(fd)
    if offset < 0 or length <= 0:
        raise SyscallError(errno.EINVAL)
    if mode & ~FALLOC_SUPPORTED_MASK:
        raise SyscallError(errno.EOPNOTSUPP)
    if is_path_only(f) or not f.writable:
        raise SyscallError(errno.EBADF)
    m = f.mode
    if S.S_ISFIFO(m):
        raise SyscallError(errno.ESPIPE)
    if S.S_ISDIR(m):
        raise SyscallError(errno.EISDIR)
    if not S.S_ISREG(m):
        raise SyscallError(errno.ENODEV)
    if mode & ~FALLOC_FL_KEEP_SIZE:
        raise SyscallError(errno.EOPNOTSUPP)
    if offset + length > (1 << 63) - 1:
        raise SyscallError(errno.EFBIG)
    check_allocate(t, f, bool(mode & FALLOC_FL_KEEP_SIZE), offset + length)
    f.allocate(mode, offset, length)
    return 0


# --- sync ------------------------------------------------------------------------------------
def fsync(t: "Task", a: Args) -> int:
    """Implements Linux syscall fsync(2)."""
    f = t.fds.get(s32(a[0]))
    if is_path_only(f):
        raise SyscallError(errno.EBADF)
    f.sync()
    return 0


def fdatasync(t: "Task", a: Args) -> int:
    """Implements Linux syscall fdatasync(2)."""
    return fsync(t, a)


def sync(t: "Task", a: Args) -> int:
    """Implements Linux syscall sync(2)."""
    return 0


def syncfs(t: "Task", a: Args) -> int:
    """Implements Linux syscall syncfs(2)."""
    f = t.fds.get(s32(a[0]))
    if is_path_only(f):
        raise SyscallError(errno.EBADF)
    return 0


ENTRIES = (
    Entry("chmod", chmod, SUPPORTED),
    Entry("fchmod", fchmod, SUPPORTED),
    Entry("fchmodat", fchmodat, SUPPORTED),
    Entry("chown", chown, SUPPORTED, "the Sentry's ids; root may give files away"),
    Entry("fchown", fchown, SUPPORTED),
    Entry("lchown", lchown, SUPPORTED),
    Entry("fchownat", fchownat, SUPPORTED),
    Entry("utimensat", utimensat, SUPPORTED),
    Entry("futimesat", futimesat, SUPPORTED),
    Entry("utimes", utimes, SUPPORTED),
    Entry("utime", utime, SUPPORTED),
    Entry("truncate", truncate, SUPPORTED),
    Entry("ftruncate", ftruncate, SUPPORTED),
    Entry("fallocate", fallocate, PARTIAL, "modes 0 and FALLOC_FL_KEEP_SIZE; others EOPNOTSUPP"),
    Entry("fsync", fsync, SUPPORTED),
    Entry("fdatasync", fdatasync, SUPPORTED),
    Entry("sync", sync, SUPPORTED, "in-memory files need no flush; host files flush on fsync"),
    Entry("syncfs", syncfs, SUPPORTED),
)
