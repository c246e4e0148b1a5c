"""Task: one guest thread (registers via its Context, signal mask) in a thread group.

Signals may be sent to a task from other host threads (timers, the kernel's
stop): `send_signal` queues under `sig_lock`, wakes the task's Waker if it is
blocked (kvmbox/sentry/waiter.py) and interrupts its Context if it runs guest
code, so delivery is prompt either way.

CPU time: `cpu` (kvmbox/sentry/cputime.py) accounts the guest's user time and
the Sentry's system time for the task.  `timers` is the process's itimers,
POSIX timers and RLIMIT_CPU watch (kvmbox/sentry/posixtimers.py), made at
first use.

Lock order: Kernel.lock before ThreadGroup.lock (when threads arrive) before
ProcessTimers.lock before Task.sig_lock before MemoryManager.lock.
"""
from __future__ import annotations

import os
import time

from kvmbox.record import field, record
TYPE_CHECKING = False  # typing is not imported at run time (start-up cost)

if TYPE_CHECKING:  # pragma: no cover
    from kvmbox.mm.manager import MemoryManager
    from kvmbox.platform.base import Context
    from kvmbox.sentry.files import FdTable
    from kvmbox.sentry.kernel import Kernel
    from kvmbox.sentry.threadgroup import SignalHandlers, ThreadGroup
    from kvmbox.sentry.vfs.path import FsContext

RLIM_INFINITY = (1 << 64) - 1
TASK_COMM_LEN = 16                 # a task's name, with its NUL (sched.h)


def exec_comm(path: str) -> bytes:
    """The name execve gives a task: the basename of the path it was asked to run (not of
    the interpreter or the symlink's target), cut to TASK_COMM_LEN - 1 bytes, as
    __set_task_comm(kbasename(bprm->filename))."""
    return os.fsencode(os.path.basename(path))[:TASK_COMM_LEN - 1]


class ImageReplaced(Exception):
    """Raised by a successful execve: the task runs a new image from its next entry.

    The run loop re-reads the task's context and address space, traces the call
    with `old_mm` (where its arguments were) and then releases `old_mm`.
    """

    def __init__(self, old_mm) -> None:
        super().__init__("execve")
        self.old_mm = old_mm


class TaskExit(Exception):
    """Raised by exit/exit_group (and fatal signals) to leave the run loop."""

    def __init__(self, status: int = 0, signal: int = 0, core: bool = False) -> None:
        self.status = status & 0xFF
        self.signal = signal
        self.core = core


@record
class Credentials:
    """Ids the guest sees: the host's real ids of the Sentry (as runsc --rootless reports),
    and the capability sets those ids give a program natively (sentry/caps.py; -1: fill in)."""
    uid: int = field(default_factory=os.getuid)
    gid: int = field(default_factory=os.getgid)
    euid: int = field(default_factory=os.geteuid)
    egid: int = field(default_factory=os.getegid)
    cap_inheritable: int = -1
    cap_permitted: int = -1
    cap_effective: int = -1
    cap_bset: int = -1
    cap_ambient: int = -1

    def __post_init__(self) -> None:
        if self.cap_permitted < 0:
            from kvmbox.sentry import caps
            (self.cap_inheritable, self.cap_permitted, self.cap_effective, self.cap_bset,
             self.cap_ambient) = caps.initial(self.uid, self.euid)


def default_rlimits(memory_limit: int | None, nofile: int = 1024) -> dict[int, list[int]]:
    """RLIMIT_* -> [soft, hard], Linux's defaults with the sandbox's own limits folded in."""
    inf = RLIM_INFINITY
    return {
        0: [inf, inf],            # CPU
        1: [inf, inf],            # FSIZE
        2: [inf, inf],            # DATA
        3: [8 << 20, inf],        # STACK
        4: [0, inf],              # CORE
        5: [inf, inf],            # RSS
        6: [4096, 4096],          # NPROC
        7: [nofile, nofile],      # NOFILE
        8: [8 << 20, 8 << 20],    # MEMLOCK
        9: [inf, inf],            # AS: counts address space, not memory (--memory is not it)
        10: [inf, inf],           # LOCKS
        11: [4096, 4096],         # SIGPENDING
        12: [819200, 819200],     # MSGQUEUE
        13: [0, 0],               # NICE
        14: [0, 0],               # RTPRIO
        15: [inf, inf],           # RTTIME
    }


class Task:
    """One guest thread.  Handlers receive it as `t` and reach everything through it."""

    def __init__(self, kernel: "Kernel", ctx: "Context", mm: "MemoryManager", fds: "FdTable",
                 tid: int, exe_path: str, argv: list[str], tg: "ThreadGroup", *,
                 fs: "FsContext | None" = None, sighand: "SignalHandlers | None" = None) -> None:
        from kvmbox.sentry.threadgroup import SignalHandlers
        self.kernel = kernel
        self.ctx = ctx
        self.mm = mm
        self.fds = fds
        self.tid = tid
        self.tg = tg                # the process (kvmbox/sentry/threadgroup.py)
        tg.tasks.append(self)
        self.sighand = sighand if sighand is not None else SignalHandlers()
        self.sighand.attach()      # counted: the in-guest rt_sigaction answer needs a sole user
        self.creds = Credentials()
        self.exe_node = None       # the executable's VFS node (writes to it give ETXTBSY)
        self.exe_path = exe_path   # guest path of the executable (for /proc/self/exe)
        self.comm = exec_comm(exe_path)   # its name: PR_SET_NAME, /proc/<tid>/comm, execve
        self.argv = argv
        self.envp: list[str] = []  # the environment execve gave (for /proc/<pid>/environ)
        self.auxv = b""            # the auxiliary vector as the stack holds it (/proc/<pid>/auxv)
        self.start_ns = time.monotonic_ns()   # when the task started (/proc/<pid>/stat starttime)
        if fs is None:               # the kernel's root as root and cwd
            from kvmbox.sentry.vfs.path import FsContext
            root = kernel.vfs.root()
            fs = FsContext(root, root, 0o022)
        self.fs = fs               # root, cwd, umask (shared by CLONE_FS threads)
        self.sigmask = 0
        self.nice = 0                  # getpriority/setpriority (recorded; the host does not see it)
        self.affinity = 0              # sched_setaffinity's mask of guest CPUs (0: all of them)
        self.sched_policy = (0, 0)     # sched_setscheduler's (policy, priority), recorded
        self.clear_child_tid = 0
        self.robust_list = (0, 0)
        self.fs_base = 0
        self.exited: TaskExit | None = None
        self.thread_exit = False   # exit(2): this thread only, not its process
        self.done = False          # its run loop has ended and finish() released it
        # Queued signals: (signo, si_code, si_addr, info); info is None or the whole 128-byte
        # siginfo (or a callable making it at delivery: a POSIX timer's overrun count).
        self.pending_signals: list[tuple] = []
        self.sig_lock = tg.sig_lock        # guards pending_signals against other threads' senders
        from kvmbox.sentry.waiter import Waker
        self.waker = Waker()               # what a blocked wait sleeps on (waiter.block)
        self.signal_waiters = None         # WaitQueue of the signalfds reading this task's signals
        self.vfork_parent: Task | None = None   # the parent a vfork suspended, until exec or exit
        self.pdeathsig = 0                 # PR_SET_PDEATHSIG
        self.host_thread = None            # the threading.Thread running it (None: the caller's)
        self.killed = False                # SIGKILL'd or its sandbox ends: waits end at once
        from kvmbox.sentry.cputime import TaskCpu
        self.cpu = TaskCpu(ctx)            # user and system time (its host thread is this one)
        self.blocked = False               # inside waiter.block (for /proc's state letter)
        self.altstack = (0, 2, 0)          # sigaltstack (ss_sp, ss_flags, ss_size); 2 = SS_DISABLE
        self.saved_sigmask: int | None = None   # rt_sigsuspend's mask to put back after delivery
        self.fault_regs = (0, 0, 0)        # (trapno, err, cr2) of the last fault, for sigcontext

    # --- what belongs to the process, reached through the task --------------------------
    @property
    def tgid(self) -> int:
        return self.tg.tgid

    @property
    def ppid(self) -> int:
        """The parent's pid; 0 for init, whose parent lies outside the sandbox (as Linux
        reports across a pid namespace; never the Sentry's host pid)."""
        p = self.tg.parent
        return p.tgid if p is not None else 0

    @property
    def pgid(self) -> int:
        return self.tg.pgid

    @property
    def sid(self) -> int:
        return self.tg.sid

    @property
    def rlimits(self) -> dict[int, list[int]]:
        return self.tg.rlimits

    @property
    def sigactions(self) -> dict[int, bytes]:
        return self.sighand.actions

    @sigactions.setter
    def sigactions(self, value: dict[int, bytes]) -> None:
        self.sighand.replace(value)

    @property
    def timers(self):
        """The process's itimers, POSIX timers and RLIMIT_CPU watch (or None)."""
        return self.tg.timers

    @timers.setter
    def timers(self, value) -> None:
        self.tg.timers = value

    def soft_rlimit(self, resource: int) -> int:
        """The soft limit of `resource` now: the MemoryManager asks at each check
        (RLIMIT_AS, RLIMIT_STACK), as Linux reads current's."""
        return self.rlimits[resource][0]

    def queue_signal(self, signo: int, *, code: int = 0, addr: int = 0, info=None) -> None:
        """Make `signo` pending for this task; delivered before it next returns to the guest.

        The contract for code that raises signals on the task's own thread (SIGPIPE on a
        pipe write, kill(2)): call this, then return/raise the syscall's own result as usual.
        From another thread use send_signal.
        """
        from kvmbox.sentry.signals.deliver import queue
        queue(self, signo, code, addr, info)

    def send_signal(self, signo: int, *, code: int = 0, addr: int = 0, info=None) -> None:
        """Queue `signo` from any thread (a timer, another task) and make the task notice:
        a blocked wait ends with its restart code, guest code is interrupted for delivery."""
        from kvmbox.sentry.signals.deliver import queue
        if queue(self, signo, code, addr, info):
            self.signalled()

    def signalled(self) -> None:
        """A signal was queued for this task from another thread: wake its wait (sigtimedwait
        also wants blocked ones) and, if the signal is deliverable, interrupt guest code."""
        self.waker.set()
        if self.signal_pending():
            self.ctx.interrupt()

    def signal_pending(self) -> bool:
        """Is a signal pending that the task does not block (it would interrupt a wait)?"""
        from kvmbox.sentry.signals.deliver import deliverable_mask
        return bool(deliverable_mask(self))

    def release(self) -> None:
        """The task is gone: close what it holds of the host (its Waker)."""
        self.waker.close()
