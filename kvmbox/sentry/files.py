"""File descriptions and the fd table; for now the standard streams (host passthrough or in-memory).

A FileDescription's default methods return the errno Linux gives for an
object that cannot do the operation.  Host fds are never handed to the guest:
the guest only ever sees small integers naming entries of its FdTable.
"""
from __future__ import annotations

import errno
import fcntl
import os
import stat as stat_mod
import termios
import time

from kvmbox.abi.structs import STAT, TERMIOS, WINSIZE
from kvmbox.errors import SyscallError

# Largest chunk the Sentry moves per read/write call (Linux's MAX_RW_COUNT is ~2 GiB).
MAX_RW = 0x7FFFF000


class FileDescription:
    """An open file.  Subclasses override what they support."""

    readable = False
    writable = False
    mode = stat_mod.S_IFREG | 0o600

    def read(self, n: int) -> bytes:
        raise SyscallError(errno.EBADF)

    def write(self, data: bytes) -> int:
        raise SyscallError(errno.EBADF)

    def unread(self, data: bytes) -> None:
        """Give back bytes a read() returned but the guest could not receive (EFAULT)."""

    def pread(self, n: int, offset: int) -> bytes:
        raise SyscallError(errno.ESPIPE)

    def pwrite(self, data: bytes, offset: int) -> int:
        raise SyscallError(errno.ESPIPE)

    def seek(self, offset: int, whence: int) -> int:
        raise SyscallError(errno.ESPIPE)

    def ioctl_termios(self) -> bytes:
        """TCGETS: the 36-byte kernel termios, or ENOTTY."""
        raise SyscallError(errno.ENOTTY)

    def ioctl_winsize(self) -> bytes:
        """TIOCGWINSZ: the 8-byte winsize, or ENOTTY."""
        raise SyscallError(errno.ENOTTY)

    def stat(self) -> bytes:
        now = time.time_ns()
        sec, nsec = divmod(now, 1_000_000_000)
        return STAT.pack(0x0D, id(self) & 0xFFFFFFFF, 1, self.mode, os.getuid(), os.getgid(), 0,
                         0, 0, 4096, 0, sec, nsec, sec, nsec, sec, nsec)

    def release(self) -> None:
        pass


class HostStream(FileDescription):
    """One of the Sentry's own standard streams passed through (the CLI's stdin/stdout/stderr).

    The Sentry duplicates the host fd and makes only read/write/pread/pwrite/
    fstat and the TCGETS/TIOCGWINSZ queries on it, with buffers it owns.
    """

    def __init__(self, host_fd: int, readable: bool, writable: bool) -> None:
        self.fd = os.dup(host_fd)
        os.set_inheritable(self.fd, False)
        self.readable, self.writable = readable, writable
        st = os.fstat(self.fd)
        self.mode = st.st_mode
        self.seekable = stat_mod.S_ISREG(st.st_mode)
        self._pushback = b""

    def unread(self, data: bytes) -> None:
        if self.seekable:
            os.lseek(self.fd, -len(data), os.SEEK_CUR)
        else:
            self._pushback = data + self._pushback

    def read(self, n: int) -> bytes:
        if not self.readable:
            raise SyscallError(errno.EBADF)
        if self._pushback:
            data, self._pushback = self._pushback[:n], self._pushback[n:]
            return data
        try:
            return os.read(self.fd, min(n, MAX_RW))
        except OSError as e:
            raise SyscallError(e.errno or errno.EIO) from None

    def write(self, data: bytes) -> int:
        if not self.writable:
            raise SyscallError(errno.EBADF)
        try:
            return os.write(self.fd, data)
        except BrokenPipeError:
            raise SyscallError(errno.EPIPE) from None
        except OSError as e:
            raise SyscallError(e.errno or errno.EIO) from None

    def pread(self, n: int, offset: int) -> bytes:
        if not self.seekable:
            raise SyscallError(errno.ESPIPE)
        if not self.readable:
            raise SyscallError(errno.EBADF)
        return os.pread(self.fd, min(n, MAX_RW), offset)

    def pwrite(self, data: bytes, offset: int) -> int:
        if not self.seekable:
            raise SyscallError(errno.ESPIPE)
        if not self.writable:
            raise SyscallError(errno.EBADF)
        return os.pwrite(self.fd, data, offset)

    def _tty_query(self, request: int, size: int) -> bytes:
        """A read-only tty ioctl on the host stream into a buffer the Sentry owns."""
        buf = bytearray(size)
        try:
            fcntl.ioctl(self.fd, request, buf, True)
        except OSError as e:
            raise SyscallError(e.errno or errno.ENOTTY) from None
        return bytes(buf)

    def ioctl_termios(self) -> bytes:
        return self._tty_query(termios.TCGETS, TERMIOS.size)

    def ioctl_winsize(self) -> bytes:
        return self._tty_query(termios.TIOCGWINSZ, WINSIZE.size)

    def stat(self) -> bytes:
        st = os.fstat(self.fd)
        return STAT.pack(st.st_dev, st.st_ino, st.st_nlink, st.st_mode, st.st_uid, st.st_gid, 0,
                         st.st_rdev, st.st_size, st.st_blksize, st.st_blocks,
                         int(st.st_atime), st.st_atime_ns % 10**9, int(st.st_mtime),
                         st.st_mtime_ns % 10**9, int(st.st_ctime), st.st_ctime_ns % 10**9)

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class BytesInput(FileDescription):
    """A pipe-like stdin fed from bytes given to Sandbox.run()."""

    readable = True
    mode = stat_mod.S_IFIFO | 0o600

    def __init__(self, data: bytes) -> None:
        self._data = memoryview(bytes(data))
        self._pos = 0

    def read(self, n: int) -> bytes:
        chunk = self._data[self._pos:self._pos + min(n, 65536)]
        self._pos += len(chunk)
        return bytes(chunk)

    def unread(self, data: bytes) -> None:
        self._pos -= len(data)


class CaptureOutput(FileDescription):
    """A pipe-like stdout/stderr captured in memory, keeping at most `limit` bytes."""

    writable = True
    mode = stat_mod.S_IFIFO | 0o600

    def __init__(self, limit: int = 64 << 20) -> None:
        self.buffer = bytearray()
        self.limit = limit
        self.truncated = False

    def write(self, data: bytes) -> int:
        room = self.limit - len(self.buffer)
        if room < len(data):
            self.truncated = True
            self.buffer += data[:max(room, 0)]
        else:
            self.buffer += data
        # Past the limit the bytes are dropped but reported written, as a reader that discards them.
        return len(data)

    def getvalue(self) -> bytes:
        return bytes(self.buffer)


class FdTable:
    """The guest's descriptor numbers -> (FileDescription, close-on-exec)."""

    def __init__(self, limit: int = 1024) -> None:
        self._files: dict[int, FileDescription] = {}
        self.limit = limit

    def install(self, fd: int, f: FileDescription) -> None:
        self._files[fd] = f

    def get(self, fd: int) -> FileDescription:
        try:
            return self._files[fd]
        except KeyError:
            raise SyscallError(errno.EBADF) from None

    def close(self, fd: int) -> None:
        f = self._files.pop(fd, None)
        if f is None:
            raise SyscallError(errno.EBADF)

    def release(self) -> None:
        self._files.clear()
