"""clone(): the one way a task is made; fork, vfork, clone and clone3 are its callers.

The child gets the parent's registers (rax = 0; a new stack or TLS when asked),
and for each shareable object either the parent's own (a CLONE_* flag) or a
copy: the MemoryManager (CLONE_VM; otherwise a copy-on-write fork of it), the
FdTable (CLONE_FILES), the FsContext (CLONE_FS), the SignalHandlers
(CLONE_SIGHAND).  A new process is a new ThreadGroup whose parent is the
caller's (or the caller's parent with CLONE_PARENT); CLONE_THREAD makes a thread
of the caller's own process instead, run on a host thread (and a vCPU or stub
thread) of its own like any task.

CLONE_VFORK: the child runs on the parent's host thread until it execs or
exits, and the parent waits meanwhile, as Linux's vfork does.  Running it on
that thread is what lets a vfork child share its parent's address space on
the ptrace platform, where only the thread that traces a stub may drive it.
After an exec the child moves to a host thread of its own.
"""
from __future__ import annotations

import errno

from kvmbox.abi.structs import U32
from kvmbox.errors import SyscallError
from kvmbox.record import replace
from kvmbox.sentry import lifecycle

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from kvmbox.sentry.task import Task

CSIGNAL = 0x000000FF
CLONE_VM, CLONE_FS, CLONE_FILES, CLONE_SIGHAND = 0x100, 0x200, 0x400, 0x800
CLONE_PIDFD, CLONE_PTRACE, CLONE_VFORK, CLONE_PARENT = 0x1000, 0x2000, 0x4000, 0x8000
CLONE_THREAD, CLONE_NEWNS, CLONE_SYSVSEM, CLONE_SETTLS = 0x10000, 0x20000, 0x40000, 0x80000
CLONE_PARENT_SETTID, CLONE_CHILD_CLEARTID, CLONE_DETACHED = 0x100000, 0x200000, 0x400000
CLONE_UNTRACED, CLONE_CHILD_SETTID, CLONE_NEWCGROUP = 0x800000, 0x1000000, 0x2000000
CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWUSER, CLONE_NEWPID = 0x4000000, 0x8000000, 0x10000000, 0x20000000
CLONE_NEWNET, CLONE_IO = 0x40000000, 0x80000000
CLONE_CLEAR_SIGHAND, CLONE_INTO_CGROUP, CLONE_NEWTIME = 0x100000000, 0x200000000, 0x80
_NAMESPACES = (CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER
               | CLONE_NEWPID | CLONE_NEWNET)


def check_flags(flags: int) -> None:
    """Linux's copy_process flag checks, in its order."""
    if flags & (CLONE_NEWNS | CLONE_NEWUSER) and flags & CLONE_FS:
        raise SyscallError(errno.EINVAL)
    if flags & CLONE_THREAD and not flags & CLONE_SIGHAND:
        raise SyscallError(errno.EINVAL)
    if flags & CLONE_SIGHAND and not flags & CLONE_VM:
        raise SyscallError(errno.EINVAL)
    if flags & CLONE_THREAD and flags & (CLONE_NEWUSER | CLONE_NEWPID):
        raise SyscallError(errno.EINVAL)
    if flags & CLONE_PIDFD and flags & CLONE_DETACHED:
        raise SyscallError(errno.EINVAL)


def clone(t: "Task", flags: int, *, exit_signal: int, stack: int = 0, tls: int = 0,
          parent_tid: int = 0, child_tid: int = 0) -> int:
    """Make a child of `t` as clone(2) describes; its tid, in the parent."""
    kernel = t.kernel
    check_flags(flags)
    if flags & _NAMESPACES:
        raise SyscallError(errno.EPERM)       # no namespaces inside the sandbox (as gVisor)
    if flags & CLONE_PIDFD:
        raise SyscallError(errno.EINVAL)      # pidfds are not supported
    if not 0 <= exit_signal <= 64:
        raise SyscallError(errno.EINVAL)
    from kvmbox.sentry.task import Task
    from kvmbox.sentry.threadgroup import ThreadGroup
    table = kernel.pids
    pid = table.allocate()
    platform = kernel.platform
    # --- memory -------------------------------------------------------------------------
    if flags & CLONE_VM:
        mm = lifecycle.share(t.mm)
    else:
        mm = t.mm.fork(platform.new_address_space())
    ctx = None
    try:
        ctx = platform.new_context()
        regs = t.ctx.get_regs()
        regs["rax"] = 0
        if stack:
            regs["rsp"] = stack
        if flags & CLONE_SETTLS:
            regs["fs_base"] = tls
        regs["rcx"], regs["r11"] = regs["rip"], regs["rflags"]   # as the syscall left them
        ctx.set_regs(**regs)
        ctx.set_fpu(t.ctx.get_fpu())
    except BaseException:
        if ctx is not None:
            ctx.release()
        lifecycle.drop(mm)
        raise
    fds = lifecycle.share(t.fds) if flags & CLONE_FILES else t.fds.copy()
    fs = t.fs if flags & CLONE_FS else t.fs.copy()
    sighand = t.sighand if flags & CLONE_SIGHAND else t.sighand.copy()
    if flags & CLONE_CLEAR_SIGHAND:           # caught signals back to SIG_DFL
        from kvmbox.abi.structs import SIGACTION
        from kvmbox.abi.signals import SIG_IGN
        sighand.replace({n: raw for n, raw in sighand.actions.items()
                         if SIGACTION.unpack(raw)[0] == SIG_IGN})
    if flags & CLONE_THREAD:                  # a thread of the caller's process
        g = t.tg
        parent = None
    else:
        parent = t.tg.parent if flags & CLONE_PARENT and t.tg.parent is not None else t.tg
        g = ThreadGroup(pid, parent, {k: list(v) for k, v in t.rlimits.items()}, t.pgid, t.sid)
        g.exit_signal = exit_signal
    child = Task(kernel, ctx, mm, fds, pid, t.exe_path, list(t.argv), g, fs=fs, sighand=sighand)
    if parent is not None:
        mm.rlimit = child.soft_rlimit
    child.envp, child.auxv, child.exe_node = t.envp, t.auxv, t.exe_node
    child.creds = replace(t.creds)
    child.sigmask = t.sigmask
    # A new thread sharing the memory (not vfork's child) starts with no alternate stack.
    child.altstack = t.altstack if flags & (CLONE_VM | CLONE_VFORK) != CLONE_VM else (0, 2, 0)
    child.comm = t.comm
    child.nice = t.nice
    child.affinity = t.affinity
    child.sched_policy = t.sched_policy
    child.fs_base = regs.get("fs_base", 0)
    if flags & CLONE_CHILD_CLEARTID:
        child.clear_child_tid = child_tid
    with table.lock:
        if parent is not None:
            parent.children.append(g)
        table.add(child)
    kernel.publish_identity(child)
    if flags & CLONE_PARENT_SETTID:
        t.mm.copy_out(parent_tid, U32.pack(pid))
    if flags & CLONE_CHILD_SETTID:
        mm.copy_out(child_tid, U32.pack(pid))
    if flags & CLONE_VFORK:
        _run_vfork_child(t, child)
    else:
        lifecycle.start(kernel, child)
    return pid


def _run_vfork_child(parent: "Task", child: "Task") -> None:
    """Run the vfork child here until it execs (then on a thread of its own) or exits."""
    from kvmbox.sentry.runloop import VforkHandoff, run_task
    from kvmbox.errors import SandboxCrash
    kernel = parent.kernel
    child.vfork_parent = parent
    # On ptrace a shared address space is one stub, which also holds the FPU registers:
    # the parent gets its own back when the child is done with the stub.
    fpu = parent.ctx.get_fpu() if child.mm is parent.mm else None
    outcome = None
    try:
        try:
            outcome = run_task(kernel, child, vfork_child=True)
        except VforkHandoff:
            child.vfork_parent = None
            lifecycle.start(kernel, child)
            return
        except SandboxCrash as e:
            kernel.crashed(e)
        lifecycle.finish(kernel, child, outcome)
    finally:
        if fpu is not None and not kernel.stopping:
            parent.ctx.set_fpu(fpu)
