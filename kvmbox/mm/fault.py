"""Page faults of a guest process: demand paging, stack growth, and which refused faults are SIGBUS.

Called by the MemoryManager's methods of the same names with its lock held; they
work through its internals (VmaSet, _populate, _charge, the address space) as its
own methods would, like remap.py does for mremap.
"""
from __future__ import annotations

from kvmbox.abi.resource import RLIMIT_AS, RLIMIT_STACK
from kvmbox.abi import mman
from kvmbox.mm import tuning
from kvmbox.errors import SyscallError
from kvmbox.guest_stub import layout as L
from kvmbox.mm import cow, mapfile
from kvmbox.mm.vma import Vma
from kvmbox.mm.vma import chargeable as _chargeable
from kvmbox.abi.mman import PROT_EXEC, PROT_READ, PROT_WRITE
from kvmbox.platform.base import PF_INSTR, PF_PRESENT, PF_WRITE

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from kvmbox.mm.manager import MemoryManager

PAGE = L.PAGE_SIZE
# The same fault this many times in a row, with no change to the mappings in between, is
# not spurious (the guest cannot see a page the Sentry mapped): SIGSEGV rather than a loop.
_REPEAT_FAULTS = 4
_NO_FAULT = (-1, -1, 0)            # MemoryManager._last_fault when none is remembered


class OutOfFrames(Exception):
    """A fault the mapping allows found no free frame: guest memory is exhausted by what the
    memory limit does not charge (frames taken apart from the MemoryAccount).  Linux's OOM
    killer would kill; so does the Kernel,
    saying why, rather than deliver a SIGSEGV the program did not earn."""


def _access(error_code: int) -> int:
    """The PROT_ bit a page fault's access needs."""
    return PROT_WRITE if error_code & PF_WRITE else PROT_EXEC if error_code & PF_INSTR else PROT_READ


def _allows(prot: int, need: int) -> bool:
    """Whether a mapping with `prot` allows an access needing `need`: x86 page tables cannot
    express write-only, so PROT_WRITE reads as Linux's does (faults and copy_from_user)."""
    if prot & PROT_WRITE:
        prot |= PROT_READ
    return prot & need == need


def _page_up(x: int) -> int:
    return (x + PAGE - 1) & ~(PAGE - 1)


def grow_stack(mm: "MemoryManager", addr: int) -> Vma | None:
    """Grow the MAP_GROWSDOWN Vma just above `addr` down over it: to a FAULT_AROUND
    boundary, but no further than RLIMIT_STACK (the Vma's size) and RLIMIT_AS allow;
    None when even the page of `addr` is past them (Linux: SIGSEGV, or EFAULT)."""
    v = mm.vmas.first_above(addr)
    if v is None or not v.flags & mman.MAP_GROWSDOWN or addr < v.grow_limit:
        return None
    below = mm.vmas.last_below(addr)
    stack_limit, as_limit = mm.rlimit(RLIMIT_STACK), mm.rlimit(RLIMIT_AS)
    new_start = max(addr & ~(tuning.FAULT_AROUND - 1), v.grow_limit, below.end if below else 0,
                    v.end - stack_limit, v.start - max(0, as_limit - mm.vmas.mapped))
    new_start = _page_up(new_start)
    if new_start > addr or not mm.vmas.is_free(new_start, v.start):
        return None
    try:
        mm._charge(v.start - new_start if _chargeable(v.prot, v.flags) else 0)
    except SyscallError:
        return None
    old = v.start
    v.pgoff -= (old - new_start) // PAGE
    v.start = new_start
    mm.vmas.rekey(v, old)
    return v


def handle_fault(mm: "MemoryManager", addr: int, error_code: int) -> bool:
    """Make the page at `addr` present for the access `error_code` describes (populating
    its FAULT_AROUND chunk, or the page alone); False when Linux would signal instead."""
    if not 0 <= addr < L.USER_TOP:
        return False
    v = mm.vmas.find(addr) or grow_stack(mm, addr)
    if v is None:
        return False
    if v.backing.shared:                        # other processes change it too
        with v.backing.lock:
            return _handle(mm, v, addr, error_code)
    return _handle(mm, v, addr, error_code)


def _handle(mm: "MemoryManager", v: Vma, addr: int, error_code: int) -> bool:
    if not _allows(v.prot, _access(error_code)):
        return False
    page = addr & ~(PAGE - 1)
    if v.translate(page) is None and page >= mapfile.eof_addr(v):
        return False                                # wholly past the object's end: SIGBUS
    last_addr, last_code, times = mm._last_fault
    times = times + 1 if (last_addr, last_code) == (page, error_code) else 1
    mm._last_fault = (page, error_code, times)
    if times >= _REPEAT_FAULTS:
        return False
    had = v.translate(page)
    # Copy before a lazy chunk is mapped, so the child's PTEs point at its copies at once
    # (re-pointing a present PTE would invalidate the frame the parent still maps).
    written = bool(error_code & PF_WRITE) and had is not None and cow.writable_private(v)
    if written and not cow.break_on_write(mm, v, page):
        raise OutOfFrames(f"no free frame (or no charge) for a copy of {page:#x}")
    brought = v.lazy and cow.fault_in(mm, page)     # a forked child's first touch of the chunk
    chunk = page & ~(tuning.FAULT_AROUND - 1)
    if not mm._populate(v, max(v.start, chunk), min(v.end, chunk + tuning.FAULT_AROUND)) \
            and not mm._populate(v, page, page + PAGE):
        raise OutOfFrames(f"no free frame for {page:#x}")
    if not written and ((had is not None and not brought) or error_code & PF_PRESENT):
        # Populated and mapped already, so the guest saw a stale (shadow) entry: rewrite and
        # invalidate.  (A copy-on-write break rewrote its PTEs itself: a new frame has no
        # shadow yet, and the old one's were invalidated by the rewrite; a write bit given
        # back is an upgrade, which the shadow MMU picks up on the next write.)
        phys = v.translate(page)
        assert phys is not None
        cow.map_range(mm, v, page, page + PAGE)
        mm.memfile.invalidate(phys, PAGE)
    return True


def beyond_eof(mm: "MemoryManager", addr: int, error_code: int) -> bool:
    """Whether a refused fault at `addr` is Linux's SIGBUS (BUS_ADRERR): an access the
    mapping allows to a page that starts at or past the end of the file (or shared
    anonymous object) it views."""
    v = mm.vmas.find(addr) if 0 <= addr < L.USER_TOP else None
    if v is None or v.translate(addr) is not None:
        return False
    return _allows(v.prot, _access(error_code)) and addr & ~(PAGE - 1) >= mapfile.eof_addr(v)
