"""The platform interfaces: what the Sentry needs from a trap mechanism (KVM, ptrace).

A Platform owns the MemoryFile (guest RAM).  An AddressSpace maps guest-virtual
pages to MemoryFile offsets for one guest process.  A Context runs one guest
thread until it traps and returns an Event saying why.  Nothing below these
interfaces knows about files or processes; nothing above them knows about KVM.
"""
from __future__ import annotations

from abc import ABC, abstractmethod

from kvmbox.record import record

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from kvmbox.mm.frames import FrameAllocator
    from kvmbox.mm.memfile import MemoryFile


class AddressSpace(ABC):
    """The page mappings of one guest process.  All arguments are page-aligned; prot is
    Linux's PROT_READ / PROT_WRITE / PROT_EXEC bits (kvmbox.abi.mman)."""

    # May map an aligned 2 MiB chunk of 2 MiB-aligned frames as one leaf (KVM's PageTables);
    # the memory manager then hands out frames at the virtual range's 2 MiB phase.
    huge = False

    @abstractmethod
    def map(self, vaddr: int, length: int, phys: int, prot: int) -> None:
        """Map [vaddr, vaddr+length) to MemoryFile offsets [phys, phys+length).

        Replaces any existing mapping in the range.  prot == PROT_NONE maps nothing.
        """

    @abstractmethod
    def unmap(self, vaddr: int, length: int) -> None:
        """Remove every mapping in [vaddr, vaddr+length); the guest sees it at once."""

    @abstractmethod
    def protect(self, vaddr: int, length: int, prot: int) -> None:
        """Change the protection of the pages already mapped in the range."""

    @abstractmethod
    def release(self) -> None:
        """Free everything the address space holds (its page-table frames)."""


class Event:
    """Why Context.switch() returned."""
    __slots__ = ()


class SyscallEvent(Event):
    """The guest made a system call; arguments are in the context's registers."""
    __slots__ = ()

    def __repr__(self) -> str:
        return "Syscall"


class InterruptedEvent(Event):
    """Context.interrupt() was called (timeout, kill, signal to deliver)."""
    __slots__ = ()

    def __repr__(self) -> str:
        return "Interrupted"


SYSCALL = SyscallEvent()
INTERRUPTED = InterruptedEvent()


@record(frozen=True, slots=True)
class Fault(Event):
    """A CPU exception in guest user mode (vector = x86 exception number).

    `address` is CR2 for a page fault, else the faulting RIP.  `error_code`
    is the exception's error code (page-fault bits for #PF), 0 if it has none.
    """
    vector: int
    address: int
    error_code: int
    rip: int


# x86 exception vectors the Sentry distinguishes.
VEC_DE, VEC_DB, VEC_BP, VEC_OF, VEC_BR, VEC_UD, VEC_NM = 0, 1, 3, 4, 5, 6, 7
VEC_GP, VEC_PF, VEC_MF, VEC_AC, VEC_XM = 13, 14, 16, 17, 19
# Page-fault error code bits.
PF_PRESENT, PF_WRITE, PF_USER, PF_RSVD, PF_INSTR = 1, 2, 4, 8, 16
# Not a hardware bit: the platform could not tell a read from a write (ptrace's SEGV_MAPERR
# says neither).  The Sentry handles the fault as a read, and decodes the instruction when
# the difference decides the signal (kvmbox/sentry/faults.py resolve_access).
PF_ACCESS_UNKNOWN = 1 << 32


class Context(ABC):
    """One guest thread's register state and the means to run it.

    CPU time: `guest_cpu_ns()` is the time guest code has run through this
    context, readable from any thread, advancing while the guest runs.  On a
    platform whose guest runs on the thread that calls switch() (KVM:
    `guest_on_caller_thread`), that thread's own CPU clock includes it.
    """

    guest_on_caller_thread = False

    @abstractmethod
    def switch(self, aspace: AddressSpace) -> Event:
        """Run the thread in `aspace` until it traps; returns SYSCALL, INTERRUPTED or a Fault."""

    @abstractmethod
    def interrupt(self) -> None:
        """Make a running (or the next) switch() return INTERRUPTED promptly; thread-safe."""

    @abstractmethod
    def clear_interrupt(self) -> None:
        """Forget a pending interrupt()."""

    def in_guest(self) -> bool:
        """Is switch() running guest code now (thread-safe; membarrier waits on it)?"""
        return False

    @abstractmethod
    def syscall_args(self) -> tuple[int, int, int, int, int, int, int]:
        """(nr, arg0..arg5) of the system call that just trapped."""

    @abstractmethod
    def set_return(self, value: int) -> None:
        """Set the system call's return value (negative errno for failures)."""

    @abstractmethod
    def get_regs(self) -> dict[str, int]:
        """All general registers by name: rax..r15, rip, rsp, rflags, fs_base, gs_base."""

    @abstractmethod
    def set_regs(self, **regs: int) -> None:
        """Set registers by name (same names as get_regs)."""

    def restore_regs(self, **regs: int) -> None:
        """Set registers for a return to user mode that must keep every one of them
        exactly, rcx and r11 included (signal delivery, rt_sigreturn): unlike
        set_regs after a syscall, the return path must not go through rcx/r11."""
        self.set_regs(**regs)

    @abstractmethod
    def get_fpu(self) -> bytes:
        """The thread's user FPU/SIMD state as a standard-format (non-compacted) XSAVE image:
        the 512-byte legacy area, the 64-byte header, then each enabled component at its
        CPUID offset; fpu_layout()[0] bytes.  The sw_reserved bytes (464..511) are not meaningful."""

    @abstractmethod
    def set_fpu(self, image: bytes) -> None:
        """Load an XSAVE image as get_fpu returns it.  Raises ValueError when the CPU would
        refuse it (reserved MXCSR or header bits): rt_sigreturn turns that into SIGSEGV."""

    @abstractmethod
    def fpu_layout(self) -> tuple[int, int]:
        """(size of the XSAVE image in bytes, XCR0 feature mask) of this thread's user state."""

    def guest_cpu_ns(self) -> int:
        """CPU time (ns) guest code has used through this context; thread-safe, live."""
        return 0

    def set_identity(self, *, enabled: bool, pid: int, tid: int, ppid: int, uid: int, euid: int,
                     gid: int, egid: int) -> None:
        """Ids a platform may answer without trapping (getpid & co.); default: always trap."""

    # The SignalHandlers stamp last given to set_sigactions (the run loop compares it).
    sig_stamp: object = None

    def set_sigactions(self, table: bytes | None, stamp: object) -> None:
        """The process's 64 dispositions (SignalHandlers.table()), which a platform may use
        to answer rt_sigaction queries without trapping; None: always trap.  Default: trap."""
        self.sig_stamp = stamp

    def fast_fault(self, fault: "Fault") -> bool:
        """A fault the Sentry could not resolve: if it hit the platform's own in-guest
        syscall code (the KVM trampoline's copy to the user), end that syscall with
        -EFAULT as Linux would and return True; else False (the caller signals it)."""
        return False

    def set_idle(self, idle: bool) -> None:
        """The thread starts (True) or stops sleeping in the Sentry: a platform may lend
        its hardware (a vCPU) to another context meanwhile.  Default: nothing to lend."""

    @abstractmethod
    def release(self) -> None:
        """Free the context's resources."""


class Platform(ABC):
    """A trap mechanism: creates address spaces and contexts over one MemoryFile.

    The Sentry uses the methods below and `memfile`, `frames`, `user_range`, `name`
    ("kvm", "ptrace") and `flavour` (how it traps, for `kvmbox info` and notices).  A
    platform's __init__ sets `_memfile` and `_frames`, which `memfile` and `frames` return.
    """

    name: str = "?"
    flavour: str = "?"
    _memfile: MemoryFile | None = None
    _frames: FrameAllocator

    @abstractmethod
    def new_address_space(self) -> AddressSpace: ...

    @abstractmethod
    def new_context(self) -> Context: ...

    @property
    def memfile(self) -> MemoryFile | None:
        """Guest RAM, which every address space maps from; None once closed."""
        return self._memfile

    @property
    def frames(self) -> FrameAllocator:
        """The allocator of the MemoryFile's frames (guest pages, file pages, page tables)."""
        return self._frames

    @property
    @abstractmethod
    def user_range(self) -> tuple[int, int]:
        """[lowest, highest) guest-virtual address the application may use."""

    def allowed_cpus(self) -> frozenset[int]:
        """The host CPUs the sandbox may run on: the Sentry's CPU affinity (the guest sees
        that many CPUs, numbered from 0)."""
        import os
        return frozenset(os.sched_getaffinity(0))

    def thread_exit(self) -> None:
        """The calling host thread will run no more guest code (a task's thread ends): let go
        of what the platform keeps for it (ptrace: its stub threads)."""

    @abstractmethod
    def close(self) -> None: ...
