"""openat2's restricted path walk: RESOLVE_NO_XDEV, NO_MAGICLINKS, NO_SYMLINKS, BENEATH, IN_ROOT.

A component-at-a-time walk like MountTable.resolve, with the restrictions
checked at each step: EXDEV for leaving the starting directory (BENEATH, an
absolute path or symlink, a ".." above it) or crossing a mount (NO_XDEV),
ELOOP for symlinks (NO_SYMLINKS) and procfs magic links (NO_MAGICLINKS).
With IN_ROOT the starting directory acts as the root ("/" and ".." stop there).
"""
from __future__ import annotations

import errno

from kvmbox.errors import SyscallError
from kvmbox.sentry.vfs import at, perm
from kvmbox.sentry.vfs.node import NAME_MAX, PATH_MAX
from kvmbox.sentry.vfs.path import MAXSYMLINKS, Location

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from kvmbox.sentry.task import Task

RESOLVE_NO_XDEV, RESOLVE_NO_MAGICLINKS, RESOLVE_NO_SYMLINKS = 0x01, 0x02, 0x04
RESOLVE_BENEATH, RESOLVE_IN_ROOT = 0x08, 0x10
O_CREAT, O_EXCL, O_NOFOLLOW, O_PATH = 0o100, 0o200, 0o400000, 0o10000000


def resolve_restricted(t: "Task", dirfd: int, path: str, flags: int, mode: int,
                       rflags: int) -> Location:
    """The Location openat2 opens (creating it for O_CREAT), under `rflags`."""
    if len(path) >= PATH_MAX:
        raise SyscallError(errno.ENAMETOOLONG)
    vfs = t.kernel.vfs
    start = at.dir_of(t, dirfd)
    in_root = bool(rflags & RESOLVE_IN_ROOT)
    beneath = bool(rflags & RESOLVE_BENEATH)
    root = start if in_root else t.fs.root
    follow_last = not flags & O_NOFOLLOW
    todo = [c for c in path.split("/") if c]
    todo.reverse()
    must_dir = path.endswith("/")
    if path.startswith("/"):
        if beneath:
            raise SyscallError(errno.EXDEV)
        cur = root
    else:
        cur = start
    stack: list[Location] = []          # the walk from `start` (for ".." and BENEATH)
    links = 0
    while todo:
        name = todo.pop()
        if len(name) > NAME_MAX:
            raise SyscallError(errno.ENAMETOOLONG)
        node = cur.node
        if not node.is_dir():
            raise SyscallError(errno.ENOTDIR)
        if not perm.may_access(node.attr(), t.creds, perm.MAY_EXEC):
            raise SyscallError(errno.EACCES)
        if name == ".":
            continue
        if name == "..":
            if stack:
                nxt = stack.pop()
            elif beneath:
                raise SyscallError(errno.EXDEV)
            elif cur.path == root.path and cur.node is root.node:
                nxt = cur
            else:
                nxt = vfs.parent_of(cur, root)
            if rflags & RESOLVE_NO_XDEV and nxt.mount is not cur.mount:
                raise SyscallError(errno.EXDEV)
            cur = nxt
            continue
        last = not todo
        try:
            child = node.lookup(name)
        except SyscallError as e:
            if e.errno == errno.ENOENT and last and flags & O_CREAT and not must_dir:
                from kvmbox.sentry.syscalls.sys_open import _create
                return _create(t, cur, name, mode)
            raise
        nxt = vfs.child(cur, name, child)
        if rflags & RESOLVE_NO_XDEV and nxt.mount is not cur.mount:
            raise SyscallError(errno.EXDEV)
        if child.is_symlink() and (not last or follow_last or must_dir):
            if rflags & RESOLVE_NO_SYMLINKS:
                raise SyscallError(errno.ELOOP)
            links += 1
            if links > MAXSYMLINKS:
                raise SyscallError(errno.ELOOP)
            jump = child.jump()
            if jump is not None:
                if rflags & RESOLVE_NO_MAGICLINKS:
                    raise SyscallError(errno.ELOOP)
                if beneath or in_root:
                    raise SyscallError(errno.EXDEV)
                cur, stack = jump, []
                continue
            target = child.readlink()
            if target.startswith("/"):
                if beneath:
                    raise SyscallError(errno.EXDEV)
                cur, stack = root, []
            todo.extend(reversed([c for c in target.split("/") if c]))
            if last and target.endswith("/"):
                must_dir = True
            continue
        if last and flags & O_CREAT and flags & O_EXCL:
            raise SyscallError(errno.EEXIST)
        stack.append(cur)
        cur = nxt
    if must_dir and not cur.node.is_dir():
        raise SyscallError(errno.ENOTDIR)
    return cur
