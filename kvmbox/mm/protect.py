"""mprotect(2) for the MemoryManager: VMA by VMA, as Linux walks it.

Called by MemoryManager.mprotect with the manager's lock held; works through the
manager's internals (the VmaSet, charging, remapping) as remap.py does for mremap.
Linux changes the VMAs from the start of the range up to the first hole (ENOMEM)
or the first VMA that refuses the protection (EACCES), keeping what it changed;
nothing changes when the range does not start in a VMA.
"""
from __future__ import annotations

import errno

from kvmbox.abi import mman
from kvmbox.abi.mman import PROT_EXEC, PROT_READ, PROT_WRITE
from kvmbox.errors import SyscallError
from kvmbox.guest_stub import layout as L
from kvmbox.mm.remap import page_up

PAGE = L.PAGE_SIZE
PROT_ALL = PROT_READ | PROT_WRITE | PROT_EXEC

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from kvmbox.mm.manager import MemoryManager


def mprotect(mm: "MemoryManager", addr: int, length: int, prot: int) -> None:
    grows = prot & (mman.PROT_GROWSDOWN | mman.PROT_GROWSUP)
    prot &= ~grows
    if addr % PAGE or prot & ~PROT_ALL or grows == mman.PROT_GROWSDOWN | mman.PROT_GROWSUP:
        raise SyscallError(errno.EINVAL)
    if length < 0:
        raise SyscallError(errno.ENOMEM)
    end = addr + page_up(length)
    if end == addr:
        return
    if end > L.USER_TOP:
        raise SyscallError(errno.ENOMEM)
    if grows:
        first = mm.vmas.find(addr)
        if first is None or grows == mman.PROT_GROWSUP or not first.flags & mman.MAP_GROWSDOWN:
            raise SyscallError(errno.EINVAL)
        addr = first.start
    stop, err = _extent(mm, addr, end, prot)
    if stop > addr:
        _apply(mm, addr, stop, prot)
    if err:
        raise SyscallError(err)


def _extent(mm: "MemoryManager", addr: int, end: int, prot: int) -> tuple[int, int]:
    """(stop, errno): how far from `addr` the change goes, and why it stops short (0: it
    does not).  A hole stops it with ENOMEM; a write to shared special frames ([vdso]) or
    to a shared mapping of a file not open for writing with EACCES."""
    at = addr
    for v in mm.vmas.overlapping(addr, end):
        if v.start > at:
            return at, errno.ENOMEM
        if prot & PROT_WRITE and ((v.backing.pinned and v.file is None)
                                  or (v.file is not None and v.shared and not v.file.may_write)):
            return at, errno.EACCES
        at = v.end
    return (end, 0) if at >= end else (at, errno.ENOMEM)


def _apply(mm: "MemoryManager", addr: int, end: int, prot: int) -> None:
    """Give [addr, end) (all mapped) protection `prot`: charge, and for each VMA whose
    protection changes (only those: Linux leaves the others whole), split, copy out of a
    shared page cache before it may be written, rewrite the PTEs, populate what was PROT_NONE."""
    mm._charge(mm._charge_of(addr, end, prot) - mm._charge_of(addr, end))
    for v in mm.vmas.overlapping(addr, end):
        if v.prot == prot:
            continue
        lo, hi = max(v.start, addr), min(v.end, end)
        mm.vmas.split_at(lo)
        mm.vmas.split_at(hi)
        piece = mm.vmas.find(lo)
        assert piece is not None and piece.end == hi
        if prot & PROT_WRITE and piece.backing.pinned and piece.file is not None:
            mm._unshare(piece)                  # copy-on-write out of the shared page cache
        was = piece.prot
        piece.prot = prot
        mm._remap(piece)
        if not was & PROT_ALL:
            mm._eager(piece, lo, hi, downward=bool(piece.flags & mman.MAP_GROWSDOWN))
    mm._merge_range(addr, end)
