"""Handlers for extended attributes: get/set/list/remove through a path (following a final
symlink), through a path without following it (l*), and through a descriptor (f*).

Where attributes live: tmpfs (/dev/shm, /tmp under --rootfs), /dev and the root
overlay's upper layer keep them in memory (kvmbox/sentry/vfs/xattr.py; the
overlay copies a file up to set one); host files (the overlay's lower layer,
--mount) report none and take none (EOPNOTSUPP); /proc has none (EOPNOTSUPP).

Checks in Linux 6.13+'s order: the flags (EINVAL), the name (EFAULT; ERANGE
when empty or over 255 bytes), the value's size (E2BIG over 64 KiB) and bytes,
then the file (EBADF, also for O_PATH descriptors; ENOENT ...), EROFS for
changes, then xattr_permission: trusted.* only for root (EPERM to change,
ENODATA to read), user.* only on regular files and directories (same errnos)
and not on another user's sticky directory, then read or write permission on
the file (EACCES); security.* changes need root.  The store decides EEXIST,
ENODATA, ENOSPC; unknown namespaces and system.* (POSIX ACLs) give EOPNOTSUPP.
"""
from __future__ import annotations

import errno
import stat as S
TYPE_CHECKING = False  # typing is not imported at run time (start-up cost)

from kvmbox.errors import SyscallError
from kvmbox.sentry.syscalls.args import s32
from kvmbox.sentry.syscalls.table import PARTIAL, Entry
from kvmbox.sentry.vfs import at, perm
from kvmbox.sentry.vfs.opath import is_path_only
from kvmbox.sentry.vfs.xattr import (XATTR_CREATE, XATTR_LIST_MAX, XATTR_NAME_MAX, XATTR_REPLACE,
                                     XATTR_SIZE_MAX, check_handler)

if TYPE_CHECKING:  # pragma: no cover
    from kvmbox.sentry.task import Task
    from kvmbox.sentry.vfs.node import Attr, Node
    from kvmbox.sentry.vfs.path import Location

Args = tuple[int, int, int, int, int, int]
XATTR_NAME_CAPS = b"security.capability"
VFS_CAP_REVISION_2, VFS_CAP_REVISION_3, VFS_CAP_FLAGS_EFFECTIVE = 0x02000000, 0x03000000, 0x1
XATTR_CAPS_SZ_2, XATTR_CAPS_SZ_3 = 20, 24


class Target:
    """What an xattr call acts on: a node (None for pipes and other path-less descriptions),
    its attributes for the permission checks, and where it was reached (EROFS)."""

    __slots__ = ("node", "attr", "loc")

    def __init__(self, node: "Node | None", attr: "Attr", loc: "Location | None") -> None:
        self.node, self.attr, self.loc = node, attr, loc


# --- arguments and targets ------------------------------------------------------------------------
def _name(t: "Task", addr: int) -> bytes:
    """The attribute name, as Linux's import_xattr_name (ERANGE when empty or too long)."""
    try:
        name = t.mm.read_cstring(addr, XATTR_NAME_MAX + 1)
    except SyscallError as e:
        if e.errno != errno.ENAMETOOLONG:
            raise
        raise SyscallError(errno.ERANGE) from None       # no NUL in the first 256 bytes
    if not name or len(name) > XATTR_NAME_MAX:
        raise SyscallError(errno.ERANGE)
    return name


def _set_args(t: "Task", name_addr: int, value_addr: int, size: int, flags: int) -> tuple[bytes, bytes]:
    """setxattr_copy: the flags, the name, then the value (E2BIG over 64 KiB, EFAULT)."""
    if flags & ~(XATTR_CREATE | XATTR_REPLACE):
        raise SyscallError(errno.EINVAL)
    name = _name(t, name_addr)
    if size > XATTR_SIZE_MAX:
        raise SyscallError(errno.E2BIG)
    return name, (t.mm.copy_in(value_addr, size) if size else b"")


def _at_path(t: "Task", path_addr: int, follow: bool) -> Target:
    loc = at.path_at(t, at.AT_FDCWD, path_addr, follow=follow)
    return Target(loc.node, loc.node.attr(), loc)


def _at_fd(t: "Task", fd: int) -> Target:
    f = t.fds.get(fd)
    if is_path_only(f):
        raise SyscallError(errno.EBADF)
    loc = f.location
    if loc is None:
        return Target(None, f.attr(), None)
    return Target(loc.node, loc.node.attr(), loc)


# --- the VFS's rules ---------------------------------------------------------------------------------
def _permission(t: "Task", tgt: Target, name: bytes, write: bool) -> None:
    """Linux's xattr_permission (root stands for CAP_SYS_ADMIN and CAP_FOWNER)."""
    if name.startswith((b"security.", b"system.")):
        return
    root = t.creds.euid == 0
    if name.startswith(b"trusted."):
        if not root:
            raise SyscallError(errno.EPERM if write else errno.ENODATA)
        return
    a = tgt.attr
    if name.startswith(b"user."):
        kind = S.S_IFMT(a.mode)
        if kind not in (S.S_IFREG, S.S_IFDIR):
            raise SyscallError(errno.EPERM if write else errno.ENODATA)
        if kind == S.S_IFDIR and a.mode & S.S_ISVTX and write and not root and t.creds.euid != a.uid:
            raise SyscallError(errno.EPERM)
    perm.check_access(a, t.creds, perm.MAY_WRITE if write else perm.MAY_READ)


def _may_change(t: "Task", tgt: Target, name: bytes) -> None:
    """What a set or remove checks before the store: EROFS, the permission rules, and the
    capability rules for security.* (security.capability: its header, EINVAL)."""
    if tgt.loc is not None:
        perm.check_writable(tgt.loc)
    _permission(t, tgt, name, write=True)
    if name.startswith(b"security.") and t.creds.euid != 0:
        raise SyscallError(errno.EPERM)


def _check_caps(value: bytes) -> None:
    """security.capability must hold a v2 or v3 vfs_cap_data (Linux's validheader)."""
    magic = int.from_bytes(value[:4], "little") & ~VFS_CAP_FLAGS_EFFECTIVE
    if not ((len(value) == XATTR_CAPS_SZ_2 and magic == VFS_CAP_REVISION_2) or
            (len(value) == XATTR_CAPS_SZ_3 and magic == VFS_CAP_REVISION_3)):
        raise SyscallError(errno.EINVAL)


# --- the four operations ------------------------------------------------------------------------------
def _get(t: "Task", tgt: Target, name: bytes, value_addr: int, size: int) -> int:
    _permission(t, tgt, name, write=False)
    if tgt.node is None:                               # path-less descriptions (pipes)
        check_handler(name)
        raise SyscallError(errno.EOPNOTSUPP)
    value = tgt.node.getxattr(name)                    # host files: none (Node's default)
    if size == 0:
        return len(value)
    if len(value) > min(size, XATTR_SIZE_MAX):
        raise SyscallError(errno.ERANGE)
    if value:
        t.mm.copy_out(value_addr, value)
    return len(value)


def _set(t: "Task", tgt: Target, name: bytes, value: bytes, flags: int) -> int:
    _may_change(t, tgt, name)
    if name == XATTR_NAME_CAPS and value:
        _check_caps(value)
    if tgt.node is None:
        raise SyscallError(errno.EOPNOTSUPP)
    tgt.node.setxattr(name, value, flags)
    return 0


def _list(t: "Task", tgt: Target, list_addr: int, size: int) -> int:
    found: list[bytes] = tgt.node.listxattr() if tgt.node is not None else []
    if t.creds.euid != 0:
        found = [n for n in found if not n.startswith(b"trusted.")]
    data = b"".join(n + b"\0" for n in found)
    if size == 0:
        return len(data)
    if len(data) > min(size, XATTR_LIST_MAX):
        raise SyscallError(errno.E2BIG if size >= XATTR_LIST_MAX else errno.ERANGE)
    if data:
        t.mm.copy_out(list_addr, data)
    return len(data)


def _remove(t: "Task", tgt: Target, name: bytes) -> int:
    _may_change(t, tgt, name)
    if tgt.node is None:
        check_handler(name)
        raise SyscallError(errno.EOPNOTSUPP)
    tgt.node.removexattr(name)
    return 0


# --- handlers --------------------------------------------------------------------------------------------
def getxattr(t: "Task", a: Args) -> int:
    """Implements Linux syscall getxattr(2)."""
    name = _name(t, a[1])
    return _get(t, _at_path(t, a[0], True), name, a[2], a[3])


def lgetxattr(t: "Task", a: Args) -> int:
    """Implements Linux syscall lgetxattr(2)."""
    name = _name(t, a[1])
    return _get(t, _at_path(t, a[0], False), name, a[2], a[3])


def fgetxattr(t: "Task", a: Args) -> int:
    """Implements Linux syscall fgetxattr(2)."""
    name = _name(t, a[1])
    return _get(t, _at_fd(t, s32(a[0])), name, a[2], a[3])


def setxattr(t: "Task", a: Args) -> int:
    """Implements Linux syscall setxattr(2)."""
    name, value = _set_args(t, a[1], a[2], a[3], s32(a[4]))
    return _set(t, _at_path(t, a[0], True), name, value, s32(a[4]))


def lsetxattr(t: "Task", a: Args) -> int:
    """Implements Linux syscall lsetxattr(2)."""
    name, value = _set_args(t, a[1], a[2], a[3], s32(a[4]))
    return _set(t, _at_path(t, a[0], False), name, value, s32(a[4]))


def fsetxattr(t: "Task", a: Args) -> int:
    """Implements Linux syscall fsetxattr(2)."""
    name, value = _set_args(t, a[1], a[2], a[3], s32(a[4]))
    return _set(t, _at_fd(t, s32(a[0])), name, value, s32(a[4]))


def listxattr(t: "Task", a: Args) -> int:
    """Implements Linux syscall listxattr(2)."""
    return _list(t, _at_path(t, a[0], True), a[1], a[2])


def llistxattr(t: "Task", a: Args) -> int:
    """Implements Linux syscall llistxattr(2)."""
    return _list(t, _at_path(t, a[0], False), a[1], a[2])


def flistxattr(t: "Task", a: Args) -> int:
    """Implements Linux syscall flistxattr(2)."""
    return _list(t, _at_fd(t, s32(a[0])), a[1], a[2])


def removexattr(t: "Task", a: Args) -> int:
    """Implements Linux syscall removexattr(2)."""
    name = _name(t, a[1])
    return _remove(t, _at_path(t, a[0], True), name)


def lremovexattr(t: "Task", a: Args) -> int:
    """Implements Linux syscall lremovexattr(2)."""
    name = _name(t, a[1])
    return _remove(t, _at_path(t, a[0], False), name)


def fremovexattr(t: "Task", a: Args) -> int:
    """Implements Linux syscall fremovexattr(2)."""
    name = _name(t, a[1])
    return _remove(t, _at_fd(t, s32(a[0])), name)


_NOTE = ("in memory on tmpfs, /dev, the overlay's upper layer (a budget per fs); host files: none, "
         "EOPNOTSUPP to set; no system.* (ACLs)")
ENTRIES = (
    Entry("getxattr", getxattr, PARTIAL, _NOTE),
    Entry("lgetxattr", lgetxattr, PARTIAL, _NOTE),
    Entry("fgetxattr", fgetxattr, PARTIAL, _NOTE),
    Entry("setxattr", setxattr, PARTIAL, _NOTE),
    Entry("lsetxattr", lsetxattr, PARTIAL, _NOTE),
    Entry("fsetxattr", fsetxattr, PARTIAL, _NOTE),
    Entry("listxattr", listxattr, PARTIAL, _NOTE),
    Entry("llistxattr", llistxattr, PARTIAL, _NOTE),
    Entry("flistxattr", flistxattr, PARTIAL, _NOTE),
    Entry("removexattr", removexattr, PARTIAL, _NOTE),
    Entry("lremovexattr", lremovexattr, PARTIAL, _NOTE),
    Entry("fremovexattr", fremovexattr, PARTIAL, _NOTE),
)
