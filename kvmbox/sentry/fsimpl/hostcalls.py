"""The raw host syscalls the host passthrough needs and Python's os module lacks (ctypes).

openat2(2) with RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS is
how every host path is opened (with a component-by-component O_NOFOLLOW walk
when the host kernel has no openat2), renameat2(2) for rename flags,
utimensat(2) with UTIME_OMIT / UTIME_NOW, fallocate(2).  This is the only module making
such calls; errors come back as OSError with the host errno.
"""
from __future__ import annotations

import ctypes
import errno
import os

from kvmbox.abi.fcntl import O_PATH
from kvmbox.errors import SyscallError

_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long

NR_OPENAT2 = 437
NR_RENAMEAT2 = 316
RESOLVE_NO_XDEV, RESOLVE_NO_MAGICLINKS, RESOLVE_NO_SYMLINKS, RESOLVE_BENEATH = 0x01, 0x02, 0x04, 0x08
SAFE_RESOLVE = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS
UTIME_NOW, UTIME_OMIT = (1 << 30) - 1, (1 << 30) - 2
NOW = object()                  # utimens_nofollow: "the host's current time" (UTIME_NOW)
AT_SYMLINK_NOFOLLOW = 0x100


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


_utimensat = _libc.utimensat
_utimensat.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.POINTER(_Timespec), ctypes.c_int)
_utimensat.restype = ctypes.c_int
_fallocate = _libc.fallocate
_fallocate.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64)
_fallocate.restype = ctypes.c_int



def _raise() -> None:
    e = ctypes.get_errno()
    raise OSError(e, os.strerror(e))


def _openat2(dirfd: int, path: str, flags: int, mode: int) -> int:
    how = _OpenHow(flags | os.O_CLOEXEC, mode if flags & (os.O_CREAT | os.O_TMPFILE) else 0,
                   SAFE_RESOLVE)
    fd = _syscall(ctypes.c_long(NR_OPENAT2), ctypes.c_int(dirfd), ctypes.c_char_p(os.fsencode(path)),
                  ctypes.byref(how), ctypes.c_size_t(ctypes.sizeof(how)))
    if fd < 0:
        _raise()
    return fd


def _walk_open(dirfd: int, path: str, flags: int, mode: int) -> int:
    """openat2's fallback: open each component with O_NOFOLLOW relative to the last."""
    parts = [p for p in path.split("/") if p and p != "."]
    if any(p == ".." for p in parts):
        raise OSError(errno.EXDEV, "path escapes its mount")
    cur = dirfd
    try:
        for p in parts[:-1]:
            nxt = os.open(p, O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=cur)
            if cur != dirfd:
                os.close(cur)
            cur = nxt
        last = parts[-1] if parts else "."
        return os.open(last, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=cur)
    finally:
        if cur != dirfd:
            os.close(cur)


def _probe_openat2() -> bool:
    """Whether the host kernel (and any seccomp filter around us) allows openat2."""
    try:
        os.close(_openat2(-100, ".", O_PATH, 0))          # AT_FDCWD
        return True
    except OSError as e:
        return e.errno not in (errno.ENOSYS, errno.EPERM)


HAVE_OPENAT2 = _probe_openat2()     # a fact about the host kernel, fixed for the process


def open_beneath(dirfd: int, path: str, flags: int, mode: int = 0, *,
                 use_openat2: bool = HAVE_OPENAT2) -> int:
    """An fd for `path` ("" or "." for `dirfd` itself) strictly beneath `dirfd`, no symlink
    followed anywhere (a symlink at the end gives ELOOP unless O_PATH|O_NOFOLLOW asks for it)."""
    path = path or "."
    if use_openat2:
        return _openat2(dirfd, path, flags, mode)
    return _walk_open(dirfd, path, flags, mode)


def renameat2(olddirfd: int, old: str, newdirfd: int, new: str, flags: int) -> None:
    r = _syscall(ctypes.c_long(NR_RENAMEAT2), ctypes.c_int(olddirfd),
                 ctypes.c_char_p(os.fsencode(old)), ctypes.c_int(newdirfd),
                 ctypes.c_char_p(os.fsencode(new)), ctypes.c_uint(flags))
    if r < 0:
        _raise()


def utimens_nofollow(dirfd: int, name: str, atime_ns, mtime_ns) -> None:
    """utimensat(dirfd, name, {atime, mtime}, AT_SYMLINK_NOFOLLOW); None leaves a time as it
    is, NOW takes the host's current time (then mtime equals the ctime the host sets)."""
    ts = (_Timespec * 2)()
    for i, t in enumerate((atime_ns, mtime_ns)):
        if t is None:
            ts[i].tv_sec, ts[i].tv_nsec = 0, UTIME_OMIT
        elif t is NOW:
            ts[i].tv_sec, ts[i].tv_nsec = 0, UTIME_NOW
        else:
            ts[i].tv_sec, ts[i].tv_nsec = divmod(t, 10**9)
    if _utimensat(dirfd, os.fsencode(name), ts, AT_SYMLINK_NOFOLLOW):
        _raise()


def fallocate(fd: int, mode: int, offset: int, length: int) -> None:
    if _fallocate(fd, mode, offset, length):
        _raise()


def guest_error(e: OSError) -> SyscallError:
    """The guest's errno for a host call's OSError (EXDEV from RESOLVE_BENEATH, a refused
    step out of the mount, is a name that is not there: ENOENT)."""
    code = e.errno or errno.EIO
    if code == errno.EXDEV:
        code = errno.ENOENT
    return SyscallError(code)
