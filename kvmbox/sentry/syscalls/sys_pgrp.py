"""Handlers for process groups and sessions: getpgrp, getpgid, setpgid, getsid, setsid.

The rules and errors are Linux's (kernel/sys.c): setpgid may move the caller or
a child of it that has not exec'd, within the caller's session, into a group
that exists in that session or a new one named by the mover's pid.  The tree
changes under the process table's lock.
"""
from __future__ import annotations

import errno

from kvmbox.errors import SyscallError
from kvmbox.sentry.syscalls.args import s32
from kvmbox.sentry.syscalls.table import SUPPORTED, Entry

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from kvmbox.sentry.task import Task
    from kvmbox.sentry.threadgroup import ThreadGroup

Args = tuple[int, int, int, int, int, int]


def _process(t: "Task", pid: int) -> "ThreadGroup":
    """The process `pid` names (0: the caller); ESRCH if there is none."""
    if pid == 0:
        return t.tg
    g = t.kernel.pids.group(pid) if pid > 0 else None
    if g is None:
        raise SyscallError(errno.ESRCH)
    return g


def getpgrp(t: "Task", a: Args) -> int:
    """Implements Linux syscall getpgrp(2)."""
    return t.pgid


def getpgid(t: "Task", a: Args) -> int:
    """Implements Linux syscall getpgid(2)."""
    return _process(t, s32(a[0])).pgid


def getsid(t: "Task", a: Args) -> int:
    """Implements Linux syscall getsid(2)."""
    return _process(t, s32(a[0])).sid


def setpgid(t: "Task", a: Args) -> int:
    """Implements Linux syscall setpgid(2)."""
    pid, pgid = s32(a[0]), s32(a[1])
    table = t.kernel.pids
    with table.lock:
        me = t.tg
        if pid == 0:
            pid = me.tgid
        if pgid == 0:
            pgid = pid
        if pgid < 0:
            raise SyscallError(errno.EINVAL)
        g = table.group(pid)
        if g is None or (g is not me and g.parent is not me):
            raise SyscallError(errno.ESRCH)
        if g is not me:
            if g.sid != me.sid:
                raise SyscallError(errno.EPERM)
            if g.exec_done:
                raise SyscallError(errno.EACCES)
        if g.sid == g.tgid:
            raise SyscallError(errno.EPERM)        # a session leader stays in its group
        if pgid != g.tgid and not table.session_has_group(me.sid, pgid):
            raise SyscallError(errno.EPERM)
        g.pgid = pgid
    return 0


def setsid(t: "Task", a: Args) -> int:
    """Implements Linux syscall setsid(2)."""
    table = t.kernel.pids
    with table.lock:
        me = t.tg
        if any(g.pgid == me.tgid for g in table.groups.values()):
            raise SyscallError(errno.EPERM)        # it leads a group (or one uses its pid)
        me.sid = me.pgid = me.tgid
    return me.tgid


ENTRIES = (
    Entry("getpgrp", getpgrp, SUPPORTED),
    Entry("getpgid", getpgid, SUPPORTED),
    Entry("setpgid", setpgid, SUPPORTED),
    Entry("getsid", getsid, SUPPORTED),
    Entry("setsid", setsid, SUPPORTED, "no controlling terminal is attached"),
)
