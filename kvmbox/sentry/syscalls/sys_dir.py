"""Handlers for the namespace: getdents, mkdir, rmdir, unlink, rename, link, symlink, mknod,
and the task's place in it: getcwd, chdir, fchdir, chroot, umask.

Every mutation follows Linux's order of checks: the kind of the last component
("." / ".." / "/"), EROFS, the lookup (ENOENT / EEXIST), then DAC permission
(write and search on the directory, the sticky bit), then the node's own
operation (which decides ENOTEMPTY, EISDIR, ENOTDIR between the two objects).
"""
from __future__ import annotations

import errno
import os
import stat as S
import struct

from kvmbox.errors import SyscallError
from kvmbox.sentry.syscalls.args import s32, u32
from kvmbox.sentry.syscalls.table import ERROR, PARTIAL, SUPPORTED, Entry
from kvmbox.sentry.vfs import at, perm
from kvmbox.sentry.vfs.node import RENAME_EXCHANGE, RENAME_NOREPLACE, RENAME_WHITEOUT
from kvmbox.sentry.vfs.opath import is_path_only
from kvmbox.sentry.vfs.path import Location

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from kvmbox.sentry.task import Task

Args = tuple[int, int, int, int, int, int]

DIRENT64 = struct.Struct("<QqHB")
DIRENT = struct.Struct("<QQH")


# --- reading directories -----------------------------------------------------------------------
def _getdents(t: "Task", fd: int, buf: int, count: int, old: bool) -> int:
    f = t.fds.get(fd)
    if is_path_only(f):
        raise SyscallError(errno.EBADF)
    ents = f.getdents(min(count, 1 << 20), old)
    out = bytearray()
    for ino, off, dtype, name in ents:
        raw = os.fsencode(name)
        reclen = (len(raw) + 20 + 7) & ~7
        if old:
            rec = DIRENT.pack(ino, off, reclen) + raw
            rec = rec.ljust(reclen - 1, b"\0") + bytes([dtype])
        else:
            rec = (DIRENT64.pack(ino, off, reclen, dtype) + raw).ljust(reclen, b"\0")
        out += rec
    if out:
        t.mm.copy_out(buf, bytes(out))
    return len(out)


def getdents64(t: "Task", a: Args) -> int:
    """Implements Linux syscall getdents64(2)."""
    return _getdents(t, s32(a[0]), a[1], u32(a[2]), False)


def getdents(t: "Task", a: Args) -> int:
    """Implements Linux syscall getdents(2)."""
    return _getdents(t, s32(a[0]), a[1], u32(a[2]), True)


# --- shared checks -----------------------------------------------------------------------------
def _may_create(t: "Task", parent: Location) -> None:
    perm.check_access(parent.node.attr(), t.creds, perm.MAY_WRITE | perm.MAY_EXEC)


def _may_delete(t: "Task", parent: Location, child: Location) -> None:
    """Write+search on the directory, and the sticky bit's owner rule."""
    pa = parent.node.attr()
    perm.check_access(pa, t.creds, perm.MAY_WRITE | perm.MAY_EXEC)
    if pa.mode & S.S_ISVTX and t.creds.euid != 0:
        ca = child.node.attr()
        if t.creds.euid not in (ca.uid, pa.uid):
            raise SyscallError(errno.EPERM)


def _new_entry(t: "Task", dirfd: int, path: str, is_dir: bool = False) -> tuple[Location, str]:
    """Linux's filename_create: the parent and name of an object to make (EEXIST, EROFS,
    EACCES; ENOENT for a non-directory named with a trailing slash)."""
    parent, name = at.resolve_parent(t, dirfd, path)
    if name in ("", ".", ".."):
        raise SyscallError(errno.EEXIST)
    try:
        parent.node.lookup(name)
    except SyscallError as e:
        if e.errno != errno.ENOENT:
            raise
    else:
        raise SyscallError(errno.EEXIST)
    if not is_dir and path.endswith("/"):
        raise SyscallError(errno.ENOENT)
    perm.check_writable(parent)
    _may_create(t, parent)
    return parent, name


def _new_gid(t: "Task", parent: Location) -> int:
    a = parent.node.attr()
    return a.gid if a.mode & S.S_ISGID else t.creds.egid


# --- making ----------------------------------------------------------------------------------
def do_mkdir(t: "Task", dirfd: int, path_addr: int, mode: int) -> int:
    path = at.read_path(t, path_addr)
    parent, name = _new_entry(t, dirfd, path, is_dir=True)
    mode = mode & 0o1777 & ~t.fs.umask
    pa = parent.node.attr()
    if pa.mode & S.S_ISGID:
        mode |= S.S_ISGID
    parent.node.mkdir(name, mode, t.creds.euid, _new_gid(t, parent))
    return 0


def mkdir(t: "Task", a: Args) -> int:
    """Implements Linux syscall mkdir(2)."""
    return do_mkdir(t, at.AT_FDCWD, a[0], u32(a[1]))


def mkdirat(t: "Task", a: Args) -> int:
    """Implements Linux syscall mkdirat(2)."""
    return do_mkdir(t, s32(a[0]), a[1], u32(a[2]))


def do_mknod(t: "Task", dirfd: int, path_addr: int, mode: int, dev: int) -> int:
    path = at.read_path(t, path_addr)
    kind = S.S_IFMT(mode)
    if kind == S.S_IFDIR:
        raise SyscallError(errno.EPERM)          # Linux's may_mknod
    if kind not in (0, S.S_IFREG, S.S_IFIFO, S.S_IFSOCK, S.S_IFCHR, S.S_IFBLK):
        raise SyscallError(errno.EINVAL)
    parent, name = _new_entry(t, dirfd, path)
    if kind in (S.S_IFCHR, S.S_IFBLK):
        raise SyscallError(errno.EPERM)          # no device nodes in the sandbox
    perm_bits = mode & 0o7777 & ~t.fs.umask
    if kind in (0, S.S_IFREG):
        parent.node.create(name, perm_bits, t.creds.euid, _new_gid(t, parent))
    else:
        parent.node.mknod(name, kind | perm_bits, 0, t.creds.euid, _new_gid(t, parent))
    return 0


def mknod(t: "Task", a: Args) -> int:
    """Implements Linux syscall mknod(2)."""
    return do_mknod(t, at.AT_FDCWD, a[0], u32(a[1]), a[2])


def mknodat(t: "Task", a: Args) -> int:
    """Implements Linux syscall mknodat(2)."""
    return do_mknod(t, s32(a[0]), a[1], u32(a[2]), a[3])


def do_symlink(t: "Task", target_addr: int, dirfd: int, path_addr: int) -> int:
    target = at.read_path(t, target_addr)
    path = at.read_path(t, path_addr)
    if not target:
        raise SyscallError(errno.ENOENT)
    parent, name = _new_entry(t, dirfd, path)
    parent.node.symlink(name, target, t.creds.euid, _new_gid(t, parent))
    return 0


def symlink(t: "Task", a: Args) -> int:
    """Implements Linux syscall symlink(2)."""
    return do_symlink(t, a[0], at.AT_FDCWD, a[1])


def symlinkat(t: "Task", a: Args) -> int:
    """Implements Linux syscall symlinkat(2)."""
    return do_symlink(t, a[0], s32(a[1]), a[2])


def do_link(t: "Task", olddirfd: int, old_addr: int, newdirfd: int, new_addr: int,
            flags: int) -> int:
    if flags & ~(at.AT_SYMLINK_FOLLOW | at.AT_EMPTY_PATH):
        raise SyscallError(errno.EINVAL)
    old = at.target(t, olddirfd, old_addr, (flags & at.AT_EMPTY_PATH) |
                    (0 if flags & at.AT_SYMLINK_FOLLOW else at.AT_SYMLINK_NOFOLLOW))
    if not isinstance(old, Location):
        raise SyscallError(errno.ENOENT)         # pipes and anonymous files have no name to link
    parent, name = _new_entry(t, newdirfd, at.read_path(t, new_addr))
    if parent.mount is not old.mount:
        raise SyscallError(errno.EXDEV)
    if old.node.is_dir():
        raise SyscallError(errno.EPERM)
    parent.node.link(name, old.node)
    return 0


def link(t: "Task", a: Args) -> int:
    """Implements Linux syscall link(2)."""
    return do_link(t, at.AT_FDCWD, a[0], at.AT_FDCWD, a[1], 0)


def linkat(t: "Task", a: Args) -> int:
    """Implements Linux syscall linkat(2)."""
    return do_link(t, s32(a[0]), a[1], s32(a[2]), a[3], s32(a[4]))


# --- removing --------------------------------------------------------------------------------
def _child(t: "Task", parent: Location, name: str) -> Location:
    return t.kernel.vfs.child(parent, name, parent.node.lookup(name))


def do_rmdir(t: "Task", dirfd: int, path: str) -> int:
    parent, name = at.resolve_parent(t, dirfd, path)
    if name == ".":
        raise SyscallError(errno.EINVAL)
    if name == "..":
        raise SyscallError(errno.ENOTEMPTY)
    if name == "":
        raise SyscallError(errno.EBUSY)
    perm.check_writable(parent)
    child = _child(t, parent, name)
    _may_delete(t, parent, child)
    if not child.node.is_dir():
        raise SyscallError(errno.ENOTDIR)
    if t.kernel.vfs.is_mount_point(child) or child.node is t.fs.root.node:
        raise SyscallError(errno.EBUSY)
    parent.node.rmdir(name)
    t.kernel.vfs.names_changed()         # cached walks may pass through the old name
    return 0


def do_unlink(t: "Task", dirfd: int, path: str) -> int:
    parent, name = at.resolve_parent(t, dirfd, path)
    if name in ("", ".", ".."):
        raise SyscallError(errno.EISDIR)
    perm.check_writable(parent)
    child = _child(t, parent, name)
    if path.endswith("/"):
        raise SyscallError(errno.EISDIR if child.node.is_dir() else errno.ENOTDIR)
    _may_delete(t, parent, child)
    if child.node.is_dir():
        raise SyscallError(errno.EISDIR)
    if t.kernel.vfs.is_mount_point(child):
        raise SyscallError(errno.EBUSY)
    parent.node.unlink(name)
    t.kernel.vfs.names_changed()         # cached walks may pass through the old name
    return 0


def rmdir(t: "Task", a: Args) -> int:
    """Implements Linux syscall rmdir(2)."""
    return do_rmdir(t, at.AT_FDCWD, at.read_path(t, a[0]))


def unlink(t: "Task", a: Args) -> int:
    """Implements Linux syscall unlink(2)."""
    return do_unlink(t, at.AT_FDCWD, at.read_path(t, a[0]))


def unlinkat(t: "Task", a: Args) -> int:
    """Implements Linux syscall unlinkat(2)."""
    dirfd, path, flags = s32(a[0]), at.read_path(t, a[1]), s32(a[2])
    if flags & ~at.AT_REMOVEDIR:
        raise SyscallError(errno.EINVAL)
    if flags & at.AT_REMOVEDIR:
        return do_rmdir(t, dirfd, path)
    return do_unlink(t, dirfd, path)


# --- rename ----------------------------------------------------------------------------------
def do_rename(t: "Task", olddirfd: int, old_addr: int, newdirfd: int, new_addr: int,
              flags: int) -> int:
    if flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE | RENAME_WHITEOUT) or \
            flags & RENAME_EXCHANGE and flags & (RENAME_NOREPLACE | RENAME_WHITEOUT):
        raise SyscallError(errno.EINVAL)
    if flags & RENAME_WHITEOUT:
        raise SyscallError(errno.EINVAL)             # no whiteout support (as tmpfs without it)
    old_path, new_path = at.read_path(t, old_addr), at.read_path(t, new_addr)
    oparent, oname = at.resolve_parent(t, olddirfd, old_path)
    nparent, nname = at.resolve_parent(t, newdirfd, new_path)
    if oparent.mount is not nparent.mount:
        raise SyscallError(errno.EXDEV)
    if oname in ("", ".", ".."):
        raise SyscallError(errno.EBUSY)
    if nname in ("", ".", ".."):
        raise SyscallError(errno.EEXIST if flags & RENAME_NOREPLACE else errno.EBUSY)
    perm.check_writable(oparent)
    src = _child(t, oparent, oname)
    sdir = src.node.is_dir()
    if not sdir and (old_path.endswith("/") or (new_path.endswith("/") and
                                                not flags & RENAME_EXCHANGE)):
        raise SyscallError(errno.ENOTDIR)
    if sdir and (nparent.path == src.path or nparent.path.startswith(src.path.rstrip("/") + "/")):
        raise SyscallError(errno.EINVAL)             # into itself or below itself
    try:
        dst: Location | None = _child(t, nparent, nname)
    except SyscallError as e:
        if e.errno != errno.ENOENT:
            raise
        dst = None
    if dst is not None and dst.node.is_dir() and (oparent.path == dst.path or
                                                  oparent.path.startswith(dst.path + "/")):
        raise SyscallError(errno.ENOTEMPTY)          # the target is an ancestor of the source
    if dst is None and flags & RENAME_EXCHANGE:
        raise SyscallError(errno.ENOENT)
    if dst is not None and flags & RENAME_NOREPLACE:
        raise SyscallError(errno.EEXIST)
    if dst is not None and dst.node is src.node:
        return 0
    _may_delete(t, oparent, src)
    if dst is not None:
        _may_delete(t, nparent, dst)
    else:
        _may_create(t, nparent)
    vfs = t.kernel.vfs
    if vfs.is_mount_point(src) or (dst is not None and vfs.is_mount_point(dst)):
        raise SyscallError(errno.EBUSY)
    oparent.node.rename(oname, nparent.node, nname, flags)
    t.kernel.vfs.names_changed()         # cached walks may pass through the old name
    return 0


def rename(t: "Task", a: Args) -> int:
    """Implements Linux syscall rename(2)."""
    return do_rename(t, at.AT_FDCWD, a[0], at.AT_FDCWD, a[1], 0)


def renameat(t: "Task", a: Args) -> int:
    """Implements Linux syscall renameat(2)."""
    return do_rename(t, s32(a[0]), a[1], s32(a[2]), a[3], 0)


def renameat2(t: "Task", a: Args) -> int:
    """Implements Linux syscall renameat2(2)."""
    return do_rename(t, s32(a[0]), a[1], s32(a[2]), a[3], u32(a[4]))


# --- the task's directories ------------------------------------------------------------------
def getcwd(t: "Task", a: Args) -> int:
    """Implements Linux syscall getcwd(2)."""
    buf, size = a[0], a[1]
    path = os.fsencode(t.fs.cwd.path) + b"\0"
    if len(path) > size:
        raise SyscallError(errno.ERANGE)
    t.mm.copy_out(buf, path)
    return len(path)


def _enter(t: "Task", loc: Location) -> int:
    if not loc.node.is_dir():
        raise SyscallError(errno.ENOTDIR)
    perm.check_access(loc.node.attr(), t.creds, perm.MAY_EXEC)
    t.fs.cwd = loc
    return 0


def chdir(t: "Task", a: Args) -> int:
    """Implements Linux syscall chdir(2)."""
    return _enter(t, at.path_at(t, at.AT_FDCWD, a[0]))


def fchdir(t: "Task", a: Args) -> int:
    """Implements Linux syscall fchdir(2)."""
    f = t.fds.get(s32(a[0]))
    if f.location is None:
        raise SyscallError(errno.ENOTDIR)
    return _enter(t, f.location)


def umask(t: "Task", a: Args) -> int:
    """Implements Linux syscall umask(2)."""
    mask = u32(a[0])
    old, t.fs.umask = t.fs.umask, mask & 0o777
    return old


ENTRIES = (
    Entry("getdents64", getdents64, SUPPORTED),
    Entry("getdents", getdents, SUPPORTED),
    Entry("mkdir", mkdir, SUPPORTED),
    Entry("mkdirat", mkdirat, SUPPORTED),
    Entry("mknod", mknod, PARTIAL, "FIFOs, sockets and regular files; devices give EPERM"),
    Entry("mknodat", mknodat, PARTIAL, "FIFOs, sockets and regular files; devices give EPERM"),
    Entry("symlink", symlink, SUPPORTED),
    Entry("symlinkat", symlinkat, SUPPORTED),
    Entry("link", link, SUPPORTED),
    Entry("linkat", linkat, SUPPORTED),
    Entry("rmdir", rmdir, SUPPORTED),
    Entry("unlink", unlink, SUPPORTED),
    Entry("unlinkat", unlinkat, SUPPORTED),
    Entry("rename", rename, SUPPORTED),
    Entry("renameat", renameat, SUPPORTED),
    Entry("renameat2", renameat2, PARTIAL, "RENAME_WHITEOUT gives EINVAL"),
    Entry("getcwd", getcwd, SUPPORTED),
    Entry("chdir", chdir, SUPPORTED),
    Entry("fchdir", fchdir, SUPPORTED),
    Entry("chroot", None, ERROR, "the sandbox's root is fixed", errno.EPERM),
    Entry("umask", umask, SUPPORTED),
)
