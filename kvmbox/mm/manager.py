"""MemoryManager: one guest process's memory: VMAs, brk, the mmap family, faults.

Populate-on-map: page faults cost an exit each, so a mapping gets frames and
PTEs when it is made (the host backs memfd pages lazily, without exits), up to
tuning.EAGER_POPULATE_LIMIT bytes; the rest is demand-paged in aligned
tuning.FAULT_AROUND chunks.  Every failure is a SyscallError with Linux's errno.
File mappings (MAP_PRIVATE copies, MAP_SHARED page-cache views, msync) are
described in kvmbox/mm/mapfile.py; mremap lives in kvmbox/mm/remap.py, mprotect in
kvmbox/mm/protect.py, madvise/msync/mincore in kvmbox/mm/advice.py.
Page faults and stack growth live in kvmbox/mm/fault.py, copy-on-write fork in
kvmbox/mm/cow.py, the checked copies to and from guest pointers (copy_in,
copy_out and kin) in kvmbox/mm/usercopy.py.
Lock order: callers' locks (Kernel, ThreadGroup) before MemoryManager.lock.
"""
from __future__ import annotations

import errno
import functools
import threading
from collections.abc import Callable

from kvmbox.abi.resource import RLIM_INFINITY
from kvmbox.abi import mman
from kvmbox.mm import tuning
from kvmbox.errors import SyscallError
from kvmbox.guest_stub import layout as L
from kvmbox.mm import mapfile
from kvmbox.mm.account import MemoryAccount
from kvmbox.mm.commit import Commitment
from kvmbox.mm.usercopy import UserCopy
from kvmbox.mm.frames import FrameAllocator
from kvmbox.mm.mapfile import MappedFile
from kvmbox.mm.memfile import MemoryFile
from kvmbox.mm import advice as advice_ops
from kvmbox.mm import cow, fault
from kvmbox.mm.fault import _NO_FAULT
from kvmbox.mm import protect, remap
from kvmbox.mm.vma import VMA_FLAG_MASK, Backing, Vma, VmaSet
from kvmbox.mm.vma import chargeable as _chargeable
from kvmbox.abi.mman import PROT_EXEC, PROT_READ, PROT_WRITE
from kvmbox.platform.base import AddressSpace

PAGE = L.PAGE_SIZE
PROT_ALL = PROT_READ | PROT_WRITE | PROT_EXEC
_MAP_KNOWN = (mman.MAP_TYPE | mman.MAP_FIXED | mman.MAP_ANONYMOUS | mman.MAP_GROWSDOWN | mman.MAP_DENYWRITE
              | mman.MAP_EXECUTABLE | mman.MAP_LOCKED | mman.MAP_NORESERVE | mman.MAP_POPULATE | mman.MAP_NONBLOCK
              | mman.MAP_STACK | mman.MAP_HUGETLB | mman.MAP_SYNC | mman.MAP_FIXED_NOREPLACE | mman.MAP_32BIT
              | mman.MAP_HUGE_MASK)
def _locked(fn: Callable) -> Callable:
    """Run the method under the MemoryManager's lock."""
    @functools.wraps(fn)
    def wrapper(self: "MemoryManager", *args, **kwargs):
        with self.lock:
            return fn(self, *args, **kwargs)
    return wrapper  # type: ignore[return-value]


def _relayout(fn: Callable) -> Callable:
    """Run a method that changes the mappings under the lock, and forget the last fault:
    a fault at the same page after an munmap/mmap (say) is a new fault, not a repeat."""
    @functools.wraps(fn)
    def wrapper(self: "MemoryManager", *args, **kwargs):
        with self.lock:
            self._last_fault = _NO_FAULT
            return fn(self, *args, **kwargs)
    return wrapper  # type: ignore[return-value]


def _page_up(x: int) -> int:
    return (x + PAGE - 1) & ~(PAGE - 1)



def _unlimited(resource: int) -> int:
    return RLIM_INFINITY



class MemoryManager(Commitment, UserCopy):
    """The only way the Sentry touches a guest process's memory."""

    def __init__(self, memfile: MemoryFile, frames: FrameAllocator, aspace: AddressSpace, *,
                 limit: int | None = None, mmap_base: int = L.MMAP_BASE, user_low: int = 0x10000,
                 account: MemoryAccount | None = None) -> None:
        self.memfile = memfile
        self.frames = frames
        self.aspace = aspace
        self.limit = limit
        self.account = account      # the sandbox's --memory, shared with its file systems
        self._committed = 0
        self._debt = 0              # of _committed, what a fork let this process inherit uncharged
        self.mmap_base = mmap_base
        self.user_low = user_low
        self.vmas = VmaSet()
        self.brk_base = self.brk_cur = 0
        self.lock = threading.RLock()
        self._last_fault: tuple[int, int, int] = _NO_FAULT   # (page, error code, times in a row)
        self._lazy_done: set[int] = set()   # FAULT_AROUND chunks whose lazy pages are mapped (cow.py)
        self.vmas.before_merge = functools.partial(cow.settle_lazy, self)
        # The soft limit of a resource (RLIMIT_AS, RLIMIT_STACK) for the process using this
        # address space, asked at each check as Linux reads current's; its Task sets it.
        self.rlimit: Callable[[int], int] = _unlimited
        self.membarrier_registered = 0   # membarrier(2) REGISTER_* commands done (a fork keeps them)

    # --- internals (charging: kvmbox/mm/commit.py) ------------------------------------
    def _populate(self, v: Vma, a: int, b: int) -> bool:
        """Give frames to the holes of [a, b) in `v` and map them; False if frames ran out.
        Pages wholly past the end of the file (or shared anonymous object) the mapping views
        stay holes (touching them is SIGBUS)."""
        if v.backing.shared:                # another process may be filling the same holes
            with v.backing.lock:
                return self._fill_holes(v, a, b)
        return self._fill_holes(v, a, b)

    def _fill_holes(self, v: Vma, a: int, b: int) -> bool:
        eof = -1
        for va, phys, n in list(v.runs(a, b)):
            if phys is not None:
                continue
            if eof < 0:
                eof = mapfile.eof_addr(v)
            if va >= eof:
                break
            n = min(n, (eof - va) // PAGE)
            # Frames at the same 2 MiB phase as va when the run holds a whole aligned 2 MiB:
            # the page tables can then map those chunks with 2 MiB leaves.
            phase = None
            huge = L.HUGE_PAGE_SIZE
            if self.aspace.huge and ((va + huge - 1) & ~(huge - 1)) + huge <= va + n * PAGE:
                phase = (va // PAGE) % L.PT_ENTRIES
            try:
                extents = self.frames.alloc(n, phase)
            except SyscallError:
                return False
            if self._debt and v.forked and not v.backing.shared and _chargeable(v.prot, v.flags) \
                    and not self.pay_debt(n * PAGE):
                for p, k in extents:
                    self.frames.free(p, k)
                return False
            pidx = v.pidx(va)
            fill = v.file is not None and not (v.file.direct and v.backing.shared)
            for p, k in extents:
                if fill:
                    mapfile.fill_frames(self.memfile, v, pidx, p, k)
                v.backing.add(pidx, p, k)
                if v.prot & PROT_ALL:
                    for lo, hi in cow.visible(self, v, va, va + k * PAGE):
                        self.aspace.map(lo, hi - lo, p + lo - va, v.prot)
                va += k * PAGE
                pidx += k
        return True

    def _eager(self, v: Vma, a: int, b: int, *, everything: bool = False, downward: bool = False) -> None:
        """Populate up front (best effort): all of [a, b), or at most EAGER_POPULATE_LIMIT bytes
        and half the free frames (so eager frames never starve demand faults elsewhere)."""
        if not everything:
            if not v.prot & PROT_ALL:
                return
            most = min(tuning.EAGER_POPULATE_LIMIT, self.frames.free_pages // 2 * PAGE)
            if b - a > most:
                a, b = (b - most, b) if downward else (a, a + most)
        if a < b:
            self._populate(v, a, b)

    def _remap(self, v: Vma) -> None:
        """Rewrite the PTEs of every populated page of `v` (after a prot change or a move)."""
        cow.remap(self, v)

    def _unshare(self, v: Vma) -> None:
        """Give a private file mapping that views the shared read-only page cache copies of
        its populated pages of its own (before it may be written); ENOMEM if frames run out."""
        new = Backing(shared=False)
        view = self.memfile.view
        try:
            for va, phys, n in list(v.runs(v.start, v.end)):
                if phys is None:
                    continue
                pidx = v.pidx(va)
                for p, k in self.frames.alloc(n):
                    view[p:p + k * PAGE] = view[phys:phys + k * PAGE]
                    new.add(pidx, p, k)
                    pidx += k
                    phys += k * PAGE
        except SyscallError:
            for _, p, k in new.extents:
                self.frames.free(p, k)
            raise SyscallError(errno.ENOMEM) from None
        v.backing.let_go()                              # the file system still holds it
        v.backing = new
        self._remap(v)

    def _drop(self, v: Vma) -> None:
        """Free what `v` holds (it is already out of the set and unmapped)."""
        b = v.backing
        if v.file is not None and v.file.writeback is not None:
            mapfile.write_back(self.memfile, v, v.start, v.end)
        if b.pinned:
            b.let_go()
            return                                      # special frames: never freed, never charged
        if b.shared:
            extents = b.take(-(1 << 62), 1 << 62) if b.let_go() else []
        else:
            extents = b.take(v.pgoff, v.pidx(v.end))
        for _, phys, n in extents:
            self.frames.free(phys, n)
        if _chargeable(v.prot, v.flags):
            self.committed -= v.length

    def _unmap_range(self, start: int, end: int) -> None:
        if start >= end:
            return                                      # nothing to cut (and no VMA to split)
        self.vmas.split_at(start)
        self.vmas.split_at(end)
        for v in self.vmas.overlapping(start, end):
            self.vmas.remove(v)
            self.aspace.unmap(v.start, v.length)
            self._drop(v)

    def _new_vma(self, start: int, end: int, prot: int, flags: int, name: str = "", *,
                 populate_all: bool = False, grow_limit: int = 0, file: MappedFile | None = None,
                 pgoff: int = 0) -> Vma:
        """Insert and populate a fresh Vma over a free range (charge already taken)."""
        shared = (flags & mman.MAP_TYPE) != mman.MAP_PRIVATE
        flags = (flags & VMA_FLAG_MASK & ~mman.MAP_TYPE) | (mman.MAP_SHARED if shared else mman.MAP_PRIVATE)
        if file is None:
            # A shared anonymous object is as big as its first mapping (Linux's shmem file).
            backing, pgoff = Backing(shared=shared, npages=(end - start) // PAGE if shared else None), 0
        else:
            backing = mapfile.backing_for(file, shared, prot)
        v = Vma(start, end, prot, flags, name, backing, pgoff, grow_limit, file)
        self.vmas.insert(v)
        if backing.extents:                 # a file's page cache: map the pages it already has
            for va, phys, n in v.runs(start, mapfile.eof_addr(v)):
                if phys is not None and prot & PROT_ALL:
                    self.aspace.map(va, n * PAGE, phys, prot)
        self._eager(v, start, end, everything=populate_all, downward=bool(flags & mman.MAP_GROWSDOWN))
        return self.vmas.merge_around(v)

    def _merge_range(self, start: int, end: int) -> None:
        v = self.vmas.find(start)
        while v is not None:
            v = self.vmas.merge_around(v)
            if v.end >= end:
                break
            v = self.vmas.find(v.end)

    # --- mmap family ---------------------------------------------------------------
    @_relayout
    def mmap(self, addr: int, length: int, prot: int, flags: int, fd: int = -1, offset: int = 0,
             *, file: MappedFile | None = None) -> int:
        """mmap(2); a file mapping (no MAP_ANONYMOUS) needs `file` (sys_mm builds it from fd)."""
        if offset % PAGE or offset < 0 or length <= 0:
            raise SyscallError(errno.EINVAL)
        length = _page_up(length)
        if length > L.USER_TOP:
            raise SyscallError(errno.ENOMEM)
        kind = flags & mman.MAP_TYPE
        if kind not in (mman.MAP_SHARED, mman.MAP_PRIVATE, mman.MAP_SHARED_VALIDATE) or prot & ~PROT_ALL:
            raise SyscallError(errno.EINVAL)
        if kind == mman.MAP_SHARED_VALIDATE and flags & ~_MAP_KNOWN:
            raise SyscallError(errno.EOPNOTSUPP)
        if kind != mman.MAP_SHARED_VALIDATE and flags & mman.MAP_SYNC:
            flags &= ~mman.MAP_SYNC                      # ignored unless validated, as Linux does
        if flags & mman.MAP_ANONYMOUS:
            file = None
        elif file is None:
            raise SyscallError(errno.ENODEV)
        elif offset + length > 1 << 63:
            raise SyscallError(errno.EOVERFLOW)
        else:
            mapfile.check_prot(file, prot, kind != mman.MAP_PRIVATE)
            flags &= ~mman.MAP_GROWSDOWN
        if flags & (mman.MAP_FIXED | mman.MAP_FIXED_NOREPLACE):
            if addr % PAGE:
                raise SyscallError(errno.EINVAL)
            if addr + length > L.USER_TOP:
                raise SyscallError(errno.ENOMEM)
            if addr < self.user_low:
                raise SyscallError(errno.EPERM)
            if flags & mman.MAP_FIXED_NOREPLACE and not self.vmas.is_free(addr, addr + length):
                raise SyscallError(errno.EEXIST)
        else:
            addr = self._place(addr, length)
        end = addr + length
        new = length if _chargeable(prot, flags) else 0
        self._check_vm(length - self.vmas.mapped_in(addr, end))
        self._check_charge(new - self._charge_of(addr, end))
        self._unmap_range(addr, end)                   # uncharges what it replaces
        self.committed += new
        grow_limit = max(self.user_low, end - L.STACK_MAX) if flags & mman.MAP_GROWSDOWN else 0
        self._new_vma(addr, end, prot, flags, populate_all=bool(flags & mman.MAP_POPULATE),
                      grow_limit=grow_limit, file=file, pgoff=offset // PAGE)
        return addr

    def _place(self, hint: int, length: int) -> int:
        """Where a non-fixed mapping goes: the hint if usable, else top-down below mmap_base."""
        hint = _page_up(hint)
        if hint and hint >= self.user_low and hint + length <= L.USER_TOP \
                and self.vmas.is_free(hint, hint + length):
            return hint
        start = self.vmas.find_gap(length, self.user_low, self.mmap_base)
        if start is None:
            raise SyscallError(errno.ENOMEM)
        return start

    @_relayout
    def munmap(self, addr: int, length: int) -> None:
        if addr % PAGE or length <= 0:
            raise SyscallError(errno.EINVAL)
        end = addr + _page_up(length)
        if end > L.USER_TOP:
            raise SyscallError(errno.EINVAL)
        self._unmap_range(addr, end)

    @_relayout
    def mprotect(self, addr: int, length: int, prot: int) -> None:
        protect.mprotect(self, addr, length, prot)

    @_relayout
    def mremap(self, old_addr: int, old_len: int, new_len: int, flags: int, new_addr: int = 0) -> int:
        return remap.mremap(self, old_addr, old_len, new_len, flags, new_addr)

    @_relayout
    def madvise(self, addr: int, length: int, advice: int) -> None:
        advice_ops.madvise(self, addr, length, advice)

    @_locked
    def msync(self, addr: int, length: int, flags: int) -> None:
        """msync(2): write back the changed pages of shared host-file mappings in the range."""
        advice_ops.msync(self, addr, length, flags)

    @_locked
    def mincore(self, addr: int, length: int) -> bytes:
        """mincore(2): one byte per page, 1 where the page has a frame."""
        return advice_ops.mincore(self, addr, length)

    @_relayout
    def map_special(self, addr: int, phys: int, npages: int, prot: int, name: str) -> None:
        """Map existing frames [phys, +npages) at `addr` as a special VMA ("[vdso]", "[vvar]").

        The frames belong to the caller (shared by every process): munmap may remove
        the mapping, as on Linux, but the frames are never freed, punched or made writable.
        """
        end = addr + npages * PAGE
        if addr % PAGE or npages <= 0 or addr < self.user_low or end > L.USER_TOP \
                or not self.vmas.is_free(addr, end):
            raise SyscallError(errno.ENOMEM)
        backing = Backing(shared=True, pinned=True)
        backing.add(0, phys, npages)
        self.vmas.insert(Vma(addr, end, prot, mman.MAP_PRIVATE, name, backing))
        self.aspace.map(addr, end - addr, phys, prot)

    # --- brk and the stack -----------------------------------------------------------
    @_locked
    def set_brk_base(self, addr: int) -> None:
        self.brk_base = self.brk_cur = _page_up(addr)

    @_relayout
    def brk(self, addr: int) -> int:
        if addr < self.brk_base or addr > L.USER_TOP:
            return self.brk_cur
        old_top, new_top = _page_up(self.brk_cur), _page_up(addr)
        if new_top < old_top:
            self._unmap_range(new_top, old_top)
        elif new_top > old_top:
            if not self.vmas.is_free(old_top, new_top):
                return self.brk_cur
            try:
                self._check_vm(new_top - old_top)
                self._charge(new_top - old_top)
            except SyscallError:
                return self.brk_cur
            self._new_vma(old_top, new_top, PROT_READ | PROT_WRITE, mman.MAP_PRIVATE | mman.MAP_ANONYMOUS, "[heap]")
        self.brk_cur = addr
        return addr

    @_relayout
    def map_stack(self, top: int, size: int, max_size: int) -> None:
        start = top - _page_up(size)
        if top % PAGE or size <= 0 or start < self.user_low or top > L.USER_TOP \
                or not self.vmas.is_free(start, top):
            raise SyscallError(errno.ENOMEM)
        self._charge(top - start)
        self._new_vma(start, top, PROT_READ | PROT_WRITE,
                      mman.MAP_PRIVATE | mman.MAP_ANONYMOUS | mman.MAP_GROWSDOWN, "[stack]",
                      populate_all=True, grow_limit=max(self.user_low, top - max_size))

    def _grow_stack(self, addr: int) -> Vma | None:
        return fault.grow_stack(self, addr)

    # --- faults ----------------------------------------------------------------------
    @_locked
    def handle_fault(self, addr: int, error_code: int) -> bool:
        """Demand paging and stack growth (kvmbox/mm/fault.py); False: Linux would signal."""
        return fault.handle_fault(self, addr, error_code)

    @_locked
    def beyond_eof(self, addr: int, error_code: int) -> bool:
        """Whether a refused fault at `addr` is Linux's SIGBUS (BUS_ADRERR) (mm/fault.py)."""
        return fault.beyond_eof(self, addr, error_code)

    # --- fork --------------------------------------------------------------------------
    @_relayout
    def fork(self, aspace: AddressSpace) -> "MemoryManager":
        """A copy-on-write copy of this process's memory over `aspace` (new and empty, from
        platform.new_address_space()) for a forked child (kvmbox/mm/cow.py).  Call it on the
        parent's thread; only the child's thread may use the result's address space after."""
        child = cow.fork(self, aspace)
        child.membarrier_registered = self.membarrier_registered
        return child

    # --- inspection and teardown --------------------------------------------------------
    @_locked
    def maps(self) -> list[Vma]:
        return list(self.vmas)

    @_locked
    def release(self) -> None:
        for v in self.vmas:
            self.vmas.remove(v)
            self._drop(v)
        self.aspace.release()
        self.committed = 0
