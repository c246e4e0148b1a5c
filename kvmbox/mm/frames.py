"""FrameAllocator: hands out 4 KiB MemoryFile frames, data frames and page-table frames apart.

Data frames come from a free-extent pool over [low, table_floor) kept sorted
and coalesced.  Page-table frames come from a separate bump region at the top
of the MemoryFile that grows down: under PVM shadow paging KVM keys its shadow
pages by guest frame, so a frame that was ever a page table must never become
a page table again.  A released table frame is punched and joins the data
pool; when the reserve runs out the bump pointer may eat into the top of the
data pool, but only over frames that were never tables.  Freed frames are
zeroed, so every frame handed out reads as zeros: the lowest WARM_FRAMES of
the pool (which first fit hands out first) in place, keeping their host pages,
and the rest punched, giving the host memory back.

Copy-on-write fork shares data frames between private mappings of several
address spaces (kvmbox/mm/cow.py).  A frame's references beyond the first are
counted (kvmbox/mm/framerefs.py, a byte per frame), and free() drops one
reference: only a frame's last reference returns it to the pool and punches it.  So every path that frees a private frame (munmap, exit,
exec, mremap, madvise) stays right whoever else still holds it.
"""
from __future__ import annotations

import errno
import functools
import threading
from bisect import bisect_left, bisect_right

from kvmbox.errors import SyscallError
from kvmbox.guest_stub import layout
from kvmbox.mm import tuning
from kvmbox.mm.framerefs import FrameRefs
from kvmbox.mm.memfile import MemoryFile

PAGE = layout.PAGE_SIZE


def _locked(fn):
    @functools.wraps(fn)
    def wrapper(self, *args):
        with self.lock:
            return fn(self, *args)
    return wrapper


def default_table_reserve(size: int) -> int:
    """Bytes set aside for page-table frames in a MemoryFile of `size` bytes."""
    want = max(tuning.TABLE_RESERVE_MIN, size // tuning.TABLE_RESERVE_DIV)
    return want & ~(PAGE - 1)


def memfile_layout(memory: int, *, tables: bool) -> tuple[int, int]:
    """(MemoryFile size, page-table reserve) for a guest memory limit of `memory` bytes.

    The data pool always holds the whole limit plus DATA_SLACK, whatever the reserve
    for page tables (KVM: on top; ptrace keeps none), so a page the limit let a
    program commit finds a frame: mmap fails at the limit, a later touch never does."""
    data = memory + tuning.DATA_SLACK
    reserve = default_table_reserve(data) if tables else 0
    size = layout.STUB_RESERVED + data + reserve
    return (size + 0x1FFFFF) & ~0x1FFFFF, reserve


class FrameAllocator:
    """Allocates frames of one MemoryFile; shared by every address space, so it locks itself."""

    def __init__(self, memfile: MemoryFile, low: int = layout.STUB_RESERVED,
                 table_reserve: int | None = None) -> None:
        size = memfile.size & ~(PAGE - 1)
        if table_reserve is None:
            table_reserve = default_table_reserve(size)
        if low % PAGE or table_reserve % PAGE or low + table_reserve > size:
            raise ValueError("FrameAllocator: bad low / table_reserve for this MemoryFile")
        self.memfile = memfile
        self.low = low
        self.table_floor = size            # lowest frame ever used as a table (bump pointer)
        self.table_limit = size - table_reserve
        # The data pool, as sorted extent starts with their lengths in pages.
        self._starts: list[int] = []
        self._lens: dict[int, int] = {}
        if self.table_limit > low:
            self._insert(low, (self.table_limit - low) // PAGE)
        self.used_pages = 0
        self.free_pages = (size - low) // PAGE
        self._refs = FrameRefs(size // PAGE)    # references beyond the first, per frame
        self.lock = threading.RLock()

    # --- the pool -------------------------------------------------------------
    def _insert(self, start: int, npages: int) -> None:
        i = bisect_left(self._starts, start)
        self._starts.insert(i, start)
        self._lens[start] = npages

    def _remove(self, start: int) -> int:
        i = bisect_left(self._starts, start)
        del self._starts[i]
        return self._lens.pop(start)

    def _take(self, start: int, have: int, npages: int) -> None:
        """Take the first `npages` of the free extent at `start` (of length `have`)."""
        self._remove(start)
        if have > npages:
            self._insert(start + npages * PAGE, have - npages)

    def _take_at(self, start: int, have: int, at: int, npages: int) -> None:
        """Take `npages` from `at` inside the free extent at `start` (of length `have`)."""
        self._remove(start)
        if at > start:
            self._insert(start, (at - start) // PAGE)
        end, stop = at + npages * PAGE, start + have * PAGE
        if stop > end:
            self._insert(end, (stop - end) // PAGE)

    # --- data frames ----------------------------------------------------------
    @_locked
    def alloc(self, npages: int, phase: int | None = None) -> list[tuple[int, int]]:
        """`npages` data frames as extents [(phys, npages)], one extent whenever one fits.
        `phase` (0..511): prefer one extent whose first frame is that many frames past a
        2 MiB boundary, so that a virtual range with the same phase maps its aligned 2 MiB
        chunks onto aligned 2 MiB of frames (2 MiB leaves: kvmbox/mm/pagetables.py)."""
        if npages <= 0:
            return []
        pool_pages = self.free_pages - max(0, self.table_floor - self.table_limit) // PAGE
        if npages > pool_pages:
            raise SyscallError(errno.ENOMEM)
        if phase is not None:
            want = phase * PAGE
            for start in self._starts:        # first fit, at the phase
                have = self._lens[start]
                at = start + (want - start) % layout.HUGE_PAGE_SIZE
                if at + npages * PAGE <= start + have * PAGE:
                    self._take_at(start, have, at, npages)
                    self._account(npages)
                    return [(at, npages)]
        for start in self._starts:            # first fit: one contiguous extent
            have = self._lens[start]
            if have >= npages:
                self._take(start, have, npages)
                self._account(npages)
                return [(start, npages)]
        out: list[tuple[int, int]] = []       # fragmented: gather from the lowest extents
        need = npages
        while need:
            start = self._starts[0]
            have = self._lens[start]
            n = min(have, need)
            self._take(start, have, n)
            out.append((start, n))
            need -= n
        self._account(npages)
        return out

    def _account(self, npages: int) -> None:
        self.used_pages += npages
        self.free_pages -= npages

    @_locked
    def free(self, phys: int, npages: int) -> int:
        """Drop one reference to each frame of [phys, +npages); the frames whose last reference
        that was are punched and go back to the data pool (coalescing with neighbours).
        Returns how many frames went back."""
        if npages <= 0:
            return 0
        if self._refs.shared:
            freed = 0
            for f, n, shared in self._refs.runs(phys // PAGE, npages):
                if shared:
                    self._refs.drop(f, n)
                else:
                    freed += self._release(f * PAGE, n)
            return freed
        return self._release(phys, npages)

    def _release(self, phys: int, npages: int) -> int:
        """Return [phys, +npages), held by nobody now, to the pool."""
        end = phys + npages * PAGE
        if phys % PAGE or phys < self.low or end > self.memfile.size:
            raise ValueError(f"free of frames outside the pool: {phys:#x}+{npages}")
        i = bisect_right(self._starts, phys)
        if i and self._starts[i - 1] + self._lens[self._starts[i - 1]] * PAGE > phys:
            raise ValueError(f"double free of frame {phys:#x}")
        if i < len(self._starts) and self._starts[i] < end:
            raise ValueError(f"double free of frames {phys:#x}+{npages}")
        self._scrub(phys, end)
        if i and self._starts[i - 1] + self._lens[self._starts[i - 1]] * PAGE == phys:
            prev = self._starts[i - 1]          # extend the previous extent
            self._lens[prev] += npages
            start = prev
        else:
            self._insert(phys, npages)
            start = phys
            i += 1
        if i < len(self._starts) and self._starts[i] == end:
            self._lens[start] += self._remove(end)
        self.used_pages -= npages
        self.free_pages += npages
        return npages

    def _scrub(self, phys: int, end: int) -> None:
        """Zero freed frames [phys, end) and drop KVM's shadow entries for them: recycled in
        place below the warm limit (tuning.WARM_FRAMES), punched (host memory given back) above."""
        warm_end = min(end, self.low + tuning.WARM_FRAMES)
        if phys < warm_end:
            self.memfile.recycle(phys, warm_end - phys)
            phys = warm_end
        if phys < end:
            self.memfile.punch(phys, end - phys)

    # --- references (copy-on-write) ---------------------------------------------
    @_locked
    def share(self, phys: int, npages: int) -> None:
        """One more reference to each frame of [phys, +npages) (allocated data frames)."""
        self._refs.add(phys // PAGE, npages)

    def any_shared(self, phys: int, npages: int) -> bool:
        """Has any frame of [phys, +npages) more than one reference?"""
        return bool(self._refs.shared) and self._refs.any(phys // PAGE, npages)

    def refs(self, phys: int) -> int:
        """References to the allocated frame at `phys` (1 unless a fork shared it)."""
        return self._refs.extra(phys // PAGE) + 1

    @property
    def sharing(self) -> bool:
        """Does any frame have more than one reference?  (False: no copy-on-write to mind.)"""
        return self._refs.shared > 0

    @property
    def shared_frames(self) -> int:
        """How many frames have more than one reference."""
        return self._refs.shared

    @_locked
    def sharing_runs(self, phys: int, npages: int) -> list[tuple[int, int, bool]]:
        """[phys, +npages) cut into maximal runs (phys, npages, shared?) where shared means
        more than one reference."""
        if not self._refs.shared:
            return [(phys, npages, False)]
        return [(f * PAGE, n, s) for f, n, s in self._refs.runs(phys // PAGE, npages)]

    # --- page-table frames ----------------------------------------------------
    @_locked
    def alloc_table(self) -> int:
        """A zeroed frame that has never been a page table (bump-allocated, growing down)."""
        frame = self.table_floor - PAGE
        if frame < self.table_limit:
            # Reserve spent: take the frame just below the floor from the data pool.
            i = bisect_right(self._starts, frame) - 1
            start = self._starts[i] if i >= 0 else -1
            if start < 0 or start + self._lens[start] * PAGE <= frame:
                raise SyscallError(errno.ENOMEM)
            have = self._remove(start)
            if frame > start:
                self._insert(start, (frame - start) // PAGE)
            after = have - (frame - start) // PAGE - 1
            if after:
                self._insert(frame + PAGE, after)
        self.table_floor = frame
        self.memfile.view[frame:frame + PAGE] = bytes(PAGE)
        self._account(1)
        return frame

    @_locked
    def free_table(self, phys: int) -> None:
        """Punch a table frame of a released address space; it may come back as a DATA frame only."""
        if phys % PAGE or phys < self.table_floor or phys >= self.memfile.size:
            raise ValueError(f"free_table of a frame that is not a table: {phys:#x}")
        self.free(phys, 1)
