"""PageTables with 2 MiB leaves (huge=True): when a leaf is used, how a partial unmap,
mprotect or remap splits it, and the rules that keep KVM's shadow pages honest: a PD
slot never changes kind or frame in one PD frame (a fresh path instead), and every
superseded root still maps a subset of the current mappings, with no more rights."""
from __future__ import annotations

import random
import struct

import pytest

from kvmbox.abi.mman import PROT_EXEC, PROT_NONE, PROT_READ, PROT_WRITE
from kvmbox.mm.frames import FrameAllocator
from kvmbox.mm.memfile import MemoryFile
from kvmbox.mm.pagetables import PageTables, leaf_flags

PAGE = 4096
HUGE = 2 << 20
MIB = 1 << 20
STUB_PDPT = 0x120000
ADDR = 0x000F_FFFF_FFFF_F000
P, W, PS, NX = 1, 2, 0x80, 1 << 63
BASE = 0x4000_0000            # 1 GiB: one PD covers [BASE, BASE + 1 GiB)


def q(mf, table, index):
    return struct.unpack_from("<Q", mf.view, table + 8 * index)[0]


def walk(mf, root, va):
    """(frame, flags) of the leaf mapping va in the tables under `root`, or None."""
    table = root
    for shift in (39, 30, 21, 12):
        e = q(mf, table, (va >> shift) & 511)
        if not e & P:
            return None
        if shift == 21 and e & PS:
            return (e & ADDR & ~(HUGE - 1)) + (va & (HUGE - PAGE)), e & ~ADDR & ~PS
        table = e & ADDR
    return e & ADDR, e & ~ADDR


class Spy:
    def __init__(self, mf):
        self.calls = []
        real = mf.invalidate

        def spy(off, length):
            self.calls.append((off, length))
            real(off, length)
        mf.invalidate = spy


@pytest.fixture
def env():
    mf = MemoryFile(96 * MIB)
    fa = FrameAllocator(mf)
    pt = PageTables(mf, fa, STUB_PDPT, huge=True)
    yield mf, fa, pt
    mf.close()


def huge_frames(fa, n=1):
    (phys, _), = fa.alloc(n * HUGE // PAGE, 0)
    assert phys % HUGE == 0
    return phys


def pd_entry(mf, pt, va):
    pdpt = q(mf, pt.root, (va >> 39) & 511) & ADDR
    pd = q(mf, pdpt, (va >> 30) & 511) & ADDR
    return q(mf, pd, (va >> 21) & 511)


def test_an_aligned_chunk_is_one_leaf_and_a_misaligned_one_is_not(env):
    mf, fa, pt = env
    phys = huge_frames(fa, 2)
    pt.map(BASE, 2 * HUGE, phys, PROT_READ | PROT_WRITE)
    assert pd_entry(mf, pt, BASE) & PS and pd_entry(mf, pt, BASE + HUGE) & PS
    assert pt.table_frames == 3                      # PML4, PDPT, PD: no PT
    assert walk(mf, pt.root, BASE + HUGE + 5 * PAGE) == (phys + HUGE + 5 * PAGE, leaf_flags(PROT_READ | PROT_WRITE))
    assert pt.lookup(BASE + 7 * PAGE) == (phys + 7 * PAGE, leaf_flags(PROT_READ | PROT_WRITE))
    pt.map(BASE + 4 * HUGE, HUGE, phys + PAGE, PROT_READ)          # frames not 2 MiB aligned
    assert not pd_entry(mf, pt, BASE + 4 * HUGE) & PS
    pt.map(BASE + 6 * HUGE + PAGE, HUGE - PAGE, phys, PROT_READ)    # not a whole chunk
    assert not pd_entry(mf, pt, BASE + 6 * HUGE) & PS


def test_huge_off_maps_4k_only():
    mf = MemoryFile(64 * MIB)
    try:
        fa = FrameAllocator(mf)
        pt = PageTables(mf, fa, STUB_PDPT)
        pt.map(BASE, HUGE, huge_frames(fa), PROT_READ)
        assert not pd_entry(mf, pt, BASE) & PS
    finally:
        mf.close()


def test_partial_unmap_splits_into_a_fresh_path(env):
    mf, fa, pt = env
    spy = Spy(mf)
    phys = huge_frames(fa)
    pt.map(BASE, HUGE, phys, PROT_READ | PROT_WRITE)
    old_root = pt.root
    pt.unmap(BASE + 3 * PAGE, PAGE)
    assert pt.root != old_root and pt.rebuilds == 1
    assert not pd_entry(mf, pt, BASE) & PS
    assert walk(mf, pt.root, BASE + 3 * PAGE) is None
    assert walk(mf, pt.root, BASE + 4 * PAGE)[0] == phys + 4 * PAGE
    assert walk(mf, old_root, BASE + 4 * PAGE) is None, "the superseded root lost the leaf"
    assert (phys, HUGE) in spy.calls


def test_whole_unmap_burns_the_slot_and_reuse_takes_a_fresh_path(env):
    mf, fa, pt = env
    phys = huge_frames(fa, 2)
    pt.map(BASE, HUGE, phys, PROT_READ | PROT_WRITE)
    root = pt.root
    pt.unmap(BASE, HUGE)
    assert pt.root == root and pt.rebuilds == 0      # leaf -> empty: in place
    assert walk(mf, root, BASE) is None
    pt.map(BASE, HUGE, phys + HUGE, PROT_READ)       # the burnt slot again: fresh path
    assert pt.rebuilds == 1 and pt.root != root
    assert walk(mf, pt.root, BASE)[0] == phys + HUGE
    assert walk(mf, root, BASE) is None


def test_burnt_slot_taking_a_page_table_also_takes_a_fresh_path(env):
    mf, fa, pt = env
    phys = huge_frames(fa)
    pt.map(BASE, HUGE, phys, PROT_READ)
    pt.unmap(BASE, HUGE)
    (small, _), = fa.alloc(1)
    pt.map(BASE + PAGE, PAGE, small, PROT_READ)
    assert pt.rebuilds == 1 and walk(mf, pt.root, BASE + PAGE)[0] == small


def test_protect_whole_leaf_in_place_and_old_copies_lose_the_right(env):
    mf, fa, pt = env
    spy = Spy(mf)
    phys = huge_frames(fa, 2)
    pt.map(BASE, 2 * HUGE, phys, PROT_READ | PROT_WRITE)
    pt.unmap(BASE + PAGE, PAGE)                     # split the first: a fresh path
    old_root = pt.root
    pt.unmap(BASE + HUGE, HUGE)
    pt.map(BASE + HUGE, HUGE, phys + HUGE, PROT_READ | PROT_WRITE)   # burnt: another path
    assert pt.root != old_root
    spy.calls.clear()
    pt.protect(BASE + HUGE, HUGE, PROT_READ)
    assert pd_entry(mf, pt, BASE + HUGE) & PS and not pd_entry(mf, pt, BASE + HUGE) & W
    assert spy.calls == [(phys + HUGE, HUGE)]
    spy.calls.clear()
    pt.protect(BASE + HUGE, HUGE, PROT_READ | PROT_WRITE | PROT_EXEC)   # upgrade: no invalidation
    assert spy.calls == []


def test_a_map_that_repeats_the_leaf_does_not_split_it(env):
    mf, fa, pt = env
    phys = huge_frames(fa)
    pt.map(BASE, HUGE, phys, PROT_READ | PROT_WRITE)
    pt.map(BASE + 9 * PAGE, PAGE, phys + 9 * PAGE, PROT_READ | PROT_WRITE)
    pt.protect(BASE, 4 * PAGE, PROT_READ | PROT_WRITE)
    assert pt.rebuilds == 0 and pd_entry(mf, pt, BASE) & PS


def test_release_frees_every_copy(env):
    mf, fa, pt = env
    phys = huge_frames(fa)
    base = fa.used_pages
    pt.map(BASE, HUGE, phys, PROT_READ)
    pt.unmap(BASE + PAGE, PAGE)
    tables = pt.table_frames
    assert tables == 3 + 3 + 1                       # first path, fresh path, the split's PT
    pt.release()
    assert fa.used_pages == base - 1                 # the root is freed too


def test_no_new_leaves_after_the_rebuild_limit(env, monkeypatch):
    from kvmbox.mm import tuning
    monkeypatch.setattr(tuning, "HUGE_REBUILDS", 2)
    mf, fa, pt = env
    phys = huge_frames(fa)
    for _ in range(3):
        pt.map(BASE, HUGE, phys, PROT_READ)
        pt.unmap(BASE, HUGE)
    assert pt.rebuilds == 2
    pt.map(BASE, HUGE, phys, PROT_READ)
    assert not pd_entry(mf, pt, BASE) & PS and walk(mf, pt.root, BASE)[0] == phys


def _check_slot_history(mf, root, seen):
    """What KVM's shadow MMU needs (module docstring of kvmbox/mm/pagetables.py), checked
    on the tables reachable from `root`: in a given table frame, a non-leaf entry never
    changes once set; a 2 MiB leaf keeps its frame, and once cleared its slot stays empty."""
    pdpt = q(mf, root, (BASE >> 39) & 511) & ADDR
    pd = q(mf, pdpt, (BASE >> 30) & 511) & ADDR
    for frame, slot, value in ((root, (BASE >> 39) & 511, q(mf, root, (BASE >> 39) & 511)),
                               (pdpt, (BASE >> 30) & 511, q(mf, pdpt, (BASE >> 30) & 511)),
                               *((pd, i, q(mf, pd, i)) for i in range(512))):
        hist = seen.setdefault((frame, slot), [])
        if not hist or hist[-1] != value:
            hist.append(value)
        first = next((v for v in hist if v), None)
        if first is None:
            continue
        if not first & PS:
            assert hist[-1] == first and hist[0] in (0, first) and len(hist) <= 2, \
                f"table entry {frame:#x}[{slot}] changed: {[hex(v) for v in hist]}"
            continue
        frames = {v & ADDR for v in hist if v}
        assert len(frames) == 1, f"leaf slot {frame:#x}[{slot}] changed frame"
        cleared = [i for i, v in enumerate(hist) if i > hist.index(first) and not v]
        assert not cleared or all(not v for v in hist[cleared[0]:]), \
            f"leaf slot {frame:#x}[{slot}] used again after it was cleared"


@pytest.mark.parametrize("seed", range(12))
def test_random_operations_against_a_model(seed):
    """Random map/unmap/protect over 16 MiB with 2 MiB-aligned and unaligned frames: the
    current root maps exactly the model; every root ever current maps a subset of it with
    no more rights (what a vCPU that has not reloaded CR3 yet may still use)."""
    rng = random.Random(seed)
    mf = MemoryFile(128 * MIB)
    try:
        fa = FrameAllocator(mf)
        pt = PageTables(mf, fa, STUB_PDPT, huge=True)
        pool = huge_frames(fa, 16)
        model: dict[int, tuple[int, int]] = {}
        roots = {pt.root}
        seen: dict[tuple[int, int], list[int]] = {}
        span = 16 * HUGE
        prots = [PROT_READ, PROT_READ | PROT_WRITE, PROT_READ | PROT_EXEC, PROT_NONE]
        for _ in range(150):
            op = rng.choice(["map", "map", "unmap", "protect"])
            if rng.random() < 0.75:
                start = rng.randrange(0, span // HUGE) * HUGE
                length = rng.randrange(1, 3) * HUGE
            else:
                start = rng.randrange(0, span // PAGE) * PAGE
                length = rng.randrange(1, 600) * PAGE
            length = min(length, span - start)
            va = BASE + start
            prot = rng.choice(prots)
            flags = leaf_flags(prot)
            if op == "map":
                shift = 0 if rng.random() < 0.7 else rng.randrange(1, 512) * PAGE
                phys = pool + (start + shift) % (8 * HUGE)
                length = min(length, pool + 16 * HUGE - phys)
                pt.map(va, length, phys, prot)
                for i in range(length // PAGE):
                    if flags:
                        model[va + i * PAGE] = (phys + i * PAGE, flags)
                    else:
                        model.pop(va + i * PAGE, None)
            elif op == "unmap":
                pt.unmap(va, length)
                for i in range(length // PAGE):
                    model.pop(va + i * PAGE, None)
            else:
                pt.protect(va, length, prot)
                for i in range(length // PAGE):
                    a = va + i * PAGE
                    if a in model:
                        if flags:
                            model[a] = (model[a][0], flags)
                        else:
                            del model[a]
            roots.add(pt.root)
            _check_slot_history(mf, pt.root, seen)
        for i in range(span // PAGE):
            a = BASE + i * PAGE
            assert walk(mf, pt.root, a) == model.get(a), hex(a)
            assert pt.lookup(a) == model.get(a), hex(a)
            for r in roots - {pt.root}:
                got = walk(mf, r, a)
                if got is not None:
                    want = model.get(a)
                    assert want is not None and got[0] == want[0], f"stale mapping at {a:#x}"
                    assert (not got[1] & W or want[1] & W) and (got[1] & NX or not want[1] & NX), \
                        f"a superseded root has more rights at {a:#x}"
        assert pt.rebuilds > 0, "the random walk should exercise fresh paths"
    finally:
        mf.close()
