"""Process lifetime: host threads for tasks, exit, zombies, reparenting, SIGCHLD and reaping.

Each task runs on a host thread of its own (the first program on the caller
of Kernel.run); `start` makes one for a new task.  When a task's run loop
ends, `finish` (under kernel.bkl) releases what it holds, makes its process a
zombie with Linux's wait status, gives its children to the reaper (the
nearest PR_SET_CHILD_SUBREAPER, else init), tells its parent (SIGCHLD with
CLD_* siginfo, unless the parent ignores SIGCHLD or set SA_NOCLDWAIT, when it
is reaped at once) and wakes the parent's waits.
"""
from __future__ import annotations

import threading

from kvmbox.abi import signals as S
from kvmbox.errors import SandboxCrash
from kvmbox.sentry.signals import group
from kvmbox.sentry.signals.frame import SI_USER, chld_siginfo
from kvmbox.sentry.threadgroup import EV_CONTINUED, EV_STOPPED, RUNNING, STOPPED, ZOMBIE, ThreadGroup

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from kvmbox.sentry.kernel import Kernel, RunOutcome
    from kvmbox.sentry.task import Task

CLD_EXITED, CLD_KILLED, CLD_DUMPED, CLD_TRAPPED, CLD_STOPPED, CLD_CONTINUED = 1, 2, 3, 4, 5, 6
SA_NOCLDSTOP, SA_NOCLDWAIT = 1, 2
TICK_NS = 10_000_000                 # clock_t in siginfo: USER_HZ 100


def wait_status(outcome: "RunOutcome") -> int:
    """Linux's wait status word for how a process ended."""
    if outcome.signal:
        return outcome.signal | (0x80 if outcome.core else 0)
    return (outcome.exit_code & 0xFF) << 8


def start(kernel: "Kernel", task: "Task") -> None:
    """Run `task` on a new host thread from its current registers."""
    th = threading.Thread(target=_thread_main, args=(kernel, task), daemon=True,
                          name=f"kvmbox-task-{task.tid}")
    task.host_thread = th
    th.start()


def _thread_main(kernel: "Kernel", task: "Task") -> None:
    from kvmbox.sentry.runloop import run_task
    task.cpu.on_thread()
    with kernel.bkl:
        outcome = None
        try:
            outcome = run_task(kernel, task)
        except SandboxCrash as e:
            kernel.crashed(e)
        except BaseException as e:     # a Sentry bug on a task thread ends the sandbox
            kernel.crashed(SandboxCrash(f"kvmbox: internal error: {type(e).__name__}: {e}"))
        finally:
            try:
                finish(kernel, task, outcome)
            except BaseException as e:   # noqa: BLE001 - a Sentry bug; the run ends with it
                kernel.crashed(SandboxCrash(f"kvmbox: internal error at exit: {type(e).__name__}: {e}"))
            finally:
                try:
                    kernel.platform.thread_exit()   # ptrace: this thread's stub threads end
                except BaseException as e:   # noqa: BLE001
                    kernel.crashed(SandboxCrash(f"kvmbox: internal error at thread exit: {e}"))


def finish(kernel: "Kernel", task: "Task", outcome: "RunOutcome | None") -> None:
    """The task's loop ended with `outcome` (None: the sandbox crashed): release the thread,
    and when it was its process's last, make the process a zombie for its parent.  exit(2)
    ends one thread; exit_group, a fatal signal or SIGKILL end them all (the first such
    outcome is the process's).  Called under kernel.bkl on any thread."""
    from kvmbox.sentry.kernel import RunOutcome
    import signal as _signal
    if outcome is None:
        outcome = RunOutcome(128 + _signal.SIGKILL, _signal.SIGKILL)
    g = task.tg
    task.killed = True
    if g.exec_thread is None and g.group_exit is None and not task.thread_exit:
        g.group_exit = outcome                  # exit_group, a fatal signal, a kill
        for other in g.live_threads():
            if other is not task:
                kernel.kill_task(other)
    _release_thread(kernel, task)
    table = kernel.pids
    with table.lock:
        task.done = True
        if task is not g.leader:
            g.tasks.remove(task)                # a thread's tid is free at once (as Linux)
            table.tasks.pop(task.tid, None)
        last = not g.live_threads()
    g.thread_events.notify()
    if last:
        _process_ended(kernel, g, g.group_exit or outcome)


def _release_thread(kernel: "Kernel", task: "Task") -> None:
    """What one thread holds: its robust futexes and clear_child_tid (in the memory it
    shares), its context, its references to the shared memory and files."""
    g = task.tg
    from kvmbox.sentry.fsimpl.proctask import memory
    try:
        rss = memory(task)["rss"]
    except Exception:                  # noqa: BLE001 - never let accounting stop an exit
        rss = 0
    g.times.add(*task.cpu.times(), rss)
    mm_release(task)
    try:
        task.ctx.release()
    finally:
        drop(task.fds)
        drop(task.mm)
        task.sighand.detach()
        vp, task.vfork_parent = task.vfork_parent, None
        if vp is not None:
            vp.waker.set()
        task.release()


def mm_release(task: "Task") -> None:
    """A thread leaves its memory (exit, or execve): Linux's mm_release.  Its robust futexes
    are marked FUTEX_OWNER_DIED and their waiters woken; clear_child_tid gets 0 and one
    waiter of it (pthread_join) is woken."""
    from kvmbox.sentry import futex
    futex.exit_mm_release(task)


def _process_ended(kernel: "Kernel", g: ThreadGroup, outcome: "RunOutcome") -> None:
    """The last thread of `g` ended with `outcome`: a zombie, its children reparented,
    its parent told."""
    if g.timers is not None:
        g.timers.close()
    table = kernel.pids
    with table.lock:
        g.exit_code = outcome.exit_code
        g.wait_status = wait_status(outcome)
        g.state = ZOMBIE
        g.outcome = outcome
        g.ended.set()
        reaper = table.reaper_for(g)
        for c in list(g.children):
            c.parent = reaper
            if reaper is not None:
                reaper.children.append(c)
            for ct in c.tasks:
                if c.state != ZOMBIE:
                    kernel.publish_identity(ct)    # its getppid, answered in the guest on KVM
                    if ct.pdeathsig:
                        ct.send_signal(ct.pdeathsig, code=SI_USER)
            if reaper is not None and c.state == ZOMBIE:
                reaper.child_events.notify()
        g.children.clear()
        parent = g.parent
        if parent is None:
            return                         # init: the Kernel reports its outcome
        if _autoreap(parent):
            parent.children.remove(g)
            table.remove(g)
            _add_child_times(parent, g)
        code = (CLD_KILLED if not outcome.core else CLD_DUMPED) if outcome.signal else CLD_EXITED
        status = outcome.signal if outcome.signal else outcome.exit_code & 0xFF
        notify_parent(g, g.exit_signal, code, status)


def de_thread(task: "Task") -> None:
    """execve in a process with other threads: end them and wait until they are gone; the
    caller then takes the leader's place and tid (Linux's de_thread)."""
    from kvmbox.sentry.waiter import block
    g = task.tg
    kernel = task.kernel
    if len(g.tasks) == 1:
        return
    g.exec_thread = task
    try:
        for other in g.live_threads():
            if other is not task:
                kernel.kill_task(other)
        block(task, lambda: len(g.live_threads()) == 1, sources=[g.thread_events])
    finally:
        g.exec_thread = None
    table = kernel.pids
    with table.lock:
        leader = g.tasks[0]
        if leader is not task:               # the exec'ing thread becomes the leader
            table.tasks.pop(task.tid, None)
            table.tasks.pop(leader.tid, None)
            g.tasks.remove(leader)
            g.tasks.remove(task)
            g.tasks.insert(0, task)
            task.tid = g.tgid
            table.tasks[task.tid] = task
    kernel.publish_identity(task)


def reap(parent: ThreadGroup, child: ThreadGroup, kernel: "Kernel") -> None:
    """wait() consumed `child`'s death: its pid is free, its times go to the parent."""
    with kernel.pids.lock:
        if child in parent.children:
            parent.children.remove(child)
        kernel.pids.remove(child)
        _add_child_times(parent, child)


def _add_child_times(parent: ThreadGroup, child: ThreadGroup) -> None:
    c = child.times
    parent.children_times.add(c.user_ns + child.children_times.user_ns,
                              c.sys_ns + child.children_times.sys_ns,
                              max(c.maxrss_kb, child.children_times.maxrss_kb))


def _sigchld_action(parent: ThreadGroup) -> tuple[int, int]:
    from kvmbox.sentry.signals.deliver import action
    return action(parent.leader, S.SIGCHLD)[:2]


def _autoreap(parent: ThreadGroup) -> bool:
    """Linux reaps a child at once when its parent ignores SIGCHLD or set SA_NOCLDWAIT."""
    handler, flags = _sigchld_action(parent)
    return handler == S.SIG_IGN or bool(flags & SA_NOCLDWAIT)


def notify_parent(g: ThreadGroup, signo: int, code: int, status: int) -> None:
    """Signal `g`'s parent that g changed state (exit, stop, continue) and wake its waits."""
    parent = g.parent
    if parent is None:
        return
    if signo:
        handler, flags = _sigchld_action(parent) if signo == S.SIGCHLD else (0, 0)
        if not (code in (CLD_STOPPED, CLD_CONTINUED) and flags & SA_NOCLDSTOP):
            t = g.tasks[0]
            user_ns, sys_ns = g.times.user_ns, g.times.sys_ns
            info = chld_siginfo(signo, code, pid=g.tgid, uid=t.creds.uid, status=status,
                                utime=user_ns // TICK_NS, stime=sys_ns // TICK_NS)
            group.send(parent, signo, code=code, info=info)
    parent.child_events.notify()


def stopped(task: "Task", signo: int) -> None:
    """A stop signal's default action: the process stops until SIGCONT or SIGKILL."""
    g = task.tg
    kernel = task.kernel
    with kernel.pids.lock:
        g.state = STOPPED
        g.stop_signal = signo
        g.wait_event = EV_STOPPED
    for other in g.live_threads():             # a group stop: every thread stops
        if other is not task:
            other.ctx.interrupt()
    notify_parent(g, S.SIGCHLD, CLD_STOPPED, signo)
    wait_while_stopped(task)


def wait_while_stopped(task: "Task") -> None:
    """A thread of a stopped process waits (out of guest code) for SIGCONT or SIGKILL."""
    from kvmbox.sentry.waiter import block
    g = task.tg
    block(task, lambda: g.state != STOPPED or task.killed)


def continued(g: ThreadGroup) -> None:
    """SIGCONT reached stopped process `g`: it runs again; its parent hears of it."""
    with g.tasks[0].kernel.pids.lock:
        if g.state != STOPPED:
            return
        g.state = RUNNING
        g.wait_event = EV_CONTINUED
    for t in g.tasks:
        t.waker.set()
    notify_parent(g, S.SIGCHLD, CLD_CONTINUED, S.SIGCONT)


def drop(obj) -> None:
    """One user fewer of a shareable object (FdTable, MemoryManager): released by its last."""
    n = obj.users = getattr(obj, "users", 1) - 1
    if n <= 0:
        obj.release()


def share(obj):
    """One more user of a shareable object (clone's CLONE_FILES, CLONE_VM)."""
    obj.users = getattr(obj, "users", 1) + 1
    return obj
