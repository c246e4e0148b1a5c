"""Choosing and delivering signals: queueing rules, default actions, the handler frame,
rt_sigreturn, synchronous faults, syscall restart (Linux kernel/signal.c and
arch/x86/kernel/signal*.c, for one task).

Delivery runs on the task's own thread, between a trap and the next switch
into the guest; queueing (`queue`, `enqueue`) may come from any thread.  Task
state used: sigmask, sigactions (signo -> raw struct sigaction bytes),
pending_signals [(signo, si_code, si_addr, info)], altstack (ss_sp, ss_flags,
ss_size as sigaltstack stored them), saved_sigmask (rt_sigsuspend's mask to
restore), fault_regs (trapno, err, cr2 of the last fault), timers (the
process's ProcessTimers, or None), signal_waiters (signalfds watching).

A pending entry's info may be a LateSiginfo (a POSIX timer's preallocated
signal): it is queued at most once (a timer that fires again while its signal
is pending counts an overrun instead), its siginfo is made when it is dequeued,
and it may then say the signal is void (the timer was deleted or re-set since).
Dequeueing SIGALRM re-arms a periodic ITIMER_REAL, as Linux's dequeue_signal.
"""
from __future__ import annotations

import errno
import struct
TYPE_CHECKING = False  # typing is not imported at run time (start-up cost)

from kvmbox.abi import signals as S
from kvmbox.abi.structs import SIGACTION
from kvmbox.errors import SyscallError
from kvmbox.sentry.signals import frame as F
from kvmbox.sentry.task import TaskExit

if TYPE_CHECKING:  # pragma: no cover
    from kvmbox.platform.base import Fault
    from kvmbox.sentry.task import Task

# Kernel-internal "restart me" returns a handler may raise (never seen by the guest).
ERESTARTSYS, ERESTARTNOINTR, ERESTARTNOHAND, ERESTART_RESTARTBLOCK = 512, 513, 514, 516
NR_RT_SIGRETURN = 15
SYSCALL_INSN_LEN = 2

SYNCHRONOUS_MASK = sum(S.sigbit(s) for s in (S.SIGSEGV, S.SIGBUS, S.SIGILL, S.SIGTRAP, S.SIGFPE, S.SIGSYS))
# RFLAGS bits rt_sigreturn takes from the frame (FIX_EFLAGS): AC OF DF TF SF ZF AF PF CF RF.
FIX_EFLAGS = 0x40000 | 0x800 | 0x400 | 0x100 | 0x80 | 0x40 | 0x10 | 0x4 | 0x1 | 0x10000
HANDLER_CLEAR_FLAGS = 0x400 | 0x100 | 0x10000      # DF TF RF cleared at handler entry
NO_ALTSTACK = (0, S.SS_DISABLE, 0)
_IGNORED_BY_DEFAULT = (S.DefaultAction.IGNORE, S.DefaultAction.CONTINUE)

# si_code values for faults.
SEGV_MAPERR, SEGV_ACCERR = 1, 2
ILL_ILLOPN = 2
FPE_INTDIV, FPE_FLTDIV, FPE_FLTOVF, FPE_FLTUND, FPE_FLTRES, FPE_FLTINV = 1, 3, 4, 5, 6, 7
TRAP_TRACE = 2
BUS_ADRALN, BUS_ADRERR = 1, 2


class SignalExit(TaskExit):
    """A signal's default action ended the task (terminate, core, or stop)."""

    def __init__(self, signo: int, *, core: bool = False, report: str | None = None) -> None:
        super().__init__(0, signo, core)
        self.report = report


# --- dispositions --------------------------------------------------------------------
def action(t: "Task", signo: int) -> tuple[int, int, int, int]:
    """(handler, sa_flags, sa_restorer, sa_mask) of signo."""
    raw = t.sigactions.get(signo)
    return SIGACTION.unpack(raw) if raw else (S.SIG_DFL, 0, 0, 0)


def _set_handler(t: "Task", signo: int, handler: int) -> None:
    _h, flags, restorer, mask = action(t, signo)
    t.sighand.set(signo, SIGACTION.pack(handler, flags, restorer, mask))


def ignored(signo: int, handler: int) -> bool:
    """Whether a signal with this handler is discarded (SIG_IGN, or SIG_DFL whose default is to ignore)."""
    if handler == S.SIG_IGN:
        return True
    return handler == S.SIG_DFL and S.DEFAULT_ACTIONS.get(signo) in _IGNORED_BY_DEFAULT


def flush(t: "Task", signo: int) -> None:
    """Drop every pending instance of signo in t's process, the process's queue and each
    thread's own (sigaction set it to be ignored; a SIGCONT cancels stops)."""
    g = t.tg
    gone = []
    with t.sig_lock:
        for q in [g.shared_pending] + [th.pending_signals for th in g.tasks]:
            gone += [p for p in q if p[0] == signo]
            q[:] = [p for p in q if p[0] != signo]
    for p in gone:
        if isinstance(p[3], LateSiginfo):
            p[3].dropped()


class LateSiginfo:
    """A pending signal's siginfo made when it is dequeued (a POSIX timer's, with the
    overrun count of that moment).  Queued at most once while pending."""

    def __call__(self) -> bytes | None:
        """The 128-byte siginfo, or None: the signal is void and is dropped unseen."""
        raise NotImplementedError

    def dropped(self) -> None:
        """The pending signal was discarded unseen (its action became SIG_IGN)."""


# What enqueue() did with a signal.
QUEUED, ALREADY_PENDING, IGNORED = "queued", "already pending", "ignored"


def enqueue(t: "Task", signo: int, code: int = 0, addr: int = 0, info=None) -> str:
    """Make signo pending for thread t (any host thread).  A LateSiginfo already pending is
    not queued again; an ignored, unblocked signal is discarded now; a standard signal
    already pending is not queued twice; real-time ones queue.  Returns QUEUED,
    ALREADY_PENDING or IGNORED."""
    return _enqueue(t, t.pending_signals, signo, code, addr, info)


def enqueue_shared(g, t: "Task", signo: int, code: int = 0, addr: int = 0, info=None) -> str:
    """enqueue() for process `g` (t: the thread whose mask decides whether an ignored
    signal is dropped: Linux asks the task the signal was sent to)."""
    return _enqueue(t, g.shared_pending, signo, code, addr, info)


def _enqueue(t: "Task", pending: list, signo: int, code: int, addr: int, info) -> str:
    late = isinstance(info, LateSiginfo)
    dropped = (signo != S.SIGKILL and not t.sigmask & S.sigbit(signo)
               and ignored(signo, action(t, signo)[0]))
    with t.sig_lock:
        if late and any(p[3] is info for p in pending):
            return ALREADY_PENDING
        if dropped:
            return IGNORED
        if not late and signo < S.SIGRTMIN and any(p[0] == signo for p in pending):
            return ALREADY_PENDING
        pending.append((signo, code, addr, info))
    for th in (t.tg.tasks if pending is t.tg.shared_pending else (t,)):
        waiters = th.signal_waiters
        if waiters:
            waiters.notify()                      # signalfds reading this task
    return QUEUED


def queue(t: "Task", signo: int, code: int = 0, addr: int = 0, info=None) -> bool:
    """enqueue(); False when the signal was not queued (ignored, or already pending)."""
    return enqueue(t, signo, code, addr, info) is QUEUED


def force(t: "Task", signo: int, code: int, addr: int = 0) -> None:
    """force_sig: a signal the task cannot block or ignore (a fault, a bad sigreturn);
    if it was blocked or ignored its action becomes SIG_DFL and it is unblocked."""
    handler = action(t, signo)[0]
    bit = S.sigbit(signo)
    if t.sigmask & bit or handler == S.SIG_IGN:
        _set_handler(t, signo, S.SIG_DFL)
        t.sigmask &= ~bit
    with t.sig_lock:
        t.pending_signals[:] = [p for p in t.pending_signals if p[0] != signo]
        t.pending_signals.insert(0, (signo, code, addr, None))


def pending_mask(t: "Task") -> int:
    """Every pending signal, blocked or not, as a mask."""
    m = 0
    for p in list(t.pending_signals) + list(t.tg.shared_pending):
        m |= S.sigbit(p[0])
    return m


def deliverable_mask(t: "Task") -> int:
    """Pending signals that are not blocked, as a mask."""
    return pending_mask(t) & ~t.sigmask


def dequeue(t: "Task", allowed: int) -> tuple | None:
    """Remove and return the signal Linux would take next among `allowed` (a mask):
    synchronous (fault) signals first, then the lowest number, oldest first.
    Returns (signo, code, addr, info), a LateSiginfo's info made now (void ones are
    skipped); taking SIGALRM re-arms a periodic ITIMER_REAL."""
    while True:
        best, best_key, queue = -1, (9, 0, 0), None
        with t.sig_lock:
            # The thread's own signals before the process's, as Linux's dequeue_signal.
            for rank, q in enumerate((t.pending_signals, t.tg.shared_pending)):
                for i, p in enumerate(q):
                    bit = S.sigbit(p[0])
                    if allowed & bit:
                        key = (rank, 0 if bit & SYNCHRONOUS_MASK else 1, p[0])
                        if key < best_key:
                            best, best_key, queue = i, key, q
            if queue is None:
                return None
            item = queue.pop(best)
        signo, code, addr, info = item
        if signo == S.SIGALRM and code != F.SI_TKILL and t.timers is not None:
            t.timers.sigalrm_dequeued()
        if isinstance(info, LateSiginfo):
            info = info()                         # outside sig_lock: it takes the timer's lock
            if info is None:
                continue
            item = (signo, code, addr, info)
        return item


def siginfo_for(t: "Task", signo: int, code: int, addr: int, info=None) -> bytes:
    """The siginfo_t delivered for a dequeued signal: `info` when its sender built one
    (a callable is asked now, e.g. for a timer's overrun count), else from code/addr."""
    if info is not None:
        return info() if callable(info) else info
    return F.siginfo(signo, code, addr=addr, pid=t.tgid, uid=t.creds.uid)


# --- default actions -------------------------------------------------------------------
def default_action(t: "Task", signo: int) -> None:
    """Carry out signo's default action: return when it ignores, else raise SignalExit."""
    act = S.DEFAULT_ACTIONS.get(signo, S.DefaultAction.TERMINATE)
    if act in _IGNORED_BY_DEFAULT:
        return
    if act is S.DefaultAction.STOP:
        if t.tg.parent is not None or len(t.kernel.pids.live_groups()) > 1:
            from kvmbox.sentry import lifecycle
            lifecycle.stopped(t, signo)       # until SIGCONT or SIGKILL
            return
        # init alone: nobody in the sandbox could send SIGCONT, so the run ends here,
        # reported as a shell reports a stopped job: 128+N.
        name = S.SIGNAL_NAMES.get(signo, str(signo))
        raise SignalExit(signo, report=f"kvmbox: stopped by {name}; nothing can continue it")
    raise SignalExit(signo, core=act is S.DefaultAction.CORE)


# --- the alternate stack -------------------------------------------------------------
def on_sig_stack(t: "Task", sp: int) -> bool:
    ss_sp, flags, size = t.altstack
    if flags & S.SS_AUTODISARM:
        return False
    return sp > ss_sp and sp - ss_sp <= size


def sas_ss_flags(t: "Task", sp: int) -> int:
    if not t.altstack[2]:
        return S.SS_DISABLE
    return S.SS_ONSTACK if on_sig_stack(t, sp) else 0


def set_altstack(t: "Task", ss_sp: int, flags: int, size: int, sp: int) -> None:
    """do_sigaltstack's update (the caller reads the old value first)."""
    if on_sig_stack(t, sp):
        raise SyscallError(errno.EPERM)
    mode = flags & ~S.SS_AUTODISARM
    if mode not in (0, S.SS_ONSTACK, S.SS_DISABLE):
        raise SyscallError(errno.EINVAL)
    if (ss_sp, flags, size) == t.altstack:
        return
    if mode == S.SS_DISABLE:
        ss_sp = size = 0
    elif size < S.MINSIGSTKSZ:
        raise SyscallError(errno.ENOMEM)
    t.altstack = (ss_sp, flags, size)


# --- delivery ----------------------------------------------------------------------------
def after_syscall(t: "Task", nr: int, ret: int) -> None:
    """Before returning to the guest from syscall `nr` (result `ret` already set):
    deliver what is pending, and restart or fail with EINTR an interrupted call."""
    restart = -ret if -ERESTART_RESTARTBLOCK <= ret <= -ERESTARTSYS and nr != NR_RT_SIGRETURN else 0
    deliver_pending(t, restart, nr)


def deliver_pending(t: "Task", restart: int = 0, nr: int = 0) -> None:
    """Deliver every pending unblocked signal (nested frames, the last taken runs first)."""
    while t.pending_signals or t.tg.shared_pending:
        item = dequeue(t, ~t.sigmask)
        if item is None:
            break
        signo, code, addr, info = item
        handler, flags, restorer, smask = action(t, signo)
        if handler == S.SIG_IGN:
            continue
        if handler == S.SIG_DFL:
            default_action(t, signo)
            continue
        if flags & S.SA_RESETHAND:
            _set_handler(t, signo, S.SIG_DFL)
        if restart:
            if restart == ERESTARTNOINTR or (restart == ERESTARTSYS and flags & S.SA_RESTART):
                _rewind(t, nr)
            else:
                t.ctx.set_return(-errno.EINTR)
            restart = 0
        setup_frame(t, signo, code, addr, handler, flags, restorer, smask, info)
    if restart:                                   # no handler ran: the call starts over
        if restart == ERESTART_RESTARTBLOCK:
            t.ctx.set_return(-errno.EINTR)
        else:
            _rewind(t, nr)
    if t.saved_sigmask is not None:               # rt_sigsuspend's mask, no handler took it
        t.sigmask = t.saved_sigmask
        t.saved_sigmask = None


def _rewind(t: "Task", nr: int) -> None:
    rip = t.ctx.get_regs()["rip"]
    t.ctx.set_regs(rip=(rip - SYSCALL_INSN_LEN) & (1 << 64) - 1)
    t.ctx.set_return(nr)


def setup_frame(t: "Task", signo: int, code: int, addr: int, handler: int, flags: int,
                restorer: int, smask: int, info=None) -> None:
    """Push the rt_sigframe and enter the handler (x64_setup_rt_frame + signal_delivered)."""
    ctx = t.ctx
    regs = ctx.get_regs()
    rsp = regs["rsp"]
    sp = rsp - F.RED_ZONE
    uc_stack = t.altstack
    nested = on_sig_stack(t, rsp)
    entering = False
    if flags & S.SA_ONSTACK and sas_ss_flags(t, sp) == 0:
        sp = t.altstack[0] + t.altstack[2]
        entering = True
    size, xfeatures = ctx.fpu_layout()
    frame, fpstate = F.frame_layout(sp, size)
    ss_sp, _f, ss_size = t.altstack
    if (nested or entering) and not (frame > ss_sp and frame - ss_sp <= ss_size):
        return _setup_failed(t, signo)
    if not flags & S.SA_RESTORER:                 # x86-64 requires a restorer
        return _setup_failed(t, signo)
    mask = t.saved_sigmask if t.saved_sigmask is not None else t.sigmask
    trapno, err, cr2 = t.fault_regs
    try:
        t.mm.copy_out(fpstate, F.fpstate_image(ctx.get_fpu(), xfeatures))
        t.mm.copy_out(frame, F.pack_frame(
            restorer=restorer, regs=regs, uc_stack=uc_stack, err=err, trapno=trapno,
            oldmask=mask, cr2=cr2, fpstate=fpstate, sigmask=mask,
            info=siginfo_for(t, signo, code, addr, info)))
    except SyscallError:
        return _setup_failed(t, signo)
    if entering and t.altstack[1] & S.SS_AUTODISARM:
        t.altstack = NO_ALTSTACK
    t.saved_sigmask = None
    ctx.restore_regs(rip=handler, rsp=frame, rdi=signo, rsi=frame + F.FRAME_INFO,
                     rdx=frame + F.FRAME_UC, rax=0,
                     rflags=regs["rflags"] & ~HANDLER_CLEAR_FLAGS)
    ctx.set_fpu(F.init_fpu_image(size))
    new = t.sigmask | smask
    if not flags & S.SA_NODEFER:
        new |= S.sigbit(signo)
    t.sigmask = new & ~S.UNBLOCKABLE_MASK


def _setup_failed(t: "Task", signo: int) -> None:
    """force_sigsegv: the frame could not be written; SIGSEGV (SIG_DFL if it was SIGSEGV)."""
    if signo == S.SIGSEGV:
        _set_handler(t, S.SIGSEGV, S.SIG_DFL)
    force(t, S.SIGSEGV, F.SI_KERNEL)


# --- rt_sigreturn --------------------------------------------------------------------------
def sigreturn(t: "Task") -> int:
    """Restore what setup_frame saved; a frame that cannot be used raises SIGSEGV."""
    ctx = t.ctx
    cur = ctx.get_regs()
    frame = cur["rsp"] - 8
    try:
        uc = t.mm.copy_in(frame + F.FRAME_UC, F.UCONTEXT_SIZE)
    except SyscallError:
        return _badframe(t)
    _flags, uc_stack, regs, fpstate, mask = F.unpack_ucontext(uc)
    t.sigmask = mask & ~S.UNBLOCKABLE_MASK
    regs["rflags"] = (cur["rflags"] & ~FIX_EFLAGS) | (regs["rflags"] & FIX_EFLAGS)
    ctx.restore_regs(**regs)
    if not _restore_fpu(t, fpstate):
        return _badframe(t, regs["rax"])
    try:
        set_altstack(t, *uc_stack, regs["rsp"])
    except SyscallError:
        pass                                      # restore_altstack ignores do_sigaltstack's errors
    return regs["rax"]


def _badframe(t: "Task", rax: int = 0) -> int:
    force(t, S.SIGSEGV, F.SI_KERNEL)
    return rax


def _restore_fpu(t: "Task", fpstate: int) -> bool:
    ctx = t.ctx
    size, xfeatures = ctx.fpu_layout()
    try:
        if not fpstate:
            ctx.set_fpu(F.init_fpu_image(size))
            return True
        legacy = t.mm.copy_in(fpstate, F.FXSAVE_SIZE)
        magic1, ext, xf, xsz = F.sw_bytes(legacy)
        fx_only = not (magic1 == F.FP_XSTATE_MAGIC1 and F.FXSAVE_SIZE + 64 <= xsz <= size and xsz <= ext)
        if not fx_only:
            fx_only = t.mm.copy_in(fpstate + xsz, 4) != struct.pack("<I", F.FP_XSTATE_MAGIC2)
        if fx_only:
            if fpstate % 16:
                return False
            image = F.image_from_frame(legacy, F.FXSAVE_SIZE, F.XFEATURE_MASK_FPSSE, size, True)
        else:
            if fpstate % 64:
                return False
            image = F.image_from_frame(t.mm.copy_in(fpstate, xsz), xsz, xf & xfeatures, size, False)
        ctx.set_fpu(image)
    except (SyscallError, ValueError):
        return False
    return True


# --- synchronous faults ----------------------------------------------------------------------
def fault_siginfo(t: "Task", fault: "Fault") -> tuple[int, int, int]:
    """(signo, si_code, si_addr) Linux gives a user-mode CPU exception."""
    v, rip = fault.vector, fault.rip
    if v == 14:
        if t.mm.beyond_eof(fault.address, fault.error_code):
            return S.SIGBUS, BUS_ADRERR, fault.address    # a file mapping's page past EOF
        found = fault.address < (1 << 47) and t.mm.vmas.find(fault.address) is not None
        return S.SIGSEGV, SEGV_ACCERR if found else SEGV_MAPERR, fault.address
    if v == 0:
        return S.SIGFPE, FPE_INTDIV, rip
    if v == 6:
        return S.SIGILL, ILL_ILLOPN, rip
    if v == 3:
        return S.SIGTRAP, F.SI_KERNEL, 0
    if v == 1:
        return S.SIGTRAP, TRAP_TRACE, rip
    if v in (16, 19):
        return S.SIGFPE, _fpe_code(t, v), rip
    if v == 17:
        return S.SIGBUS, BUS_ADRALN, 0
    if v in (11, 12):
        return S.SIGBUS, F.SI_KERNEL, 0
    return S.SIGSEGV, F.SI_KERNEL, 0


def _fpe_code(t: "Task", vector: int) -> int:
    try:
        image = t.ctx.get_fpu()
    except (OSError, ValueError):
        return 0
    if vector == 16:
        cwd, swd = struct.unpack_from("<HH", image, 0)
        err = swd & ~cwd
    else:
        (mxcsr,) = struct.unpack_from("<I", image, F.MXCSR_OFF)
        err = ~(mxcsr >> 7) & mxcsr
    for bit, code in ((0x1, FPE_FLTINV), (0x4, FPE_FLTDIV), (0x8, FPE_FLTOVF), (0x12, FPE_FLTUND),
                      (0x20, FPE_FLTRES)):
        if err & bit:
            return code
    return 0


def deliver_fault(t: "Task", fault: "Fault") -> bool:
    """Give a CPU fault to the program's handler; False when it takes the default action
    instead (no handler, ignored, or blocked: Linux's force_sig kills then)."""
    signo, code, addr = fault_siginfo(t, fault)
    cr2 = fault.address if fault.vector == 14 else t.fault_regs[2]
    err = fault.error_code | (4 if fault.vector == 14 else 0)
    t.fault_regs = (fault.vector, err, cr2)
    handler = action(t, signo)[0]
    if handler in (S.SIG_DFL, S.SIG_IGN) or t.sigmask & S.sigbit(signo):
        return False
    force(t, signo, code, addr)
    deliver_pending(t)
    return True
