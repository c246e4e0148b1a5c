"""devfs: the sandbox's /dev — null, zero, full, random, urandom, tty, the std links, shm/ and pts/.

Nothing else exists here: no /dev/kvm, /dev/mem or block devices.  The
character devices are implemented in the Sentry (tty passes through to the
Sentry's controlling terminal, and only when it has one: otherwise opening
/dev/tty gives ENXIO, as Linux does for a process without one).  The tree is
fixed at creation, so every lookup returns the same node.
"""
from __future__ import annotations

import errno
import os
import stat as S
import time

from kvmbox.abi.poll import POLLIN, POLLOUT, POLLRDNORM, POLLWRNORM
from kvmbox.errors import SyscallError
from kvmbox.sentry.files import FileDescription
from kvmbox.sentry.hoststream import HostStream
from kvmbox.sentry.vfs.node import Attr, Filesystem, Node, StatFs, dtype_of
from kvmbox.sentry.vfs.regular import DirFile, access_of, opens_for_write
from kvmbox.sentry.vfs.xattr import InMemoryXattrs, XattrSpace

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from kvmbox.sentry.kernel import Kernel
    from kvmbox.sentry.vfs.path import Location

TMPFS_MAGIC = 0x01021994
MAX_READ = 1 << 20          # one read of zero/random returns at most this much (the caller loops)


class DeviceFile(FileDescription):
    """An open character device of /dev: reads and writes never block."""

    def __init__(self, node: "DevNode", flags: int, loc: "Location") -> None:
        self.node = node
        self.flags = flags
        self.location = loc
        self.readable, self.writable = access_of(flags)
        self.mode = node.mode

    def attr(self) -> Attr:
        return self.node.attr()

    def _check(self, want_write: bool) -> None:
        if not (self.writable if want_write else self.readable):
            raise SyscallError(errno.EBADF)

    def fill(self, n: int) -> bytes:
        """What a read of n bytes gives (subclasses)."""
        return b""

    def sink(self, data: bytes) -> int:
        """What a write of `data` does (subclasses): the count written."""
        return len(data)

    def read(self, n: int) -> bytes:
        self._check(False)
        return self.fill(min(n, MAX_READ))

    def pread(self, n: int, offset: int) -> bytes:
        return self.read(n)

    def write(self, data: bytes) -> int:
        self._check(True)
        return self.sink(data)

    def pwrite(self, data: bytes, offset: int) -> int:
        return self.write(data)

    def seek(self, offset: int, whence: int) -> int:
        return 0                    # Linux's null/zero/full/random lseek: always position 0

    def poll(self, events: int) -> int:
        return events & (POLLIN | POLLOUT | POLLRDNORM | POLLWRNORM)


class NullFile(DeviceFile):
    pass


class ZeroFile(DeviceFile):
    def fill(self, n: int) -> bytes:
        return bytes(n)


class FullFile(ZeroFile):
    def sink(self, data: bytes) -> int:
        raise SyscallError(errno.ENOSPC)


class RandomFile(DeviceFile):
    def fill(self, n: int) -> bytes:
        return os.urandom(n)


class DevNode(InMemoryXattrs, Node):
    """A node of /dev: a directory, a symlink, or a character device with its open().

    Like devtmpfs, nodes keep extended attributes (trusted.* and security.* for root on
    anything; user.* only on the directories, by the VFS's rules)."""

    __slots__ = ("_mode", "rdev", "target", "children", "opener", "uid", "gid", "ctime_ns",
                 "xattrs")

    def __init__(self, fs: "DevFilesystem", ino: int, mode: int, *, rdev: int = 0, target: str = "",
                 opener=None) -> None:
        super().__init__(fs, ino)
        self._mode = mode
        self.rdev = rdev
        self.target = target
        self.opener = opener
        self.children: dict[str, DevNode] = {}
        self.ctime_ns = fs.created_ns
        self.xattrs = None

    def xattr_changed(self) -> None:
        self.ctime_ns = time.time_ns()

    @property
    def mode(self) -> int:
        return self._mode

    def attr(self) -> Attr:
        nlink = 2 + sum(c.is_dir() for c in self.children.values()) if self.is_dir() else 1
        size = len(self.target) if self.is_symlink() else 0
        ns = self.ctime_ns
        return Attr(dev=self.fs.dev, ino=self.ino, mode=self._mode, nlink=nlink, uid=0, gid=0,
                    size=size, rdev=self.rdev, atime_ns=ns, mtime_ns=ns, ctime_ns=ns)

    def open(self, flags: int, loc: "Location") -> FileDescription:
        if self.is_dir():
            if opens_for_write(flags):
                raise SyscallError(errno.EISDIR)
            return DirFile(self, flags, loc)
        if self.opener is None:
            raise SyscallError(errno.ENXIO)
        return self.opener(self, flags, loc)

    def readlink(self) -> str:
        if not self.is_symlink():
            raise SyscallError(errno.EINVAL)
        return self.target

    def lookup(self, name: str) -> Node:
        if not self.is_dir():
            raise SyscallError(errno.ENOTDIR)
        try:
            return self.children[name]
        except KeyError:
            raise SyscallError(errno.ENOENT) from None

    def entries(self) -> list[tuple[str, int, int]]:
        if not self.is_dir():
            raise SyscallError(errno.ENOTDIR)
        return [(name, c.ino, dtype_of(c.mode)) for name, c in self.children.items()]


def _open_tty(node: DevNode, flags: int, loc: "Location") -> FileDescription:
    """/dev/tty: the Sentry's controlling terminal, passed through as a host stream."""
    readable, writable = access_of(flags)
    try:
        fd = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError:
        raise SyscallError(errno.ENXIO) from None
    try:
        f = HostStream(fd, readable=readable, writable=writable)
    finally:
        os.close(fd)
    f.flags = flags
    f.location = loc
    return f


def _has_ctty() -> bool:
    try:
        fd = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError:
        return False
    os.close(fd)
    return True


# name -> (major, minor, file class)
CHAR_DEVICES = {
    "null": (1, 3, NullFile),
    "zero": (1, 5, ZeroFile),
    "full": (1, 7, FullFile),
    "random": (1, 8, RandomFile),
    "urandom": (1, 9, RandomFile),
}
LINKS = {"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1",
         "stderr": "/proc/self/fd/2"}


class DevFilesystem(Filesystem):
    """One /dev for a Kernel (build.py mounts it at /dev and a tmpfs over /dev/shm)."""

    fstype = "devtmpfs"

    def __init__(self, kernel: "Kernel", dev: int) -> None:
        super().__init__(dev)
        self.kernel = kernel
        self.created_ns = time.time_ns()
        self.xattr_space = XattrSpace(1 << 20)
        self._next_ino = 1
        self.root = self._add(None, "", S.S_IFDIR | 0o755)
        for name, (major, minor, cls) in CHAR_DEVICES.items():
            self._add(self.root, name, S.S_IFCHR | 0o666, rdev=os.makedev(major, minor),
                      opener=cls)
        # Without a controlling terminal the node stays, and open gives ENXIO, as on Linux.
        self._add(self.root, "tty", S.S_IFCHR | 0o666, rdev=os.makedev(5, 0),
                  opener=_open_tty if _has_ctty() else None)
        for name, target in LINKS.items():
            self._add(self.root, name, S.S_IFLNK | 0o777, target=target)
        self._add(self.root, "pts", S.S_IFDIR | 0o755)
        self._add(self.root, "shm", S.S_IFDIR | 0o1777)

    def _add(self, parent: DevNode | None, name: str, mode: int, **kw) -> DevNode:
        node = DevNode(self, self._next_ino, mode, **kw)
        self._next_ino += 1
        if parent is not None:
            parent.children[name] = node
        return node

    def statfs(self) -> StatFs:
        return StatFs(f_type=TMPFS_MAGIC, bsize=4096)
