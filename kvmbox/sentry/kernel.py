"""Kernel: the Sentry's per-sandbox state, and a run of the first program and its descendants.

A run starts the first program (init, pid 1) on the calling thread; the
processes it forks run on host threads of their own (kvmbox/sentry/lifecycle.py),
each through the same run loop (kvmbox/sentry/runloop.py).  The run ends when
init exits, as a container does: the processes left are killed and named in
one notice, and their threads joined before run() returns.
"""
from __future__ import annotations

import errno
import os
import threading
import time
from collections.abc import Callable, Sequence

from kvmbox.errors import KvmboxError, SandboxCrash, SyscallError
from kvmbox.mm.account import MemoryAccount
from kvmbox.mm.manager import MemoryManager
from kvmbox.platform.base import Platform
from kvmbox.record import record
from kvmbox.sentry import lifecycle
from kvmbox.sentry.files import FdTable, FileDescription
from kvmbox.sentry.hoststream import HostStream
from kvmbox.sentry.pidtable import PidTable
from kvmbox.sentry.syscalls.table import default_table
from kvmbox.sentry.task import RLIM_INFINITY, Task, default_rlimits, exec_comm
from kvmbox.sentry.threadgroup import ThreadGroup
from kvmbox.sentry.waiter import SentryLock, Stopped

__all__ = ["Kernel", "RunOutcome", "Stopped"]

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from kvmbox.sentry.net.inet import InetStack
    from kvmbox.sentry.net.policy import NetPolicy
    from kvmbox.sentry.vfs.build import FsOptions

KERNEL_RELEASE = "6.1.0-kvmbox"
KERNEL_VERSION = "#1 SMP PREEMPT_DYNAMIC kvmbox"


@record
class RunOutcome:
    """How one program run ended."""
    exit_code: int            # the program's status, or 128+signal when killed
    signal: int               # the killing signal, 0 if it exited
    timed_out: bool = False
    report: str | None = None  # one-line description of a fatal fault
    core: bool = False         # the killing signal's default action dumps core (as wait's WCOREDUMP)


class Kernel:
    """One sandbox's kernel: platform, syscall table, options; runs programs one at a time."""

    def __init__(self, platform: Platform, *, memory_limit: int | None, hostname: str = "kvmbox",
                 trace: Callable[[str], None] | None = None,
                 notice: Callable[[str], None] | None = None, fast_path: bool = True,
                 fs: "FsOptions | None" = None, pids_limit: int | None = 512,
                 net_policy: "NetPolicy | None" = None) -> None:
        self.platform = platform
        self.memory_limit = memory_limit
        # --memory, shared by the processes' commit charges and the in-memory file systems.
        self.memory_account = MemoryAccount(memory_limit)
        self.hostname = hostname
        self.release = KERNEL_RELEASE
        self.version = KERNEL_VERSION
        self.cpu_count = max(1, len(platform.allowed_cpus()))   # the guest's CPUs: 0..n-1
        self.boot_monotonic_ns = time.monotonic_ns()
        self.sentry_pid = os.getpid()
        self.table = default_table()
        self.trace = trace
        self.fast_path = fast_path      # let the platform answer identity syscalls without a trap
        self._notice = notice or (lambda msg: None)
        self._reported: set[int] = set()
        self._noticed: set[str] = set()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.bkl = SentryLock()          # the Sentry lock handlers run under (runloop.py)
        self.pids_limit = pids_limit
        self.pids = PidTable(pids_limit)     # the current run's processes (replaced by each run)
        from kvmbox.sentry.futex import FutexTable
        self.futexes = FutexTable()          # futex waiters (kvmbox/sentry/futex.py)
        self.on_thread: dict[int, Task] = {} # host thread ident -> the task it runs now
        self._crash: SandboxCrash | None = None
        self.in_guest = False                # may the platform answer getpid & co. itself
        self.eventfd_ids: set[int] = set()   # eventfd-id numbers in use (Linux's eventfd_ida)
        from kvmbox.sentry.locks import LockTable
        self.file_locks = LockTable()          # every POSIX, OFD and flock lock of the sandbox
        from kvmbox.sentry.net.unixnames import UnixNames
        self.unix_names = UnixNames()          # AF_UNIX abstract names and bound socket inodes
        self._net: InetStack | None = None     # AF_INET/AF_INET6 loopback (the `net` property)
        from kvmbox.sentry.net.policy import NetPolicy
        self.net_policy = net_policy or NetPolicy()   # none (the default) / host (hostinet.py)
        from kvmbox.sentry.timers import TimerService
        self._timers = TimerService()          # the current run's (replaced by each run)
        self.syscall_counts = [0] * len(self.table)   # per syscall number, for the last run
        from kvmbox.sentry import vdso
        self.vdso = vdso.install(platform.memfile, platform.frames)
        self.clock_ns = self.vdso.timekeeper.now_ns   # the guest's clocks (vDSO and syscalls agree)
        from kvmbox.sentry.vfs.build import FsOptions, build_mounts
        try:
            self.vfs = build_mounts(self, fs if fs is not None else FsOptions())  # lives across runs
        except BaseException:
            self.vdso.close()
            raise

    def close(self) -> None:
        """Stop the kernel's helpers (the timekeeper), release host fds of the file systems;
        the platform is closed by its owner."""
        from kvmbox.sentry.vfs.build import close_mounts
        self.vdso.close()
        close_mounts(self.vfs)

    # --- services handlers use ------------------------------------------------
    def notice(self, msg: str) -> None:
        self._notice(msg)

    def notice_once(self, key: str, msg: str) -> None:
        """A notice given once per run for `key` (an unsupported feature the guest uses)."""
        if key not in self._noticed:
            self._noticed.add(key)
            self._notice(msg)

    @property
    def stopping(self) -> bool:
        """Has the current run been stopped (kill, timeout)?  Blocked waits then end."""
        return self._stop.is_set()

    def stop(self) -> None:
        """Stop the current run (kill or timeout); thread-safe.  A task running guest code
        is interrupted, a blocked one woken (kvmbox/sentry/waiter.py raises Stopped)."""
        self._stop.set()
        for task in self.live_tasks():
            task.waker.set()
            task.ctx.interrupt()

    def crashed(self, e: SandboxCrash) -> None:
        """A Sentry error on a task thread: the whole run ends and run() raises it."""
        if self._crash is None:
            self._crash = e
        self.stop()


    def timer_service(self):
        """The current run's TimerService (kvmbox/sentry/timers.py): its timers and their
        thread end with the run."""
        return self._timers

    def is_executing(self, node) -> bool:
        """Is `node` the executable image of a live task (open for writing: ETXTBSY)?"""
        return any(tk.exe_node is node for tk in self.live_tasks())

    def live_tasks(self) -> list[Task]:
        """The tasks alive now (zombies excluded); /proc lists them."""
        return self.pids.live_tasks()

    def visible_tasks(self) -> list[Task]:
        """The tasks /proc shows: the live ones and the zombies not reaped yet."""
        return self.pids.visible_tasks()

    def current_task(self) -> Task | None:
        """The task whose syscall this host thread is handling (what /proc/self names).

        The VFS's path walk does not carry the caller, so /proc asks here; with one host
        thread per task the answer is exact (a departure from gVisor, which passes the
        task down: see docs/processes.md)."""
        return self.on_thread.get(threading.get_ident())

    def kill_task(self, task: Task) -> None:
        """End `task` at once (SIGKILL): its wait ends, its guest code is interrupted."""
        task.killed = True
        task.waker.set()
        task.ctx.interrupt()

    # --- running a program ----------------------------------------------------
    def load_image(self, path: str, argv: Sequence[str], envp: Sequence[str], fs, *,
                   creds=None, limit: int | None = None):
        """A new address space holding the program `path` (resolved in `fs`), ready to run:
        (MemoryManager, StartedImage).  What a run starts with and what execve switches to;
        raises ProgramNotFound / CannotExecute (or SyscallError) with nothing left behind."""
        from kvmbox.sentry.program import load_program  # local: pulls in ELF parsing
        mm = MemoryManager(self.platform.memfile, self.platform.frames,
                           self.platform.new_address_space(), limit=limit,
                           account=self.memory_account)
        try:
            image = load_program(path, mm, argv=list(argv), envp=list(envp),
                                 vdso_base=self.vdso.map_into(mm), vfs=self.vfs, fs=fs,
                                 creds=creds)
        except BaseException:
            mm.release()
            raise
        return mm, image

    def run(self, path: str, argv: Sequence[str], envp: Sequence[str],
            stdio: Sequence[FileDescription | None], timeout: float | None = None, *,
            cwd: str = "/", rlimits: dict[int, list[int]] | None = None) -> RunOutcome:
        """Load the static ELF at `path` and run it to completion, in directory `cwd`, with
        resource limits `rlimits` (default: Linux's own defaults; see rlimits.start_rlimits).
        stdio: the files of descriptors 0, 1, 2 ... (None: that one is closed)."""
        from kvmbox.sentry.vfs.path import FsContext

        root = self.vfs.root()
        try:
            start = self.vfs.resolve(root, cwd, root=root)
            if not start.node.is_dir():
                raise SyscallError(errno.ENOTDIR)
        except SyscallError as e:
            raise KvmboxError(f"kvmbox: working directory {cwd}: {os.strerror(e.errno)}") from None
        fsctx = FsContext(root, start, 0o022)

        self._stop.clear()
        self._reported.clear()
        self._noticed.clear()
        self._crash = None
        self.pids = PidTable(self.pids_limit)
        from kvmbox.sentry.futex import FutexTable
        self.futexes = FutexTable()
        from kvmbox.sentry.timers import TimerService
        self._timers = TimerService(on_error=self._notice)
        self.syscall_counts = [0] * len(self.table)
        # With --strace every syscall must reach the Sentry, so no in-guest answers then.
        self.in_guest = in_guest = self.fast_path and self.trace is None
        self.vdso.timekeeper.allow(in_guest)
        mm = ctx = task = None
        fds = FdTable()
        for i, f in enumerate(stdio):
            if f is None:
                continue                      # a closed standard stream stays closed
            if isinstance(f, HostStream):
                f.place(self.vfs)             # its name and identity in this sandbox
            fds.install(i, f)
        outcome = None
        timer = None
        self.bkl.acquire()
        try:
            mm, image = self.load_image(path, argv, envp, fsctx, limit=self.memory_limit)
            ctx = self.platform.new_context()
            ctx.set_regs(rip=image.entry, rsp=image.initial_sp)
            pid = self.pids.allocate()
            # init's process group and session are its invoker's, outside the sandbox:
            # 0, as Linux shows ids across a pid namespace.  So it may setsid() and
            # setpgid() as the same program run natively from a shell may.
            tg = ThreadGroup(pid, None, rlimits if rlimits is not None
                             else default_rlimits(self.memory_limit), 0, 0)
            task = Task(self, ctx, mm, fds, pid, image.exe_path, list(image.argv or argv), tg,
                        fs=fsctx)
            mm.rlimit = task.soft_rlimit
            task.comm = exec_comm(path)             # "sh" for /bin/sh, even though a symlink
            task.envp = list(envp)
            task.auxv = image.auxv
            task.exe_node = image.exe_node
            self.publish_identity(task)
            self.pids.add(task)
            if tuple(task.rlimits[0]) != (RLIM_INFINITY, RLIM_INFINITY):
                from kvmbox.sentry.posixtimers import timers_of
                timers_of(task).rlimit_changed()      # RLIMIT_CPU from the start
            if timeout is not None:
                timer = threading.Timer(timeout, self.stop)
                timer.daemon = True
                timer.start()
            from kvmbox.sentry.runloop import run_task
            try:
                outcome = run_task(self, task)
            except SandboxCrash as e:
                self.crashed(e)
            finally:
                lifecycle.finish(self, task, outcome)
                mm = ctx = None
            outcome = self._wait_process(task.tg, outcome)
            self._end_others()
            if self._crash is not None:
                raise self._crash
            return outcome
        finally:
            if timer is not None:
                timer.cancel()
            self._timers.stop()               # no timer outlives the run (before its context goes)
            if task is None:
                if ctx is not None:
                    ctx.release()
                fds.release()
                if mm is not None:
                    mm.release()
            self.bkl.release()

    def publish_identity(self, task: Task) -> None:
        """Tell the platform the ids it may answer without a trap (KVM's in-guest getpid)."""
        c = task.creds
        task.ctx.set_identity(enabled=self.in_guest, pid=task.tgid, tid=task.tid, ppid=task.ppid,
                              uid=c.uid, euid=c.euid, gid=c.gid, egid=c.egid)

    def publish_sigactions(self, task: Task) -> None:
        """Tell the platform the dispositions it may report without a trap (KVM's in-guest
        rt_sigaction query), or that it may not: while tracing, and while the handlers are
        shared with another task, whose changes would not reach this one's vCPU at once."""
        sh = task.sighand
        table = sh.table() if self.in_guest and sh.users == 1 else None
        task.ctx.set_sigactions(table, sh.stamp)

    def _wait_process(self, g: ThreadGroup, outcome: RunOutcome | None) -> RunOutcome | None:
        """init's first thread has ended: wait for its other threads (exit(2) ends one
        thread); the process's outcome.  Called with the bkl held."""
        while not g.ended.is_set():
            self.bkl.release()
            try:
                g.ended.wait(0.5)
            finally:
                self.bkl.acquire()
        return g.outcome if g.outcome is not None else outcome

    def _end_others(self) -> None:
        """init has exited: kill every other process (named in one notice, as a container's
        leftovers) and wait for their host threads.  Called with the bkl held."""
        left = [t for t in self.pids.live_tasks() if not t.killed]
        if left:
            names = ", ".join(f"{t.tgid} ({os.path.basename(t.exe_path)})" for t in left[:10])
            more = f" and {len(left) - 10} more" if len(left) > 10 else ""
            self._notice(f"kvmbox: the first process exited; killed {len(left)} left: {names}{more}")
        while True:
            threads = [t.host_thread for t in list(self.pids.tasks.values())
                       if t.host_thread is not None and t.host_thread.is_alive()]
            if not threads:
                break
            for t in self.pids.live_tasks():
                self.kill_task(t)
            self.bkl.release()
            try:
                for th in threads:
                    th.join(0.5)
            finally:
                self.bkl.acquire()

    @property
    def net(self) -> "InetStack":
        """The sandbox's AF_INET/AF_INET6 loopback stack (ports, routes), made at its first use:
        the network stack is 6 modules a program without sockets never needs at start-up."""
        if self._net is None:
            from kvmbox.sentry.net.inet import InetStack
            self._net = InetStack()
        return self._net

    def _unsupported(self, nr: int, rec) -> int:
        if rec is not None and rec.errno:
            return -rec.errno
        if nr not in self._reported:
            self._reported.add(nr)
            from kvmbox.abi.syscall_numbers import NAME_BY_NR
            name = NAME_BY_NR.get(nr, "unknown")
            self._notice(f"kvmbox: unsupported syscall {name} ({nr})")
        return -errno.ENOSYS

    def _trace_call(self, task: Task, rec, regs, ret, mm=None) -> None:
        from kvmbox.sentry.strace import format_call, syscall_name
        line = format_call(syscall_name(regs[0], rec), regs[1:], ret,
                           mm if mm is not None else task.mm)
        # As strace -f: lines carry the pid once a second task exists, from the line after
        # the clone that made it (a vfork child's own lines, printed first, carry it too).
        pids = getattr(self, "pids", None)
        if pids is not None and (pids.ever_forked or getattr(task, "vfork_parent", None)):
            line = f"[pid {task.tid:>5}] {line}"
        self.trace(line)
        if pids is not None and len(pids.tasks) > 1:
            pids.ever_forked = True
