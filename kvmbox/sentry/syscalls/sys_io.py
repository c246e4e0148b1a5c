"""Handlers for I/O on open descriptors: read/write and vectors, positional I/O, ioctl, fstat, close."""
from __future__ import annotations

import errno

from kvmbox.abi.structs import IOVEC
from kvmbox.errors import SyscallError
from kvmbox.sentry.files import MAX_RW
from kvmbox.sentry.syscalls.args import s32, s64
from kvmbox.sentry.syscalls.table import PARTIAL, SUPPORTED, Entry

CHUNK = 1 << 20            # guest data moves through the Sentry in pieces of at most 1 MiB
IOV_MAX = 1024
TCGETS, TIOCGWINSZ, FIONBIO, FIOCLEX, FIONCLEX = 0x5401, 0x5413, 0x5421, 0x5451, 0x5450
AT_FDCWD = -100
AT_EMPTY_PATH = 0x1000


def _write_all(t, f, addr: int, count: int, offset: int | None = None) -> int:
    done = 0
    count = min(count, MAX_RW)
    while done < count:
        n = min(CHUNK, count - done)
        data = t.mm.copy_in(addr + done, n)
        try:
            w = f.write(data) if offset is None else f.pwrite(data, offset + done)
        except SyscallError:
            if done:
                return done
            raise
        done += w
        if w < n:
            break
    return done


def _read_into(t, f, addr: int, count: int, offset: int | None = None) -> int:
    count = min(count, MAX_RW, CHUNK)
    data = f.read(count) if offset is None else f.pread(count, offset)
    if data:
        try:
            t.mm.copy_out(addr, data)
        except SyscallError:
            # Linux leaves data it could not copy in the pipe; so does the Sentry.
            if offset is None:
                f.unread(data)
            raise
    return len(data)


def _iovecs(t, iov: int, iovcnt: int) -> list[tuple[int, int]]:
    if iovcnt < 0 or iovcnt > IOV_MAX:
        raise SyscallError(errno.EINVAL)
    raw = t.mm.copy_in(iov, iovcnt * IOVEC.size) if iovcnt else b""
    vecs = [IOVEC.unpack_from(raw, i * IOVEC.size) for i in range(iovcnt)]
    total = 0
    for _base, length in vecs:
        if length > 0x7FFF_FFFF_FFFF_FFFF:
            raise SyscallError(errno.EINVAL)
        total += length
        if total > 0x7FFF_FFFF_FFFF_FFFF:
            raise SyscallError(errno.EINVAL)
    return vecs


def read(t, a) -> int:
    """Implements Linux syscall read(2)."""
    fd, buf, count = s32(a[0]), a[1], a[2]
    return _read_into(t, t.fds.get(fd), buf, count)


def write(t, a) -> int:
    """Implements Linux syscall write(2)."""
    fd, buf, count = s32(a[0]), a[1], a[2]
    return _write_all(t, t.fds.get(fd), buf, count)


def pread64(t, a) -> int:
    """Implements Linux syscall pread64(2)."""
    fd, buf, count, offset = s32(a[0]), a[1], a[2], s64(a[3])
    f = t.fds.get(fd)
    if offset < 0:
        raise SyscallError(errno.EINVAL)
    return _read_into(t, f, buf, count, offset)


def pwrite64(t, a) -> int:
    """Implements Linux syscall pwrite64(2)."""
    fd, buf, count, offset = s32(a[0]), a[1], a[2], s64(a[3])
    f = t.fds.get(fd)
    if offset < 0:
        raise SyscallError(errno.EINVAL)
    return _write_all(t, f, buf, count, offset)


def readv(t, a) -> int:
    """Implements Linux syscall readv(2)."""
    fd, iov, iovcnt = s32(a[0]), a[1], s32(a[2])
    f = t.fds.get(fd)
    total = 0
    for base, length in _iovecs(t, iov, iovcnt):
        if length == 0:
            continue
        try:
            n = _read_into(t, f, base, length)
        except SyscallError:
            if total:
                return total
            raise
        total += n
        if n < length:
            break
    return total


def writev(t, a) -> int:
    """Implements Linux syscall writev(2)."""
    fd, iov, iovcnt = s32(a[0]), a[1], s32(a[2])
    f = t.fds.get(fd)
    vecs = _iovecs(t, iov, iovcnt)
    # Gather into one write so a line written as several pieces stays whole.
    if sum(length for _, length in vecs) <= CHUNK:
        data = b"".join(t.mm.copy_in(base, length) for base, length in vecs if length)
        return f.write(data) if data else 0
    total = 0
    for base, length in vecs:
        if length == 0:
            continue
        n = _write_all(t, f, base, length)
        total += n
        if n < length:
            break
    return total


def ioctl(t, a) -> int:
    """Implements Linux syscall ioctl(2)."""
    fd, request, arg = s32(a[0]), a[1] & 0xFFFF_FFFF, a[2]
    f = t.fds.get(fd)
    if request == TCGETS:
        t.mm.copy_out(arg, f.ioctl_termios())
        return 0
    if request == TIOCGWINSZ:
        t.mm.copy_out(arg, f.ioctl_winsize())
        return 0
    if request in (FIOCLEX, FIONCLEX):
        return 0
    if request == FIONBIO:
        t.mm.copy_in(arg, 4)
        return 0
    raise SyscallError(errno.ENOTTY)


def fstat(t, a) -> int:
    """Implements Linux syscall fstat(2)."""
    fd, statbuf = s32(a[0]), a[1]
    t.mm.copy_out(statbuf, t.fds.get(fd).stat())
    return 0


def newfstatat(t, a) -> int:
    """Implements Linux syscall newfstatat(2)."""
    dirfd, path, statbuf, flags = s32(a[0]), a[1], a[2], s32(a[3])
    name = t.mm.read_cstring(path)
    if flags & ~(0x100 | 0x800 | AT_EMPTY_PATH):
        raise SyscallError(errno.EINVAL)
    if name == b"" and flags & AT_EMPTY_PATH:
        if dirfd == AT_FDCWD:
            raise SyscallError(errno.ENOENT)
        t.mm.copy_out(statbuf, t.fds.get(dirfd).stat())
        return 0
    if name == b"":
        raise SyscallError(errno.ENOENT)
    # Paths need the VFS (next milestone); nothing exists yet.
    raise SyscallError(errno.ENOENT)


def close(t, a) -> int:
    """Implements Linux syscall close(2)."""
    t.fds.close(s32(a[0]))
    return 0


def lseek(t, a) -> int:
    """Implements Linux syscall lseek(2)."""
    fd, offset, whence = s32(a[0]), s64(a[1]), s32(a[2])
    return t.fds.get(fd).seek(offset, whence)


ENTRIES = (
    Entry("read", read, SUPPORTED, "standard streams"),
    Entry("write", write, SUPPORTED, "standard streams"),
    Entry("pread64", pread64, SUPPORTED, "ESPIPE on pipes and ttys"),
    Entry("pwrite64", pwrite64, SUPPORTED, "ESPIPE on pipes and ttys"),
    Entry("readv", readv, SUPPORTED, ""),
    Entry("writev", writev, SUPPORTED, "small vectors are written as one piece"),
    Entry("ioctl", ioctl, PARTIAL, "TCGETS, TIOCGWINSZ, FIONBIO, FIOCLEX; others ENOTTY"),
    Entry("fstat", fstat, SUPPORTED, ""),
    Entry("newfstatat", newfstatat, PARTIAL, "AT_EMPTY_PATH only until the VFS lands"),
    Entry("close", close, SUPPORTED, ""),
    Entry("lseek", lseek, PARTIAL, "streams are not seekable"),
)
