"""Handlers that report on files without opening them: stat family, statx, statfs, access,
readlink."""
from __future__ import annotations

import errno
import os
import stat as S
import struct

from kvmbox.errors import SyscallError
from kvmbox.sentry.syscalls.args import s32, u32
from kvmbox.sentry.syscalls.table import PARTIAL, SUPPORTED, Entry
from kvmbox.sentry.vfs import at, perm
from kvmbox.sentry.vfs.node import Attr, stat_bytes
from kvmbox.sentry.vfs.opath import is_path_only
from kvmbox.sentry.vfs.path import Location

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from kvmbox.sentry.files import FileDescription
    from kvmbox.sentry.task import Task

Args = tuple[int, int, int, int, int, int]

STATX = struct.Struct("<IIQIIIHxxQQQQqIxxxxqIxxxxqIxxxxqIxxxxIIIIQII96x")
STATX_BASIC_STATS, STATX_BTIME, STATX_MNT_ID = 0x7FF, 0x800, 0x1000
STATX__RESERVED = 0x80000000
AT_STATX_FORCE_SYNC, AT_STATX_DONT_SYNC = 0x2000, 0x4000
STATFS = struct.Struct("<qqQQQQQiiqqq32x")
ST_RDONLY, ST_VALID = 1, 0x20
F_OK, X_OK, W_OK, R_OK = 0, 1, 2, 4


def _attr_of(x: "Location | FileDescription") -> Attr:
    return x.node.attr() if isinstance(x, Location) else x.attr()


def _stat_out(t: "Task", x: "Location | FileDescription", addr: int) -> int:
    t.mm.copy_out(addr, stat_bytes(_attr_of(x)))
    return 0


def stat(t: "Task", a: Args) -> int:
    """Implements Linux syscall stat(2)."""
    return _stat_out(t, at.path_at(t, at.AT_FDCWD, a[0]), a[1])


def lstat(t: "Task", a: Args) -> int:
    """Implements Linux syscall lstat(2)."""
    return _stat_out(t, at.path_at(t, at.AT_FDCWD, a[0], follow=False), a[1])


def fstat(t: "Task", a: Args) -> int:
    """Implements Linux syscall fstat(2)."""
    fd, statbuf = s32(a[0]), a[1]
    return _stat_out(t, t.fds.get(fd), statbuf)


def newfstatat(t: "Task", a: Args) -> int:
    """Implements Linux syscall newfstatat(2)."""
    dirfd, path, statbuf, flags = s32(a[0]), a[1], a[2], s32(a[3])
    if flags & ~(at.AT_SYMLINK_NOFOLLOW | at.AT_NO_AUTOMOUNT | at.AT_EMPTY_PATH):
        raise SyscallError(errno.EINVAL)
    return _stat_out(t, _target_fd_first(t, dirfd, path, flags), statbuf)


def _target_fd_first(t: "Task", dirfd: int, path: int, flags: int):
    """at.target, but an empty path with AT_EMPTY_PATH is the open file (a pipe's own attr)."""
    x = at.target(t, dirfd, path, flags)
    if isinstance(x, Location) and flags & at.AT_EMPTY_PATH and dirfd != at.AT_FDCWD:
        f = t.fds.get(dirfd)
        if f.location is x:
            return f                          # fstat semantics (the open file's own attr)
    return x


def _dev_split(dev: int) -> tuple[int, int]:
    major = ((dev >> 8) & 0xFFF) | ((dev >> 32) & ~0xFFF)
    minor = (dev & 0xFF) | ((dev >> 12) & ~0xFF)
    return major & 0xFFFFFFFF, minor & 0xFFFFFFFF


def _ts(ns: int) -> tuple[int, int]:
    return ns // 10**9, ns % 10**9


def mount_id(t: "Task", x) -> int:
    """The id /proc/self/mountinfo gives the mount `x` lives on (21, 22 ... in mount order)."""
    loc = x if isinstance(x, Location) else x.location
    if loc is None:
        return 0
    for i, m in enumerate(t.kernel.vfs.mounts()):
        if m is loc.mount:
            return 21 + i
    return 0


def statx(t: "Task", a: Args) -> int:
    """Implements Linux syscall statx(2)."""
    dirfd, path, flags, mask, buf = s32(a[0]), a[1], s32(a[2]), u32(a[3]), a[4]
    if flags & ~(at.AT_SYMLINK_NOFOLLOW | at.AT_NO_AUTOMOUNT | at.AT_EMPTY_PATH |
                 at.AT_STATX_SYNC_TYPE):
        raise SyscallError(errno.EINVAL)
    if flags & at.AT_STATX_SYNC_TYPE == at.AT_STATX_SYNC_TYPE or mask & STATX__RESERVED:
        raise SyscallError(errno.EINVAL)
    x = _target_fd_first(t, dirfd, path, flags)
    st = _attr_of(x)
    out_mask = STATX_BASIC_STATS | STATX_MNT_ID | (STATX_BTIME if st.btime_ns else 0)
    rmaj, rmin = _dev_split(st.rdev)
    dmaj, dmin = _dev_split(st.dev)
    data = STATX.pack(out_mask, st.blksize, 0, st.nlink, st.uid, st.gid, st.mode & 0xFFFF,
                      st.ino, st.size, st.blocks, 0,
                      *_ts(st.atime_ns), *_ts(st.btime_ns), *_ts(st.ctime_ns), *_ts(st.mtime_ns),
                      rmaj, rmin, dmaj, dmin, mount_id(t, x), 0, 0)
    t.mm.copy_out(buf, data)
    return 0


def _statfs_out(t: "Task", loc: "Location | None", addr: int) -> int:
    if loc is None:                          # pipes, eventfds: pipefs / anon_inodefs
        data = STATFS.pack(0x50495045, 4096, 0, 0, 0, 0, 0, 0, 0, 255, 4096, ST_VALID)
        t.mm.copy_out(addr, data)
        return 0
    fs = loc.mount.fs
    sf = fs.statfs()
    flags = sf.flags | ST_VALID | (ST_RDONLY if perm.is_readonly(loc) else 0)
    data = STATFS.pack(sf.f_type, sf.bsize, sf.blocks, sf.bfree, sf.bavail, sf.files, sf.ffree,
                       fs.dev & 0xFFFFFFFF, 0, sf.namelen, sf.frsize, flags)
    t.mm.copy_out(addr, data)
    return 0


def statfs(t: "Task", a: Args) -> int:
    """Implements Linux syscall statfs(2)."""
    return _statfs_out(t, at.path_at(t, at.AT_FDCWD, a[0]), a[1])


def fstatfs(t: "Task", a: Args) -> int:
    """Implements Linux syscall fstatfs(2)."""
    f = t.fds.get(s32(a[0]))
    if is_path_only(f):
        raise SyscallError(errno.EBADF)
    return _statfs_out(t, f.location, a[1])


# --- access ----------------------------------------------------------------------------------
def do_access(t: "Task", dirfd: int, path: int, mode: int, flags: int) -> int:
    if mode & ~(R_OK | W_OK | X_OK):
        raise SyscallError(errno.EINVAL)
    if flags & ~(at.AT_EACCESS | at.AT_SYMLINK_NOFOLLOW | at.AT_EMPTY_PATH):
        raise SyscallError(errno.EINVAL)
    x = at.target(t, dirfd, path, flags)
    loc = x if isinstance(x, Location) else None
    a = _attr_of(x)
    if mode & W_OK and loc is not None and (S.S_ISREG(a.mode) or S.S_ISDIR(a.mode) or
                                            S.S_ISLNK(a.mode)):
        perm.check_writable(loc)
    perm.check_access(a, t.creds, mode, use_real_ids=not flags & at.AT_EACCESS)
    return 0


def access(t: "Task", a: Args) -> int:
    """Implements Linux syscall access(2)."""
    return do_access(t, at.AT_FDCWD, a[0], s32(a[1]), 0)


def faccessat(t: "Task", a: Args) -> int:
    """Implements Linux syscall faccessat(2)."""
    return do_access(t, s32(a[0]), a[1], s32(a[2]), 0)


def faccessat2(t: "Task", a: Args) -> int:
    """Implements Linux syscall faccessat2(2)."""
    return do_access(t, s32(a[0]), a[1], s32(a[2]), s32(a[3]))


# --- readlink --------------------------------------------------------------------------------
def do_readlink(t: "Task", dirfd: int, path_addr: int, buf: int, bufsiz: int) -> int:
    path = at.read_path(t, path_addr)
    if bufsiz <= 0:
        raise SyscallError(errno.EINVAL)
    if not path:
        if dirfd == at.AT_FDCWD:
            raise SyscallError(errno.ENOENT)
        loc = t.fds.get(dirfd).location
        if loc is None or not loc.node.is_symlink():
            raise SyscallError(errno.ENOENT)
    else:
        loc = at.resolve(t, dirfd, path, follow=False)
    target = os.fsencode(loc.node.readlink())[:bufsiz]        # EINVAL for a non-symlink
    t.mm.copy_out(buf, target)
    return len(target)


def readlink(t: "Task", a: Args) -> int:
    """Implements Linux syscall readlink(2)."""
    return do_readlink(t, at.AT_FDCWD, a[0], a[1], s32(a[2]))


def readlinkat(t: "Task", a: Args) -> int:
    """Implements Linux syscall readlinkat(2)."""
    return do_readlink(t, s32(a[0]), a[1], a[2], s32(a[3]))


ENTRIES = (
    Entry("stat", stat, SUPPORTED),
    Entry("lstat", lstat, SUPPORTED),
    Entry("fstat", fstat, SUPPORTED),
    Entry("newfstatat", newfstatat, SUPPORTED),
    Entry("statx", statx, PARTIAL, "basic stats, btime where known, mount id; no attributes"),
    Entry("statfs", statfs, SUPPORTED),
    Entry("fstatfs", fstatfs, SUPPORTED),
    Entry("access", access, SUPPORTED),
    Entry("faccessat", faccessat, SUPPORTED),
    Entry("faccessat2", faccessat2, SUPPORTED),
    Entry("readlink", readlink, SUPPORTED),
    Entry("readlinkat", readlinkat, SUPPORTED),
)
