"""File descriptions, the fd table, and the standard streams (host passthrough or in-memory).

A FileDescription's default methods return the errno Linux gives for an
object that cannot do the operation.  Host fds are never handed to the guest:
the guest only ever sees small integers naming entries of its FdTable.
Files of the VFS (kvmbox/sentry/vfs/regular.py) and pipes subclass it.
"""
from __future__ import annotations

import errno
import fcntl
import itertools
import os
import select as _select
import stat as stat_mod
import termios
import time

from kvmbox.abi.structs import TERMIOS, WINSIZE
from kvmbox.errors import SyscallError
from kvmbox.sentry.rlimits import NR_OPEN
from kvmbox.sentry.vfs.node import Attr, stat_bytes

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from kvmbox.sentry.vfs.pagecache import MapSource
    from kvmbox.sentry.vfs.path import Location

# Largest chunk the Sentry moves per read/write call (Linux's MAX_RW_COUNT is ~2 GiB).
MAX_RW = 0x7FFFF000
# Bytes one host write to a pipe-like stream may carry: a pipe that polls writable takes
# this much without blocking (a free page slot).
HOST_PIPE_BUF = 4096

# poll(2) bits; what a file without its own poll reports (DEFAULT_POLLMASK).
POLLIN, POLLPRI, POLLOUT, POLLERR, POLLHUP, POLLNVAL = 0x1, 0x2, 0x4, 0x8, 0x10, 0x20
POLLRDNORM, POLLWRNORM = 0x40, 0x100
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

    def mmap_source(self) -> "MapSource":
        """What mmap(2) maps from this file."""
        raise SyscallError(errno.ENODEV)

    def release(self) -> None:
        pass


class HostStream(FileDescription):
    """One of the Sentry's own standard streams passed through (the CLI's stdin/stdout/stderr).

    The Sentry duplicates the host fd and makes only read/write/pread/pwrite/
    fstat/poll and the TCGETS/TIOCGWINSZ queries on it, with buffers it owns.
    It never blocks in the host: on a stream that can block (a pipe, FIFO, socket,
    tty) a read or write first asks a zero-timeout host poll and raises EAGAIN when
    the stream is not ready, so the syscall layer waits in waiter.block, polling the
    fd (host_wait) with the task's Waker: a kill, a timeout or a signal ends it.
    A write to such a stream then moves at most PIPE_BUF bytes per host call, which
    a ready pipe always takes without blocking.
    """

    def __init__(self, host_fd: int, readable: bool, writable: bool) -> None:
        self.fd = os.dup(host_fd)
        os.set_inheritable(self.fd, False)
        self.readable, self.writable = readable, writable
        self.flags = os.O_RDWR if readable and writable else os.O_WRONLY if writable else os.O_RDONLY
        st = os.fstat(self.fd)
        self.mode = st.st_mode
        self.seekable = stat_mod.S_ISREG(st.st_mode)
        # Regular files and block devices never block; nor do the memory devices.
        self.may_block = not (stat_mod.S_ISREG(st.st_mode) or stat_mod.S_ISBLK(st.st_mode))
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
        if self.may_block and not self._host_ready(_select.POLLIN):
            raise SyscallError(errno.EAGAIN)
        try:
            return os.read(self.fd, min(n, MAX_RW))
        except OSError as e:
            raise SyscallError(e.errno or errno.EIO) from None

    def write(self, data: bytes) -> int:
        if not self.writable:
            raise SyscallError(errno.EBADF)
        if self.may_block:
            if not self._host_ready(_select.POLLOUT):
                raise SyscallError(errno.EAGAIN)
            data = data[:HOST_PIPE_BUF]
        try:
            return os.write(self.fd, data)
        except BrokenPipeError:
            raise SyscallError(errno.EPIPE) from None
        except BlockingIOError:
            raise SyscallError(errno.EAGAIN) from None
        except OSError as e:
            raise SyscallError(e.errno or errno.EIO) from None

    def _host_ready(self, event: int) -> bool:
        """Would a read (POLLIN) or write (POLLOUT) of the host stream proceed now?
        Errors and hang-ups count as ready: the call then reports them."""
        p = _select.poll()
        p.register(self.fd, event)
        try:
            return bool(p.poll(0))
        except OSError:
            return True

    def poll(self, events: int) -> int:
        """Readiness from a zero-timeout host poll, limited to the stream's direction."""
        if self.fd < 0:
            return POLLNVAL
        p = _select.poll()
        p.register(self.fd, events)
        try:
            got = p.poll(0)
        except OSError:
            return POLLERR
        r = got[0][1] if got else 0
        if not self.readable:
            r &= ~(POLLIN | POLLRDNORM)
        if not self.writable:
            r &= ~(POLLOUT | POLLWRNORM)
        return r

    def host_wait(self, events: int) -> tuple[int, int] | None:
        return (self.fd, events) if self.fd >= 0 else None

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

    def attr(self) -> Attr:
        st = os.fstat(self.fd)
        return Attr(dev=st.st_dev, ino=st.st_ino, mode=st.st_mode, nlink=st.st_nlink,
                    uid=st.st_uid, gid=st.st_gid, size=st.st_size, rdev=st.st_rdev,
                    blksize=st.st_blksize, blocks=st.st_blocks, atime_ns=st.st_atime_ns,
                    mtime_ns=st.st_mtime_ns, ctime_ns=st.st_ctime_ns)

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

    def poll(self, events: int) -> int:
        """As the read end of a pipe whose writer has closed: POLLHUP, with POLLIN while
        bytes remain (the native harness's stdin pipe once its writer is done)."""
        more = POLLIN | POLLRDNORM if self._pos < len(self._data) else 0
        return more | POLLHUP

    def readable_bytes(self) -> int:
        """FIONREAD."""
        return len(self._data) - self._pos


class CaptureOutput(FileDescription):
    """A pipe-like stdout/stderr captured in memory, keeping at most `limit` bytes."""

    writable = True
    mode = stat_mod.S_IFIFO | 0o600
    flags = os.O_WRONLY

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
    slot goes.  New numbers are the lowest free ones, below the `limit` the caller
    gives: its RLIMIT_NOFILE (syscalls/sys_open.nofile_limit); the table has none of
    its own but Linux's fs.nr_open.
    """

    def __init__(self) -> None:
        self._files: dict[int, FileDescription] = {}
        self._cloexec: set[int] = set()
        self.posix_locks: dict[object, list] = {}   # node -> the process's fcntl record locks
        self.capacity = FD_TABLE_INITIAL               # Linux's fdtable max_fds (select's cap)

    # --- references ---------------------------------------------------------------
    @staticmethod
    def _ref(f: FileDescription) -> None:
        f.fd_refs += 1

    @staticmethod
    def _unref(f: FileDescription) -> None:
        n = f.fd_refs = f.fd_refs - 1
        if n <= 0:
            f.release()

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
        if self.posix_locks:
            loc = f.location
            node = getattr(f, "node", None) or (loc.node if loc is not None else None)
            self.posix_locks.pop(node, None)    # any close drops the process's locks on the file
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
        for f in files.values():
            self._unref(f)
