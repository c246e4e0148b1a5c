"""PageTables: one guest process's x86-64 4-level page tables, written in the MemoryFile.

Departures from DESIGN.md, forced by PVM's shadow paging (KVM does not see
the Sentry edit guest page tables):
- a present leaf that changes frame, loses rights or disappears gets its old
  frame invalidated (MemoryFile.invalidate -> KVM's mmu notifier drops the
  shadow entries); not-present -> present and rights upgrades need nothing;
- table pages (PDPT/PD/PT) are never freed or repointed while the address
  space lives; release() frees them all, and the FrameAllocator never reuses
  a former table frame as a table.
The stub's PML4 slot (layout.STUB_PML4_INDEX) points at the platform's PDPT.

2 MiB leaves (huge=True, the KVM platform): a map() that covers an aligned
2 MiB chunk with 2 MiB-aligned frames writes one PD entry instead of a PT.
KVM then shadows the chunk with one fault instead of one per 4 KiB (or 8).
The danger is a PD slot that changes kind or frame: KVM would reuse the
shadow page it made for the old content (docs/pvm.md, "2 MiB leaves").  So a
PD slot, within one PD frame, goes only from empty to a PT (for good) or from
empty to a leaf, then possibly back to empty ("burnt").  Anything else (a
burnt slot used again, a leaf split into a PT) first moves the process to a
fresh path: copies of the PD, its PDPT and the PML4 in frames that were never
tables, so KVM has no shadow state for them, and a new `root`.  Each vCPU
loads the new root at its next entry; until then the superseded copies stay
valid as a subset of the mappings: a leaf that goes away or loses a right is
removed or reduced in them too, and the PTs are the same pages.  After
tuning.HUGE_REBUILDS fresh paths a process makes no new leaves.
"""
from __future__ import annotations

from array import array

from kvmbox.abi.mman import PROT_EXEC, PROT_READ, PROT_WRITE
from kvmbox.guest_stub import layout as L
from kvmbox.mm import tuning
from kvmbox.mm.frames import FrameAllocator
from kvmbox.mm.memfile import MemoryFile
from kvmbox.platform.base import AddressSpace

PAGE = L.PAGE_SIZE
_TABLE_FLAGS = L.PTE_P | L.PTE_W | L.PTE_U         # non-leaf entries: the leaves decide
_LEAF_BASE = L.PTE_P | L.PTE_U | L.PTE_A | L.PTE_D
_IDX = L.PT_ENTRIES - 1
_ZERO_BYTES = bytes(PAGE)
_ZERO_QS = memoryview(array("Q", _ZERO_BYTES))
_PT_SPAN = L.HUGE_PAGE_SIZE                         # 2 MiB: one PT page, or one leaf
_PD_SPAN = _PT_SPAN * L.PT_ENTRIES                  # 1 GiB: one PD page
_PDPT_SPAN = _PD_SPAN * L.PT_ENTRIES                # 512 GiB: one PDPT page
_PS = L.PTE_PS                                      # a PD entry that is a 2 MiB leaf
_HUGE_MASK = L.PTE_ADDR_MASK & ~(_PT_SPAN - 1)      # frame bits of a 2 MiB leaf


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

    def __init__(self, memfile: MemoryFile, frames: FrameAllocator, stub_pdpt_phys: int, *,
                 huge: bool = False) -> None:
        self.memfile = memfile
        self.frames = frames
        self.huge = huge                     # may map aligned 2 MiB chunks with one PD entry
        self._q = memfile.view.cast("Q")
        self._pdpts: dict[int, int] = {}     # vaddr >> 39 -> PDPT phys
        self._pds: dict[int, int] = {}       # vaddr >> 30 -> PD phys
        self._pts: dict[int, int] = {}       # vaddr >> 21 -> PT phys
        self._leaves: dict[int, int] = {}    # vaddr >> 21 -> the 2 MiB leaf entry mapping it
        self._burnt: set[int] = set()        # vaddr >> 21: slots of the current PD that held a leaf
        self._old_pds: dict[int, list[int]] = {}   # vaddr >> 30 -> superseded copies of its PD
        self.rebuilds = 0                    # fresh paths made (see the module docstring)
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

    def _pd_for(self, vaddr: int) -> int:
        """The PD page covering `vaddr`, creating the missing levels."""
        pd = self._pds.get(vaddr >> 30)
        if pd is not None:
            return pd
        pdpt = self._child(self.root, (vaddr >> 39) & _IDX, self._pdpts, vaddr >> 39)
        return self._child(pdpt, (vaddr >> 30) & _IDX, self._pds, vaddr >> 30)

    def _pt_for(self, vaddr: int) -> int:
        """The PT page covering `vaddr`, creating the missing levels (a burnt PD slot first
        moves to a fresh path: it may not become a table in its PD)."""
        key = vaddr >> 21
        pt = self._pts.get(key)
        if pt is not None:
            return pt
        if key in self._burnt:
            self._rebuild(key >> 9)
        return self._child(self._pd_for(vaddr), key & _IDX, self._pts, key)

    # --- 2 MiB leaves -------------------------------------------------------------
    def _copy_table(self, src: int) -> int:
        t = self.frames.alloc_table()
        self._tables.append(t)
        self._q[t // 8:t // 8 + L.PT_ENTRIES] = self._q[src // 8:src // 8 + L.PT_ENTRIES]
        return t

    def _rebuild(self, key30: int) -> None:
        """Move the PD of `key30` (vaddr >> 30), its PDPT and the root to copies in fresh
        frames; the old PD is kept as a superseded copy (see the module docstring)."""
        key39 = key30 >> 9
        pd, pdpt = self._pds[key30], self._pdpts[key39]
        new_pd, new_pdpt, new_root = (self._copy_table(pd), self._copy_table(pdpt),
                                      self._copy_table(self.root))
        self._q[new_pdpt // 8 + (key30 & _IDX)] = new_pd | _TABLE_FLAGS
        self._q[new_root // 8 + (key39 & _IDX)] = new_pdpt | _TABLE_FLAGS
        self._old_pds.setdefault(key30, []).append(pd)
        self._pds[key30], self._pdpts[key39] = new_pd, new_pdpt
        self._burnt = {k for k in self._burnt if k >> 9 != key30}
        self.rebuilds += 1
        self.root = new_root                 # last: each vCPU loads it at its next entry

    def _in_old_copies(self, key: int, value: int) -> None:
        """Write `value` to slot `key` of the superseded PD copies that still map it."""
        slot = key & _IDX
        for old in self._old_pds.get(key >> 9, ()):
            if self._q[old // 8 + slot] & L.PTE_P:
                self._q[old // 8 + slot] = value

    def _install_leaf(self, key: int, entry: int) -> None:
        if key in self._burnt:
            self._rebuild(key >> 9)
        self._q[self._pd_for(key << 21) // 8 + (key & _IDX)] = entry
        self._leaves[key] = entry

    def _clear_leaf(self, key: int) -> None:
        entry = self._leaves.pop(key)
        self._q[self._pds[key >> 9] // 8 + (key & _IDX)] = 0
        self._in_old_copies(key, 0)
        self._burnt.add(key)
        self.memfile.invalidate(entry & _HUGE_MASK, _PT_SPAN)

    def _reflag_leaf(self, key: int, flags: int) -> None:
        old = self._leaves[key]
        new = (old & _HUGE_MASK) | flags | _PS
        if new == old:
            return
        self._q[self._pds[key >> 9] // 8 + (key & _IDX)] = new
        self._leaves[key] = new
        if _loses(old & ~_PS, new & ~_PS):
            self._in_old_copies(key, new)
            self.memfile.invalidate(old & _HUGE_MASK, _PT_SPAN)

    def _split(self, key: int) -> None:
        """Replace the leaf at `key` by a PT of 512 entries mapping the same frames (in a
        fresh PD); the superseded copies lose the leaf."""
        entry = self._leaves.pop(key)
        first = (entry & _HUGE_MASK) | (entry & ~L.PTE_ADDR_MASK & ~_PS)
        pt = self.frames.alloc_table()
        self._tables.append(pt)
        self._q[pt // 8:pt // 8 + L.PT_ENTRIES] = array("Q", range(first, first + _PT_SPAN, PAGE))
        self._rebuild(key >> 9)
        self._q[self._pds[key >> 9] // 8 + (key & _IDX)] = pt | _TABLE_FLAGS
        self._pts[key] = pt
        self._in_old_copies(key, 0)
        self.memfile.invalidate(entry & _HUGE_MASK, _PT_SPAN)

    def _leaf_keys(self, vaddr: int, end: int) -> list[int]:
        lo, hi = vaddr >> 21, (end - 1) >> 21
        if hi - lo < len(self._leaves):
            return [k for k in range(lo, hi + 1) if k in self._leaves]
        return sorted(k for k in self._leaves if lo <= k <= hi)

    def _leaves_before(self, vaddr: int, end: int, phys: int | None, flags: int) -> None:
        """The leaves [vaddr, end) overlaps, before map (phys given), protect (phys None,
        flags nonzero) or unmap (flags 0): a leaf wholly covered is changed as a whole; one
        partly covered is split, unless a map leaves its content as it is."""
        for key in self._leaf_keys(vaddr, end):
            cs = key << 21
            lo, hi = max(cs, vaddr), min(cs + _PT_SPAN, end)
            entry = self._leaves[key]
            whole = lo == cs and hi == cs + _PT_SPAN
            same_frames = phys is None or (entry & _HUGE_MASK) + lo - cs == phys + lo - vaddr
            if not flags:
                if whole:
                    self._clear_leaf(key)
                else:
                    self._split(key)
            elif whole and same_frames:
                self._reflag_leaf(key, flags)
            elif whole:
                self._clear_leaf(key)           # map() puts a new leaf or a PT there
            elif not (same_frames and entry & ~L.PTE_ADDR_MASK & ~_PS == flags):
                self._split(key)                # (a part left as it is needs no split)

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
        if self._leaves:
            self._leaves_before(vaddr, end, phys, flags)
        huge = self.huge and self.rebuilds < tuning.HUGE_REBUILDS
        while v < end:
            stop = min((v // _PT_SPAN + 1) * _PT_SPAN, end)
            key = v >> 21
            if key in self._leaves:             # already what was asked (_leaves_before)
                entry += stop - v
                v = stop
                continue
            if huge and stop - v == _PT_SPAN and not entry & L.PTE_ADDR_MASK & (_PT_SPAN - 1) \
                    and key not in self._pts:
                self._install_leaf(key, entry | _PS)
                entry += _PT_SPAN
                v = stop
                continue
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
        if self._leaves and length:
            self._leaves_before(vaddr, vaddr + length, None, 0)
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
        if self._leaves and length:
            self._leaves_before(vaddr, vaddr + length, None, flags)
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
            if shift == 21 and e & _PS:
                return (e & _HUGE_MASK) + (vaddr & (_PT_SPAN - PAGE)), e & ~L.PTE_ADDR_MASK & ~_PS
            table = e & L.PTE_ADDR_MASK
        return table, e & ~L.PTE_ADDR_MASK

    def release(self) -> None:
        for t in self._tables:
            self.frames.free_table(t)
        self._tables.clear()
        self._pdpts.clear()
        self._pds.clear()
        self._pts.clear()
        self._leaves.clear()
        self._old_pds.clear()
        self._q.release()

    @property
    def table_frames(self) -> int:
        """How many table frames (PML4 included) this address space holds."""
        return len(self._tables)
