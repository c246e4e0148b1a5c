"""The timer service: one host thread per run that fires the guest's timers on time.

Every armed timer (ITIMER_*, POSIX timers, timerfds, the RLIMIT_CPU watch, a
sleep on a CPU clock) is registered here.  A timer has a `clock` (a Clock:
now() in ns, and whether it counts CPU time) and `expires`, the reading of
that clock at which it fires (0: not armed).  The service thread sleeps until
the earliest wall-clock expiry or, for a CPU-time clock, for the CPU time
still to run (a clock of one guest thread cannot advance faster than wall
time), never less than CPU_POLL_NS: CPU clocks are sampled as a tick does.
It then calls `expire(now)` on each timer whose time has come.  expire() runs
on the service thread and does little: it queues a signal (Task.send_signal
wakes and interrupts the task), counts a timerfd expiry, wakes a sleeper, and
re-arms or disarms itself.

A TimerService belongs to one Kernel.run: made at the first arm(), stopped
and its thread joined when the run ends (Kernel.run), so no timer outlives
its run or fires into the next one, and a closed Sandbox leaves no thread.

Lock order: a timer owner's lock (ProcessTimers.lock, TimerFd.lock) before
the service's condition; the service calls expire() holding none of its locks.
"""
from __future__ import annotations

import threading
from collections.abc import Callable

from kvmbox.abi.clocks import CLOCK_MONOTONIC, CLOCK_REALTIME, NSEC_PER_SEC

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from kvmbox.sentry.kernel import Kernel

CPU_POLL_NS = 1_000_000          # the finest step at which CPU clocks are sampled (a 1000 Hz tick)
PR_SET_TIMERSLACK = 29
MAX_WAIT_NS = 3600 * NSEC_PER_SEC   # look again at least hourly (keeps waits within the OS's range)


class Clock:
    """What a timer counts on: now() -> ns; cpu: a CPU-time clock (sampled, see the module note)."""

    __slots__ = ("now", "cpu")

    def __init__(self, now: Callable[[], int], cpu: bool = False) -> None:
        self.now = now
        self.cpu = cpu


def guest_clock(kernel: "Kernel", clock: int) -> Clock:
    """The guest's wall clock `clock` (REALTIME, MONOTONIC, BOOTTIME, TAI) as its vDSO reads it."""
    read = kernel.clock_ns
    return Clock(lambda: read(clock))


def hrtimer_clock(kernel: "Kernel", clock: int, absolute: bool) -> Clock:
    """The clock an hrtimer on `clock` counts on: a relative CLOCK_REALTIME timer runs on
    CLOCK_MONOTONIC (a step of the wall clock must not move it), as Linux's hrtimer_init."""
    return guest_clock(kernel, CLOCK_MONOTONIC if clock == CLOCK_REALTIME and not absolute else clock)


def forward(when: int, now: int, interval: int) -> tuple[int, int]:
    """hrtimer_forward: (new expiry, intervals added) moving `when` past `now` by whole
    intervals; (when, 0) if it is still ahead."""
    if now < when or interval <= 0:
        return when, 0
    n = (now - when) // interval + 1
    return when + n * interval, n


def _exact_sleeps() -> None:
    """Ask the host not to defer this thread's wake-ups (timer slack 1 ns instead of 50 us):
    a timer's lateness here is the guest's."""
    import ctypes
    try:
        ctypes.CDLL(None).prctl(PR_SET_TIMERSLACK, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass


class Timer:
    """What the service needs of a timer (subclasses set clock and expires, define expire)."""

    clock: Clock
    expires = 0

    def expire(self, now: int) -> None:
        """Called on the service thread once clock.now() >= expires."""
        raise NotImplementedError


class TimerService:
    """The armed timers of one run and the thread that fires them."""

    def __init__(self, on_error: Callable[[str], None] = lambda msg: None) -> None:
        self._on_error = on_error        # told of a timer that failed (a Sentry bug): it is dropped
        self._cond = threading.Condition(threading.Lock())
        self._timers: set[Timer] = set()
        self._changed = False
        self._stopped = False
        self._thread: threading.Thread | None = None

    def arm(self, timer: Timer) -> None:
        """(Re)consider `timer` with its current expires (thread-safe)."""
        with self._cond:
            if self._stopped:
                return
            self._timers.add(timer)
            self._changed = True
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="kvmbox-timers", daemon=True)
                self._thread.start()
            self._cond.notify()

    def disarm(self, timer: Timer) -> None:
        with self._cond:
            self._timers.discard(timer)

    def poke(self) -> None:
        """Re-read every timer's expires now (one whose expiry is derived changed)."""
        with self._cond:
            self._changed = True
            self._cond.notify()

    def stop(self) -> None:
        """Forget every timer and end the thread (joined unless called from it)."""
        with self._cond:
            self._stopped = True
            self._timers.clear()
            self._cond.notify()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def _run(self) -> None:
        _exact_sleeps()
        cond = self._cond
        while True:
            with cond:
                if self._stopped:
                    return
                self._changed = False
                timers = list(self._timers)
            wait = None
            for tm in timers:
                left = self._check(tm)
                if left is not None and (wait is None or left < wait):
                    wait = left
            with cond:
                if self._stopped:
                    return
                if not self._changed:
                    cond.wait(None if wait is None else min(wait, MAX_WAIT_NS) / NSEC_PER_SEC)

    def _check(self, tm: Timer) -> int | None:
        """Fire `tm` if due; the ns to wait before looking at it again (None: not armed)."""
        expires = tm.expires
        if not expires:
            self.disarm(tm)
            return None
        clock = tm.clock
        now = clock.now()
        if now >= expires:
            try:
                tm.expire(now)
            except Exception as e:       # a Sentry bug: drop that timer, keep the others running
                self.disarm(tm)
                self._on_error(f"kvmbox: internal error in a timer: {type(e).__name__}: {e}")
                return None
            expires = tm.expires
            if not expires:
                return None
            if not clock.cpu:
                now = clock.now()
        left = expires - now
        return max(left, CPU_POLL_NS) if clock.cpu else max(left, 0)


class Alarm(Timer):
    """A one-shot timer that sets `fired` and calls `wake` (a sleeper's Waker.set)."""

    def __init__(self, clock: Clock, expires: int, wake: Callable[[], None]) -> None:
        self.clock = clock
        self.expires = expires
        self.fired = threading.Event()
        self._wake = wake

    def expire(self, now: int) -> None:
        self.expires = 0
        self.fired.set()
        self._wake()
