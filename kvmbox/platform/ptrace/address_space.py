"""PtraceAddressSpace: a guest process's page mappings, as real mappings in its stub process.

map() injects mmap(vaddr, length, prot, MAP_SHARED|MAP_FIXED, memfd, phys) into
the stub, so the guest sees exactly the MemoryFile pages the Sentry reads and
writes through its own mapping; unmap() is munmap, protect() mprotect.

The stub is created by the first switch() into the address space, on the
thread that runs its guest, which becomes its tracer; every later call must
come from that thread.  Changes made before then (execve building a new image
on a vfork parent's thread, say) are recorded and replayed into the stub when
it is made, so whichever host thread runs the task first owns its stub.
"""
from __future__ import annotations

import errno
TYPE_CHECKING = False  # typing is not imported at run time (start-up cost)

from kvmbox.abi.mman import MAP_FIXED, MAP_SHARED, PROT_EXEC, PROT_READ, PROT_WRITE
from kvmbox.errors import SandboxCrash
from kvmbox.platform.base import AddressSpace
from kvmbox.platform.ptrace import consts as C
from kvmbox.platform.ptrace.stub import StubProcess

if TYPE_CHECKING:  # pragma: no cover
    from kvmbox.platform.ptrace.platform import PtracePlatform

_PROT_ALL = PROT_READ | PROT_WRITE | PROT_EXEC


class PtraceAddressSpace(AddressSpace):
    def __init__(self, platform: "PtracePlatform") -> None:
        self.platform = platform
        self.stub: StubProcess | None = None
        self._early: list[tuple] = []      # (method, args) made before the stub existed

    def stub_for_tracer(self) -> StubProcess:
        """The stub (made now if needed); raises unless called on its tracer thread."""
        stub = self.stub
        if stub is None:
            stub = self.stub = StubProcess(self.platform.memfile.fd, pin=self.platform.pin)
            stub.hide_code = self.platform.stub_needs_hiding(stub)
            early, self._early = self._early, []
            for method, args in early:
                method(*args)
        else:
            stub.check_thread()
        return stub

    def _call(self, what: str, nr: int, *args: int) -> int:
        ret = self.stub_for_tracer().syscall(nr, *args)
        if ret < 0:
            raise SandboxCrash(f"kvmbox: {what} in the ptrace stub failed: {errno.errorcode.get(-ret, -ret)}")
        return ret

    def map(self, vaddr: int, length: int, phys: int, prot: int) -> None:
        if self.stub is None:
            self._early.append((self.map, (vaddr, length, phys, prot)))
            return
        if not prot & _PROT_ALL:
            self.unmap(vaddr, length)
            return
        self._call(f"mmap({vaddr:#x}, {length:#x})", C.NR_mmap, vaddr, length, prot & _PROT_ALL,
                   MAP_SHARED | MAP_FIXED, self.platform.memfile.fd, phys)

    def unmap(self, vaddr: int, length: int) -> None:
        if self.stub is None:
            if self._early:
                self._early.append((self.unmap, (vaddr, length)))
            return                                     # nothing was ever mapped
        self._call(f"munmap({vaddr:#x}, {length:#x})", C.NR_munmap, vaddr, length)

    def protect(self, vaddr: int, length: int, prot: int) -> None:
        if self.stub is None:
            if self._early:
                self._early.append((self.protect, (vaddr, length, prot)))
            return
        stub = self.stub_for_tracer()
        if stub.syscall(C.NR_mprotect, vaddr, length, prot & _PROT_ALL) == -errno.ENOMEM:
            # Holes (pages never populated): mprotect stops at the first; do each mapped piece.
            for lo, hi in stub.mapped_ranges(vaddr, vaddr + length):
                self._call(f"mprotect({lo:#x}, {hi - lo:#x})", C.NR_mprotect, lo, hi - lo, prot & _PROT_ALL)

    def release(self) -> None:
        self._early = []
        if self.stub is not None:
            self.stub.kill()
            self.stub = None
