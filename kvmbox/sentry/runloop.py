"""The run loop of one task: trap -> dispatch -> resume, on the task's own host thread.

Data flows one way: the platform returns an Event, the loop dispatches a
syscall through the table (one tuple index, no name lookups), a handler works
on the Task, and the result goes back in the register frame.  Faults are
offered to the MemoryManager (demand paging, stack growth) and otherwise end
the task with the signal Linux would send.

The Sentry lock: handlers of different tasks run one at a time, under
`kernel.bkl`; a task holds it from a trap until it returns to guest code, and
lets go of it while it waits (kvmbox/sentry/waiter.py block()).  Guest code of
different tasks runs in parallel.  This is a departure from gVisor's
fine-grained locks: the Python Sentry runs one thread at a time under the GIL
anyway, and one lock makes every handler safe against every other without
auditing each object (see docs/processes.md).
"""
from __future__ import annotations

import errno
import signal as _signal
import threading

from kvmbox.errors import SandboxCrash, SyscallError
from kvmbox.mm.fault import OutOfFrames
from kvmbox.platform.base import INTERRUPTED, SYSCALL, Fault
from kvmbox.sentry import faults
from kvmbox.sentry import lifecycle
from kvmbox.sentry.lifecycle import drop
from kvmbox.sentry.threadgroup import STOPPED
from kvmbox.sentry.signals import deliver
from kvmbox.sentry.task import ImageReplaced, Task, TaskExit
from kvmbox.sentry.waiter import Stopped

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from kvmbox.sentry.kernel import Kernel, RunOutcome


class VforkHandoff(Exception):
    """A vfork child running on its parent's host thread has exec'd: the parent resumes,
    and the child goes on in a host thread of its own."""


def run_task(kernel: "Kernel", task: Task, *, vfork_child: bool = False) -> "RunOutcome":
    """Run `task` until it exits or is killed (or, for a vfork child run on its parent's
    thread, until it execs: VforkHandoff).  Called with kernel.bkl held; returns with it held."""
    from kvmbox.sentry.kernel import RunOutcome
    bkl = kernel.bkl
    ctx = task.ctx
    switch, args_of, set_return = ctx.switch, ctx.syscall_args, ctx.set_return
    aspace = task.mm.aspace
    table = kernel.table
    nslots = len(table)
    trace = kernel.trace
    counts = kernel.syscall_counts
    on_thread = kernel.on_thread
    ident = threading.get_ident()
    prev = on_thread.get(ident)
    on_thread[ident] = task
    g = task.tg
    shared = g.shared_pending              # the process's signals (one list for its life)
    try:
        while True:
            if task.killed:
                raise Stopped()
            if g.state is STOPPED:             # another thread took a stop signal
                lifecycle.wait_while_stopped(task)
            if task.sighand.stamp is not ctx.sig_stamp:
                kernel.publish_sigactions(task)
            bkl.release()
            try:
                ev = switch(aspace)
            finally:
                bkl.acquire()
            if ev is SYSCALL:
                regs = args_of()
                nr = regs[0]
                if nr < nslots:
                    rec = table[nr]
                    counts[nr] += 1
                else:
                    rec = None
                handler = rec.handler if rec is not None else None
                if handler is not None:
                    try:
                        ret = handler(task, regs[1:])
                    except SyscallError as e:
                        ret = -e.errno
                    except TaskExit:
                        if trace is not None:
                            kernel._trace_call(task, rec, regs, None)
                        raise
                    except ImageReplaced as e:      # execve: a new image in this task
                        if trace is not None:
                            kernel._trace_call(task, rec, regs, 0, mm=e.old_mm)
                        drop(e.old_mm)               # a vfork parent may still use it
                        ctx = task.ctx
                        switch, args_of, set_return = ctx.switch, ctx.syscall_args, ctx.set_return
                        aspace = task.mm.aspace
                        if task.pending_signals or shared:
                            deliver.deliver_pending(task)
                        if vfork_child:
                            raise VforkHandoff() from None
                        continue
                    except (Stopped, SandboxCrash):
                        raise
                    except Exception as e:  # a Sentry bug: end the sandbox, not the host
                        raise SandboxCrash(f"kvmbox: internal error in {rec.name}(): "
                                           f"{type(e).__name__}: {e}") from e
                else:
                    ret = kernel._unsupported(nr, rec)
                set_return(ret)
                if trace is not None:
                    kernel._trace_call(task, rec, regs, ret)
                if task.pending_signals or shared or -516 <= ret <= -512:
                    deliver.after_syscall(task, nr, ret)
            elif ev is INTERRUPTED:
                ctx.clear_interrupt()
                if kernel.stopping or task.killed:
                    raise Stopped()
                if task.pending_signals or shared:   # sent from another thread (a timer, a task)
                    deliver.deliver_pending(task)
            else:
                assert isinstance(ev, Fault)
                if ev.vector == 14:
                    try:
                        if task.mm.handle_fault(ev.address, ev.error_code):
                            continue
                    except OutOfFrames:
                        return out_of_memory(kernel)
                    ev = faults.resolve_access(ev, task)    # ptrace: read or write?
                if ctx.fast_fault(ev):             # in the platform's in-guest rt_sigaction
                    continue
                if deliver.deliver_fault(task, ev):
                    continue
                return fatal_fault(task, ev)
    except TaskExit as e:
        if e.signal:
            return RunOutcome(128 + e.signal, e.signal, core=e.core,
                              report=getattr(e, "report", None))
        return RunOutcome(e.status, 0)
    except Stopped:
        if kernel.stopping:
            return RunOutcome(128 + _signal.SIGKILL, _signal.SIGKILL, timed_out=True)
        return RunOutcome(128 + _signal.SIGKILL, _signal.SIGKILL)
    finally:
        if prev is None:
            on_thread.pop(ident, None)
        else:
            on_thread[ident] = prev


def out_of_memory(kernel: "Kernel") -> "RunOutcome":
    """Guest memory ran out under a page the program may use: killed, as Linux's OOM
    killer would (SIGKILL), with a report instead of a SIGSEGV it did not earn."""
    from kvmbox.sentry.kernel import RunOutcome
    limit = f" (--memory {kernel.memory_limit >> 20}M)" if kernel.memory_limit else ""
    return RunOutcome(128 + _signal.SIGKILL, _signal.SIGKILL,
                      report=f"killed by SIGKILL: out of memory{limit}: no free guest page "
                             "for memory the program had mapped (files in memory use it too)")


def fatal_fault(task: Task, fault: Fault) -> "RunOutcome":
    from kvmbox.sentry.kernel import RunOutcome
    signo = faults.signal_for(fault, task.mm)
    try:
        code = task.mm.copy_in(fault.rip, 16)
    except SyscallError:
        code = None
    return RunOutcome(128 + signo, signo, report=faults.describe(fault, signo, code), core=True)


__all__ = ["VforkHandoff", "run_task", "errno"]
