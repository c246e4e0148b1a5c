"""Guest RAM, both kinds (MemoryFile: a memfd; AnonMemory: anonymous, for KVM): read/write,
punch zeroes, invalidate keeps content, bounds; AnonMemory's alignment, huge-page advice and
that a host fork does not inherit it."""
from __future__ import annotations

import os

import pytest

from kvmbox.mm.memfile import HUGE_PAGE, AnonMemory, MemoryFile

MIB = 1 << 20
PAGE = 4096


@pytest.fixture(params=[MemoryFile, AnonMemory])
def mf(request):
    m = request.param(4 * MIB)
    yield m
    m.close()


@pytest.fixture
def memfd():
    m = MemoryFile(4 * MIB)
    yield m
    m.close()


def test_size_fd_and_view(memfd):
    mf = memfd
    assert mf.size == 4 * MIB
    assert os.fstat(mf.fd).st_size == 4 * MIB
    assert len(mf.view) == 4 * MIB
    assert mf.host_address != 0


def test_read_write_round_trip(mf):
    mf.write(0x1234, b"kvmbox")
    assert mf.read(0x1234, 6) == b"kvmbox"
    assert bytes(mf.view[0x1234:0x123A]) == b"kvmbox"
    assert len(mf.view) == mf.size == 4 * MIB


def test_the_memfd_itself_sees_writes(memfd):
    memfd.write(0x1234, b"kvmbox")
    assert os.pread(memfd.fd, 6, 0x1234) == b"kvmbox"


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


@pytest.mark.parametrize("cls", [MemoryFile, AnonMemory])
def test_bad_size(cls):
    with pytest.raises(ValueError):
        cls(12345)


def test_close_closes_fd():
    m = MemoryFile(MIB)
    fd = m.fd
    m.close()
    with pytest.raises(OSError):
        os.fstat(fd)
    m.close()                                                 # idempotent


# --- AnonMemory ------------------------------------------------------------------

def _maps_line(pid: int, addr: int) -> list[str]:
    with open(f"/proc/{pid}/maps") as f:
        return [line for line in f if int(line.split("-")[0], 16) <= addr < int(line.split("-")[1].split()[0], 16)]


def _smaps_of(addr: int) -> dict[str, str]:
    """The /proc/self/smaps fields of the mapping holding `addr`."""
    out: dict[str, str] = {}
    mine = False
    with open("/proc/self/smaps") as f:
        for line in f:
            head = line.split()[0]
            if "-" in head and not head.endswith(":"):
                lo, hi = (int(x, 16) for x in head.split("-"))
                mine = lo <= addr < hi
            elif mine and ":" in head:
                out[head.rstrip(":")] = line.split(None, 1)[1].strip()
    return out


def test_anon_memory_is_huge_page_aligned_and_advised():
    m = AnonMemory(8 * MIB)
    try:
        assert m.host_address % HUGE_PAGE == 0 and m.fd == -1
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
            thp = "[never]" not in f.read()
        assert m.huge == thp
        fields = _smaps_of(m.host_address)
        assert {"dc", "nr"} <= set(fields["VmFlags"].split())  # MADV_DONTFORK, MAP_NORESERVE
        if thp:
            assert "hg" in fields["VmFlags"].split()            # MADV_HUGEPAGE
    finally:
        m.close()


def test_a_host_fork_does_not_inherit_guest_ram():
    m = AnonMemory(4 * MIB)
    try:
        m.write(0, b"secret")
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:                                           # the child: is the range mapped?
            os.close(r)
            os.write(w, b"mapped" if _maps_line(os.getpid(), m.host_address) else b"absent")
            os._exit(0)
        os.close(w)
        said = os.read(r, 16)
        os.close(r)
        os.waitpid(pid, 0)
        assert said == b"absent"
        assert m.read(0, 6) == b"secret"
    finally:
        m.close()


def test_anon_punch_gives_the_memory_back():
    m = AnonMemory(4 * MIB)
    try:
        m.view[:] = b"\xff" * (4 * MIB)
        before = int(_smaps_of(m.host_address)["Rss"].split()[0])
        m.punch(0, 4 * MIB)
        after = int(_smaps_of(m.host_address)["Rss"].split()[0])
        assert before >= 4096 and after == 0, (before, after)
        assert m.read(0, 4 * MIB) == bytes(4 * MIB)
    finally:
        m.close()


def test_anon_recycle_zeroes_and_keeps_the_memory():
    m = AnonMemory(4 * MIB)
    try:
        m.view[:] = b"\xff" * (4 * MIB)
        before = int(_smaps_of(m.host_address)["Rss"].split()[0])
        m.recycle(PAGE, 4 * MIB - 2 * PAGE)
        after = int(_smaps_of(m.host_address)["Rss"].split()[0])
        assert after == before, (before, after)
        assert m.read(0, PAGE) == b"\xff" * PAGE and m.read(4 * MIB - PAGE, PAGE) == b"\xff" * PAGE
        assert m.read(PAGE, 4 * MIB - 2 * PAGE) == bytes(4 * MIB - 2 * PAGE)
    finally:
        m.close()
