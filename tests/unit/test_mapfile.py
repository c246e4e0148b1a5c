"""File mappings in the MemoryManager, against fake MapSources: private fill, shared page cache,
host-file write-back, refcounts on munmap, EACCES, msync and mincore."""
from __future__ import annotations

import errno

import pytest

from kvmbox.abi import mman
from kvmbox.errors import SyscallError
from kvmbox.mm import tuning
from kvmbox.mm.mapfile import MS_ASYNC, MS_INVALIDATE, MS_SYNC, MappedFile
from kvmbox.mm.vma import Backing
from kvmbox.sentry.vfs.pagecache import MapSource

from .test_mm import make, pte, spans
from .test_pagetables import ADDR

PAGE = 4096
R_, RW, RX = 1, 3, 5
PRIV, SHARED = mman.MAP_PRIVATE, mman.MAP_SHARED
FIXED = mman.MAP_FIXED


class HostLike(MapSource):
    """A host file: bytes read with fill(); no page cache to share."""

    def __init__(self, data: bytes) -> None:
        self.data = bytearray(data)
        self.fills = 0

    @property
    def size(self) -> int:
        return len(self.data)

    def shared_backing(self) -> Backing | None:
        return None

    def fill(self, offset: int, n: int) -> bytes:
        self.fills += 1
        return bytes(self.data[offset:offset + n])

    def write(self, offset: int, data: bytes) -> None:
        self.data[offset:offset + len(data)] = data


class InMemory(MapSource):
    """An in-memory file: its bytes live in frames of a shared Backing (what PageData does)."""

    def __init__(self, mm, data: bytes) -> None:
        self.mm = mm
        self.backing = Backing(shared=True)     # the file's own reference: refs == 1
        self.size = len(data)
        self.write(0, data)

    def _frame(self, pidx: int) -> int:
        phys = self.backing.lookup(pidx)
        if phys is None:
            [(phys, _)] = self.mm.frames.alloc(1)
            self.backing.add(pidx, phys, 1)
        return phys

    def write(self, off: int, data: bytes) -> None:
        for i, b in enumerate(data):
            p = self._frame((off + i) // PAGE)
            self.mm.memfile.write(p + (off + i) % PAGE, bytes([b]))
        self.size = max(self.size, off + len(data))

    def read(self, off: int, n: int) -> bytes:
        out = bytearray()
        for i in range(off, min(off + n, self.size)):
            p = self.backing.lookup(i // PAGE)
            out += self.mm.memfile.read(p + i % PAGE, 1) if p is not None else b"\0"
        return bytes(out)

    def shared_backing(self) -> Backing:
        return self.backing

    def fill(self, offset: int, n: int) -> bytes:
        return self.read(offset, n)

    def release(self) -> None:
        for _, phys, n in self.backing.take(-(1 << 62), 1 << 62):
            self.mm.frames.free(phys, n)


@pytest.fixture
def mm():
    m = make()
    yield m
    m.release()
    m.memfile.close()


def errno_of(fn, *args, **kw) -> int:
    with pytest.raises(SyscallError) as e:
        fn(*args, **kw)
    return e.value.errno


def host_file(data: bytes, *, may_write: bool = True, writeback: bool = False):
    src = HostLike(data)
    return src, MappedFile(src, "/data/file", dev=0x801, ino=42, may_write=may_write,
                           writeback=src.write if writeback else None)


PATTERN = bytes(range(256)) * 64          # 16 KiB, 4 pages


# --- MAP_PRIVATE --------------------------------------------------------------------------
def test_private_fill_and_zero_tail(mm):
    src, f = host_file(PATTERN[:2 * PAGE + 100])
    a = mm.mmap(0, 4 * PAGE, R_, PRIV, 3, 0, file=f)
    assert mm.copy_in(a, 2 * PAGE + 100) == PATTERN[:2 * PAGE + 100]
    assert mm.copy_in(a + 2 * PAGE + 100, PAGE - 100) == bytes(PAGE - 100)   # the partial page's tail
    assert pte(mm, a) is not None                          # populated eagerly like anonymous memory
    assert pte(mm, a + 3 * PAGE) is None                   # wholly past EOF: never populated
    v = mm.vmas.find(a)
    assert (v.path, v.dev, v.ino, v.offset) == ("/data/file", 0x801, 42, 0)
    assert mm.committed == 0                               # read-only private: not charged


def test_private_offset_and_writes_stay_private(mm):
    src, f = host_file(PATTERN)
    a = mm.mmap(0, 2 * PAGE, RW, PRIV, 3, PAGE, file=f)
    assert mm.copy_in(a, 2 * PAGE) == PATTERN[PAGE:3 * PAGE]
    assert mm.vmas.find(a).offset == PAGE
    mm.copy_out(a, b"private")
    assert bytes(src.data) == PATTERN                      # the file never changes
    assert mm.committed == 2 * PAGE                        # private writable: charged
    mm.msync(a, 2 * PAGE, MS_SYNC)                         # nothing to write back
    assert bytes(src.data) == PATTERN


def test_private_split_keeps_file_offsets(mm):
    src, f = host_file(PATTERN)
    a = mm.mmap(0x1000_0000, 4 * PAGE, R_, PRIV | FIXED, 3, 0, file=f)
    mm.mprotect(a + PAGE, PAGE, RW)
    offs = [(v.start - a, v.offset) for v in mm.maps()]
    assert offs == [(0, 0), (PAGE, PAGE), (2 * PAGE, 2 * PAGE)]
    assert mm.copy_in(a, 4 * PAGE) == PATTERN
    mm.mprotect(a + PAGE, PAGE, R_)                        # merges back into one mapping
    assert spans(mm) == [(a, a + 4 * PAGE, R_)]
    assert mm.copy_in(a, 4 * PAGE) == PATTERN
    mm.munmap(a + PAGE, PAGE)
    assert [v.offset for v in mm.maps()] == [0, 2 * PAGE]


def test_private_demand_fault_fills(mm, monkeypatch):
    monkeypatch.setattr(tuning, "EAGER_POPULATE_LIMIT", PAGE)
    src, f = host_file(PATTERN)
    a = mm.mmap(0x1000_0000, 4 * PAGE, R_, PRIV | FIXED, 3, 0, file=f)
    assert pte(mm, a + 3 * PAGE) is None                   # past the eager limit
    assert mm.handle_fault(a + 3 * PAGE, 4)                # user read
    assert mm.copy_in(a + 3 * PAGE, PAGE) == PATTERN[3 * PAGE:]


def test_private_madvise_dontneed_rereads_file(mm):
    src, f = host_file(PATTERN)
    a = mm.mmap(0, PAGE, RW, PRIV, 3, 0, file=f)
    mm.copy_out(a, b"xyz")
    mm.madvise(a, PAGE, mman.MADV_DONTNEED)
    assert mm.copy_in(a, PAGE) == PATTERN[:PAGE]


# --- pages wholly past end of file: SIGBUS ---------------------------------------------------
PF_READ, PF_WRITE_USER = 4, 6                              # user read / user write, not present


@pytest.mark.parametrize("kind,prot", [(PRIV, R_), (PRIV, RW), (SHARED, RW)])
def test_past_eof_pages_fault_as_sigbus(mm, kind, prot):
    src, f = host_file(PATTERN[:PAGE + 100], writeback=kind == SHARED)
    a = mm.mmap(0, 3 * PAGE, prot, kind, 3, 0, file=f)
    assert mm.copy_in(a + PAGE, PAGE) == PATTERN[PAGE:PAGE + 100] + bytes(PAGE - 100)
    assert pte(mm, a + PAGE) is not None and pte(mm, a + 2 * PAGE) is None
    assert mm.mincore(a, 3 * PAGE) == b"\1\1\0"
    for code in (PF_READ, PF_WRITE_USER) if prot == RW else (PF_READ,):
        assert not mm.handle_fault(a + 2 * PAGE + 5, code)     # refused ...
        assert mm.beyond_eof(a + 2 * PAGE + 5, code)            # ... as SIGBUS
        assert pte(mm, a + 2 * PAGE) is None
    assert not mm.beyond_eof(a + PAGE + 200, PF_READ)           # the partial page is fine
    assert errno_of(mm.copy_in, a + 2 * PAGE, 1) == errno.EFAULT            # a syscall's buffer
    assert errno_of(mm.copy_out, a + 2 * PAGE - 2, b"abcd") == errno.EFAULT
    mm.madvise(a, 3 * PAGE, mman.MADV_WILLNEED)
    assert pte(mm, a + 2 * PAGE) is None                   # nor populated on request


def test_past_eof_needs_the_access_the_mapping_allows(mm):
    src, f = host_file(PATTERN[:100])
    a = mm.mmap(0, 2 * PAGE, R_, PRIV, 3, 0, file=f)
    assert not mm.beyond_eof(a + PAGE, PF_WRITE_USER)      # a write to read-only: SIGSEGV
    assert not mm.beyond_eof(a + 2 * PAGE, PF_READ)        # outside the mapping
    b = mm.mmap(0, PAGE, RW, mman.MAP_PRIVATE | mman.MAP_ANONYMOUS)
    assert not mm.beyond_eof(b, PF_READ)                   # anonymous memory has no end of file


def test_past_eof_pages_appear_when_the_file_grows(mm, monkeypatch):
    monkeypatch.setattr(tuning, "FAULT_AROUND", PAGE)
    src, f = host_file(PATTERN[:PAGE + 100])
    a = mm.mmap(0, 3 * PAGE, RW, PRIV, 3, 0, file=f)
    assert mm.beyond_eof(a + 2 * PAGE, PF_READ)
    src.data += PATTERN[PAGE + 100:2 * PAGE + 10]          # the file grows into page 2
    assert not mm.beyond_eof(a + 2 * PAGE, PF_READ)
    assert mm.handle_fault(a + 2 * PAGE, PF_READ)
    assert mm.copy_in(a + 2 * PAGE, PAGE) == PATTERN[2 * PAGE:2 * PAGE + 10] + bytes(PAGE - 10)
    del src.data[PAGE:]                                    # shrinks: populated pages stay (documented)
    assert mm.copy_in(a + 2 * PAGE, 10) == PATTERN[2 * PAGE:2 * PAGE + 10]
    mm.madvise(a, 3 * PAGE, mman.MADV_DONTNEED)               # dropped copies are re-read from the file
    assert mm.beyond_eof(a + PAGE, PF_READ) and mm.beyond_eof(a + 2 * PAGE, PF_READ)
    assert mm.copy_in(a, PAGE) == PATTERN[:PAGE]


def test_past_eof_at_an_offset_and_after_split(mm):
    src, f = host_file(PATTERN[:3 * PAGE + 1])
    a = mm.mmap(0x1000_0000, 4 * PAGE, RW, PRIV | FIXED, 3, PAGE, file=f)   # file pages 1..4
    assert mm.copy_in(a + 2 * PAGE, 1) == PATTERN[3 * PAGE:3 * PAGE + 1]
    assert mm.beyond_eof(a + 3 * PAGE, PF_READ)            # file page 4 starts past EOF
    mm.mprotect(a + 3 * PAGE, PAGE, R_)
    assert mm.beyond_eof(a + 3 * PAGE, PF_READ)
    assert not mm.beyond_eof(a + 3 * PAGE, PF_WRITE_USER)
    assert mm.mmap(0, PAGE, R_, PRIV, 3, 8 * PAGE, file=f)  # wholly past EOF: mmap still works
    b = mm.mmap(0, PAGE, R_, PRIV, 3, 8 * PAGE, file=f)
    assert pte(mm, b) is None and not mm.handle_fault(b, PF_READ)


def test_past_eof_shared_in_memory(mm):
    src = InMemory(mm, PATTERN[:PAGE + 10])
    a = mm.mmap(0, 3 * PAGE, RW, SHARED, 3, 0, file=MappedFile(src, "/tmp/f"))
    assert mm.beyond_eof(a + 2 * PAGE, PF_WRITE_USER) and not mm.handle_fault(a + 2 * PAGE, PF_WRITE_USER)
    assert src.backing.lookup(2) is None                   # nothing added to the page cache
    src.size = 2 * PAGE + 1                                # ftruncate up
    assert mm.handle_fault(a + 2 * PAGE, PF_WRITE_USER)
    mm.copy_out(a + 2 * PAGE, b"Q")
    assert src.read(2 * PAGE, 1) == b"Q"
    # A page the cache still holds past a smaller EOF is not mapped into a new mapping.
    src.size = PAGE + 10
    b = mm.mmap(0, 3 * PAGE, R_, SHARED, 3, 0, file=MappedFile(src, "/tmp/f"))
    assert pte(mm, b + PAGE) is not None and pte(mm, b + 2 * PAGE) is None
    mm.munmap(a, 3 * PAGE)
    mm.munmap(b, 3 * PAGE)
    src.release()


# --- MAP_SHARED of an in-memory file ------------------------------------------------------
def test_shared_in_memory_is_the_page_cache(mm):
    src = InMemory(mm, PATTERN[:PAGE + 10])
    f = MappedFile(src, "/tmp/f", may_write=True)
    a = mm.mmap(0, 2 * PAGE, RW, SHARED, 3, 0, file=f)
    assert src.backing.refs == 2
    assert mm.copy_in(a, PAGE + 10) == PATTERN[:PAGE + 10]
    assert pte(mm, a) & ADDR == src.backing.lookup(0)       # the very same frame
    mm.copy_out(a + 5, b"MAPPED")                          # the mapping writes: the file sees it
    assert src.read(0, 16) == PATTERN[:5] + b"MAPPED" + PATTERN[11:16]
    src.write(PAGE, b"WRITE")                              # write(2) writes: the mapping sees it
    assert mm.copy_in(a + PAGE, 5) == b"WRITE"
    assert mm.committed == 0                               # the file's pages, not the process's
    used = mm.frames.used_pages
    mm.munmap(a, 2 * PAGE)
    assert src.backing.refs == 1 and mm.frames.used_pages == used   # the file keeps its frames
    assert src.read(0, 11) == PATTERN[:5] + b"MAPPED"
    src.release()


def test_shared_in_memory_split_and_two_mappings(mm):
    src = InMemory(mm, PATTERN)
    f = MappedFile(src, "/tmp/f")
    a = mm.mmap(0, 4 * PAGE, RW, SHARED, 3, 0, file=f)
    b = mm.mmap(0, 2 * PAGE, R_, SHARED, 3, 2 * PAGE, file=MappedFile(src, "/tmp/f"))
    assert src.backing.refs == 3
    mm.mprotect(a + PAGE, PAGE, R_)                        # split: each piece holds a reference
    assert src.backing.refs == 5
    mm.copy_out(a + 2 * PAGE, b"both")
    assert mm.copy_in(b, 4) == b"both"
    mm.munmap(a, 4 * PAGE)
    assert src.backing.refs == 2
    assert mm.copy_in(b, 4) == b"both"
    mm.release()
    assert src.backing.refs == 1 and src.backing.pages == 4
    src.release()
    assert mm.frames.used_pages == 0


def test_shared_mremap_keeps_view(mm):
    src = InMemory(mm, PATTERN)
    a = mm.mmap(0, PAGE, RW, SHARED, 3, 0, file=MappedFile(src, "/tmp/f"))
    b = mm.mremap(a, PAGE, 3 * PAGE, mman.MREMAP_MAYMOVE)
    assert mm.copy_in(b, 3 * PAGE) == PATTERN[:3 * PAGE]
    assert mm.vmas.find(b).path == "/tmp/f"
    mm.munmap(b, 3 * PAGE)
    assert src.backing.refs == 1
    src.release()


# --- MAP_SHARED of a host file -------------------------------------------------------------
def test_shared_host_writeback_on_msync_and_munmap(mm):
    src, f = host_file(PATTERN[:PAGE + 100], writeback=True)
    a = mm.mmap(0, 2 * PAGE, RW, SHARED, 3, 0, file=f)
    mm.copy_out(a + 1, b"AB")
    assert bytes(src.data[:4]) == PATTERN[:4]              # not yet
    mm.msync(a, PAGE, MS_SYNC)
    assert bytes(src.data[:4]) == PATTERN[:1] + b"AB" + PATTERN[3:4]
    mm.copy_out(a + PAGE + 50, b"CD")
    mm.copy_out(a + PAGE + 200, b"past EOF")               # never extends the file
    mm.munmap(a, 2 * PAGE)
    assert bytes(src.data[PAGE + 50:PAGE + 52]) == b"CD" and len(src.data) == PAGE + 100


def test_shared_host_unchanged_pages_not_written(mm):
    src, f = host_file(PATTERN, writeback=True)
    writes = []
    f.writeback = lambda off, data: writes.append(off)
    a = mm.mmap(0, 4 * PAGE, RW, SHARED, 3, 0, file=f)
    mm.copy_out(a + 2 * PAGE, b"z")
    mm.msync(a, 4 * PAGE, MS_ASYNC)
    assert writes == [0]                                   # one run, written as a whole (changed)
    src.data[2 * PAGE] = ord("z")
    writes.clear()
    mm.msync(a, 4 * PAGE, MS_SYNC)
    assert writes == []


def test_shared_host_writeback_at_exit(mm):
    src, f = host_file(PATTERN, writeback=True)
    a = mm.mmap(0, PAGE, RW, SHARED, 3, 0, file=f)
    mm.copy_out(a, b"bye")
    mm.release()
    assert bytes(src.data[:3]) == b"bye"


# --- permissions -----------------------------------------------------------------------------
def test_shared_write_needs_writable_open(mm):
    src, f = host_file(PATTERN, may_write=False)
    assert errno_of(mm.mmap, 0, PAGE, RW, SHARED, 3, 0, file=f) == errno.EACCES
    assert mm.maps() == []
    a = mm.mmap(0, PAGE, R_, SHARED, 3, 0, file=f)
    assert errno_of(mm.mprotect, a, PAGE, RW) == errno.EACCES
    b = mm.mmap(0, PAGE, RW, PRIV, 3, 0, file=f)           # private copies may always be written
    mm.mprotect(b, PAGE, R_)
    mm.mprotect(b, PAGE, RW)


def test_file_mapping_argument_errors(mm):
    src, f = host_file(PATTERN)
    assert errno_of(mm.mmap, 0, PAGE, R_, PRIV, 3, 100, file=f) == errno.EINVAL
    assert errno_of(mm.mmap, 0, PAGE, R_, PRIV, 3, 0) == errno.ENODEV       # no file given
    assert mm.mmap(0, 100 * PAGE, R_, PRIV, 3, 0, file=f)                   # past EOF is fine


# --- msync / mincore ---------------------------------------------------------------------------
def test_msync_errors(mm):
    a = mm.mmap(0, 2 * PAGE, RW, mman.MAP_PRIVATE | mman.MAP_ANONYMOUS)
    assert errno_of(mm.msync, a + 1, PAGE, MS_SYNC) == errno.EINVAL
    assert errno_of(mm.msync, a, PAGE, MS_SYNC | MS_ASYNC) == errno.EINVAL
    assert errno_of(mm.msync, a, PAGE, 8) == errno.EINVAL
    assert errno_of(mm.msync, a, 3 * PAGE, MS_SYNC) == errno.ENOMEM
    mm.msync(a, 2 * PAGE, MS_INVALIDATE)
    mm.msync(a, 0, MS_SYNC)


def test_mincore(mm, monkeypatch):
    monkeypatch.setattr(tuning, "EAGER_POPULATE_LIMIT", PAGE)
    a = mm.mmap(0x1000_0000, 3 * PAGE, RW, mman.MAP_PRIVATE | mman.MAP_ANONYMOUS | FIXED)
    assert mm.mincore(a, 3 * PAGE) == b"\1\0\0"
    mm.copy_out(a + 2 * PAGE, b"x")
    assert mm.mincore(a, 3 * PAGE - 5) == b"\1\0\1"
    assert errno_of(mm.mincore, a + 1, PAGE) == errno.EINVAL
    assert errno_of(mm.mincore, a, 4 * PAGE) == errno.ENOMEM


# --- the mmap handler: from an open file to a MappedFile ----------------------------------------
class FakeOpen:
    """Just what sys_mm.mapped_file reads of a FileDescription."""

    def __init__(self, source, flags: int, readonly_mount: bool = False) -> None:
        from types import SimpleNamespace

        from kvmbox.sentry.vfs.node import Attr
        self.source, self.flags = source, flags
        acc = flags & 3
        self.readable, self.writable = acc in (0, 2), acc in (1, 2)
        fs = SimpleNamespace(readonly=False)
        self.location = SimpleNamespace(path="/mnt/f", mount=SimpleNamespace(readonly=readonly_mount, fs=fs))
        self._attr = Attr(dev=7, ino=9, mode=0o100644, nlink=1, uid=0, gid=0, size=0)

    def mmap_source(self):
        if self.source is None:
            raise SyscallError(errno.ENODEV)
        return self.source

    def attr(self):
        return self._attr


def test_mapped_file_access_rules():
    import os

    from kvmbox.sentry.syscalls.sys_mm import mapped_file
    src = HostLike(PATTERN)
    rw = mapped_file(FakeOpen(src, os.O_RDWR), RW, True)
    assert rw.may_write and rw.writeback is not None and (rw.path, rw.dev, rw.ino) == ("/mnt/f", 7, 9)
    assert mapped_file(FakeOpen(src, os.O_RDWR), RW, False).writeback is None      # private
    ro = mapped_file(FakeOpen(src, os.O_RDONLY), R_, True)
    assert not ro.may_write and ro.writeback is None
    assert errno_of(mapped_file, FakeOpen(src, os.O_RDONLY), RW, True) == errno.EACCES
    assert errno_of(mapped_file, FakeOpen(src, os.O_WRONLY), R_, False) == errno.EACCES
    assert errno_of(mapped_file, FakeOpen(src, os.O_RDWR, readonly_mount=True), RW, True) == errno.EACCES
    assert errno_of(mapped_file, FakeOpen(None, os.O_RDONLY), R_, False) == errno.ENODEV
