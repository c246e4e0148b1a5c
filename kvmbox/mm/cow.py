"""Copy-on-write fork for the MemoryManager: the child's mappings, shared frames, breaking the share.

fork() gives a child MemoryManager, over a new and empty address space, a copy
of every VMA (docs/processes.md, "Memory across fork"):
  * MAP_SHARED mappings, page caches and the vDSO keep their one Backing (one
    more reference), so both processes see each other's writes;
  * private mappings (anonymous memory and private file copies) get a Backing
    of their own over the SAME frames, each frame gaining a reference
    (FrameAllocator.share); the parent's writable PTEs of those pages are
    write-protected (on KVM, PageTables.protect invalidates each downgraded
    frame through the MMU notifier, which PVM's shadow paging needs);
  * MADV_DONTFORK mappings are left out, MADV_WIPEONFORK ones start empty.

Nothing touches the child's address space at fork: on ptrace it belongs to the
host thread that will run the child.  The child's inherited VMAs are `lazy`:
its first fault in a FAULT_AROUND chunk maps the populated pages of every lazy
VMA in that chunk (read-only where the frame is shared), and the chunk joins
`mm._lazy_done`.  Invariant: in a chunk not in `_lazy_done`, no page of a lazy
VMA has a PTE; in one that is, every populated page has its right PTE.  So
copy_out, populate and mprotect leave a not-done chunk alone (visible()).

A write fault on a shared frame of a writable private mapping copies it (and
the other shared frames of its COW_CLUSTER-page cluster: one fault instead of
several, each an exit); one on a frame with one reference left just gets its
write bit back, which is what map_range() does for any frame with one
reference.  copy_out breaks the share the same way before the Sentry writes.

Memory charge: see MemoryManager.committed (the child's inherited commitment
is a debt, charged page by page as the child gets frames of its own).
"""
from __future__ import annotations

from kvmbox.mm import tuning
from kvmbox.errors import SyscallError
from kvmbox.guest_stub import layout as L
from kvmbox.mm.vma import Backing, Vma, chargeable
from kvmbox.abi.mman import PROT_EXEC, PROT_READ, PROT_WRITE
from kvmbox.platform.base import AddressSpace
from kvmbox.record import replace

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from kvmbox.mm.manager import MemoryManager

PAGE = L.PAGE_SIZE
PROT_ALL = PROT_READ | PROT_WRITE | PROT_EXEC
CHUNK = tuning.FAULT_AROUND
# Pages copied by one copy-on-write fault: the faulting page and the other shared pages of
# its aligned cluster.  Measured on PVM (docs/processes.md): a fault costs ~75 us, copying a
# page ~1 us, so a program writing on sequentially saves 15 exits of 16 at this size.
COW_CLUSTER = 16


def fork(mm: "MemoryManager", aspace: AddressSpace) -> "MemoryManager":
    """The child of `mm` (locked by the caller) over `aspace` (new, empty, untouched here)."""
    child = type(mm)(mm.memfile, mm.frames, aspace, limit=mm.limit, mmap_base=mm.mmap_base,
                     user_low=mm.user_low, account=mm.account)
    child.brk_base, child.brk_cur = mm.brk_base, mm.brk_cur
    child.rlimit = mm.rlimit
    inherited = 0
    for v in mm.vmas:
        if v.dontfork:
            continue
        b = v.backing
        if b.shared:                    # MAP_SHARED, a read-only page cache, the vDSO
            b.hold()
            nb = b
        elif v.wipeonfork:
            nb = Backing()
        else:
            nb = Backing(keys=list(b.keys), extents=list(b.extents))
            for _, phys, n in b.extents:
                mm.frames.share(phys, n)
            if v.prot & PROT_WRITE:
                _write_protect(mm, v)
        child.vmas.insert(replace(v, backing=nb, forked=True, lazy=True))
        if chargeable(v.prot, v.flags):
            inherited += v.length
    # Fork overcommits, as Linux does by default: nothing is charged now (MemoryManager.committed).
    child.inherit_commitment(inherited)
    return child


def _write_protect(mm: "MemoryManager", v: Vma) -> None:
    """Take the write bit from the parent's PTEs of `v`'s populated pages (now shared)."""
    ro = readonly(v.prot)
    lo = hi = -1
    for va, phys, n in v.runs(v.start, v.end):
        if phys is None:
            continue
        if va != hi:
            if hi > lo:
                mm.aspace.protect(lo, hi - lo, ro)
            lo = va
        hi = va + n * PAGE
    if hi > lo:
        mm.aspace.protect(lo, hi - lo, ro)


def readonly(prot: int) -> int:
    """`prot` without the write right (x86 cannot express write-only: writable means readable)."""
    return (prot | PROT_READ) & ~PROT_WRITE if prot & PROT_WRITE else prot


def visible(mm: "MemoryManager", v: Vma, a: int, b: int) -> list[tuple[int, int]]:
    """The parts of [a, b) in `v` that belong in the page tables now: all of it, except for a
    lazy VMA, whose pages wait in chunks its process has not faulted in yet."""
    if not v.lazy:
        return [(a, b)]
    done = mm._lazy_done
    first, last = a // CHUNK, (b - 1) // CHUNK
    if last - first >= len(done):           # a long range: walk the chunks done, not all
        chunks = sorted(c for c in done if first <= c <= last)
    else:
        chunks = [c for c in range(first, last + 1) if c in done]
    out: list[tuple[int, int]] = []
    for c in chunks:
        lo, hi = max(a, c * CHUNK), min(b, (c + 1) * CHUNK)
        if out and out[-1][1] == lo:
            out[-1] = (out[-1][0], hi)
        else:
            out.append((lo, hi))
    return out


def map_range(mm: "MemoryManager", v: Vma, a: int, b: int) -> None:
    """Write the PTEs of the populated pages of [a, b) in `v` with its protection, minus the
    write right on frames a private mapping shares with another process."""
    if v.backing.shared:
        with v.backing.lock:                    # no extent half inserted by another process
            _map_range(mm, v, a, b)
    else:
        _map_range(mm, v, a, b)


def _map_range(mm: "MemoryManager", v: Vma, a: int, b: int) -> None:
    prot = v.prot
    cow = not v.backing.shared and prot & PROT_WRITE and mm.frames.sharing
    ro = readonly(prot)
    for lo, hi in visible(mm, v, a, b):
        for va, phys, n in v.runs(lo, hi):
            if phys is None:
                continue
            if not cow:
                mm.aspace.map(va, n * PAGE, phys, prot)
                continue
            for p, k, shared in mm.frames.sharing_runs(phys, n):
                mm.aspace.map(va, k * PAGE, p, ro if shared else prot)
                va += k * PAGE


def remap(mm: "MemoryManager", v: Vma) -> None:
    """Rewrite the PTEs of every populated page of `v` (after a prot change or a move)."""
    if not v.prot & PROT_ALL:
        mm.aspace.unmap(v.start, v.length)
    else:
        map_range(mm, v, v.start, v.end)


def fault_in(mm: "MemoryManager", addr: int) -> bool:
    """Map the lazy VMAs' pages of the chunk holding `addr` unless done; True if it did."""
    c = addr // CHUNK
    if c in mm._lazy_done:
        return False
    mm._lazy_done.add(c)
    lo = c * CHUNK
    for w in mm.vmas.overlapping(lo, lo + CHUNK):
        if w.lazy and w.prot & PROT_ALL:
            map_range(mm, w, max(w.start, lo), min(w.end, lo + CHUNK))
    return True


def settle_lazy(mm: "MemoryManager", lower: Vma, upper: Vma) -> None:
    """Before a lazy Vma and one with all its pages mapped merge into a lazy one: fault in
    the chunks the mapped one shares with other Vmas and mark all of its chunks done, so
    the merged Vma keeps the invariant (no PTE in a chunk not done)."""
    if lower.lazy == upper.lazy:
        return
    eager = upper if lower.lazy else lower
    first, last = eager.start // CHUNK, (eager.end - 1) // CHUNK
    fault_in(mm, first * CHUNK)
    fault_in(mm, last * CHUNK)
    mm._lazy_done.update(range(first, last + 1))       # its inside chunks hold it alone


def writable_private(v: Vma) -> bool:
    """Is `v` a mapping whose shared frames must be copied before a write?"""
    return not v.backing.shared and bool(v.prot & PROT_WRITE)


def unshare(mm: "MemoryManager", v: Vma, a: int, b: int) -> int:
    """Give `v` copies of its own of the shared frames among its populated pages in [a, b)
    (page-aligned, inside `v`; PTEs not rewritten): how many pages it copied, or -1 (and
    nothing changed) when no frame or no charge is left for them."""
    frames = mm.frames
    todo: list[tuple[int, int, int]] = []          # (page index, old frame, npages)
    for va, phys, n in v.runs(a, b):
        if phys is None:
            continue
        pidx = v.pidx(va)
        for p, k, shared in frames.sharing_runs(phys, n):
            if shared:
                todo.append((pidx, p, k))
            pidx += k
    total = sum(k for _, _, k in todo)
    if not total:
        return 0
    try:
        fresh = frames.alloc(total)
    except SyscallError:
        return -1
    if v.forked and not mm.pay_debt(total * PAGE):
        for p, k in fresh:
            frames.free(p, k)
        return -1
    view, backing = mm.memfile.view, v.backing
    it = iter(fresh)
    dst, left = next(it)
    for pidx, old, k in todo:
        backing.take(pidx, pidx + k)
        while k:
            if not left:
                dst, left = next(it)
            m = min(k, left)
            view[dst:dst + m * PAGE] = view[old:old + m * PAGE]
            backing.add(pidx, dst, m)
            frames.free(old, m)                   # after the copy: the other holder may write now
            pidx, old, k = pidx + m, old + m * PAGE, k - m
            dst, left = dst + m * PAGE, left - m
    return total


def unshare_and_map(mm: "MemoryManager", v: Vma, a: int, b: int) -> bool:
    """unshare() [a, b) of `v` before the Sentry writes there, and map what it copied."""
    copied = unshare(mm, v, a, b)
    if copied > 0:
        map_range(mm, v, a, b)
    return copied >= 0


def break_on_write(mm: "MemoryManager", v: Vma, page: int) -> bool:
    """A write fault at `page` of the writable private `v`: copy the shared frames of its
    cluster (or of the page alone when the cluster does not fit) and map the cluster, which
    also gives a frame with one reference left its write bit back; False when no frame or
    charge is left (the OOM killer's case)."""
    if mm.aspace.huge:
        # Nothing to copy in the page's 2 MiB chunk (the other holder has gone): give the
        # write right back to all of it at once, which keeps a 2 MiB leaf whole instead of
        # splitting it for the cluster (kvmbox/mm/pagetables.py).
        chunk = page & ~(L.HUGE_PAGE_SIZE - 1)
        lo, hi = max(v.start, chunk), min(v.end, chunk + L.HUGE_PAGE_SIZE)
        if not any(mm.frames.any_shared(phys, n) for _va, phys, n in v.runs(lo, hi)
                   if phys is not None):
            map_range(mm, v, lo, hi)
            return True
    cluster = page - page % (COW_CLUSTER * PAGE)
    lo, hi = max(v.start, cluster), min(v.end, cluster + COW_CLUSTER * PAGE)
    if unshare(mm, v, lo, hi) < 0:
        lo, hi = page, page + PAGE
        if unshare(mm, v, lo, hi) < 0:
            return False
    map_range(mm, v, lo, hi)
    return True
