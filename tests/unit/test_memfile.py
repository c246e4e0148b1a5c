"""MemoryFile: read/write, punch zeroes, invalidate keeps content, bounds."""
from __future__ import annotations

import os

import pytest

from kvmbox.mm.memfile import MemoryFile

MIB = 1 << 20


@pytest.fixture
def mf():
    m = MemoryFile(4 * MIB)
    yield m
    m.close()


def test_size_fd_and_view(mf):
    assert mf.size == 4 * MIB
    assert os.fstat(mf.fd).st_size == 4 * MIB
    assert len(mf.view) == 4 * MIB
    assert mf.host_address != 0


def test_read_write_round_trip(mf):
    mf.write(0x1234, b"kvmbox")
    assert mf.read(0x1234, 6) == b"kvmbox"
    assert bytes(mf.view[0x1234:0x123A]) == b"kvmbox"
    assert os.pread(mf.fd, 6, 0x1234) == b"kvmbox"          # the memfd itself sees it


def test_punch_zeroes_the_hole_only(mf):
    mf.write(0x2000, b"x" * 0x3000)
    mf.punch(0x2000, 0x2000)
    assert mf.read(0x2000, 0x2000) == bytes(0x2000)
    assert mf.read(0x4000, 0x1000) == b"x" * 0x1000         # outside the hole: intact


def test_invalidate_keeps_content(mf):
    mf.write(0x5000, b"keep me")
    mf.invalidate(0x5000, 0x1000)
    assert mf.read(0x5000, 7) == b"keep me"


@pytest.mark.parametrize("off,n", [(-1, 1), (4 * MIB, 1), (4 * MIB - 1, 2)])
def test_out_of_range_refused(mf, off, n):
    with pytest.raises(ValueError):
        mf.read(off, n)
    with pytest.raises(ValueError):
        mf.punch(off, n)


def test_bad_size():
    with pytest.raises(ValueError):
        MemoryFile(12345)


def test_close_closes_fd():
    m = MemoryFile(MIB)
    fd = m.fd
    m.close()
    with pytest.raises(OSError):
        os.fstat(fd)
    m.close()                                                 # idempotent
