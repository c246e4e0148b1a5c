"""StubProcess: one host process, forked from the stub page, traced by the thread that made it.

The stub holds a guest address space (the MemoryFile mapped MAP_SHARED at
guest addresses) and runs guest code under PTRACE_SYSEMU (see context.py).
`syscall()` injects a host syscall: registers point at the stub's gadget
(`syscall; jmp r15`, the only place the seccomp filter accepts a syscall from)
with r15 at the trap, PTRACE_CONT, and the int3 right after hands it back.

The guest must not read the stub's code page, which lies above its address
range where Linux has nothing mapped.  The page is execute-only; with protection
keys a read faults (SEGV_PKUERR).  Without them (probe_readable() asks the CPU
once per platform) execute-only pages are readable, so the page is hidden
instead: it is a shared mapping of the stub's own memfd (`code_fd`), which the
Sentry truncates to nothing before guest code runs (any access is then SIGBUS
BUS_ADRERR, reported as a not-present page) and refills before it injects a
syscall (hide() / reveal(); about 13 µs per guest switch that followed
injections, and only on such CPUs).

CPU time: `cpu_ns()` reads the stub process's CPU clock (any thread may, as
clock_gettime allows for any process), and after kill() the value it had.

Rule: every method must run on the thread that created the stub (Linux accepts
ptrace requests only from the tracer thread); `check_thread()` enforces it.
The stub dies with that thread (PR_SET_PDEATHSIG) and with the Sentry
(PTRACE_O_EXITKILL).  With pin=True the stub and its tracer thread share one
CPU while the stub lives (a trap round trip costs ~3x more across CPUs).
"""
from __future__ import annotations

import os
import signal
import threading
import time

from kvmbox.errors import PlatformUnavailable, SandboxCrash
from kvmbox.guest_stub import layout as L
from kvmbox.platform.ptrace import consts as C
from kvmbox.platform.ptrace import host, stubcode

_R = C.REG
_MASK64 = (1 << 64) - 1
_CPUCLOCK_SCHED = 2                # clock ids of a process's CPU clock: (~pid << 3) | which


def describe_status(status: int) -> str:
    if os.WIFEXITED(status):
        return f"exited with status {os.WEXITSTATUS(status)}"
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)
        return f"killed by {name}"
    return f"wait status {status:#x}"


_pins = threading.local()          # per tracer thread: [pinned stubs, affinity before the first]


def _pin_tracer() -> int:
    """Pin the calling (tracer) thread to the CPU it runs on; returns that CPU (-1: not pinned).

    A stop wakes the tracer; unpinned, the scheduler often wakes it on the other
    CPU and every trap becomes a cross-CPU round trip.  Undone by _unpin_tracer
    when the thread's last stub goes.
    """
    cpu = host.current_cpu()
    if cpu < 0:
        return -1
    state = getattr(_pins, "state", None)
    try:
        if state is None or state[0] == 0:
            before = os.sched_getaffinity(0)
            os.sched_setaffinity(0, {cpu})
            _pins.state = [1, before]
        else:
            state[0] += 1
            cpu = next(iter(os.sched_getaffinity(0)))
    except OSError:
        return -1
    return cpu


def thread_affinity() -> frozenset[int]:
    """The calling thread's CPU affinity as it was before _pin_tracer narrowed it."""
    state = getattr(_pins, "state", None)
    if state is not None and state[0]:
        return frozenset(state[1])
    return frozenset(os.sched_getaffinity(0))


def _unpin_tracer() -> None:
    state = getattr(_pins, "state", None)
    if state is None or state[0] == 0:
        return
    state[0] -= 1
    if state[0] == 0:
        try:
            os.sched_setaffinity(0, state[1])
        except OSError:
            pass


class StubProcess:
    """A traced stub process; `owner` is the context whose registers it currently holds."""

    def __init__(self, memfd: int, *, pin: bool = True) -> None:
        self.tracer = threading.get_ident()
        self.page = host.stub_page()
        self._gadget = self.page + stubcode.GADGET_OFF
        self._trap = self.page + stubcode.TRAP_OFF
        self.hide_code = False     # keep the code page empty while guest code runs
        self.hidden = False        # it is empty now
        self.pid = -1
        self.pidfd = -1
        self.cpu = -1
        self.code_fd = os.memfd_create("kvmbox-stub-code", os.MFD_CLOEXEC)
        try:
            self._fill_code()
            self.pid = host.spawn(memfd, self.code_fd, stubcode.seccomp_filter(memfd, self.page))
        except OSError as e:
            os.close(self.code_fd)
            raise PlatformUnavailable(f"kvmbox: cannot create a ptrace stub: {e.strerror}") from None
        self.alive = True
        self._cpu_clock = ((~self.pid) << 3) | _CPUCLOCK_SCHED    # its process CPU clock id
        self._final_cpu_ns = 0
        self.owner: object | None = None
        self.fpu_reset = False   # its FPU/SSE state still holds the Sentry thread's (fork)
        try:
            status = self.wait()
            if not os.WIFSTOPPED(status) or os.WSTOPSIG(status) != signal.SIGTRAP:
                raise PlatformUnavailable(f"kvmbox: the ptrace stub did not start "
                                          f"({describe_status(status)})")
            host.ptrace(C.PTRACE_SETOPTIONS, self.pid, 0, C.PTRACE_O_TRACESYSGOOD | C.PTRACE_O_EXITKILL)
            self.pidfd = os.pidfd_open(self.pid)
            self.base = host.Regs()
            host.get_regs(self.pid, self.base)
            self.cpu = _pin_tracer() if pin else -1
            if self.cpu >= 0:
                os.sched_setaffinity(self.pid, {self.cpu})
        except BaseException:
            self.kill()
            raise
        self._inj = host.Regs()
        self._inj[:] = self.base[:]
        self._out = host.Regs()

    # --- the code page: execute-only, or emptied while the guest runs -------
    def _fill_code(self) -> None:
        os.ftruncate(self.code_fd, L.PAGE_SIZE)
        os.pwrite(self.code_fd, stubcode.STUB_CODE, 0)

    def hide(self) -> None:
        """Empty the code page (the guest is about to run): any access is now SIGBUS."""
        os.ftruncate(self.code_fd, 0)
        self.hidden = True

    def reveal(self) -> None:
        """Give the code page its bytes back, for an injected syscall."""
        self._fill_code()
        self.hidden = False

    def probe_readable(self) -> bool:
        """Does a read of the execute-only code page succeed on this CPU (no protection keys)?"""
        r = self._inj
        r[_R["rip"]], r[_R["orig_rax"]] = self.page + stubcode.PROBE_OFF, _MASK64
        self.owner = None
        host.set_regs(self.pid, r)
        host.resume(C.PTRACE_CONT, self.pid)
        status = self.wait()
        if not os.WIFSTOPPED(status):
            raise self.died(status, "probing its code page")
        return os.WSTOPSIG(status) == signal.SIGTRAP

    def check_thread(self) -> None:
        if threading.get_ident() != self.tracer:
            raise SandboxCrash("kvmbox: a ptrace-platform address space was used from a thread other "
                               "than the one that created it (ptrace accepts only the tracer thread)")

    def wait(self) -> int:
        _, status = os.waitpid(self.pid, C.WALL)
        if not os.WIFSTOPPED(status):
            self.alive = False
        return status

    def died(self, status: int, doing: str) -> SandboxCrash:
        return SandboxCrash(f"kvmbox: ptrace stub {self.pid} {describe_status(status)} {doing}")

    def syscall(self, nr: int, a0: int = 0, a1: int = 0, a2: int = 0, a3: int = 0, a4: int = 0,
                a5: int = 0) -> int:
        """Make the stub execute host syscall `nr` for real; returns its (signed) result."""
        if not self.alive:
            raise SandboxCrash(f"kvmbox: ptrace stub {self.pid} is dead")
        if self.hidden:
            self.reveal()
        r = self._inj
        r[_R["rax"]], r[_R["rdi"]], r[_R["rsi"]], r[_R["rdx"]] = nr, a0 & _MASK64, a1 & _MASK64, a2 & _MASK64
        r[_R["r10"]], r[_R["r8"]], r[_R["r9"]] = a3 & _MASK64, a4 & _MASK64, a5 & _MASK64
        r[_R["rip"]], r[_R["r15"]], r[_R["orig_rax"]] = self._gadget, self._trap, _MASK64
        r[_R["rcx"]], r[_R["r11"]] = self._gadget, r[_R["eflags"]]
        self.owner = None                    # the guest's registers are no longer loaded
        host.set_regs(self.pid, r)
        while True:
            host.resume(C.PTRACE_CONT, self.pid)
            status = self.wait()
            if not os.WIFSTOPPED(status):
                raise self.died(status, f"during injected syscall {nr}")
            if os.WSTOPSIG(status) == signal.SIGTRAP:
                break
            # Any other stop (an interrupt's SIGSTOP, a stray signal) is swallowed.
        out = self._out
        host.get_regs(self.pid, out)
        if out[_R["rip"]] != self._trap + 1:
            raise SandboxCrash(f"kvmbox: ptrace stub {self.pid} trapped at {out[_R['rip']]:#x} "
                               f"during injected syscall {nr}")
        ret = out[_R["rax"]]
        return ret - (1 << 64) if ret >> 63 else ret

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

    def cpu_ns(self) -> int:
        """CPU time the stub process has used (what its guest code ran, and the host's work
        on its faults and stops); the last value once it is killed.  Thread-safe."""
        pid = self.pid
        if pid > 0:
            try:
                ns = time.clock_gettime_ns(self._cpu_clock)
            except OSError:
                ns = -1
            if ns >= 0 and self.pid == pid:     # not reaped meanwhile (its pid could be reused)
                return ns
        return self._final_cpu_ns

    def kill(self) -> None:
        """SIGKILL and reap the stub (idempotent)."""
        if self.pid > 0:
            self._final_cpu_ns = max(self._final_cpu_ns, self.cpu_ns())
        if self.pidfd >= 0:
            try:
                signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)
            except OSError:
                pass
            os.close(self.pidfd)
            self.pidfd = -1
        elif self.alive:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except OSError:
                pass
        if self.pid > 0:
            try:
                while os.WIFSTOPPED(os.waitpid(self.pid, C.WALL)[1]):
                    pass                  # a stop reported before the kill landed
            except ChildProcessError:
                pass
            self.pid = -1
        self.alive = False
        self.owner = None
        if self.code_fd >= 0:
            os.close(self.code_fd)
            self.code_fd = -1
        if self.cpu >= 0 and threading.get_ident() == self.tracer:
            _unpin_tracer()
            self.cpu = -1
