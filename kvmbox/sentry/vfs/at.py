"""What the *at syscalls share: guest path strings, dirfd / AT_FDCWD, AT_EMPTY_PATH and
AT_SYMLINK_NOFOLLOW turned into a Location (or the open file an empty path names).

Every guest path a handler resolves comes through here, so the rules are made
once: paths are read with read_cstring (EFAULT, ENAMETOOLONG at PATH_MAX), a
relative path starts at the dirfd's directory (EBADF, ENOTDIR), an absolute
one at the task's root, and every directory walked through needs search
permission for the task's credentials.
"""
from __future__ import annotations

import errno
import os

from kvmbox.errors import SyscallError
from kvmbox.sentry.vfs.node import PATH_MAX

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from kvmbox.sentry.files import FileDescription
    from kvmbox.sentry.task import Task
    from kvmbox.sentry.vfs.path import Location

AT_FDCWD = -100
AT_SYMLINK_NOFOLLOW = 0x100
AT_REMOVEDIR = 0x200
AT_EACCESS = 0x200
AT_SYMLINK_FOLLOW = 0x400
AT_NO_AUTOMOUNT = 0x800
AT_EMPTY_PATH = 0x1000
AT_STATX_SYNC_TYPE = 0x6000
AT_RECURSIVE = 0x8000


def read_path(t: "Task", addr: int) -> str:
    """The guest's NUL-terminated path at `addr` (EFAULT; ENAMETOOLONG at 4096 bytes)."""
    raw = t.mm.read_cstring(addr, PATH_MAX)
    return os.fsdecode(raw)


def dir_of(t: "Task", dirfd: int) -> "Location":
    """The directory a relative path starts at: the cwd or the open directory `dirfd`."""
    if dirfd == AT_FDCWD:
        return t.fs.cwd
    f = t.fds.get(dirfd)                                  # EBADF
    loc = f.location
    if loc is None or not loc.node.is_dir():
        raise SyscallError(errno.ENOTDIR)
    return loc


def resolve(t: "Task", dirfd: int, path: str, *, follow: bool = True) -> "Location":
    """The Location `path` names, relative to `dirfd` (ENOENT for an empty path)."""
    if not path:
        raise SyscallError(errno.ENOENT)
    start = t.fs.root if path[0] == "/" else dir_of(t, dirfd)
    fs = t.fs
    return t.kernel.vfs.resolve(start, path, follow=follow, root=fs.root, creds=t.creds)


def resolve_parent(t: "Task", dirfd: int, path: str) -> "tuple[Location, str]":
    """The directory holding the last component of `path`, and its name."""
    if not path:
        raise SyscallError(errno.ENOENT)
    start = t.fs.root if path[0] == "/" else dir_of(t, dirfd)
    return t.kernel.vfs.resolve_parent(start, path, root=t.fs.root, creds=t.creds)


def target(t: "Task", dirfd: int, addr: int, flags: int) -> "Location | FileDescription":
    """What an fstatat-style call names: with AT_EMPTY_PATH and "", the open file `dirfd`
    itself (a Location when it has one, else the description); otherwise the resolved path
    (AT_SYMLINK_NOFOLLOW: the link itself)."""
    path = read_path(t, addr)
    if not path:
        if not flags & AT_EMPTY_PATH:
            raise SyscallError(errno.ENOENT)
        if dirfd == AT_FDCWD:
            return t.fs.cwd
        f = t.fds.get(dirfd)
        return f.location if f.location is not None else f
    return resolve(t, dirfd, path, follow=not flags & AT_SYMLINK_NOFOLLOW)


def path_at(t: "Task", dirfd: int, addr: int, *, follow: bool = True) -> "Location":
    """read_path then resolve."""
    return resolve(t, dirfd, read_path(t, addr), follow=follow)
