"""PtraceAddressSpace: a guest process's page mappings, as real mappings in its stub process.

map() injects mmap(vaddr, length, prot, MAP_SHARED|MAP_FIXED, memfd, phys) into
the stub, so the guest sees exactly the MemoryFile pages the Sentry reads and
writes through its own mapping; unmap() is munmap, protect() mprotect.  All
threads of the stub share its mm, so a change is seen by every guest thread at
once (the host kernel shoots down the other CPUs' TLB entries before munmap or
mprotect returns).

Each host thread works through its own stub thread (thread_for_caller(): made on
the thread's first use, then kept until a context that ran in it is released on
that thread, release_thread(), or the address space goes).  The stub is made by
the first use; changes made before then (execve building a new image on a vfork
parent's thread, say) are recorded and replayed into the stub when it is made.
"""
from __future__ import annotations

import errno
import threading
TYPE_CHECKING = False  # typing is not imported at run time (start-up cost)

from kvmbox.abi.mman import MAP_FIXED, MAP_SHARED, PROT_EXEC, PROT_READ, PROT_WRITE
from kvmbox.errors import SandboxCrash
from kvmbox.platform.base import AddressSpace
from kvmbox.platform.ptrace import consts as C
from kvmbox.platform.ptrace.stub import StubProcess, _unpin_tracer
from kvmbox.platform.ptrace.stubthread import StubThread

if TYPE_CHECKING:  # pragma: no cover
    from kvmbox.platform.ptrace.platform import PtracePlatform

_PROT_ALL = PROT_READ | PROT_WRITE | PROT_EXEC


class PtraceAddressSpace(AddressSpace):
    def __init__(self, platform: "PtracePlatform") -> None:
        self.platform = platform
        self.stub: StubProcess | None = None
        self._early: list[tuple] = []      # (method, args) made before the stub existed
        self._lock = threading.Lock()      # first switches of two threads may race
        self._threads: dict[int, StubThread] = {}    # host thread ident -> its stub thread

    def thread_for_caller(self) -> StubThread:
        """The calling host thread's stub thread (the stub and the thread made now if needed)."""
        t = self._threads.get(threading.get_ident())
        if t is not None and t.alive:
            return t
        with self._lock:
            stub = self.stub
            if stub is None:
                stub = self.stub = StubProcess(self.platform.memfile.fd, pin=self.platform.pin,
                                               cpus=self.platform.cpus)
                stub.hide_code = self.platform.stub_needs_hiding(stub)
                t = stub.first_thread()
            else:
                t = stub.new_thread()
            t.retire = lambda: self.release_thread(t)
            self._threads[t.tracer] = t
            # The early changes, before any other thread can run guest code here (they come
            # back to this thread's entry in _threads, not to the lock).
            replay, self._early = self._early, []
            for method, args in replay:
                method(*args)
        self.platform.note_thread(self)
        return t

    stub_for_tracer = thread_for_caller          # the name the tests and tools know

    def release_thread(self, t: StubThread | None = None) -> None:
        """End the calling host thread's stub thread (or `t`, which it traces), if any."""
        with self._lock:
            if t is None:
                t = self._threads.get(threading.get_ident())
            if t is None or self._threads.get(t.tracer) is not t:
                return
            del self._threads[t.tracer]
        t.check_thread()
        if self.stub is not None:
            self.stub.end_thread(t)

    def _call(self, what: str, nr: int, *args: int) -> int:
        ret = self.thread_for_caller().syscall(nr, *args)
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
        stub = self.thread_for_caller()
        if stub.syscall(C.NR_mprotect, vaddr, length, prot & _PROT_ALL) == -errno.ENOMEM:
            # Holes (pages never populated): mprotect stops at the first; do each mapped piece.
            for lo, hi in self.stub.mapped_ranges(vaddr, vaddr + length):
                self._call(f"mprotect({lo:#x}, {hi - lo:#x})", C.NR_mprotect, lo, hi - lo, prot & _PROT_ALL)

    def release(self) -> None:
        """Kill the stub (every thread) from any host thread; the threads' tracers may still
        be told by release_thread(), which then does nothing."""
        self._early = []
        with self._lock:
            stub, self.stub = self.stub, None
            threads, self._threads = list(self._threads.values()), {}
        if stub is not None:
            stub.kill()
            me = threading.get_ident()
            for t in threads:
                t.forget()
                if t.cpu >= 0 and t.tracer == me:
                    _unpin_tracer()
                    t.cpu = -1
