"""A process's timers: ITIMER_REAL/VIRTUAL/PROF, POSIX timers and the RLIMIT_CPU watch.

The semantics are Linux's (kernel/time/itimer.c, posix-timers.c,
posix-cpu-timers.c), on the run's TimerService (kvmbox/sentry/timers.py):

- ITIMER_REAL sends SIGALRM (SI_KERNEL) when it expires and stops; a periodic
  one starts again, forwarded past now, when a SIGALRM is dequeued
  (deliver.dequeue calls sigalrm_dequeued), so a blocked or slow handler sees
  one signal, not a storm.  getitimer reports 0 while its signal waits.
- ITIMER_VIRTUAL (user time) and ITIMER_PROF (user + system) count the
  process's CPU time (kvmbox/sentry/cputime.py); setitimer adds one tick to a
  new value; each expiry sends SIGVTALRM / SIGPROF and adds the interval once.
- POSIX timers (timer_create) on REALTIME, MONOTONIC, BOOTTIME, TAI and the CPU
  clocks, with SIGEV_SIGNAL, SIGEV_THREAD (as SIGEV_SIGNAL, the C library
  makes the thread), SIGEV_THREAD_ID and SIGEV_NONE.  Each has one
  preallocated signal (a LateSiginfo): while it is pending, expiries are not
  queued again; when it is dequeued a periodic timer is forwarded past now,
  the intervals it skipped become si_overrun (and timer_getoverrun, capped at
  DELAYTIMER_MAX), and the timer runs on.  A signal queued before the timer
  was re-set or deleted is dropped unseen.  A periodic timer whose signal is
  ignored waits, not re-armed, until the signal is no longer ignored
  (unignore, from rt_sigaction), as Linux's ignored-timers list.  Ids count up
  from 0 per process; execve deletes every POSIX timer and keeps the itimers.
- RLIMIT_CPU: past the soft limit SIGXCPU, then one more each further second
  (the soft limit is raised by one, as Linux does); at the hard limit SIGKILL.

All state is guarded by ProcessTimers.lock, taken by syscalls (task thread),
expiries (service thread) and signal dequeue (task thread, outside sig_lock).
"""
from __future__ import annotations

import errno
import struct
import threading

from kvmbox.abi import clocks as C
from kvmbox.abi import signals as S
from kvmbox.errors import SyscallError
from kvmbox.sentry import cputime
from kvmbox.sentry.signals import deliver, group
from kvmbox.sentry.signals.frame import SI_KERNEL, SIGINFO_HEAD, SIGINFO_SIZE
from kvmbox.sentry.timers import Clock, Timer, forward, guest_clock, hrtimer_clock

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from kvmbox.sentry.task import Task
    from kvmbox.sentry.timers import TimerService

RLIM_INFINITY = (1 << 64) - 1
RLIMIT_CPU, RLIMIT_SIGPENDING = 0, 11
INT_MAX = (1 << 31) - 1
DISARMED, ARMED, REQUEUE_PENDING = "disarmed", "armed", "requeue pending"
_TIMER_INFO = struct.Struct("<iiQ")          # si_tid, si_overrun, si_value (siginfo offset 16)


def timers_of(t: "Task") -> "ProcessTimers":
    """t's process timers, made at first use."""
    if t.timers is None:
        t.timers = ProcessTimers(t)
    return t.timers


class ProcessTimers:
    """The timers of one process (today: of its one task)."""

    def __init__(self, t: "Task") -> None:
        self.task = t
        self.lock = threading.Lock()
        self.real = RealTimer(self)
        self.cpu_itimers = {C.ITIMER_VIRTUAL: CpuITimer(self, C.CPUCLOCK_VIRT, S.SIGVTALRM),
                            C.ITIMER_PROF: CpuITimer(self, C.CPUCLOCK_PROF, S.SIGPROF)}
        self.posix: dict[int, PosixTimer] = {}
        self.ignored: set[PosixTimer] = set()   # periodic timers whose signal was ignored
        self._next_id = 0
        self.rlimit = RlimitCpu(self)

    def service(self) -> "TimerService":
        return self.task.kernel.timer_service()

    def cpu_clock(self, which: int, thread: bool = False) -> Clock:
        t = self.task
        return Clock(lambda: cputime.read(t, which, thread), cpu=True)

    # --- setitimer / getitimer / alarm ------------------------------------------------
    def getitimer(self, which: int) -> tuple[int, int]:
        """(value, interval) ns of ITIMER_`which` (validated by the caller)."""
        with self.lock:
            return self.real.get() if which == C.ITIMER_REAL else self.cpu_itimers[which].get()

    def setitimer(self, which: int, value: int, interval: int) -> tuple[int, int]:
        """Set ITIMER_`which` (value 0 disarms); the old (value, interval)."""
        with self.lock:
            if which == C.ITIMER_REAL:
                return self.real.set(value, interval)
            return self.cpu_itimers[which].set(value, interval)

    def sigalrm_dequeued(self) -> None:
        """A SIGALRM was taken: a periodic ITIMER_REAL that fired starts again."""
        with self.lock:
            self.real.rearm()

    # --- POSIX timers ------------------------------------------------------------------
    def new_id(self) -> int:
        """The next free timer id (ids count up per process); EAGAIN past RLIMIT_SIGPENDING
        timers, which Linux charges them to."""
        with self.lock:
            if len(self.posix) >= self.task.rlimits[RLIMIT_SIGPENDING][0]:
                raise SyscallError(errno.EAGAIN)
            tid = self._next_id & INT_MAX
            while tid in self.posix:
                tid = (tid + 1) & INT_MAX
            self._next_id = tid + 1
            return tid

    def add(self, tid: int, clock: int, cpu: tuple[int, bool] | None, notify: int, signo: int,
            value: int | None, thread: "Task | None" = None) -> None:
        """The timer `tid` (from new_id; clock and sigevent validated by the caller).  value
        None: the default sigevent's si_value, the id.  thread: SIGEV_THREAD_ID's thread
        (None: the signal is the process's)."""
        with self.lock:
            timer = PosixTimer(self, tid, clock, cpu, notify, signo,
                               tid if value is None else value)
            timer.target = thread
            self.posix[tid] = timer

    def get(self, tid: int) -> "PosixTimer":
        timer = self.posix.get(tid)
        if timer is None:
            raise SyscallError(errno.EINVAL)
        return timer

    def delete(self, tid: int) -> None:
        with self.lock:
            self.get(tid).delete()

    def unignore(self, signo: int) -> None:
        """signo is no longer ignored: the periodic timers waiting on it queue their signal
        (delivery then re-arms them, with the expiries missed as overruns)."""
        with self.lock:
            for timer in [tm for tm in self.ignored if tm.signo == signo]:
                self.ignored.discard(timer)
                timer.queue()

    def on_exec(self) -> None:
        """execve: every POSIX timer goes (itimers stay)."""
        with self.lock:
            for timer in list(self.posix.values()):
                timer.delete()

    def close(self) -> None:
        """The process exited: every timer of it goes (none may signal a dead task)."""
        svc = self.service()
        with self.lock:
            for timer in list(self.posix.values()):
                timer.delete()
            for timer in (self.real, *self.cpu_itimers.values(), self.rlimit):
                svc.disarm(timer)

    # --- RLIMIT_CPU ----------------------------------------------------------------------
    def rlimit_changed(self) -> None:
        """RLIMIT_CPU was set (or the run starts with one): watch it, or stop watching."""
        svc = self.service()
        if self.rlimit.expires:
            svc.arm(self.rlimit)
        else:
            svc.disarm(self.rlimit)


class RealTimer(Timer):
    """ITIMER_REAL on CLOCK_MONOTONIC: `when` is the expiry (kept after it fires, for the
    forward of a periodic re-arm), `expires` is it while armed, else 0."""

    def __init__(self, pt: ProcessTimers) -> None:
        self.pt = pt
        self.clock = guest_clock(pt.task.kernel, C.CLOCK_MONOTONIC)
        self.when = 0
        self.interval = 0
        self.expires = 0

    def get(self) -> tuple[int, int]:
        if not self.expires:
            return 0, self.interval
        left = self.when - self.clock.now()
        return (left if left > 0 else C.NSEC_PER_USEC), self.interval

    def set(self, value: int, interval: int) -> tuple[int, int]:
        old = self.get()
        svc = self.pt.service()
        svc.disarm(self)
        self.expires = 0
        self.interval = interval if value else 0
        if value:
            self.when = self.expires = self.clock.now() + value
            svc.arm(self)
        return old

    def expire(self, now: int) -> None:
        with self.pt.lock:
            if not self.expires or now < self.expires:
                return
            self.expires = 0
            group.send(self.pt.task.tg, S.SIGALRM, code=SI_KERNEL)

    def rearm(self) -> None:
        if self.expires or not self.interval:
            return
        self.when, _ = forward(self.when, self.clock.now(), self.interval)
        self.expires = self.when
        self.pt.service().arm(self)


class CpuITimer(Timer):
    """ITIMER_VIRTUAL or ITIMER_PROF: `expires` is an absolute reading of the process's
    VIRT or PROF clock (0: off)."""

    def __init__(self, pt: ProcessTimers, which: int, signo: int) -> None:
        self.pt = pt
        self.clock = pt.cpu_clock(which)
        self.signo = signo
        self.expires = 0
        self.interval = 0

    def get(self) -> tuple[int, int]:
        if not self.expires:
            return 0, self.interval
        now = self.clock.now()
        return (C.TICK_NSEC if self.expires < now else self.expires - now), self.interval

    def set(self, value: int, interval: int) -> tuple[int, int]:
        old = self.expires
        if old or value:
            now = self.clock.now()
            if old:
                old = C.TICK_NSEC if old <= now else old - now
            if value:
                value += C.TICK_NSEC + now
        old_interval = self.interval
        self.expires, self.interval = value, interval
        svc = self.pt.service()
        if value:
            svc.arm(self)
        else:
            svc.disarm(self)
        return old, old_interval

    def expire(self, now: int) -> None:
        with self.pt.lock:
            if not self.expires or now < self.expires:
                return
            self.expires = self.expires + self.interval if self.interval else 0
            group.send(self.pt.task.tg, self.signo, code=SI_KERNEL)


class TimerSignal(deliver.LateSiginfo):
    """A POSIX timer's one preallocated signal."""

    __slots__ = ("timer",)

    def __init__(self, timer: "PosixTimer") -> None:
        self.timer = timer

    def __call__(self) -> bytes | None:
        return self.timer.delivered()

    def dropped(self) -> None:
        self.timer.ignored()


class PosixTimer(Timer):
    """One timer_create timer.  `when` is its expiry on `clock`; `expires` is `when` while
    it is armed with the service (status ARMED), else 0."""

    def __init__(self, pt: ProcessTimers, tid: int, clock_id: int, cpu: tuple[int, bool] | None,
                 notify: int, signo: int, value: int) -> None:
        self.pt = pt
        self.id = tid
        self.clock_id = clock_id
        self.cpu = cpu
        self.clock = pt.cpu_clock(*cpu) if cpu is not None else hrtimer_clock(pt.task.kernel, clock_id, False)
        self.notify = notify
        self.signo = signo
        self.value = value
        self.target: Task | None = None         # SIGEV_THREAD_ID's thread (None: the process)
        self.sig = TimerSignal(self)
        self.when = 0
        self.expires = 0
        self.interval = 0
        self.status = DISARMED
        self.overrun, self.overrun_last = -1, 0
        self.signal_seq = self.sigqueue_seq = 0
        self.deleted = False

    # Called with pt.lock held ---------------------------------------------------------
    def get(self) -> tuple[int, int]:
        """timer_gettime: (value, interval); an expired periodic timer whose signal waits
        (or a SIGEV_NONE one) is forwarded past now first."""
        iv, none = self.interval, self.notify == C.SIGEV_NONE
        if not iv and self.status == DISARMED and not none:
            return 0, 0
        if self.cpu is not None and not self.when:
            return 0, iv
        now = self.clock.now()
        if iv and self.status != ARMED:
            self.when, n = forward(self.when, now, iv)
            self.overrun += n
        left = self.when - now
        return (left if left > 0 else (0 if none else 1)), iv

    def set(self, absolute: bool, value: int, interval: int) -> None:
        """timer_settime: cancel, then arm at `value` (absolute on the clock, or from now)."""
        self.signal_seq += 1                    # a signal queued before is void now
        svc = self.pt.service()
        svc.disarm(self)
        self.expires = 0
        self.status = DISARMED
        self.interval = interval if value else 0
        self.overrun, self.overrun_last = -1, 0
        if not value:
            return
        if self.cpu is None:
            self.clock = hrtimer_clock(self.pt.task.kernel, self.clock_id, absolute)
        self.when = value if absolute else self.clock.now() + value
        if self.notify != C.SIGEV_NONE:
            self.status = ARMED
            self.expires = self.when
            svc.arm(self)

    def getoverrun(self) -> int:
        return min(self.overrun_last, C.DELAYTIMER_MAX)

    def delete(self) -> None:
        self.signal_seq += 1
        self.deleted = True
        self.pt.service().disarm(self)
        self.expires = 0
        self.status = DISARMED
        self.pt.posix.pop(self.id, None)
        self.pt.ignored.discard(self)

    # The service thread and signal delivery take the lock themselves --------------------
    def expire(self, now: int) -> None:
        with self.pt.lock:
            if self.status != ARMED or now < self.when:
                return
            self.status = REQUEUE_PENDING if self.interval else DISARMED
            self.expires = 0
            self.sigqueue_seq = self.signal_seq
            done = self.queue()
            if done is deliver.IGNORED and self.status == REQUEUE_PENDING:
                self.pt.ignored.add(self)

    def queue(self) -> str:
        """Queue the timer's signal for its thread or its process (and tell it)."""
        target = self.target
        if target is None or target.done:
            return group.send(self.pt.task.tg, self.signo, code=C.SI_TIMER, info=self.sig)
        done = deliver.enqueue(target, self.signo, C.SI_TIMER, 0, self.sig)
        if done is deliver.QUEUED:
            target.signalled()
        return done

    def delivered(self) -> bytes | None:
        """Its signal is being dequeued: the siginfo, or None if the signal is void.  A
        periodic timer is forwarded past now and armed again; the skipped expiries are
        the overrun count."""
        with self.pt.lock:
            if self.deleted or self.signal_seq != self.sigqueue_seq:
                return None
            overrun = 0
            if self.interval and self.status == REQUEUE_PENDING:
                self.when, n = forward(self.when, self.clock.now(), self.interval)
                self.overrun += n
                self.status = ARMED
                self.expires = self.when
                self.pt.service().arm(self)
                self.overrun_last, self.overrun = self.overrun, -1
                self.signal_seq += 1
                overrun = self.getoverrun()
            head = SIGINFO_HEAD.pack(self.signo, 0, C.SI_TIMER)
            body = _TIMER_INFO.pack(self.id, overrun, self.value & (1 << 64) - 1)
            return (head + body).ljust(SIGINFO_SIZE, b"\0")

    def ignored(self) -> None:
        """Its pending signal was discarded (SIG_IGN): a periodic timer waits for unignore."""
        with self.pt.lock:
            if (not self.deleted and self.status == REQUEUE_PENDING
                    and self.signal_seq == self.sigqueue_seq):
                self.pt.ignored.add(self)


class RlimitCpu(Timer):
    """The RLIMIT_CPU watch on the process's PROF clock; its expiry follows the limits."""

    def __init__(self, pt: ProcessTimers) -> None:
        self.pt = pt
        self.clock = pt.cpu_clock(C.CPUCLOCK_PROF)

    @property
    def expires(self) -> int:  # type: ignore[override]
        limits = [x * C.NSEC_PER_SEC for x in self.pt.task.rlimits[RLIMIT_CPU] if x != RLIM_INFINITY]
        return min(limits) if limits else 0

    def expire(self, now: int) -> None:
        t = self.pt.task
        soft, hard = t.rlimits[RLIMIT_CPU]
        if hard != RLIM_INFINITY and now >= hard * C.NSEC_PER_SEC:
            group.send(t.tg, S.SIGKILL, code=SI_KERNEL)
            for th in t.tg.live_threads():
                t.kernel.kill_task(th)
        elif soft != RLIM_INFINITY and now >= soft * C.NSEC_PER_SEC:
            group.send(t.tg, S.SIGXCPU, code=SI_KERNEL)
            t.rlimits[RLIMIT_CPU] = [soft + 1, hard]
