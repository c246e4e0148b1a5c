"""Clock and sleep syscalls: clock_gettime, gettimeofday, nanosleep and friends; times and
getrusage.

The CPU-time clocks (CLOCK_PROCESS_CPUTIME_ID, CLOCK_THREAD_CPUTIME_ID and the
per-pid encodings of the caller's own pid and tid), times(2) and getrusage
report the guest's own CPU time as kvmbox/sentry/cputime.py accounts it, never
the Sentry process's.
"""
from __future__ import annotations

import errno
import time as _time
TYPE_CHECKING = False  # typing is not imported at run time (start-up cost)

from kvmbox.abi import clocks as C
from kvmbox.abi import structs
from kvmbox.errors import SyscallError
from kvmbox.sentry import cputime
from kvmbox.sentry.syscalls.args import s32, u32
from kvmbox.sentry.signals.deliver import ERESTART_RESTARTBLOCK, ERESTARTNOHAND
from kvmbox.sentry.syscalls.table import ERROR, PARTIAL, SUPPORTED, Entry
from kvmbox.sentry.waiter import block

if TYPE_CHECKING:  # pragma: no cover
    from kvmbox.sentry.task import Task

Args = tuple[int, int, int, int, int, int]

NSEC_PER_SEC = 1_000_000_000
CLOCK_REALTIME, CLOCK_MONOTONIC, CLOCK_PROCESS_CPUTIME_ID, CLOCK_THREAD_CPUTIME_ID = 0, 1, 2, 3
CLOCK_MONOTONIC_RAW, CLOCK_REALTIME_COARSE, CLOCK_MONOTONIC_COARSE, CLOCK_BOOTTIME = 4, 5, 6, 7
CLOCK_TAI = 11
TIMER_ABSTIME = 1
CLOCKS_PER_TICK_NS = 10_000_000          # USER_HZ = 100

# Guest clock ids readable with clock_gettime; on a Linux host each is the same host id.
# CPU-time clocks read the Sentry's own host CPU time (the guest runs in a Sentry thread).
GETTIME_CLOCKS = frozenset({0, 1, 2, 3, 4, 5, 6, 7, CLOCK_TAI})
# Clocks clock_nanosleep can sleep on.  Linux has no nsleep for NO_SLEEP_CLOCKS (EOPNOTSUPP;
# the alarm clocks too when there is no RTC); PROCESS_CPUTIME_ID is left out (EINVAL).
SLEEP_CLOCKS = frozenset({CLOCK_REALTIME, CLOCK_MONOTONIC, CLOCK_BOOTTIME, CLOCK_TAI})
NO_SLEEP_CLOCKS = frozenset({3, 4, 5, 6, 8, 9})
COARSE_CLOCKS = frozenset({CLOCK_REALTIME_COARSE, CLOCK_MONOTONIC_COARSE})


def read_timespec(t: "Task", addr: int) -> int:
    """The struct timespec at addr, validated (EFAULT, EINVAL), as nanoseconds."""
    sec, nsec = structs.TIMESPEC.unpack(t.mm.copy_in(addr, structs.TIMESPEC.size))
    if sec < 0 or not 0 <= nsec < NSEC_PER_SEC:
        raise SyscallError(errno.EINVAL)
    return sec * NSEC_PER_SEC + nsec


def write_timespec(t: "Task", addr: int, ns: int) -> None:
    t.mm.copy_out(addr, structs.TIMESPEC.pack(*divmod(ns, NSEC_PER_SEC)))


def _timespec64_ns(sec: int, nsec: int) -> int:
    """timespec64_to_ktime of a valid timespec (EINVAL otherwise), saturating at KTIME_MAX."""
    if sec < 0 or not 0 <= nsec < NSEC_PER_SEC:
        raise SyscallError(errno.EINVAL)
    return min(sec * NSEC_PER_SEC + nsec, C.KTIME_MAX)


def read_itimerspec(t: "Task", addr: int) -> tuple[int, int]:
    """(value, interval) ns of the struct itimerspec at addr (EFAULT, EINVAL)."""
    isec, insec, vsec, vnsec = C.ITIMERSPEC.unpack(t.mm.copy_in(addr, C.ITIMERSPEC.size))
    return _timespec64_ns(vsec, vnsec), _timespec64_ns(isec, insec)


def write_itimerspec(t: "Task", addr: int, value: int, interval: int) -> None:
    t.mm.copy_out(addr, C.ITIMERSPEC.pack(*divmod(interval, NSEC_PER_SEC), *divmod(value, NSEC_PER_SEC)))


def now_ns(clock: int) -> int:
    """The guest clock `clock` (already validated) read from the host."""
    return _time.clock_gettime_ns(clock)


def guest_now_ns(t: "Task", clock: int) -> int:
    """The guest clock `clock` (validated) as the guest's vDSO sees it (the kernel's timekeeper)."""
    return t.kernel.clock_ns(clock)


def sleep_ns(t: "Task", duration_ns: int, rem: int = 0) -> None:
    """Block this task for at least duration_ns (waiter.block: a kill or timeout ends it).
    A signal the task does not block ends it early: the time left goes to the timespec at
    `rem` (if any) and the call fails with ERESTART_RESTARTBLOCK (EINTR after a handler)."""
    deadline = _time.monotonic_ns() + duration_ns
    try:
        block(t, _never, deadline=deadline / NSEC_PER_SEC, interrupt=ERESTART_RESTARTBLOCK)
    except SyscallError:
        if rem:
            left = max(0, deadline - _time.monotonic_ns())
            write_timespec(t, rem, left)
        raise


def _never() -> bool:
    return False


def clock_gettime(t: "Task", a: Args) -> int:
    """Implements Linux syscall clock_gettime(2)."""
    clock, tp = s32(a[0]), a[1]
    cpu = cputime.decode(t, clock)
    if cpu is not None:
        write_timespec(t, tp, cputime.read(t, *cpu))
        return 0
    if clock not in GETTIME_CLOCKS:
        raise SyscallError(errno.EINVAL)
    write_timespec(t, tp, guest_now_ns(t, clock))
    return 0


def clock_getres(t: "Task", a: Args) -> int:
    """Implements Linux syscall clock_getres(2)."""
    clock, res = s32(a[0]), a[1]
    cpu = cputime.decode(t, clock)
    if cpu is None and clock not in GETTIME_CLOCKS:
        raise SyscallError(errno.EINVAL)
    if res:
        if cpu is not None:
            ns = cputime.resolution_ns(cpu[0])
        else:
            ns = round(_time.clock_getres(clock) * NSEC_PER_SEC) if clock in COARSE_CLOCKS else 1
        write_timespec(t, res, ns)
    return 0


def gettimeofday(t: "Task", a: Args) -> int:
    """Implements Linux syscall gettimeofday(2)."""
    tv, tz = a[0], a[1]
    if tv:
        sec, nsec = divmod(guest_now_ns(t, CLOCK_REALTIME), NSEC_PER_SEC)
        t.mm.copy_out(tv, structs.TIMEVAL.pack(sec, nsec // 1000))
    if tz:
        t.mm.copy_out(tz, structs.TIMEZONE.pack(0, 0))
    return 0


def time_(t: "Task", a: Args) -> int:
    """Implements Linux syscall time(2)."""
    tloc = a[0]
    now = guest_now_ns(t, CLOCK_REALTIME) // NSEC_PER_SEC
    if tloc:
        t.mm.copy_out(tloc, structs.S64.pack(now))
    return now


def nanosleep(t: "Task", a: Args) -> int:
    """Implements Linux syscall nanosleep(2)."""
    req, rem = a[0], a[1]
    sleep_ns(t, read_timespec(t, req), rem)
    return 0


def clock_nanosleep(t: "Task", a: Args) -> int:
    """Implements Linux syscall clock_nanosleep(2)."""
    clock, flags, req, rem = s32(a[0]), u32(a[1]), a[2], a[3]
    if clock < 0 or clock == CLOCK_PROCESS_CPUTIME_ID:
        return _cpu_nanosleep(t, clock, flags, req, rem)
    if clock not in SLEEP_CLOCKS:
        raise SyscallError(errno.EOPNOTSUPP if clock in NO_SLEEP_CLOCKS else errno.EINVAL)
    ns = read_timespec(t, req)
    if not flags & TIMER_ABSTIME:
        sleep_ns(t, ns, rem)
        return 0
    # Absolute: wake only once the guest's clock (the vDSO's line) has reached the target.
    while (left := ns - guest_now_ns(t, clock)) > 0:
        sleep_ns(t, left)
    return 0


def _cpu_nanosleep(t: "Task", clock: int, flags: int, req: int, rem: int) -> int:
    """clock_nanosleep on the process's CPU clock: wait until it reaches the target (a
    timer of the run's TimerService wakes the task).  A thread's CPU clock: EINVAL."""
    from kvmbox.sentry.timers import Alarm, Clock
    ns = read_timespec(t, req)
    which, thread = cputime.decode(t, clock)
    if thread:
        raise SyscallError(errno.EINVAL)
    now = cputime.read(t, which, False)
    absolute = bool(flags & TIMER_ABSTIME)
    target = ns if absolute else now + ns
    if target <= now:
        return 0
    svc = t.kernel.timer_service()
    alarm = Alarm(Clock(lambda: cputime.read(t, which, False), cpu=True), target, t.waker.set)
    svc.arm(alarm)
    try:
        block(t, alarm.fired.is_set,
              interrupt=ERESTARTNOHAND if absolute else ERESTART_RESTARTBLOCK)
    except SyscallError:
        if rem and not absolute:
            write_timespec(t, rem, max(0, target - cputime.read(t, which, False)))
        raise
    finally:
        svc.disarm(alarm)
    return 0


def times(t: "Task", a: Args) -> int:
    """Implements Linux syscall times(2)."""
    buf = a[0]
    if buf:
        user, system = cputime.process_times(t)
        c = t.tg.children_times
        t.mm.copy_out(buf, structs.TMS.pack(user // CLOCKS_PER_TICK_NS, system // CLOCKS_PER_TICK_NS,
                                            c.user_ns // CLOCKS_PER_TICK_NS,
                                            c.sys_ns // CLOCKS_PER_TICK_NS))
    return _time.clock_gettime_ns(CLOCK_BOOTTIME) // CLOCKS_PER_TICK_NS


RUSAGE_SELF, RUSAGE_CHILDREN, RUSAGE_THREAD = 0, -1, 1


def getrusage(t: "Task", a: Args) -> int:
    """Implements Linux syscall getrusage(2)."""
    who, buf = s32(a[0]), a[1]
    if who not in (RUSAGE_SELF, RUSAGE_CHILDREN, RUSAGE_THREAD):
        raise SyscallError(errno.EINVAL)
    fields = [0] * 18
    if who == RUSAGE_CHILDREN:                       # the reaped children and their reaped ones
        c = t.tg.children_times
        times_ = (c.user_ns, c.sys_ns)
        maxrss = c.maxrss_kb
    else:
        from kvmbox.sentry.fsimpl.proctask import memory   # local: procfs is not on this path
        times_ = t.cpu.times() if who == RUSAGE_THREAD else cputime.process_times(t)
        maxrss = memory(t)["rss"]                    # ru_maxrss in KiB: the current RSS
    for i, ns in enumerate(times_):
        fields[2 * i], fields[2 * i + 1] = divmod(ns // 1000, 1_000_000)
    fields[4] = maxrss
    t.mm.copy_out(buf, structs.RUSAGE.pack(*fields))
    return 0


_CPU_NOTE = ("CPU-time clocks count the guest's CPU time (user: its code; system: the "
             "Sentry's work for it); other processes' CPU clocks EINVAL")
ENTRIES = (
    Entry("clock_gettime", clock_gettime, PARTIAL, _CPU_NOTE),
    Entry("clock_getres", clock_getres, SUPPORTED),
    Entry("clock_settime", None, ERROR, "the sandbox's clocks cannot be set", errno=errno.EPERM),
    Entry("gettimeofday", gettimeofday, SUPPORTED, "timezone is always UTC"),
    Entry("time", time_, SUPPORTED),
    Entry("nanosleep", nanosleep, SUPPORTED, "a signal ends it with EINTR and the time left"),
    Entry("clock_nanosleep", clock_nanosleep, SUPPORTED,
          "on the process CPU clock too (thread CPU clocks EINVAL, as Linux)"),
    Entry("times", times, PARTIAL, "the guest's CPU time (see clock_gettime), and its reaped children's"),
    Entry("getrusage", getrusage, PARTIAL,
          "CPU times the guest's, as times(2); ru_maxrss is the current resident size; fault, "
          "I/O and context-switch counts are 0; RUSAGE_CHILDREN sums the reaped children's"),
)
