"""The VFS object model: Attr (what stat reports), Node (an inode), Filesystem.

Every file-system implementation (kvmbox/sentry/fsimpl) subclasses Node and
Filesystem.  The defaults raise the errno Linux gives when an object cannot do
an operation, so an implementation overrides only what it supports.  Nodes do
not check permissions or read-only mounts: the syscall layer does that once,
through kvmbox.sentry.vfs.perm, before it calls a mutating method.
"""
from __future__ import annotations

import errno
import stat as S

from kvmbox.abi.structs import STAT
from kvmbox.errors import SyscallError
from kvmbox.record import record
from kvmbox.sentry.vfs.xattr import check_handler

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from kvmbox.sentry.files import FileDescription
    from kvmbox.sentry.vfs.path import Location

# d_type values of getdents64 (linux/dirent.h)
DT_UNKNOWN, DT_FIFO, DT_CHR, DT_DIR, DT_BLK, DT_REG, DT_LNK, DT_SOCK = 0, 1, 2, 4, 6, 8, 10, 12

# renameat2 flags
RENAME_NOREPLACE, RENAME_EXCHANGE, RENAME_WHITEOUT = 1, 2, 4

NAME_MAX = 255
PATH_MAX = 4096

# statfs f_flags (linux/statfs.h ST_*)
ST_RDONLY, ST_NOSUID, ST_NODEV = 0x1, 0x2, 0x4


def dtype_of(mode: int) -> int:
    """The d_type of a st_mode."""
    return (mode >> 12) & 0xF


def stat_bytes(a: "Attr") -> bytes:
    """The 144-byte x86-64 struct stat for an Attr (fstat, newfstatat)."""
    return STAT.pack(a.dev, a.ino, a.nlink, a.mode, a.uid, a.gid, 0, a.rdev, a.size, a.blksize,
                     a.blocks, a.atime_ns // 10**9, a.atime_ns % 10**9, a.mtime_ns // 10**9,
                     a.mtime_ns % 10**9, a.ctime_ns // 10**9, a.ctime_ns % 10**9)


@record(slots=True)
class Attr:
    """What stat(2)/statx(2) report for a node; times in nanoseconds since the epoch."""
    dev: int
    ino: int
    mode: int
    nlink: int
    uid: int
    gid: int
    size: int
    rdev: int = 0
    blksize: int = 4096
    blocks: int = 0            # 512-byte units
    atime_ns: int = 0
    mtime_ns: int = 0
    ctime_ns: int = 0
    btime_ns: int = 0


@record(slots=True)
class StatFs:
    """What statfs(2) reports for a file system."""
    f_type: int                # the file system's magic number (TMPFS_MAGIC, PROC_SUPER_MAGIC ...)
    bsize: int = 4096
    blocks: int = 0
    bfree: int = 0
    bavail: int = 0
    files: int = 0
    ffree: int = 0
    namelen: int = NAME_MAX
    frsize: int = 4096
    flags: int = 0             # ST_RDONLY (1), ST_NOSUID (2) ... filled from the mount too


class Filesystem:
    """One mounted file-system instance."""

    fstype = "none"            # the name /proc/mounts shows (tmpfs, proc, overlay, ...)
    readonly = False           # the file system itself cannot be written (mounts add their own flag)
    stable_names = True        # names change only through the Sentry (path walks may be cached)
    mount_flags = ""           # per-mount options it always has, for mountinfo ("nosuid,nodev")

    def __init__(self, dev: int) -> None:
        self.dev = dev         # st_dev of every node in it; unique per instance in a Kernel
        self.root: Node        # set by the subclass

    def statfs(self) -> StatFs:
        return StatFs(f_type=0)

    def super_options(self) -> str:
        """File-system options for /proc/mounts and mountinfo ("size=...,nr_inodes=..."), or ""."""
        return ""


class Node:
    """One file-system object.  `fs` and `ino` are fixed for the node's life.

    Identity matters: looking up the same name twice (without a rename or
    unlink in between) returns the same Node object, so hard links, inode
    numbers and open files agree.
    """

    __slots__ = ("fs", "ino", "__weakref__")

    def __init__(self, fs: Filesystem, ino: int) -> None:
        self.fs = fs
        self.ino = ino

    # --- every node -------------------------------------------------------------
    def attr(self) -> Attr:
        raise NotImplementedError

    @property
    def mode(self) -> int:
        """st_mode (type and permission bits); subclasses may answer without a full attr()."""
        return self.attr().mode

    def is_dir(self) -> bool:
        return S.S_ISDIR(self.mode)

    def is_symlink(self) -> bool:
        return S.S_ISLNK(self.mode)

    def setattr(self, *, mode: int | None = None, uid: int | None = None, gid: int | None = None,
                size: int | None = None, atime_ns: int | None = None,
                mtime_ns: int | None = None, now: int | None = None) -> None:
        """chmod/chown/truncate/utimensat on the node (mode: permission bits only).

        Every change sets ctime.  `now` is the instant of the change when the caller
        took one (utimensat's UTIME_NOW): ctime gets exactly that value, and a time
        equal to it means "now", so mtime == ctime afterwards as on Linux."""
        raise SyscallError(errno.EPERM)

    def modified(self) -> None:
        """The node's data was written through an open file: update mtime/ctime (default: nothing)."""

    def open(self, flags: int, loc: "Location") -> "FileDescription":
        """A new open file description for this node (flags as open(2) got them, O_CREAT done).

        Directories opened for writing give EISDIR; the caller has checked access.
        """
        raise SyscallError(errno.ENXIO)

    # --- symlinks ---------------------------------------------------------------
    def readlink(self) -> str:
        raise SyscallError(errno.EINVAL)

    def jump(self) -> "Location | None":
        """procfs "magic links" (/proc/self/root, cwd, exe, fd/N): the Location a path walk
        continues at instead of following readlink() text; None for ordinary nodes."""
        return None

    # --- directories --------------------------------------------------------------
    def lookup(self, name: str) -> "Node":
        """The child called `name` (never "." or ".."); ENOENT if absent."""
        raise SyscallError(errno.ENOTDIR)

    def entries(self) -> list[tuple[str, int, int]]:
        """(name, ino, d_type) of every child, without "." and "..", in a stable order."""
        raise SyscallError(errno.ENOTDIR)

    def create(self, name: str, mode: int, uid: int, gid: int) -> "Node":
        """A new empty regular file; EEXIST if the name is taken."""
        raise SyscallError(errno.ENOTDIR if not self.is_dir() else errno.EPERM)

    def mkdir(self, name: str, mode: int, uid: int, gid: int) -> "Node":
        raise SyscallError(errno.ENOTDIR if not self.is_dir() else errno.EPERM)

    def mknod(self, name: str, mode: int, rdev: int, uid: int, gid: int) -> "Node":
        """FIFOs and sockets only (device nodes are refused with EPERM)."""
        raise SyscallError(errno.ENOTDIR if not self.is_dir() else errno.EPERM)

    def symlink(self, name: str, target: str, uid: int, gid: int) -> "Node":
        raise SyscallError(errno.ENOTDIR if not self.is_dir() else errno.EPERM)

    def link(self, name: str, target: "Node") -> None:
        """A hard link `name` to `target`; EXDEV if target lives in another file system."""
        raise SyscallError(errno.ENOTDIR if not self.is_dir() else errno.EPERM)

    def unlink(self, name: str) -> None:
        """Remove a non-directory child (EISDIR for a directory)."""
        raise SyscallError(errno.ENOTDIR if not self.is_dir() else errno.EPERM)

    def rmdir(self, name: str) -> None:
        """Remove an empty directory child (ENOTEMPTY, ENOTDIR)."""
        raise SyscallError(errno.ENOTDIR if not self.is_dir() else errno.EPERM)

    def rename(self, old: str, newdir: "Node", new: str, flags: int = 0) -> None:
        """Move child `old` to `newdir`/`new` (same file system; EXDEV otherwise), replacing
        as rename(2) does; flags are renameat2's RENAME_NOREPLACE / RENAME_EXCHANGE."""
        raise SyscallError(errno.ENOTDIR if not self.is_dir() else errno.EPERM)

    # --- optional abilities: a file system without one keeps these defaults ------------
    def tmpfile(self, mode: int, uid: int, gid: int, *, linkable: bool) -> "Node":
        """An unnamed regular file in this directory (O_TMPFILE); `linkable` False for
        O_EXCL.  EOPNOTSUPP where the file system cannot make one (host, /proc, /dev)."""
        raise SyscallError(errno.EOPNOTSUPP)

    def getxattr(self, name: bytes) -> bytes:
        """The value of extended attribute `name`; a node without a store has none."""
        check_handler(name)
        raise SyscallError(errno.ENODATA)

    def listxattr(self) -> list[bytes]:
        """The names of this node's extended attributes, in the file system's order."""
        return []

    def setxattr(self, name: bytes, value: bytes, flags: int) -> None:
        """Set `name` (XATTR_CREATE / XATTR_REPLACE in flags); EOPNOTSUPP without a store."""
        raise SyscallError(errno.EOPNOTSUPP)

    def removexattr(self, name: bytes) -> None:
        """Remove `name`; a node without a store has nothing to remove."""
        check_handler(name)
        raise SyscallError(errno.ENODATA)
