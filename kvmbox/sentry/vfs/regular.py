"""Open files of the VFS: RegularFile (bytes of a node's data) and DirFile (getdents).

A RegularFile reads and writes a FileData: PageData for in-memory files
(tmpfs, the overlay upper) or a host file's private fd (fsimpl/host.py).  The
FileData interface is duck-typed:

    size: int                     read(offset, n) -> bytes     write(offset, data) -> int
    truncate(size)                allocate(offset, length, keep_size)
    seek_data(offset, whence)     map_source() -> MapSource     sync()
    acquire() / release()         (one per open file description)

`node` is the Node stat reports; stacking file systems (overlay) set it to
their own node, so fstat shows the overlay's dev and ino.
"""
from __future__ import annotations

import errno
import os

from kvmbox.abi.fcntl import O_ACCMODE, O_APPEND, O_RDONLY, O_RDWR, O_WRONLY
from kvmbox.errors import SyscallError
from kvmbox.sentry.files import MAX_RW, FileDescription
from kvmbox.sentry.vfs.node import DT_DIR, Attr, Node
from kvmbox.sentry.vfs.pagecache import SEEK_DATA, SEEK_HOLE, MapSource

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from kvmbox.sentry.vfs.path import Location

SEEK_SET, SEEK_CUR, SEEK_END = 0, 1, 2
FALLOC_FL_KEEP_SIZE = 0x01
MAX_OFFSET = (1 << 63) - 1


def access_of(flags: int) -> tuple[bool, bool]:
    """(readable, writable) for open(2) flags: access mode 3 is neither, as on Linux."""
    acc = flags & O_ACCMODE
    return acc in (O_RDONLY, O_RDWR), acc in (O_WRONLY, O_RDWR)


def opens_for_write(flags: int) -> bool:
    """Whether open(2) flags ask for write access (O_WRONLY, O_RDWR or mode 3): what makes
    opening a directory EISDIR."""
    return flags & O_ACCMODE != O_RDONLY


class RegularFile(FileDescription):
    """An open regular file: a position over a FileData."""

    def __init__(self, node: Node, data, flags: int, loc: "Location | None") -> None:
        self.node = node
        self.data = data
        self.flags = flags
        self.location = loc
        self.readable, self.writable = access_of(flags)
        self.pos = 0
        data.acquire()
        self._released = False

    @property
    def mode(self) -> int:   # type: ignore[override]
        return self.node.mode

    def attr(self) -> Attr:
        return self.node.attr()

    # --- bytes ------------------------------------------------------------------------
    def read(self, n: int) -> bytes:
        if not self.readable:
            raise SyscallError(errno.EBADF)
        out = self.data.read(self.pos, min(n, MAX_RW))
        self.pos += len(out)
        return out

    def unread(self, data: bytes) -> None:
        self.pos -= len(data)

    def read_to(self, mm, addr: int, n: int, offset: int | None = None) -> int:
        """As FileDescription.read_to, with two differences.  A host file's bytes go
        straight into guest memory (one preadv into the guest's frames).  And a buffer
        that ends early gets what fits, as Linux's filemap_read copies up to the first
        byte it cannot write and returns that count (EFAULT only when it is 0)."""
        if not self.readable or (offset is not None and offset < 0):
            return super().read_to(mm, addr, n, offset)   # EBADF / EINVAL as read and pread
        into = getattr(self.data, "readinto", None)
        pos = self.pos if offset is None else offset
        if into is not None and n > 0:
            try:
                got = mm.fill(addr, min(n, MAX_RW), lambda views: into(pos, views))
            except SyscallError as e:
                if e.errno != errno.EFAULT:
                    raise
            else:
                if offset is None:
                    self.pos += got
                return got
        data = self.data.read(pos, min(n, MAX_RW))
        if data:
            try:
                mm.copy_out(addr, data)
            except SyscallError as e:
                ok = mm.writable_prefix(addr, len(data)) if e.errno == errno.EFAULT else 0
                if not ok:
                    raise
                mm.copy_out(addr, data[:ok])
                data = data[:ok]
        if offset is None:
            self.pos += len(data)
        return len(data)

    def write(self, data: bytes) -> int:
        if not self.writable:
            raise SyscallError(errno.EBADF)
        if self.flags & O_APPEND:
            self.pos = self.data.size
        n = self.data.write(self.pos, data)
        self.pos += n
        if n:
            self.node.modified()
        return n

    def write_position(self, offset: int | None) -> int | None:
        if self.flags & O_APPEND:
            return self.data.size
        return self.pos if offset is None else offset

    def pread(self, n: int, offset: int) -> bytes:
        if not self.readable:
            raise SyscallError(errno.EBADF)
        if offset < 0:
            raise SyscallError(errno.EINVAL)
        return self.data.read(offset, min(n, MAX_RW))

    def pwrite(self, data: bytes, offset: int) -> int:
        if not self.writable:
            raise SyscallError(errno.EBADF)
        if offset < 0:
            raise SyscallError(errno.EINVAL)
        if self.flags & O_APPEND:
            offset = self.data.size          # Linux appends even for pwrite on O_APPEND files
        n = self.data.write(offset, data)
        if n:
            self.node.modified()
        return n

    def seek(self, offset: int, whence: int) -> int:
        if whence == SEEK_SET:
            new = offset
        elif whence == SEEK_CUR:
            new = self.pos + offset
        elif whence == SEEK_END:
            new = self.data.size + offset
        elif whence in (SEEK_DATA, SEEK_HOLE):
            new = self.data.seek_data(offset, whence)
        else:
            raise SyscallError(errno.EINVAL)
        if new < 0 or new > MAX_OFFSET:
            raise SyscallError(errno.EINVAL)
        self.pos = new
        return new

    # --- the rest -----------------------------------------------------------------------
    def truncate(self, size: int) -> None:
        if not self.writable:
            raise SyscallError(errno.EINVAL)
        if size < 0:
            raise SyscallError(errno.EINVAL)
        self.data.truncate(size)
        self.node.modified()

    def sync(self) -> None:
        self.data.sync()

    def allocate(self, mode: int, offset: int, length: int) -> None:
        if not self.writable:
            raise SyscallError(errno.EBADF)
        if offset < 0 or length <= 0:
            raise SyscallError(errno.EINVAL)
        if mode & ~FALLOC_FL_KEEP_SIZE:
            raise SyscallError(errno.EOPNOTSUPP)
        self.data.allocate(offset, length, bool(mode & FALLOC_FL_KEEP_SIZE))
        self.node.modified()

    def readable_bytes(self) -> int:
        return max(0, self.data.size - self.pos)

    def mmap_source(self) -> MapSource:
        return self.data.map_source()

    def release(self) -> None:
        if not self._released:
            self._released = True
            self.data.release()


def dirent_size(name: bytes, old: bool = False) -> int:
    """d_reclen of one record, rounded up to 8: linux_dirent64 is 19 + name + NUL, and
    linux_dirent is 18 + name + NUL + the trailing d_type byte: the same size."""
    return (len(name) + 20 + 7) & ~7


class DirFile(FileDescription):
    """An open directory: getdents64 over a snapshot of its entries taken at offset 0."""

    readable = True

    def __init__(self, node: Node, flags: int, loc: "Location | None",
                 parent_ino: int | None = None) -> None:
        self.node = node
        self.flags = flags
        self.location = loc
        self.parent_ino = parent_ino
        self.pos = 0
        self._ents: list[tuple[int, int, str]] | None = None

    @property
    def mode(self) -> int:   # type: ignore[override]
        return self.node.mode

    def attr(self) -> Attr:
        return self.node.attr()

    def read(self, n: int) -> bytes:
        raise SyscallError(errno.EISDIR)

    def pread(self, n: int, offset: int) -> bytes:
        raise SyscallError(errno.EISDIR)

    def _snapshot(self) -> list[tuple[int, int, str]]:
        ino = self.node.ino
        ents = [(ino, DT_DIR, "."), (self.parent_ino or ino, DT_DIR, "..")]
        ents += [(i, t, name) for name, i, t in self.node.entries()]
        self._ents = ents
        return ents

    def getdents(self, bufsize: int, old: bool = False) -> list[tuple[int, int, int, str]]:
        ents = self._ents if self._ents is not None and self.pos else self._snapshot()
        out: list[tuple[int, int, int, str]] = []
        used = 0
        i = self.pos
        while i < len(ents):
            ino, dtype, name = ents[i]
            size = dirent_size(os.fsencode(name), old)
            if used + size > bufsize:
                if not out:
                    raise SyscallError(errno.EINVAL)
                break
            used += size
            i += 1
            out.append((ino, i, dtype, name))
        self.pos = i
        return out

    def seek(self, offset: int, whence: int) -> int:
        if whence == SEEK_SET:
            new = offset
        elif whence == SEEK_CUR:
            new = self.pos + offset
        else:
            raise SyscallError(errno.EINVAL)
        if new < 0:
            raise SyscallError(errno.EINVAL)
        self.pos = new
        return new

    def sync(self) -> None:
        pass
