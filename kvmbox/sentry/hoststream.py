"""HostStream: a host descriptor passed through as a guest file (the CLI's stdin/stdout/stderr,
/dev/tty), behaving as that open file does natively.

The Sentry dups the host descriptor: the same open file description, so a host
file's offset stays shared with the invoking shell (`{ kvmbox run head -n 1; cat; }
< FILE` works as natively), and answers each guest call by the same call on that
descriptor with buffers the Sentry owns.  The host descriptor never reaches the
guest, and every host error becomes the guest's errno.  What fstat says decides
the rest:

  - regular files, block devices and directories never block: read, write, lseek
    (SEEK_DATA/SEEK_HOLE too), pread/pwrite, ftruncate, fsync, fallocate and mmap go
    to the host open file;
  - character devices: lseek/pread/pwrite go to the host too (the host answers as
    natively: 0 for /dev/null, ESPIPE for a tty); the memory devices (/dev/null,
    /dev/zero ...) never block, a tty or another device may;
  - pipes, FIFOs and sockets: ESPIPE for positions.

Files never block (kvmbox/sentry/waiter.py): on a stream that may block, a read
or write first asks a zero-timeout host poll and raises EAGAIN when it is not
ready (the syscall layer then waits on host_wait()), and a write moves at most
HOST_PIPE_BUF bytes per host call, which a ready pipe takes without blocking.

Status flags: F_GETFL starts from the host's real flags; F_SETFL changes only
the Sentry's copy, never the host's open file description, which the invoking
shell shares and keeps after kvmbox ends.  O_NONBLOCK needs no host flag (the
Sentry never blocks in the host); O_APPEND set by the guest is emulated (a seek
to the end before each write, pwrite at the size); O_APPEND the shell set (>>)
stays in force on the host even if the guest clears it.

Names (readlink of /proc/self/fd/N) and identity (fstat's st_dev/st_ino): `place()`
gives a host file the guest path where the sandbox shows that very file, and its
dev/ino there; a file the sandbox cannot see is "host:[ino]", as gVisor names
donated descriptors, so no host path outside the sandbox's view leaks.  Pipes and
sockets keep "pipe:[ino]" / "socket:[ino]".  A reopen through /proc/self/fd/N or
/dev/stdin (reopen()) opens the host object anew through the Sentry's own
/proc/self/fd, never by path, and never with more access than the stream has.
"""
from __future__ import annotations

import errno
import fcntl
import os
import select as _select
import stat as S
import struct
import termios
from collections.abc import Callable

from kvmbox.abi.fcntl import (O_ACCMODE, O_APPEND, O_CLOEXEC, O_DSYNC, O_NOCTTY, O_NONBLOCK,
                              O_RDONLY, O_RDWR, O_SYNC, O_TRUNC, O_WRONLY)
from kvmbox.abi.poll import POLLERR, POLLIN, POLLNVAL, POLLOUT, POLLRDNORM, POLLWRNORM
from kvmbox.abi.socket import MSG_DONTWAIT
from kvmbox.abi.structs import TERMIOS, WINSIZE
from kvmbox.errors import SyscallError
from kvmbox.sentry.files import HOST_PIPE_BUF, MAX_RW, FileDescription
from kvmbox.sentry.vfs.node import Attr

# socket and typing are not imported at start-up (about 3 ms of a cold run): socket only
# when a host stream turns out to be a socket (_socket_of).
TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    import socket
    from typing import TypeVar

    from kvmbox.sentry.vfs.pagecache import MapSource
    from kvmbox.sentry.vfs.path import MountTable
    R = TypeVar("R")
MEM_MAJOR = 1                     # /dev/null, zero, full, random, urandom: never block
SEEK_CUR, SEEK_END = 1, 2


def host_call(fn: Callable[..., R], *args) -> R:
    """fn(*args), a host call on the guest's behalf: its OSError becomes the guest's errno."""
    try:
        return fn(*args)
    except OSError as e:
        raise SyscallError(e.errno or errno.EIO) from None


class HostStream(FileDescription):
    """A dup of a host descriptor, answering the guest as that open file does natively.

    readable/writable narrow what the host descriptor's access mode allows (None:
    as the host has it); /dev/tty opens the terminal O_RDWR and narrows it.
    """

    def __init__(self, host_fd: int, readable: bool | None = None,
                 writable: bool | None = None) -> None:
        self.fd = fcntl.fcntl(host_fd, fcntl.F_DUPFD_CLOEXEC, 0)
        try:
            st = os.fstat(self.fd)
            host_flags = fcntl.fcntl(self.fd, fcntl.F_GETFL)
        except OSError:
            os.close(self.fd)
            raise
        acc = host_flags & O_ACCMODE
        self.readable = acc in (O_RDONLY, O_RDWR) and readable is not False
        self.writable = acc in (O_WRONLY, O_RDWR) and writable is not False
        if readable is not None or writable is not None:
            acc = O_RDWR if self.readable and self.writable else O_WRONLY if self.writable else O_RDONLY
        self.flags = (host_flags & ~O_ACCMODE) | acc
        self.host_append = bool(host_flags & O_APPEND)
        self.mode = st.st_mode
        self.tty = S.S_ISCHR(st.st_mode) and os.isatty(self.fd)
        piped = S.S_ISFIFO(st.st_mode) or S.S_ISSOCK(st.st_mode)
        # Positions are the host's for everything but pipes, sockets and ttys (ESPIPE).
        self.positional = not (piped or self.tty)
        # Regular files, block devices, directories and the memory devices never block.
        self.may_block = piped or (S.S_ISCHR(st.st_mode) and os.major(st.st_rdev) != MEM_MAJOR)
        self._sock = _socket_of(self.fd) if S.S_ISSOCK(st.st_mode) else None
        self._pushback = b""
        self._view: tuple[int, int] | None = None          # (st_dev, st_ino) in the sandbox
        self.link_name = self._default_name(st)

    # --- naming -------------------------------------------------------------------------
    def _default_name(self, st: os.stat_result) -> str:
        try:
            text = os.readlink(f"/proc/self/fd/{self.fd}")
        except OSError:
            text = ""
        if text and not text.startswith("/"):
            return text                                    # pipe:[ino], socket:[ino] ...
        return f"host:[{st.st_ino}]"

    def place(self, vfs: "MountTable") -> None:
        """Name the stream after the guest path where the sandbox shows this very host
        file (its readlink text, and fstat's dev/ino from there); else keep host:[ino]."""
        try:
            text = os.readlink(f"/proc/self/fd/{self.fd}")
            st = os.fstat(self.fd)
        except OSError:
            return
        if not text.startswith("/") or text.endswith(" (deleted)"):
            return
        root = vfs.root()
        for path in _guest_paths(vfs, text):
            try:
                a = vfs.resolve(root, path, root=root).node.attr()
            except SyscallError:
                continue
            if _same_object(a, st):
                self.link_name, self._view = path, (a.dev, a.ino)
                return

    def placed_like(self, other: "HostStream") -> None:
        """A reopen of `other` shows the same name and identity."""
        self.link_name, self._view = other.link_name, other._view

    # --- bytes ----------------------------------------------------------------------------
    def _host_ready(self, event: int) -> bool:
        """Would a read (POLLIN) or write (POLLOUT) of the host stream proceed now?
        Errors and hang-ups count as ready: the call then reports them."""
        p = _select.poll()
        p.register(self.fd, event)
        try:
            return bool(p.poll(0))
        except OSError:
            return True

    def unread(self, data: bytes) -> None:
        if self.positional and not self.may_block:
            host_call(os.lseek, self.fd, -len(data), SEEK_CUR)
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
        n = min(n, MAX_RW)
        if self._sock is not None:
            return host_call(self._sock.recv, n, MSG_DONTWAIT)
        return host_call(os.read, self.fd, n)

    def read_to(self, mm, addr: int, n: int, offset: int | None = None) -> int:
        """A file's bytes go straight into guest memory (one readv/preadv into the guest's
        frames), and a buffer that ends early gets what fits, as for the VFS's regular
        files (RegularFile.read_to); streams that may block keep all-or-nothing EFAULT."""
        if self.may_block or not self.readable or n <= 0 or self._pushback:
            return super().read_to(mm, addr, n, offset)
        fd = self.fd

        def into(views: list) -> int:
            if not views:
                return 0
            return host_call(os.readv, fd, views) if offset is None else \
                host_call(os.preadv, fd, views, offset)
        try:
            return mm.fill(addr, min(n, MAX_RW), into)
        except SyscallError as e:
            if e.errno != errno.EFAULT:
                raise
        data = self.read(n) if offset is None else self.pread(n, offset)
        try:
            mm.copy_out(addr, data)
        except SyscallError as e:
            ok = mm.writable_prefix(addr, len(data)) if e.errno == errno.EFAULT else 0
            if offset is None:
                self.unread(data[ok:])
            if not ok:
                raise
            mm.copy_out(addr, data[:ok])
            data = data[:ok]
        return len(data)

    def _writable_now(self, data: bytes) -> bytes:
        """What of `data` one host write may take now: EBADF unless open for writing; on a
        stream that may block, EAGAIN unless it polls writable, and HOST_PIPE_BUF at most."""
        if not self.writable:
            raise SyscallError(errno.EBADF)
        if not self.may_block:
            return data
        if not self._host_ready(_select.POLLOUT):
            raise SyscallError(errno.EAGAIN)
        return data[:HOST_PIPE_BUF]

    def write(self, data: bytes) -> int:
        data = self._writable_now(data)
        if self._sock is not None:
            return host_call(self._sock.send, data, MSG_DONTWAIT)
        if self.flags & O_APPEND and not self.host_append and S.S_ISREG(self.mode):
            host_call(os.lseek, self.fd, 0, SEEK_END)     # O_APPEND the guest set (F_SETFL)
        return host_call(os.write, self.fd, data)

    def write_position(self, offset: int | None) -> int | None:
        if not S.S_ISREG(self.mode):
            return None
        if self.flags & O_APPEND or self.host_append:
            return host_call(os.fstat, self.fd).st_size
        return offset if offset is not None else host_call(os.lseek, self.fd, 0, SEEK_CUR)

    def pread(self, n: int, offset: int) -> bytes:
        if not self.positional:
            raise SyscallError(errno.ESPIPE)
        if not self.readable:
            raise SyscallError(errno.EBADF)
        if self.may_block and not self._host_ready(_select.POLLIN):
            raise SyscallError(errno.EAGAIN)
        return host_call(os.pread, self.fd, min(n, MAX_RW), offset)

    def pwrite(self, data: bytes, offset: int) -> int:
        if not self.positional:
            raise SyscallError(errno.ESPIPE)
        data = self._writable_now(data)
        if self.flags & O_APPEND and not self.host_append and S.S_ISREG(self.mode):
            offset = host_call(os.fstat, self.fd).st_size   # Linux appends, position untouched
        return host_call(os.pwrite, self.fd, data, offset)

    def seek(self, offset: int, whence: int) -> int:
        if not self.positional:
            raise SyscallError(errno.ESPIPE)
        self._pushback = b""
        return host_call(os.lseek, self.fd, offset, whence)

    # --- the rest ---------------------------------------------------------------------------
    def truncate(self, size: int) -> None:
        host_call(os.ftruncate, self.fd, size)

    def sync(self) -> None:
        host_call(os.fsync, self.fd)

    def allocate(self, mode: int, offset: int, length: int) -> None:
        from kvmbox.sentry.fsimpl import hostcalls
        host_call(hostcalls.fallocate, self.fd, mode, offset, length)

    def mmap_source(self) -> "MapSource":
        """A host regular file or block device maps as a host mount's file does (private
        copies filled by pread, MAP_SHARED written back by pwrite); other kinds have
        nothing to map."""
        from kvmbox.sentry.fsimpl.hostfile import BlockDeviceData, HostData, HostMapSource
        if S.S_ISREG(self.mode):
            return HostMapSource(HostData(self.fd))
        if S.S_ISBLK(self.mode):
            return HostMapSource(BlockDeviceData(self.fd))
        raise SyscallError(errno.ENODEV)

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

    def readable_bytes(self) -> int:
        """FIONREAD, as the host answers it (bytes in a pipe or tty, size - offset of a file)."""
        return len(self._pushback) + struct.unpack("i", self._query(termios.FIONREAD, 4))[0]

    def _query(self, request: int, size: int) -> bytes:
        """A read-only ioctl on the host stream into a buffer the Sentry owns."""
        buf = bytearray(size)
        host_call(fcntl.ioctl, self.fd, request, buf, True)
        return bytes(buf)

    def ioctl_termios(self) -> bytes:
        return self._query(termios.TCGETS, TERMIOS.size)

    def ioctl_winsize(self) -> bytes:
        return self._query(termios.TIOCGWINSZ, WINSIZE.size)

    def attr(self) -> Attr:
        st = host_call(os.fstat, self.fd)
        dev, ino = self._view if self._view is not None else (st.st_dev, st.st_ino)
        return Attr(dev=dev, ino=ino, mode=st.st_mode, nlink=st.st_nlink, uid=st.st_uid,
                    gid=st.st_gid, size=st.st_size, rdev=st.st_rdev, blksize=st.st_blksize,
                    blocks=st.st_blocks, atime_ns=st.st_atime_ns, mtime_ns=st.st_mtime_ns,
                    ctime_ns=st.st_ctime_ns)

    def reopen(self, flags: int) -> FileDescription:
        """open(2) of /proc/self/fd/N naming this stream: a new open file description of
        the same host object (a file gets its own offset, a pipe another end, a tty the
        tty), opened through the Sentry's /proc/self/fd; never more access than this one."""
        acc = flags & O_ACCMODE
        if acc == O_ACCMODE and S.S_ISFIFO(self.mode):
            raise SyscallError(errno.EINVAL)      # fifo_open: neither reader nor writer
        want_read = acc != O_WRONLY
        want_write = acc != O_RDONLY or bool(flags & O_TRUNC)
        if (want_read and not self.readable) or (want_write and not self.writable):
            raise SyscallError(errno.EACCES)
        hflags = acc | (flags & (O_APPEND | O_TRUNC | O_DSYNC | O_SYNC)) | O_CLOEXEC | O_NOCTTY
        if self.may_block:
            hflags |= O_NONBLOCK          # a FIFO open must not wait for a peer in the host
        fd = host_call(os.open, f"/proc/self/fd/{self.fd}", hflags)
        try:
            f = host_call(HostStream, fd)
        finally:
            os.close(fd)
        f.placed_like(self)               # open(2) then sets the flags the guest asked for
        return f

    def release(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _socket_of(fd: int) -> socket.socket | None:
    """A socket object over a dup of `fd`, for recv/send with MSG_DONTWAIT (never blocking);
    None if Python cannot make one (the stream then reads and writes after a poll)."""
    import socket
    dup = os.dup(fd)
    try:
        return socket.socket(fileno=dup)
    except OSError:
        os.close(dup)
        return None


def _guest_paths(vfs: "MountTable", host_path: str) -> list[str]:
    """Guest paths under which the sandbox may show the host path: below a mount of a host
    directory (the root's lower layer, a --mount), at the matching guest path."""
    out = []
    for m in vfs.mounts():
        fs = m.fs
        host_root = getattr(fs, "host_root", None) or getattr(getattr(fs, "lower", None),
                                                               "host_root", None)
        if not host_root:
            continue
        host_root = host_root.rstrip("/")
        if host_path.startswith(host_root + "/"):
            rest = host_path[len(host_root):]
            out.append(rest if m.path == "/" else m.path + rest)
    out.append(host_path)            # /dev/null and friends: the sandbox's own device nodes
    return out


def _same_object(a: Attr, st: os.stat_result) -> bool:
    """Is the sandbox's node (attr `a`) the host object `st`?  A device by its number;
    anything else by type, size and its times (ctime cannot be set by anyone)."""
    if S.S_IFMT(a.mode) != S.S_IFMT(st.st_mode):
        return False
    if S.S_ISCHR(st.st_mode) or S.S_ISBLK(st.st_mode):
        return a.rdev == st.st_rdev
    return (a.size, a.mtime_ns, a.ctime_ns) == (st.st_size, st.st_mtime_ns, st.st_ctime_ns)

