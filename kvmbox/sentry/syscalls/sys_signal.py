"""Signal syscalls: dispositions, masks, the alternate stack, waiting, sending to self, rt_sigreturn.

Delivery itself (frames, default actions, restarts) is kvmbox.sentry.signals.deliver,
run by the kernel before each return to the guest.  Signals come from the
task itself (raise, SIGPIPE, faults), from other processes (kill, tgkill:
sys_kill.py) and from timers on other host threads (Task.send_signal).  Waits for a
signal (pause, rt_sigsuspend, rt_sigtimedwait) block in kvmbox/sentry/waiter.py.

A stop signal's default action stops the process until SIGCONT
(kvmbox/sentry/lifecycle.py); when init is the only process, nothing could
continue it, so the run ends (status 128+N, report "stopped by ...").
"""
from __future__ import annotations

import errno
import struct
import time
TYPE_CHECKING = False  # typing is not imported at run time (start-up cost)

from kvmbox.abi import signals, structs
from kvmbox.errors import SyscallError
from kvmbox.sentry.signals import deliver
from kvmbox.sentry.syscalls.args import s32
from kvmbox.sentry.syscalls.table import PARTIAL, SUPPORTED, Entry
from kvmbox.sentry.waiter import block

if TYPE_CHECKING:  # pragma: no cover
    from kvmbox.sentry.task import Task

Args = tuple[int, int, int, int, int, int]

SA_EXPOSE_TAGBITS = 0x800
# sa_flags bits Linux keeps (UAPI_SA_FLAGS on x86-64); others read back as 0.
KNOWN_SA_FLAGS = (signals.SA_NOCLDSTOP | signals.SA_NOCLDWAIT | signals.SA_SIGINFO
                  | signals.SA_ONSTACK | signals.SA_RESTART | signals.SA_NODEFER
                  | signals.SA_RESETHAND | SA_EXPOSE_TAGBITS | signals.SA_RESTORER)
DEFAULT_SIGACTION = bytes(structs.SIGACTION.size)
# (ss_sp, ss_flags, ss_size) of a task that never called sigaltstack.
NO_ALTSTACK = deliver.NO_ALTSTACK
TIMESPEC = struct.Struct("<qq")


def _check_sigsetsize(size: int) -> None:
    if size != signals.SIGSET_SIZE:
        raise SyscallError(errno.EINVAL)


def _read_set(t: "Task", addr: int) -> int:
    (mask,) = structs.SIGSET.unpack(t.mm.copy_in(addr, structs.SIGSET.size))
    return mask & ~signals.UNBLOCKABLE_MASK


def _user_sp(t: "Task") -> int:
    return t.ctx.get_regs()["rsp"]


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
        t.sighand.set(sig, structs.SIGACTION.pack(
            handler, flags & KNOWN_SA_FLAGS, restorer, mask & ~signals.UNBLOCKABLE_MASK))
        if deliver.ignored(sig, handler):
            deliver.flush(t, sig)          # pending instances are discarded, blocked or not
        elif t.timers is not None and structs.SIGACTION.unpack(old)[0] == signals.SIG_IGN:
            t.timers.unignore(sig)         # periodic timers waiting while it was ignored
    if oact:
        t.mm.copy_out(oact, old)
    return 0


def rt_sigprocmask(t: "Task", a: Args) -> int:
    """Implements Linux syscall rt_sigprocmask(2)."""
    how, nset, oset, sigsetsize = s32(a[0]), a[1], a[2], a[3]
    _check_sigsetsize(sigsetsize)
    old = t.sigmask
    if nset:
        mask = _read_set(t, nset)
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


def rt_sigreturn(t: "Task", a: Args) -> int:
    """Implements Linux syscall rt_sigreturn(2)."""
    return deliver.sigreturn(t)


def sigaltstack(t: "Task", a: Args) -> int:
    """Implements Linux syscall sigaltstack(2)."""
    ss, old_ss = a[0], a[1]
    sp = _user_sp(t) if ss or old_ss else 0
    ss_sp, flags, size = t.altstack
    old = (ss_sp, deliver.sas_ss_flags(t, sp) | (flags & signals.SS_AUTODISARM), size)
    if ss:
        new = structs.STACK_T.unpack(t.mm.copy_in(ss, structs.STACK_T.size))
        deliver.set_altstack(t, *new, sp)
    if old_ss:
        t.mm.copy_out(old_ss, structs.STACK_T.pack(*old))
    return 0


def rt_sigpending(t: "Task", a: Args) -> int:
    """Implements Linux syscall rt_sigpending(2)."""
    uset, sigsetsize = a[0], a[1]
    if sigsetsize > signals.SIGSET_SIZE:
        raise SyscallError(errno.EINVAL)
    pending = deliver.pending_mask(t)
    t.mm.copy_out(uset, structs.SIGSET.pack(pending & t.sigmask)[:sigsetsize])
    return 0


def rt_sigsuspend(t: "Task", a: Args) -> int:
    """Implements Linux syscall rt_sigsuspend(2)."""
    uset, sigsetsize = a[0], a[1]
    _check_sigsetsize(sigsetsize)
    mask = _read_set(t, uset)
    t.saved_sigmask = t.sigmask
    t.sigmask = mask
    block(t, _never, interrupt=deliver.ERESTARTNOHAND)   # only a signal (or a stop) ends it
    return 0  # not reached


def pause(t: "Task", a: Args) -> int:
    """Implements Linux syscall pause(2)."""
    block(t, _never, interrupt=deliver.ERESTARTNOHAND)
    return 0  # not reached


def _never() -> bool:
    return False


def rt_sigtimedwait(t: "Task", a: Args) -> int:
    """Implements Linux syscall rt_sigtimedwait(2)."""
    uthese, uinfo, uts, sigsetsize = a[0], a[1], a[2], a[3]
    _check_sigsetsize(sigsetsize)
    these = _read_set(t, uthese) & ~signals.UNBLOCKABLE_MASK
    deadline = None
    if uts:
        sec, nsec = TIMESPEC.unpack(t.mm.copy_in(uts, TIMESPEC.size))
        if sec < 0 or not 0 <= nsec < 1_000_000_000:
            raise SyscallError(errno.EINVAL)
        deadline = time.monotonic() + sec + nsec / 1e9
    item = deliver.dequeue(t, these)
    if item is None:
        if deadline is None or deadline > time.monotonic():
            # As do_sigtimedwait: `these` are unblocked for the wait, so one of them
            # arriving ends it, and so does any other signal the task does not block (EINTR).
            block(t, lambda: deliver.pending_mask(t) & these, deadline=deadline,
                  on_signal=lambda: bool(deliver.deliverable_mask(t) & ~these))
        item = deliver.dequeue(t, these)
        if item is None:
            raise SyscallError(errno.EAGAIN)
    signo, code, addr, info = item
    if uinfo:
        t.mm.copy_out(uinfo, deliver.siginfo_for(t, signo, code, addr, info))
    return signo


ENTRIES = (
    Entry("rt_sigaction", rt_sigaction, SUPPORTED,
          "KVM: queries answered in the guest while the process has one thread"),
    Entry("rt_sigprocmask", rt_sigprocmask, SUPPORTED),
    Entry("rt_sigreturn", rt_sigreturn, SUPPORTED),
    Entry("sigaltstack", sigaltstack, SUPPORTED),
    Entry("rt_sigpending", rt_sigpending, SUPPORTED),
    Entry("rt_sigsuspend", rt_sigsuspend, PARTIAL, "blocks until the run stops unless a signal is pending"),
    Entry("pause", pause, PARTIAL, "blocks until the run stops unless a signal is pending"),
    Entry("rt_sigtimedwait", rt_sigtimedwait, PARTIAL, "only signals already pending can arrive"),
)
