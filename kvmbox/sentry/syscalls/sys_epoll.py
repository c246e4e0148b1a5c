"""Handlers for epoll: epoll_create, epoll_create1, epoll_ctl, epoll_wait, epoll_pwait, epoll_pwait2.

The instance and its lists live in kvmbox/sentry/epoll.py.  Waiting reuses
poll(2)'s machinery (sys_poll.wait_ready: the Epoll's watchers wake it, host
streams' fds are polled with the task's Waker), with Linux's ep_poll order: events first, a zero
timeout returns at once, then a pending unblocked signal ends the wait with
EINTR (epoll waits are never restarted, whatever SA_RESTART says).
epoll_pwait/epoll_pwait2 install their signal mask for the wait as ppoll does.
"""
from __future__ import annotations

import errno

from kvmbox.abi.poll import POLLIN
from kvmbox.errors import SyscallError
from kvmbox.sentry.signals.deliver import ERESTARTNOHAND
from kvmbox.sentry.syscalls.args import s32
from kvmbox.sentry.syscalls.sys_open import install
from kvmbox.sentry.syscalls.sys_poll import (SIGSET_SIZE, _deadline, _read_mask, _read_timespec,
                                             _with_sigmask, wait_ready)
from kvmbox.sentry.syscalls.table import PARTIAL, SUPPORTED, Entry
from kvmbox.sentry.vfs.opath import is_path_only

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from kvmbox.sentry.files import FileDescription
    from kvmbox.sentry.task import Task

Args = tuple[int, int, int, int, int, int]

EPOLL_CLOEXEC = 0o2000000
EVENT_SIZE = 12                       # sizeof(struct epoll_event), packed
EP_MAX_EVENTS = 0x7FFF_FFFF // EVENT_SIZE
TASK_SIZE = 0x7FFF_FFFF_F000          # access_ok's limit for the events array


def _get(t: "Task", fd: int) -> "FileDescription":
    """fdget: EBADF for a closed number or an O_PATH descriptor."""
    f = t.fds.get(fd)
    if is_path_only(f):
        raise SyscallError(errno.EBADF)
    return f


def _create(t: "Task", flags: int) -> int:
    from kvmbox.sentry.epoll import Epoll
    return install(t, Epoll(), bool(flags & EPOLL_CLOEXEC))


def epoll_create(t: "Task", a: Args) -> int:
    """Implements Linux syscall epoll_create(2)."""
    if s32(a[0]) <= 0:
        raise SyscallError(errno.EINVAL)
    return _create(t, 0)


def epoll_create1(t: "Task", a: Args) -> int:
    """Implements Linux syscall epoll_create1(2)."""
    flags = s32(a[0])
    if flags & ~EPOLL_CLOEXEC:
        raise SyscallError(errno.EINVAL)
    return _create(t, flags)


def epoll_ctl(t: "Task", a: Args) -> int:
    """Implements Linux syscall epoll_ctl(2)."""
    from kvmbox.sentry.epoll import (EPOLL_CTL_ADD, EPOLL_CTL_DEL, EPOLL_CTL_MOD, EPOLLEXCLUSIVE, EVENT,
                                     EXCLUSIVE_OK_BITS, Epoll, can_poll)
    epfd, op, fd, evp = s32(a[0]), s32(a[1]), s32(a[2]), a[3]
    events = data = 0
    has_event = op != EPOLL_CTL_DEL
    if has_event:                                   # copied before the descriptors are looked at
        events, data = EVENT.unpack(t.mm.copy_in(evp, EVENT.size))
    ep = _get(t, epfd)
    f = _get(t, fd)
    if not can_poll(f):
        raise SyscallError(errno.EPERM)
    if f is ep or not isinstance(ep, Epoll):
        raise SyscallError(errno.EINVAL)
    if has_event and events & EPOLLEXCLUSIVE:
        if op == EPOLL_CTL_MOD:
            raise SyscallError(errno.EINVAL)
        if op == EPOLL_CTL_ADD and (isinstance(f, Epoll) or events & ~EXCLUSIVE_OK_BITS):
            raise SyscallError(errno.EINVAL)
    ep.ctl(op, f, fd, events, data)
    return 0


def _wait(t: "Task", epfd: int, evp: int, maxevents: int, timeout_ns: int | None) -> int:
    """The wait shared by the three calls (timeout_ns None waits forever); a pending unblocked
    signal ends it with ERESTARTNOHAND, which the callers turn into EINTR."""
    from kvmbox.sentry.epoll import EVENT, Epoll
    if maxevents <= 0 or maxevents > EP_MAX_EVENTS:
        raise SyscallError(errno.EINVAL)
    if evp + maxevents * EVENT_SIZE > TASK_SIZE:
        raise SyscallError(errno.EFAULT)
    ep = _get(t, epfd)
    if not isinstance(ep, Epoll):
        raise SyscallError(errno.EINVAL)
    mm = t.mm

    def put(i: int, revents: int, data: int) -> bool:
        try:
            mm.copy_out(evp + i * EVENT_SIZE, EVENT.pack(revents, data))
        except SyscallError:
            return False
        return True

    got = [0]

    def check() -> bool:
        got[0] = ep.harvest(maxevents, put)
        return got[0] != 0

    if timeout_ns == 0:
        check()
    else:
        wait_ready(t, [(ep, POLLIN), *ep.host_streams()], check, _deadline(timeout_ns))
    if got[0] < 0:
        raise SyscallError(-got[0])
    return got[0]


def _interrupted(call) -> int:
    """Run call(); an interrupted epoll wait fails with EINTR and is never restarted."""
    try:
        return call()
    except SyscallError as e:
        if e.errno == ERESTARTNOHAND:
            raise SyscallError(errno.EINTR) from None
        raise


def _ms(timeout: int) -> int | None:
    return None if timeout < 0 else timeout * 1_000_000


def _pwait(t: "Task", epfd: int, evp: int, maxevents: int, timeout_ns: int | None, sigmask: int,
           sigsetsize: int) -> int:
    mask = None
    if sigmask:
        if sigsetsize != SIGSET_SIZE:
            raise SyscallError(errno.EINVAL)
        mask = _read_mask(t, sigmask)
    # _with_sigmask keeps the wait's mask for signal delivery when the wait is interrupted
    # (Linux: restore_saved_sigmask_unless(-EINTR)).
    return _interrupted(lambda: _with_sigmask(
        t, mask, lambda: _wait(t, epfd, evp, maxevents, timeout_ns)))


def epoll_wait(t: "Task", a: Args) -> int:
    """Implements Linux syscall epoll_wait(2)."""
    return _interrupted(lambda: _wait(t, s32(a[0]), a[1], s32(a[2]), _ms(s32(a[3]))))


def epoll_pwait(t: "Task", a: Args) -> int:
    """Implements Linux syscall epoll_pwait(2)."""
    return _pwait(t, s32(a[0]), a[1], s32(a[2]), _ms(s32(a[3])), a[4], a[5])


def epoll_pwait2(t: "Task", a: Args) -> int:
    """Implements Linux syscall epoll_pwait2(2)."""
    timeout_ns = _read_timespec(t, a[3])
    return _pwait(t, s32(a[0]), a[1], s32(a[2]), timeout_ns, a[4], a[5])


ENTRIES = (
    Entry("epoll_create", epoll_create, SUPPORTED),
    Entry("epoll_create1", epoll_create1, SUPPORTED),
    Entry("epoll_ctl", epoll_ctl, PARTIAL,
          "pipes, eventfds, epolls, host streams, pollable proc/dev files; edge-triggered exact for "
          "pipes and eventfds, for host streams a bit not set at the previous scan; closed files "
          "leave the interest list at its next use; no EPOLLEXCLUSIVE wake-one or wake-up path limits"),
    Entry("epoll_wait", epoll_wait, PARTIAL, "as poll"),
    Entry("epoll_pwait", epoll_pwait, PARTIAL, "as epoll_wait, with the signal mask applied during the wait"),
    Entry("epoll_pwait2", epoll_pwait2, PARTIAL, "as epoll_pwait, with a timespec timeout"),
)
