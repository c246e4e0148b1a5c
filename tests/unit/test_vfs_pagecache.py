"""PageData: file bytes in MemoryFile frames, against a real MemoryFile and FrameAllocator."""
from __future__ import annotations

import errno

import pytest

from kvmbox.errors import SyscallError
from kvmbox.sentry.vfs.pagecache import SEEK_DATA, SEEK_HOLE, PageData
from tests.unit.vfs_fixtures import mem  # noqa: F401

PAGE = 4096


def test_write_read_grow(mem):
    mf, fa = mem
    d = PageData(mf, fa)
    assert d.read(0, 10) == b""
    assert d.write(5, b"hello") == 5
    assert d.size == 10
    assert d.read(0, 100) == b"\0" * 5 + b"hello"
    assert fa.used_pages == 1


def test_cross_page_and_holes(mem):
    mf, fa = mem
    d = PageData(mf, fa)
    data = bytes(range(256)) * 40          # 10240 bytes
    d.write(PAGE - 100, data)
    assert d.read(PAGE - 100, len(data)) == data
    d.write(10 * PAGE, b"x")
    assert d.size == 10 * PAGE + 1
    assert d.read(5 * PAGE, 10) == bytes(10)          # a hole reads zeros
    assert fa.used_pages == 5                          # pages 0..3 and 10; the hole is unbacked
    assert d.seek_data(5 * PAGE, SEEK_DATA) == 10 * PAGE
    assert d.seek_data(0, SEEK_HOLE) == 4 * PAGE
    with pytest.raises(SyscallError) as e:
        d.seek_data(d.size, SEEK_DATA)
    assert e.value.errno == errno.ENXIO


def test_truncate_frees_and_zeroes(mem):
    mf, fa = mem
    d = PageData(mf, fa)
    d.write(0, b"a" * (3 * PAGE))
    used = fa.used_pages
    d.truncate(PAGE + 10)
    assert fa.used_pages == used - 1
    d.truncate(3 * PAGE)
    assert d.read(PAGE, PAGE + 20) == b"a" * 10 + bytes(PAGE + 10)


def test_truncate_keeps_frames_while_mapped(mem):
    mf, fa = mem
    d = PageData(mf, fa)
    d.write(0, b"b" * (2 * PAGE))
    d.backing.refs += 1                    # a MAP_SHARED Vma
    used = fa.used_pages
    d.truncate(0)
    assert fa.used_pages == used
    d.truncate(2 * PAGE)
    assert d.read(0, 2 * PAGE) == bytes(2 * PAGE)
    d.release()                            # the name goes; the mapping still holds the frames
    assert fa.used_pages == used
    d.backing.refs -= 1                    # what MemoryManager does at munmap


def test_release_frees_after_last_holder(mem):
    mf, fa = mem
    d = PageData(mf, fa)
    d.write(0, b"z" * PAGE * 2)
    d.acquire()
    d.release()
    assert fa.used_pages == 2
    d.release()
    assert fa.used_pages == 0


def test_short_write_then_enospc_when_frames_run_out(mem):
    """As a full tmpfs: what fits is written, the next write gets ENOSPC."""
    mf, fa = mem
    d = PageData(mf, fa)
    n = d.write(0, b"\1" * (32 << 20))
    assert 0 < n < 32 << 20 and n % 4096 == 0 and d.size == n
    assert d.read(n - 1, 2) == b"\1"
    with pytest.raises(SyscallError) as e:
        d.write(n, b"x")
    assert e.value.errno == errno.ENOSPC


def test_map_source(mem):
    mf, fa = mem
    d = PageData(mf, fa)
    d.write(0, b"abc")
    src = d.map_source()
    assert src.size == 3 and src.fill(1, 100) == b"bc"
    assert src.shared_backing() is d.backing
