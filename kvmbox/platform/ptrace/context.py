"""PtraceContext: one guest thread's registers, run in an address space's stub under PTRACE_SYSEMU.

switch() = PTRACE_SETREGS (only when the registers changed or the stub holds
someone else's), PTRACE_SYSEMU, waitpid, PTRACE_GETREGS, and one readable
switch over the stop:

  SIGTRAP|0x80  syscall-entry stop: the host kernel skips the syscall (SYSEMU);
                nr = orig_rax; rip is already the return address, and on resume
                the value in rax is the result (rcx/r11 as Linux leaves them).
                A `syscall` always leaves rcx == rip and r11 == rflags; a stop
                without that is `int 0x80` (the host's IA-32 gate, also skipped),
                which kvmbox does not offer: reported as #GP at the instruction,
                as KVM does.  (A guest that fakes rcx/r11 before int 0x80 gets
                its 32-bit numbers read as 64-bit ones: its own loss.)
  SIGSTOP       interrupt() asked for it: INTERRUPTED (a stale one is swallowed).
  SIGSEGV/...   a CPU fault, translated with PTRACE_GETSIGINFO (below); the
                signal is never delivered: the next resume passes signal 0.

Fault translation (x86 vector, address, error code):
  SIGSEGV SEGV_MAPERR -> 14, si_addr, PF_USER plus PF_INSTR when si_addr == rip,
      else PF_ACCESS_UNKNOWN (read or write: the Sentry decodes it if it matters).
  SIGSEGV SEGV_ACCERR -> 14, si_addr, PF_USER|PF_PRESENT plus PF_INSTR when
      si_addr == rip, else PF_WRITE.  siginfo does not carry the hardware
      error code, so the write bit is inferred: the Sentry never maps a page
      without read permission, so an access violation on a present page that is
      not a fetch is a write.  A not-present write is reported as a read; if the
      VMA is read-only the retry then faults ACCERR and is refused as a write.
      A refused not-present access (past a file's end: SIGBUS for a read,
      SIGSEGV for a write to a read-only mapping) is decoded by the Sentry.
  SIGSEGV SEGV_PKUERR -> 14 with PF_PK (a read of the execute-only stub page where
      protection keys make execute-only unreadable).
  SIGSEGV other kernel codes (SI_KERNEL: privileged instruction, non-canonical
      address, #GP in general) -> 13 at rip.
  SIGILL -> 6; SIGFPE integer divide/overflow -> 0, other FP codes -> 19 (#XM:
      x87 and SSE exceptions are not told apart, both end in SIGFPE);
  SIGTRAP TRAP_TRACE -> 1, other (int3 gives SI_KERNEL / TRAP_BRKPT) -> 3;
  SIGBUS BUS_ADRERR -> 14 not present at si_addr (the hidden stub code page, see
      stub.py: the guest touched an address where Linux would have nothing);
      SIGBUS SI_KERNEL -> 12 (#SS); other SIGBUS -> 17 (#AC, what BUS_ADRALN means).
  SIGSYS SYS_SECCOMP (the filter's TRAP: the vsyscall page) -> 14 instruction
      fetch at the call address, so the guest gets SIGSEGV as on KVM.
Signals sent by a process (si_code <= 0) are not faults and are swallowed.

Guest CPU time is the run time of the stub threads it ran in (its user code,
and the host kernel's work on its page faults and ptrace stops), summed over
the stub threads it has used (execve moves it to a new address space's stub).

The interrupt is a SIGSTOP sent with tgkill to the stub thread running this
context (a kill would reach whichever thread of the stub the kernel picks).

Not thread-safe except interrupt() and guest_cpu_ns(); all else on the stub thread's tracer.
"""
from __future__ import annotations

import ctypes
import os
import signal
import struct
import threading
TYPE_CHECKING = False  # typing is not imported at run time (start-up cost)

from kvmbox.platform.base import (INTERRUPTED, PF_ACCESS_UNKNOWN, PF_INSTR, PF_PRESENT, PF_USER,
                                  PF_WRITE, SYSCALL, AddressSpace, Context, Event, Fault)
from kvmbox.platform.fpu import reset_xsave
from kvmbox.platform.ptrace import consts as C
from kvmbox.platform.ptrace import host

if TYPE_CHECKING:  # pragma: no cover
    from kvmbox.platform.ptrace.address_space import PtraceAddressSpace

_R = C.REG
_RAX, _ORIG_RAX, _RIP, _EFLAGS = _R["rax"], _R["orig_rax"], _R["rip"], _R["eflags"]
_RCX, _R11 = _R["rcx"], _R["r11"]
_RDI, _RSI, _RDX, _R10, _R8, _R9 = _R["rdi"], _R["rsi"], _R["rdx"], _R["r10"], _R["r8"], _R["r9"]
# Register names of base.Context -> user_regs_struct index.
_NAMES = {name: _R[name] for name in ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rsp", "rbp", "r8",
                                      "r9", "r10", "r11", "r12", "r13", "r14", "r15", "rip",
                                      "fs_base", "gs_base")}
_NAMES["rflags"] = _EFLAGS
_MASK64 = (1 << 64) - 1
_SYSEMU, _SYSCALL_STOP, _WALL = C.PTRACE_SYSEMU, C.SYSCALL_STOP_SIG, C.WALL
_SIGSTOP = signal.SIGSTOP
_run_guest = host.run_guest


class PtraceContext(Context):
    """Runs one guest thread in the stub of whichever address space switch() is given."""

    def __init__(self) -> None:
        self.regs = host.Regs()
        self._regs_addr = ctypes.addressof(self.regs)
        self._loaded = False                    # regs hold a real frame (taken from a stub)
        self._pending: dict[str, int] = {}      # registers set before the first switch
        self._dirty = False
        self._interrupt = threading.Event()
        self._kick: tuple[int, int] | None = None   # (stub pid, stub thread) while it runs
        self._info = host.SigInfo()
        self._fpu_image: bytes | None = None    # FPU state not in a stub thread (before a switch)
        self._st = None                         # the stub thread it last ran in
        self._xstate_size = 0
        self._xfeatures: int | None = None
        # (CPU ns of the stubs left behind, the current stub or None, its clock when first run)
        self._cpu = (0, None, 0)

    # --- running ---------------------------------------------------------
    def switch(self, aspace: AddressSpace) -> Event:
        st = aspace.thread_for_caller()  # type: ignore[attr-defined]
        if self._interrupt.is_set():
            return INTERRUPTED
        regs = self.regs
        pid = st.tid
        proc = st.proc
        self._st = st
        if st.fpu_owner is not self:
            self._take_fpu(st)
        if not self._loaded:
            self._first_frame(st)
        if proc.hide_code and not proc.hidden:
            proc.hide()
        if self._cpu[1] is not st:
            done, old, base = self._cpu
            if old is not None:
                done += max(old.cpu_ns() - base, 0)
            self._cpu = (done, st, st.cpu_ns())
        load = st.owner is not self or self._dirty
        st.owner = self
        self._dirty = False
        self._kick = (proc.pid, pid)
        try:
            while True:
                if self._interrupt.is_set():
                    if load:
                        self._dirty = True
                    return INTERRUPTED
                status = _run_guest(pid, self._regs_addr, load)
                load = False
                if not os.WIFSTOPPED(status):
                    st.alive = False
                    raise st.died(status, "while running the guest")
                sig = os.WSTOPSIG(status)
                if sig == _SYSCALL_STOP:
                    regs[_RAX] = regs[_ORIG_RAX]   # as on KVM: rax holds the number until set_return
                    regs[_ORIG_RAX] = _MASK64      # never let the host restart it
                    if regs[_RCX] != regs[_RIP] or regs[_R11] != regs[_EFLAGS]:
                        return self._int80()
                    return SYSCALL
                if sig == _SIGSTOP:
                    if self._interrupt.is_set():
                        return INTERRUPTED
                    continue                       # a stale kick
                fault = self._fault(pid, sig)
                if fault is not None:
                    return fault
        finally:
            self._kick = None

    def _int80(self) -> Fault:
        """`int 0x80` (IA-32 emulation) stopped like a syscall: report the #GP of an absent gate."""
        rip = (self.regs[_RIP] - C.INT80_LEN) & _MASK64
        self.regs[_RIP] = rip
        self._dirty = True
        return Fault(13, rip, C.INT80_GP_ERROR, rip)

    def _fault(self, pid: int, sig: int) -> Fault | None:
        info = self._info
        host.get_siginfo(pid, info)
        code, = struct.unpack_from("<i", info, C.SI_CODE)
        if code <= 0:
            return None                            # sent by a process, not a CPU fault
        rip = self.regs[_RIP]
        if sig == signal.SIGSEGV:
            addr, = struct.unpack_from("<Q", info, C.SI_ADDR)
            if code == C.SEGV_MAPERR:
                return Fault(14, addr, PF_USER | (PF_INSTR if addr == rip else PF_ACCESS_UNKNOWN), rip)
            if code == C.SEGV_PKUERR:               # the execute-only stub page
                return Fault(14, addr, PF_USER | C.PF_PK, rip)        # to the guest: nothing there
            if code == C.SEGV_ACCERR:
                return Fault(14, addr, PF_USER | PF_PRESENT | (PF_INSTR if addr == rip else PF_WRITE), rip)
            return Fault(13, rip, 0, rip)
        if sig == signal.SIGILL:
            return Fault(6, rip, 0, rip)
        if sig == signal.SIGFPE:
            return Fault(0 if code in (C.FPE_INTDIV, C.FPE_INTOVF) else 19, rip, 0, rip)
        if sig == signal.SIGTRAP:
            return Fault(1 if code == C.TRAP_TRACE else 3, rip, 0, rip)
        if sig == signal.SIGBUS:
            if code == C.BUS_ADRERR:            # the hidden stub code page: nothing is there
                addr, = struct.unpack_from("<Q", info, C.SI_ADDR)
                return Fault(14, addr, PF_USER | (PF_INSTR if addr == rip else 0), rip)
            if code == C.SI_KERNEL:             # #SS: a stack-segment access (non-canonical via rsp/rbp)
                return Fault(12, rip, 0, rip)
            return Fault(17, rip, 0, rip)
        if sig == signal.SIGSYS and code == C.SYS_SECCOMP:
            # A host syscall the filter refused from outside the gadget (the vsyscall
            # page's emulation): not executed; to the guest, a fetch from unmapped memory.
            addr, = struct.unpack_from("<Q", info, C.SI_CALL_ADDR)
            return Fault(14, addr, PF_USER | PF_INSTR, addr)
        return None                                # other kernel-sent signals are swallowed

    def _first_frame(self, stub) -> None:
        """The first frame: the stub's segment registers, zeroed GPRs, then what set_regs asked."""
        regs = self.regs
        regs[:] = stub.base[:]
        for name in C.GPRS:
            regs[_R[name]] = 0
        regs[_EFLAGS] = C.INITIAL_RFLAGS
        regs[_ORIG_RAX] = _MASK64
        self._loaded = True
        for name, value in self._pending.items():
            self._set_one(name, value)
        self._pending.clear()
        self._dirty = True

    def guest_cpu_ns(self) -> int:
        done, stub, base = self._cpu
        return done + max(stub.cpu_ns() - base, 0) if stub is not None else done

    def interrupt(self) -> None:
        self._interrupt.set()
        kick = self._kick
        if kick is not None:
            try:
                host.tgkill(kick[0], kick[1], _SIGSTOP)   # this stub thread, not any of them
            except OSError:
                pass

    def in_guest(self) -> bool:
        return self._kick is not None          # set while switch() runs the stub thread

    def clear_interrupt(self) -> None:
        self._interrupt.clear()

    # --- registers -----------------------------------------------------------
    def syscall_args(self) -> tuple[int, int, int, int, int, int, int]:
        r = self.regs
        return r[_RAX], r[_RDI], r[_RSI], r[_RDX], r[_R10], r[_R8], r[_R9]

    def set_return(self, value: int) -> None:
        self.regs[_RAX] = value & _MASK64
        self._dirty = True

    def get_regs(self) -> dict[str, int]:
        if not self._loaded:
            return dict(self._pending)
        r = self.regs
        return {name: r[i] for name, i in _NAMES.items()}

    def set_regs(self, **regs: int) -> None:
        if not self._loaded:
            self._pending.update(regs)
            return
        for name, value in regs.items():
            self._set_one(name, value)
        self._dirty = True

    def _set_one(self, name: str, value: int) -> None:
        self.regs[_NAMES[name]] = value & _MASK64

    def _take_fpu(self, st) -> None:
        """Make stub thread `st`'s FPU registers this context's: the previous owner's go into
        its image (a vfork child and its parent share a host thread, so a stub thread), then
        this context's image (a new task's, copied from its parent) is loaded.  A thread no
        context used yet holds a Sentry thread's state (from the fork or the clone): a guest
        must never see host data, so that is reset, as a new Linux process starts."""
        tid = st.tid
        prev = st.fpu_owner
        if prev is not None:
            prev._fpu_image = host.get_xstate(tid)
        image, self._fpu_image = self._fpu_image, None
        if image is not None:
            host.set_xstate(tid, image)
        elif not st.fpu_reset:
            host.set_xstate(tid, reset_xsave(host.get_xstate(tid)))
        st.fpu_reset = True
        st.fpu_owner = self

    def _fpu_thread(self):
        """The stub thread holding this context's FPU registers (taken back if another
        context used it meanwhile), or None before its first switch."""
        st = self._st
        if st is not None and st.alive and st.fpu_owner is not self and st.tracer == threading.get_ident():
            self._take_fpu(st)
        return st if st is not None and st.alive and st.fpu_owner is self else None

    def get_fpu(self) -> bytes:
        st = self._fpu_thread()
        image = host.get_xstate(st.tid) if st is not None else self._fpu_image
        if image is None:
            raise RuntimeError("PtraceContext: no FPU state before the first switch")
        self._xstate_size = len(image)
        if self._xfeatures is None:
            self._xfeatures = host.xstate_features(len(image))
        return image

    def set_fpu(self, image: bytes) -> None:
        st = self._fpu_thread()
        if st is None:
            self._fpu_image = bytes(image)     # before its first switch: applied there
            return
        try:
            host.set_xstate(st.tid, image)
        except OSError as e:
            raise ValueError(f"XSAVE image refused: {e}") from None

    def fpu_layout(self) -> tuple[int, int]:
        if not self._xstate_size:
            self.get_fpu()
        return self._xstate_size, self._xfeatures or 3

    def release(self) -> None:
        self._loaded = False
        st, self._st = self._st, None
        if st is not None and st.fpu_owner is self:
            st.fpu_owner = None
