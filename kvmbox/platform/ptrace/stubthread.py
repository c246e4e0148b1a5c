"""StubThread: one thread of a stub process, traced by one host thread, which alone drives it.

A stub process (stub.py) holds one guest address space; each host thread that
runs guest code in it, or injects a syscall into it, does so through a stub
thread of its own, because Linux takes ptrace requests only from a tracee's
tracer thread.  Thread 0 (the process's first thread) belongs to the
platform's stub service thread (service.py), which makes the process and its
other threads; every other thread is made there and handed over (attach()).

`syscall()` injects a host syscall: registers point at the stub's gadget
(`syscall; jmp r15`, the only place the seccomp filter accepts a syscall from)
with r15 at the trap, PTRACE_CONT, and the int3 right after hands it back.
The code page must be there meanwhile: on a CPU that hides it from the guest
(stub.py), `StubProcess.code_lock` keeps an injection and a hiding apart.

CPU time: `cpu_ns()` reads the thread's run time from
/proc/<pid>/task/<tid>/schedstat (another process's per-thread CPU clock is
not readable with clock_gettime), and after exit() or a kill the value it had.
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


class StubThread:
    """One traced thread of `proc`; `owner` is the context whose registers it holds now."""

    def __init__(self, proc: "StubProcess", tid: int) -> None:
        self.proc = proc
        self.tid = tid
        self.tracer = threading.get_ident()
        self.alive = True
        self.owner: object | None = None
        self.fpu_reset = False     # its FPU/SSE state still holds the Sentry thread's (fork)
        self.fpu_owner: object | None = None   # the context whose FPU state it holds
        self.cpu = -1              # the CPU it and its tracer are pinned to (-1: not pinned)
        self.base = host.Regs()    # its registers when it was made (the segment registers)
        self._inj = host.Regs()
        self._out = host.Regs()
        self._final_cpu_ns = 0
        self._schedstat = f"/proc/{proc.pid}/task/{tid}/schedstat"

    @property
    def pid(self) -> int:
        """The stub process's pid (the thread's own id is `tid`)."""
        return self.proc.pid

    @property
    def hide_code(self) -> bool:
        return self.proc.hide_code

    def mapped_ranges(self, start: int, end: int) -> list[tuple[int, int]]:
        return self.proc.mapped_ranges(start, end)

    def init_regs(self) -> None:
        """Read the thread's registers once it is stopped (the base every injection edits)."""
        host.get_regs(self.tid, self.base)
        self._inj[:] = self.base[:]

    # --- being handed from one tracer to another -------------------------------------
    def attach(self) -> None:
        """Become the tracer of this thread (on the calling host thread): it waits in
        pause(2), untraced, until PTRACE_ATTACH's SIGSTOP interrupts it."""
        self.tracer = threading.get_ident()
        host.ptrace(C.PTRACE_ATTACH, self.tid)
        while True:
            status = self.wait()
            if not os.WIFSTOPPED(status):
                raise self.died(status, "while being attached")
            if os.WSTOPSIG(status) == signal.SIGSTOP:
                break
            host.resume(C.PTRACE_CONT, self.tid)      # anything else: swallowed
        host.ptrace(C.PTRACE_SETOPTIONS, self.tid, 0, C.PTRACE_O_TRACESYSGOOD | C.PTRACE_O_EXITKILL)
        self.init_regs()
        # It stopped inside the interrupted pause: never let a resume restart that call.
        self.base[_R["orig_rax"]] = self._inj[_R["orig_rax"]] = _MASK64

    # --- running -----------------------------------------------------------------------
    def check_thread(self) -> None:
        if threading.get_ident() != self.tracer:
            raise SandboxCrash("kvmbox: a ptrace stub thread was used from a thread other "
                               "than its tracer (ptrace accepts only the tracer thread)")

    def wait(self) -> int:
        _, status = os.waitpid(self.tid, C.WALL)
        if not os.WIFSTOPPED(status):
            self.alive = False
        return status

    def died(self, status: int, doing: str) -> SandboxCrash:
        from kvmbox.platform.ptrace.stub import describe_status
        return SandboxCrash(f"kvmbox: ptrace stub {self.proc.pid} (thread {self.tid}) "
                            f"{describe_status(status)} {doing}")

    def syscall(self, nr: int, a0: int = 0, a1: int = 0, a2: int = 0, a3: int = 0, a4: int = 0,
                a5: int = 0) -> int:
        """Make this stub thread execute host syscall `nr` for real; its (signed) result."""
        if not self.alive:
            raise SandboxCrash(f"kvmbox: ptrace stub {self.proc.pid} is dead")
        proc = self.proc
        with proc.code_lock:
            if proc.hidden:
                proc.reveal()
            return self._inject(nr, a0, a1, a2, a3, a4, a5)

    def _inject(self, nr: int, *args: int) -> int:
        r = self._inj
        r[_R["rax"]] = nr
        for name, value in zip(("rdi", "rsi", "rdx", "r10", "r8", "r9"), args):
            r[_R[name]] = value & _MASK64
        proc = self.proc
        r[_R["rip"]], r[_R["r15"]], r[_R["orig_rax"]] = proc.gadget, proc.trap, _MASK64
        r[_R["rcx"]], r[_R["r11"]] = proc.gadget, r[_R["eflags"]]
        self.owner = None                    # the guest's registers are no longer loaded
        host.set_regs(self.tid, r)
        while True:
            host.resume(C.PTRACE_CONT, self.tid)
            status = self.wait()
            if not os.WIFSTOPPED(status):
                raise self.died(status, f"during injected syscall {nr}")
            if os.WSTOPSIG(status) == signal.SIGTRAP and status >> 16 == 0:
                break
            if status >> 16 == C.PTRACE_EVENT_CLONE:
                proc.cloned(host.event_msg(self.tid))    # the new thread's tid
            # Any other stop (an interrupt's SIGSTOP, a stray signal) is swallowed.
        out = self._out
        host.get_regs(self.tid, out)
        if out[_R["rip"]] != proc.trap + 1:
            raise SandboxCrash(f"kvmbox: ptrace stub {proc.pid} trapped at {out[_R['rip']]:#x} "
                               f"during injected syscall {nr}")
        ret = out[_R["rax"]]
        return ret - (1 << 64) if ret >> 63 else ret

    def exit(self) -> None:
        """End this thread (on its tracer): an injected exit(2), which ends it alone."""
        if not self.alive:
            return
        self._final_cpu_ns = max(self._final_cpu_ns, self.cpu_ns())
        proc = self.proc
        try:
            # code_lock is held until the thread is gone, not just while it is set going:
            # where the code page is hidden (no PKU), another tracer entering the guest
            # would empty it before this thread reached the gadget, and each PTRACE_CONT
            # would meet the same SIGBUS again, for ever (seen on an Intel Xeon).
            with proc.code_lock:
                if proc.hidden:
                    proc.reveal()
                r = self._inj
                r[_R["rax"]], r[_R["rdi"]] = C.NR_exit, 0
                r[_R["rip"]], r[_R["r15"]], r[_R["orig_rax"]] = proc.gadget, proc.trap, _MASK64
                host.set_regs(self.tid, r)
                host.resume(C.PTRACE_CONT, self.tid)
                while self.alive:
                    status = self.wait()
                    if os.WIFSTOPPED(status):
                        host.resume(C.PTRACE_CONT, self.tid)
        except (OSError, ChildProcessError):
            self.alive = False                  # it died with its process meanwhile
        proc.forget(self)

    def cpu_ns(self) -> int:
        """CPU time this thread has used (its guest code and the host's work on its faults
        and stops); the last value once it is gone.  Thread-safe."""
        if self.alive:
            try:
                with open(self._schedstat, "rb") as f:
                    ns = int(f.read().split(None, 1)[0])
                self._final_cpu_ns = max(self._final_cpu_ns, ns)
            except (OSError, ValueError, IndexError):
                pass
        return self._final_cpu_ns


__all__ = ["StubThread", "stubcode"]
