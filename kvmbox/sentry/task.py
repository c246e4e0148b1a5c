"""Task: one guest thread (registers via its Context, signal mask) in a thread group.

Lock order: none yet (one task per Sandbox run); when threads arrive, Kernel.lock
before ThreadGroup.lock before MemoryManager.lock.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
TYPE_CHECKING = False  # typing is not imported at run time (start-up cost)

if TYPE_CHECKING:  # pragma: no cover
    from kvmbox.mm.manager import MemoryManager
    from kvmbox.platform.base import Context
    from kvmbox.sentry.files import FdTable
    from kvmbox.sentry.kernel import Kernel
    from kvmbox.sentry.vfs.path import FsContext

RLIM_INFINITY = (1 << 64) - 1


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


@dataclass
class Credentials:
    """Ids the guest sees: the host's real ids of the Sentry (as runsc --rootless reports)."""
    uid: int = field(default_factory=os.getuid)
    gid: int = field(default_factory=os.getgid)
    euid: int = field(default_factory=os.geteuid)
    egid: int = field(default_factory=os.getegid)


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
                 tid: int, exe_path: str, argv: list[str], rlimits: dict[int, list[int]], *,
                 fs: "FsContext | None" = None) -> None:
        self.kernel = kernel
        self.ctx = ctx
        self.mm = mm
        self.fds = fds
        self.tid = tid
        self.tgid = tid            # thread-group id == pid
        # The first task is the sandbox's init: its parent lies outside the sandbox, which
        # Linux reports as 0 across a pid namespace (never the Sentry's host pid).
        self.ppid = 0
        self.pgid = tid
        self.sid = tid
        self.creds = Credentials()
        self.exe_node = None       # the executable's VFS node (writes to it give ETXTBSY)
        self.exe_path = exe_path   # guest path of the executable (for /proc/self/exe)
        self.argv = argv
        self.envp: list[str] = []  # the environment execve gave (for /proc/<pid>/environ)
        self.auxv = b""            # the auxiliary vector as the stack holds it (/proc/<pid>/auxv)
        self.start_ns = time.monotonic_ns()   # when the task started (/proc/<pid>/stat starttime)
        if fs is None:               # the kernel's root as root and cwd
            from kvmbox.sentry.vfs.path import FsContext
            root = kernel.vfs.root()
            fs = FsContext(root, root, 0o022)
        self.fs = fs               # root, cwd, umask (shared by CLONE_FS threads)
        self.rlimits = rlimits
        self.sigmask = 0
        self.nice = 0                  # getpriority/setpriority (recorded; the host does not see it)
        self.sigactions: dict[int, bytes] = {}   # signo -> raw struct sigaction as set by the guest
        self.clear_child_tid = 0
        self.robust_list = (0, 0)
        self.fs_base = 0
        self.exited: TaskExit | None = None
        self.pending_signals: list[tuple[int, int, int]] = []   # (signo, si_code, si_addr) queued
        self.altstack = (0, 2, 0)          # sigaltstack (ss_sp, ss_flags, ss_size); 2 = SS_DISABLE
        self.saved_sigmask: int | None = None   # rt_sigsuspend's mask to put back after delivery
        self.fault_regs = (0, 0, 0)        # (trapno, err, cr2) of the last fault, for sigcontext

    def soft_rlimit(self, resource: int) -> int:
        """The soft limit of `resource` now: the MemoryManager asks at each check
        (RLIMIT_AS, RLIMIT_STACK), as Linux reads current's."""
        return self.rlimits[resource][0]

    def queue_signal(self, signo: int, *, code: int = 0, addr: int = 0) -> None:
        """Make `signo` pending for this task; delivered before it next returns to the guest.

        The contract for code that raises signals (SIGPIPE on a pipe write, kill(2)):
        call this, then return/raise the syscall's own result as usual.
        """
        from kvmbox.sentry.signals.deliver import queue
        queue(self, signo, code, addr)
