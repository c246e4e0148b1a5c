"""timerfd and signalfd syscalls: timerfd_create/settime/gettime, signalfd, signalfd4.

The files are kvmbox/sentry/timerfd.py and kvmbox/sentry/signalfd.py; reads,
poll, select and epoll reach them through the ordinary descriptor paths.
"""
from __future__ import annotations

import errno
TYPE_CHECKING = False  # typing is not imported at run time (start-up cost)

from kvmbox.abi import clocks as C
from kvmbox.abi import structs
from kvmbox.errors import SyscallError
from kvmbox.sentry.syscalls.args import s32
from kvmbox.sentry.syscalls.sys_open import install
from kvmbox.sentry.syscalls.sys_time import read_itimerspec, write_itimerspec
from kvmbox.sentry.syscalls.table import PARTIAL, SUPPORTED, Entry

if TYPE_CHECKING:  # pragma: no cover
    from kvmbox.sentry.task import Task
    from kvmbox.sentry.timerfd import TimerFd

Args = tuple[int, int, int, int, int, int]

TFD_CREATE_FLAGS = C.TFD_CLOEXEC | C.TFD_NONBLOCK
TFD_SETTIME_FLAGS = C.TFD_TIMER_ABSTIME | C.TFD_TIMER_CANCEL_ON_SET


def timerfd_create(t: "Task", a: Args) -> int:
    """Implements Linux syscall timerfd_create(2)."""
    from kvmbox.sentry.timerfd import CLOCKS, TimerFd
    clockid, flags = s32(a[0]), s32(a[1])
    if flags & ~TFD_CREATE_FLAGS or clockid not in CLOCKS:
        raise SyscallError(errno.EINVAL)
    return install(t, TimerFd(t.kernel, clockid, flags), bool(flags & C.TFD_CLOEXEC))


def _timerfd(t: "Task", fd: int) -> "TimerFd":
    from kvmbox.sentry.timerfd import TimerFd
    f = t.fds.get(fd)
    if not isinstance(f, TimerFd):
        raise SyscallError(errno.EINVAL)
    return f


def timerfd_settime(t: "Task", a: Args) -> int:
    """Implements Linux syscall timerfd_settime(2)."""
    fd, flags, new, old = s32(a[0]), s32(a[1]), a[2], a[3]
    value, interval = read_itimerspec(t, new)
    if flags & ~TFD_SETTIME_FLAGS:
        raise SyscallError(errno.EINVAL)
    before = _timerfd(t, fd).settime(flags, value, interval)
    if old:
        write_itimerspec(t, old, *before)
    return 0


def timerfd_gettime(t: "Task", a: Args) -> int:
    """Implements Linux syscall timerfd_gettime(2)."""
    fd, curr = s32(a[0]), a[1]
    write_itimerspec(t, curr, *_timerfd(t, fd).gettime())
    return 0


def _signalfd(t: "Task", ufd: int, umask: int, sizemask: int, flags: int) -> int:
    from kvmbox.sentry.signalfd import SignalFd
    if flags & ~(C.SFD_CLOEXEC | C.SFD_NONBLOCK):
        raise SyscallError(errno.EINVAL)
    if sizemask != structs.SIGSET.size:
        raise SyscallError(errno.EINVAL)
    (mask,) = structs.SIGSET.unpack(t.mm.copy_in(umask, structs.SIGSET.size))
    if ufd == -1:
        return install(t, SignalFd(t, mask, flags), bool(flags & C.SFD_CLOEXEC))
    f = t.fds.get(ufd)
    if not isinstance(f, SignalFd):
        raise SyscallError(errno.EINVAL)
    f.set_mask(mask)                             # an existing signalfd: only its mask changes
    return ufd


def signalfd(t: "Task", a: Args) -> int:
    """Implements Linux syscall signalfd(2)."""
    return _signalfd(t, s32(a[0]), a[1], a[2], 0)


def signalfd4(t: "Task", a: Args) -> int:
    """Implements Linux syscall signalfd4(2)."""
    return _signalfd(t, s32(a[0]), a[1], a[2], s32(a[3]))


ENTRIES = (
    Entry("timerfd_create", timerfd_create, SUPPORTED,
          "the _ALARM clocks count as REALTIME/BOOTTIME (a sandbox never suspends)"),
    Entry("timerfd_settime", timerfd_settime, PARTIAL,
          "TFD_TIMER_CANCEL_ON_SET never cancels: the sandbox's clock cannot be set"),
    Entry("timerfd_gettime", timerfd_gettime, SUPPORTED),
    Entry("signalfd", signalfd, PARTIAL, "reads the signals of the task that made it"),
    Entry("signalfd4", signalfd4, PARTIAL, "reads the signals of the task that made it"),
)
