"""Extended attributes kept in memory (tmpfs, the overlay's upper layer, /dev), as Linux's
simple_xattr store does for tmpfs.

A node that supports them mixes in InMemoryXattrs: it provides a `xattrs` slot
(None until the first attribute) and its file system an XattrSpace, the budget
every attribute's bytes are charged to (ENOSPC past it, as tmpfs charges its
inode space).  The syscall layer (sys_xattr.py) checks names' length,
permissions and namespaces first; the store decides EEXIST / ENODATA / ENOSPC.
Nodes without the mixin are asked through the same four method names, or not
at all (host files: none set, none settable).

Names are bytes; listxattr gives them in descending byte order, as tmpfs does.
"""
from __future__ import annotations

import errno
import weakref

from kvmbox.errors import SyscallError

XATTR_CREATE, XATTR_REPLACE = 1, 2
XATTR_NAME_MAX = 255               # bytes of a name, prefix included
XATTR_SIZE_MAX = 65536             # bytes of one value
XATTR_LIST_MAX = 65536             # bytes of a whole list
# The namespaces a tmpfs stores (system.* would be POSIX ACLs: not supported).
STORED_PREFIXES = (b"user.", b"trusted.", b"security.")
KNOWN_PREFIXES = STORED_PREFIXES + (b"system.",)
ENTRY_OVERHEAD = 40                # what Linux's simple_xattr_space charges besides name and value
DEFAULT_SPACE = 8 << 20            # per file system: xattrs live in the Sentry's own memory


def prefix_of(name: bytes) -> bytes | None:
    """The namespace prefix `name` starts with ("user." ...), or None for an unknown one."""
    for p in KNOWN_PREFIXES:
        if name.startswith(p):
            return p
    return None


def check_handler(name: bytes) -> None:
    """Linux's xattr_resolve_name for a file system with tmpfs's handlers: EOPNOTSUPP for an
    unknown or unsupported namespace, EINVAL for a bare prefix ("user.")."""
    p = prefix_of(name)
    if p is None or p == b"system.":
        raise SyscallError(errno.EOPNOTSUPP)
    if len(name) == len(p):
        raise SyscallError(errno.EINVAL)


def entry_cost(name: bytes, value: bytes) -> int:
    return ENTRY_OVERHEAD + len(name) + len(value)


class XattrSpace:
    """One file system's budget for attribute bytes."""

    __slots__ = ("limit", "used")

    def __init__(self, limit: int = DEFAULT_SPACE) -> None:
        self.limit = limit
        self.used = 0

    def charge(self, n: int) -> None:
        if self.used + n > self.limit:
            raise SyscallError(errno.ENOSPC)
        self.used += n

    def credit(self, n: int) -> None:
        self.used = max(0, self.used - n)


class XattrMap:
    """The attributes of one node and the bytes they hold in their file system's budget."""

    __slots__ = ("values", "cost", "__weakref__")

    def __init__(self) -> None:
        self.values: dict[bytes, bytes] = {}
        self.cost = 0


def _give_back(space: XattrSpace, xm: XattrMap) -> None:
    space.credit(xm.cost)


class InMemoryXattrs:
    """Mixin for Nodes: get/set/list/remove over a `xattrs` slot, charged to `fs.xattr_space`.

    The class using it declares the `xattrs` slot (initially None) and may override
    xattr_changed() (ctime).  A node's attributes go back to the budget when the node
    itself goes (its last name and last open file)."""

    __slots__ = ()
    xattrs: XattrMap | None

    def xattr_changed(self) -> None:
        """An attribute was set or removed (tmpfs updates ctime)."""

    def getxattr(self, name: bytes) -> bytes:
        check_handler(name)
        xm = self.xattrs
        if xm is None or name not in xm.values:
            raise SyscallError(errno.ENODATA)
        return xm.values[name]

    def listxattr(self) -> list[bytes]:
        xm = self.xattrs
        return sorted(xm.values, reverse=True) if xm is not None else []

    def setxattr(self, name: bytes, value: bytes, flags: int) -> None:
        check_handler(name)
        xm = self.xattrs
        old = xm.values.get(name) if xm is not None else None
        if old is not None and flags & XATTR_CREATE:
            raise SyscallError(errno.EEXIST)
        if old is None and flags & XATTR_REPLACE:
            raise SyscallError(errno.ENODATA)
        space: XattrSpace = self.fs.xattr_space           # type: ignore[attr-defined]
        cost = entry_cost(name, value)
        space.charge(cost)
        if xm is None:
            xm = self.xattrs = XattrMap()
            weakref.finalize(self, _give_back, space, xm).atexit = False
        if old is not None:
            space.credit(entry_cost(name, old))
            xm.cost -= entry_cost(name, old)
        xm.values[name] = value
        xm.cost += cost
        self.xattr_changed()

    def removexattr(self, name: bytes) -> None:
        check_handler(name)
        xm = self.xattrs
        if xm is None or name not in xm.values:
            raise SyscallError(errno.ENODATA)
        cost = entry_cost(name, xm.values.pop(name))
        xm.cost -= cost
        self.fs.xattr_space.credit(cost)                  # type: ignore[attr-defined]
        self.xattr_changed()
