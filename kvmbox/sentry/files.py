"""File descriptions, the fd table, and the in-memory standard streams of the API.

A FileDescription's default methods return the errno Linux gives for an
object that cannot do the operation.  Host fds are never handed to the guest:
the guest only ever sees small integers naming entries of its FdTable.
Files of the VFS (kvmbox/sentry/vfs/regular.py), pipes and the host streams
(kvmbox/sentry/hoststream.py) subclass it.
"""
from __future__ import annotations

import errno
import itertools
import os
import stat as stat_mod
import time

from kvmbox.abi.poll import POLLHUP, POLLIN, POLLOUT, POLLRDNORM, POLLWRNORM
from kvmbox.errors import SyscallError
from kvmbox.sentry.rlimits import NR_OPEN
from kvmbox.sentry.vfs.node import Attr, stat_bytes

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from kvmbox.sentry.locks import LockTable
    from kvmbox.sentry.vfs.pagecache import MapSource
    from kvmbox.sentry.vfs.path import Location

# Largest chunk the Sentry moves per read/write call (Linux's MAX_RW_COUNT is ~2 GiB).
MAX_RW = 0x7FFFF000
# Bytes one host write to a pipe-like stream may carry: a pipe that polls writable takes
# this much without blocking (a free page slot).
HOST_PIPE_BUF = 4096

# What a file without its own poll reports.
DEFAULT_POLLMASK = POLLIN | POLLOUT | POLLRDNORM | POLLWRNORM
ANON_INODE_DEV = 0x0D       # st_dev of anonymous inodes (pipes, eventfds ...)
# Inode numbers of anonymous inodes (pipes, eventfds, the captured streams): a plain
# counter, as Linux's get_next_ino().  Deliberately module-wide: numbers only need to be
# distinct, no behaviour depends on them, and they must never be derived from Sentry
# object addresses (id()), which would leak the Sentry's heap layout to the guest.
_anon_inos = itertools.count(0x1000)


def anon_ino() -> int:
    """A fresh inode number for an anonymous inode."""
    return next(_anon_inos)



class FileDescription:
    """An open file.  Subclasses override what they support."""

    readable = False
    writable = False
    mode = stat_mod.S_IFREG | 0o600
    flags = 0                               # O_ACCMODE | status flags (F_GETFL / F_SETFL)
    location: "Location | None" = None      # where it was opened; None for pipes and streams
    fd_refs = 0                             # fd-table slots naming it (FdTable keeps the count)
    lock_table: "LockTable | None" = None   # the kernel's, once it took OFD or flock locks

    def read(self, n: int) -> bytes:
        raise SyscallError(errno.EBADF)

    def write(self, data: bytes) -> int:
        raise SyscallError(errno.EBADF)

    def unread(self, data: bytes) -> None:
        """Give back bytes a read() returned but the guest could not receive (EFAULT)."""

    def fdinfo(self) -> str:
        """Lines /proc/<pid>/fdinfo/<fd> adds after pos/flags/mnt_id/ino for this kind of
        file (eventfd's count, epoll's watched fds); none by default."""
        return ""

    def read_to(self, mm, addr: int, n: int, offset: int | None = None) -> int:
        """read(2) (offset None) or pread(2) of up to `n` bytes into guest memory at `addr`.

        This default reads the bytes, then copies them out, all or nothing: bytes the
        guest could not receive go back (unread), as Linux leaves them in a pipe.
        RegularFile overrides it (short reads, and host files straight into guest memory).
        """
        data = self.read(n) if offset is None else self.pread(n, offset)
        if data:
            try:
                mm.copy_out(addr, data)
            except SyscallError:
                if offset is None:
                    self.unread(data)          # a pipe keeps it all (pipe_read's EFAULT)
                raise
        return len(data)

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

    def attr(self) -> Attr:
        """fstat: what the open file's inode reports; the default is an anonymous inode."""
        now = time.time_ns()
        ino = self.__dict__.get("_anon_ino")
        if ino is None:
            ino = self.__dict__["_anon_ino"] = anon_ino()
        return Attr(dev=ANON_INODE_DEV, ino=ino, mode=self.mode, nlink=1,
                    uid=os.getuid(), gid=os.getgid(), size=0, atime_ns=now, mtime_ns=now,
                    ctime_ns=now)

    def stat(self) -> bytes:
        """The struct stat bytes of attr()."""
        return stat_bytes(self.attr())

    def getdents(self, bufsize: int, old: bool = False) -> list[tuple[int, int, int, str]]:
        """Directory entries from the current offset as (ino, next_offset, d_type, name),
        as many as fit in `bufsize` bytes of linux_dirent64 (`old`: linux_dirent)."""
        raise SyscallError(errno.ENOTDIR)

    def truncate(self, size: int) -> None:
        """ftruncate(2)."""
        raise SyscallError(errno.EINVAL)

    def sync(self) -> None:
        """fsync(2)/fdatasync(2)."""
        raise SyscallError(errno.EINVAL)

    def allocate(self, mode: int, offset: int, length: int) -> None:
        """fallocate(2)."""
        raise SyscallError(errno.ENODEV)

    def poll(self, events: int) -> int:
        """Readiness now, as poll(2) revents, for the requested `events` (never blocks)."""
        return events & DEFAULT_POLLMASK

    def readable_bytes(self) -> int:
        """FIONREAD."""
        raise SyscallError(errno.ENOTTY)

    def host_wait(self, events: int) -> tuple[int, int] | None:
        """(host fd, poll events) a blocked wait for `events` on this file must poll, for a
        file that is a host descriptor; None for the Sentry's own files (they notify)."""
        return None

    def wait_timeout(self, events: int) -> float | None:
        """Seconds a blocked wait for `events` may last before EAGAIN (a socket's
        SO_RCVTIMEO / SO_SNDTIMEO); None: no limit."""
        return None

    def mmap_source(self) -> "MapSource":
        """What mmap(2) maps from this file."""
        raise SyscallError(errno.ENODEV)

    def write_position(self, offset: int | None) -> int | None:
        """Where a write (offset None) or pwrite at `offset` would start, for the
        RLIMIT_FSIZE check Linux makes on regular files (the file size under O_APPEND);
        None for files the limit does not apply to (pipes, devices, procfs ...)."""
        return None

    def reopen(self, flags: int) -> "FileDescription":
        """open(2) through the magic link /proc/self/fd/N (or /dev/stdin) of a file that
        has no path (location None): a new open file description of the same object.
        Anonymous inodes and sockets cannot be reopened: ENXIO, as on Linux."""
        raise SyscallError(errno.ENXIO)

    def lock_key(self) -> object:
        """What file locks (fcntl, flock) taken through this description are held against:
        Linux keeps them on the inode, so every open of one file meets the same locks.  The
        node it was opened at; a file without one is its own inode."""
        node = getattr(self, "node", None)
        if node is None and self.location is not None:
            node = self.location.node
        return node if node is not None else self

    def release(self) -> None:
        pass


class _InMemoryStream(FileDescription):
    """What the API's in-memory streams share: a reopen (/dev/stdin, /proc/self/fd/1)."""

    def reopen(self, flags: int) -> "FileDescription":
        """Another open of the stream, as of a pipe: the same bytes through a description
        with flags of its own; no access the stream lacks (EACCES)."""
        acc = flags & os.O_ACCMODE
        if (acc != os.O_WRONLY and not self.readable) or (acc != os.O_RDONLY and not self.writable):
            raise SyscallError(errno.EACCES)
        return StreamAlias(self)


class StreamAlias(FileDescription):
    """A reopened in-memory stream: reads, writes and readiness go to the stream itself."""

    def __init__(self, target: FileDescription) -> None:
        self.target = target
        self.mode = target.mode
        self.readable, self.writable = target.readable, target.writable

    def read(self, n: int) -> bytes:
        return self.target.read(n)

    def unread(self, data: bytes) -> None:
        self.target.unread(data)

    def write(self, data: bytes) -> int:
        return self.target.write(data)

    def poll(self, events: int) -> int:
        return self.target.poll(events)

    def readable_bytes(self) -> int:
        return self.target.readable_bytes()

    def attr(self) -> Attr:
        return self.target.attr()

    def reopen(self, flags: int) -> "FileDescription":
        return self.target.reopen(flags)

    def lock_key(self) -> object:
        return self.target.lock_key()


class BytesInput(_InMemoryStream):
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

    def poll(self, events: int) -> int:
        """As the read end of a pipe whose writer has closed: POLLHUP, with POLLIN while
        bytes remain (the native harness's stdin pipe once its writer is done)."""
        more = POLLIN | POLLRDNORM if self._pos < len(self._data) else 0
        return more | POLLHUP

    def readable_bytes(self) -> int:
        """FIONREAD."""
        return len(self._data) - self._pos


CAPTURE_LIMIT = 64 << 20      # bytes of each captured stream Sandbox.run keeps by default


class CaptureOutput(_InMemoryStream):
    """A pipe-like stdout/stderr captured in memory, keeping at most `limit` bytes; past it
    the bytes are dropped (counted in `dropped`) but reported written, as to a reader that
    discards them."""

    writable = True
    mode = stat_mod.S_IFIFO | 0o600
    flags = os.O_WRONLY

    def __init__(self, limit: int = CAPTURE_LIMIT) -> None:
        self.buffer = bytearray()
        self.limit = limit
        self.dropped = 0

    @property
    def truncated(self) -> bool:
        return self.dropped > 0

    def write(self, data: bytes) -> int:
        room = self.limit - len(self.buffer)
        if room < len(data):
            keep = max(room, 0)
            self.buffer += data[:keep]
            self.dropped += len(data) - keep
        else:
            self.buffer += data
        return len(data)

    def getvalue(self) -> bytes:
        return bytes(self.buffer)


FD_TABLE_INITIAL = 64          # Linux's NR_OPEN_DEFAULT (BITS_PER_LONG) slots per new table
FD_TABLE_STEP = 128            # the table then grows in powers of two of 1 KiB of pointers


def fd_table_size_for(fd: int) -> int:
    """The size Linux's expand_fdtable() grows a table to so it holds `fd`.

    It matters to select(2), which silently ignores set bits at or above the
    table's size instead of giving EBADF; programs (and our tests) can see it.
    """
    n = fd // FD_TABLE_STEP + 1
    return (1 << (n - 1).bit_length()) * FD_TABLE_STEP


class FdTable:
    """The guest's descriptor numbers -> (FileDescription, close-on-exec).

    Descriptions are shared by dup'd numbers (and, later, forked tables): each
    counts the table slots naming it in `fd_refs`, and is released when the last
    slot goes, with its OFD and flock locks.  The table owns its process's POSIX record
    locks (kvmbox/sentry/locks.py): closing any number of a file drops them on that
    file, releasing the table drops them all.  New numbers are the lowest free ones, below the `limit` the caller
    gives: its RLIMIT_NOFILE (syscalls/sys_open.nofile_limit); the table has none of
    its own but Linux's fs.nr_open.
    """

    def __init__(self) -> None:
        self._files: dict[int, FileDescription] = {}
        self._cloexec: set[int] = set()
        self.lock_table: "LockTable | None" = None    # the kernel's, once it took POSIX locks
        self.capacity = FD_TABLE_INITIAL               # Linux's fdtable max_fds (select's cap)

    # --- references ---------------------------------------------------------------
    @staticmethod
    def _ref(f: FileDescription) -> None:
        f.fd_refs += 1

    @staticmethod
    def _unref(f: FileDescription) -> None:
        n = f.fd_refs = f.fd_refs - 1
        if n <= 0:
            if f.lock_table is not None:
                f.lock_table.release_description(f)
            f.release()

    def _closing(self, f: FileDescription) -> None:
        """A number naming `f` is closed: this table's POSIX locks on f's file go."""
        if self.lock_table is not None:
            self.lock_table.close_posix(self, f)

    # --- slots ----------------------------------------------------------------------
    def install(self, fd: int, f: FileDescription, cloexec: bool = False) -> None:
        """Put `f` at number `fd`, closing what was there (dup2 semantics)."""
        self._ref(f)
        old = self._files.get(fd)
        self._files[fd] = f
        if fd >= self.capacity:
            self.capacity = fd_table_size_for(fd)
        if cloexec:
            self._cloexec.add(fd)
        else:
            self._cloexec.discard(fd)
        if old is not None:
            self._closing(old)
            self._unref(old)

    def alloc(self, f: FileDescription, *, cloexec: bool = False, lowest: int = 0,
              limit: int | None = None) -> int:
        """Install `f` at the lowest free number >= `lowest`; EMFILE past the limit."""
        lim = NR_OPEN if limit is None else limit
        fd = max(lowest, 0)
        files = self._files
        while fd in files:
            fd += 1
        if fd >= lim:
            raise SyscallError(errno.EMFILE)
        self.install(fd, f, cloexec)
        return fd

    def get(self, fd: int) -> FileDescription:
        try:
            return self._files[fd]
        except KeyError:
            raise SyscallError(errno.EBADF) from None

    def get_cloexec(self, fd: int) -> bool:
        if fd not in self._files:
            raise SyscallError(errno.EBADF)
        return fd in self._cloexec

    def set_cloexec(self, fd: int, on: bool) -> None:
        if fd not in self._files:
            raise SyscallError(errno.EBADF)
        if on:
            self._cloexec.add(fd)
        else:
            self._cloexec.discard(fd)

    def items(self) -> list[tuple[int, FileDescription]]:
        """(fd, description) pairs, by number."""
        return sorted(self._files.items(), key=lambda kv: kv[0])

    def __len__(self) -> int:
        return len(self._files)

    def close(self, fd: int) -> None:
        f = self._files.pop(fd, None)
        if f is None:
            raise SyscallError(errno.EBADF)
        self._cloexec.discard(fd)
        self._closing(f)
        self._unref(f)

    def close_range(self, first: int, last: int, cloexec_only: bool = False) -> None:
        """close_range(2): every open number in [first, last]."""
        for fd in [n for n in self._files if first <= n <= last]:
            if cloexec_only:
                self._cloexec.add(fd)
            else:
                self.close(fd)

    def close_on_exec(self) -> None:
        """execve: close the numbers marked close-on-exec."""
        for fd in list(self._cloexec):
            self.close(fd)

    def copy(self) -> "FdTable":
        """fork: a new table naming the same descriptions (shared offsets and flags)."""
        t = FdTable()
        for fd, f in self._files.items():
            t.install(fd, f, fd in self._cloexec)
        return t

    def release(self) -> None:
        files, self._files = self._files, {}
        self._cloexec.clear()
        if self.lock_table is not None:
            self.lock_table.release_owner(self)
        for f in files.values():
            self._unref(f)
