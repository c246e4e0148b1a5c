"""Backing and VmaSet: translation, holes, split/merge, gap search."""
from __future__ import annotations

from kvmbox.abi import mman
from kvmbox.mm.vma import Backing, Vma, VmaSet

PAGE = 4096
PRIV = mman.MAP_PRIVATE | mman.MAP_ANONYMOUS
RW = 3


def test_backing_lookup_and_runs_with_holes():
    b = Backing()
    b.add(2, 0x100000, 3)
    b.add(10, 0x200000, 1)
    assert b.lookup(1) is None
    assert b.lookup(2) == 0x100000 and b.lookup(4) == 0x102000
    assert b.lookup(5) is None and b.lookup(10) == 0x200000
    assert list(b.runs(0, 12)) == [(0, None, 2), (2, 0x100000, 3), (5, None, 5),
                                   (10, 0x200000, 1), (11, None, 1)]
    assert list(b.runs(3, 4)) == [(3, 0x101000, 1)]


def test_backing_add_merges_contiguous():
    b = Backing()
    b.add(0, 0x100000, 2)
    b.add(2, 0x102000, 2)
    assert b.extents == [(0, 0x100000, 4)]
    b.add(4, 0x300000, 1)                     # not physically contiguous: separate extent
    assert len(b.extents) == 2


def test_backing_take_cuts_extents():
    b = Backing()
    b.add(0, 0x100000, 10)
    taken = b.take(3, 5)
    assert taken == [(3, 0x103000, 2)]
    assert b.lookup(3) is None and b.lookup(2) == 0x102000 and b.lookup(5) == 0x105000
    assert b.pages == 8


def test_private_split_moves_frames():
    v = Vma(0x10000, 0x20000, RW, PRIV)
    v.backing.add(0, 0x100000, 16)
    upper = v.split(0x18000)
    assert (v.start, v.end, upper.start, upper.end) == (0x10000, 0x18000, 0x18000, 0x20000)
    assert upper.backing is not v.backing
    assert upper.translate(0x18000) == 0x108000 and upper.translate(0x1F000) == 0x10F000
    assert v.translate(0x17000) == 0x107000
    assert v.backing.pages == 8 and upper.backing.pages == 8


def test_shared_split_shares_backing():
    b = Backing(shared=True)
    b.add(0, 0x100000, 4)
    v = Vma(0x10000, 0x14000, RW, mman.MAP_SHARED | mman.MAP_ANONYMOUS, backing=b)
    upper = v.split(0x12000)
    assert upper.backing is b and b.refs == 2
    assert upper.translate(0x13000) == 0x103000


def test_vmaset_find_overlap_free_covered():
    s = VmaSet()
    s.insert(Vma(0x30000, 0x40000, RW, PRIV))
    s.insert(Vma(0x10000, 0x20000, RW, PRIV))
    assert [v.start for v in s] == [0x10000, 0x30000]
    assert s.find(0x1FFFF).start == 0x10000 and s.find(0x20000) is None
    assert [v.start for v in s.overlapping(0x1F000, 0x31000)] == [0x10000, 0x30000]
    assert s.is_free(0x20000, 0x30000) and not s.is_free(0x20000, 0x30001)
    assert not s.covered(0x10000, 0x40000) and s.covered(0x31000, 0x32000)
    assert s.first_above(0x20000).start == 0x30000
    assert s.last_below(0x30000).start == 0x10000


def test_split_at_and_merge_around():
    s = VmaSet()
    v = Vma(0x10000, 0x20000, RW, PRIV)
    v.backing.add(0, 0x100000, 16)
    s.insert(v)
    s.split_at(0x14000)
    s.split_at(0x18000)
    assert [(x.start, x.end) for x in s] == [(0x10000, 0x14000), (0x14000, 0x18000), (0x18000, 0x20000)]
    mid = s.find(0x15000)
    merged = s.merge_around(mid)
    assert len(s) == 1 and (merged.start, merged.end) == (0x10000, 0x20000)
    assert all(merged.translate(0x10000 + i * PAGE) == 0x100000 + i * PAGE for i in range(16))


def test_no_merge_when_attributes_differ():
    s = VmaSet()
    s.insert(Vma(0x10000, 0x20000, RW, PRIV))
    s.insert(Vma(0x20000, 0x30000, 1, PRIV))
    s.insert(Vma(0x30000, 0x40000, 1, PRIV, "[heap]"))
    for v in list(s):
        s.merge_around(v)
    assert len(s) == 3


def test_find_gap_top_down():
    s = VmaSet()
    s.insert(Vma(0x80000, 0x90000, RW, PRIV))
    s.insert(Vma(0x60000, 0x70000, RW, PRIV))
    assert s.find_gap(0x10000, 0x10000, 0x100000) == 0xF0000
    assert s.find_gap(0x10000, 0x10000, 0x90000) == 0x70000       # the hole between the two
    assert s.find_gap(0x20000, 0x10000, 0x90000) == 0x40000
    assert s.find_gap(0x60000, 0x10000, 0x90000) is None
    assert s.find_gap(0x50000, 0x10000, 0x90000) == 0x10000
    assert s.find_gap(0x8000, 0x10000, 0x88000) == 0x78000        # ceiling inside a Vma


def _gap_by_scan(s: VmaSet, length: int, floor: int, ceiling: int) -> int | None:
    """The highest fitting start by looking at every gap (what find_gap must agree with)."""
    vmas = sorted(s, key=lambda v: v.start)
    edges = [(floor, floor)] + [(v.start, v.end) for v in vmas] + [(ceiling, ceiling)]
    best = None
    for (_, lo), (hi, _) in zip(edges, edges[1:]):
        lo, hi = max(lo, floor), min(hi, ceiling)
        if hi - lo >= length:
            best = hi - length
    return best


def test_find_gap_remembers_where_it_stopped_and_stays_exact():
    """Random top-down mmaps, fixed mappings and munmaps: the remembered search point
    never changes the answer a full scan gives."""
    import random
    rng = random.Random(7)
    s, floor, ceiling = VmaSet(), 0x10000, 0x10000 + 4096 * PAGE
    for _ in range(3000):
        op = rng.random()
        if op < 0.55:
            length = rng.choice([1, 1, 2, 3, 8, 40]) * PAGE
            want = _gap_by_scan(s, length, floor, ceiling)
            assert s.find_gap(length, floor, ceiling) == want
            if want is not None:
                s.insert(Vma(want, want + length, RW, PRIV))
        elif op < 0.65:
            start = floor + rng.randrange(4096) * PAGE
            end = min(start + rng.choice([1, 4, 16]) * PAGE, ceiling)
            if s.is_free(start, end):
                s.insert(Vma(start, end, RW, PRIV))
        elif len(s):
            s.remove(rng.choice(list(s)))


def test_find_gap_many_mappings_is_fast():
    """20,000 one-page mappings placed top-down: each search starts where the last ended."""
    import time
    s = VmaSet()
    t0 = time.perf_counter()
    for _ in range(20_000):
        a = s.find_gap(PAGE, 0x10000, 1 << 40)
        s.insert(Vma(a, a + PAGE, RW, PRIV))
    assert time.perf_counter() - t0 < 5          # O(n) each would be ~10^8 steps
