"""Extended-attribute queries: no file in the sandbox carries extended attributes.

Reading one gives ENODATA and listing gives an empty list, as on a Linux file
system where none are set (ls -l then shows no ACL marker).  Setting them is
left unimplemented (ENOSYS).
"""
from __future__ import annotations

import errno
TYPE_CHECKING = False  # typing is not imported at run time (start-up cost)

from kvmbox.errors import SyscallError
from kvmbox.sentry.syscalls.args import s32
from kvmbox.sentry.syscalls.table import PARTIAL, Entry
from kvmbox.sentry.vfs import at

if TYPE_CHECKING:  # pragma: no cover
    from kvmbox.sentry.task import Task

Args = tuple[int, int, int, int, int, int]
XATTR_NAME_MAX = 255


def _name(t: "Task", addr: int) -> None:
    """Validate the attribute name as Linux does (ERANGE when empty or too long)."""
    name = t.mm.read_cstring(addr, XATTR_NAME_MAX + 1)
    if not name or len(name) > XATTR_NAME_MAX:
        raise SyscallError(errno.ERANGE)


def getxattr(t: "Task", a: Args) -> int:
    """Implements Linux syscall getxattr(2)."""
    at.path_at(t, at.AT_FDCWD, a[0], follow=True)
    _name(t, a[1])
    raise SyscallError(errno.ENODATA)


def lgetxattr(t: "Task", a: Args) -> int:
    """Implements Linux syscall lgetxattr(2)."""
    at.path_at(t, at.AT_FDCWD, a[0], follow=False)
    _name(t, a[1])
    raise SyscallError(errno.ENODATA)


def fgetxattr(t: "Task", a: Args) -> int:
    """Implements Linux syscall fgetxattr(2)."""
    t.fds.get(s32(a[0]))
    _name(t, a[1])
    raise SyscallError(errno.ENODATA)


def listxattr(t: "Task", a: Args) -> int:
    """Implements Linux syscall listxattr(2)."""
    at.path_at(t, at.AT_FDCWD, a[0], follow=True)
    return 0


def llistxattr(t: "Task", a: Args) -> int:
    """Implements Linux syscall llistxattr(2)."""
    at.path_at(t, at.AT_FDCWD, a[0], follow=False)
    return 0


def flistxattr(t: "Task", a: Args) -> int:
    """Implements Linux syscall flistxattr(2)."""
    t.fds.get(s32(a[0]))
    return 0


_NOTE = "no file carries extended attributes: get -> ENODATA, list -> empty"
ENTRIES = (
    Entry("getxattr", getxattr, PARTIAL, _NOTE),
    Entry("lgetxattr", lgetxattr, PARTIAL, _NOTE),
    Entry("fgetxattr", fgetxattr, PARTIAL, _NOTE),
    Entry("listxattr", listxattr, PARTIAL, _NOTE),
    Entry("llistxattr", llistxattr, PARTIAL, _NOTE),
    Entry("flistxattr", flistxattr, PARTIAL, _NOTE),
)
