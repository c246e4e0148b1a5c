"""Signal disposition syscalls: rt_sigaction, rt_sigprocmask, sigaltstack (recorded only).

Delivery is future work: these handlers keep the state Linux keeps so that a later
signal-delivery module finds it, and report back what was set.
"""
from __future__ import annotations

import errno
TYPE_CHECKING = False  # typing is not imported at run time (start-up cost)

from kvmbox.abi import signals, structs
from kvmbox.errors import SyscallError
from kvmbox.sentry.syscalls.args import s32
from kvmbox.sentry.syscalls.table import PARTIAL, Entry

if TYPE_CHECKING:  # pragma: no cover
    from kvmbox.sentry.task import Task

Args = tuple[int, int, int, int, int, int]

_NOTE = "recorded; delivery comes later"
SA_EXPOSE_TAGBITS = 0x800
# sa_flags bits Linux keeps (UAPI_SA_FLAGS on x86-64); others read back as 0.
KNOWN_SA_FLAGS = (signals.SA_NOCLDSTOP | signals.SA_NOCLDWAIT | signals.SA_SIGINFO
                  | signals.SA_ONSTACK | signals.SA_RESTART | signals.SA_NODEFER
                  | signals.SA_RESETHAND | SA_EXPOSE_TAGBITS | signals.SA_RESTORER)
DEFAULT_SIGACTION = bytes(structs.SIGACTION.size)
# (ss_sp, ss_flags, ss_size) of a task that never called sigaltstack.
NO_ALTSTACK = (0, signals.SS_DISABLE, 0)


def _check_sigsetsize(size: int) -> None:
    if size != signals.SIGSET_SIZE:
        raise SyscallError(errno.EINVAL)


def rt_sigaction(t: "Task", a: Args) -> int:
    """Implements Linux syscall rt_sigaction(2)."""
    sig, act, oact, sigsetsize = s32(a[0]), a[1], a[2], a[3]
    _check_sigsetsize(sigsetsize)
    new = t.mm.copy_in(act, structs.SIGACTION.size) if act else None
    if not 1 <= sig <= signals.NSIG:
        raise SyscallError(errno.EINVAL)
    if new is not None and sig in (signals.SIGKILL, signals.SIGSTOP):
        raise SyscallError(errno.EINVAL)
    old = t.sigactions.get(sig, DEFAULT_SIGACTION)
    if new is not None:
        handler, flags, restorer, mask = structs.SIGACTION.unpack(new)
        t.sigactions[sig] = structs.SIGACTION.pack(
            handler, flags & KNOWN_SA_FLAGS, restorer, mask & ~signals.UNBLOCKABLE_MASK)
    if oact:
        t.mm.copy_out(oact, old)
    return 0


def rt_sigprocmask(t: "Task", a: Args) -> int:
    """Implements Linux syscall rt_sigprocmask(2)."""
    how, nset, oset, sigsetsize = s32(a[0]), a[1], a[2], a[3]
    _check_sigsetsize(sigsetsize)
    old = t.sigmask
    if nset:
        (mask,) = structs.SIGSET.unpack(t.mm.copy_in(nset, structs.SIGSET.size))
        mask &= ~signals.UNBLOCKABLE_MASK
        if how == signals.SIG_BLOCK:
            t.sigmask = old | mask
        elif how == signals.SIG_UNBLOCK:
            t.sigmask = old & ~mask
        elif how == signals.SIG_SETMASK:
            t.sigmask = mask
        else:
            raise SyscallError(errno.EINVAL)
    if oset:
        t.mm.copy_out(oset, structs.SIGSET.pack(old))
    return 0


def sigaltstack(t: "Task", a: Args) -> int:
    """Implements Linux syscall sigaltstack(2)."""
    ss, old_ss = a[0], a[1]
    old = getattr(t, "altstack", NO_ALTSTACK)
    if ss:
        sp, flags, size = structs.STACK_T.unpack(t.mm.copy_in(ss, structs.STACK_T.size))
        mode = flags & ~signals.SS_AUTODISARM
        if mode not in (0, signals.SS_ONSTACK, signals.SS_DISABLE):
            raise SyscallError(errno.EINVAL)
        if mode == signals.SS_DISABLE:
            t.altstack = NO_ALTSTACK
        elif size < signals.MINSIGSTKSZ:
            raise SyscallError(errno.ENOMEM)
        else:
            t.altstack = (sp, flags & signals.SS_AUTODISARM, size)
    if old_ss:
        t.mm.copy_out(old_ss, structs.STACK_T.pack(*old))
    return 0


ENTRIES = (
    Entry("rt_sigaction", rt_sigaction, PARTIAL, _NOTE),
    Entry("rt_sigprocmask", rt_sigprocmask, PARTIAL, _NOTE),
    Entry("sigaltstack", sigaltstack, PARTIAL, _NOTE),
)
