"""PidTable: the sandbox's processes, by pid, with the pids limit and the tree's bookkeeping.

pids count from 1 inside the sandbox (the first program is init) and are
never reused while a process or its zombie holds one.  `lock` guards the
tree: parents, children, states, process groups and sessions; the state a
parent's wait reads changes only under it.  Host threads (one per task) are
started and joined by the Kernel; this table only records them.
"""
from __future__ import annotations

import errno
import threading

from kvmbox.errors import SyscallError
from kvmbox.sentry.threadgroup import DEAD, ZOMBIE, ThreadGroup

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from kvmbox.sentry.task import Task

PID_MAX = 4194304          # Linux's pid_max on 64-bit


class PidTable:
    def __init__(self, pids_limit: int | None) -> None:
        self.lock = threading.RLock()
        self.pids_limit = pids_limit
        self._next = 1
        self.tasks: dict[int, Task] = {}          # tid -> live or zombie task
        self.groups: dict[int, ThreadGroup] = {}  # tgid -> process (until reaped)
        self.init: ThreadGroup | None = None
        self.ever_forked = False                  # a second task's first trace was made (strace [pid N])

    def allocate(self) -> int:
        """A new pid; EAGAIN past the pids limit (fork's answer, as the pids cgroup gives)."""
        with self.lock:
            if self.pids_limit is not None and len(self.tasks) >= self.pids_limit:
                raise SyscallError(errno.EAGAIN)
            pid = self._next
            while pid in self.tasks or pid in self.groups:
                pid = pid + 1 if pid < PID_MAX else 2
            self._next = pid + 1 if pid < PID_MAX else 2
            return pid

    def add(self, task: "Task") -> None:
        with self.lock:
            self.tasks[task.tid] = task
            self.groups.setdefault(task.tg.tgid, task.tg)
            if self.init is None:
                self.init = task.tg

    def group(self, pid: int) -> ThreadGroup | None:
        """The process `pid` (zombies included), or None."""
        g = self.groups.get(pid)
        return g if g is not None and g.state != DEAD else None

    def task(self, tid: int) -> "Task | None":
        return self.tasks.get(tid)

    def live_groups(self) -> list[ThreadGroup]:
        with self.lock:
            return [g for g in self.groups.values() if g.state not in (ZOMBIE, DEAD)]

    def members(self, pgid: int) -> list[ThreadGroup]:
        with self.lock:
            return [g for g in self.groups.values() if g.pgid == pgid and g.state not in (ZOMBIE, DEAD)]

    def session_has_group(self, sid: int, pgid: int) -> bool:
        with self.lock:
            return any(g.pgid == pgid and g.sid == sid for g in self.groups.values()
                       if g.state != DEAD)

    def remove(self, g: ThreadGroup) -> None:
        """`g` was reaped: its pid is free again."""
        with self.lock:
            g.state = DEAD
            for t in g.tasks:
                self.tasks.pop(t.tid, None)
            self.groups.pop(g.tgid, None)

    def live_tasks(self) -> list["Task"]:
        with self.lock:
            return [t for t in self.tasks.values() if t.tg.state not in (ZOMBIE, DEAD)]

    def visible_tasks(self) -> list["Task"]:
        """The live tasks and the zombies not reaped yet (what /proc shows)."""
        with self.lock:
            return [t for t in self.tasks.values() if t.tg.state != DEAD]

    def reaper_for(self, g: ThreadGroup) -> ThreadGroup | None:
        """Who adopts the children of `g`: the nearest live subreaper above it, else init."""
        p = g.parent
        while p is not None:
            if p.subreaper and p.state not in (ZOMBIE, DEAD):
                return p
            p = p.parent
        return self.init if self.init is not g else None
