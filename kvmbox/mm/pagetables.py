"""PageTables: one guest process's x86-64 4-level page tables, written in the MemoryFile.

Departures from DESIGN.md, forced by PVM's shadow paging (KVM does not see
the Sentry edit guest page tables):
- leaves are 4 KiB only, never 2 MiB pages (a split 2 MiB leaf can leave KVM a stale
  shadow page it reuses: docs/pvm.md, "Guest RAM and huge pages");
- a present leaf that changes frame, loses rights or disappears gets its old
  frame invalidated (MemoryFile.invalidate -> KVM's mmu notifier drops the
  shadow entries); not-present -> present and rights upgrades need nothing;
- table pages (PDPT/PD/PT) are never freed or repointed while the address
  space lives; release() frees them all, and the FrameAllocator never reuses
  a former table frame as a table.
The stub's PML4 slot (layout.STUB_PML4_INDEX) points at the platform's PDPT.
"""
from __future__ import annotations

from array import array

from kvmbox.abi.mman import PROT_EXEC, PROT_READ, PROT_WRITE
from kvmbox.guest_stub import layout as L
from kvmbox.mm.frames import FrameAllocator
from kvmbox.mm.memfile import MemoryFile
from kvmbox.platform.base import AddressSpace

PAGE = L.PAGE_SIZE
_TABLE_FLAGS = L.PTE_P | L.PTE_W | L.PTE_U         # non-leaf entries: the leaves decide
_LEAF_BASE = L.PTE_P | L.PTE_U | L.PTE_A | L.PTE_D
_IDX = L.PT_ENTRIES - 1
_ZERO_BYTES = bytes(PAGE)
_ZERO_QS = memoryview(array("Q", _ZERO_BYTES))
_PT_SPAN = PAGE * L.PT_ENTRIES                      # 2 MiB: one PT page
_PD_SPAN = _PT_SPAN * L.PT_ENTRIES                  # 1 GiB: one PD page
_PDPT_SPAN = _PD_SPAN * L.PT_ENTRIES                # 512 GiB: one PDPT page


def leaf_flags(prot: int) -> int:
    """PTE flag bits for a user leaf with protection `prot` (0 for PROT_NONE)."""
    if not prot & (PROT_READ | PROT_WRITE | PROT_EXEC):
        return 0
    flags = _LEAF_BASE
    if prot & PROT_WRITE:
        flags |= L.PTE_W
    if not prot & PROT_EXEC:
        flags |= L.PTE_NX
    return flags


def _loses(old: int, new: int) -> bool:
    """Does replacing present leaf `old` by `new` take a frame or a right away?"""
    if not new & L.PTE_P or (old ^ new) & L.PTE_ADDR_MASK:
        return True
    return bool((old & ~new & (L.PTE_W | L.PTE_U)) or (new & ~old & L.PTE_NX))


class PageTables(AddressSpace):
    """x86-64 page tables for the user range [0, USER_TOP); root is the CR3 value."""

    def __init__(self, memfile: MemoryFile, frames: FrameAllocator, stub_pdpt_phys: int) -> None:
        self.memfile = memfile
        self.frames = frames
        self._q = memfile.view.cast("Q")
        self._pdpts: dict[int, int] = {}     # vaddr >> 39 -> PDPT phys
        self._pds: dict[int, int] = {}       # vaddr >> 30 -> PD phys
        self._pts: dict[int, int] = {}       # vaddr >> 21 -> PT phys
        self.root = frames.alloc_table()
        self._tables: list[int] = [self.root]
        self._q[self.root // 8 + L.STUB_PML4_INDEX] = stub_pdpt_phys | _TABLE_FLAGS

    # --- helpers ----------------------------------------------------------------
    @staticmethod
    def _check(vaddr: int, length: int) -> None:
        if vaddr < 0 or length < 0 or vaddr % PAGE or length % PAGE or vaddr + length > L.USER_TOP \
                or (length == 0 and vaddr >= L.USER_TOP):
            raise ValueError(f"bad user range {vaddr:#x}+{length:#x}")

    def _child(self, table: int, index: int, cache: dict[int, int], key: int) -> int:
        found = cache.get(key)
        if found is None:
            found = self.frames.alloc_table()
            self._tables.append(found)
            self._q[table // 8 + index] = found | _TABLE_FLAGS
            cache[key] = found
        return found

    def _pt_for(self, vaddr: int) -> int:
        """The PT page covering `vaddr`, creating the missing levels."""
        pt = self._pts.get(vaddr >> 21)
        if pt is not None:
            return pt
        pdpt = self._child(self.root, (vaddr >> 39) & _IDX, self._pdpts, vaddr >> 39)
        pd = self._child(pdpt, (vaddr >> 30) & _IDX, self._pds, vaddr >> 30)
        return self._child(pd, (vaddr >> 21) & _IDX, self._pts, vaddr >> 21)

    def _existing_chunks(self, vaddr: int, end: int):
        """Yield (pt phys, first qword index, count) for each PT page that exists in the range."""
        v = vaddr
        while v < end:
            if (v >> 39) not in self._pdpts:
                v = (v // _PDPT_SPAN + 1) * _PDPT_SPAN
                continue
            if (v >> 30) not in self._pds:
                v = (v // _PD_SPAN + 1) * _PD_SPAN
                continue
            stop = min((v // _PT_SPAN + 1) * _PT_SPAN, end)
            pt = self._pts.get(v >> 21)
            if pt is not None:
                yield pt // 8 + ((v >> 12) & _IDX), (stop - v) >> 12
            v = stop

    def _invalidate(self, stale: list[int]) -> None:
        """Drop KVM's shadow entries for the frames in `stale` (coalesced into runs)."""
        if not stale:
            return
        stale.sort()
        start = prev = stale[0]
        for f in stale[1:]:
            if f == prev + PAGE:
                prev = f
                continue
            if f != prev:
                self.memfile.invalidate(start, prev + PAGE - start)
                start = f
            prev = f
        self.memfile.invalidate(start, prev + PAGE - start)

    # --- AddressSpace -----------------------------------------------------------
    def map(self, vaddr: int, length: int, phys: int, prot: int) -> None:
        self._check(vaddr, length)
        if phys < 0 or phys % PAGE or phys + length > self.memfile.size:
            raise ValueError(f"bad frame range {phys:#x}+{length:#x}")
        flags = leaf_flags(prot)
        if not flags:
            self.unmap(vaddr, length)
            return
        q = self._q
        stale: list[int] = []
        v, end, entry = vaddr, vaddr + length, phys | flags
        while v < end:
            stop = min((v // _PT_SPAN + 1) * _PT_SPAN, end)
            a = self._pt_for(v) // 8 + ((v >> 12) & _IDX)
            n = (stop - v) >> 12
            new = array("Q", range(entry, entry + n * PAGE, PAGE))
            old = q[a:a + n]
            if old.tobytes() != _ZERO_BYTES[:n * 8]:
                stale.extend(o & L.PTE_ADDR_MASK for o, w in zip(old.tolist(), new)
                             if o & L.PTE_P and _loses(o, w))
            q[a:a + n] = new
            entry += n * PAGE
            v = stop
        self._invalidate(stale)

    def unmap(self, vaddr: int, length: int) -> None:
        self._check(vaddr, length)
        q = self._q
        stale: list[int] = []
        for a, n in self._existing_chunks(vaddr, vaddr + length):
            old = q[a:a + n]
            if old.tobytes() != _ZERO_BYTES[:n * 8]:
                stale.extend(o & L.PTE_ADDR_MASK for o in old.tolist() if o & L.PTE_P)
                q[a:a + n] = _ZERO_QS[:n]
        self._invalidate(stale)

    def protect(self, vaddr: int, length: int, prot: int) -> None:
        self._check(vaddr, length)
        flags = leaf_flags(prot)
        if not flags:
            self.unmap(vaddr, length)
            return
        q = self._q
        keep = ~(L.PTE_W | L.PTE_NX) & (1 << 64) - 1
        # The frame stays, so a present entry loses a right (_loses) exactly when it has a bit
        # of `lost` or the new flags add NX: one test per entry (fork write-protects 1000s).
        lost, nx = (L.PTE_W | L.PTE_U) & ~flags, flags & L.PTE_NX
        present, addr_mask = L.PTE_P, L.PTE_ADDR_MASK
        stale: list[int] = []
        for a, n in self._existing_chunks(vaddr, vaddr + length):
            old = q[a:a + n].tolist()
            new = [(o & keep) | flags if o & present else o for o in old]
            if new != old:
                stale.extend(o & addr_mask for o in old
                             if o & present and (o & lost or (nx and not o & nx)))
                q[a:a + n] = array("Q", new)
        self._invalidate(stale)

    def lookup(self, vaddr: int) -> tuple[int, int] | None:
        """(frame phys, PTE flag bits) of the leaf mapping `vaddr`, or None."""
        if not 0 <= vaddr < L.USER_TOP:
            raise ValueError(f"bad user address {vaddr:#x}")
        table = self.root
        for shift in (39, 30, 21, 12):
            e = self._q[table // 8 + ((vaddr >> shift) & _IDX)]
            if not e & L.PTE_P:
                return None
            table = e & L.PTE_ADDR_MASK
        return table, e & ~L.PTE_ADDR_MASK

    def release(self) -> None:
        for t in self._tables:
            self.frames.free_table(t)
        self._tables.clear()
        self._pdpts.clear()
        self._pds.clear()
        self._pts.clear()
        self._q.release()

    @property
    def table_frames(self) -> int:
        """How many table frames (PML4 included) this address space holds."""
        return len(self._tables)
