"""MemoryManager over real PageTables: the mmap family, brk, faults, copying, limits, teardown."""
from __future__ import annotations

import errno
import time
from types import SimpleNamespace

import pytest

from kvmbox.abi import mman
from kvmbox.errors import SyscallError
from kvmbox.guest_stub import layout as L
from kvmbox.mm import tuning
from kvmbox.mm.frames import FrameAllocator
from kvmbox.mm.manager import MemoryManager
from kvmbox.mm.memfile import MemoryFile
from kvmbox.mm.pagetables import PageTables
from kvmbox.platform.base import PF_INSTR, PF_PRESENT, PF_USER, PF_WRITE
from kvmbox.sentry.syscalls import sys_mm

from .test_pagetables import ADDR, NX, STUB_PDPT, Spy, U, W, walk

PAGE = 4096
MIB = 1 << 20
R_, RW, RX = 1, 3, 5
ANON = mman.MAP_PRIVATE | mman.MAP_ANONYMOUS
FIXED = ANON | mman.MAP_FIXED


def make(size: int = 64 * MIB, **kw) -> MemoryManager:
    mf = MemoryFile(size)
    fa = FrameAllocator(mf)
    return MemoryManager(mf, fa, PageTables(mf, fa, STUB_PDPT), **kw)


@pytest.fixture
def mm():
    m = make()
    yield m
    m.release()
    assert m.frames.used_pages == 0, "release() leaked frames"
    m.memfile.close()


def errno_of(fn, *args, **kw) -> int:
    with pytest.raises(SyscallError) as e:
        fn(*args, **kw)
    return e.value.errno


def pte(mm: MemoryManager, addr: int) -> int | None:
    return walk(mm.memfile, mm.aspace.root, addr)


def spans(mm: MemoryManager) -> list[tuple[int, int, int]]:
    return [(v.start, v.end, v.prot) for v in mm.maps()]


# --- mmap ----------------------------------------------------------------------------
def test_mmap_anon_top_down_zeroed_and_mapped(mm):
    a = mm.mmap(0, 3 * PAGE, RW, ANON)
    assert a % PAGE == 0 and a + 3 * PAGE <= L.MMAP_BASE
    b = mm.mmap(0, PAGE, RW, ANON)
    assert b == a - PAGE                                   # top-down, packed
    assert mm.copy_in(a, 3 * PAGE) == bytes(3 * PAGE)
    for i in range(3):
        e = pte(mm, a + i * PAGE)
        v = mm.vmas.find(a)
        assert e is not None and e & ADDR == v.translate(a + i * PAGE)
        assert e & (W | U | NX) == W | U | NX
    mm.copy_out(a + 10, b"abc")
    assert mm.memfile.read(pte(mm, a) & ADDR, 16)[10:13] == b"abc"   # really in that frame


def test_mmap_hint_used_when_free_else_elsewhere(mm):
    a = mm.mmap(0x4000_0000, PAGE, RW, ANON)
    assert a == 0x4000_0000
    b = mm.mmap(0x4000_0000, PAGE, RW, ANON)
    assert b != a and mm.vmas.find(b) is not None
    c = mm.mmap(0x4000_0123, PAGE, RW, ANON)               # rounded up to a page
    assert c == 0x4000_1000


def test_map_fixed_replaces_and_frees(mm):
    a = mm.mmap(0x1000_0000, 4 * PAGE, RW, FIXED)
    mm.copy_out(a, b"x" * 4 * PAGE)
    used = mm.frames.used_pages
    old = pte(mm, a + PAGE) & ADDR
    spy = Spy(mm.memfile)
    assert mm.mmap(a + PAGE, PAGE, R_, FIXED) == a + PAGE
    assert mm.frames.used_pages == used                    # one freed, one allocated
    assert old in spy.frames()                             # the replaced present PTE was invalidated
    assert mm.copy_in(a, 3 * PAGE) == b"x" * PAGE + bytes(PAGE) + b"x" * PAGE
    assert spans(mm) == [(a, a + PAGE, RW), (a + PAGE, a + 2 * PAGE, R_), (a + 2 * PAGE, a + 4 * PAGE, RW)]


def test_map_fixed_noreplace(mm):
    a = mm.mmap(0x1000_0000, 2 * PAGE, RW, FIXED)
    assert errno_of(mm.mmap, a + PAGE, 2 * PAGE, RW, ANON | mman.MAP_FIXED_NOREPLACE) == errno.EEXIST
    assert mm.mmap(a + 2 * PAGE, PAGE, RW, ANON | mman.MAP_FIXED_NOREPLACE) == a + 2 * PAGE


@pytest.mark.parametrize("args,err", [
    ((0, 0, RW, ANON), errno.EINVAL),                                    # zero length
    ((0, PAGE, RW, mman.MAP_ANONYMOUS), errno.EINVAL),                      # neither shared nor private
    ((0, PAGE, RW, ANON | 0x0C), errno.EINVAL),                          # bad type bits
    ((0x1000_0001, PAGE, RW, FIXED), errno.EINVAL),                      # unaligned fixed
    ((0, PAGE, RW, ANON, -1, 123), errno.EINVAL),                        # unaligned offset
    ((0, PAGE, 0x10, ANON), errno.EINVAL),                               # unknown prot bit
    ((0, PAGE, RW, mman.MAP_PRIVATE, 3, 0), errno.ENODEV),                  # a file mapping needs file=
    ((L.USER_TOP - PAGE, 2 * PAGE, RW, FIXED), errno.ENOMEM),            # past the user range
    ((0x1000, PAGE, RW, FIXED), errno.EPERM),                            # below mmap_min_addr
    ((0, 1 << 62, RW, ANON), errno.ENOMEM),                              # no room
    ((0, PAGE, RW, mman.MAP_SHARED_VALIDATE | mman.MAP_ANONYMOUS | 0x4000_0000 >> 8), errno.EOPNOTSUPP),
])
def test_mmap_errors(mm, args, err):
    assert errno_of(mm.mmap, *args) == err
    assert mm.maps() == [] and mm.committed == 0


# --- munmap -----------------------------------------------------------------------------
def test_munmap_middle_splits(mm):
    a = mm.mmap(0x1000_0000, 5 * PAGE, RW, FIXED)
    used = mm.frames.used_pages
    mm.munmap(a + PAGE, 2 * PAGE)
    assert spans(mm) == [(a, a + PAGE, RW), (a + 3 * PAGE, a + 5 * PAGE, RW)]
    assert pte(mm, a + PAGE) is None and pte(mm, a + 2 * PAGE) is None and pte(mm, a) is not None
    assert mm.frames.used_pages == used - 2
    assert errno_of(mm.copy_in, a + PAGE, 1) == errno.EFAULT
    mm.munmap(0x2000_0000, PAGE)                           # a hole: fine
    assert mm.committed == 3 * PAGE


@pytest.mark.parametrize("addr,length", [(0x1000_0001, PAGE), (0x1000_0000, 0), (L.USER_TOP - PAGE, 2 * PAGE)])
def test_munmap_errors(mm, addr, length):
    assert errno_of(mm.munmap, addr, length) == errno.EINVAL


# --- mprotect ------------------------------------------------------------------------------
def test_mprotect_partial_splits_and_merges_back(mm):
    a = mm.mmap(0x1000_0000, 4 * PAGE, RW, FIXED)
    mm.copy_out(a, b"y" * 4 * PAGE)
    spy = Spy(mm.memfile)
    mm.mprotect(a + PAGE, 2 * PAGE, R_)
    assert spans(mm) == [(a, a + PAGE, RW), (a + PAGE, a + 3 * PAGE, R_), (a + 3 * PAGE, a + 4 * PAGE, RW)]
    assert not pte(mm, a + PAGE) & W and pte(mm, a) & W
    assert len(spy.frames()) == 2                          # rights shrank on two present pages
    assert errno_of(mm.copy_out, a + PAGE, b"z") == errno.EFAULT
    assert errno_of(mm.copy_out, a + PAGE - 1, b"zz") == errno.EFAULT      # nothing written either
    assert mm.copy_in(a + PAGE - 1, 1) == b"y"
    mm.copy_out(a + PAGE, b"forced", force=True)
    mm.mprotect(a + PAGE, 2 * PAGE, RW)
    assert spans(mm) == [(a, a + 4 * PAGE, RW)]
    assert mm.copy_in(a + PAGE, 6) == b"forced"


def test_mprotect_none_keeps_content(mm):
    a = mm.mmap(0x1000_0000, 2 * PAGE, RW, FIXED)
    mm.copy_out(a, b"secret")
    mm.mprotect(a, 2 * PAGE, 0)
    assert pte(mm, a) is None
    assert errno_of(mm.copy_in, a, 1) == errno.EFAULT
    mm.mprotect(a, 2 * PAGE, RX)
    assert mm.copy_in(a, 6) == b"secret"
    e = pte(mm, a)
    assert e is not None and not e & NX and not e & W


def test_mprotect_errors(mm):
    a = mm.mmap(0x1000_0000, 2 * PAGE, RW, FIXED)
    assert errno_of(mm.mprotect, a + 1, PAGE, R_) == errno.EINVAL
    assert errno_of(mm.mprotect, a, PAGE, 0x40) == errno.EINVAL
    assert errno_of(mm.mprotect, a - PAGE, 2 * PAGE, R_) == errno.ENOMEM   # starts in a hole
    assert spans(mm) == [(a, a + 2 * PAGE, RW)]                             # unchanged
    assert errno_of(mm.mprotect, a, 3 * PAGE, R_) == errno.ENOMEM          # runs into a hole
    assert spans(mm) == [(a, a + 2 * PAGE, R_)]                             # changed up to it
    mm.mprotect(a, 0, R_)


# --- mremap ---------------------------------------------------------------------------------
def test_mremap_shrink_and_grow_in_place(mm):
    a = mm.mmap(0x1000_0000, 4 * PAGE, RW, FIXED)
    assert mm.mremap(a, 4 * PAGE, 2 * PAGE, 0) == a
    assert spans(mm) == [(a, a + 2 * PAGE, RW)] and pte(mm, a + 2 * PAGE) is None
    assert mm.mremap(a, 2 * PAGE, 6 * PAGE, 0) == a
    assert spans(mm) == [(a, a + 6 * PAGE, RW)] and pte(mm, a + 5 * PAGE) is not None
    assert mm.committed == 6 * PAGE


def test_mremap_moves_frames_without_copy(mm):
    a = mm.mmap(0x1000_0000, 2 * PAGE, RW, FIXED)
    mm.mmap(a + 2 * PAGE, PAGE, RW, FIXED)                  # blocks growth in place
    mm.copy_out(a, b"move me")
    frame = pte(mm, a) & ADDR
    assert errno_of(mm.mremap, a, 2 * PAGE, 4 * PAGE, 0) == errno.ENOMEM
    spy = Spy(mm.memfile)
    b = mm.mremap(a, 2 * PAGE, 4 * PAGE, mman.MREMAP_MAYMOVE)
    assert b != a
    assert pte(mm, a) is None and frame in spy.frames()
    assert pte(mm, b) & ADDR == frame
    assert mm.copy_in(b, 7) == b"move me"
    assert mm.copy_in(b + 3 * PAGE, 4) == bytes(4)
    assert mm.committed == 5 * PAGE


def test_mremap_fixed(mm):
    a = mm.mmap(0x1000_0000, 2 * PAGE, RW, FIXED)
    mm.copy_out(a, b"hi")
    t = mm.mmap(0x2000_0000, 4 * PAGE, RW, FIXED)
    assert mm.mremap(a, 2 * PAGE, PAGE, mman.MREMAP_MAYMOVE | mman.MREMAP_FIXED, t) == t
    assert spans(mm) == [(t, t + PAGE, RW), (t + PAGE, t + 4 * PAGE, RW)] or \
        spans(mm) == [(t, t + 4 * PAGE, RW)]
    assert mm.copy_in(t, 2) == b"hi"
    assert mm.committed == 4 * PAGE


def test_mremap_errors(mm):
    a = mm.mmap(0x1000_0000, 2 * PAGE, RW, FIXED)
    mm.mprotect(a + PAGE, PAGE, R_)
    assert errno_of(mm.mremap, a, 2 * PAGE, 4 * PAGE, mman.MREMAP_MAYMOVE) == errno.EFAULT  # spans 2 VMAs
    assert errno_of(mm.mremap, 0x3000_0000, PAGE, 2 * PAGE, 1) == errno.EFAULT         # unmapped
    assert errno_of(mm.mremap, a, PAGE, 2 * PAGE, 0x80) == errno.EINVAL
    assert errno_of(mm.mremap, a, PAGE, 2 * PAGE, mman.MREMAP_FIXED, 0x5000_0000) == errno.EINVAL
    assert errno_of(mm.mremap, a, PAGE, 0, 0) == errno.EINVAL
    assert errno_of(mm.mremap, a, PAGE, PAGE, 3, a) == errno.EINVAL                    # overlap


def test_shared_anon_dup_with_old_len_zero(mm):
    a = mm.mmap(0, 2 * PAGE, RW, mman.MAP_SHARED | mman.MAP_ANONYMOUS)
    assert mm.vmas.find(a).shared
    b = mm.mremap(a, 0, 2 * PAGE, mman.MREMAP_MAYMOVE)
    mm.copy_out(a, b"shared!")
    assert mm.copy_in(b, 7) == b"shared!"
    mm.munmap(a, 2 * PAGE)
    assert mm.copy_in(b, 7) == b"shared!"                  # the object lives while a view does


# --- brk ------------------------------------------------------------------------------------
def test_brk(mm):
    mm.set_brk_base(0x60_0123)
    assert mm.brk(0) == 0x60_1000
    assert mm.brk(0x60_1000 + 5000) == 0x60_1000 + 5000
    mm.copy_out(0x60_1000 + 4999, b"!")
    assert spans(mm) == [(0x60_1000, 0x60_3000, RW)] and mm.maps()[0].name == "[heap]"
    assert mm.brk(0x60_4000) == 0x60_4000
    assert spans(mm) == [(0x60_1000, 0x60_4000, RW)]      # extended, one VMA
    assert mm.brk(0x60_1000) == 0x60_1000
    assert mm.maps() == [] and mm.committed == 0
    assert mm.brk(0x50_0000) == 0x60_1000                  # below the base: unchanged
    mm.mmap(0x70_0000, PAGE, RW, FIXED)
    assert mm.brk(0x80_0000) == 0x60_1000                  # collides: unchanged


# --- copying ---------------------------------------------------------------------------------
def test_copy_across_vma_and_extent_boundaries(mm):
    a = mm.mmap(0x1000_0000, 2 * PAGE, RW, FIXED)
    mm.mmap(a + 2 * PAGE, 2 * PAGE, RW | 4, FIXED)        # different prot: separate VMA
    data = bytes(range(256)) * 40
    mm.copy_out(a + 100, data)
    assert mm.copy_in(a + 100, len(data)) == data


@pytest.mark.parametrize("case", ["unmapped", "prot_none", "hole", "wrap", "noncanonical", "user_top"])
def test_copy_efault(mm, case):
    a = mm.mmap(0x1000_0000, 2 * PAGE, RW, FIXED)
    mm.mmap(a + 3 * PAGE, PAGE, RW, FIXED)
    addr, n = {
        "unmapped": (0x3000_0000, 1),
        "prot_none": (mm.mmap(0x2000_0000, PAGE, 0, FIXED), 1),
        "hole": (a + 2 * PAGE - 2, 2 * PAGE),
        "wrap": ((1 << 64) - 8, 16),
        "noncanonical": (0xFFFF_8000_0000_0000, 8),
        "user_top": (L.USER_TOP - 8, 16),
    }[case]
    assert errno_of(mm.copy_out, addr, b"q" * n) == errno.EFAULT
    assert errno_of(mm.copy_in, addr, n) == errno.EFAULT
    assert mm.copy_in(a + 2 * PAGE - 2, 2) == bytes(2)     # the hole case wrote nothing


def test_copy_in_of_write_only_memory(mm):
    """x86 cannot map write-only: Linux's copy_from_user reads PROT_WRITE memory."""
    a = mm.mmap(0x2100_0000, PAGE, 2, FIXED)
    mm.copy_out(a, b"wo")
    assert mm.copy_in(a, 2) == b"wo"


def test_copy_out_read_only_efault_unless_forced(mm):
    a = mm.mmap(0x1000_0000, PAGE, R_, FIXED)
    assert errno_of(mm.copy_out, a, b"x") == errno.EFAULT
    mm.copy_out(a, b"text", force=True)
    assert mm.copy_in(a, 4) == b"text"


def test_read_cstring(mm):
    a = mm.mmap(0x1000_0000, 2 * PAGE, RW, FIXED)
    mm.copy_out(a + PAGE - 3, b"abcdef\0")
    assert mm.read_cstring(a + PAGE - 3) == b"abcdef"
    assert errno_of(mm.read_cstring, a + PAGE - 3, 4) == errno.ENAMETOOLONG
    mm.copy_out(a + 2 * PAGE - 3, b"xyz")
    assert errno_of(mm.read_cstring, a + 2 * PAGE - 3) == errno.EFAULT
    assert errno_of(mm.read_cstring, 0) == errno.EFAULT


# --- demand paging and stacks ------------------------------------------------------------------
def test_demand_paging_with_fault_around():
    mm = make(160 * MIB)
    try:
        size = tuning.EAGER_POPULATE_LIMIT + 8 * MIB
        a = mm.mmap(0x1000_0000, size, RW, FIXED)
        assert pte(mm, a) is not None and pte(mm, a + tuning.EAGER_POPULATE_LIMIT - PAGE) is not None
        x = a + tuning.EAGER_POPULATE_LIMIT + 3 * MIB + 5
        assert pte(mm, x) is None
        assert mm.handle_fault(x, PF_USER | PF_WRITE)
        chunk = x & ~(tuning.FAULT_AROUND - 1)
        assert pte(mm, chunk) is not None and pte(mm, chunk + tuning.FAULT_AROUND - PAGE) is not None
        assert pte(mm, chunk - PAGE) is None and pte(mm, chunk + tuning.FAULT_AROUND) is None
        y = a + size - PAGE                                   # copy_in populates too
        assert mm.copy_in(y, 4) == bytes(4) and pte(mm, y) is not None
        assert not mm.handle_fault(a + size, PF_USER)         # past the VMA
        assert not mm.handle_fault(0xFFFF_8000_0000_0000, PF_USER)
        mm.release()
        assert mm.frames.used_pages == 0
    finally:
        mm.memfile.close()


def test_fault_permission_and_spurious(mm):
    a = mm.mmap(0x1000_0000, PAGE, R_, FIXED)
    assert not mm.handle_fault(a, PF_USER | PF_WRITE | PF_PRESENT)
    assert not mm.handle_fault(a, PF_USER | PF_INSTR | PF_PRESENT)
    spy = Spy(mm.memfile)
    assert mm.handle_fault(a, PF_USER | PF_PRESENT)         # allowed: a stale entry, invalidated
    assert spy.frames() == {pte(mm, a) & ADDR}
    assert mm.handle_fault(a, PF_USER | PF_PRESENT)
    assert mm.handle_fault(a, PF_USER | PF_PRESENT)
    assert not mm.handle_fault(a, PF_USER | PF_PRESENT)     # looping: give up (SIGSEGV)


def test_stack_growth(mm):
    top = L.STACK_TOP
    mm.map_stack(top, 32 * PAGE, L.STACK_MAX)
    v = mm.maps()[0]
    assert (v.start, v.end, v.name) == (top - 32 * PAGE, top, "[stack]")
    assert pte(mm, top - PAGE) is not None and pte(mm, top - 32 * PAGE) is not None
    mm.copy_out(top - 8, b"12345678")
    x = top - 200 * PAGE
    assert mm.handle_fault(x, PF_USER | PF_WRITE)
    v = mm.maps()[0]
    assert v.start <= x & ~(PAGE - 1) and v.start >= top - L.STACK_MAX and v.end == top
    assert pte(mm, x) is not None
    assert mm.copy_in(top - 8, 8) == b"12345678"
    mm.copy_out(x, b"deep")
    assert not mm.handle_fault(top - L.STACK_MAX - PAGE, PF_USER | PF_WRITE)   # past the limit
    assert mm.committed == v.length


def test_stack_growth_stops_at_a_neighbour(mm):
    top = L.STACK_TOP
    mm.map_stack(top, 4 * PAGE, L.STACK_MAX)
    mm.mmap(top - 8 * PAGE, PAGE, RW, FIXED)
    assert mm.handle_fault(top - 6 * PAGE, PF_USER | PF_WRITE)
    assert mm.vmas.find(top - 7 * PAGE).start == top - 7 * PAGE
    assert not mm.handle_fault(top - 9 * PAGE, PF_USER | PF_WRITE)


def test_copies_grow_the_stack_within_rlimit_stack(mm):
    """copy_out/copy_in below the stack grow it as Linux's copy_to_user does (signal frames,
    syscall buffers), never past RLIMIT_STACK read at that moment."""
    top = L.STACK_TOP
    mm.map_stack(top, 32 * PAGE, L.STACK_MAX)
    limit = 256 * PAGE
    mm.rlimit = lambda resource: limit if resource == 3 else (1 << 64) - 1
    mm.copy_out(top - 100 * PAGE, b"frame")
    assert mm.copy_in(top - 100 * PAGE, 5) == b"frame"
    assert top - limit <= mm.maps()[0].start <= top - 100 * PAGE      # grown, clipped to the limit
    assert errno_of(mm.copy_out, top - 300 * PAGE, b"x") == errno.EFAULT
    assert not mm.handle_fault(top - 300 * PAGE, PF_USER | PF_WRITE)
    mm.copy_out(top - 256 * PAGE, b"x")                    # the last page within the limit


# --- madvise ----------------------------------------------------------------------------------
def test_madvise(mm):
    a = mm.mmap(0x1000_0000, 3 * PAGE, RW, FIXED)
    mm.copy_out(a, b"z" * 3 * PAGE)
    mm.madvise(a + PAGE, PAGE, mman.MADV_DONTNEED)
    assert mm.copy_in(a, 3 * PAGE) == b"z" * PAGE + bytes(PAGE) + b"z" * PAGE
    mm.madvise(a, PAGE, mman.MADV_NORMAL)
    assert errno_of(mm.madvise, a + 1, PAGE, mman.MADV_DONTNEED) == errno.EINVAL
    assert errno_of(mm.madvise, a, PAGE, 999) == errno.EINVAL
    assert errno_of(mm.madvise, a, 4 * PAGE, mman.MADV_WILLNEED) == errno.ENOMEM


# --- limits, teardown, speed ---------------------------------------------------------------------
def test_memory_limit():
    mm = make(limit=4 * MIB)
    try:
        assert errno_of(mm.mmap, 0, 5 * MIB, RW, ANON) == errno.ENOMEM
        a = mm.mmap(0, 5 * MIB, R_, ANON)                   # read-only private: not charged
        assert mm.committed == 0
        assert errno_of(mm.mprotect, a, 5 * MIB, RW) == errno.ENOMEM
        mm.mprotect(a, 3 * MIB, RW)
        assert mm.committed == 3 * MIB
        mm.set_brk_base(0x60_0000)
        assert mm.brk(0x60_0000 + 2 * MIB) == 0x60_0000     # over the limit: unchanged
        assert mm.brk(0x60_0000 + MIB) == 0x60_0000 + MIB
        assert mm.committed == 4 * MIB
        mm.munmap(a, 5 * MIB)
        assert mm.committed == MIB
        mm.release()
    finally:
        mm.memfile.close()


def test_release_returns_everything(mm):
    base = mm.frames.used_pages
    mm.mmap(0, 10 * PAGE, RW, ANON)
    mm.mmap(0, 3 * PAGE, RW, mman.MAP_SHARED | mman.MAP_ANONYMOUS)
    mm.map_stack(L.STACK_TOP, 8 * PAGE, L.STACK_MAX)
    mm.set_brk_base(0x60_0000)
    mm.brk(0x61_0000)
    assert mm.frames.used_pages > base
    mm.release()
    assert mm.frames.used_pages == 0 and mm.committed == 0


def test_256mib_mmap_munmap_fast():
    mm = make(320 * MIB)
    try:
        t0 = time.perf_counter()
        a = mm.mmap(0, 256 * MIB, RW, ANON | mman.MAP_POPULATE)
        mm.copy_out(a + 256 * MIB - 4, b"last")
        mm.munmap(a, 256 * MIB)
        assert time.perf_counter() - t0 < 1.0
        assert mm.frames.used_pages == mm.aspace.table_frames    # tables stay until release
        mm.release()
        assert mm.frames.used_pages == 0
    finally:
        mm.memfile.close()


# --- syscall handlers --------------------------------------------------------------------------
def test_handlers(mm):
    t = SimpleNamespace(mm=mm)
    neg1 = (1 << 64) - 1
    a = sys_mm.mmap(t, (0, 2 * PAGE, RW, ANON, neg1, 0))
    assert mm.vmas.find(a) is not None
    assert sys_mm.mprotect(t, (a, PAGE, R_, 0, 0, 0)) == 0
    assert sys_mm.madvise(t, (a, PAGE, mman.MADV_DONTNEED, 0, 0, 0)) == 0
    assert sys_mm.mremap(t, (a + PAGE, PAGE, PAGE, 0, 0, 0)) == a + PAGE
    assert sys_mm.munmap(t, (a, PAGE, 0, 0, 0, 0)) == 0
    mm.set_brk_base(0x60_0000)
    assert sys_mm.brk(t, (0, 0, 0, 0, 0, 0)) == 0x60_0000
    assert errno_of(sys_mm.munmap, t, (a + 1, PAGE, 0, 0, 0, 0)) == errno.EINVAL
    assert errno_of(sys_mm.madvise, t, (a, PAGE, neg1, 0, 0, 0)) == errno.EINVAL
    t.fds = SimpleNamespace(get=lambda fd: (_ for _ in ()).throw(SyscallError(errno.EBADF)))
    assert errno_of(sys_mm.mmap, t, (0, PAGE, R_, mman.MAP_PRIVATE, 7, 0)) == errno.EBADF
    assert [e.name for e in sys_mm.ENTRIES] == ["brk", "mmap", "munmap", "mprotect", "mremap",
                                                "msync", "mincore", "get_mempolicy", "madvise"]


def test_eager_population_leaves_frames_for_faults(mm):
    free, before = mm.frames.free_pages, mm.frames.used_pages
    a = mm.mmap(0, 48 * MIB, RW, ANON)
    assert mm.frames.used_pages - before <= free // 2 + 64          # + a few table frames
    last = a + 48 * MIB - PAGE
    assert pte(mm, a) is not None and pte(mm, last) is None
    assert mm.handle_fault(last, PF_USER | PF_WRITE) and pte(mm, last) is not None


def test_rlimit_as_counts_every_mapped_byte(mm):
    """RLIMIT_AS (Linux's may_expand_vm): PROT_NONE counts, replacing in place needs no room,
    and the running total stays the sum of the VMAs through splits, merges, moves, growth."""
    limit = 64 * PAGE
    mm.rlimit = lambda resource: limit if resource == 9 else (1 << 64) - 1
    a = mm.mmap(0x1000_0000, 32 * PAGE, RW, FIXED)
    assert errno_of(mm.mmap, 0, 40 * PAGE, 0, ANON) == errno.ENOMEM          # PROT_NONE too
    mm.mmap(a, 32 * PAGE, R_, FIXED)                                        # in place: fits
    assert errno_of(mm.mremap, a, 32 * PAGE, 80 * PAGE, mman.MREMAP_MAYMOVE) == errno.ENOMEM
    mm.mprotect(a + 4 * PAGE, 4 * PAGE, RW)
    b = mm.mremap(a + 8 * PAGE, 8 * PAGE, 16 * PAGE, mman.MREMAP_MAYMOVE)
    mm.munmap(a, 2 * PAGE)
    mm.set_brk_base(0x2000_0000)
    assert mm.brk(0x2000_0000 + 40 * PAGE) == 0x2000_0000                  # refused
    assert mm.brk(0x2000_0000 + 10 * PAGE) == 0x2000_0000 + 10 * PAGE
    assert mm.vmas.mapped == sum(v.length for v in mm.maps()) <= limit
    assert b != a + 8 * PAGE or mm.vmas.find(b) is not None
