"""timerfd: a timer read as a file, as Linux's fs/timerfd.c.

An expiry (on the run's TimerService thread) adds one tick and wakes the
file's watchers; a periodic timer is not re-armed then, but when the count
is read (or timerfd_gettime asks): it is forwarded past now and the
intervals it skipped are added to the count, so a slow reader gets the whole
count and a tiny interval cannot flood the Sentry.  A read of a zero count
raises EAGAIN; for a blocking descriptor the syscall layer waits on the
watchers and retries (kvmbox/sentry/waiter.py).

Clocks: REALTIME, MONOTONIC, BOOTTIME and their _ALARM forms (counted as the
plain clocks: nothing suspends a sandbox).  A relative REALTIME timer counts
on MONOTONIC, as hrtimers do.  TFD_TIMER_CANCEL_ON_SET is accepted and shown
in fdinfo, but never cancels: the sandbox's clock cannot be set.
"""
from __future__ import annotations

import errno
import struct
import threading

from kvmbox.abi import clocks as C
from kvmbox.abi.fcntl import O_RDWR
from kvmbox.abi.poll import POLLIN
from kvmbox.errors import SyscallError
from kvmbox.sentry.files import FileDescription
from kvmbox.sentry.timers import Timer, forward, hrtimer_clock
from kvmbox.sentry.waiter import WaitQueue

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from kvmbox.sentry.kernel import Kernel

U64 = struct.Struct("<Q")
CLOCKS = frozenset({C.CLOCK_REALTIME, C.CLOCK_MONOTONIC, C.CLOCK_BOOTTIME,
                    C.CLOCK_REALTIME_ALARM, C.CLOCK_BOOTTIME_ALARM})
_PLAIN = {C.CLOCK_REALTIME_ALARM: C.CLOCK_REALTIME, C.CLOCK_BOOTTIME_ALARM: C.CLOCK_BOOTTIME}


class TimerFd(FileDescription, Timer):
    """One timerfd.  `when` is the expiry on `clock` (kept after it fires, for the forward);
    `expires` is `when` while the timer is armed with the service, else 0."""

    readable = True
    mode = 0o600                     # an anonymous inode: permission bits only
    link_name = "anon_inode:[timerfd]"

    def __init__(self, kernel: "Kernel", clockid: int, flags: int) -> None:
        self.kernel = kernel
        self.clockid = clockid
        self.flags = O_RDWR | (flags & C.TFD_NONBLOCK)
        self.clock = hrtimer_clock(kernel, _PLAIN.get(clockid, clockid), True)
        self.lock = threading.Lock()
        self.waiters = WaitQueue()   # task Wakers, poll/epoll items: woken at each expiry
        self.ticks = 0
        self.expired = False
        self.interval = 0
        self.when = 0
        self.expires = 0
        self.settime_flags = 0

    # --- the timer -------------------------------------------------------------------
    def expire(self, now: int) -> None:
        with self.lock:
            if not self.expires or now < self.expires:
                return
            self.expires = 0
            self.expired = True
            self.ticks += 1
        self.waiters.notify()

    def _forward(self) -> int:
        """A periodic timer that fired: forward it past now and arm it again; the
        intervals passed (lock held)."""
        self.when, n = forward(self.when, self.clock.now(), self.interval)
        self.expires = self.when
        self.kernel.timer_service().arm(self)
        return n

    def _remaining(self) -> int:
        return max(0, self.when - self.clock.now())

    def settime(self, flags: int, value: int, interval: int) -> tuple[int, int]:
        """timerfd_settime: the old (value, interval), then the timer re-programmed."""
        svc = self.kernel.timer_service()
        with self.lock:
            svc.disarm(self)
            self.expires = 0
            if self.expired and self.interval:
                self.when, _ = forward(self.when, self.clock.now(), self.interval)
            old = (self._remaining(), self.interval)
            absolute = bool(flags & C.TFD_TIMER_ABSTIME)
            self.clock = hrtimer_clock(self.kernel, _PLAIN.get(self.clockid, self.clockid), absolute)
            self.expired, self.ticks = False, 0
            self.interval = interval
            self.when = value if absolute or not value else self.clock.now() + value
            if value:
                self.expires = self.when
                svc.arm(self)
            self.settime_flags = flags & (C.TFD_TIMER_ABSTIME | C.TFD_TIMER_CANCEL_ON_SET)
            return old

    def gettime(self) -> tuple[int, int]:
        """timerfd_gettime: (value, interval); a periodic timer that fired is forwarded."""
        with self.lock:
            if self.expired and self.interval:
                self.expired = False
                self.ticks += self._forward() - 1
            return self._remaining(), self.interval

    # --- the file --------------------------------------------------------------------
    def read(self, n: int) -> bytes:
        if n < U64.size:
            raise SyscallError(errno.EINVAL)
        with self.lock:
            ticks = self.ticks
            if not ticks:
                raise SyscallError(errno.EAGAIN)
            if self.expired and self.interval:
                ticks += self._forward() - 1
            self.expired = False
            self.ticks = 0
        return U64.pack(ticks)

    def write(self, data: bytes) -> int:
        raise SyscallError(errno.EINVAL)          # no write method: vfs_write's EINVAL

    def seek(self, offset: int, whence: int) -> int:
        return 0                                  # noop_llseek

    def poll(self, events: int) -> int:
        return POLLIN if self.ticks else 0        # timerfd_poll: EPOLLIN alone

    def watch(self, ev) -> None:
        self.waiters.watch(ev)

    def unwatch(self, ev) -> None:
        self.waiters.unwatch(ev)

    def release(self) -> None:
        self.kernel.timer_service().disarm(self)
        self.expires = 0

    def fdinfo(self) -> str:
        with self.lock:
            value = divmod(self._remaining(), C.NSEC_PER_SEC)
            interval = divmod(self.interval, C.NSEC_PER_SEC)
            return (f"clockid: {self.clockid}\nticks: {self.ticks}\n"
                    f"settime flags: 0{self.settime_flags:o}\n"
                    f"it_value: ({value[0]}, {value[1]})\n"
                    f"it_interval: ({interval[0]}, {interval[1]})\n")
