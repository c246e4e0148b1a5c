"""Copy-on-write fork in the MemoryManager over real PageTables: frame references, copies in both
directions, write bits given back, shared mappings, MADV_DONTFORK/WIPEONFORK, the child's lazy page
tables, frames back to their baseline, and the memory charge (no double charge at fork)."""
from __future__ import annotations

import errno
from contextlib import contextmanager

import pytest

from kvmbox.abi import mman
from kvmbox.mm import tuning
from kvmbox.errors import SyscallError
from kvmbox.guest_stub import layout as L
from kvmbox.mm import cow
from kvmbox.mm.account import MemoryAccount
from kvmbox.mm.fault import OutOfFrames
from kvmbox.mm.framerefs import FrameRefs
from kvmbox.mm.frames import FrameAllocator
from kvmbox.mm.mapfile import MappedFile
from kvmbox.mm.memfile import MemoryFile
from kvmbox.mm.pagetables import PageTables
from kvmbox.platform.base import PF_PRESENT, PF_USER, PF_WRITE

from .test_mapfile import HostLike, InMemory
from .test_mm import make, pte
from .test_pagetables import ADDR, STUB_PDPT, Spy, W

PAGE = 4096
MIB = 1 << 20
R_, RW = 1, 3
ANON = mman.MAP_PRIVATE | mman.MAP_ANONYMOUS
SHARED_ANON = mman.MAP_SHARED | mman.MAP_ANONYMOUS
READ_FAULT = PF_USER                              # not present, read
WRITE_FAULT = PF_USER | PF_WRITE                  # not present, write
COW_FAULT = PF_USER | PF_WRITE | PF_PRESENT       # write to a present read-only page


@pytest.fixture
def account():
    return MemoryAccount(32 * MIB)


@pytest.fixture
def parent(account):
    m = make(account=account)
    yield m
    m.release()
    m.memfile.close()


def fork(mm):
    return mm.fork(PageTables(mm.memfile, mm.frames, STUB_PDPT))


@contextmanager
def forked(mm):
    """A child of `mm`, released at the end of the block."""
    child = fork(mm)
    try:
        yield child
    finally:
        child.release()


def frame(mm, addr: int) -> int:
    return mm.vmas.find(addr).translate(addr)


def guest_write(mm, addr: int, data: bytes) -> None:
    """What the guest's own store does: fault until the PTE allows writing, then write the frame."""
    for _ in range(3):
        e = pte(mm, addr)
        if e is not None and e & 1 and e & W:
            mm.memfile.write((e & ADDR) + addr % PAGE, data)
            return
        assert mm.handle_fault(addr, COW_FAULT if e is not None and e & 1 else WRITE_FAULT)
    raise AssertionError("the page never became writable")


def guest_read(mm, addr: int, n: int) -> bytes:
    """What the guest's own load does: fault until present, then read the frame it maps."""
    e = pte(mm, addr)
    if e is None or not e & 1:
        assert mm.handle_fault(addr, READ_FAULT)
        e = pte(mm, addr)
    return mm.memfile.read((e & ADDR) + addr % PAGE, n)


# --- frame references -------------------------------------------------------------------
def test_frame_references_free_only_the_last():
    mf = MemoryFile(16 * MIB)
    try:
        fa = FrameAllocator(mf, table_reserve=MIB)
        [(p, _)] = fa.alloc(4)
        mf.write(p, b"keep")
        fa.share(p, 2)
        fa.share(p, 1)
        assert [fa.refs(p + i * PAGE) for i in range(4)] == [3, 2, 1, 1]
        assert fa.sharing_runs(p, 4) == [(p, 2, True), (p + 2 * PAGE, 2, False)]
        assert fa.free(p, 4) == 2 and fa.used_pages == 2      # the unshared two went back
        assert mf.read(p, 4) == b"keep", "a frame someone still holds must not be punched"
        assert fa.free(p, 2) == 1 and fa.refs(p) == 2 - 1
        assert fa.free(p, 1) == 1 and not fa.sharing and fa.used_pages == 0
        with pytest.raises(ValueError):
            fa.free(p, 1)
    finally:
        mf.close()


def test_frame_references_past_a_byte_and_mixed_runs():
    refs = FrameRefs(64)
    refs.add(10, 4)
    for _ in range(300):                                   # a frame held by 301 processes
        refs.add(11, 1)
    assert [refs.extra(f) for f in (9, 10, 11, 12)] == [0, 1, 301, 1] and refs.shared == 4
    assert list(refs.runs(8, 8)) == [(8, 2, False), (10, 4, True), (14, 2, False)]
    assert refs.any(12, 4) and not refs.any(14, 10)
    refs.add(10, 4)                                        # a run with a saturated byte in it
    assert [refs.extra(f) for f in (10, 11, 12)] == [2, 302, 2]
    for _ in range(301):
        refs.drop(11, 1)
    refs.drop(10, 4)
    refs.drop(10, 1)
    refs.drop(12, 2)
    assert refs.shared == 0 and not refs.any(0, 64) and not refs._big


# --- fork: what the child gets ------------------------------------------------------------
def test_fork_shares_frames_write_protects_parent_and_leaves_child_tables_alone(parent):
    a = parent.mmap(0, 4 * PAGE, RW, ANON)
    parent.copy_out(a, b"hello")
    spy = Spy(parent.memfile)
    with forked(parent) as child:
        assert frame(child, a) == frame(parent, a) and parent.frames.refs(frame(parent, a)) == 2
        assert pte(parent, a) & W == 0, "the parent's writable PTE must lose its write bit"
        assert frame(parent, a) in spy.frames(), "a downgraded present PTE must be invalidated"
        assert child.aspace.table_frames == 1 and pte(child, a) is None   # nothing mapped yet
        assert child.copy_in(a, 5) == b"hello"
        assert [(v.start, v.end, v.prot) for v in child.maps()] == \
            [(v.start, v.end, v.prot) for v in parent.maps()]


@pytest.mark.parametrize("writer", ["parent", "child"])
@pytest.mark.parametrize("how", ["fault", "copy_out"])
def test_copy_on_write_both_directions(parent, writer, how):
    a = parent.mmap(0, 4 * PAGE, RW, ANON)
    parent.copy_out(a + PAGE, b"before")
    with forked(parent) as child:
        w, other = (parent, child) if writer == "parent" else (child, parent)
        if how == "fault":
            guest_write(w, a + PAGE, b"after!")
        else:
            w.copy_out(a + PAGE, b"after!")
        assert w.copy_in(a + PAGE, 6) == b"after!"
        assert other.copy_in(a + PAGE, 6) == b"before"
        assert guest_read(other, a + PAGE, 6) == b"before"
        assert frame(w, a + PAGE) != frame(other, a + PAGE)
        assert other.frames.refs(frame(other, a + PAGE)) == 1
        # The one left holding the old frame writes it in place: write bit back, no copy.
        old = frame(other, a + PAGE)
        guest_write(other, a + PAGE, b"mine")
        assert frame(other, a + PAGE) == old and w.copy_in(a + PAGE, 6) == b"after!"


def test_write_fault_copies_a_cluster(parent):
    a = parent.mmap(0, 64 * PAGE, RW, ANON)
    for i in range(64):
        parent.copy_out(a + i * PAGE, bytes([i + 1]))
    with forked(parent) as child:
        used = parent.frames.used_pages
        target = a + 20 * PAGE
        assert child.handle_fault(target, WRITE_FAULT)
        lo = target - target % (cow.COW_CLUSTER * PAGE)
        for i in range(64):
            addr = a + i * PAGE
            mine = lo <= addr < lo + cow.COW_CLUSTER * PAGE
            assert (frame(child, addr) != frame(parent, addr)) == mine
            assert child.copy_in(addr, 1) == bytes([i + 1])
            e = pte(child, addr)
            if addr // tuning.FAULT_AROUND == target // tuning.FAULT_AROUND:
                assert e is not None and bool(e & W) == mine   # the chunk is mapped, shared read-only
        assert parent.frames.used_pages - used - child.aspace.table_frames + 1 == cow.COW_CLUSTER


def test_read_fault_in_child_maps_the_chunk_read_only(parent):
    a = parent.mmap(0, 8 * PAGE, RW, ANON)
    parent.copy_out(a, b"x" * 8 * PAGE)
    with forked(parent) as child:
        assert guest_read(child, a + 3 * PAGE, 1) == b"x"
        for i in range(8):
            e = pte(child, a + i * PAGE)
            assert e is not None and e & 1 and not e & W and e & ADDR == frame(parent, a + i * PAGE)


def test_shared_anonymous_stays_shared(parent):
    a = parent.mmap(0, 2 * PAGE, RW, SHARED_ANON)
    parent.copy_out(a, b"one")
    with forked(parent) as child:
        assert pte(parent, a) & W, "shared memory is not write-protected"
        child.copy_out(a, b"two")
        assert parent.copy_in(a, 3) == b"two"
        guest_write(parent, a + PAGE, b"three")
        assert child.copy_in(a + PAGE, 5) == b"three"
        assert not parent.frames.sharing, "shared mappings need no frame references"
    assert parent.copy_in(a, 3) == b"two"


def test_shared_file_stays_shared_private_file_copies(parent):
    src = InMemory(parent, b"A" * PAGE + b"B" * PAGE)
    s = parent.mmap(0, 2 * PAGE, RW, mman.MAP_SHARED, 3, 0, file=MappedFile(src, "/tmp/f"))
    p_ = parent.mmap(0, 2 * PAGE, RW, mman.MAP_PRIVATE, 3, 0, file=MappedFile(HostLike(b"C" * 2 * PAGE), "/f"))
    with forked(parent) as child:
        refs = src.backing.refs
        child.copy_out(s, b"shared")
        assert src.read(0, 6) == b"shared" and parent.copy_in(s, 6) == b"shared"
        child.copy_out(p_, b"private")
        assert parent.copy_in(p_, 7) == b"CCCCCCC" and child.copy_in(p_, 7) == b"private"
    assert src.backing.refs == refs - 1
    parent.munmap(s, 2 * PAGE)
    src.release()


def test_read_only_private_mapping_made_writable_in_child_copies(parent):
    a = parent.mmap(0, 2 * PAGE, RW, ANON)
    parent.copy_out(a, b"text")
    parent.mprotect(a, 2 * PAGE, R_)
    with forked(parent) as child:
        child.mprotect(a, 2 * PAGE, RW)
        guest_read(child, a, 1)
        assert not pte(child, a) & W, "a shared frame stays read-only after mprotect"
        guest_write(child, a, b"TEXT")
        assert parent.copy_in(a, 4) == b"text" and child.copy_in(a, 4) == b"TEXT"
        parent.mprotect(a, 2 * PAGE, RW)
        assert pte(parent, a) & W, "one reference left: writable again"


def test_grandchild_and_release_in_any_order(parent):
    a = parent.mmap(0, 4 * PAGE, RW, ANON)
    parent.copy_out(a, b"gen0")
    child = fork(parent)
    grandchild = fork(child)
    assert parent.frames.refs(frame(parent, a)) == 3
    grandchild.copy_out(a, b"gen2")
    child.release()
    assert parent.copy_in(a, 4) == b"gen0" and grandchild.copy_in(a, 4) == b"gen2"
    parent.munmap(a, 4 * PAGE)
    assert grandchild.copy_in(a + PAGE, 4) == bytes(4)
    grandchild.release()
    assert parent.frames.used_pages == parent.aspace.table_frames and not parent.frames.sharing


def test_frames_back_to_baseline_after_parent_then_child(account):
    m = make(account=account)
    a = m.mmap(0, 256 * PAGE, RW, ANON)
    m.copy_out(a, b"x" * 256 * PAGE)
    child = fork(m)
    for i in range(0, 256, 7):
        guest_write(child, a + i * PAGE, b"c")
    guest_write(m, a + 5 * PAGE, b"p")
    m.release()
    assert child.copy_in(a + 5 * PAGE, 1) == b"x" and child.copy_in(a, 1) == b"c"
    child.release()
    assert m.frames.used_pages == 0 and not m.frames.sharing and account.committed == 0
    m.memfile.close()


def test_munmap_mremap_and_dontneed_keep_the_others_copy(parent):
    a = parent.mmap(0, 4 * PAGE, RW, ANON)
    parent.copy_out(a, b"p" * 4 * PAGE)
    with forked(parent) as child:
        child.madvise(a, PAGE, mman.MADV_DONTNEED)
        assert child.copy_in(a, 1) == b"\0" and parent.copy_in(a, 1) == b"p"
        b = parent.mremap(a, 4 * PAGE, 8 * PAGE, mman.MREMAP_MAYMOVE, 0)
        assert parent.copy_in(b + PAGE, 1) == b"p" and child.copy_in(a + PAGE, 1) == b"p"
        guest_write(parent, b + PAGE, b"q")
        assert child.copy_in(a + PAGE, 1) == b"p"
        parent.munmap(b, 8 * PAGE)
        assert child.copy_in(a + 3 * PAGE, 1) == b"p"


# --- MADV_DONTFORK / MADV_WIPEONFORK --------------------------------------------------------
def test_dontfork_and_wipeonfork(parent):
    a = parent.mmap(0, 6 * PAGE, RW, ANON)
    parent.copy_out(a, b"d" * 6 * PAGE)
    parent.madvise(a, 2 * PAGE, mman.MADV_DONTFORK)
    parent.madvise(a + 4 * PAGE, 2 * PAGE, mman.MADV_WIPEONFORK)
    assert [(v.start - a, v.end - a) for v in parent.maps()] == \
        [(0, 2 * PAGE), (2 * PAGE, 4 * PAGE), (4 * PAGE, 6 * PAGE)]
    with forked(parent) as child:
        assert child.vmas.find(a) is None and not child.handle_fault(a, READ_FAULT)
        with pytest.raises(SyscallError):
            child.copy_in(a, 1)
        assert child.copy_in(a + 2 * PAGE, 1) == b"d"
        assert child.copy_in(a + 4 * PAGE, 2 * PAGE) == bytes(2 * PAGE)
        assert child.vmas.find(a + 4 * PAGE).wipeonfork, "the child keeps the advice"
        assert parent.copy_in(a + 4 * PAGE, 1) == b"d"
        assert pte(parent, a) & W, "pages the child does not get stay writable"
    parent.madvise(a, 6 * PAGE, mman.MADV_DOFORK)
    parent.madvise(a, 6 * PAGE, mman.MADV_KEEPONFORK)
    assert not any(v.dontfork or v.wipeonfork for v in parent.maps())


def test_wipeonfork_refused_on_shared_and_file_mappings(parent):
    s = parent.mmap(0, PAGE, RW, SHARED_ANON)
    f = parent.mmap(0, PAGE, RW, mman.MAP_PRIVATE, 3, 0, file=MappedFile(HostLike(b"x"), "/f"))
    for addr in (s, f):
        with pytest.raises(SyscallError) as e:
            parent.madvise(addr, PAGE, mman.MADV_WIPEONFORK)
        assert e.value.errno == errno.EINVAL
    parent.madvise(s, PAGE, mman.MADV_DONTFORK)
    assert parent.vmas.find(s).dontfork


# --- the memory charge ------------------------------------------------------------------------
def test_no_double_charge_at_fork_and_copies_are_charged(parent, account):
    a = parent.mmap(0, 64 * PAGE, RW, ANON)
    parent.copy_out(a, b"z" * 64 * PAGE)
    before = account.committed
    with forked(parent) as child:
        assert account.committed == before, "fork must not charge what the two share"
        assert child.committed == parent.committed
        child.copy_out(a, b"c")
        assert account.committed == before + PAGE
        guest_write(parent, a + 40 * PAGE, b"p")            # the parent's copy: its own page
        assert account.committed == before + PAGE
    assert account.committed == before


def test_child_copy_past_the_limit_is_the_oom_path(parent, account):
    a = parent.mmap(0, 64 * PAGE, RW, ANON)
    parent.copy_out(a, b"z" * 64 * PAGE)
    with forked(parent) as child:
        account.files = account.limit - account.committed       # someone filled the rest
        with pytest.raises(OutOfFrames):
            child.handle_fault(a, WRITE_FAULT)
        with pytest.raises(SyscallError) as e:
            child.copy_out(a, b"c")
        assert e.value.errno == errno.EFAULT
        assert parent.copy_in(a, 1) == b"z" and child.copy_in(a, 1) == b"z"
        guest_write(parent, a, b"p")                              # covered by its commitment
        account.files = 0
        guest_write(child, a + PAGE, b"c")


def test_child_munmap_pays_its_debt_first(parent, account):
    a = parent.mmap(0, 16 * PAGE, RW, ANON)
    with forked(parent) as child:
        before = account.committed
        child.munmap(a, 16 * PAGE)
        assert account.committed == before and child.committed == parent.committed - 16 * PAGE
        b = child.mmap(0, 4 * PAGE, RW, ANON)
        assert account.committed == before + 4 * PAGE
        child.munmap(b, 4 * PAGE)
    assert account.committed == before


def test_a_lazy_mapping_merged_with_a_new_one_keeps_its_page_tables_right(parent):
    """The child's inherited heap grows (a new mapping merges with the lazy one), the child forks
    in turn, then the Sentry writes into the grown part: the child's guest must see the write."""
    a = parent.mmap(0x1000_0000, 8 * PAGE, RW, ANON | mman.MAP_FIXED)
    parent.copy_out(a, b"old")
    with forked(parent) as child:
        child.mmap(a + 8 * PAGE, 8 * PAGE, RW, ANON | mman.MAP_FIXED)      # merges with [a, +8)
        assert len(child.maps()) == 1
        child.copy_out(a + 9 * PAGE, b"grown")
        with forked(child):
            child.copy_out(a + 9 * PAGE, b"again")                      # a copy: a new frame
            assert guest_read(child, a + 9 * PAGE, 5) == b"again"
            assert guest_read(child, a, 3) == b"old"
