"""openat2's restricted open: RESOLVE_NO_XDEV, NO_MAGICLINKS, NO_SYMLINKS, BENEATH, IN_ROOT.

The walk itself is MountTable.resolve's, given WalkRules (EXDEV for leaving
the starting directory or crossing a mount, ELOOP for symlinks and procfs
magic links, IN_ROOT's clamped root).  What is left here is openat2's part:
the RESOLVE_* bits turned into rules, where the walk starts, and O_CREAT
(create a missing last component, through a dangling symlink too; O_EXCL
never follows one and wants the name to be new).
"""
from __future__ import annotations

import errno

from kvmbox.abi.fcntl import O_CREAT, O_NOFOLLOW
from kvmbox.errors import SyscallError
from kvmbox.sentry.vfs import at
from kvmbox.sentry.vfs.path import Location, WalkRules

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from kvmbox.sentry.task import Task

RESOLVE_NO_XDEV, RESOLVE_NO_MAGICLINKS, RESOLVE_NO_SYMLINKS = 0x01, 0x02, 0x04
RESOLVE_BENEATH, RESOLVE_IN_ROOT = 0x08, 0x10


def walk_rules(rflags: int) -> WalkRules:
    """The WalkRules for openat2's `resolve` bits."""
    return WalkRules(beneath=bool(rflags & RESOLVE_BENEATH), in_root=bool(rflags & RESOLVE_IN_ROOT),
                     no_xdev=bool(rflags & RESOLVE_NO_XDEV),
                     no_symlinks=bool(rflags & RESOLVE_NO_SYMLINKS),
                     no_magiclinks=bool(rflags & RESOLVE_NO_MAGICLINKS))


def resolve_restricted(t: "Task", dirfd: int, path: str, flags: int, mode: int,
                       rflags: int) -> tuple[Location, bool]:
    """(Location, created): what openat2 opens (creating it for O_CREAT), under `rflags`."""
    if not path:
        raise SyscallError(errno.ENOENT)
    rules = walk_rules(rflags)
    # As Linux's path_init: an absolute path never looks at dirfd, except under IN_ROOT
    # (BENEATH refuses it, in the walk).
    start = t.fs.root if path[0] == "/" and not rules.in_root else at.dir_of(t, dirfd)
    if not flags & O_CREAT:
        return t.kernel.vfs.resolve(start, path, follow=not flags & O_NOFOLLOW, root=t.fs.root,
                                    creds=t.creds, rules=rules), False
    from kvmbox.sentry.syscalls.sys_open import lookup_create
    return lookup_create(t, start, path, flags, mode, rules)
