"""PageTables: entries walked from the MemoryFile bytes: frames, flags, NX, user bit, stub slot, invalidation."""
from __future__ import annotations

import struct
import time

import pytest

from kvmbox.abi.mman import PROT_EXEC, PROT_NONE, PROT_READ, PROT_WRITE
from kvmbox.guest_stub import layout
from kvmbox.mm.frames import FrameAllocator
from kvmbox.mm.memfile import MemoryFile
from kvmbox.mm.pagetables import PageTables

PAGE = 4096
MIB = 1 << 20
STUB_PDPT = 0x120000
ADDR = 0x000F_FFFF_FFFF_F000
P, W, U, A, D, NX = 1, 2, 4, 0x20, 0x40, 1 << 63


def entry(mf: MemoryFile, table: int, index: int) -> int:
    return struct.unpack_from("<Q", mf.view, table + 8 * index)[0]


def walk(mf: MemoryFile, root: int, vaddr: int) -> int | None:
    """The leaf PTE for vaddr, read straight from guest RAM (None if a level is missing)."""
    table = root
    for level, shift in enumerate((39, 30, 21, 12)):
        e = entry(mf, table, (vaddr >> shift) & 511)
        if not e & P:
            return None if level < 3 else e or None
        if level < 3:
            assert e & (P | W | U) == P | W | U, "non-leaf entries must be P|W|U"
            assert not e & NX and not e & 0x80, "no NX / no large pages above the leaves"
            table = e & ADDR
    return e


class Spy:
    """Records MemoryFile.invalidate calls (and still performs them)."""

    def __init__(self, mf: MemoryFile) -> None:
        self.calls: list[tuple[int, int]] = []
        real = mf.invalidate

        def spy(off: int, length: int) -> None:
            self.calls.append((off, length))
            real(off, length)
        mf.invalidate = spy  # type: ignore[method-assign]

    def frames(self) -> set[int]:
        return {off + i * PAGE for off, n in self.calls for i in range(n // PAGE)}


@pytest.fixture
def env():
    mf = MemoryFile(64 * MIB)
    fa = FrameAllocator(mf)
    pt = PageTables(mf, fa, STUB_PDPT)
    yield mf, fa, pt
    mf.close()


def test_root_has_only_the_stub_slot(env):
    mf, fa, pt = env
    assert fa.used_pages == 1
    entries = [entry(mf, pt.root, i) for i in range(512)]
    assert entries[layout.STUB_PML4_INDEX] == STUB_PDPT | P | W | U
    assert all(e == 0 for i, e in enumerate(entries) if i != layout.STUB_PML4_INDEX)


def test_map_rw_entries(env):
    mf, fa, pt = env
    (phys, _), = fa.alloc(4)
    pt.map(0x400000, 4 * PAGE, phys, PROT_READ | PROT_WRITE)
    for i in range(4):
        e = walk(mf, pt.root, 0x400000 + i * PAGE)
        assert e == phys + i * PAGE | P | W | U | A | D | NX
    assert walk(mf, pt.root, 0x400000 + 4 * PAGE) is None
    assert walk(mf, pt.root, 0x400000 - PAGE) is None
    assert pt.lookup(0x401000) == (phys + PAGE, P | W | U | A | D | NX)
    assert pt.lookup(0x500000) is None


@pytest.mark.parametrize("prot,bits", [
    (PROT_READ, P | U | A | D | NX),
    (PROT_READ | PROT_EXEC, P | U | A | D),
    (PROT_READ | PROT_WRITE | PROT_EXEC, P | W | U | A | D),
    (PROT_WRITE, P | W | U | A | D | NX),
])
def test_prot_bits(env, prot, bits):
    mf, fa, pt = env
    (phys, _), = fa.alloc(1)
    pt.map(0x10000, PAGE, phys, prot)
    assert walk(mf, pt.root, 0x10000) == phys | bits


def test_prot_none_maps_nothing(env):
    mf, fa, pt = env
    (phys, _), = fa.alloc(1)
    pt.map(0x10000, PAGE, phys, PROT_NONE)
    assert walk(mf, pt.root, 0x10000) is None


def test_map_across_table_boundaries(env):
    mf, fa, pt = env
    vaddr = (1 << 39) - 3 * PAGE                  # crosses PT, PD and PDPT boundaries
    (phys, _), = fa.alloc(6)
    pt.map(vaddr, 6 * PAGE, phys, PROT_READ)
    for i in range(6):
        assert walk(mf, pt.root, vaddr + i * PAGE) & ADDR == phys + i * PAGE
    assert entry(mf, pt.root, 0) & P and entry(mf, pt.root, 1) & P
    assert entry(mf, pt.root, layout.STUB_PML4_INDEX) == STUB_PDPT | P | W | U


def test_unmap_clears_and_invalidates(env):
    mf, fa, pt = env
    spy = Spy(mf)
    (phys, _), = fa.alloc(8)
    pt.map(0x200000, 8 * PAGE, phys, PROT_READ | PROT_WRITE)
    assert spy.calls == []                 # not-present -> present: nothing to do
    pt.unmap(0x200000 + 2 * PAGE, 3 * PAGE)
    assert spy.frames() == {phys + i * PAGE for i in (2, 3, 4)}
    assert [walk(mf, pt.root, 0x200000 + i * PAGE) is None for i in range(8)] == \
        [False, False, True, True, True, False, False, False]


def test_remap_to_other_frame_invalidates_old_frame(env):
    mf, fa, pt = env
    spy = Spy(mf)
    (a, _), = fa.alloc(2)
    (b, _), = fa.alloc(2)
    pt.map(0x300000, 2 * PAGE, a, PROT_READ)
    pt.map(0x300000 + PAGE, PAGE, b, PROT_READ)
    assert spy.frames() == {a + PAGE}
    assert walk(mf, pt.root, 0x300000 + PAGE) & ADDR == b
    spy.calls.clear()
    pt.map(0x300000, PAGE, a, PROT_READ)          # identical entry: nothing changes
    assert spy.calls == []


def test_protect_invalidates_only_when_rights_shrink(env):
    mf, fa, pt = env
    spy = Spy(mf)
    (phys, _), = fa.alloc(2)
    pt.map(0x400000, 2 * PAGE, phys, PROT_READ)
    pt.protect(0x400000, 2 * PAGE, PROT_READ | PROT_WRITE)     # upgrade
    assert spy.calls == []
    assert walk(mf, pt.root, 0x400000) == phys | P | W | U | A | D | NX
    pt.protect(0x400000, PAGE, PROT_READ)                       # downgrade W
    assert spy.frames() == {phys}
    assert walk(mf, pt.root, 0x400000) == phys | P | U | A | D | NX
    spy.calls.clear()
    pt.protect(0x400000 + PAGE, PAGE, PROT_READ | PROT_WRITE | PROT_EXEC)   # NX removed: upgrade
    assert spy.calls == []
    pt.protect(0x400000 + PAGE, PAGE, PROT_NONE)
    assert spy.frames() == {phys + PAGE}
    assert walk(mf, pt.root, 0x400000 + PAGE) is None
    assert pt.lookup(0x400000) is not None


def test_protect_skips_unmapped(env):
    mf, fa, pt = env
    pt.protect(0x1000_0000, 64 * MIB, PROT_READ)
    assert pt.table_frames == 1                  # no tables created for nothing


@pytest.mark.parametrize("vaddr,length", [
    (0x1001, PAGE), (0x1000, 100), (layout.USER_TOP, PAGE), (layout.USER_TOP - PAGE, 2 * PAGE),
    (-PAGE, PAGE), (0xFFFF_8000_0000_0000, PAGE),
])
def test_bad_ranges_refused(env, vaddr, length):
    mf, fa, pt = env
    (phys, _), = fa.alloc(2)
    with pytest.raises(ValueError):
        pt.map(vaddr, length, phys, PROT_READ)
    with pytest.raises(ValueError):
        pt.unmap(vaddr, length)


def test_top_user_page_ok_and_stub_slot_untouched(env):
    mf, fa, pt = env
    (phys, _), = fa.alloc(1)
    pt.map(layout.USER_TOP - PAGE, PAGE, phys, PROT_READ)
    assert walk(mf, pt.root, layout.USER_TOP - PAGE) & ADDR == phys
    assert entry(mf, pt.root, layout.STUB_PML4_INDEX) == STUB_PDPT | P | W | U


def test_release_returns_table_frames(env):
    mf, fa, pt = env
    base = fa.used_pages
    (phys, _), = fa.alloc(1)
    for i in range(5):
        pt.map(i << 39 | 0x10000, PAGE, phys, PROT_READ)
    tables = pt.table_frames
    assert tables == 1 + 5 * 3
    assert fa.used_pages == base + 1 + tables - 1
    pt.release()
    assert fa.used_pages == 1                    # only the data frame remains
    fa.free(phys, 1)
    assert fa.used_pages == 0


def test_map_256mib_is_fast(env):
    mf = MemoryFile(320 * MIB)
    try:
        fa = FrameAllocator(mf)
        pt = PageTables(mf, fa, STUB_PDPT)
        (phys, n), = fa.alloc(256 * MIB // PAGE)
        t0 = time.perf_counter()
        pt.map(0x1000_0000, 256 * MIB, phys, PROT_READ | PROT_WRITE)
        pt.unmap(0x1000_0000, 256 * MIB)
        assert time.perf_counter() - t0 < 1.0
        assert walk(mf, pt.root, 0x1000_0000) is None
        pt.release()
    finally:
        mf.close()
