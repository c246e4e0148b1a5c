"""Handlers that wait for children: wait4 and waitid.

A parent sleeps on its ThreadGroup's `child_events` queue (waiter.block),
which every child's exit, stop and continue notifies; the scan of its
children and the reaping happen under the process table's lock.
"""
from __future__ import annotations

import errno
import struct

from kvmbox.abi import structs
from kvmbox.errors import SyscallError
from kvmbox.sentry import lifecycle
from kvmbox.sentry.signals.deliver import ERESTARTSYS
from kvmbox.sentry.syscalls.args import s32
from kvmbox.sentry.syscalls.table import PARTIAL, SUPPORTED, Entry
from kvmbox.sentry.threadgroup import EV_CONTINUED, EV_NONE, EV_STOPPED, STOPPED, ZOMBIE
from kvmbox.sentry.waiter import block

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from kvmbox.sentry.task import Task
    from kvmbox.sentry.threadgroup import ThreadGroup

Args = tuple[int, int, int, int, int, int]
WNOHANG, WUNTRACED, WSTOPPED, WEXITED, WCONTINUED = 1, 2, 2, 4, 8
WNOWAIT, WNOTHREAD, WALL, WCLONE = 0x01000000, 0x20000000, 0x40000000, 0x80000000
P_ALL, P_PID, P_PGID, P_PIDFD = 0, 1, 2, 3
SIGCHLD = 17
_SIGINFO = struct.Struct("<iii4xiii")        # signo errno code | pid uid status
# What a scan found: the child and what to report.
EXITED, STOPPED_EV, CONTINUED_EV = "exited", "stopped", "continued"


def _matches(g: "ThreadGroup", which: int, ident: int, options: int) -> bool:
    if which == P_PID and g.tgid != ident:
        return False
    if which == P_PGID and g.pgid != ident:
        return False
    if options & WALL:
        return True
    clone_child = g.exit_signal != SIGCHLD
    return clone_child == bool(options & WCLONE)


def _scan(t: "Task", which: int, ident: int, options: int) -> tuple["ThreadGroup", str] | None:
    """A child with something to report, or None; ECHILD when no child matches at all."""
    any_match = False
    for g in t.tg.children:
        if not _matches(g, which, ident, options):
            continue
        any_match = True
        if g.state == ZOMBIE and options & WEXITED:
            return g, EXITED
        if g.state == STOPPED and g.wait_event == EV_STOPPED and options & WSTOPPED:
            return g, STOPPED_EV
        if g.wait_event == EV_CONTINUED and options & WCONTINUED:
            return g, CONTINUED_EV
    if not any_match:
        raise SyscallError(errno.ECHILD)
    return None


def _wait(t: "Task", which: int, ident: int, options: int) -> tuple["ThreadGroup", str] | None:
    """Scan, and sleep until something is reportable unless WNOHANG."""
    lock = t.kernel.pids.lock
    found = None

    def ready() -> bool:
        nonlocal found
        with lock:
            found = _scan(t, which, ident, options)
        return found is not None

    if ready() or options & WNOHANG:
        return found
    block(t, ready, sources=[t.tg.child_events], interrupt=ERESTARTSYS)
    return found


def _consume(t: "Task", g: "ThreadGroup", kind: str, options: int) -> int:
    """The child's wait status for `kind`; reaps a zombie / clears the event unless WNOWAIT."""
    if kind == EXITED:
        status = g.wait_status
        if not options & WNOWAIT:
            lifecycle.reap(t.tg, g, t.kernel)
        return status
    keep = options & WNOWAIT
    if kind == STOPPED_EV:
        if not keep:
            g.wait_event = EV_NONE
        return (g.stop_signal << 8) | 0x7F
    if not keep:
        g.wait_event = EV_NONE
    return 0xFFFF


def _rusage(t: "Task", addr: int, g: "ThreadGroup") -> None:
    fields = [0] * 18
    user = g.times.user_ns + g.children_times.user_ns
    sys_ = g.times.sys_ns + g.children_times.sys_ns
    fields[0], fields[1] = divmod(user // 1000, 1_000_000)
    fields[2], fields[3] = divmod(sys_ // 1000, 1_000_000)
    fields[4] = max(g.times.maxrss_kb, g.children_times.maxrss_kb)
    t.mm.copy_out(addr, structs.RUSAGE.pack(*fields))


def wait4(t: "Task", a: Args) -> int:
    """Implements Linux syscall wait4(2)."""
    pid, status_addr, options, ru_addr = s32(a[0]), a[1], a[2] & 0xFFFF_FFFF, a[3]
    if options & ~(WNOHANG | WUNTRACED | WCONTINUED | WNOTHREAD | WALL | WCLONE):
        raise SyscallError(errno.EINVAL)
    if pid == -(1 << 31):
        raise SyscallError(errno.ESRCH)
    if pid < -1:
        which, ident = P_PGID, -pid
    elif pid == -1:
        which, ident = P_ALL, 0
    elif pid == 0:
        which, ident = P_PGID, t.pgid
    else:
        which, ident = P_PID, pid
    found = _wait(t, which, ident, options | WEXITED)
    if found is None:
        return 0
    g, kind = found
    status = _consume(t, g, kind, options)
    if status_addr:
        t.mm.copy_out(status_addr, structs.U32.pack(status))
    if ru_addr:
        _rusage(t, ru_addr, g)
    return g.tgid


def waitid(t: "Task", a: Args) -> int:
    """Implements Linux syscall waitid(2)."""
    which, ident, info_addr, options, ru_addr = a[0] & 0xFFFF_FFFF, s32(a[1]), a[2], a[3] & 0xFFFF_FFFF, a[4]
    if options & ~(WNOHANG | WNOWAIT | WEXITED | WSTOPPED | WCONTINUED | WNOTHREAD | WALL | WCLONE):
        raise SyscallError(errno.EINVAL)
    if not options & (WEXITED | WSTOPPED | WCONTINUED):
        raise SyscallError(errno.EINVAL)
    if which == P_ALL:
        ident = 0
    elif which in (P_PID, P_PGID):
        if ident <= 0 and not (which == P_PGID and ident == 0):
            raise SyscallError(errno.EINVAL)
        if which == P_PGID and ident == 0:
            ident = t.pgid
    elif which == P_PIDFD:
        raise SyscallError(errno.EBADF)           # no pidfd can exist in the sandbox
    else:
        raise SyscallError(errno.EINVAL)
    found = _wait(t, which, ident, options)
    if found is None:
        if info_addr:
            t.mm.copy_out(info_addr, _SIGINFO.pack(0, 0, 0, 0, 0, 0))
        return 0
    g, kind = found
    if kind == EXITED:
        sig = g.wait_status & 0x7F
        if sig:
            code = lifecycle.CLD_DUMPED if g.wait_status & 0x80 else lifecycle.CLD_KILLED
            value = sig
        else:
            code, value = lifecycle.CLD_EXITED, (g.wait_status >> 8) & 0xFF
    elif kind == STOPPED_EV:
        code, value = lifecycle.CLD_STOPPED, g.stop_signal
    else:
        code, value = lifecycle.CLD_CONTINUED, 18
    uid = g.tasks[0].creds.uid
    if ru_addr:
        _rusage(t, ru_addr, g)
    _consume(t, g, kind, options)
    if info_addr:
        t.mm.copy_out(info_addr, _SIGINFO.pack(SIGCHLD, 0, code, g.tgid, uid, value))
    return 0


ENTRIES = (
    Entry("wait4", wait4, SUPPORTED, ""),
    Entry("waitid", waitid, PARTIAL, "P_PIDFD gives EBADF (no pidfds)"),
)
