"""FrameAllocator: extents, coalescing, accounting, punching, table frames never recycled as tables."""
from __future__ import annotations

import errno

import pytest

from kvmbox.errors import SyscallError
from kvmbox.guest_stub import layout
from kvmbox.mm import tuning
from kvmbox.mm.frames import FrameAllocator
from kvmbox.mm.memfile import MemoryFile

PAGE = layout.PAGE_SIZE
MIB = 1 << 20


@pytest.fixture
def mf():
    m = MemoryFile(16 * MIB)
    yield m
    m.close()


def test_initial_accounting(mf):
    fa = FrameAllocator(mf, table_reserve=MIB)
    assert fa.used_pages == 0
    assert fa.free_pages == (16 * MIB - layout.STUB_RESERVED) // PAGE


def test_alloc_is_contiguous_above_stub(mf):
    fa = FrameAllocator(mf, table_reserve=MIB)
    ext = fa.alloc(10)
    assert ext == [(layout.STUB_RESERVED, 10)]
    assert fa.used_pages == 10
    (p2, n2), = fa.alloc(5)
    assert p2 == layout.STUB_RESERVED + 10 * PAGE and n2 == 5


def test_free_punches_and_coalesces(mf):
    fa = FrameAllocator(mf, table_reserve=MIB)
    (p, n), = fa.alloc(30)
    mf.write(p, b"dirty" * 100)
    fa.free(p + 10 * PAGE, 10)
    fa.free(p, 10)
    fa.free(p + 20 * PAGE, 10)
    assert fa.used_pages == 0
    assert mf.read(p, 30 * PAGE) == bytes(30 * PAGE)
    assert fa.alloc(30) == [(p, 30)]            # coalesced back into one extent


def test_fragmented_alloc_gathers_extents(mf):
    fa = FrameAllocator(mf, low=layout.STUB_RESERVED, table_reserve=16 * MIB - layout.STUB_RESERVED - 10 * PAGE)
    (p, n), = fa.alloc(10)
    fa.free(p, 2)
    fa.free(p + 5 * PAGE, 3)
    got = fa.alloc(5)
    assert sorted(got) == [(p, 2), (p + 5 * PAGE, 3)]
    assert sum(k for _, k in got) == 5


def test_out_of_frames_is_enomem(mf):
    fa = FrameAllocator(mf, table_reserve=MIB)
    data_pages = (16 * MIB - MIB - layout.STUB_RESERVED) // PAGE
    fa.alloc(data_pages)
    with pytest.raises(SyscallError) as e:
        fa.alloc(1)
    assert e.value.errno == errno.ENOMEM


def test_double_free_refused(mf):
    fa = FrameAllocator(mf, table_reserve=MIB)
    (p, _), = fa.alloc(4)
    fa.free(p, 4)
    with pytest.raises(ValueError):
        fa.free(p + PAGE, 1)


def test_table_frames_bump_down_zeroed_and_never_reused_as_tables(mf):
    fa = FrameAllocator(mf, table_reserve=MIB)
    t1, t2 = fa.alloc_table(), fa.alloc_table()
    assert t1 == 16 * MIB - PAGE and t2 == t1 - PAGE
    assert mf.read(t1, PAGE) == bytes(PAGE)
    mf.write(t2, b"\xff" * PAGE)
    fa.free_table(t2)
    assert mf.read(t2, PAGE) == bytes(PAGE)        # punched
    t3 = fa.alloc_table()
    assert t3 not in (t1, t2)
    assert fa.used_pages == 2


def test_freed_table_frame_serves_as_data(mf):
    # no data pool at all: only the table reserve
    fa = FrameAllocator(mf, low=16 * MIB - 4 * PAGE, table_reserve=4 * PAGE)
    t = fa.alloc_table()
    fa.free_table(t)
    assert fa.alloc(1) == [(t, 1)]


def test_tables_spill_below_reserve_only_over_fresh_frames(mf):
    fa = FrameAllocator(mf, table_reserve=2 * PAGE)
    tables = [fa.alloc_table() for _ in range(5)]
    assert tables == [16 * MIB - (i + 1) * PAGE for i in range(5)]
    fa.free_table(tables[0])
    assert fa.alloc_table() == 16 * MIB - 6 * PAGE   # never the freed table frame
    assert fa.used_pages == 5


def test_free_table_of_data_frame_refused(mf):
    fa = FrameAllocator(mf, table_reserve=MIB)
    (p, _), = fa.alloc(1)
    with pytest.raises(ValueError):
        fa.free_table(p)


@pytest.mark.parametrize("tables", [False, True])
@pytest.mark.parametrize("memory", [64 * MIB, 2 << 30, 3 << 30, 8 << 30, 64 << 30])
def test_memfile_layout_holds_the_whole_limit(memory, tables):
    """Whatever the limit, the data pool holds it and DATA_SLACK more (it once held less than
    --memory on ptrace past 2 GiB, and on KVM past 8 GiB: mmap succeeded, the touch failed)."""
    from kvmbox.mm.frames import memfile_layout
    size, reserve = memfile_layout(memory, tables=tables)
    mf = MemoryFile(size)
    try:
        fa = FrameAllocator(mf, table_reserve=reserve)
        pool = (fa.table_limit - fa.low) // PAGE
        assert pool * PAGE >= memory + tuning.DATA_SLACK
        assert (reserve > 0) == tables
    finally:
        mf.close()


class _Recording(MemoryFile):
    """A MemoryFile that notes how each freed range was scrubbed."""

    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.log: list[tuple[str, int, int]] = []

    def punch(self, off: int, length: int) -> None:
        self.log.append(("punch", off, length))
        super().punch(off, length)

    def recycle(self, off: int, length: int) -> None:
        self.log.append(("recycle", off, length))
        MemoryFile.punch(self, off, length)      # a memfd's recycle (not logged as a punch)


def test_free_recycles_the_warm_frames_and_punches_the_rest(monkeypatch):
    monkeypatch.setattr(tuning, "WARM_FRAMES", 8 * PAGE)
    m = _Recording(16 * MIB)
    try:
        fa = FrameAllocator(m, table_reserve=MIB)
        (p, n), = fa.alloc(12)
        m.write(p, b"dirty" * 10000)
        fa.free(p, 12)
        assert m.log == [("recycle", p, 8 * PAGE), ("punch", p + 8 * PAGE, 4 * PAGE)]
        assert m.read(p, 12 * PAGE) == bytes(12 * PAGE)
    finally:
        m.close()
