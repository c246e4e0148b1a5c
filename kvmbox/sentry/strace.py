"""Formats one system call as strace(1) prints it: `write(1, "hi\\n", 3) = 3`.

How each argument prints is data (ARG_KINDS, keyed by syscall name); syscalls not
in it print their six arguments in hex.  Guest memory is read through an object with
copy_in(addr, n) and read_cstring(addr, maxlen); when that raises SyscallError the
pointer prints in hex, as strace does for unreadable memory.
"""
from __future__ import annotations

from collections.abc import Sequence

import errno

from kvmbox.abi.errno_names import errno_name, errno_text
from kvmbox.abi.fcntl import O_CREAT, O_TMPFILE_BIT
from kvmbox.abi.signals import SIGNAL_NAMES
from kvmbox.errors import SyscallError

STRING_LIMIT = 32           # strace -s default
AT_FDCWD = -100

# Argument kinds.
FD = "fd"            # int, AT_FDCWD shown by name
INT = "int"          # signed 32-bit
LONG = "long"        # signed 64-bit
ULONG = "ulong"      # unsigned 64-bit (sizes, counts)
HEX = "hex"
PTR = "ptr"          # NULL or 0x...
OCT = "oct"          # modes: 0644
STR = "str"          # NUL-terminated string in guest memory
OBUF = "obuf"        # buffer the guest passes in; its length is the next argument
IBUF = "ibuf"        # buffer the kernel fills; the return value is its length
OPEN = "open_flags"
PROT = "prot"
MAP = "map_flags"
CLOCK = "clockid"
SIG = "signal"
AT = "at_flags"
WHENCE = "whence"
SIGHOW = "sighow"
FUTEX = "futex_op"
ARCH = "arch_prctl_code"

# Return kinds.
RET_INT, RET_HEX, RET_NONE = "int", "hex", "none"

# name -> (argument kinds, return kind).
ARG_KINDS: dict[str, tuple[tuple[str, ...], str]] = {
    "read": ((FD, IBUF, ULONG), RET_INT),
    "write": ((FD, OBUF, ULONG), RET_INT),
    "pread64": ((FD, IBUF, ULONG, LONG), RET_INT),
    "pwrite64": ((FD, OBUF, ULONG, LONG), RET_INT),
    "readv": ((FD, PTR, INT), RET_INT),
    "writev": ((FD, PTR, INT), RET_INT),
    "open": ((STR, OPEN, OCT), RET_INT),
    "openat": ((FD, STR, OPEN, OCT), RET_INT),
    "creat": ((STR, OCT), RET_INT),
    "close": ((FD,), RET_INT),
    "stat": ((STR, PTR), RET_INT),
    "lstat": ((STR, PTR), RET_INT),
    "fstat": ((FD, PTR), RET_INT),
    "newfstatat": ((FD, STR, PTR, AT), RET_INT),
    "statx": ((FD, STR, AT, HEX, PTR), RET_INT),
    "access": ((STR, OCT), RET_INT),
    "faccessat": ((FD, STR, OCT), RET_INT),
    "faccessat2": ((FD, STR, OCT, AT), RET_INT),
    "lseek": ((FD, LONG, WHENCE), RET_INT),
    "mmap": ((PTR, ULONG, PROT, MAP, FD, HEX), RET_HEX),
    "mprotect": ((PTR, ULONG, PROT), RET_INT),
    "munmap": ((PTR, ULONG), RET_INT),
    "brk": ((PTR,), RET_HEX),
    "mremap": ((PTR, ULONG, ULONG, HEX, PTR), RET_HEX),
    "madvise": ((PTR, ULONG, INT), RET_INT),
    "ioctl": ((FD, HEX, HEX), RET_INT),
    "dup": ((FD,), RET_INT),
    "dup2": ((FD, FD), RET_INT),
    "dup3": ((FD, FD, OPEN), RET_INT),
    "pipe": ((PTR,), RET_INT),
    "pipe2": ((PTR, OPEN), RET_INT),
    "fcntl": ((FD, INT, HEX), RET_INT),
    "getdents64": ((FD, PTR, ULONG), RET_INT),
    "getcwd": ((PTR, ULONG), RET_INT),
    "chdir": ((STR,), RET_INT),
    "fchdir": ((FD,), RET_INT),
    "mkdir": ((STR, OCT), RET_INT),
    "mkdirat": ((FD, STR, OCT), RET_INT),
    "unlink": ((STR,), RET_INT),
    "unlinkat": ((FD, STR, AT), RET_INT),
    "rename": ((STR, STR), RET_INT),
    "readlink": ((STR, IBUF, ULONG), RET_INT),
    "readlinkat": ((FD, STR, IBUF, ULONG), RET_INT),
    "umask": ((OCT,), RET_INT),
    "exit": ((INT,), RET_NONE),
    "exit_group": ((INT,), RET_NONE),
    "getpid": ((), RET_INT), "gettid": ((), RET_INT), "getppid": ((), RET_INT),
    "getuid": ((), RET_INT), "geteuid": ((), RET_INT),
    "getgid": ((), RET_INT), "getegid": ((), RET_INT),
    "getpgrp": ((), RET_INT), "sched_yield": ((), RET_INT),
    "uname": ((PTR,), RET_INT),
    "arch_prctl": ((ARCH, PTR), RET_INT),
    "set_tid_address": ((PTR,), RET_INT),
    "set_robust_list": ((PTR, ULONG), RET_INT),
    "rseq": ((PTR, HEX, HEX, HEX), RET_INT),
    "futex": ((PTR, FUTEX, INT, PTR, PTR, HEX), RET_INT),
    "clock_gettime": ((CLOCK, PTR), RET_INT),
    "clock_getres": ((CLOCK, PTR), RET_INT),
    "clock_nanosleep": ((CLOCK, HEX, PTR, PTR), RET_INT),
    "nanosleep": ((PTR, PTR), RET_INT),
    "alarm": ((ULONG,), RET_INT),
    "getitimer": ((INT, PTR), RET_INT),
    "setitimer": ((INT, PTR, PTR), RET_INT),
    "timer_create": ((CLOCK, PTR, PTR), RET_INT),
    "timer_settime": ((INT, HEX, PTR, PTR), RET_INT),
    "timer_gettime": ((INT, PTR), RET_INT),
    "timer_getoverrun": ((INT,), RET_INT),
    "timer_delete": ((INT,), RET_INT),
    "timerfd_create": ((CLOCK, HEX), RET_INT),
    "timerfd_settime": ((FD, HEX, PTR, PTR), RET_INT),
    "timerfd_gettime": ((FD, PTR), RET_INT),
    "signalfd": ((FD, PTR, ULONG), RET_INT),
    "signalfd4": ((FD, PTR, ULONG, HEX), RET_INT),
    "gettimeofday": ((PTR, PTR), RET_INT),
    "time": ((PTR,), RET_INT),
    "getrandom": ((IBUF, ULONG, HEX), RET_INT),
    "prlimit64": ((INT, INT, PTR, PTR), RET_INT),
    "getrlimit": ((INT, PTR), RET_INT),
    "setrlimit": ((INT, PTR), RET_INT),
    "rt_sigaction": ((SIG, PTR, PTR, ULONG), RET_INT),
    "rt_sigprocmask": ((SIGHOW, PTR, PTR, ULONG), RET_INT),
    "rt_sigreturn": ((), RET_INT),
    "sigaltstack": ((PTR, PTR), RET_INT),
    "kill": ((INT, SIG), RET_INT),
    "tgkill": ((INT, INT, SIG), RET_INT),
    "tkill": ((INT, SIG), RET_INT),
    "prctl": ((INT, HEX, HEX, HEX, HEX), RET_INT),
    "sched_getaffinity": ((INT, ULONG, PTR), RET_INT),
    "sched_setaffinity": ((INT, ULONG, PTR), RET_INT),
    "wait4": ((INT, PTR, HEX, PTR), RET_INT),
    "execve": ((STR, PTR, PTR), RET_INT),
    "execveat": ((FD, STR, PTR, PTR, HEX), RET_INT),
    "getrusage": ((INT, PTR), RET_INT),
    "getpriority": ((INT, INT), RET_INT),
    "setpriority": ((INT, INT, INT), RET_INT),
    "get_mempolicy": ((PTR, PTR, ULONG, PTR, HEX), RET_INT),
    "connect": ((FD, PTR, INT), RET_INT),
    "getpeername": ((FD, PTR, PTR), RET_INT),
    "getsockname": ((FD, PTR, PTR), RET_INT),
    "getsockopt": ((FD, INT, INT, PTR, PTR), RET_INT),
    "setsockopt": ((FD, INT, INT, PTR, INT), RET_INT),
    "poll": ((PTR, ULONG, INT), RET_INT),
    "getcpu": ((PTR, PTR, PTR), RET_INT),
    "sysinfo": ((PTR,), RET_INT),
    # files and directories
    "openat2": ((FD, STR, PTR, ULONG), RET_INT),
    "close_range": ((INT, INT, HEX), RET_INT),
    "preadv": ((FD, PTR, INT, LONG), RET_INT),
    "pwritev": ((FD, PTR, INT, LONG), RET_INT),
    "preadv2": ((FD, PTR, INT, LONG, HEX), RET_INT),
    "pwritev2": ((FD, PTR, INT, LONG, HEX), RET_INT),
    "getdents": ((FD, PTR, ULONG), RET_INT),
    "rmdir": ((STR,), RET_INT),
    "link": ((STR, STR), RET_INT),
    "linkat": ((FD, STR, FD, STR, AT), RET_INT),
    "symlink": ((STR, STR), RET_INT),
    "symlinkat": ((STR, FD, STR), RET_INT),
    "renameat": ((FD, STR, FD, STR), RET_INT),
    "renameat2": ((FD, STR, FD, STR, HEX), RET_INT),
    "mknod": ((STR, OCT, HEX), RET_INT),
    "mknodat": ((FD, STR, OCT, HEX), RET_INT),
    "chmod": ((STR, OCT), RET_INT),
    "fchmod": ((FD, OCT), RET_INT),
    "fchmodat": ((FD, STR, OCT, AT), RET_INT),
    "chown": ((STR, INT, INT), RET_INT),
    "lchown": ((STR, INT, INT), RET_INT),
    "fchown": ((FD, INT, INT), RET_INT),
    "fchownat": ((FD, STR, INT, INT, AT), RET_INT),
    "utimensat": ((FD, STR, PTR, AT), RET_INT),
    "utimes": ((STR, PTR), RET_INT),
    "utime": ((STR, PTR), RET_INT),
    "futimesat": ((FD, STR, PTR), RET_INT),
    "truncate": ((STR, LONG), RET_INT),
    "ftruncate": ((FD, LONG), RET_INT),
    "fallocate": ((FD, HEX, LONG, LONG), RET_INT),
    "fsync": ((FD,), RET_INT),
    "fdatasync": ((FD,), RET_INT),
    "sync": ((), RET_INT),
    "syncfs": ((FD,), RET_INT),
    "statfs": ((STR, PTR), RET_INT),
    "fstatfs": ((FD, PTR), RET_INT),
    "flock": ((FD, HEX), RET_INT),
    "fadvise64": ((FD, LONG, LONG, INT), RET_INT),
    "sendfile": ((FD, FD, PTR, ULONG), RET_INT),
    "copy_file_range": ((FD, PTR, FD, PTR, ULONG, HEX), RET_INT),
    "eventfd": ((INT,), RET_INT),
    "eventfd2": ((INT, HEX), RET_INT),
    "ppoll": ((PTR, ULONG, PTR, PTR, ULONG), RET_INT),
    "select": ((INT, PTR, PTR, PTR, PTR), RET_INT),
    "pselect6": ((INT, PTR, PTR, PTR, PTR, PTR), RET_INT),
    "epoll_create": ((INT,), RET_INT),
    "epoll_create1": ((HEX,), RET_INT),
    "epoll_ctl": ((FD, INT, FD, PTR), RET_INT),
    "epoll_wait": ((FD, PTR, INT, INT), RET_INT),
    "epoll_pwait": ((FD, PTR, INT, INT, PTR, ULONG), RET_INT),
    "epoll_pwait2": ((FD, PTR, INT, PTR, PTR, ULONG), RET_INT),
    "getxattr": ((STR, STR, PTR, ULONG), RET_INT),
    "lgetxattr": ((STR, STR, PTR, ULONG), RET_INT),
    "fgetxattr": ((FD, STR, PTR, ULONG), RET_INT),
    "listxattr": ((STR, PTR, ULONG), RET_INT),
    "llistxattr": ((STR, PTR, ULONG), RET_INT),
    "flistxattr": ((FD, PTR, ULONG), RET_INT),
    "setxattr": ((STR, STR, OBUF, ULONG, HEX), RET_INT),
    "lsetxattr": ((STR, STR, OBUF, ULONG, HEX), RET_INT),
    "fsetxattr": ((FD, STR, OBUF, ULONG, HEX), RET_INT),
    "removexattr": ((STR, STR), RET_INT),
    "lremovexattr": ((STR, STR), RET_INT),
    "fremovexattr": ((FD, STR), RET_INT),
    # memory, signals
    "msync": ((PTR, ULONG, HEX), RET_INT),
    "mincore": ((PTR, ULONG, PTR), RET_INT),
    "rt_sigpending": ((PTR, ULONG), RET_INT),
    "rt_sigsuspend": ((PTR, ULONG), RET_INT),
    "rt_sigtimedwait": ((PTR, PTR, PTR, ULONG), RET_INT),
    "pause": ((), RET_INT),
}

# Flag names, in the order strace prints them: (value, name).
OPEN_FLAGS = ((0o20200000, "O_TMPFILE"), (0o100, "O_CREAT"), (0o200, "O_EXCL"), (0o400, "O_NOCTTY"), (0o1000, "O_TRUNC"),
              (0o2000, "O_APPEND"), (0o4000, "O_NONBLOCK"), (0o4010000, "O_SYNC"),
              (0o10000, "O_DSYNC"), (0o20000, "O_ASYNC"), (0o40000, "O_DIRECT"),
              (0o100000, "O_LARGEFILE"), (0o200000, "O_DIRECTORY"), (0o400000, "O_NOFOLLOW"),
              (0o1000000, "O_NOATIME"), (0o2000000, "O_CLOEXEC"), (0o10000000, "O_PATH"))
# Syscalls whose mode argument strace shows only with O_CREAT or O_TMPFILE:
# name -> (index of flags, index of mode).
OPTIONAL_MODE = {"open": (1, 2), "openat": (2, 3)}
OPEN_ACCMODE = ("O_RDONLY", "O_WRONLY", "O_RDWR", "O_ACCMODE")
PROT_FLAGS = ((1, "PROT_READ"), (2, "PROT_WRITE"), (4, "PROT_EXEC"), (8, "PROT_SEM"),
              (0x0100_0000, "PROT_GROWSDOWN"), (0x0200_0000, "PROT_GROWSUP"))
MAP_TYPES = {1: "MAP_SHARED", 2: "MAP_PRIVATE", 3: "MAP_SHARED_VALIDATE"}
MAP_FLAGS = ((0x10, "MAP_FIXED"), (0x20, "MAP_ANONYMOUS"), (0x40, "MAP_32BIT"),
             (0x100, "MAP_GROWSDOWN"), (0x800, "MAP_DENYWRITE"), (0x1000, "MAP_EXECUTABLE"),
             (0x2000, "MAP_LOCKED"), (0x4000, "MAP_NORESERVE"), (0x8000, "MAP_POPULATE"),
             (0x10000, "MAP_NONBLOCK"), (0x20000, "MAP_STACK"), (0x40000, "MAP_HUGETLB"),
             (0x80000, "MAP_SYNC"), (0x100000, "MAP_FIXED_NOREPLACE"))
AT_FLAGS = ((0x100, "AT_SYMLINK_NOFOLLOW"), (0x200, "AT_REMOVEDIR"),
            (0x400, "AT_SYMLINK_FOLLOW"), (0x800, "AT_NO_AUTOMOUNT"), (0x1000, "AT_EMPTY_PATH"))
CLOCK_NAMES = {0: "CLOCK_REALTIME", 1: "CLOCK_MONOTONIC", 2: "CLOCK_PROCESS_CPUTIME_ID",
               3: "CLOCK_THREAD_CPUTIME_ID", 4: "CLOCK_MONOTONIC_RAW",
               5: "CLOCK_REALTIME_COARSE", 6: "CLOCK_MONOTONIC_COARSE", 7: "CLOCK_BOOTTIME",
               8: "CLOCK_REALTIME_ALARM", 9: "CLOCK_BOOTTIME_ALARM", 11: "CLOCK_TAI"}
WHENCE_NAMES = {0: "SEEK_SET", 1: "SEEK_CUR", 2: "SEEK_END", 3: "SEEK_DATA", 4: "SEEK_HOLE"}
SIGHOW_NAMES = {0: "SIG_BLOCK", 1: "SIG_UNBLOCK", 2: "SIG_SETMASK"}
FUTEX_CMDS = {0: "FUTEX_WAIT", 1: "FUTEX_WAKE", 2: "FUTEX_FD", 3: "FUTEX_REQUEUE",
              4: "FUTEX_CMP_REQUEUE", 5: "FUTEX_WAKE_OP", 6: "FUTEX_LOCK_PI",
              7: "FUTEX_UNLOCK_PI", 8: "FUTEX_TRYLOCK_PI", 9: "FUTEX_WAIT_BITSET",
              10: "FUTEX_WAKE_BITSET", 11: "FUTEX_WAIT_REQUEUE_PI",
              12: "FUTEX_CMP_REQUEUE_PI", 13: "FUTEX_LOCK_PI2"}
ARCH_PRCTL_CODES = {0x1001: "ARCH_SET_GS", 0x1002: "ARCH_SET_FS", 0x1003: "ARCH_GET_FS",
                    0x1004: "ARCH_GET_GS", 0x1011: "ARCH_GET_CPUID",
                    0x1012: "ARCH_SET_CPUID"}

_ESCAPES = {ord("\n"): "\\n", ord("\t"): "\\t", ord("\r"): "\\r", ord("\v"): "\\v",
            ord("\f"): "\\f", ord('"'): '\\"', ord("\\"): "\\\\"}


class MemoryReader:
    def copy_in(self, addr: int, n: int) -> bytes: ...
    def read_cstring(self, addr: int, maxlen: int) -> bytes: ...


def _s32(x: int) -> int:
    x &= 0xFFFF_FFFF
    return x - (1 << 32) if x & 0x8000_0000 else x


def _s64(x: int) -> int:
    x &= 0xFFFF_FFFF_FFFF_FFFF
    return x - (1 << 64) if x & (1 << 63) else x


def quote(data: bytes, truncated: bool) -> str:
    """strace's quoting: C escapes, octal for other non-printables, `...` after a cut."""
    out = []
    for i, b in enumerate(data):
        if b in _ESCAPES:
            out.append(_ESCAPES[b])
        elif 0x20 <= b < 0x7F:
            out.append(chr(b))
        else:
            nxt = data[i + 1] if i + 1 < len(data) else 0
            out.append(f"\\{b:03o}" if 0x30 <= nxt <= 0x37 else f"\\{b:o}")
    return '"' + "".join(out) + '"' + ("..." if truncated else "")


def _flags(value: int, names: Sequence[tuple[int, str]], parts: list[str]) -> str:
    for bit, name in names:
        if value & bit == bit:
            parts.append(name)
            value &= ~bit
    if value:
        parts.append(hex(value))
    return "|".join(parts) if parts else "0"


def _ptr(v: int) -> str:
    return "NULL" if v == 0 else hex(v)


def _cstring(mm: MemoryReader, addr: int) -> str:
    if addr == 0:
        return "NULL"
    try:
        data = bytes(mm.read_cstring(addr, STRING_LIMIT + 1))
    except SyscallError as e:
        if e.errno != errno.ENAMETOOLONG:
            return hex(addr)
        try:
            data = bytes(mm.copy_in(addr, STRING_LIMIT + 1))
        except SyscallError:
            return hex(addr)
    return quote(data[:STRING_LIMIT], len(data) > STRING_LIMIT)


def _buffer(mm: MemoryReader, addr: int, n: int) -> str:
    try:
        data = bytes(mm.copy_in(addr, min(n, STRING_LIMIT)))
    except SyscallError:
        return hex(addr)
    return quote(data, n > STRING_LIMIT)


def format_arg(kind: str, v: int, nxt: int, ret: int | None, mm: MemoryReader) -> str:
    """One argument; `nxt` is the following argument (a buffer's length)."""
    if kind == FD:
        fd = _s32(v)
        return "AT_FDCWD" if fd == AT_FDCWD else str(fd)
    if kind == INT:
        return str(_s32(v))
    if kind == LONG:
        return str(_s64(v))
    if kind == ULONG:
        return str(v)
    if kind == PTR:
        return _ptr(v)
    if kind == HEX:
        return hex(v) if v else "0"
    if kind == OCT:
        return "0" + format(v, "o") if v else "000"
    if kind == STR:
        return _cstring(mm, v)
    if kind == OBUF:
        return _buffer(mm, v, nxt)
    if kind == IBUF:
        if ret is None or ret < 0:
            return _ptr(v)
        return _buffer(mm, v, ret)
    if kind == OPEN:
        acc = OPEN_ACCMODE[v & 3]
        return _flags(v & ~3, OPEN_FLAGS, [acc])
    if kind == PROT:
        return _flags(v, PROT_FLAGS, []) if v else "PROT_NONE"
    if kind == MAP:
        typ = MAP_TYPES.get(v & 0xF)
        return _flags(v & ~0xF if typ else v, MAP_FLAGS, [typ] if typ else [])
    if kind == AT:
        return _flags(v, AT_FLAGS, [])
    if kind == CLOCK:
        return CLOCK_NAMES.get(_s32(v), str(_s32(v)))
    if kind == SIG:
        return SIGNAL_NAMES.get(_s32(v), str(_s32(v)))
    if kind == WHENCE:
        return WHENCE_NAMES.get(v, str(_s32(v)))
    if kind == SIGHOW:
        return SIGHOW_NAMES.get(v, hex(v))
    if kind == ARCH:
        return ARCH_PRCTL_CODES.get(v, hex(v))
    if kind == FUTEX:
        op = _s32(v)
        parts = [FUTEX_CMDS.get(op & 0x7F, str(op & 0x7F))]
        if op & 128:
            parts[0] += "_PRIVATE"
        if op & 256:
            parts.append("FUTEX_CLOCK_REALTIME")
        return "|".join(parts)
    return hex(v)


def format_return(ret: int | None, kind: str) -> str:
    """`= 3`, `= 0x7f...`, `= -1 ENOENT (No such file or directory)` or `= ?`."""
    if ret is None or kind == RET_NONE:
        return "?"
    r = _s64(ret)
    if -4095 <= r < 0:
        return f"-1 {errno_name(-r)} ({errno_text(-r)})"
    return hex(r & 0xFFFF_FFFF_FFFF_FFFF) if kind == RET_HEX else str(r)


def syscall_name(nr: int, record: object | None = None) -> str:
    """The name strace prints for syscall `nr`: the table record's, else Linux's own name for
    the number (an unimplemented call such as vfork), else `syscall_<nr>` (no such call)."""
    if record is not None:
        return record.name  # type: ignore[attr-defined]
    from kvmbox.abi.syscall_numbers import NAME_BY_NR
    return NAME_BY_NR.get(nr, f"syscall_{nr}")


def format_call(record_or_name: object, args: Sequence[int], ret: int | None,
                mm_reader: MemoryReader) -> str:
    """One strace line (without newline) for a finished call; ret None = did not return."""
    name = record_or_name if isinstance(record_or_name, str) else record_or_name.name
    spec = ARG_KINDS.get(name)
    r = None if ret is None else _s64(ret)
    if spec is None:
        kinds, ret_kind = (HEX,) * 6, RET_INT
    else:
        kinds, ret_kind = spec
    padded = list(args) + [0] * 6
    if name in OPTIONAL_MODE:
        flags_at, mode_at = OPTIONAL_MODE[name]
        if not padded[flags_at] & (O_CREAT | O_TMPFILE_BIT):
            kinds = kinds[:mode_at]
    parts = [format_arg(k, padded[i], padded[i + 1], r, mm_reader)
             for i, k in enumerate(kinds)]
    return f"{name}({', '.join(parts)}) = {format_return(ret, ret_kind)}"
