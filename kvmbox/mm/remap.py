"""mremap(2) for the MemoryManager: grow/shrink in place, move frames without copying, dup shared views.

Called by MemoryManager.mremap with the manager's lock held; works through the
manager's internals (the VmaSet, charging, populate) as its own methods would.
"""
from __future__ import annotations

import errno

from kvmbox.abi import mman
from kvmbox.errors import SyscallError
from kvmbox.guest_stub import layout as L
from kvmbox.mm.vma import Vma, chargeable

PAGE = L.PAGE_SIZE

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from kvmbox.mm.manager import MemoryManager


def page_up(x: int) -> int:
    return (x + PAGE - 1) & ~(PAGE - 1)


def mremap(mm: "MemoryManager", old_addr: int, old_len: int, new_len: int, flags: int, new_addr: int = 0) -> int:
    known = mman.MREMAP_MAYMOVE | mman.MREMAP_FIXED | mman.MREMAP_DONTUNMAP
    if flags & ~known or old_addr % PAGE or (flags & mman.MREMAP_FIXED and not flags & mman.MREMAP_MAYMOVE) \
            or flags & mman.MREMAP_DONTUNMAP:         # DONTUNMAP: not supported yet
        raise SyscallError(errno.EINVAL)
    old_len, new_len = page_up(old_len), page_up(new_len)
    if new_len == 0 or old_len > L.USER_TOP or new_len > L.USER_TOP:
        raise SyscallError(errno.EINVAL)
    if flags & mman.MREMAP_FIXED:
        if new_addr % PAGE or new_addr + new_len > L.USER_TOP or new_addr < mm.user_low:
            raise SyscallError(errno.EINVAL)
        if new_addr < old_addr + max(old_len, 1) and old_addr < new_addr + new_len:
            raise SyscallError(errno.EINVAL)
    v = mm.vmas.find(old_addr)
    if v is None:
        raise SyscallError(errno.EFAULT)
    if old_len == 0:
        return _mremap_dup(mm, v, old_addr, new_len, flags, new_addr)
    if not flags & mman.MREMAP_FIXED and new_len <= old_len:
        # Shrinking only unmaps the tail, whatever it holds (Linux checks nothing else).
        mm._unmap_range(old_addr + new_len, old_addr + old_len)
        return old_addr
    if old_addr + min(old_len, new_len) > v.end:
        raise SyscallError(errno.EFAULT)           # what moves or grows lies in one VMA
    if v.backing.pinned and v.file is None and new_len > old_len:
        raise SyscallError(errno.EINVAL)           # a special mapping cannot grow
    old_end = old_addr + old_len
    if flags & mman.MREMAP_FIXED:
        kept = min(old_len, new_len)
        charge = (new_len - kept) if chargeable(v.prot, v.flags) else 0
        mm._check_vm(new_len - kept - mm.vmas.mapped_in(new_addr, new_addr + new_len))
        mm._check_charge(charge - mm._charge_of(new_addr, new_addr + new_len))
        mm._unmap_range(old_addr + kept, old_end)
        mm._unmap_range(new_addr, new_addr + new_len)
        mm.committed += charge
        return _move(mm, old_addr, old_addr + kept, new_addr, new_len)
    mm._check_vm(new_len - old_len)
    charge = new_len - old_len if chargeable(v.prot, v.flags) else 0
    if old_end == v.end and old_addr + new_len <= L.USER_TOP \
            and mm.vmas.is_free(old_end, old_addr + new_len):
        mm._charge(charge)
        mm.vmas.extend(v, old_addr + new_len)
        mm._eager(v, old_end, v.end)
        mm.vmas.merge_around(v)
        return old_addr
    if not flags & mman.MREMAP_MAYMOVE:
        raise SyscallError(errno.ENOMEM)
    dest = mm.vmas.find_gap(new_len, mm.user_low, mm.mmap_base)
    if dest is None:
        raise SyscallError(errno.ENOMEM)
    mm._charge(charge)
    return _move(mm, old_addr, old_end, dest, new_len)

def _move(mm: "MemoryManager", start: int, end: int, dest: int, new_len: int) -> int:
    """Move [start, end) (inside one Vma) to a free [dest, dest+new_len): frames move, no copy."""
    mm.vmas.split_at(start)
    mm.vmas.split_at(end)
    v = mm.vmas.find(start)
    assert v is not None and v.start == start and v.end == end
    mm.vmas.remove(v)
    mm.aspace.unmap(v.start, v.length)
    old_len = v.length
    v.grow_limit += dest - v.start if v.grow_limit else 0
    v.start, v.end = dest, dest + new_len
    mm.vmas.insert(v)
    mm._remap(v)
    if new_len > old_len:
        mm._eager(v, dest + old_len, v.end)
    mm.vmas.merge_around(v)
    return dest

def _mremap_dup(mm: "MemoryManager", v: Vma, addr: int, new_len: int, flags: int, new_addr: int) -> int:
    """mremap(old_len=0): a second view of a shared mapping's pages."""
    if not v.shared or not flags & mman.MREMAP_MAYMOVE:
        raise SyscallError(errno.EINVAL if not v.shared else errno.ENOMEM)
    if flags & mman.MREMAP_FIXED:
        dest = new_addr
    else:
        found = mm.vmas.find_gap(new_len, mm.user_low, mm.mmap_base)
        if found is None:
            raise SyscallError(errno.ENOMEM)
        dest = found
    charge = new_len if chargeable(v.prot, v.flags) else 0
    mm._check_vm(new_len - mm.vmas.mapped_in(dest, dest + new_len))
    mm._check_charge(charge - mm._charge_of(dest, dest + new_len))
    mm._unmap_range(dest, dest + new_len)
    mm.committed += charge
    v.backing.hold()
    dup = Vma(dest, dest + new_len, v.prot, v.flags, v.name, v.backing, v.pidx(addr), 0, v.file)
    mm.vmas.insert(dup)
    mm._remap(dup)
    return dest
