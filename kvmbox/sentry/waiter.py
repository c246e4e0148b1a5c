"""Blocking: the one way a task waits (pipes, FIFOs, eventfds, poll/epoll, sleeps, signals, host fds).

A task that must wait calls `block(t, ready, ...)`.  It sleeps on its own
`Waker` until one of these happens, whichever comes first:

  - ready() is true (the event it waits for): block returns True;
  - the deadline (time.monotonic seconds) passes: block returns False;
  - the sandbox is stopped (kill, --timeout, close): block raises Stopped;
  - a signal the task does not block is pending: block raises
    SyscallError(interrupt), the "restart me" code the caller chooses
    (ERESTARTSYS for reads and writes, ERESTARTNOHAND for poll, ...), which the
    dispatcher turns into EINTR or a restart as Linux does.

Waiters are woken by the event, never by polling in slices: every object that
can satisfy a wait keeps a `WaitQueue` (or a set of watchers) and calls
`notify()` on each state change; `block` registers the task's Waker with each
source through `source.watch(waker)` / `source.unwatch(waker)`.  A wait on a
host file descriptor (a standard stream passed through from the host) names it
in `host` as (fd, poll events), which FileDescription.host_wait(events) gives;
the Waker's wait polls it together with its own eventfd, so even a read of an
idle host pipe ends at once when the sandbox is killed or a signal arrives.

Objects stay non-blocking: an operation that cannot proceed raises EAGAIN, and
the syscall layer (which knows the task and O_NONBLOCK) waits here and retries
(kvmbox/sentry/syscalls/sys_io.py `retry_blocking`).  This is gVisor's split of
waiter.Queue and the syscall layer's EWOULDBLOCK loop.

Lock order: a source's own lock may be held while it calls notify(); a Waker
and a WaitQueue take only their own small locks and call nothing else.
"""
from __future__ import annotations

import errno
import os
import select
import threading
import time
from collections.abc import Callable, Iterable

from kvmbox.errors import SyscallError

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from kvmbox.sentry.task import Task


class Stopped(Exception):
    """The run was stopped from outside (timeout, kill, close) while a task was blocked."""


class Waker:
    """One task's wake-up channel: an eventfd, so a wait can poll host fds alongside it.

    `set()` (thread-safe, any thread) wakes the current or the next wait;
    `wait()` sleeps until set() or a host fd is ready or the timeout passes.
    The name `set` lets a Waker stand wherever a threading.Event watcher did.
    """

    __slots__ = ("fd", "_poll")

    def __init__(self) -> None:
        self.fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._poll: select.poll | None = None

    def set(self) -> None:
        fd = self.fd
        if fd >= 0:
            try:
                os.eventfd_write(fd, 1)
            except OSError:          # closed meanwhile (the task ended): nothing to wake
                pass

    def clear(self) -> None:
        try:
            os.eventfd_read(self.fd)
        except (BlockingIOError, OSError):
            pass

    def wait(self, timeout: float | None, host: Iterable[tuple[int, int]] = ()) -> dict[int, int]:
        """Sleep until set(), a host fd in `host` ((fd, poll events) pairs) is ready, or
        `timeout` seconds pass (None: no limit).  Returns the ready host fds' revents."""
        p = select.poll()
        p.register(self.fd, select.POLLIN)
        for fd, events in host:
            if fd >= 0 and fd != self.fd:
                p.register(fd, events)
        ms = -1 if timeout is None else max(0, int(timeout * 1000 + 0.999))
        try:
            got = p.poll(ms)
        except InterruptedError:       # a signal to the Sentry thread: just a spurious wake
            return {}
        return {fd: ev for fd, ev in got if fd != self.fd}

    def close(self) -> None:
        fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)


class SentryLock:
    """The lock Sentry handlers run under (kvmbox/sentry/runloop.py), knowing its owner so
    that a wait lets go of it only when its own thread holds it."""

    __slots__ = ("_lock", "_owner")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._owner = 0

    def acquire(self) -> None:
        self._lock.acquire()
        self._owner = threading.get_ident()

    def release(self) -> None:
        self._owner = 0
        self._lock.release()

    def owned(self) -> bool:
        return self._owner == threading.get_ident()

    def __enter__(self) -> "SentryLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


class WaitQueue:
    """The Wakers waiting on one object; `notify()` wakes them all (they re-check)."""

    __slots__ = ("_waiters", "_lock")

    def __init__(self) -> None:
        self._waiters: set = set()
        self._lock = threading.Lock()

    def watch(self, w) -> None:
        with self._lock:
            self._waiters.add(w)

    def unwatch(self, w) -> None:
        with self._lock:
            self._waiters.discard(w)

    def notify(self) -> None:
        with self._lock:
            waiters = list(self._waiters)
        for w in waiters:
            w.set()

    def __bool__(self) -> bool:
        return bool(self._waiters)


def block(t: "Task", ready: Callable[[], object], *, sources: Iterable[object] = (),
          host: Iterable[tuple[int, int]] = (), deadline: float | None = None,
          interrupt: int | None = None, on_signal: Callable[[], bool] | None = None) -> bool:
    """Wait until ready() (True) or `deadline` (False); see the module note.

    sources: objects whose changes may make ready() true; those with watch() and
    unwatch() wake the task.  host: (fd, poll events) of host descriptors whose
    readiness may make ready() true.  interrupt: the errno raised when an unblocked signal is
    pending (None: only a stop ends the wait early).  on_signal: instead of the
    plain "unblocked signal pending" test, a predicate deciding whether the task's
    pending signals end the wait (sigtimedwait waits for blocked ones).
    """
    kernel = t.kernel
    w = t.waker
    watched = [s for s in sources if s is not None and hasattr(s, "watch")]
    host = list(host)
    for s in watched:
        s.watch(w)
    t.blocked = True
    try:
        while True:
            w.clear()
            if ready():
                return True
            if kernel.stopping or getattr(t, "killed", False):
                raise Stopped()
            if on_signal is not None:
                if on_signal():
                    raise SyscallError(interrupt if interrupt is not None else errno.EINTR)
            elif interrupt is not None and t.signal_pending():
                raise SyscallError(interrupt)
            if deadline is None:
                left = None
            else:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
            bkl = getattr(kernel, "bkl", None)
            if bkl is not None and bkl.owned():
                # Let the other tasks' handlers run while this one sleeps (runloop.py), and
                # let its vCPU serve another task meanwhile (KVM's pool).
                idle = getattr(t.ctx, "set_idle", None)
                if idle is not None:
                    idle(True)
                bkl.release()
                try:
                    w.wait(left, host)
                finally:
                    if idle is not None:
                        idle(False)
                    bkl.acquire()
            else:
                w.wait(left, host)
    finally:
        t.blocked = False
        for s in watched:
            s.unwatch(w)


def sleep_until(t: "Task", deadline: float, interrupt: int | None) -> bool:
    """Sleep to the monotonic `deadline`; True when it passed, else raises (signal, stop)."""
    block(t, _never, deadline=deadline, interrupt=interrupt)
    return True


def _never() -> bool:
    return False
