"""signalfd: a task's pending signals read as struct signalfd_siginfo, as Linux's fs/signalfd.c.

A read takes pending signals in the file's mask (blocked or not) the way
delivery would (deliver.dequeue: faults first, then the lowest number; a
timer's overrun made then), as many as fit, at least one: with none pending
it raises EAGAIN and, for a blocking descriptor, the syscall layer waits on
the task's signal_waiters (woken by every signal queued) and retries; an
unblocked signal outside the mask ends the wait (ERESTARTSYS).  poll reports
EPOLLIN while one of the mask's signals is pending.

Linux reads the signals of whichever task reads the file; a sandbox process
has one task today, so the file keeps the task that made it.
"""
from __future__ import annotations

import errno
import struct

from kvmbox.abi import clocks as C
from kvmbox.abi import signals as S
from kvmbox.abi.fcntl import O_RDWR
from kvmbox.abi.poll import POLLIN
from kvmbox.errors import SyscallError
from kvmbox.sentry.files import FileDescription
from kvmbox.sentry.signals import deliver
from kvmbox.sentry.signals.frame import SI_KERNEL, SI_USER, SIGINFO_HEAD
from kvmbox.sentry.waiter import WaitQueue

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from kvmbox.sentry.task import Task

SI_SIGIO = -5
SIGPOLL = S.SIGIO
# siginfo layouts (kernel/signal.c siginfo_layout), and the signals whose positive si_codes
# up to a limit have their own layout.
KILL, TIMER, POLL, FAULT, MCEERR, CHLD, RT, SYS = range(8)
_SPECIFIC = {S.SIGILL: (11, FAULT), S.SIGFPE: (15, FAULT), S.SIGSEGV: (10, FAULT),
             S.SIGBUS: (5, FAULT), S.SIGTRAP: (6, FAULT), S.SIGCHLD: (6, CHLD),
             SIGPOLL: (6, POLL), S.SIGSYS: (2, SYS)}
NSIGPOLL = 6
BUS_MCEERR_AR, BUS_MCEERR_AO = 4, 5
_I32, _U32, _I64, _U64, _I16 = (struct.Struct(f) for f in ("<i", "<I", "<q", "<Q", "<h"))


def layout(signo: int, code: int) -> int:
    """Which union member of siginfo_t holds signo's details for si_code `code`."""
    if SI_USER < code < SI_KERNEL:
        spec = _SPECIFIC.get(signo)
        if spec is not None and code <= spec[0]:
            if signo == S.SIGBUS and BUS_MCEERR_AR <= code <= BUS_MCEERR_AO:
                return MCEERR
            return spec[1]
        return POLL if code <= NSIGPOLL else KILL
    if code == C.SI_TIMER:
        return TIMER
    if code == SI_SIGIO:
        return POLL
    return RT if code < 0 else KILL


def signalfd_siginfo(info: bytes) -> bytes:
    """The 128-byte struct signalfd_siginfo for a 128-byte siginfo_t (signalfd_copyinfo)."""
    signo, err, code = SIGINFO_HEAD.unpack_from(info)
    f = dict.fromkeys(("pid", "uid", "fd", "tid", "band", "overrun", "status", "int", "ptr",
                       "utime", "stime", "addr", "lsb", "syscall", "call_addr", "arch"), 0)
    kind = layout(signo, code)
    if kind in (KILL, RT, CHLD):
        f["pid"], f["uid"] = _I32.unpack_from(info, 16)[0], _U32.unpack_from(info, 20)[0]
    if kind in (RT, TIMER):
        f["ptr"] = _U64.unpack_from(info, 24)[0]
        f["int"] = _I32.unpack_from(info, 24)[0]
    if kind == TIMER:
        f["tid"], f["overrun"] = _I32.unpack_from(info, 16)[0], _I32.unpack_from(info, 20)[0]
    elif kind == POLL:
        f["band"], f["fd"] = _I64.unpack_from(info, 16)[0], _I32.unpack_from(info, 24)[0]
    elif kind in (FAULT, MCEERR):
        f["addr"] = _U64.unpack_from(info, 16)[0]
        if kind == MCEERR:
            f["lsb"] = _I16.unpack_from(info, 24)[0]
    elif kind == CHLD:
        f["status"] = _I32.unpack_from(info, 24)[0]
        f["utime"], f["stime"] = _I64.unpack_from(info, 32)[0], _I64.unpack_from(info, 40)[0]
    elif kind == SYS:
        f["call_addr"] = _U64.unpack_from(info, 16)[0]
        f["syscall"], f["arch"] = _I32.unpack_from(info, 24)[0], _U32.unpack_from(info, 28)[0]
    u32 = 0xFFFF_FFFF
    u64 = (1 << 64) - 1
    return C.SIGNALFD_SIGINFO.pack(
        signo & u32, err, code, f["pid"] & u32, f["uid"] & u32, f["fd"], f["tid"] & u32,
        f["band"] & u32, f["overrun"] & u32, 0, f["status"], f["int"], f["ptr"] & u64,
        f["utime"] & u64, f["stime"] & u64, f["addr"] & u64, f["lsb"] & 0xFFFF, 0,
        f["syscall"], f["call_addr"] & u64, f["arch"] & u32)


class SignalFd(FileDescription):
    """One signalfd: the signals of `mask` (never SIGKILL or SIGSTOP) pending for `task`."""

    readable = True
    mode = 0o600                     # an anonymous inode: permission bits only
    link_name = "anon_inode:[signalfd]"

    def __init__(self, task: "Task", mask: int, flags: int) -> None:
        self.task = task
        self.mask = mask & ~S.UNBLOCKABLE_MASK
        self.flags = O_RDWR | (flags & C.SFD_NONBLOCK)
        if task.signal_waiters is None:
            task.signal_waiters = WaitQueue()

    def set_mask(self, mask: int) -> None:
        """signalfd4 on this descriptor: a new mask; waiters re-check."""
        self.mask = mask & ~S.UNBLOCKABLE_MASK
        self.task.signal_waiters.notify()

    def read(self, n: int) -> bytes:
        count = n // C.SIGNALFD_SIGINFO_SIZE
        if not count:
            raise SyscallError(errno.EINVAL)
        t = self.task
        out = []
        while len(out) < count:
            item = deliver.dequeue(t, self.mask)
            if item is None:
                break
            out.append(signalfd_siginfo(deliver.siginfo_for(t, *item)))
        if not out:
            raise SyscallError(errno.EAGAIN)
        return b"".join(out)

    def write(self, data: bytes) -> int:
        raise SyscallError(errno.EINVAL)          # no write method: vfs_write's EINVAL

    def seek(self, offset: int, whence: int) -> int:
        return 0                                  # noop_llseek

    def poll(self, events: int) -> int:
        return POLLIN if deliver.pending_mask(self.task) & self.mask else 0

    def watch(self, ev) -> None:
        self.task.signal_waiters.watch(ev)

    def unwatch(self, ev) -> None:
        self.task.signal_waiters.unwatch(ev)

    def fdinfo(self) -> str:
        return f"sigmask:\t{self.mask:016x}\n"
