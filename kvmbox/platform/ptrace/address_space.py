"""PtraceAddressSpace: a guest process's page mappings, as real mappings in its stub process.

map() injects mmap(vaddr, length, prot, MAP_SHARED|MAP_FIXED, memfd, phys) into
the stub, so the guest sees exactly the MemoryFile pages the Sentry reads and
writes through its own mapping; unmap() is munmap, protect() mprotect.

The stub is made by the platform's service thread (service.py) when a host
thread first runs guest code in the address space; changes made before then
(fork building a child's address space, execve building a new image on a vfork
parent's thread) are recorded and replayed there.  Each host thread that runs
guest code here gets a stub thread of its own (`thread_for_caller`), and
injects through it; a host thread without one (a rare cross-thread change)
injects through thread 0 on the service thread.  A host thread that is done
with the address space while it lives on (a guest thread's exit) ends its stub
thread first: `release_thread()`, through PtracePlatform.thread_exit().
"""
from __future__ import annotations

import errno
import threading
TYPE_CHECKING = False  # typing is not imported at run time (start-up cost)

from kvmbox.abi.mman import MAP_FIXED, MAP_SHARED, PROT_EXEC, PROT_READ, PROT_WRITE
from kvmbox.errors import SandboxCrash
from kvmbox.platform.base import AddressSpace
from kvmbox.platform.ptrace import consts as C
from kvmbox.platform.ptrace.stub import StubProcess
from kvmbox.platform.ptrace.stubthread import StubThread

if TYPE_CHECKING:  # pragma: no cover
    from kvmbox.platform.ptrace.platform import PtracePlatform

_PROT_ALL = PROT_READ | PROT_WRITE | PROT_EXEC


class PtraceAddressSpace(AddressSpace):
    def __init__(self, platform: "PtracePlatform") -> None:
        self.platform = platform
        self.stub: StubProcess | None = None
        self._early: list[tuple] = []      # (nr, args) made before the stub existed
        self._threads: dict[int, StubThread] = {}   # host thread ident -> its stub thread
        self._making = threading.Lock()    # two host threads' first switches make one stub

    # --- the stub and its threads ----------------------------------------------------------
    def _make_stub(self) -> StubProcess:
        """On the service thread: fork the stub, learn about hiding, replay early changes."""
        p = self.platform
        stub = StubProcess(p.memfile.fd, pins=p.pins if p.pin else None)
        try:
            stub.hide_code = p.stub_needs_hiding(stub)
            for nr, args in self._early:
                ret = stub.syscall(nr, *args)
                if nr == C.NR_mprotect and ret == -errno.ENOMEM:     # holes: piece by piece
                    vaddr, length, prot = args
                    for lo, hi in stub.mapped_ranges(vaddr, vaddr + length):
                        _check(stub.syscall(nr, lo, hi - lo, prot), nr, args)
                elif nr != C.NR_mprotect:
                    _check(ret, nr, args)
        except BaseException:
            stub.kill()
            raise
        self._early = []
        return stub

    def thread_for_caller(self) -> StubThread:
        """The calling host thread's stub thread here (made now if needed: the stub too)."""
        ident = threading.get_ident()
        t = self._threads.get(ident)
        if t is not None and t.alive:
            return t
        svc = self.platform.service
        with self._making:
            if self.stub is None:
                self.stub = svc.call(self._make_stub)
            stub = self.stub
        tid = svc.call(stub.clone_thread)
        t = stub.adopt(tid)
        self._threads[ident] = t
        self.platform.track(ident, self)
        return t

    def stub_for_tracer(self) -> StubThread:
        """The calling host thread's stub thread (made now if needed)."""
        return self.thread_for_caller()

    def release_thread(self) -> None:
        """The calling host thread is done here: its stub thread exits (the others go on)."""
        t = self._threads.pop(threading.get_ident(), None)
        if t is not None and t.alive and self.stub is not None:
            t.exit()

    # --- injecting ---------------------------------------------------------------------------
    def _inject(self, nr: int, *args: int) -> int:
        t = self._threads.get(threading.get_ident())
        if t is not None and t.alive:
            return t.syscall(nr, *args)
        stub = self.stub
        assert stub is not None
        return self.platform.service.call(lambda: stub.syscall(nr, *args))

    def _call(self, nr: int, *args: int) -> int:
        return _check(self._inject(nr, *args), nr, args)

    def map(self, vaddr: int, length: int, phys: int, prot: int) -> None:
        if not prot & _PROT_ALL:
            self.unmap(vaddr, length)
            return
        args = (vaddr, length, prot & _PROT_ALL, MAP_SHARED | MAP_FIXED, self.platform.memfile.fd, phys)
        if self.stub is None:
            self._early.append((C.NR_mmap, args))
            return
        self._call(C.NR_mmap, *args)

    def unmap(self, vaddr: int, length: int) -> None:
        if self.stub is None:
            if self._early:
                self._early.append((C.NR_munmap, (vaddr, length)))
            return                                     # nothing was ever mapped
        self._call(C.NR_munmap, vaddr, length)

    def protect(self, vaddr: int, length: int, prot: int) -> None:
        prot &= _PROT_ALL
        if self.stub is None:
            if self._early:
                self._early.append((C.NR_mprotect, (vaddr, length, prot)))
            return
        if self._inject(C.NR_mprotect, vaddr, length, prot) == -errno.ENOMEM:
            # Holes (pages never populated): mprotect stops at the first; do each mapped piece.
            for lo, hi in self.stub.mapped_ranges(vaddr, vaddr + length):
                self._call(C.NR_mprotect, lo, hi - lo, prot)

    def release(self) -> None:
        self._early = []
        stub, self.stub = self.stub, None
        threads, self._threads = self._threads, {}
        for ident in threads:
            self.platform.untrack(ident, self)
        if stub is not None:
            stub.kill()


def _check(ret: int, nr: int, args: tuple) -> int:
    if ret < 0:
        what = {C.NR_mmap: "mmap", C.NR_munmap: "munmap", C.NR_mprotect: "mprotect"}.get(nr, str(nr))
        shown = ", ".join(f"{a:#x}" for a in args[:2])
        raise SandboxCrash(f"kvmbox: {what}({shown}) in the ptrace stub failed: "
                           f"{errno.errorcode.get(-ret, -ret)}")
    return ret
