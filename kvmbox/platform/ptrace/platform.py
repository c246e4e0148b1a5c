"""PtracePlatform: guest threads in host stub processes under PTRACE_SYSEMU, over one MemoryFile.

No privilege and no /dev/kvm needed: each guest address space is a stub
process forked by the Sentry from a tiny known image (stubcode.py), never by
exec'ing the guest; guest syscalls are skipped by the host kernel (SYSEMU) and
handled by the same Sentry; a seccomp filter in the stub kills it if anything
but the Sentry's injected mmap/munmap/mprotect reaches the host kernel.
"""
from __future__ import annotations

import os
import threading

from kvmbox.abi import mman
from kvmbox.guest_stub import layout as L
from kvmbox.mm.frames import FrameAllocator, memfile_layout
from kvmbox.mm.memfile import MemoryFile
from kvmbox.platform.base import AddressSpace, Context, Platform
from kvmbox.platform.ptrace import consts as C
from kvmbox.platform.ptrace import host
from kvmbox.platform.ptrace.address_space import PtraceAddressSpace
from kvmbox.platform.ptrace.context import PtraceContext
from kvmbox.platform.ptrace.pins import TracerPins
from kvmbox.platform.ptrace.service import StubService
from kvmbox.platform.ptrace.stub import StubProcess

# Set (to anything but "" or "0"): behave as on a CPU without protection keys, where an
# execute-only page is readable, so the stub's code page is hidden while the guest runs.
# Tests use it to run that path on machines with protection keys.
ASSUME_NO_PKU_ENV = "KVMBOX_PTRACE_ASSUME_NO_PKU"


class PtracePlatform(Platform):
    name = "ptrace"
    flavour = "ptrace-sysemu"

    def __init__(self, memory: int, *, pin: bool = True, assume_no_pku: bool | None = None) -> None:
        host.stub_page()          # PlatformUnavailable now, not at the first run, if there is none
        size, reserve = memfile_layout(memory, tables=False)     # no guest page tables here
        self._memfile: MemoryFile | None = MemoryFile(size)
        self._frames = FrameAllocator(self._memfile, table_reserve=reserve)
        self.pin = pin            # keep each stub thread on its tracer's CPU (8 µs vs 60 µs a trap)
        self.pins = TracerPins()
        self.service = StubService()   # makes stubs and their threads (service.py)
        self._by_thread: dict[int, set] = {}    # host thread ident -> address spaces it has a stub thread in
        if assume_no_pku is None:
            assume_no_pku = os.environ.get(ASSUME_NO_PKU_ENV, "") not in ("", "0")
        self.assume_no_pku = assume_no_pku
        self._hide_stub: bool | None = None    # learnt from the first stub (probe_readable)

    def stub_needs_hiding(self, stub: StubProcess) -> bool:
        """Must `stub` empty its code page while the guest runs (execute-only does not hide it)?"""
        if self.assume_no_pku:       # make the page readable, as execute-only is without PKU
            stub.syscall(C.NR_mprotect, stub.page, L.PAGE_SIZE, mman.PROT_READ | mman.PROT_EXEC)
        if self._hide_stub is None:
            self._hide_stub = stub.probe_readable()
        return self._hide_stub

    @property
    def user_range(self) -> tuple[int, int]:
        return (0x10000, L.USER_TOP)

    def allowed_cpus(self) -> frozenset[int]:
        return self.pins.affinity()       # not the one CPU a live stub pins its tracer to

    def track(self, ident: int, aspace: PtraceAddressSpace) -> None:
        """Host thread `ident` has a stub thread in `aspace`."""
        self._by_thread.setdefault(ident, set()).add(aspace)

    def untrack(self, ident: int, aspace: PtraceAddressSpace) -> None:
        spaces = self._by_thread.get(ident)
        if spaces is not None:
            spaces.discard(aspace)
            if not spaces:
                del self._by_thread[ident]

    def thread_exit(self) -> None:
        """The calling host thread runs no more guest code: end its stub threads in the
        address spaces that live on (a stub thread is never left without its tracer)."""
        ident = threading.get_ident()
        for aspace in list(self._by_thread.pop(ident, ())):
            aspace.release_thread()

    def new_address_space(self) -> AddressSpace:
        return PtraceAddressSpace(self)

    def new_context(self) -> Context:
        return PtraceContext()

    def close(self) -> None:
        self.service.close()
        if self.memfile is not None:
            self.memfile.close()
            self._memfile = None
