"""VMAs: the mapped ranges of one address space, each with the frames backing it, kept sorted.

A Vma views a Backing (an anonymous memory object: frame extents keyed by
page index, with holes where nothing is populated yet) starting at page
`pgoff`.  A private mapping owns its Backing alone, and the Backing holds only
extents inside the Vma; splitting moves extents to a new Backing.  A shared
anonymous mapping's Backing is shared (refcounted) by every Vma viewing it,
which is what fork will need: the child's Vma points at the same object.

A file mapping also carries `file` (kvmbox.mm.mapfile.MappedFile: where its
bytes come from and what /proc/<pid>/maps names).  Its page indices are file
page numbers (pgoff = offset / PAGE), private or shared, so splitting keeps
indices rather than rebasing them and the file offset of any page is its index.

What fork does with a Vma (kvmbox/mm/cow.py): `dontfork` (MADV_DONTFORK) leaves it
out of the child, `wipeonfork` (MADV_WIPEONFORK) gives the child an empty copy.
A Vma the child inherited is `forked` (its commitment was not charged anew:
MemoryManager.committed) and, until its first fault, `lazy`: its frames are
not in the child's page tables yet.
"""
from __future__ import annotations

import threading
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterator

from kvmbox.guest_stub import layout as L
from kvmbox.abi import mman
from kvmbox.abi.mman import PROT_WRITE
from kvmbox.record import field, record, replace

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from kvmbox.mm.mapfile import MappedFile

PAGE = L.PAGE_SIZE


@record(eq=False)
class Backing:
    """Frames of one anonymous memory object: sorted extents (page index, phys, npages).

    A shared Backing is used by several processes, each on its own host thread and
    under its own MemoryManager lock: `lock` orders the changes of its references and
    extents (and the reads that must not see an extent half inserted)."""
    shared: bool = False
    refs: int = 1
    pinned: bool = False            # frames owned elsewhere (the vDSO): never freed or punched
    npages: int | None = None       # a shared anonymous object's size: pages past it are SIGBUS
    keys: list[int] = field(default_factory=list)                  # start page index of each extent
    extents: list[tuple[int, int, int]] = field(default_factory=list)
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)

    def hold(self) -> None:
        """One more reference (a mapping, a fork's copy of one, the file that owns it)."""
        with self.lock:
            self.refs += 1

    def let_go(self) -> bool:
        """One reference fewer; True when that was the last (its frames are the caller's)."""
        with self.lock:
            self.refs -= 1
            return self.refs == 0

    @property
    def pages(self) -> int:
        return sum(n for _, _, n in self.extents)

    def lookup(self, pidx: int) -> int | None:
        """Frame backing page `pidx`, or None if not populated."""
        i = bisect_right(self.keys, pidx) - 1
        if i >= 0:
            k, phys, n = self.extents[i]
            if k <= pidx < k + n:                   # (k <= pidx: not an extent mid-insert)
                return phys + (pidx - k) * PAGE
        return None

    def runs(self, p0: int, p1: int) -> Iterator[tuple[int, int | None, int]]:
        """(page index, phys or None for a hole, npages) covering [p0, p1) in order."""
        i = max(bisect_right(self.keys, p0) - 1, 0)
        p = p0
        while p < p1:
            if i < len(self.extents):
                k, phys, n = self.extents[i]
                if k + n <= p:
                    i += 1
                    continue
                if k > p:
                    stop = min(k, p1)
                    yield p, None, stop - p
                    p = stop
                    continue
                stop = min(k + n, p1)
                yield p, phys + (p - k) * PAGE, stop - p
                p = stop
                i += 1
            else:
                yield p, None, p1 - p
                p = p1

    def add(self, pidx: int, phys: int, npages: int) -> None:
        """Record frames for the hole [pidx, pidx+npages); merges with a contiguous neighbour."""
        i = bisect_left(self.keys, pidx)
        if i and self.extents[i - 1][0] + self.extents[i - 1][2] == pidx \
                and self.extents[i - 1][1] + self.extents[i - 1][2] * PAGE == phys:
            k, p, n = self.extents[i - 1]
            self.extents[i - 1] = (k, p, n + npages)
            return
        self.keys.insert(i, pidx)
        self.extents.insert(i, (pidx, phys, npages))

    def _cut(self, pidx: int) -> None:
        """Make sure no extent straddles page index `pidx`."""
        i = bisect_right(self.keys, pidx) - 1
        if i >= 0:
            k, phys, n = self.extents[i]
            if k < pidx < k + n:
                head = pidx - k
                self.extents[i] = (k, phys, head)
                self.keys.insert(i + 1, pidx)
                self.extents.insert(i + 1, (pidx, phys + head * PAGE, n - head))

    def take(self, p0: int, p1: int) -> list[tuple[int, int, int]]:
        """Remove and return the extents inside [p0, p1) as (page index, phys, npages)."""
        self._cut(p0)
        self._cut(p1)
        i, j = bisect_left(self.keys, p0), bisect_left(self.keys, p1)
        out = self.extents[i:j]
        del self.keys[i:j], self.extents[i:j]
        return out

    def move(self, p0: int, p1: int, dest: Backing, delta: int) -> None:
        """Move the extents inside [p0, p1) to `dest`, their page indices shifted by `delta`."""
        for k, phys, n in self.take(p0, p1):
            dest.add(k + delta, phys, n)


# The MAP_* bits a Vma remembers (the rest only steer the mmap call).
VMA_FLAG_MASK = mman.MAP_TYPE | mman.MAP_ANONYMOUS | mman.MAP_GROWSDOWN | mman.MAP_NORESERVE


def chargeable(prot: int, flags: int) -> bool:
    """Does a mapping count against the memory limit (private writable, or shared anonymous)?

    Shared file mappings are the file's pages (its page cache), not the process's."""
    if (flags & mman.MAP_TYPE) != mman.MAP_PRIVATE:
        return bool(flags & mman.MAP_ANONYMOUS)
    return bool(prot & PROT_WRITE)


@record(eq=False)
class Vma:
    """[start, end) mapped with `prot`; page i of it is page pgoff+i of `backing`."""
    start: int
    end: int
    prot: int
    flags: int
    name: str = ""
    backing: Backing = field(default_factory=Backing)
    pgoff: int = 0
    grow_limit: int = 0                 # MAP_GROWSDOWN: the lowest start it may grow down to
    file: "MappedFile | None" = None    # file mappings: the file's source and identity
    dontfork: bool = False              # madvise(MADV_DONTFORK): not in a forked child
    wipeonfork: bool = False            # madvise(MADV_WIPEONFORK): empty in a forked child
    forked: bool = False                # inherited by fork (its pages may pay the fork's debt)
    lazy: bool = False                  # populated pages may be missing from the page tables

    @property
    def length(self) -> int:
        return self.end - self.start

    # What /proc/<pid>/maps shows for a file mapping (None / 0 for anonymous memory).
    @property
    def path(self) -> str | None:
        return self.file.path if self.file is not None else None

    @property
    def dev(self) -> int:
        return self.file.dev if self.file is not None else 0

    @property
    def ino(self) -> int:
        return self.file.ino if self.file is not None else 0

    @property
    def offset(self) -> int:
        """File offset of the first byte (file mappings); pgoff in bytes otherwise."""
        return self.pgoff * PAGE

    @property
    def shared(self) -> bool:
        """A MAP_SHARED mapping.  (Its Backing's `shared` says whether the frames are shared,
        which a private read-only view of a page cache, or the vDSO, also is.)"""
        return bool(self.flags & mman.MAP_SHARED)

    def pidx(self, addr: int) -> int:
        return (addr - self.start) // PAGE + self.pgoff

    def translate(self, addr: int) -> int | None:
        """Frame backing the page holding `addr` (no offset added), or None."""
        return self.backing.lookup(self.pidx(addr))

    def runs(self, a: int, b: int) -> Iterator[tuple[int, int | None, int]]:
        """(vaddr, phys or None, npages) covering the page-aligned [a, b) inside this Vma."""
        base = self.start - self.pgoff * PAGE
        for p, phys, n in self.backing.runs(self.pidx(a), self.pidx(b)):
            yield base + p * PAGE, phys, n

    def split(self, addr: int) -> Vma:
        """Cut at `addr`: self keeps [start, addr), the returned Vma gets [addr, end)."""
        assert self.start < addr < self.end and addr % PAGE == 0
        if self.backing.shared:
            self.backing.hold()
            upper = replace(self, start=addr, pgoff=self.pidx(addr))
        else:
            p = self.pidx(addr)
            keep = p if self.file is not None else 0     # file pages keep their file page numbers
            upper = replace(self, start=addr, backing=Backing(), pgoff=keep)
            self.backing.move(p, self.pidx(self.end), upper.backing, keep - p)
        self.end = addr
        return upper

    def mergeable(self, nxt: Vma) -> bool:
        """Whether `nxt` may join self as one VMA: adjacent, alike, and for shared memory the
        same object at the next page (so pieces that mprotect split rejoin, as on Linux)."""
        if not (self.end == nxt.start and self.prot == nxt.prot and self.flags == nxt.flags
                and self.name == nxt.name and not self.flags & mman.MAP_GROWSDOWN
                and self.file is nxt.file and self.backing.shared == nxt.backing.shared
                and self.dontfork == nxt.dontfork and self.wipeonfork == nxt.wipeonfork):
            return False
        if self.backing.shared:
            return self.backing is nxt.backing and not self.backing.pinned \
                and self.pidx(self.end) == nxt.pgoff
        return self.file is None or self.pidx(self.end) == nxt.pgoff

    def absorb(self, nxt: Vma) -> None:
        """Append the adjacent `nxt` to self: a private one's frames move into self's Backing;
        a shared one views the same Backing, which loses a reference."""
        self.lazy = self.lazy or nxt.lazy
        self.forked = self.forked or nxt.forked
        if self.backing.shared:
            self.backing.let_go()                       # self still holds it
        else:
            nxt.backing.move(nxt.pgoff, nxt.pidx(nxt.end), self.backing, self.pidx(nxt.start) - nxt.pgoff)
        self.end = nxt.end


class VmaSet:
    """The Vmas of an address space, sorted by start, non-overlapping (bisect lookups)."""

    def __init__(self) -> None:
        self._starts: list[int] = []
        self._vmas: list[Vma] = []
        # find_gap's memory (Linux's old free_area_cache): every gap wholly above _gap_top
        # (a VMA start, or _gap_ceiling) is at most _gap_small bytes, so a longer request
        # need not look there.  Removing a VMA may raise _gap_top over the space it frees.
        self._gap_ceiling = -1
        self._gap_top = 0
        self._gap_small = 0
        self.mapped = 0                 # bytes mapped in all (Linux's total_vm, for RLIMIT_AS)
        # Called with (lower, upper) before two Vmas merge (the MemoryManager reconciles a
        # lazy Vma with one whose pages are all mapped: kvmbox/mm/cow.py settle_lazy).
        self.before_merge: Callable[[Vma, Vma], None] | None = None

    def __iter__(self) -> Iterator[Vma]:
        return iter(list(self._vmas))

    def __len__(self) -> int:
        return len(self._vmas)

    def find(self, addr: int) -> Vma | None:
        """The Vma containing `addr`."""
        i = bisect_right(self._starts, addr) - 1
        if i >= 0 and addr < self._vmas[i].end:
            return self._vmas[i]
        return None

    def first_above(self, addr: int) -> Vma | None:
        """The lowest Vma starting at or above `addr`."""
        i = bisect_left(self._starts, addr)
        return self._vmas[i] if i < len(self._vmas) else None

    def last_below(self, addr: int) -> Vma | None:
        """The highest Vma ending at or below `addr`."""
        i = bisect_left(self._starts, addr) - 1
        while i >= 0:
            if self._vmas[i].end <= addr:
                return self._vmas[i]
            i -= 1
        return None

    def overlapping(self, start: int, end: int) -> list[Vma]:
        i = max(bisect_right(self._starts, start) - 1, 0)
        out = []
        while i < len(self._vmas) and self._vmas[i].start < end:
            if self._vmas[i].end > start:
                out.append(self._vmas[i])
            i += 1
        return out

    def is_free(self, start: int, end: int) -> bool:
        i = bisect_left(self._starts, end)
        return i == 0 or self._vmas[i - 1].end <= start

    def covered(self, start: int, end: int) -> bool:
        """Is every byte of [start, end) inside some Vma?"""
        addr = start
        for v in self.overlapping(start, end):
            if v.start > addr:
                return False
            addr = v.end
        return addr >= end

    def insert(self, vma: Vma) -> None:
        assert vma.start < vma.end and self.is_free(vma.start, vma.end), "overlapping Vma"
        i = bisect_left(self._starts, vma.start)
        self._starts.insert(i, vma.start)
        self._vmas.insert(i, vma)
        self.mapped += vma.length

    def remove(self, vma: Vma) -> None:
        i = bisect_left(self._starts, vma.start)
        assert self._vmas[i] is vma
        del self._starts[i], self._vmas[i]
        self.mapped -= vma.length
        if self._gap_ceiling >= 0:              # the freed space joins the gap up to the next VMA
            top = self._starts[i] if i < len(self._starts) else self._gap_ceiling
            self._gap_top = max(self._gap_top, min(top, self._gap_ceiling))

    def rekey(self, vma: Vma, old_start: int) -> None:
        """`vma.start` changed from `old_start` (stack growth); keep the index right."""
        i = bisect_left(self._starts, old_start)
        assert self._vmas[i] is vma
        self._starts[i] = vma.start
        self.mapped += old_start - vma.start

    def extend(self, vma: Vma, new_end: int) -> None:
        """Grow `vma` in place up to `new_end` (free space: mremap)."""
        self.mapped += new_end - vma.end
        vma.end = new_end

    def mapped_in(self, start: int, end: int) -> int:
        """Bytes of [start, end) inside some Vma."""
        return sum(min(v.end, end) - max(v.start, start) for v in self.overlapping(start, end))

    def split_at(self, addr: int) -> None:
        """Make `addr` a Vma boundary if a Vma straddles it."""
        v = self.find(addr)
        if v is not None and v.start < addr:
            self.insert_after_split(v.split(addr))

    def insert_after_split(self, upper: Vma) -> None:
        i = bisect_left(self._starts, upper.start)
        self._starts.insert(i, upper.start)
        self._vmas.insert(i, upper)

    def merge_around(self, vma: Vma) -> Vma:
        """Merge `vma` with compatible neighbours; returns the Vma that now holds its range."""
        i = bisect_left(self._starts, vma.start)
        hook = self.before_merge
        if i + 1 < len(self._vmas) and vma.mergeable(self._vmas[i + 1]):
            if hook is not None:
                hook(vma, self._vmas[i + 1])
            vma.absorb(self._vmas[i + 1])
            del self._starts[i + 1], self._vmas[i + 1]
        if i > 0 and self._vmas[i - 1].mergeable(vma):
            if hook is not None:
                hook(self._vmas[i - 1], vma)
            self._vmas[i - 1].absorb(vma)
            del self._starts[i], self._vmas[i]
            return self._vmas[i - 1]
        return vma

    def find_gap(self, length: int, floor: int, ceiling: int) -> int | None:
        """Highest page-aligned start with [start, start+length) free inside [floor, ceiling).

        Top-down allocation walks down from where the last search ended when every gap
        above that point is too small for `length`, so placing n mappings one below the
        other costs O(log n) each, not O(n)."""
        if ceiling == self._gap_ceiling and length > self._gap_small:
            found, small = self._search(length, floor, self._gap_top, self._gap_small)
        else:
            found = None
        if found is None:
            found, small = self._search(length, floor, ceiling, 0)
        if found is not None:
            self._gap_ceiling, self._gap_top, self._gap_small = ceiling, found + length, small
        return found

    def _search(self, length: int, floor: int, top: int, small: int) -> tuple[int | None, int]:
        """(highest fitting start below `top`, largest gap passed over, counting `small`)."""
        hi = top
        i = bisect_left(self._starts, top) - 1
        while hi - floor >= length:
            lo = max(self._vmas[i].end if i >= 0 else floor, floor)
            if hi - lo >= length:
                return hi - length, small
            small = max(small, hi - lo)
            if i < 0:
                break
            hi = min(hi, self._vmas[i].start)
            i -= 1
        return None, small
