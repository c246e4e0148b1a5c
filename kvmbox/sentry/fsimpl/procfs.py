"""procfs: /proc generated from Sentry state (tasks, mounts, memory), never from the host's /proc.

The tree is data: each directory is a DirSpec naming its children (FileSpec:
text generated at open; LinkSpec: a symlink, "magic" when it has a jump);
per-task directories carry the tid they describe and look their task up among
Kernel.live_tasks() on every access, so a dead task's files give ENOENT.
Nodes are cached by (tid, path), so a name always gives the same Node while
anything holds it, and inode numbers stay stable for the file system's life.
"""
from __future__ import annotations

import errno
import stat as S
import time
import weakref
from collections.abc import Callable

from kvmbox.abi.fcntl import O_ACCMODE, O_TRUNC, O_WRONLY
from kvmbox.abi.poll import POLLIN, POLLOUT, POLLRDNORM, POLLWRNORM
from kvmbox.errors import SyscallError
from kvmbox.record import field, record
from kvmbox.sentry.files import FileDescription
from kvmbox.sentry.vfs.node import DT_DIR, DT_LNK, DT_REG, Attr, Filesystem, Node, StatFs
from kvmbox.sentry.vfs.regular import DirFile, access_of, opens_for_write

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from kvmbox.sentry.kernel import Kernel
    from kvmbox.sentry.task import Task
    from kvmbox.sentry.vfs.path import Location

PROC_SUPER_MAGIC = 0x9FA0
SEEK_SET, SEEK_CUR, SEEK_END = 0, 1, 2

Gen = Callable[["ProcFilesystem", "Task | None"], bytes]
LinkTarget = Callable[["ProcFilesystem", "Task | None"], str]
LinkJump = Callable[["ProcFilesystem", "Task | None"], "Location | None"]


@record(frozen=True)
class FileSpec:
    """A file whose bytes `gen(fs, task)` makes at open (`gen(fs, task, name)` if named);
    with `put`, a write hands it the bytes (`put(fs, task, data)`: comm), else EINVAL."""
    gen: Gen
    perm: int = 0o444
    named: bool = False
    put: Callable[["ProcFilesystem", "Task | None", bytes], None] | None = None


@record(frozen=True)
class LinkSpec:
    """A symlink; with `jump`, a magic link a path walk continues at (cwd, root, exe, fd/N).

    With `named`, both get the entry's name as a third argument (fd/N: N).
    """
    target: LinkTarget
    jump: LinkJump | None = None
    named: bool = False


@record(frozen=True)
class DirSpec:
    """A directory: fixed `entries`, plus `dynamic(fs, task)` -> [(name, spec, tid)] (pids, fds),
    plus names found by `hidden(fs, name)` -> (spec, tid) or None but never listed (the tids
    of threads that lead no process)."""
    entries: dict[str, "Spec"] = field(default_factory=dict)
    dynamic: Callable[["ProcFilesystem", "Task | None"], list[tuple[str, "Spec", "int | None"]]] | None = None
    perm: int = 0o555
    hidden: Callable[["ProcFilesystem", str], "tuple[Spec, int] | None"] | None = None


Spec = FileSpec | LinkSpec | DirSpec


class ProcNode(Node):
    """One /proc object: a spec, the tid it describes (None outside /proc/<pid>) and its path."""

    __slots__ = ("spec", "tid", "path")

    def __init__(self, fs: "ProcFilesystem", ino: int, spec: Spec, tid: int | None,
                 path: tuple[str, ...]) -> None:
        super().__init__(fs, ino)
        self.spec = spec
        self.tid = tid
        self.path = path

    # --- the task this node describes -----------------------------------------------
    def task(self) -> "Task | None":
        """The live task of this node (None outside per-task dirs); ENOENT once it has gone."""
        if self.tid is None:
            return None
        t = self.fs.find_task(self.tid)
        if t is None:
            raise SyscallError(errno.ENOENT)
        return t

    # --- every node -------------------------------------------------------------------
    @property
    def mode(self) -> int:
        spec = self.spec
        if isinstance(spec, DirSpec):
            return S.S_IFDIR | spec.perm
        if isinstance(spec, LinkSpec):
            return S.S_IFLNK | 0o777
        return S.S_IFREG | spec.perm

    def attr(self) -> Attr:
        t = self.task()
        uid = gid = 0
        if t is not None:
            uid, gid = t.creds.euid, t.creds.egid
        nlink = 1
        if isinstance(self.spec, DirSpec):
            nlink = 2 + sum(isinstance(s, DirSpec) for s in self.spec.entries.values())
        ns = self.fs.created_ns
        return Attr(dev=self.fs.dev, ino=self.ino, mode=self.mode, nlink=nlink, uid=uid, gid=gid,
                    size=0, blksize=1024, atime_ns=ns, mtime_ns=ns, ctime_ns=ns)

    def open(self, flags: int, loc: "Location") -> FileDescription:
        spec = self.spec
        if isinstance(spec, DirSpec):
            if opens_for_write(flags):
                raise SyscallError(errno.EISDIR)
            self.task()
            return DirFile(self, flags, loc)
        if isinstance(spec, LinkSpec):        # O_PATH|O_NOFOLLOW opens are the caller's business
            raise SyscallError(errno.ELOOP)
        if self.path[:1] == ("sys",):
            _sysctl_permission(spec.perm, flags)
        data = spec.gen(self.fs, self.task(), *self._name(spec))
        return SnapshotFile(self, flags, loc, data)

    # --- extended attributes: procfs has none and takes none -----------------------------
    def getxattr(self, name: bytes) -> bytes:
        raise SyscallError(errno.EOPNOTSUPP)

    def setxattr(self, name: bytes, value: bytes, flags: int) -> None:
        raise SyscallError(errno.EOPNOTSUPP)

    def removexattr(self, name: bytes) -> None:
        raise SyscallError(errno.EOPNOTSUPP)

    def listxattr(self) -> list[bytes]:
        return []

    # --- symlinks -------------------------------------------------------------------------
    def readlink(self) -> str:
        if not isinstance(self.spec, LinkSpec):
            raise SyscallError(errno.EINVAL)
        return self.spec.target(self.fs, self.task(), *self._name(self.spec))

    def jump(self) -> "Location | None":
        if not isinstance(self.spec, LinkSpec) or self.spec.jump is None:
            return None
        return self.spec.jump(self.fs, self.task(), *self._name(self.spec))

    def _name(self, spec: FileSpec | LinkSpec) -> tuple[str, ...]:
        return (self.path[-1],) if spec.named else ()

    # --- directories --------------------------------------------------------------------
    def _children(self) -> list[tuple[str, Spec, int | None]]:
        spec = self.spec
        if not isinstance(spec, DirSpec):
            raise SyscallError(errno.ENOTDIR)
        t = self.task()
        out = [(name, s, self.tid) for name, s in spec.entries.items()]
        if spec.dynamic is not None:
            out += spec.dynamic(self.fs, t)
        return out

    def lookup(self, name: str) -> Node:
        for child, spec, tid in self._children():
            if child == name:
                return self.fs.node(spec, tid, self.path + (name,))
        hidden = getattr(self.spec, "hidden", None)
        found = hidden(self.fs, name) if hidden is not None else None
        if found is not None:
            return self.fs.node(found[0], found[1], self.path + (name,))
        raise SyscallError(errno.ENOENT)

    def entries(self) -> list[tuple[str, int, int]]:
        out = []
        for name, spec, tid in self._children():
            node = self.fs.node(spec, tid, self.path + (name,))
            dtype = DT_DIR if isinstance(spec, DirSpec) else DT_LNK if isinstance(spec, LinkSpec) else DT_REG
            out.append((name, node.ino, dtype))
        return out


def _sysctl_permission(perm: int, flags: int) -> None:
    """Linux's proc_sys_permission: a /proc/sys file grants root only its owner bits (no
    CAP_DAC_OVERRIDE), so opening a 0444 one for writing (or with access mode 3) gives EACCES
    even to root.  Other users already met the ordinary check with the same bits."""
    want_read = flags & O_ACCMODE != O_WRONLY
    want_write = opens_for_write(flags) or flags & O_TRUNC
    if (want_read and not perm & 0o400) or (want_write and not perm & 0o200):
        raise SyscallError(errno.EACCES)


class SnapshotFile(FileDescription):
    """An open generated file: its bytes fixed at open, then read/pread/seek over them."""

    def __init__(self, node: ProcNode, flags: int, loc: "Location | None", data: bytes) -> None:
        self.node = node
        self.flags = flags
        self.location = loc
        self.data = data
        self.pos = 0
        self.readable, self.writable = access_of(flags)
        self.mode = node.mode

    def attr(self) -> Attr:
        return self.node.attr()

    def read(self, n: int) -> bytes:
        if not self.readable:
            raise SyscallError(errno.EBADF)
        chunk = self.data[self.pos:self.pos + n]
        self.pos += len(chunk)
        return chunk

    def unread(self, data: bytes) -> None:
        self.pos -= len(data)

    def pread(self, n: int, offset: int) -> bytes:
        if not self.readable:
            raise SyscallError(errno.EBADF)
        if offset < 0:
            raise SyscallError(errno.EINVAL)
        return self.data[offset:offset + n]

    def write(self, data: bytes) -> int:
        # Linux opens these for writing (root passes the mode check) but most have no write op.
        if not self.writable:
            raise SyscallError(errno.EBADF)
        put = getattr(self.node.spec, "put", None)
        if put is None:
            raise SyscallError(errno.EINVAL)
        put(self.node.fs, self.node.task(), data)
        return len(data)

    def pwrite(self, data: bytes, offset: int) -> int:
        raise SyscallError(errno.EINVAL if self.writable else errno.EBADF)

    def seek(self, offset: int, whence: int) -> int:
        if whence == SEEK_SET:
            pos = offset
        elif whence == SEEK_CUR:
            pos = self.pos + offset
        elif whence == SEEK_END:
            pos = len(self.data) + offset
        else:
            raise SyscallError(errno.EINVAL)
        if pos < 0:
            raise SyscallError(errno.EINVAL)
        self.pos = pos
        return pos

    def poll(self, events: int) -> int:
        return events & (POLLIN | POLLOUT | POLLRDNORM | POLLWRNORM)

    def readable_bytes(self) -> int:
        return max(len(self.data) - self.pos, 0)


class ProcFilesystem(Filesystem):
    """One procfs instance for a Kernel (build.py mounts it at /proc)."""

    fstype = "proc"
    stable_names = False       # /proc/<pid> and the magic links change with the tasks

    def __init__(self, kernel: "Kernel", dev: int) -> None:
        super().__init__(dev)
        from kvmbox.sentry.fsimpl import procfiles, proctree
        self.kernel = kernel
        self.created_ns = time.time_ns()
        self.boot_id = procfiles.uuid4_text()          # fixed per Kernel: /proc/sys/kernel/random/boot_id
        self._inos: dict[tuple[int | None, tuple[str, ...]], int] = {}
        self._nodes: weakref.WeakValueDictionary = weakref.WeakValueDictionary()
        self.root = self.node(proctree.ROOT, None, ())
        from kvmbox.sentry.fsimpl.procfd import OpenFilesFs
        self.open_files = OpenFilesFs()           # where fd/N of a file without a path leads

    def statfs(self) -> StatFs:
        return StatFs(f_type=PROC_SUPER_MAGIC, bsize=4096)

    def node(self, spec: Spec, tid: int | None, path: tuple[str, ...]) -> ProcNode:
        """The one node for `path` (the names below /proc) describing task `tid`."""
        key = (tid, path)
        n = self._nodes.get(key)
        if n is None or n.spec is not spec:
            ino = self._inos.setdefault(key, len(self._inos) + 1)
            n = ProcNode(self, ino, spec, tid, path)
            self._nodes[key] = n
        return n

    # --- Sentry state the generators read --------------------------------------------
    def tasks(self) -> list["Task"]:
        return self.kernel.visible_tasks()

    def find_task(self, tid: int) -> "Task | None":
        for t in self.kernel.visible_tasks():
            if t.tid == tid:
                return t
        return None

    def current(self) -> "Task | None":
        return self.kernel.current_task()
