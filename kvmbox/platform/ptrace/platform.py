"""PtracePlatform: guest threads in host stub processes under PTRACE_SYSEMU, over one MemoryFile.

No privilege and no /dev/kvm needed: each guest address space is a stub
process forked by the Sentry from a tiny known image (stubcode.py), never by
exec'ing the guest; guest syscalls are skipped by the host kernel (SYSEMU) and
handled by the same Sentry; a seccomp filter in the stub kills it if anything
but the Sentry's injected mmap/munmap/mprotect reaches the host kernel.
"""
from __future__ import annotations

from kvmbox.guest_stub import layout as L
from kvmbox.mm.frames import FrameAllocator, memfile_layout
from kvmbox.mm.memfile import MemoryFile
from kvmbox.platform.base import AddressSpace, Context, Platform
from kvmbox.platform.ptrace.address_space import PtraceAddressSpace
from kvmbox.platform.ptrace.context import PtraceContext



class PtracePlatform(Platform):
    name = "ptrace"
    flavour = "ptrace-sysemu"

    def __init__(self, memory: int, *, pin: bool = True) -> None:
        size, reserve = memfile_layout(memory, tables=False)     # no guest page tables here
        self.memfile: MemoryFile | None = MemoryFile(size)
        self.frames = FrameAllocator(self.memfile, table_reserve=reserve)
        self.pin = pin            # keep each stub on its tracer thread's CPU (8 µs vs 60 µs a trap)

    @property
    def user_range(self) -> tuple[int, int]:
        return (0x10000, L.USER_TOP)

    def new_address_space(self) -> AddressSpace:
        return PtraceAddressSpace(self)

    def new_context(self) -> Context:
        return PtraceContext()

    def close(self) -> None:
        if self.memfile is not None:
            self.memfile.close()
            self.memfile = None
