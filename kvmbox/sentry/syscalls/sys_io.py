"""Handlers for I/O on open descriptors: read/write and vectors, positional I/O, lseek, ioctl,
sendfile / copy_file_range, fadvise64.

A write that fails with EPIPE also raises SIGPIPE, as Linux's pipe and socket
writes do (the signal is queued; the errno still returns if it is ignored).

Files never block: on a blocking descriptor an EAGAIN is waited out here
(kvmbox/sentry/syscalls/blocking.py).  A blocking write goes on until every
byte is taken, as a pipe write does; interrupted by a signal after some bytes
it returns their count, before any it restarts or fails with EINTR.

Writes to regular files honour RLIMIT_FSIZE (kvmbox/sentry/syscalls/fsize.py):
one check per write call, as Linux's write_iter makes it, before any byte moves.
"""
from __future__ import annotations

import errno

from kvmbox.abi.fcntl import O_APPEND, O_NONBLOCK
from kvmbox.abi.socket import SIOCOUTQ
from kvmbox.abi.structs import IOVEC, S32, S64, U32
from kvmbox.errors import SyscallError
from kvmbox.sentry.files import MAX_RW
from kvmbox.sentry.syscalls.blocking import read_blocking, write_blocking
from kvmbox.sentry.syscalls.fsize import write_room
from kvmbox.sentry.syscalls.args import s32, s64, u32
from kvmbox.sentry.syscalls.table import ERROR, PARTIAL, SUPPORTED, Entry

CHUNK = 1 << 20            # guest data moves through the Sentry in pieces of at most 1 MiB
IOV_MAX = 1024
TCGETS, TIOCGWINSZ, FIONREAD, FIONBIO = 0x5401, 0x5413, 0x541B, 0x5421
FIOCLEX, FIONCLEX, FIOASYNC = 0x5451, 0x5450, 0x5452
SIGPIPE = 13
RWF_HIPRI, RWF_DSYNC, RWF_SYNC, RWF_NOWAIT, RWF_APPEND = 1, 2, 4, 8, 16
RWF_ALL = 0x3F
POSIX_FADV_MAX = 5
SEEK_MAX = 4               # SEEK_HOLE


def _epipe(t, e: SyscallError) -> None:
    if e.errno == errno.EPIPE:
        t.queue_signal(SIGPIPE)


def _write_all(t, f, addr: int, count: int, offset: int | None = None,
               limited: bool = False) -> int:
    """write/pwrite of `count` bytes at guest `addr`; `limited`: RLIMIT_FSIZE already
    applied by the caller (one check per syscall)."""
    try:
        if not limited and f.writable:
            count = write_room(t, f, offset, min(count, MAX_RW))
        return _write_chunks(t, f, addr, count, offset)
    except SyscallError as e:
        _epipe(t, e)
        raise


def _write_chunks(t, f, addr: int, count: int, offset: int | None = None) -> int:
    done = 0
    count = min(count, MAX_RW)
    while done < count:
        n = min(CHUNK, count - done)
        data = t.mm.copy_in(addr + done, n)
        try:
            w = _write_data(t, f, data, None if offset is None else offset + done)
        except SyscallError:
            if done:
                return done
            raise
        done += w
        if w < n:
            break
    return done


def _write_data(t, f, data: bytes, offset: int | None) -> int:
    """Write all of `data` (waiting on a blocking descriptor between partial writes); a
    count short of len(data) when an error or a signal came after some bytes."""
    done, n = 0, len(data)
    while True:
        try:
            if offset is None:
                w = write_blocking(t, f, lambda: f.write(data[done:] if done else data))
            else:
                w = write_blocking(t, f, lambda: f.pwrite(data[done:] if done else data,
                                                          offset + done))
        except SyscallError:
            if done:
                return done
            raise
        done += w
        if done >= n or w <= 0 or offset is not None:
            return done


def _read_into(t, f, addr: int, count: int, offset: int | None = None) -> int:
    n = min(count, MAX_RW, CHUNK)
    return read_blocking(t, f, lambda: f.read_to(t.mm, addr, n, offset))


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


def _readv(t, f, vecs: list[tuple[int, int]], offset: int | None) -> int:
    total = 0
    for base, length in vecs:
        if length == 0:
            continue
        try:
            n = _read_into(t, f, base, length, None if offset is None else offset + total)
        except SyscallError:
            if total:
                return total
            raise
        total += n
        if n < length:
            break
    return total


def _clip(vecs: list[tuple[int, int]], n: int) -> list[tuple[int, int]]:
    """The first `n` bytes of an iovec list."""
    out = []
    for base, length in vecs:
        if n <= 0:
            break
        out.append((base, min(length, n)))
        n -= length
    return out


def _writev(t, f, vecs: list[tuple[int, int]], offset: int | None) -> int:
    total = sum(length for _, length in vecs)
    if f.writable:
        room = write_room(t, f, offset, min(total, MAX_RW))
        if room < total:
            vecs, total = _clip(vecs, room), room
    # Gather into one write so a line written as several pieces stays whole.
    if total <= CHUNK:
        data = b"".join(t.mm.copy_in(base, length) for base, length in vecs if length)
        if not f.writable:
            raise SyscallError(errno.EBADF)
        if not data:
            return 0
        try:
            return _write_data(t, f, data, offset)
        except SyscallError as e:
            _epipe(t, e)
            raise
    total = 0
    for base, length in vecs:
        if length == 0:
            continue
        try:
            n = _write_all(t, f, base, length, None if offset is None else offset + total,
                           limited=True)
        except SyscallError:
            if total:
                return total
            raise
        total += n
        if n < length:
            break
    return total


def readv(t, a) -> int:
    """Implements Linux syscall readv(2)."""
    fd, iov, iovcnt = s32(a[0]), a[1], s32(a[2])
    f = t.fds.get(fd)
    return _readv(t, f, _iovecs(t, iov, iovcnt), None)


def writev(t, a) -> int:
    """Implements Linux syscall writev(2)."""
    fd, iov, iovcnt = s32(a[0]), a[1], s32(a[2])
    f = t.fds.get(fd)
    return _writev(t, f, _iovecs(t, iov, iovcnt), None)


def _pos_offset(f, offset: int) -> int | None:
    """preadv/pwritev offsets: -1 (v2 only) means the file position."""
    if offset < 0:
        raise SyscallError(errno.EINVAL)
    return offset


def _check_rwf(flags: int) -> None:
    if flags & ~RWF_ALL:
        raise SyscallError(errno.EOPNOTSUPP)


def preadv(t, a) -> int:
    """Implements Linux syscall preadv(2)."""
    fd, iov, iovcnt, offset = s32(a[0]), a[1], s32(a[2]), s64(a[3])
    f = t.fds.get(fd)
    vecs = _iovecs(t, iov, iovcnt)
    return _readv(t, f, vecs, _pos_offset(f, offset))


def pwritev(t, a) -> int:
    """Implements Linux syscall pwritev(2)."""
    fd, iov, iovcnt, offset = s32(a[0]), a[1], s32(a[2]), s64(a[3])
    f = t.fds.get(fd)
    vecs = _iovecs(t, iov, iovcnt)
    return _writev(t, f, vecs, _pos_offset(f, offset))


def preadv2(t, a) -> int:
    """Implements Linux syscall preadv2(2)."""
    fd, iov, iovcnt, offset, flags = s32(a[0]), a[1], s32(a[2]), s64(a[3]), s32(a[5])
    f = t.fds.get(fd)
    vecs = _iovecs(t, iov, iovcnt)
    _check_rwf(flags)
    return _readv(t, f, vecs, None if offset == -1 else _pos_offset(f, offset))


def pwritev2(t, a) -> int:
    """Implements Linux syscall pwritev2(2)."""
    fd, iov, iovcnt, offset, flags = s32(a[0]), a[1], s32(a[2]), s64(a[3]), s32(a[5])
    f = t.fds.get(fd)
    vecs = _iovecs(t, iov, iovcnt)
    _check_rwf(flags)
    return _writev(t, f, vecs, None if offset == -1 else _pos_offset(f, offset))


def lseek(t, a) -> int:
    """Implements Linux syscall lseek(2)."""
    fd, offset, whence = s32(a[0]), s64(a[1]), u32(a[2])
    f = t.fds.get(fd)
    if whence > SEEK_MAX:
        raise SyscallError(errno.EINVAL)         # before the file's own ESPIPE, as ksys_lseek
    return f.seek(offset, whence)


def ioctl(t, a) -> int:
    """Implements Linux syscall ioctl(2)."""
    from kvmbox.sentry.vfs.opath import is_path_only
    fd, request, arg = s32(a[0]), a[1] & 0xFFFF_FFFF, a[2]
    f = t.fds.get(fd)
    if is_path_only(f):
        raise SyscallError(errno.EBADF)
    if request == FIOCLEX or request == FIONCLEX:
        t.fds.set_cloexec(fd, request == FIOCLEX)
        return 0
    if request == FIONBIO:
        on = U32.unpack(t.mm.copy_in(arg, 4))[0]
        f.flags = f.flags | O_NONBLOCK if on else f.flags & ~O_NONBLOCK
        return 0
    if request == FIOASYNC:
        t.mm.copy_in(arg, 4)
        return 0
    if request == FIONREAD:
        n = f.readable_bytes()
        t.mm.copy_out(arg, S32.pack(min(n, 0x7FFFFFFF)))
        return 0
    if hasattr(f, "unsent_bytes"):                                # a socket
        from kvmbox.sentry.net.netlink import DEV_IOCTLS, dev_ioctl
        if request in DEV_IOCTLS:
            return dev_ioctl(t, request, arg)
        if request == SIOCOUTQ:
            t.mm.copy_out(arg, S32.pack(min(f.unsent_bytes(), 0x7FFFFFFF)))
            return 0
    if request == TCGETS:
        t.mm.copy_out(arg, f.ioctl_termios())
        return 0
    if request == TIOCGWINSZ:
        t.mm.copy_out(arg, f.ioctl_winsize())
        return 0
    raise SyscallError(errno.ENOTTY)


# --- moving bytes between descriptors ---------------------------------------------------------
def _transfer(t, src, dst, count: int, in_off: int | None, out_off: int | None) -> tuple[int, int]:
    """Copy up to `count` bytes from src to dst; returns (bytes copied, bytes read past in_off)."""
    done = 0
    count = min(count, MAX_RW)
    while done < count:
        n = min(CHUNK, count - done)
        try:
            data = (read_blocking(t, src, lambda: src.read(n)) if in_off is None
                    else src.pread(n, in_off + done))
        except SyscallError:
            if done:
                break
            raise
        if not data:
            break
        try:
            room = write_room(t, dst, out_off if out_off is None else out_off + done, len(data))
            clipped = room < len(data)
            if clipped:
                if in_off is None:
                    src.unread(data[room:])
                data = data[:room]
            w = _write_data(t, dst, data, out_off if out_off is None else out_off + done)
        except SyscallError as e:
            if in_off is None:
                src.unread(data)
            if done:
                break
            _epipe(t, e)
            raise
        if w < len(data) and in_off is None:
            src.unread(data[w:])
        done += w
        if clipped and w == room:
            # Cut short at RLIMIT_FSIZE: Linux's splice writes the rest again and that
            # write, at the limit, raises SIGXFSZ (the count stays what was written).
            try:
                write_room(t, dst, out_off if out_off is None else out_off + done, 1)
            except SyscallError:
                pass
            break
        if w < len(data):
            break
    return done, done


def sendfile(t, a) -> int:
    """Implements Linux syscall sendfile(2)."""
    out_fd, in_fd, offp, count = s32(a[0]), s32(a[1]), a[2], a[3]
    src, dst = t.fds.get(in_fd), t.fds.get(out_fd)
    if not src.readable or not dst.writable:
        raise SyscallError(errno.EBADF)
    if dst.flags & O_APPEND:
        raise SyscallError(errno.EINVAL)
    if offp:
        off = S64.unpack(t.mm.copy_in(offp, 8))[0]
        if off < 0:
            raise SyscallError(errno.EINVAL)
        src.pread(0, off)                 # ESPIPE for sources without positions
        n, _ = _transfer(t, src, dst, count, off, None)
        t.mm.copy_out(offp, S64.pack(off + n))
        return n
    return _transfer(t, src, dst, count, None, None)[0]


def copy_file_range(t, a) -> int:
    """Implements Linux syscall copy_file_range(2)."""
    fd_in, off_in_p, fd_out, off_out_p, length, flags = (s32(a[0]), a[1], s32(a[2]), a[3], a[4],
                                                         u32(a[5]))
    if flags:
        raise SyscallError(errno.EINVAL)
    src, dst = t.fds.get(fd_in), t.fds.get(fd_out)
    if not src.readable or not dst.writable or dst.flags & O_APPEND:
        raise SyscallError(errno.EBADF)
    import stat as S
    if not S.S_ISREG(src.mode) or not S.S_ISREG(dst.mode):
        raise SyscallError(errno.EISDIR if S.S_ISDIR(src.mode) or S.S_ISDIR(dst.mode)
                           else errno.EINVAL)
    if getattr(src, "node", None) is None or getattr(dst, "node", None) is None:
        # The Sentry's own streams (a redirected stdout) are no file system's files:
        # "not the same file system", which callers (cat, cp) answer with read/write.
        raise SyscallError(errno.EXDEV)
    off_in = S64.unpack(t.mm.copy_in(off_in_p, 8))[0] if off_in_p else None
    off_out = S64.unpack(t.mm.copy_in(off_out_p, 8))[0] if off_out_p else None
    if (off_in is not None and off_in < 0) or (off_out is not None and off_out < 0):
        raise SyscallError(errno.EINVAL)
    if off_in is None:
        off_in_pos = src.seek(0, 1)
    if off_out is None:
        off_out_pos = dst.seek(0, 1)
    start_in = off_in if off_in is not None else off_in_pos
    start_out = off_out if off_out is not None else off_out_pos
    if src is dst or getattr(src, "node", None) is getattr(dst, "node", 0):
        if start_in < start_out + length and start_out < start_in + length:
            raise SyscallError(errno.EINVAL)
    # One RLIMIT_FSIZE check for the whole copy, before it starts (generic_copy_file_checks).
    length = write_room(t, dst, start_out, min(length, MAX_RW))
    n, _ = _transfer(t, src, dst, length, start_in, start_out)
    if off_in is None:
        src.seek(start_in + n, 0)
    else:
        t.mm.copy_out(off_in_p, S64.pack(off_in + n))
    if off_out is None:
        dst.seek(start_out + n, 0)
    else:
        t.mm.copy_out(off_out_p, S64.pack(off_out + n))
    return n


def fadvise64(t, a) -> int:
    """Implements Linux syscall fadvise64(2)."""
    fd, _offset, length, advice = s32(a[0]), s64(a[1]), s64(a[2]), s32(a[3])
    f = t.fds.get(fd)
    import stat as S
    if S.S_ISFIFO(f.mode):
        raise SyscallError(errno.ESPIPE)
    if length < 0 or not 0 <= advice <= POSIX_FADV_MAX:
        raise SyscallError(errno.EINVAL)
    return 0


ENTRIES = (
    Entry("read", read, SUPPORTED),
    Entry("write", write, SUPPORTED, "EPIPE raises SIGPIPE; RLIMIT_FSIZE raises SIGXFSZ"),
    Entry("pread64", pread64, SUPPORTED, "ESPIPE on pipes, sockets and ttys"),
    Entry("pwrite64", pwrite64, SUPPORTED, "ESPIPE on pipes, sockets and ttys"),
    Entry("readv", readv, SUPPORTED, ""),
    Entry("writev", writev, SUPPORTED, "small vectors are written as one piece"),
    Entry("preadv", preadv, SUPPORTED),
    Entry("pwritev", pwritev, SUPPORTED),
    Entry("preadv2", preadv2, PARTIAL, "RWF_* flags accepted and ignored"),
    Entry("pwritev2", pwritev2, PARTIAL, "RWF_* flags accepted and ignored"),
    Entry("lseek", lseek, SUPPORTED, "ESPIPE on pipes, sockets and ttys; host-file streams "
          "move the offset they share with the invoking shell"),
    Entry("ioctl", ioctl, PARTIAL, "FIONREAD, FIONBIO, FIOCLEX, FIONCLEX, TCGETS, TIOCGWINSZ, "
          "SIOCOUTQ and SIOCGIF{INDEX,NAME,FLAGS,MTU} (lo) on sockets; "
          "others ENOTTY"),
    Entry("sendfile", sendfile, SUPPORTED, "a copy through the Sentry"),
    Entry("copy_file_range", copy_file_range, SUPPORTED, "a copy through the Sentry"),
    Entry("splice", None, ERROR, "not implemented", errno.EINVAL),
    Entry("tee", None, ERROR, "not implemented", errno.EINVAL),
    Entry("fadvise64", fadvise64, SUPPORTED, "validated, no effect"),
)
