"""KvmContext: one guest thread on one vCPU; switch() is the KVM run loop, one readable switch over exits.

Guest CPU time is the host-monotonic time spent inside KVM_RUN (two vDSO clock
reads per entry, about 0.6 us against a 60 us exit here): the vCPU thread's own
CPU clock cannot tell guest time from Sentry time, and reading it costs a real
syscall (2.7 us) twice per exit.  It counts the hypervisor's work for the
guest (PVM world switches, shadow faults) and, if the host preempts the vCPU
thread mid-run, that wait too; kvmbox/sentry/cputime.py caps it with the
thread's CPU clock.
"""
from __future__ import annotations

import errno
import signal
import struct
import threading
import time
TYPE_CHECKING = False  # typing is not imported at run time (start-up cost)

from kvmbox.errors import SandboxCrash
from kvmbox.guest_stub import layout as L
from kvmbox.kvm_ioctls import (KVM_SYNC_X86_REGS, KVM_SYNC_X86_SREGS, R8, R9, R10, R11, R12,
                               R13, R14, R15, RAX, RBP, RBX, RCX, RDI, RDX, RFLAGS, RIP, RSI, RSP,
                               SREGS_CR_OFF, Vcpu, VcpuExit)
from kvmbox.platform.base import (INTERRUPTED, SYSCALL, VEC_PF, VEC_UD, AddressSpace, Context, Event,
                                  Fault)
from kvmbox.platform.fpu import reset_xsave
from kvmbox.platform.kvm import cpu

if TYPE_CHECKING:  # pragma: no cover
    from kvmbox.platform.kvm.platform import KvmPlatform

_REG_INDEX = {"rax": RAX, "rbx": RBX, "rcx": RCX, "rdx": RDX, "rsi": RSI, "rdi": RDI, "rsp": RSP,
              "rbp": RBP, "r8": R8, "r9": R9, "r10": R10, "r11": R11, "r12": R12, "r13": R13,
              "r14": R14, "r15": R15, "rip": RIP, "rflags": RFLAGS}
_MASK64 = (1 << 64) - 1
# RFLAGS bits a user may own: CF PF AF ZF SF TF IF DF OF AC ID (never IOPL, NT, RF, VM).
_USER_FLAGS = 0x1 | 0x4 | 0x10 | 0x40 | 0x80 | 0x100 | 0x200 | 0x400 | 0x800 | 0x40000 | 0x200000
_CR3_OFF = SREGS_CR_OFF + 16
_FRAME_FMT = "<7Q"                   # vector, error, rip, cs, rflags, rsp, ss


class KvmContext(Context):
    """Runs one guest thread on a vCPU of the platform's pool.  Not thread-safe except
    interrupt(), and the pool's steal() of a vCPU from a context whose task sleeps.

    A context holds a vCPU from its first switch.  While its task sleeps in the Sentry
    (set_idle(True)), the pool may take the vCPU for another context: the user state
    (registers as get_regs gives them, FS/GS bases, the XSAVE image) moves into the
    context, and its next switch takes a vCPU again and enters user mode afresh with
    that state, as a first entry does.  So more tasks than vCPUs can exist.
    """

    def __init__(self, platform: "KvmPlatform", vcpu: Vcpu | None = None) -> None:
        self.platform = platform
        base = L.STUB_VIRT
        self._restore_flags = platform.flavour == "pvm-native"
        self._handlers = (base + L.HANDLERS_OFF, base + L.HANDLERS_OFF + 32 * L.HANDLER_STRIDE)
        self._mem = platform.memfile.view
        self._configured = False
        self._pending: dict[str, int] = {}      # registers set while no vCPU is loaded
        self._pending_fpu: bytes | None = None  # the FPU image likewise (a forked child's)
        self._identity: dict[int, int] | None = None   # fast-path ids to publish per vCPU
        self._sigtable: bytes | None = None      # the process's dispositions, likewise
        self._cr3 = -1
        self.in_exception = False               # the vCPU sits in a ring-0 handler after a Fault
        self._parked_rip = -1                   # ...at this RIP (right after the handler's `out`)
        self._thread: int | None = None
        self._interrupt = threading.Event()
        self._own = threading.Lock()            # the owner's vs a stealer's hold on the vCPU
        self._idle = False                      # the task sleeps: its vCPU may be taken
        # (ns spent in KVM_RUN before the current entry, monotonic ns the current entry
        # began or 0): one tuple, replaced whole, so other threads read it consistently.
        self._guest = (0, 0)
        self.vcpu: Vcpu | None = None
        self.regs = None
        if vcpu is not None:
            self._bind(vcpu)

    def _bind(self, vcpu: Vcpu) -> None:
        """Load onto `vcpu`: its per-vCPU stub addresses, and a first entry at next switch."""
        base = L.STUB_VIRT
        self.vcpu = vcpu
        self.regs = vcpu.regs
        self._tramp_lo = base + L.user_trampoline(vcpu.index)
        self._syscall_exit_rip = self._tramp_lo + self.platform.stub.syscall_exit_offset
        self._fast = L.fast_data(vcpu.index)
        copy_lo, copy_hi = self.platform.stub.sigaction_copy
        self._sa_copy = (self._tramp_lo + copy_lo, self._tramp_lo + copy_hi)
        self._frame_phys = L.exc_frame_phys(vcpu.index)
        self._frame_virt = L.STUB_VIRT + self._frame_phys   # the handler's RSP at its `out`
        self._configured = False
        if self._identity is not None:
            self._write_identity()
        self._write_sigactions()

    def _unbind(self) -> Vcpu:
        """Move the user state off the vCPU into the context; returns the freed vCPU."""
        vcpu = self.vcpu
        if self._configured:
            self._pending = self.get_regs()
            self._pending_fpu = self.get_fpu()
            self._unpark()
        self._configured = False
        self.in_exception = False
        self._cr3 = -1
        self.vcpu = None
        self.regs = None
        vcpu.set_immediate_exit(False)
        return vcpu

    def _unpark(self) -> None:
        """Bring a vCPU parked in a ring-0 handler (after a Fault) back to user mode before
        another context gets it.  PVM keeps the guest's privilege mode, and the stack it
        switches to, across KVM_SET_SREGS: a vCPU handed over while in ring 0 would enter
        its next guest in supervisor state, on this vCPU's handler stack (measured: the
        next program resumed with RSP at the exception frame).  The handler's iretq
        returns to the `out` of this vCPU's user trampoline, whose exit leaves the vCPU in
        user mode with nothing of this context's."""
        if not self.in_exception or not self._restore_flags:
            return
        out_rip = self._syscall_exit_rip - 2          # `out PORT_SYSCALL, al` is 2 bytes
        struct.pack_into("<Q", self._mem, self._frame_phys + 8 * 2, out_rip)
        struct.pack_into("<Q", self._mem, self._frame_phys + 8 * 4, 0x202)
        self.regs[RSP] = self._frame_virt
        self.vcpu.mark_dirty(KVM_SYNC_X86_REGS)
        self.vcpu.set_immediate_exit(False)
        for _ in range(100):
            reason = self.vcpu.run()
            if reason is VcpuExit.IO and self.regs[RIP] == self._syscall_exit_rip:
                break
            if reason is not VcpuExit.INTERRUPTED:
                raise SandboxCrash(f"vCPU did not leave ring 0 cleanly ({reason.name} at "
                                   f"rip {self.regs[RIP]:#x})")
        self.in_exception = False

    def set_idle(self, idle: bool) -> None:
        """The task starts or stops sleeping in the Sentry (waiter.block)."""
        with self._own:
            self._idle = idle
        if idle and self.vcpu is not None:
            self.platform.offer(self)
        elif not idle:
            self.platform.withdraw(self)

    def steal(self) -> Vcpu | None:
        """The pool takes this sleeping context's vCPU (None if it woke or has none)."""
        if not self._own.acquire(blocking=False):
            return None
        try:
            if not self._idle or self.vcpu is None:
                return None
            return self._unbind()
        finally:
            self._own.release()

    # --- running ---------------------------------------------------------
    def switch(self, aspace: AddressSpace) -> Event:
        if self.vcpu is None:
            vcpu = self.platform.acquire_vcpu(self)
            if vcpu is None:                    # interrupted while waiting for one
                return INTERRUPTED
            self._bind(vcpu)
        vcpu = self.vcpu
        root = aspace.root  # type: ignore[attr-defined]
        if not self._configured:
            self._first_entry(root)
        elif root != self._cr3:
            struct.pack_into("<Q", vcpu.sregs_view, _CR3_OFF, root)
            vcpu.mark_dirty(KVM_SYNC_X86_SREGS)
            self._cr3 = root
        if self.in_exception:
            # PVM reports RSP as 0 while the vCPU is in ring 0; if the registers
            # were edited (dirty), the handler's real RSP must go back with them.
            self.regs[RSP] = self._frame_virt
        was_in_exception = self.in_exception
        self._thread = threading.get_ident()
        if self._interrupt.is_set():
            vcpu.set_immediate_exit(True)
        mono = time.monotonic_ns
        try:
            while True:
                start = mono()
                self._guest = (self._guest[0], start)
                reason = vcpu.run()
                self._guest = (self._guest[0] + mono() - start, 0)
                if reason is not VcpuExit.INTERRUPTED or self._at_boundary(was_in_exception):
                    break
                # Interrupted inside ring-0 stub code (an exception entry on its way to its
                # exit, or its iretq): no user state to deliver a signal on.  Let it run on
                # and interrupt again shortly; a trap on the way serves as well.
                vcpu.set_immediate_exit(False)
                was_in_exception = False
                self._rekick()
        finally:
            self._thread = None
        self.in_exception = False
        if reason is VcpuExit.INTERRUPTED:
            # Still parked after the handler's `out` only if it never got to run: once its
            # iretq ran, the interrupt found the vCPU in user code, with user registers.
            self.in_exception = was_in_exception and self.regs[RIP] == self._parked_rip
            return INTERRUPTED
        if reason is VcpuExit.IO:
            port = vcpu.io_port()
            if port == L.PORT_SYSCALL:
                regs = self.regs
                rip = regs[RIP]
                if rip == self._syscall_exit_rip:
                    if self._restore_flags:
                        # the trampoline's compares clobbered the flags; R11 has the user's
                        regs[RFLAGS] = (regs[R11] & _USER_FLAGS) | 0x2
                    return SYSCALL
                # `out` to the syscall port outside the trampoline: a privileged
                # instruction as far as Linux is concerned.
                return Fault(13, rip, 0, rip)
            if port == L.PORT_EXCEPTION:
                return self._exception(aspace)
            raise SandboxCrash(f"guest exit on unexpected port {port:#x} at rip {self.regs[RIP]:#x}")
        if reason is VcpuExit.SHUTDOWN:
            ev = vcpu.get_vcpu_events()
            raise SandboxCrash(f"guest triple fault (stub bug): last exception vector {ev[1]} "
                               f"at rip {self.regs[RIP]:#x}")
        raise SandboxCrash(f"unexpected KVM exit {reason.name} ({vcpu.raw_exit_reason()}) "
                           f"at rip {self.regs[RIP]:#x}")

    def _at_boundary(self, was_in_exception: bool) -> bool:
        """After an interrupted KVM_RUN: is the vCPU where user registers are well defined?
        In user code (the pvm-native trampoline is user code too), or still parked after
        the `out` of the exception exit it was resumed from; not elsewhere in ring 0."""
        rip = self.regs[RIP]
        if was_in_exception and rip == self._parked_rip:
            return True
        lo, hi = self._handlers
        if lo <= rip < hi:
            return False
        if not self._restore_flags and self._tramp_lo <= rip < self._tramp_lo + L.PAGE_SIZE:
            return rip == self._syscall_exit_rip   # hw: the ring-0 syscall entry
        return True

    guest_on_caller_thread = True

    def guest_cpu_ns(self) -> int:
        done, start = self._guest
        return done + time.monotonic_ns() - start if start else done

    def _rekick(self) -> None:
        """Interrupt again in about a millisecond (from a timer thread)."""
        timer = threading.Timer(0.001, self.interrupt)
        timer.daemon = True
        timer.start()

    def _exception(self, aspace: AddressSpace) -> Event:
        rip_now = self.regs[RIP]
        lo, hi = self._handlers
        if not lo <= rip_now < hi:
            raise SandboxCrash(f"exception exit from outside the stub handlers (rip {rip_now:#x})")
        vector, err, rip, cs, _rflags, _rsp, _ss = struct.unpack_from(_FRAME_FMT, self._mem, self._frame_phys)
        if cs & 3 != 3:
            raise SandboxCrash(f"ring-0 exception {vector} at rip {rip:#x} (stub bug); sandbox torn down")
        self.in_exception = True
        self._parked_rip = rip_now
        address = self.vcpu.sync_cr(1) if vector == VEC_PF else rip
        fault = Fault(vector, address, err, rip)
        if self._restore_flags and vector in (VEC_UD, VEC_PF):     # pvm-native: see pvm_gp.py
            from kvmbox.platform.kvm.pvm_gp import reclassify
            fault = reclassify(fault, lambda a, n: self._read_user(aspace, a, n), self.get_regs)
        return fault

    def _read_user(self, aspace: AddressSpace, addr: int, n: int) -> bytes:
        """Up to `n` bytes of user memory from `addr`, as far as it is mapped (for decoding)."""
        out = b""
        while len(out) < n:
            page, off = addr & ~(L.PAGE_SIZE - 1), addr & (L.PAGE_SIZE - 1)
            try:
                hit = aspace.lookup(page)  # type: ignore[attr-defined]
            except ValueError:
                break
            if hit is None:
                break
            take = min(n - len(out), L.PAGE_SIZE - off)
            out += bytes(self._mem[hit[0] + off:hit[0] + off + take])
            addr += take
        return out

    def _first_entry(self, root: int) -> None:
        p = self._pending
        # A pooled vCPU may carry register edits its previous run made and never entered
        # with (a task killed right after a syscall).  KVM would load those stale sync regs
        # over the fresh configuration below at the first entry: drop them.
        self.vcpu.clear_dirty()
        # ... and the FPU/SIMD registers of its previous guest: a new thread starts from reset.
        self.vcpu.set_xsave(reset_xsave(self.vcpu.get_xsave()) if self._pending_fpu is None
                            else self._pending_fpu)
        self._pending_fpu = None
        cpu.configure(self.vcpu, self.platform.cpuid, self.platform.flavour, root,
                      p.get("rip", 0), p.get("rsp", 0))
        self.vcpu.enable_sync_regs(KVM_SYNC_X86_REGS | KVM_SYNC_X86_SREGS)
        self._cr3 = root
        self._configured = True
        self.vcpu.set_immediate_exit(True)      # one empty entry to fill the sync area
        self.vcpu.run()
        self.vcpu.set_immediate_exit(False)
        regs = self.regs
        regs[RFLAGS] = 0x202
        for name, value in p.items():
            self._set_one(name, value)
        p.clear()
        regs[RFLAGS] = (regs[RFLAGS] & _USER_FLAGS) | 0x202
        self.vcpu.mark_dirty(KVM_SYNC_X86_REGS)

    def set_identity(self, *, enabled: bool, pid: int, tid: int, ppid: int, uid: int, euid: int,
                     gid: int, egid: int) -> None:
        """Publish the ids the trampoline may answer without an exit (enabled=False: all exit)."""
        self._identity = {L.FAST_PID: pid, L.FAST_TID: tid, L.FAST_PPID: ppid, L.FAST_UID: uid,
                          L.FAST_EUID: euid, L.FAST_GID: gid, L.FAST_EGID: egid,
                          L.FAST_ENABLED: 1 if enabled and self._restore_flags else 0}
        if self.vcpu is not None:
            self._write_identity()

    def _write_identity(self) -> None:
        for off, value in self._identity.items():
            struct.pack_into("<I", self._mem, self._fast + off, value & 0xFFFF_FFFF)

    def set_sigactions(self, table: bytes | None, stamp: object) -> None:
        self.sig_stamp = stamp
        self._sigtable = table if self._restore_flags else None
        if self.vcpu is not None:
            self._write_sigactions()

    def _write_sigactions(self) -> None:
        """Publish (or withdraw) the dispositions in this vCPU's data page.  The switch off
        comes first and the switch on last: the trampoline of this vCPU only runs in this
        context's own KVM_RUN, so the order matters only for clarity, not for a race."""
        table = self._sigtable
        struct.pack_into("<I", self._mem, self._fast + L.FAST_SIGACTION, 0)
        if table is not None:
            self._mem[self._fast + L.FAST_SIGTABLE:self._fast + L.FAST_SIGTABLE + len(table)] = table
            struct.pack_into("<I", self._mem, self._fast + L.FAST_SIGACTION, 1)

    def fast_fault(self, fault: Fault) -> bool:
        lo, hi = self._sa_copy if self.vcpu is not None else (0, 0)
        if not (self.in_exception and lo <= fault.rip < hi):
            return False
        # The query's copy faulted: RSI points into the table (its signal's entry plus the
        # qwords already copied).  Return as the syscall would have: -EFAULT, RDI and RSI
        # as the caller passed them, at RCX with the flags of R11.
        regs = self.regs
        entry = regs[RSI] - (L.STUB_VIRT + self._fast + L.FAST_SIGTABLE)
        self.set_regs(rax=-errno.EFAULT, rdi=entry // L.SIGACTION_SIZE + 1, rsi=0,
                      rip=regs[RCX], rflags=(regs[R11] & _USER_FLAGS) | 0x2)
        return True

    def interrupt(self) -> None:
        self._interrupt.set()
        vcpu = self.vcpu
        if vcpu is None:
            self.platform.wake_waiters()        # it may be waiting for a vCPU
            return
        vcpu.set_immediate_exit(True)
        tid = self._thread
        if tid is not None:
            try:
                signal.pthread_kill(tid, self.platform.kick_signal)
            except (ProcessLookupError, OSError):
                pass

    def in_guest(self) -> bool:
        return self._thread is not None        # set around KVM_RUN in switch()

    def clear_interrupt(self) -> None:
        self._interrupt.clear()
        if self.vcpu is not None:
            self.vcpu.set_immediate_exit(False)

    # --- registers -----------------------------------------------------------
    def syscall_args(self) -> tuple[int, int, int, int, int, int, int]:
        if not self._configured:
            p = self._pending
            return tuple(p.get(n, 0) for n in ("rax", "rdi", "rsi", "rdx", "r10", "r8", "r9"))
        r = self.regs
        return r[RAX], r[RDI], r[RSI], r[RDX], r[R10], r[R8], r[R9]

    def set_return(self, value: int) -> None:
        if not self._configured:
            self._pending["rax"] = value & _MASK64
            return
        self.regs[RAX] = value & _MASK64
        self.vcpu.mark_dirty(KVM_SYNC_X86_REGS)

    def get_regs(self) -> dict[str, int]:
        if not self._configured:
            return dict(self._pending)
        r = self.regs
        out = {name: r[i] for name, i in _REG_INDEX.items()}
        if self.in_exception:
            _v, _e, rip, _cs, rflags, rsp, _ss = struct.unpack_from(_FRAME_FMT, self._mem, self._frame_phys)
            out.update(rip=rip, rflags=rflags, rsp=rsp)
        elif r[RIP] == self._syscall_exit_rip:
            out["rip"] = r[RCX]                  # where the trampoline's `jmp rcx` returns
        out["fs_base"] = self.vcpu.get_msr(L.MSR_FS_BASE)
        out["gs_base"] = self.vcpu.get_msr(L.MSR_GS_BASE)
        return out

    def set_regs(self, **regs: int) -> None:
        if not self._configured:
            self._pending.update(regs)
            return
        for name, value in regs.items():
            self._set_one(name, value)

    def _set_one(self, name: str, value: int) -> None:
        value &= _MASK64
        if name in ("fs_base", "gs_base"):
            # PVM keeps the user FS/GS bases in the MSRs; the synced sregs' segment
            # bases do not follow them (measured), so these go through KVM_SET_MSRS.
            self.vcpu.set_msrs({L.MSR_FS_BASE if name == "fs_base" else L.MSR_GS_BASE: value})
            return
        if self.in_exception and name in ("rip", "rflags", "rsp"):
            slot = {"rip": 2, "rflags": 4, "rsp": 5}[name]
            struct.pack_into("<Q", self._mem, self._frame_phys + 8 * slot, value)
            return
        if name == "rip" and self.regs[RIP] == self._syscall_exit_rip:
            name = "rcx"                         # the trampoline returns through rcx (Linux leaves rcx = rip too)
        self.regs[_REG_INDEX[name]] = value
        self.vcpu.mark_dirty(KVM_SYNC_X86_REGS)

    def restore_regs(self, **regs: int) -> None:
        """As set_regs, but a return from the syscall trampoline resumes at `rip` directly
        (pvm-native: the vCPU is in CPL3 there) so rcx keeps its own value."""
        if (self._configured and not self.in_exception and "rip" in regs
                and self.regs[RIP] == self._syscall_exit_rip):
            if self._restore_flags:
                self.regs[RIP] = regs["rip"] & _MASK64
                self.vcpu.mark_dirty(KVM_SYNC_X86_REGS)
                regs = {k: v for k, v in regs.items() if k != "rip"}
            else:
                # hw: sysretq returns through rcx/r11, so those two cannot be kept.
                regs = {**regs, "rcx": regs["rip"], "r11": regs.get("rflags", self.regs[RFLAGS])}
        self.set_regs(**regs)

    def get_fpu(self) -> bytes:
        if not self._configured and self._pending_fpu is not None:
            return self._pending_fpu
        if self.vcpu is None:
            return reset_xsave(bytes(self.platform.xsave_size))   # never ran: the reset state
        return bytes(self.vcpu.get_xsave()[:self.platform.xsave_size])

    def set_fpu(self, image: bytes) -> None:
        if not self._configured:
            self._pending_fpu = bytes(image)
            return
        try:
            self.vcpu.set_xsave(image)
        except OSError as e:
            raise ValueError(f"XSAVE image refused: {e}") from None

    def fpu_layout(self) -> tuple[int, int]:
        return self.platform.xsave_size, self.platform.xcr0

    def release(self) -> None:
        self.platform.withdraw(self)
        with self._own:
            if self.vcpu is not None:
                self._unpark()
            vcpu, self.vcpu = self.vcpu, None
            self._idle = False
        if vcpu is not None:
            self.platform.return_vcpu(vcpu)
