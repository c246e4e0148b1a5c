"""StubProcess: one host process, forked from the stub page, holding one guest address space.

The stub holds a guest address space (the MemoryFile mapped MAP_SHARED at
guest addresses) and runs guest code under PTRACE_SYSEMU (see context.py),
one stub thread (stubthread.py) per host thread that uses it.  It is made on
the platform's stub service thread (service.py), which traces its thread 0
and makes its other threads: `clone_thread()` injects clone(CLONE_THREAD...)
into thread 0 with PTRACE_O_TRACECLONE, so the new thread starts traced and
stopped; its registers are pointed at the stub's spin loop and it is detached,
for the host thread that asked to attach it.

The guest must not read the stub's code page, which lies above its address
range where Linux has nothing mapped.  The page is execute-only; with protection
keys a read faults (SEGV_PKUERR).  Without them (probe_readable() asks the CPU
once per platform) execute-only pages are readable, so the page is hidden
instead: it is a shared mapping of the stub's own memfd (`code_fd`), which the
Sentry truncates to nothing before guest code runs (any access is then SIGBUS
BUS_ADRERR, reported as a not-present page) and refills before it injects a
syscall (hide() / reveal(); about 13 µs per guest switch that followed
injections, and only on such CPUs).

The code page's hiding (below) is the process's; `code_lock` keeps one thread's
injection and another's hiding apart.

Rule: a stub thread is driven only by its tracer (Linux accepts ptrace
requests only from the tracer thread); StubThread.check_thread() enforces it.
The stub dies with the service thread (PR_SET_PDEATHSIG) and with the Sentry
or any of its threads' tracers (PTRACE_O_EXITKILL: a stub thread is never left
untraced, so the host thread that traces one ends it first, exit()).  With
pin=True each stub thread and its tracer thread share one CPU (a trap round
trip costs ~3x more across CPUs); the tracers of one platform are spread over
the CPUs they may use, so threads of one process run in parallel.
"""
from __future__ import annotations

import os
import signal
import threading

from kvmbox.errors import PlatformUnavailable, SandboxCrash
from kvmbox.guest_stub import layout as L
from kvmbox.platform.ptrace import consts as C
from kvmbox.platform.fpu import reset_xsave
from kvmbox.platform.ptrace import host, stubcode
from kvmbox.platform.ptrace.stubthread import StubThread

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from kvmbox.platform.ptrace.pins import TracerPins

_R = C.REG
_MASK64 = (1 << 64) - 1


def describe_status(status: int) -> str:
    if os.WIFEXITED(status):
        return f"exited with status {os.WEXITSTATUS(status)}"
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)
        return f"killed by {name}"
    return f"wait status {status:#x}"


class StubProcess:
    """A stub process; `main` is its thread 0, traced by the service thread that made it."""

    def __init__(self, memfd: int, *, pins: "TracerPins | None" = None) -> None:
        self.page = host.stub_page()
        self.gadget = self.page + stubcode.GADGET_OFF
        self.trap = self.page + stubcode.TRAP_OFF
        self.hide_code = False     # keep the code page empty while guest code runs
        self.hidden = False        # it is empty now
        self.code_lock = threading.Lock()
        self.handovers = 0         # new threads between clone_thread() and adopt()
        self.pins = pins
        self.pid = -1
        self.pidfd = -1
        self.threads: dict[int, StubThread] = {}
        self._cloned: list[int] = []
        self.code_fd = os.memfd_create("kvmbox-stub-code", os.MFD_CLOEXEC)
        try:
            self._fill_code()
            self.pid = host.spawn(memfd, self.code_fd, stubcode.seccomp_filter(memfd, self.page))
        except OSError as e:
            os.close(self.code_fd)
            raise PlatformUnavailable(f"kvmbox: cannot create a ptrace stub: {e.strerror}") from None
        self.alive = True
        self.main = StubThread(self, self.pid)
        self.threads[self.pid] = self.main
        try:
            status = self.main.wait()
            if not os.WIFSTOPPED(status) or os.WSTOPSIG(status) != signal.SIGTRAP:
                raise PlatformUnavailable(f"kvmbox: the ptrace stub did not start "
                                          f"({describe_status(status)})")
            host.ptrace(C.PTRACE_SETOPTIONS, self.pid, 0,
                        C.PTRACE_O_TRACESYSGOOD | C.PTRACE_O_EXITKILL | C.PTRACE_O_TRACECLONE)
            self.pidfd = os.pidfd_open(self.pid)
            self.main.init_regs()
            # Thread 0 holds the service thread's FPU state from the fork: reset it before
            # a thread is cloned from it (a guest must never see host data).
            host.set_xstate(self.pid, reset_xsave(host.get_xstate(self.pid)))
        except BaseException:
            self.kill()
            raise

    @property
    def base(self):
        return self.main.base

    # --- the code page: execute-only, or emptied while the guest runs -------
    def _fill_code(self) -> None:
        os.ftruncate(self.code_fd, L.PAGE_SIZE)
        os.pwrite(self.code_fd, stubcode.STUB_CODE, 0)

    def hide(self) -> None:
        """Empty the code page (guest code is about to run): any access is now SIGBUS."""
        with self.code_lock:
            # Not while a new thread spins on the page untraced (clone_thread to adopt): it
            # would die of SIGBUS, and the process with it.  The next switch hides it.
            if not self.hidden and not self.handovers:
                os.ftruncate(self.code_fd, 0)
                self.hidden = True

    def reveal(self) -> None:
        """Give the code page its bytes back, for an injected syscall (code_lock held)."""
        self._fill_code()
        self.hidden = False

    def probe_readable(self) -> bool:
        """Does a read of the execute-only code page succeed on this CPU (no protection keys)?
        On thread 0 (the service thread)."""
        t = self.main
        t.check_thread()
        r = t._inj
        r[:] = t.base[:]
        r[C.REG["rip"]], r[C.REG["orig_rax"]] = self.page + stubcode.PROBE_OFF, _MASK64
        t.owner = None
        host.set_regs(self.pid, r)
        host.resume(C.PTRACE_CONT, self.pid)
        status = t.wait()
        if not os.WIFSTOPPED(status):
            raise t.died(status, "probing its code page")
        r[:] = t.base[:]
        return os.WSTOPSIG(status) == signal.SIGTRAP

    def syscall(self, nr: int, *args: int) -> int:
        """Inject host syscall `nr` through thread 0 (on the service thread)."""
        self.main.check_thread()
        return self.main.syscall(nr, *args)

    # --- threads ------------------------------------------------------------------------
    def cloned(self, tid: int) -> None:
        """Thread 0 reported a clone (PTRACE_EVENT_CLONE): the new thread's tid."""
        self._cloned.append(tid)

    def clone_thread(self) -> int:
        """Make a new stub thread (on the service thread): cloned by thread 0, stopped at its
        start, moved to the spin loop and detached for its new tracer to attach; its tid."""
        self._cloned.clear()
        with self.code_lock:
            self.handovers += 1                      # the code page stays until it is adopted
        try:
            return self._clone_thread()
        except BaseException:
            with self.code_lock:
                self.handovers -= 1
            raise

    def _clone_thread(self) -> int:
        ret = self.syscall(C.NR_clone, C.STUB_THREAD_FLAGS, 0, 0, 0, 0)
        if ret < 0 or not self._cloned:
            raise SandboxCrash(f"kvmbox: cannot make a ptrace stub thread: "
                               f"{os.strerror(-ret) if ret < 0 else 'no clone event'}")
        tid = self._cloned.pop()
        while True:                                  # its first stop: the SIGSTOP of a traced clone
            _, status = os.waitpid(tid, C.WALL)
            if not os.WIFSTOPPED(status):
                raise SandboxCrash(f"kvmbox: ptrace stub thread {tid} {describe_status(status)}")
            if os.WSTOPSIG(status) == signal.SIGSTOP:
                break
            host.resume(C.PTRACE_CONT, tid)
        regs = host.Regs()
        host.get_regs(tid, regs)
        regs[C.REG["rip"]] = self.page + stubcode.SPIN_OFF
        host.set_regs(tid, regs)
        host.ptrace(C.PTRACE_DETACH, tid, 0, 0)      # it spins, untraced, until attached
        return tid

    def adopt(self, tid: int) -> StubThread:
        """Attach the new thread `tid` (from clone_thread) on the calling host thread."""
        t = StubThread(self, tid)
        self.threads[tid] = t
        try:
            t.attach()
        except BaseException:
            self.threads.pop(tid, None)
            raise
        finally:
            with self.code_lock:
                self.handovers -= 1
        if self.pins is not None:
            t.cpu = self.pins.pin(tid)
        return t

    def forget(self, t: StubThread) -> None:
        """`t` has exited: unpin its tracer."""
        self.threads.pop(t.tid, None)
        if t.cpu >= 0 and self.pins is not None:
            self.pins.unpin(t.tid, t.cpu)
            t.cpu = -1

    def mapped_ranges(self, start: int, end: int) -> list[tuple[int, int]]:
        """The stub's mappings overlapping [start, end), clipped, from /proc/PID/maps."""
        out = []
        with open(f"/proc/{self.pid}/maps") as f:
            for line in f:
                lo_s, hi_s = line.split(" ", 1)[0].split("-")
                lo, hi = max(int(lo_s, 16), start), min(int(hi_s, 16), end)
                if lo < hi:
                    out.append((lo, hi))
        return out

    def kill(self) -> None:
        """SIGKILL the stub and reap every thread of it (idempotent; any host thread: a
        Sentry thread may wait for another thread's tracees)."""
        threads = list(self.threads.values())
        for t in threads:
            if t.alive:
                t._final_cpu_ns = max(t._final_cpu_ns, t.cpu_ns())
        if self.pidfd >= 0:
            try:
                signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)
            except OSError:
                pass
            os.close(self.pidfd)
            self.pidfd = -1
        elif self.alive and self.pid > 0:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except OSError:
                pass
        for t in sorted(threads, key=lambda t: t.tid == self.pid):   # the leader last
            try:
                while os.WIFSTOPPED(os.waitpid(t.tid, C.WALL)[1]):
                    pass                  # a stop reported before the kill landed
            except ChildProcessError:
                pass
            t.alive = False
            t.owner = None
            if t.cpu >= 0 and self.pins is not None:
                self.pins.unpin(t.tid, t.cpu)
                t.cpu = -1
        self.threads.clear()
        self.pid = -1
        self.alive = False
        if self.code_fd >= 0:
            os.close(self.code_fd)
            self.code_fd = -1
