"""Interval and POSIX timer syscalls: alarm, getitimer/setitimer, timer_create and friends.

The timers themselves are kvmbox/sentry/posixtimers.py (semantics) on the
run's TimerService (kvmbox/sentry/timers.py); this module validates and
converts the arguments in the order Linux does, so the same bad call fails
with the same errno.
"""
from __future__ import annotations

import errno
TYPE_CHECKING = False  # typing is not imported at run time (start-up cost)

from kvmbox.abi import clocks as C
from kvmbox.abi import signals as S
from kvmbox.errors import SyscallError
from kvmbox.sentry import cputime
from kvmbox.sentry.posixtimers import timers_of
from kvmbox.sentry.syscalls.args import s32, u32
from kvmbox.sentry.syscalls.sys_time import read_itimerspec, write_itimerspec
from kvmbox.sentry.syscalls.table import PARTIAL, SUPPORTED, Entry

if TYPE_CHECKING:  # pragma: no cover
    from kvmbox.sentry.task import Task

Args = tuple[int, int, int, int, int, int]

# Clocks timer_create accepts (hrtimer based); those with no timers give EOPNOTSUPP.
TIMER_CLOCKS = frozenset({C.CLOCK_REALTIME, C.CLOCK_MONOTONIC, C.CLOCK_BOOTTIME, C.CLOCK_TAI})
NO_TIMER_CLOCKS = frozenset({C.CLOCK_MONOTONIC_RAW, C.CLOCK_REALTIME_COARSE, C.CLOCK_MONOTONIC_COARSE})
ALARM_CLOCKS = frozenset({C.CLOCK_REALTIME_ALARM, C.CLOCK_BOOTTIME_ALARM})
KTIME_SEC_MAX = C.KTIME_MAX // C.NSEC_PER_SEC


def _timeval_ns(sec: int, usec: int) -> int:
    if sec < 0 or not 0 <= usec < 1_000_000:
        raise SyscallError(errno.EINVAL)
    if sec >= KTIME_SEC_MAX:
        return C.KTIME_MAX
    return sec * C.NSEC_PER_SEC + usec * C.NSEC_PER_USEC


def _read_itimerval(t: "Task", addr: int) -> tuple[int, int]:
    """(value, interval) ns of the struct itimerval at addr (EFAULT, EINVAL)."""
    isec, iusec, vsec, vusec = C.ITIMERVAL.unpack(t.mm.copy_in(addr, C.ITIMERVAL.size))
    return _timeval_ns(vsec, vusec), _timeval_ns(isec, iusec)


def _write_itimerval(t: "Task", addr: int, value: int, interval: int) -> None:
    isec, insec = divmod(interval, C.NSEC_PER_SEC)
    vsec, vnsec = divmod(value, C.NSEC_PER_SEC)
    t.mm.copy_out(addr, C.ITIMERVAL.pack(isec, insec // 1000, vsec, vnsec // 1000))


def _check_which(which: int) -> None:
    if which not in (C.ITIMER_REAL, C.ITIMER_VIRTUAL, C.ITIMER_PROF):
        raise SyscallError(errno.EINVAL)


def alarm(t: "Task", a: Args) -> int:
    """Implements Linux syscall alarm(2)."""
    seconds = u32(a[0])
    value, _ = timers_of(t).setitimer(C.ITIMER_REAL, seconds * C.NSEC_PER_SEC, 0)
    sec, nsec = divmod(value, C.NSEC_PER_SEC)
    if (not sec and nsec) or nsec >= C.NSEC_PER_SEC // 2:
        sec += 1                    # an alarm pending must not read as none; round up
    return sec


def getitimer(t: "Task", a: Args) -> int:
    """Implements Linux syscall getitimer(2)."""
    which, curr = s32(a[0]), a[1]
    _check_which(which)
    value, interval = timers_of(t).getitimer(which)
    _write_itimerval(t, curr, value, interval)
    return 0


def setitimer(t: "Task", a: Args) -> int:
    """Implements Linux syscall setitimer(2)."""
    which, new, old = s32(a[0]), a[1], a[2]
    value, interval = _read_itimerval(t, new) if new else (0, 0)   # NULL: disarm (a misfeature)
    _check_which(which)
    ovalue, ointerval = timers_of(t).setitimer(which, value, interval)
    if old:
        _write_itimerval(t, old, ovalue, ointerval)
    return 0


def timer_create(t: "Task", a: Args) -> int:
    """Implements Linux syscall timer_create(2)."""
    clock, sevp, created = s32(a[0]), a[1], a[2]
    event = C.SIGEVENT.unpack(t.mm.copy_in(sevp, C.SIGEVENT.size)) if sevp else None
    try:
        cpu = cputime.decode(t, clock)
        bad_pid = False
    except SyscallError:
        cpu, bad_pid = None, True   # a CPU clock of another pid: fails after the id is taken
    if cpu is None and not bad_pid:
        if clock in NO_TIMER_CLOCKS:
            raise SyscallError(errno.EOPNOTSUPP)
        if clock not in TIMER_CLOCKS and clock not in ALARM_CLOCKS:
            raise SyscallError(errno.EINVAL)
    pt = timers_of(t)
    tid = pt.new_id()               # used up even if the call fails from here on, as in Linux
    target = None
    if event is None:
        notify, signo, value = C.SIGEV_SIGNAL, S.SIGALRM, None
    else:
        value, signo, notify, thread = event
        target = _check_sigevent(t, notify, signo, thread)
    t.mm.copy_out(created, tid.to_bytes(4, "little"))
    if bad_pid:
        raise SyscallError(errno.EINVAL)
    if clock in ALARM_CLOCKS:
        raise SyscallError(errno.EOPNOTSUPP)        # no RTC in the sandbox to wake on
    pt.add(tid, clock, cpu, notify, signo, value, target)
    return 0


def _check_sigevent(t: "Task", notify: int, signo: int, thread: int) -> "Task | None":
    """good_sigevent(): the notification and the signal must make sense.  Returns
    SIGEV_THREAD_ID's thread (None: the signal goes to the process)."""
    target = None
    if notify == C.SIGEV_SIGNAL | C.SIGEV_THREAD_ID:
        target = t.kernel.pids.task(thread)
        if target is None or target.tg is not t.tg or target.done:
            raise SyscallError(errno.EINVAL)       # not a thread of this process
    elif notify == C.SIGEV_NONE:
        return None
    elif notify not in (C.SIGEV_SIGNAL, C.SIGEV_THREAD):
        raise SyscallError(errno.EINVAL)
    if not 1 <= signo <= S.NSIG:
        raise SyscallError(errno.EINVAL)
    return target


def _timer_id(raw: int) -> int:
    tid = s32(raw)
    if tid < 0:
        raise SyscallError(errno.EINVAL)
    return tid


def timer_settime(t: "Task", a: Args) -> int:
    """Implements Linux syscall timer_settime(2)."""
    raw, flags, new, old = a[0], s32(a[1]), a[2], a[3]
    if not new:
        raise SyscallError(errno.EINVAL)
    value, interval = read_itimerspec(t, new)
    pt = timers_of(t)
    with pt.lock:
        timer = pt.get(_timer_id(raw))
        before = timer.get() if old else None
        timer.set(bool(flags & C.TIMER_ABSTIME), value, interval)
    if before is not None:
        write_itimerspec(t, old, *before)
    return 0


def timer_gettime(t: "Task", a: Args) -> int:
    """Implements Linux syscall timer_gettime(2)."""
    raw, curr = a[0], a[1]
    pt = timers_of(t)
    with pt.lock:
        value, interval = pt.get(_timer_id(raw)).get()
    write_itimerspec(t, curr, value, interval)
    return 0


def timer_getoverrun(t: "Task", a: Args) -> int:
    """Implements Linux syscall timer_getoverrun(2)."""
    pt = timers_of(t)
    with pt.lock:
        return pt.get(_timer_id(a[0])).getoverrun()


def timer_delete(t: "Task", a: Args) -> int:
    """Implements Linux syscall timer_delete(2)."""
    timers_of(t).delete(_timer_id(a[0]))
    return 0


_POSIX_NOTE = ("REALTIME, MONOTONIC, BOOTTIME, TAI and CPU clocks; SIGEV_SIGNAL/THREAD/"
               "THREAD_ID/NONE; the alarm clocks give EOPNOTSUPP (no RTC)")
ENTRIES = (
    Entry("alarm", alarm, SUPPORTED),
    Entry("getitimer", getitimer, SUPPORTED, "VIRTUAL/PROF count the guest's CPU time (see times)"),
    Entry("setitimer", setitimer, SUPPORTED, "VIRTUAL/PROF count the guest's CPU time, sampled "
          "every 1 ms at best (Linux: every tick)"),
    Entry("timer_create", timer_create, PARTIAL, _POSIX_NOTE),
    Entry("timer_settime", timer_settime, SUPPORTED, "overruns as Linux: counted at delivery"),
    Entry("timer_gettime", timer_gettime, SUPPORTED),
    Entry("timer_getoverrun", timer_getoverrun, SUPPORTED),
    Entry("timer_delete", timer_delete, SUPPORTED),
)
