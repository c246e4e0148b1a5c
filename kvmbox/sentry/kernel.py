"""Kernel: the Sentry's per-sandbox state and the run loop (trap -> dispatch -> resume).

Data flows one way: the platform returns an Event, the loop dispatches a
syscall through the table (one tuple index, no name lookups), a handler works
on the Task, and the result goes back in the register frame.  Faults are
offered to the MemoryManager (demand paging, stack growth) and otherwise end
the program with the signal Linux would send.
"""
from __future__ import annotations

import errno
import os
import signal as _signal
import threading
import time
from dataclasses import dataclass
from collections.abc import Callable, Sequence

from kvmbox.errors import KvmboxError, SandboxCrash, SyscallError
from kvmbox.mm.account import MemoryAccount
from kvmbox.mm.fault import OutOfFrames
from kvmbox.mm.manager import MemoryManager
from kvmbox.platform.base import INTERRUPTED, SYSCALL, Fault, Platform
from kvmbox.sentry import faults
from kvmbox.sentry.files import FdTable, FileDescription
from kvmbox.sentry.hoststream import HostStream
from kvmbox.sentry.signals import deliver
from kvmbox.sentry.syscalls.table import default_table
from kvmbox.sentry.task import RLIM_INFINITY, ImageReplaced, Task, TaskExit, default_rlimits
from kvmbox.sentry.waiter import Stopped

__all__ = ["Kernel", "RunOutcome", "Stopped"]

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from kvmbox.sentry.vfs.build import FsOptions

KERNEL_RELEASE = "6.1.0-kvmbox"
KERNEL_VERSION = "#1 SMP PREEMPT_DYNAMIC kvmbox"


@dataclass
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
                 fs: "FsOptions | None" = None) -> None:
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
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._current: Task | None = None
        self._next_pid = 1
        self.eventfd_ids: set[int] = set()   # eventfd-id numbers in use (Linux's eventfd_ida)
        from kvmbox.sentry.locks import LockTable
        self.file_locks = LockTable()          # every POSIX, OFD and flock lock of the sandbox
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

    def timer_service(self):
        """The current run's TimerService (kvmbox/sentry/timers.py): its timers and their
        thread end with the run."""
        return self._timers

    def is_executing(self, node) -> bool:
        """Is `node` the executable image of a live task (open for writing: ETXTBSY)?"""
        return any(tk.exe_node is node for tk in self.live_tasks())

    def live_tasks(self) -> list[Task]:
        """The tasks running now (one per run for now); /proc lists them."""
        with self._lock:
            return [self._current] if self._current is not None else []

    def current_task(self) -> Task | None:
        """The task whose syscall the Sentry is handling (what /proc/self names), if any."""
        with self._lock:
            return self._current

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
        from kvmbox.sentry.timers import TimerService
        self._timers = TimerService(on_error=self._notice)
        self.syscall_counts = [0] * len(self.table)
        # With --strace every syscall must reach the Sentry, so no in-guest answers then.
        in_guest = self.fast_path and self.trace is None
        self.vdso.timekeeper.allow(in_guest)
        mm = ctx = task = None
        fds = FdTable()
        for i, f in enumerate(stdio):
            if f is None:
                continue                      # a closed standard stream stays closed
            if isinstance(f, HostStream):
                f.place(self.vfs)             # its name and identity in this sandbox
            fds.install(i, f)
        try:
            pid = self._next_pid
            mm, image = self.load_image(path, argv, envp, fsctx, limit=self.memory_limit)
            ctx = self.platform.new_context()
            ctx.set_regs(rip=image.entry, rsp=image.initial_sp)
            task = Task(self, ctx, mm, fds, pid, image.exe_path, list(image.argv or argv),
                        rlimits if rlimits is not None else default_rlimits(self.memory_limit),
                        fs=fsctx)
            mm.rlimit = task.soft_rlimit
            task.envp = list(envp)
            task.auxv = image.auxv
            task.exe_node = image.exe_node
            c = task.creds
            ctx.set_identity(enabled=in_guest, pid=task.tgid, tid=task.tid, ppid=task.ppid,
                             uid=c.uid, euid=c.euid, gid=c.gid, egid=c.egid)
            with self._lock:
                self._current = task
            if tuple(task.rlimits[0]) != (RLIM_INFINITY, RLIM_INFINITY):
                from kvmbox.sentry.posixtimers import timers_of
                timers_of(task).rlimit_changed()      # RLIMIT_CPU from the start
            timer = None
            if timeout is not None:
                timer = threading.Timer(timeout, self.stop)
                timer.daemon = True
                timer.start()
            try:
                return self._loop(task, mm.aspace)
            finally:
                if timer is not None:
                    timer.cancel()
                with self._lock:
                    self._current = None
        finally:
            self._timers.stop()               # no timer outlives the run (before its context goes)
            if ctx is not None:
                ctx.release()
            fds.release()
            if task is not None:
                task.mm.release()                 # execve may have replaced the first one
                task.release()
            elif mm is not None:
                mm.release()

    def _loop(self, task: Task, aspace) -> RunOutcome:
        ctx = task.ctx
        switch, args_of, set_return = ctx.switch, ctx.syscall_args, ctx.set_return
        table = self.table
        nslots = len(table)
        trace = self.trace
        counts = self.syscall_counts
        try:
            while True:
                ev = switch(aspace)
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
                                self._trace_call(task, rec, regs, None)
                            raise
                        except ImageReplaced as e:      # execve: a new image in this task
                            if trace is not None:
                                self._trace_call(task, rec, regs, 0, mm=e.old_mm)
                            e.old_mm.release()
                            ctx = task.ctx
                            switch, args_of, set_return = ctx.switch, ctx.syscall_args, ctx.set_return
                            aspace = task.mm.aspace
                            if task.pending_signals:
                                deliver.deliver_pending(task)
                            continue
                        except (Stopped, SandboxCrash):
                            raise
                        except Exception as e:  # a Sentry bug: end the sandbox, not the host
                            raise SandboxCrash(f"kvmbox: internal error in {rec.name}(): "
                                               f"{type(e).__name__}: {e}") from e
                    else:
                        ret = self._unsupported(nr, rec)
                    set_return(ret)
                    if trace is not None:
                        self._trace_call(task, rec, regs, ret)
                    if task.pending_signals or -516 <= ret <= -512:
                        deliver.after_syscall(task, nr, ret)
                elif ev is INTERRUPTED:
                    ctx.clear_interrupt()
                    if self._stop.is_set():
                        return self._stopped()
                    if task.pending_signals:      # sent from another thread (a timer)
                        deliver.deliver_pending(task)
                else:
                    assert isinstance(ev, Fault)
                    if ev.vector == 14:
                        try:
                            if task.mm.handle_fault(ev.address, ev.error_code):
                                continue
                        except OutOfFrames:
                            return self._out_of_memory()
                        ev = faults.resolve_access(ev, task)    # ptrace: read or write?
                    if deliver.deliver_fault(task, ev):
                        continue
                    return self._fatal_fault(task, ev)
        except TaskExit as e:
            if e.signal:
                return RunOutcome(128 + e.signal, e.signal, core=e.core,
                                  report=getattr(e, "report", None))
            return RunOutcome(e.status, 0)
        except Stopped:
            return self._stopped()

    def _out_of_memory(self) -> RunOutcome:
        """Guest memory ran out under a page the program may use: killed, as Linux's OOM
        killer would (SIGKILL), with a report instead of a SIGSEGV it did not earn."""
        limit = f" (--memory {self.memory_limit >> 20}M)" if self.memory_limit else ""
        return RunOutcome(128 + _signal.SIGKILL, _signal.SIGKILL,
                          report=f"killed by SIGKILL: out of memory{limit}: no free guest page "
                                 "for memory the program had mapped (files in memory use it too)")

    def _stopped(self) -> RunOutcome:
        return RunOutcome(128 + _signal.SIGKILL, _signal.SIGKILL, timed_out=True)

    def _unsupported(self, nr: int, rec) -> int:
        if rec is not None and rec.errno:
            return -rec.errno
        if nr not in self._reported:
            self._reported.add(nr)
            from kvmbox.abi.syscall_numbers import NAME_BY_NR
            name = NAME_BY_NR.get(nr, "unknown")
            self._notice(f"kvmbox: unsupported syscall {name} ({nr})")
        return -errno.ENOSYS

    def _fatal_fault(self, task: Task, fault: Fault) -> RunOutcome:
        signo = faults.signal_for(fault, task.mm)
        try:
            code = task.mm.copy_in(fault.rip, 16)
        except SyscallError:
            code = None
        return RunOutcome(128 + signo, signo, report=faults.describe(fault, signo, code), core=True)

    def _trace_call(self, task: Task, rec, regs, ret, mm=None) -> None:
        from kvmbox.sentry.strace import format_call, syscall_name
        self.trace(format_call(syscall_name(regs[0], rec), regs[1:], ret,
                               mm if mm is not None else task.mm))
