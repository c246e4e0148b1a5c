"""DAC permission checks as Linux makes them (generic_permission) and the read-only-mount check.

The syscall layer calls these once before it asks a Node to do something;
nodes themselves never check permissions.
"""
from __future__ import annotations

import errno
import stat as S

from kvmbox.errors import SyscallError

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from kvmbox.sentry.vfs.node import Attr
    from kvmbox.sentry.vfs.path import Location

# The `want` bits (the same values as access(2)'s R_OK / W_OK / X_OK).
MAY_READ, MAY_WRITE, MAY_EXEC = 4, 2, 1


def may_access(attr: "Attr", creds, want: int, use_real_ids: bool = False) -> bool:
    """Whether `creds` (uid/euid/gid/egid, optional `groups`) may do `want` on a node with `attr`.

    Root (uid 0) bypasses read and write checks, and exec/search checks too
    except that a non-directory needs at least one x bit, as Linux's
    capable(CAP_DAC_OVERRIDE) path.  `use_real_ids` is for access(2) without
    AT_EACCESS.
    """
    want &= 7
    if not want:
        return True
    uid = creds.uid if use_real_ids else creds.euid
    gid = creds.gid if use_real_ids else creds.egid
    mode = attr.mode
    if uid == 0:
        if want & MAY_EXEC and not S.S_ISDIR(mode) and not mode & 0o111:
            return False
        return True
    if attr.uid == uid:
        bits = (mode >> 6) & 7
    elif attr.gid == gid or attr.gid in getattr(creds, "groups", ()):
        bits = (mode >> 3) & 7
    else:
        bits = mode & 7
    return want & bits == want


def check_access(attr: "Attr", creds, want: int, use_real_ids: bool = False) -> None:
    """may_access, raising EACCES when it says no."""
    if not may_access(attr, creds, want, use_real_ids):
        raise SyscallError(errno.EACCES)


def is_readonly(loc: "Location") -> bool:
    """Writes through `loc` are refused: its mount or its file system is read-only."""
    return loc.mount.readonly or loc.mount.fs.readonly


def check_writable(loc: "Location") -> None:
    """EROFS when `loc` is on a read-only mount or file system (the node is not checked)."""
    if loc.mount.readonly or loc.mount.fs.readonly:
        raise SyscallError(errno.EROFS)


check_writable_mount = check_writable   # the name docs/vfs.md first used
