"""StubThread: one thread of a stub process, traced by one host (Sentry) thread.

A stub process (stub.py) has one thread per host thread that runs guest code in,
or changes the mappings of, its address space: Linux takes ptrace requests only
from a tracee's own tracer thread, so each host thread needs a tracee of its own
in the process.  All threads share the process's mm (the guest mappings); each
has its own registers, FPU state, CPU clock and CPU affinity.

`syscall()` injects a host syscall: registers point at the stub's gadget
(`syscall; jmp r15`, the only place the seccomp filter accepts a syscall from)
with r15 at the trap, PTRACE_CONT, and the int3 right after hands it back.

Rule: every method but cpu_ns() and forget() runs on the thread's tracer (`tracer`).
"""
from __future__ import annotations

import os
import signal
import threading

from kvmbox.errors import SandboxCrash
from kvmbox.platform.ptrace import consts as C
from kvmbox.platform.ptrace import host, stubcode

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from kvmbox.platform.ptrace.stub import StubProcess

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


class StubThread:
    """A traced thread of `proc`; `owner` is the context whose registers it currently holds,
    `users` the contexts that ran in it (it exits when the last is released)."""

    def __init__(self, proc: "StubProcess", tid: int) -> None:
        self.proc = proc
        self.pid = proc.pid                 # the process (for /proc, maps)
        self.tid = tid
        self.tracer = threading.get_ident()
        self.alive = True
        self.owner: object | None = None
        self.users: set[object] = set()
        self.fpu_reset = False   # its FPU/SSE state still holds a Sentry thread's (fork, clone)
        self.fpu_owner: object | None = None    # the context whose FPU state it holds
        self.cpu = -1            # the CPU it and its tracer are pinned to (-1: not pinned)
        self.retire = self.exit  # end it, as its address space wants (set by the address space)
        self._final_cpu_ns = 0
        self._stat_fd = -1       # its /proc schedstat, open once read
        proc.members.add(self)
        self.base = host.Regs()
        self._inj = host.Regs()
        self._out = host.Regs()

    def setup(self, base: "host.Regs | None" = None) -> None:
        """Set ptrace options and the base registers (the thread is stopped, traced): `base`
        (the leader's: every thread has the same segment registers), else its own."""
        host.ptrace(C.PTRACE_SETOPTIONS, self.tid, 0, C.PTRACE_O_TRACESYSGOOD | C.PTRACE_O_EXITKILL)
        if base is None:
            host.get_regs(self.tid, self.base)
        else:
            self.base[:] = base[:]
        self._inj[:] = self.base[:]

    @property
    def hide_code(self) -> bool:
        return self.proc.hide_code

    def check_thread(self) -> None:
        if threading.get_ident() != self.tracer:
            raise SandboxCrash("kvmbox: a ptrace stub thread was used from a host thread other "
                               "than its tracer")

    def wait(self) -> int:
        _, status = os.waitpid(self.tid, C.WALL)
        if not os.WIFSTOPPED(status):
            self.alive = False
        return status

    def died(self, status: int, doing: str) -> SandboxCrash:
        self.alive = False
        return SandboxCrash(f"kvmbox: ptrace stub {self.pid} (thread {self.tid}) "
                            f"{describe_status(status)} {doing}")

    def _resume_until_trap(self, doing: str) -> None:
        while True:
            host.resume(C.PTRACE_CONT, self.tid)
            try:
                status = self.wait()
            except ChildProcessError:
                self.alive = False
                raise SandboxCrash(f"kvmbox: ptrace stub {self.pid} was killed {doing}") from None
            if not os.WIFSTOPPED(status):
                raise self.died(status, doing)
            if os.WSTOPSIG(status) == signal.SIGTRAP:
                return
            # Any other stop (an interrupt's SIGSTOP, a stray signal) is swallowed.

    def syscall(self, nr: int, a0: int = 0, a1: int = 0, a2: int = 0, a3: int = 0, a4: int = 0,
                a5: int = 0) -> int:
        """Make the thread execute host syscall `nr` for real; returns its (signed) result."""
        if not self.alive or not self.proc.alive:
            raise SandboxCrash(f"kvmbox: ptrace stub {self.pid} is dead")
        r = self._inj
        r[_R["rax"]], r[_R["rdi"]], r[_R["rsi"]], r[_R["rdx"]] = nr, a0 & _MASK64, a1 & _MASK64, a2 & _MASK64
        r[_R["r10"]], r[_R["r8"]], r[_R["r9"]] = a3 & _MASK64, a4 & _MASK64, a5 & _MASK64
        r[_R["rip"]], r[_R["r15"]], r[_R["orig_rax"]] = self.proc.gadget, self.proc.trap, _MASK64
        r[_R["rcx"]], r[_R["r11"]] = self.proc.gadget, r[_R["eflags"]]
        self.owner = None                    # the guest's registers are no longer loaded
        host.set_regs(self.tid, r)
        self.proc.hold_code()
        try:
            self._resume_until_trap(f"during injected syscall {nr}")
        finally:
            self.proc.unhold_code()
        out = self._out
        host.get_regs(self.tid, out)
        if out[_R["rip"]] != self.proc.trap + 1:
            raise SandboxCrash(f"kvmbox: ptrace stub {self.pid} trapped at {out[_R['rip']]:#x} "
                               f"during injected syscall {nr}")
        ret = out[_R["rax"]]
        return ret - (1 << 64) if ret >> 63 else ret

    def set_call(self, nr: int, a0: int = 0) -> None:
        """Registers to make syscall `nr` at the gadget, coming back to it (r15 = gadget)."""
        r = self._inj
        r[_R["rax"]], r[_R["rdi"]], r[_R["orig_rax"]] = nr, a0, _MASK64
        r[_R["rip"]] = r[_R["r15"]] = r[_R["rcx"]] = self.proc.gadget
        self.owner = None
        host.set_regs(self.tid, r)

    def probe_readable(self) -> bool:
        """Does a read of the execute-only code page succeed on this CPU (no protection keys)?"""
        r = self._inj
        r[_R["rip"]], r[_R["orig_rax"]] = self.proc.page + stubcode.PROBE_OFF, _MASK64
        self.owner = None
        host.set_regs(self.tid, r)
        self.proc.hold_code()
        try:
            host.resume(C.PTRACE_CONT, self.tid)
            status = self.wait()
        finally:
            self.proc.unhold_code()
        if not os.WIFSTOPPED(status):
            raise self.died(status, "probing its code page")
        return os.WSTOPSIG(status) == signal.SIGTRAP

    def cpu_ns(self) -> int:
        """CPU time this thread has used (its guest code, and the host's work on its faults
        and stops), from /proc/PID/task/TID/schedstat (a thread's CPU clock is readable only
        inside its own process; the file is kept open, 1.5 µs a read); the last value once
        it has exited.  Thread-safe."""
        if self.alive:
            try:
                fd = self._stat_fd
                if fd < 0:
                    fd = self._stat_fd = os.open(f"/proc/{self.pid}/task/{self.tid}/schedstat",
                                                 os.O_RDONLY | os.O_CLOEXEC)
                ns = int(os.pread(fd, 64, 0).split(None, 1)[0])
                if self.alive:                 # not reaped meanwhile (its tid could be reused)
                    self._final_cpu_ns = max(self._final_cpu_ns, ns)
            except (OSError, ValueError, IndexError):
                pass
        return self._final_cpu_ns

    def forget(self) -> None:
        """The thread is gone (or no longer ours): keep its last CPU time, close the file."""
        self.cpu_ns()
        self.alive = False
        self.proc.members.discard(self)
        fd, self._stat_fd = self._stat_fd, -1
        if fd >= 0:
            os.close(fd)

    def exit(self) -> None:
        """End this thread alone (inject exit(2)) and reap it; on its tracer.  Idempotent."""
        if not self.alive:
            return
        if not self.proc.alive:
            self.forget()
            return
        self.cpu_ns()
        self.proc.hold_code()
        try:
            self.set_call(C.NR_exit)
            host.resume(C.PTRACE_CONT, self.tid)
            while os.WIFSTOPPED(os.waitpid(self.tid, C.WALL)[1]):
                host.resume(C.PTRACE_CONT, self.tid)
        except (OSError, ChildProcessError):
            pass                               # killed meanwhile (the whole stub went)
        finally:
            self.proc.unhold_code()
            self.forget()
