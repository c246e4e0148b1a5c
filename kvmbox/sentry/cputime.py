"""The guest's CPU time: user time (its own code) and system time (the Sentry's work for it).

What a task's times are made of, per platform:

  user    the CPU time guest code ran, from the Context (Context.guest_cpu_ns):
          ptrace: the stub process's CPU clock (its user code, plus the host
          kernel's work on its page faults and ptrace stops);
          kvm: the monotonic time spent inside KVM_RUN (the guest's code plus the
          hypervisor's world switches and shadow faults), capped by the vCPU
          thread's CPU clock, so host preemption during a run is not counted.
  system  the CPU clock of the task's Sentry thread since the task began (its
          handlers, signal delivery, fault handling), less, on KVM, the user part
          that the same thread ran inside KVM_RUN.

Both are readable from any thread while the guest runs (the timer service's
CPU timers read them), and as Linux's cputime_adjust they never go backwards:
each reading is clamped to the previous one.  The vCPU thread's own clock is
read only when asked (2.7 us a read here), never per exit.

Clock ids: CLOCK_PROCESS_CPUTIME_ID and CLOCK_THREAD_CPUTIME_ID, and the
per-pid encodings clock_getcpuclockid/pthread_getcpuclockid make
((~pid << 3) | perthread << 2 | which), for the caller's own pid or tid.
PROF is user + system, VIRT user only, SCHED user + system.
"""
from __future__ import annotations

import errno
import threading
import time

from kvmbox.abi import clocks as C
from kvmbox.errors import SyscallError

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from kvmbox.platform.base import Context
    from kvmbox.sentry.task import Task


class TaskCpu:
    """One task's CPU times; times() is thread-safe and monotonic."""

    def __init__(self, ctx: "Context | None") -> None:
        self._ctx = ctx
        self._on_thread = ctx is not None and ctx.guest_on_caller_thread
        self._guest_base = ctx.guest_cpu_ns() if ctx is not None else 0
        self._clock = time.pthread_getcpuclockid(threading.get_ident())
        self._thread_base = time.clock_gettime_ns(self._clock)
        self._prev = (0, 0)
        self._lock = threading.Lock()

    def on_thread(self) -> None:
        """The task now runs on the calling host thread (a new task's own): count its clock."""
        done = sum(self._prev)
        self._clock = time.pthread_getcpuclockid(threading.get_ident())
        self._thread_base = time.clock_gettime_ns(self._clock) - done

    def times(self) -> tuple[int, int]:
        """(user ns, system ns) so far."""
        ctx = self._ctx
        guest = ctx.guest_cpu_ns() - self._guest_base if ctx is not None else 0
        try:
            thread = time.clock_gettime_ns(self._clock) - self._thread_base
        except OSError:              # the Sentry thread is gone (the run ended)
            thread = sum(self._prev)
        if self._on_thread:
            user = min(guest, thread)
            system = thread - user
        else:
            user, system = guest, thread
        with self._lock:
            pu, ps = self._prev
            total = max(user + system, pu + ps)
            user = min(max(user, pu), total - ps)
            system = total - user
            self._prev = (user, system)
        return user, system


def process_times(t: "Task") -> tuple[int, int]:
    """(user, system) ns of t's process: its threads' that have ended (kept in the group's
    `times` by kvmbox/sentry/lifecycle.py) plus each running thread's."""
    g = t.tg
    user, system = g.times.user_ns, g.times.sys_ns
    for th in list(g.tasks):
        if not th.done:
            u, s = th.cpu.times()
            user, system = user + u, system + s
    return user, system


def clock_value(which: int, times: tuple[int, int]) -> int:
    """A CPU clock's reading from (user, system): VIRT is user time, PROF and SCHED both."""
    return times[0] if which == C.CPUCLOCK_VIRT else times[0] + times[1]


def decode(t: "Task", clock: int) -> tuple[int, bool] | None:
    """(which, per-thread) for a CPU-time clock id naming t's own process or thread; None
    for other clocks; EINVAL for another pid's clock or a bad encoding."""
    if clock == C.CLOCK_PROCESS_CPUTIME_ID:
        return C.CPUCLOCK_SCHED, False
    if clock == C.CLOCK_THREAD_CPUTIME_ID:
        return C.CPUCLOCK_SCHED, True
    if clock >= 0:
        return None
    which = clock & C.CPUCLOCK_CLOCK_MASK
    thread = bool(clock & C.CPUCLOCK_PERTHREAD_MASK)
    pid = ~(clock >> 3)
    if which >= C.CPUCLOCK_MAX or pid not in (0, t.tid if thread else t.tgid):
        raise SyscallError(errno.EINVAL)
    return which, thread


def read(t: "Task", which: int, thread: bool) -> int:
    """The CPU clock `which` of t (thread) or of its process, in ns."""
    return clock_value(which, t.cpu.times() if thread else process_times(t))


def resolution_ns(which: int) -> int:
    """clock_getres of a CPU clock: SCHED counts nanoseconds, PROF/VIRT ticks."""
    return 1 if which == C.CPUCLOCK_SCHED else C.TICK_NSEC
