"""KvmPlatform: one VM with one memslot (the MemoryFile), the stub region, and a pool of vCPUs.

The pool: contexts (guest threads) may outnumber vCPUs.  A context takes a
vCPU at its switch; while its task sleeps in the Sentry it offers the vCPU,
and a context that finds the pool empty takes an offered one
(KvmContext.steal moves the sleeper's user state off it).  With all 32 vCPUs
busy running guest code, a context waits until one is returned or offered
(there is no preemption of a running vCPU).
"""
from __future__ import annotations

import errno
import os
import signal
import threading

from kvmbox.errors import PlatformUnavailable
from kvmbox.guest_stub import layout as L
from kvmbox.guest_stub import stub
from kvmbox.mm import tuning
from kvmbox.guest_stub.image import write_stub_region
from kvmbox.kvm_ioctls import KVM_CAP_SYNC_REGS, KVM_SYNC_X86_REGS, KVM_SYNC_X86_SREGS, Kvm, KvmError, Vcpu
from kvmbox.mm.frames import FrameAllocator, memfile_layout
from kvmbox.mm.memfile import AnonMemory, MemoryFile
from kvmbox.mm.pagetables import PageTables
from kvmbox.platform.base import AddressSpace, Context, Platform
from kvmbox.platform.kvm import cpu
from kvmbox.platform.kvm.context import KvmContext

DEFAULT_DEVICE = "/dev/kvm"
# Signal used to kick a vCPU thread out of KVM_RUN (timeouts, kill); a no-op handler is installed.
KICK_SIGNAL = signal.SIGRTMIN + 7


def detect_flavour() -> str:
    """pvm-native when /dev/kvm is the kvm_pvm module, else hw (VMX/SVM)."""
    return "pvm-native" if os.path.isdir("/sys/module/kvm_pvm") else "hw"


def install_kick_handler() -> None:
    """Install the no-op handler for KICK_SIGNAL (must run in the main thread once)."""
    if signal.getsignal(KICK_SIGNAL) in (signal.SIG_DFL, None, signal.SIG_IGN):
        if threading.current_thread() is not threading.main_thread():
            raise PlatformUnavailable("kvmbox: create the first Sandbox in the main thread "
                                      "(it installs the signal handler used for timeouts)")
        signal.signal(KICK_SIGNAL, lambda *_: None)


class KvmPlatform(Platform):
    name = "kvm"

    def __init__(self, memory: int, *, device: str = DEFAULT_DEVICE, flavour: str | None = None,
                 max_vcpus: int | None = None, huge_leaves: bool | None = None) -> None:
        # Address spaces map aligned 2 MiB chunks with one entry (kvmbox/mm/pagetables.py).
        self.huge_leaves = tuning.HUGE_LEAVES if huge_leaves is None else huge_leaves
        if max_vcpus is None:
            # Every guest thread running guest code at once holds a vCPU (a spinning thread
            # keeps its vCPU: with fewer vCPUs than spinners, a thread they wait for could
            # never run).  vCPUs are made only when needed; the stub region holds 32.
            max_vcpus = L.MAX_VCPUS
        self.flavour = flavour or detect_flavour()
        self.stub = stub.build(self.flavour)
        install_kick_handler()
        self.kick_signal = KICK_SIGNAL
        try:
            self.kvm = Kvm(device)
        except FileNotFoundError:
            raise PlatformUnavailable(f"kvmbox: {device} does not exist (no KVM on this host)") from None
        except PermissionError:
            raise PlatformUnavailable(f"kvmbox: permission denied opening {device}") from None
        except OSError as e:
            raise PlatformUnavailable(f"kvmbox: cannot use {device}: {e.strerror}") from None
        self.vm = None
        self._memfile: MemoryFile | None = None
        try:
            if not self.kvm.check_extension(KVM_CAP_SYNC_REGS) & (KVM_SYNC_X86_REGS | KVM_SYNC_X86_SREGS):
                raise PlatformUnavailable("kvmbox: this KVM lacks KVM_CAP_SYNC_REGS")
            self.cpuid = bytes(self.kvm.supported_cpuid())
            self.xsave_size, self.xcr0 = cpu.xsave_layout(self.cpuid)   # the signal frame's FPU area
            self.vm = self.kvm.create_vm()
            size, reserve = memfile_layout(memory, tables=True)
            self._memfile = AnonMemory(size)      # huge pages behind guest RAM (memfile.py)
            self.vm.set_user_memory_region(0, 0, size, self.memfile.host_address)
            self.stub_pdpt = write_stub_region(self.memfile.view, self.stub, max_vcpus)
            self._frames = FrameAllocator(self.memfile, table_reserve=reserve)
        except KvmError as e:
            self.close()
            raise PlatformUnavailable(f"kvmbox: KVM setup failed: {e}") from None
        except BaseException:
            self.close()
            raise
        self.max_vcpus = max_vcpus
        self._idle: list[Vcpu] = []
        self._created = 0
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._offered: dict[KvmContext, None] = {}    # sleeping contexts holding a vCPU

    @property
    def user_range(self) -> tuple[int, int]:
        return (0x10000, L.USER_TOP)

    def new_address_space(self) -> AddressSpace:
        return PageTables(self.memfile, self.frames, self.stub_pdpt, huge=self.huge_leaves)

    def new_context(self) -> Context:
        """A guest thread; it takes a vCPU from the pool at its first switch."""
        return KvmContext(self)

    def acquire_vcpu(self, ctx: KvmContext) -> Vcpu | None:
        """A vCPU for `ctx`: an idle one, a new one, or one a sleeping context offers; else
        wait for one.  None when `ctx` is interrupted meanwhile (kill, timeout, signal)."""
        with self._cond:
            while True:
                if self._idle:
                    return self._idle.pop()
                if self._created < self.max_vcpus:
                    try:
                        vcpu = self.vm.create_vcpu(self._created)
                    except KvmError as e:
                        raise PlatformUnavailable(f"kvmbox: cannot create a vCPU: {e}") from None
                    self._created += 1
                    return vcpu
                for other in list(self._offered):
                    del self._offered[other]
                    vcpu = other.steal()
                    if vcpu is not None:
                        return vcpu
                if ctx._interrupt.is_set():
                    return None
                self._cond.wait()

    def offer(self, ctx: KvmContext) -> None:
        with self._cond:
            self._offered[ctx] = None
            self._cond.notify()

    def withdraw(self, ctx: KvmContext) -> None:
        with self._cond:
            self._offered.pop(ctx, None)

    def wake_waiters(self) -> None:
        """A waiting context was interrupted: let it see so."""
        with self._cond:
            self._cond.notify_all()

    def return_vcpu(self, vcpu: Vcpu) -> None:
        with self._cond:
            vcpu.set_immediate_exit(False)
            self._idle.append(vcpu)
            self._cond.notify()

    def close(self) -> None:
        if self.vm is not None:
            self.vm.close()
            self.vm = None
        if self.memfile is not None:
            self.memfile.close()
            self._memfile = None
        if getattr(self, "kvm", None) is not None:
            self.kvm.close()
            self.kvm = None


__all__ = ["KvmPlatform", "detect_flavour", "errno"]
