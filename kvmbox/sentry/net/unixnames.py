"""AF_UNIX names: sockaddr_un parsing, and the sandbox-wide tables that map a name to the
bound socket (abstract names, socket inodes in the sandbox's file system).

A path bind makes a socket inode with the VFS's mknod (as Linux's unix_bind_bsd); the
socket is found again through the node's (st_dev, st_ino).  No host socket is ever
made: on a host-backed directory the name lives only in this table (`shadow`), so the
host's file system never sees it, and a socket file the host made (or a stale one, or
one made by mknod) is S_IFSOCK with nothing bound: ECONNREFUSED.
"""
from __future__ import annotations

import errno
import os
import stat as S

from kvmbox.abi.socket import AF_UNIX, SOCKADDR_STORAGE_SIZE, SUN_PATH_MAX, SUN_PATH_OFFSET
from kvmbox.errors import SyscallError
from kvmbox.sentry.vfs import at, perm

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from kvmbox.sentry.task import Task

AUTOBIND_SPACE = 0x100000                # 5 hex digits, as Linux's unix_autobind
UNNAMED = AF_UNIX.to_bytes(2, "little")  # getsockname of an unbound socket: the family only


class UnixNames:
    """The sandbox's AF_UNIX namespace (one per kernel)."""

    def __init__(self) -> None:
        self.abstract: dict[tuple[bytes, int], object] = {}  # (name, socket type): Linux
        # hashes abstract names with the type, so each type has a namespace of its own
        self.paths: dict[tuple[int, int], object] = {}      # (dev, ino) -> socket
        self.shadow: dict[tuple[int, int, str], object] = {}  # host dir (dev, ino), name
        self.next_auto = 0
        self.inflight = 0                                   # SCM_RIGHTS descriptions queued

    def autobind(self, sock) -> bytes:
        """A free abstract name "\\0xxxxx" bound to `sock` (ENOSPC when all are taken)."""
        for _ in range(AUTOBIND_SPACE):
            n = self.next_auto
            self.next_auto = (n + 1) % AUTOBIND_SPACE
            key = (b"\0" + b"%05x" % n, sock.stype)
            if key not in self.abstract:
                self.abstract[key] = sock
                return UNNAMED + key[0]
        raise SyscallError(errno.ENOSPC)

    def forget(self, key) -> None:
        """Drop the binding `key` (a socket's `bound_key`) when its socket closes."""
        kind, k = key
        table = {"abstract": self.abstract, "path": self.paths, "shadow": self.shadow}[kind]
        table.pop(k, None)


def parse(addr: bytes) -> tuple[str, bytes]:
    """A sockaddr_un as ("path", fs path bytes) or ("abstract", name with its NUL);
    EINVAL for a wrong family or length (Linux's unix_validate_addr)."""
    if len(addr) <= SUN_PATH_OFFSET or len(addr) > SUN_PATH_OFFSET + SUN_PATH_MAX:
        raise SyscallError(errno.EINVAL)
    if int.from_bytes(addr[:2], "little") != AF_UNIX:
        raise SyscallError(errno.EINVAL)
    body = addr[SUN_PATH_OFFSET:]
    if body[0] == 0:
        return "abstract", body
    return "path", body.split(b"\0", 1)[0]


def sockaddr(kind: str, name: bytes) -> bytes:
    """The address getsockname reports: a path with its NUL (length strlen + 3)."""
    return UNNAMED + name + (b"\0" if kind == "path" else b"")


def _is_host(node) -> bool:
    from kvmbox.sentry.fsimpl.host import HostNode
    return isinstance(node, HostNode)


def _shadow_key(parent, name: str) -> tuple[int, int, str]:
    a = parent.node.attr()
    return a.dev, a.ino, name


def bind_path(t: "Task", ns: UnixNames, sock, path: bytes, already_bound: bool):
    """Make the socket inode `path` for `sock`; its binding key.  EADDRINUSE when the path
    exists, EINVAL when `sock` is bound already (checked after, as Linux)."""
    from kvmbox.sentry.syscalls.sys_dir import _new_entry, _new_gid
    spath = os.fsdecode(path)
    try:
        parent, name = _new_entry(t, at.AT_FDCWD, spath)
    except SyscallError as e:
        raise SyscallError(errno.EADDRINUSE if e.errno == errno.EEXIST else e.errno) from None
    if _is_host(parent.node):
        key = _shadow_key(parent, name)
        if key in ns.shadow:
            raise SyscallError(errno.EADDRINUSE)
        if already_bound:
            raise SyscallError(errno.EINVAL)
        ns.shadow[key] = sock
        return ("shadow", key)
    if already_bound:
        raise SyscallError(errno.EINVAL)
    mode = S.S_IFSOCK | (0o777 & ~t.fs.umask)
    node = parent.node.mknod(name, mode, 0, t.creds.euid, _new_gid(t, parent))
    a = node.attr()
    ns.paths[(a.dev, a.ino)] = sock
    return ("path", (a.dev, a.ino))


def find_path(t: "Task", ns: UnixNames, path: bytes):
    """The socket bound at `path` (ENOENT, EACCES without write permission, ECONNREFUSED
    for a socket inode nothing is bound to or a file of another kind)."""
    spath = os.fsdecode(path)
    parent, name = at.resolve_parent(t, at.AT_FDCWD, spath)
    if _is_host(parent.node) and name not in ("", ".", ".."):
        sock = ns.shadow.get(_shadow_key(parent, name))
        if sock is not None:
            return sock
    loc = at.resolve(t, at.AT_FDCWD, spath)
    a = loc.node.attr()
    perm.check_access(a, t.creds, perm.MAY_WRITE)
    if not S.S_ISSOCK(a.mode):
        raise SyscallError(errno.ECONNREFUSED)
    sock = ns.paths.get((a.dev, a.ino))
    if sock is None:
        raise SyscallError(errno.ECONNREFUSED)
    return sock


def lookup(t: "Task", ns: UnixNames, addr: bytes, stype: int):
    """The socket a connect/sendto address names (an abstract name: of type `stype`)."""
    kind, name = parse(addr)
    if kind == "abstract":
        sock = ns.abstract.get((name, stype))
        if sock is None:
            raise SyscallError(errno.ECONNREFUSED)
        return sock
    return find_path(t, ns, name)


def names(kernel) -> UnixNames:
    """The kernel's AF_UNIX namespace."""
    return kernel.unix_names


assert SOCKADDR_STORAGE_SIZE >= SUN_PATH_OFFSET + SUN_PATH_MAX
