"""Blocking I/O in the syscall layer: retry a non-blocking file operation for a blocking descriptor.

Files never block (kvmbox/sentry/waiter.py): an operation that cannot proceed
raises EAGAIN.  When the descriptor is blocking (no O_NONBLOCK), `retry`
registers the task on the file (its watchers, or its host fd) and tries the
operation again at every wake-up until it stops saying EAGAIN, a signal
interrupts (ERESTARTSYS: EINTR or a restart, per SA_RESTART), the file's
wait_timeout passes (a socket's SO_RCVTIMEO/SO_SNDTIMEO: EAGAIN), or the sandbox
is stopped.  Trying again on wake-up, rather than waiting for poll() to say
"ready", keeps operations whose readiness poll cannot express (an eventfd write
of a large value) from spinning.
"""
from __future__ import annotations

import errno
import time
from collections.abc import Callable

from kvmbox.abi.fcntl import O_NONBLOCK
from kvmbox.abi.poll import POLLIN, POLLOUT
from kvmbox.errors import SyscallError
from kvmbox.sentry.signals.deliver import ERESTARTSYS
from kvmbox.sentry.waiter import block

TYPE_CHECKING = False            # typing is not imported at run time (start-up time)
if TYPE_CHECKING:  # pragma: no cover
    from typing import TypeVar

    from kvmbox.sentry.files import FileDescription
    from kvmbox.sentry.task import Task
    R = TypeVar("R")


def retry(t: "Task", f: "FileDescription", op: Callable[[], R], events: int,
          interrupt: int = ERESTARTSYS) -> R:
    """op()'s result; while it raises EAGAIN on a blocking `f`, wait for a change of `f`
    (poll `events` for a host descriptor) and call it again."""
    try:
        return op()
    except SyscallError as e:
        if e.errno != errno.EAGAIN or f.flags & O_NONBLOCK:
            raise
    out: list = []

    def attempt() -> bool:
        try:
            out.append(op())
        except SyscallError as e:
            if e.errno == errno.EAGAIN:
                return False
            raise
        return True

    host = f.host_wait(events)
    timeout = f.wait_timeout(events)
    deadline = None
    if timeout is not None:
        deadline = time.monotonic() + timeout
        if interrupt == ERESTARTSYS:
            interrupt = errno.EINTR          # Linux's sock_intr_errno: a timed wait never restarts
    if not block(t, attempt, sources=[f], host=[host] if host is not None else (),
                 deadline=deadline, interrupt=interrupt):
        raise SyscallError(errno.EAGAIN)
    return out[0]


def read_blocking(t: "Task", f: "FileDescription", op: Callable[[], R]) -> R:
    """retry() for a read."""
    return retry(t, f, op, POLLIN)


def write_blocking(t: "Task", f: "FileDescription", op: Callable[[], R]) -> R:
    """retry() for a write."""
    return retry(t, f, op, POLLOUT)
