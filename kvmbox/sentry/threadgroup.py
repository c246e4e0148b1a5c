"""ThreadGroup (a process) and SignalHandlers: what a process's threads share.

A Task (kvmbox/sentry/task.py) is one thread; its ThreadGroup holds what
belongs to the process: tgid, parent and children, process group and
session, resource limits, and what its parent's wait4 reports.  The
signal dispositions are a SignalHandlers object of their own, because
clone(CLONE_SIGHAND) shares them apart from the thread group (vfork and
posix_spawn do).  A group's threads (CLONE_THREAD) are `tasks`, the leader
first; a thread that has ended stays in the list with `done` set (the leader
as Linux's zombie leader; the others only until they are dropped), and the
process ends when its last thread does (kvmbox/sentry/lifecycle.py).

Process-directed signals wait in `shared_pending` until one thread takes them
(kvmbox/sentry/signals/group.py); `sig_lock` guards it and every thread's own
pending list (the threads share it, as Linux's siglock is per sighand).

State a parent's wait reads (`state`, `wait_status`, `report`) changes under
the process table's lock (kvmbox/sentry/pidtable.py), and every change
notifies the parent's `child_events` WaitQueue.
"""
from __future__ import annotations

import threading

from kvmbox.abi.signals import NSIG
from kvmbox.abi.structs import SIGACTION
from kvmbox.record import record
from kvmbox.sentry.waiter import WaitQueue

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from kvmbox.sentry.task import Task

# What a group's parent may be told by wait (state).
RUNNING, STOPPED, ZOMBIE, DEAD = "running", "stopped", "zombie", "dead"
# Changes a waiter has not consumed yet (wait_event): a stop (WUNTRACED) or a continue.
EV_NONE, EV_STOPPED, EV_CONTINUED = 0, 1, 2


class SignalHandlers:
    """signo -> the raw struct sigaction the guest set (missing: SIG_DFL).

    Every change goes through set() or replace(), which give the object a new
    `stamp`; so do attach() and detach(), which count the tasks using it.  The
    run loop compares a task's stamp with the one its context last published
    (kvmbox/sentry/kernel.py publish_sigactions), so the KVM trampoline's
    in-guest answer to rt_sigaction queries never runs on a stale table."""
    __slots__ = ("actions", "users", "stamp")

    def __init__(self, actions: dict[int, bytes] | None = None) -> None:
        self.actions: dict[int, bytes] = actions if actions is not None else {}
        self.users = 0                  # tasks whose `sighand` this is
        self.stamp = object()           # replaced on every change

    def copy(self) -> "SignalHandlers":
        return SignalHandlers(dict(self.actions))

    def set(self, signo: int, raw: bytes) -> None:
        self.actions[signo] = raw
        self.stamp = object()

    def replace(self, actions: dict[int, bytes]) -> None:
        self.actions = actions
        self.stamp = object()

    def attach(self) -> None:
        self.users += 1
        self.stamp = object()

    def detach(self) -> None:
        self.users -= 1
        self.stamp = object()

    def table(self) -> bytes:
        """The 64 dispositions as consecutive 32-byte kernel struct sigactions (signal
        n at (n-1)*32; SIG_DFL, all zero, where none was set)."""
        empty = bytes(SIGACTION.size)
        get = self.actions.get
        return b"".join(get(n, empty) for n in range(1, NSIG + 1))


@record
class ChildTimes:
    """What reaped children (and their reaped children) used: RUSAGE_CHILDREN."""
    user_ns: int = 0
    sys_ns: int = 0
    maxrss_kb: int = 0

    def add(self, user_ns: int, sys_ns: int, maxrss_kb: int) -> None:
        self.user_ns += user_ns
        self.sys_ns += sys_ns
        self.maxrss_kb = max(self.maxrss_kb, maxrss_kb)


class ThreadGroup:
    """One guest process."""

    def __init__(self, tgid: int, parent: "ThreadGroup | None", rlimits: dict[int, list[int]],
                 pgid: int, sid: int) -> None:
        self.tgid = tgid
        self.parent = parent
        self.children: list[ThreadGroup] = []
        self.tasks: list[Task] = []
        self.rlimits = rlimits
        self.pgid = pgid
        self.sid = sid
        self.state = RUNNING
        self.wait_event = EV_NONE       # a stop or continue the parent has not waited for
        self.stop_signal = 0            # the signal that stopped it (WSTOPSIG)
        self.wait_status = 0            # Linux wait status once a zombie
        self.exit_code = 0              # for a RunOutcome: 0..255 or 128+signal
        self.exit_signal = 17           # what its parent gets at exit (SIGCHLD; clone's low byte)
        self.exec_done = False          # it has called execve (setpgid from the parent: EACCES)
        self.subreaper = False          # PR_SET_CHILD_SUBREAPER
        self.child_events = WaitQueue() # wait4/waitid in this process sleep here
        self.children_times = ChildTimes()
        self.times = ChildTimes()       # its own CPU use, filled in at exit for the parent
        self.timers = None              # ProcessTimers (posixtimers.timers_of makes it)
        self.host_thread = None         # threading.Thread running its leader (None: init's caller)
        self.sig_lock = threading.Lock()  # every thread's pending list and shared_pending
        self.shared_pending: list[tuple] = []   # process-directed signals, as Task.pending_signals
        self.group_exit = None          # RunOutcome of exit_group or a fatal signal, once begun
        self.exec_thread = None         # the Task whose execve is ending the other threads
        self.thread_events = WaitQueue()  # a thread of this process ended (execve, init's run)
        self.ended = threading.Event()  # the last thread has ended (the process is a zombie)
        self.outcome = None             # the RunOutcome the process ended with

    def live_threads(self) -> "list[Task]":
        """The threads that have not ended."""
        return [t for t in self.tasks if not t.done]

    @property
    def leader(self) -> "Task":
        return self.tasks[0]

    def __repr__(self) -> str:
        return f"<ThreadGroup {self.tgid} {self.state}>"
