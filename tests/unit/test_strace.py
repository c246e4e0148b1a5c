"""strace-style formatting of one syscall."""
from __future__ import annotations

import errno

from kvmbox.errors import SyscallError
from kvmbox.sentry.strace import format_call, quote
from kvmbox.sentry.syscalls.table import SUPPORTED, SyscallRecord

BASE = 0x10000


class Mem:
    """Guest memory [BASE, BASE+len(data)); anything else faults."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def copy_in(self, addr: int, n: int) -> bytes:
        if addr < BASE or addr + n > BASE + len(self.data):
            raise SyscallError(errno.EFAULT)
        return self.data[addr - BASE:addr - BASE + n]

    def read_cstring(self, addr: int, maxlen: int) -> bytes:
        if not BASE <= addr < BASE + len(self.data):
            raise SyscallError(errno.EFAULT)
        chunk = self.data[addr - BASE:addr - BASE + maxlen]
        end = chunk.find(b"\0")
        if end < 0:
            if len(chunk) < maxlen:
                raise SyscallError(errno.EFAULT)
            raise SyscallError(errno.ENAMETOOLONG)
        return chunk[:end]


NEG = lambda x: x & 0xFFFF_FFFF_FFFF_FFFF  # noqa: E731  (a raw register value)


def test_write_prints_the_buffer():
    assert format_call("write", (1, BASE, 3), 3, Mem(b"hi\n")) == 'write(1, "hi\\n", 3) = 3'


def test_record_accepted_instead_of_name():
    rec = SyscallRecord(1, "write", None, SUPPORTED, "", 0)
    assert format_call(rec, (1, BASE, 2), 2, Mem(b"ok")) == 'write(1, "ok", 2) = 2'


def test_openat_enoent():
    line = format_call("openat", (NEG(-100), BASE, 0, 0), NEG(-errno.ENOENT), Mem(b"/x\0"))
    assert line == 'openat(AT_FDCWD, "/x", O_RDONLY) = -1 ENOENT (No such file or directory)'


def test_openat_mode_shown_only_with_o_creat():
    line = format_call("openat", (3, BASE, 0o2000000 | 0o100 | 0o1 | 0o1000, 0o644), 4,
                       Mem(b"f\0"))
    assert line == 'openat(3, "f", O_WRONLY|O_CREAT|O_TRUNC|O_CLOEXEC, 0644) = 4'


def test_mmap():
    line = format_call("mmap", (0, 8192, 3, 0x22, NEG(-1), 0), 0x7F12_3456_7000, Mem(b""))
    assert line == ("mmap(NULL, 8192, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)"
                    " = 0x7f1234567000")


def test_mmap_failure_and_prot_none():
    line = format_call("mmap", (0x1000, 4096, 0, 0x12, 3, 0x2000), NEG(-errno.ENOMEM), Mem(b""))
    assert line == ("mmap(0x1000, 4096, PROT_NONE, MAP_PRIVATE|MAP_FIXED, 3, 0x2000)"
                    " = -1 ENOMEM (Cannot allocate memory)")


def test_exit_group_never_returns():
    assert format_call("exit_group", (0,), None, Mem(b"")) == "exit_group(0) = ?"
    assert format_call("exit_group", (3,), 0, Mem(b"")) == "exit_group(3) = ?"


def test_read_shows_data_after_the_call_and_pointer_on_error():
    m = Mem(b"abcdef")
    assert format_call("read", (0, BASE, 100), 4, m) == 'read(0, "abcd", 100) = 4'
    assert format_call("read", (0, BASE, 100), NEG(-errno.EBADF), m) == \
        "read(0, 0x10000, 100) = -1 EBADF (Bad file descriptor)"


def test_long_buffers_and_strings_are_cut_at_32():
    data = bytes(range(ord("a"), ord("a") + 26)) * 2
    line = format_call("write", (1, BASE, 52), 52, Mem(data))
    assert line == f'write(1, "{data[:32].decode()}"..., 52) = 52'
    line = format_call("openat", (3, BASE, 0, 0), 3, Mem(data))
    assert line == f'openat(3, "{data[:32].decode()}"..., O_RDONLY) = 3'
    assert format_call("openat", (3, BASE, 0, 0), 3, Mem(data[:32] + b"\0")) == \
        f'openat(3, "{data[:32].decode()}", O_RDONLY) = 3'


def test_unreadable_pointer_prints_in_hex():
    line = format_call("write", (1, 0xDEAD0000, 3), NEG(-errno.EFAULT), Mem(b""))
    assert line == "write(1, 0xdead0000, 3) = -1 EFAULT (Bad address)"
    line = format_call("openat", (3, 0xDEAD0000, 0, 0), NEG(-errno.EFAULT), Mem(b""))
    assert line == "openat(3, 0xdead0000, O_RDONLY) = -1 EFAULT (Bad address)"


def test_quoting_matches_strace():
    assert quote(b"\x7fELF\x02\x01\x01\x00", False) == '"\\177ELF\\2\\1\\1\\0"'
    assert quote(b"\x001", False) == '"\\0001"'        # octal widened before a digit
    assert quote(b'a"b\\\t', True) == '"a\\"b\\\\\\t"...'


def test_clock_signal_and_unknown():
    assert format_call("clock_gettime", (1, 0x5000), 0, Mem(b"")) == \
        "clock_gettime(CLOCK_MONOTONIC, 0x5000) = 0"
    assert format_call("rt_sigaction", (2, 0, 0x5000, 8), 0, Mem(b"")) == \
        "rt_sigaction(SIGINT, NULL, 0x5000, 8) = 0"
    assert format_call("kexec_load", (1, 0, 0x20), NEG(-errno.ENOSYS), Mem(b"")) == \
        "kexec_load(0x1, 0, 0x20, 0, 0, 0) = -1 ENOSYS (Function not implemented)"
    assert format_call("futex", (0x5000, 128 | 0, 1, 0, 0, 0), NEG(-errno.EAGAIN), Mem(b"")) == \
        "futex(0x5000, FUTEX_WAIT_PRIVATE, 1, NULL, NULL, 0) = -1 EAGAIN " \
        "(Resource temporarily unavailable)"


def test_every_syscall_number_is_traced_by_name():
    """--strace names each call as Linux does: implemented or not (vfork was `syscall_58`)."""
    from kvmbox.abi.syscall_numbers import NAME_BY_NR, SYSCALLS
    from kvmbox.sentry.kernel import Kernel
    from kvmbox.sentry.syscalls.table import default_table

    table = default_table()

    class Tracer:
        def __init__(self) -> None:
            self.lines: list[str] = []
            self.trace = self.lines.append

    class Task:
        mm = Mem(b"")

    for nr, name in SYSCALLS:
        rec = table[nr] if nr < len(table) else None
        assert rec is None or rec.name == name, (nr, rec.name, name)
        tracer = Tracer()
        Kernel._trace_call(tracer, Task(), rec, (nr, 0, 0, 0, 0, 0, 0), NEG(-errno.ENOSYS))
        assert tracer.lines[0].startswith(f"{name}("), (nr, tracer.lines)
    for nr in (335, 423, 1000, 4096):                 # no such call on x86-64
        assert nr not in NAME_BY_NR
        tracer = Tracer()
        Kernel._trace_call(tracer, Task(), None, (nr, 0, 0, 0, 0, 0, 0), NEG(-errno.ENOSYS))
        assert tracer.lines[0].startswith(f"syscall_{nr}("), tracer.lines
