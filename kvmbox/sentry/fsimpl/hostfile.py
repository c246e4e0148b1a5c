"""Open host files: a host regular file's bytes through a private host fd, and its mappings.

HostFile is the open file (fstat from its own fd, so a file unlinked while open
still answers); HostData reads and writes through the fd and is what regular.py
calls the file's data; BlockDeviceData is a block device given as a standard
stream; HostMapSource is what mmap maps, one per mapped file, holding a host fd
of its own (mappings outlive the open file).  Every OSError becomes the guest's
errno (hostcalls.guest_error).
"""
from __future__ import annotations

import fcntl
import os

from kvmbox.sentry.fsimpl import hostcalls
from kvmbox.sentry.files import MAX_RW
from kvmbox.sentry.vfs.node import Attr
from kvmbox.sentry.vfs.pagecache import MapSource
from kvmbox.sentry.vfs.regular import RegularFile

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from kvmbox.mm.vma import Backing
    from kvmbox.sentry.fsimpl.host import HostNode

_err = hostcalls.guest_error


class HostFile(RegularFile):
    """An open host regular file: fstat goes to its own host fd, so a file unlinked
    on a read-write mount while open still answers fstat (and mmap) as on Linux."""

    @property
    def mode(self) -> int:   # type: ignore[override]
        return self.attr().mode

    def attr(self) -> Attr:
        node = self.node
        attr_of = getattr(node, "attr_of", None)       # a HostNode's (not the overlay's)
        if attr_of is None or node.fs.readonly:
            return node.attr()                         # overlay's own node; cached read-only stat
        try:
            return attr_of(os.fstat(self.data.fd))
        except OSError as e:
            raise _err(e) from None


BLKGETSIZE64 = 0x80081272            # _IOR(0x12, 114, size_t): a block device's size in bytes


class HostData:
    """A host regular file's bytes through the open file's private host fd (see regular.py)."""

    __slots__ = ("fd", "node")

    def __init__(self, fd: int, node: "HostNode | None" = None) -> None:
        self.fd = fd
        self.node = node                  # for the read-only page cache (private_cache)

    @property
    def size(self) -> int:
        try:
            return os.fstat(self.fd).st_size
        except OSError as e:
            raise _err(e) from None

    def read(self, offset: int, n: int) -> bytes:
        try:
            return os.pread(self.fd, min(n, MAX_RW), offset)
        except OSError as e:
            raise _err(e) from None

    def readinto(self, offset: int, views: list) -> int:
        """Read from `offset` straight into `views` (guest memory); the count read."""
        try:
            return os.preadv(self.fd, views, offset) if views else 0
        except OSError as e:
            raise _err(e) from None

    def write(self, offset: int, data: bytes) -> int:
        try:
            return os.pwrite(self.fd, data, offset)
        except OSError as e:
            raise _err(e) from None

    def truncate(self, size: int) -> None:
        try:
            os.ftruncate(self.fd, size)
        except OSError as e:
            raise _err(e) from None

    def allocate(self, offset: int, length: int, keep_size: bool) -> None:
        try:
            hostcalls.fallocate(self.fd, 1 if keep_size else 0, offset, length)
        except OSError as e:
            raise _err(e) from None

    def seek_data(self, offset: int, whence: int) -> int:
        try:
            return os.lseek(self.fd, offset, whence)
        except OSError as e:
            raise _err(e) from None

    def sync(self) -> None:
        try:
            os.fsync(self.fd)
        except OSError as e:
            raise _err(e) from None

    def map_source(self) -> "HostMapSource":
        if self.node is None:
            return HostMapSource(self)
        return self.node.fs.map_source(self)

    def acquire(self) -> None:
        pass                              # one HostData per open file description

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1



class BlockDeviceData(HostData):
    """A host block device's bytes (a standard stream redirected from one): its size is
    the device's (BLKGETSIZE64), not st_size, which is 0 for devices."""

    __slots__ = ()

    @property
    def size(self) -> int:
        buf = bytearray(8)
        try:
            fcntl.ioctl(self.fd, BLKGETSIZE64, buf, True)
        except OSError as e:
            raise _err(e) from None
        return int.from_bytes(buf, "little")


class HostMapSource(MapSource):
    """mmap of a host file: private copies filled by pread; write-back by pwrite.

    A mapping outlives the open file (mmap, then close), so the source holds a
    host fd of its own, closed when the last mapping lets the source go.  Every
    mapping of one file shares one source (HostFilesystem.map_source)."""

    __slots__ = ("data",)

    def __init__(self, data: HostData) -> None:
        self.data = HostData(-1, data.node)
        try:
            self.data.fd = os.dup(data.fd)
        except OSError as e:
            raise _err(e) from None

    def private_cache(self) -> "Backing | None":
        node = self.data.node
        return node.fs.page_cache(node) if node is not None else None

    def __del__(self) -> None:
        self.data.release()

    @property
    def size(self) -> int:   # type: ignore[override]
        return self.data.size

    def fill_into(self, offset: int, dest: memoryview) -> None:
        """pread straight into the guest frames: no intermediate bytes objects."""
        done, n = 0, len(dest)
        while done < n:
            got = os.preadv(self.data.fd, [dest[done:]], offset + done)
            if got <= 0:
                break
            done += got

    def fill(self, offset: int, n: int) -> bytes:
        parts = []
        while n > 0:
            chunk = self.data.read(offset, n)
            if not chunk:
                break
            parts.append(chunk)
            offset += len(chunk)
            n -= len(chunk)
        return b"".join(parts)

    def write(self, offset: int, data: bytes) -> int:
        return self.data.write(offset, data)
