"""Copy-on-write fork on a real platform: a parent and a forked child MemoryManager, each with guest
code loading and storing through real page faults, the child on a host thread of its own (on
ptrace its address space belongs to that thread, so fork() must not have touched it)."""
from __future__ import annotations

import pytest

from guest import platform_fixture
from memproc import OP_FILL, OP_SUM, FIXED_ANON, MemProc, Worker

from kvmbox.abi import mman
from kvmbox.guest_stub import layout as L
from kvmbox.mm import cow
from kvmbox.abi.mman import PROT_READ, PROT_WRITE
from kvmbox.platform.base import Fault

PAGE = 4096
RW = PROT_READ | PROT_WRITE
DATA = 0x1000_0000          # private anonymous, 2 MiB
SHARED = 0x2000_0000        # shared anonymous, 64 KiB
DONTFORK = 0x3000_0000      # MADV_DONTFORK, 16 KiB
WIPE = 0x3100_0000          # MADV_WIPEONFORK, 16 KiB
DATA_LEN = 2 << 20


@pytest.fixture(scope="module", params=["kvm", "ptrace"])
def platform(request):
    yield from platform_fixture(request.param)


@pytest.fixture
def family(platform):
    """(parent, child, worker): the child forked from the parent, to be run on the worker."""
    base = platform.frames.used_pages
    parent = MemProc.start(platform)
    mm = parent.mm
    mm.mmap(DATA, DATA_LEN, RW, FIXED_ANON)
    mm.mmap(SHARED, 16 * PAGE, RW, mman.MAP_SHARED | mman.MAP_ANONYMOUS | mman.MAP_FIXED)
    mm.mmap(DONTFORK, 4 * PAGE, RW, FIXED_ANON)
    mm.mmap(WIPE, 4 * PAGE, RW, FIXED_ANON)
    mm.madvise(DONTFORK, 4 * PAGE, mman.MADV_DONTFORK)
    mm.madvise(WIPE, 4 * PAGE, mman.MADV_WIPEONFORK)
    for addr, value in ((DATA, 0xA0), (SHARED, 0x5A), (DONTFORK, 0xD0), (WIPE, 0x3E)):
        parent.write(addr, value)
    assert parent.op(OP_FILL, DATA + PAGE, 0x11, DATA + DATA_LEN) == 0x11
    child = parent.fork()
    # What clone() may do for the child from the parent's thread before the child first runs
    # (CLONE_CHILD_SETTID, say): write into a page the two share, and read it back.
    child.mm.copy_out(DATA + 8, b"settid!\0")
    assert child.mm.copy_in(DATA + 8, 7) == b"settid!" and parent.mm.copy_in(DATA + 8, 7) != b"settid!"
    if platform.name == "ptrace":
        assert child.mm.aspace.stub is None, "fork() must not touch the child's address space"
    worker = Worker()
    yield parent, child, worker
    worker.call(child.close)
    worker.stop()
    parent.close()
    assert platform.frames.used_pages == base, "frames leaked by parent and child"
    assert not platform.frames.sharing


def test_child_sees_the_parent_memory_and_writes_are_private(family):
    parent, child, worker = family
    assert worker.call(lambda: child.read(DATA)) == 0xA0
    worker.call(lambda: child.write(DATA, 0xC1))
    assert parent.read(DATA) == 0xA0, "the child's write reached the parent"
    parent.write(DATA + PAGE, 0xB2)
    assert worker.call(lambda: child.read(DATA + PAGE)) == 0x11, "the parent's write reached the child"
    assert worker.call(lambda: child.read(DATA)) == 0xC1
    assert parent.mm.copy_in(DATA, 1) == b"\xa0" and child.mm.copy_in(DATA, 1) == b"\xc1"


def test_shared_memory_stays_shared(family):
    parent, child, worker = family
    assert worker.call(lambda: child.read(SHARED)) == 0x5A
    worker.call(lambda: child.write(SHARED, 0x77))
    assert parent.read(SHARED) == 0x77
    parent.write(SHARED + 8, 0x88)
    assert worker.call(lambda: child.read(SHARED + 8)) == 0x88


def test_dontfork_is_absent_and_wipeonfork_is_zero_in_the_child(family):
    parent, child, worker = family
    ev = worker.call(lambda: child.read(DONTFORK))
    assert isinstance(ev, Fault) and ev.address == DONTFORK
    assert worker.call(lambda: child.read(WIPE)) == 0
    worker.call(lambda: child.write(WIPE, 0x99))
    assert parent.read(WIPE) == 0x3E and parent.read(DONTFORK) == 0xD0


def test_the_parent_is_write_protected_and_copies(family):
    parent, child, worker = family
    shared_frame = parent.mm.vmas.find(DATA).translate(DATA + 4 * PAGE)
    faults = parent.faults
    parent.write(DATA + 4 * PAGE, 0x44)
    assert parent.faults > faults, "the parent's write did not fault: its PTE kept the write bit"
    assert parent.mm.vmas.find(DATA).translate(DATA + 4 * PAGE) != shared_frame
    assert worker.call(lambda: child.read(DATA + 4 * PAGE)) == 0x11


def test_child_writes_a_megabyte_in_few_faults(family):
    parent, child, worker = family
    used = parent.platform.frames.used_pages
    start, end = DATA + PAGE, DATA + PAGE + (1 << 20)
    assert worker.call(lambda: child.op(OP_FILL, start, 0x22, end)) == 0x22
    pages = (end - start) // PAGE
    # One fault a cluster (17 clusters: the range is not cluster-aligned), one for the code
    # page, and on ptrace one more: a first touch does not say whether it was a write.
    assert child.faults <= pages // cow.COW_CLUSTER + 3, child.faults
    assert worker.call(lambda: child.op(OP_SUM, start, 0, end)) == 0x22 * pages
    assert parent.op(OP_SUM, start, 0, end) == 0x11 * pages
    grown = parent.platform.frames.used_pages - used
    assert pages <= grown <= pages + cow.COW_CLUSTER + 8, f"{grown} frames for a {pages}-page write"


def test_last_holder_gets_its_write_bit_back_over_a_read_only_shadow(family):
    """The parent reads a page after fork (under PVM a read-only shadow entry appears), the child
    copies it, then the parent writes: one fault gives the write bit back, in place."""
    parent, child, worker = family
    addr = DATA + 40 * PAGE
    assert parent.read(addr) == 0x11
    worker.call(lambda: child.write(addr, 0x66))
    frame = parent.mm.vmas.find(DATA).translate(addr)
    assert parent.mm.frames.refs(frame) == 1
    faults = parent.faults
    parent.write(addr, 0x67)
    assert parent.faults == faults + 1, parent.faults - faults
    assert parent.mm.vmas.find(DATA).translate(addr) == frame
    assert worker.call(lambda: child.read(addr)) == 0x66 and parent.read(addr) == 0x67
