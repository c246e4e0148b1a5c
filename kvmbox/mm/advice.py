"""madvise(2), msync(2) and mincore(2) for the MemoryManager.

Called by the manager's methods of the same names with its lock held; they
work through the manager's internals (VmaSet, frames, the MemoryFile) as its
own methods would, like remap.py does for mremap.
"""
from __future__ import annotations

import errno

from kvmbox.abi import mman
from kvmbox.errors import SyscallError
from kvmbox.guest_stub import layout as L
from kvmbox.mm import mapfile
from kvmbox.mm.remap import page_up

PAGE = L.PAGE_SIZE

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from kvmbox.mm.manager import MemoryManager
    from kvmbox.mm.vma import Vma

MADV_NOOP = frozenset({mman.MADV_NORMAL, mman.MADV_RANDOM, mman.MADV_SEQUENTIAL, mman.MADV_MERGEABLE,
                        mman.MADV_UNMERGEABLE, mman.MADV_HUGEPAGE, mman.MADV_NOHUGEPAGE, mman.MADV_DONTDUMP,
                        mman.MADV_DODUMP, mman.MADV_COLD, mman.MADV_PAGEOUT})
# Advice that sets what fork does with the mapping: (Vma attribute, value).
MADV_FORK = {mman.MADV_DONTFORK: ("dontfork", True), mman.MADV_DOFORK: ("dontfork", False),
             mman.MADV_WIPEONFORK: ("wipeonfork", True), mman.MADV_KEEPONFORK: ("wipeonfork", False)}


def madvise(mm: "MemoryManager", addr: int, length: int, advice: int) -> None:
    """madvise(2): WILLNEED populates; DONTNEED/FREE/REMOVE give pages back; DONTFORK,
    DOFORK, WIPEONFORK and KEEPONFORK mark the VMAs (splitting them) for fork; the rest no-ops.

    As Linux walks it: VMA by VMA in address order, the first VMA the advice does not
    suit ends the call with its errno (the VMAs before it keep the advice), and a hole
    anywhere in the range gives ENOMEM once the rest is done."""
    if addr % PAGE or length < 0:
        raise SyscallError(errno.EINVAL)
    end = addr + page_up(length)
    if end > L.USER_TOP:
        raise SyscallError(errno.EINVAL)
    if advice not in MADV_NOOP and advice not in MADV_FORK \
            and advice not in (mman.MADV_WILLNEED, mman.MADV_DONTNEED, mman.MADV_FREE, mman.MADV_REMOVE):
        raise SyscallError(errno.EINVAL)
    if end == addr:
        return
    covered = addr
    hole = False
    for v in mm.vmas.overlapping(addr, end):
        hole = hole or v.start > covered
        covered = v.end
        refused = _refusal(v, advice)
        if refused:
            raise SyscallError(refused)
        _advise(mm, v, max(v.start, addr), min(v.end, end), advice)
    if hole or covered < end:
        raise SyscallError(errno.ENOMEM)


def _refusal(v: "Vma", advice: int) -> int:
    """The errno Linux gives `advice` on this VMA, or 0: MADV_FREE is for private anonymous
    memory only; MADV_REMOVE for shared mappings the open file lets write."""
    if advice == mman.MADV_FREE and (v.shared or v.file is not None):
        return errno.EINVAL
    if advice == mman.MADV_REMOVE:
        if not v.shared:
            return errno.EACCES if v.file is not None else errno.EINVAL
        if v.file is not None and not v.file.may_write:
            return errno.EACCES
    if advice == mman.MADV_WIPEONFORK and (v.shared or v.file is not None):
        return errno.EINVAL                     # private anonymous memory only
    return 0


def _advise(mm: "MemoryManager", v: "Vma", a: int, b: int, advice: int) -> None:
    """Carry out `advice` on [a, b) of `v`."""
    if advice == mman.MADV_WILLNEED:
        mm._eager(v, a, b)
    elif advice in MADV_FORK:
        # Split off the piece and mark it.  Linux 6.18 does not merge pieces made alike again
        # by the opposite advice (mprotect's it does): neither is merged here.
        attr, value = MADV_FORK[advice]
        if getattr(v, attr) != value:
            mm.vmas.split_at(a)
            mm.vmas.split_at(b)
            piece = mm.vmas.find(a)
            assert piece is not None and piece.end == b
            setattr(piece, attr, value)
    elif v.backing.pinned:
        return                                  # never punch the vDSO's frames
    elif advice == mman.MADV_DONTNEED and v.file is not None and not v.shared:
        # A private file page reads the file again on next touch: drop the copy.
        mm.aspace.unmap(a, b - a)
        for _, phys, n in v.backing.take(v.pidx(a), v.pidx(b)):
            mm.frames.free(phys, n)
    elif advice in (mman.MADV_FREE, mman.MADV_REMOVE) or (advice == mman.MADV_DONTNEED and not v.shared):
        # Zero-fill on next touch: punching keeps the frames and PTEs but gives the
        # memory back, and its mmu notifier drops any shadow entries.  A frame shared
        # copy-on-write is another process's page too: drop this mapping's reference instead.
        for va, phys, n in list(v.runs(a, b)):
            if phys is None:
                continue
            for p, k, shared in mm.frames.sharing_runs(phys, n):
                if shared:
                    mm.aspace.unmap(va, k * PAGE)
                    v.backing.take(v.pidx(va), v.pidx(va) + k)
                    mm.frames.free(p, k)
                else:
                    mm.memfile.punch(p, k * PAGE)
                va += k * PAGE


def msync(mm: "MemoryManager", addr: int, length: int, flags: int) -> None:
    """msync(2): write back the changed pages of shared host-file mappings in the range."""
    if addr % PAGE or length < 0 or not mapfile.msync_flags_ok(flags):
        raise SyscallError(errno.EINVAL)
    end = addr + page_up(length)
    if end > L.USER_TOP:
        raise SyscallError(errno.ENOMEM)
    if flags & (mapfile.MS_SYNC | mapfile.MS_ASYNC):
        for v in mm.vmas.overlapping(addr, end):
            mapfile.write_back(mm.memfile, v, max(v.start, addr), min(v.end, end))
    if not mm.vmas.covered(addr, end):
        raise SyscallError(errno.ENOMEM)


def mincore(mm: "MemoryManager", addr: int, length: int) -> bytes:
    """mincore(2): one byte per page, 1 where the page has a frame."""
    if addr % PAGE:
        raise SyscallError(errno.EINVAL)
    end = addr + page_up(length)
    if end > L.USER_TOP or not mm.vmas.covered(addr, end):
        raise SyscallError(errno.ENOMEM)
    out = bytearray()
    for v in mm.vmas.overlapping(addr, end):
        for _, phys, n in v.runs(max(v.start, addr), min(v.end, end)):
            out += (b"\1" if phys is not None else b"\0") * n
    return bytes(out)
