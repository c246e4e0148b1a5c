"""Handlers that send signals to processes and tasks: kill, tgkill, tkill.

Only processes of the sandbox can be named (its pids start at 1); kill(-1)
reaches every one of them but init and the caller, never a host process.
SIGCONT continues a stopped process and SIGKILL ends one even while it waits
(kvmbox/sentry/lifecycle.py).  Unlike a Linux pid-namespace init, kvmbox's
pid 1 is not shielded from signals without handlers: it is the user's program,
and it must behave as it does natively, where it is not an init.
"""
from __future__ import annotations

import errno

from kvmbox.abi import signals as S
from kvmbox.errors import SyscallError
from kvmbox.sentry import lifecycle
from kvmbox.sentry.signals import deliver, group
from kvmbox.sentry.signals.frame import SI_TKILL, SI_USER, siginfo
from kvmbox.sentry.syscalls.args import s32
from kvmbox.sentry.syscalls.table import SUPPORTED, Entry
from kvmbox.sentry.threadgroup import ZOMBIE

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from kvmbox.sentry.task import Task
    from kvmbox.sentry.threadgroup import ThreadGroup

Args = tuple[int, int, int, int, int, int]
_STOPS = {S.SIGSTOP, S.SIGTSTP, S.SIGTTIN, S.SIGTTOU}


def _check_sig(sig: int) -> None:
    if not 0 <= sig <= S.NSIG:
        raise SyscallError(errno.EINVAL)


def send(sender: "Task", target: "Task", sig: int, code: int, *, process: bool = False) -> None:
    """Deliver `sig` from `sender` to `target` (any task of the sandbox; with `process`,
    to target's whole process: kvmbox/sentry/signals/group.py), as Linux's send_signal:
    SIGCONT continues and cancels stops, a stop cancels SIGCONT, SIGKILL ends every
    thread, even in an uninterruptible wait."""
    g = target.tg
    if g.state == ZOMBIE or (target.killed and not process):
        return
    if sig == S.SIGCONT:
        for s in _STOPS:
            deliver.flush(target, s)
        lifecycle.continued(g)
    elif sig in _STOPS:
        deliver.flush(target, S.SIGCONT)
    info = siginfo(sig, code, pid=sender.tgid, uid=sender.creds.uid)
    if process:
        group.send(g, sig, code=code, info=info, sender=sender)
    elif target is sender:
        target.queue_signal(sig, code=code, info=info)
    else:
        target.send_signal(sig, code=code, info=info)
    if sig == S.SIGKILL:
        for th in g.live_threads():
            th.kernel.kill_task(th)


def _groups_for(t: "Task", pid: int) -> list["ThreadGroup"]:
    table = t.kernel.pids
    if pid > 0:
        g = table.group(pid)
        return [g] if g is not None else []
    if pid == 0:
        return table.members(t.pgid)
    if pid == -1:
        init = table.init
        return [g for g in table.live_groups() if g is not t.tg and g is not init]
    return table.members(-pid)


def kill(t: "Task", a: Args) -> int:
    """Implements Linux syscall kill(2)."""
    pid, sig = s32(a[0]), s32(a[1])
    _check_sig(sig)
    if pid == -(1 << 31):
        raise SyscallError(errno.ESRCH)
    groups = _groups_for(t, pid)
    if not groups:
        raise SyscallError(errno.ESRCH)
    if sig:
        for g in groups:
            send(t, g.leader, sig, SI_USER, process=True)
    return 0


def _task(t: "Task", tid: int) -> "Task":
    target = t.kernel.pids.task(tid)
    if target is None or target.tg.state == ZOMBIE:
        raise SyscallError(errno.ESRCH)
    return target


def tgkill(t: "Task", a: Args) -> int:
    """Implements Linux syscall tgkill(2)."""
    tgid, tid, sig = s32(a[0]), s32(a[1]), s32(a[2])
    if tgid <= 0 or tid <= 0:
        raise SyscallError(errno.EINVAL)
    _check_sig(sig)
    target = _task(t, tid)
    if target.tgid != tgid:
        raise SyscallError(errno.ESRCH)
    if sig:
        send(t, target, sig, SI_TKILL)
    return 0


def tkill(t: "Task", a: Args) -> int:
    """Implements Linux syscall tkill(2)."""
    tid, sig = s32(a[0]), s32(a[1])
    if tid <= 0:
        raise SyscallError(errno.EINVAL)
    _check_sig(sig)
    target = _task(t, tid)
    if sig:
        send(t, target, sig, SI_TKILL)
    return 0


ENTRIES = (
    Entry("kill", kill, SUPPORTED, "processes of the sandbox only; pid 1 is not shielded"),
    Entry("tgkill", tgkill, SUPPORTED),
    Entry("tkill", tkill, SUPPORTED),
)
