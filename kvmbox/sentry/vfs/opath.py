"""PathFile: what open(O_PATH) gives — a handle on a Location that can only be stat'ed,
used as a dirfd, fchdir'ed to, dup'ed and closed (every I/O gives EBADF)."""
from __future__ import annotations

import errno

from kvmbox.errors import SyscallError
from kvmbox.sentry.files import FileDescription
from kvmbox.sentry.vfs.node import Attr

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from kvmbox.sentry.vfs.path import Location


class PathFile(FileDescription):
    """An O_PATH open file."""

    def __init__(self, loc: "Location", flags: int) -> None:
        self.location = loc
        self.flags = flags
        self.node = loc.node

    @property
    def mode(self) -> int:   # type: ignore[override]
        return self.node.mode

    def attr(self) -> Attr:
        return self.node.attr()

    def seek(self, offset: int, whence: int) -> int:
        raise SyscallError(errno.EBADF)

    def pread(self, n: int, offset: int) -> bytes:
        raise SyscallError(errno.EBADF)

    def pwrite(self, data: bytes, offset: int) -> int:
        raise SyscallError(errno.EBADF)

    def ioctl_termios(self) -> bytes:
        raise SyscallError(errno.EBADF)

    def ioctl_winsize(self) -> bytes:
        raise SyscallError(errno.EBADF)

    def getdents(self, bufsize: int, old: bool = False) -> list[tuple[int, int, int, str]]:
        raise SyscallError(errno.EBADF)

    def truncate(self, size: int) -> None:
        raise SyscallError(errno.EBADF)

    def sync(self) -> None:
        raise SyscallError(errno.EBADF)

    def allocate(self, mode: int, offset: int, length: int) -> None:
        raise SyscallError(errno.EBADF)

    def poll(self, events: int) -> int:
        return 0x20          # POLLNVAL, as Linux reports for O_PATH files

    def readable_bytes(self) -> int:
        raise SyscallError(errno.EBADF)

    def mmap_source(self):
        raise SyscallError(errno.EBADF)


def is_path_only(f: FileDescription) -> bool:
    """Whether `f` came from open(O_PATH) (most fd operations give EBADF on it)."""
    return isinstance(f, PathFile)
