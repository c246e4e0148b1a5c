"""The vDSO image (ELF structure, versions, code), the timekeeper's line, and special mappings."""
from __future__ import annotations

import errno
import shutil
import struct
import subprocess
import time

import pytest
from capstone import CS_ARCH_X86, CS_MODE_64, Cs

from kvmbox.abi import mman
from kvmbox.errors import SyscallError
from kvmbox.guest_stub import layout as L
from kvmbox.guest_stub import vdso
from kvmbox.mm.frames import FrameAllocator
from kvmbox.mm.manager import MemoryManager
from kvmbox.mm.memfile import MemoryFile
from kvmbox.mm.pagetables import PageTables
from kvmbox.sentry import timekeeper

from .test_pagetables import STUB_PDPT

NAMES = ("clock_gettime", "gettimeofday", "time", "getcpu")


@pytest.fixture(scope="module")
def image_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("vdso") / "vdso.so"
    path.write_bytes(vdso.build().image)
    return path


def _readelf(*args: str) -> str:
    if shutil.which("readelf") is None:
        pytest.skip("readelf (binutils) not installed")
    return subprocess.run(["readelf", "-W", *args], capture_output=True, text=True, check=True).stdout


def test_readelf_sees_every_symbol_at_linux_2_6(image_file):
    out = _readelf("--dyn-syms", "-V", str(image_file))
    for name in NAMES:
        for sym, bind in ((f"__vdso_{name}", "GLOBAL"), (name, "WEAK")):
            line = next(l for l in out.splitlines() if l.endswith(f" {sym}@@LINUX_2.6"))
            assert f"FUNC    {bind}" in line and " 6 " in line       # defined in .text
    assert "Flags: BASE  Index: 1  Cnt: 1  Name: linux-vdso.so.1" in out
    assert "Flags: none  Index: 2  Cnt: 1  Name: LINUX_2.6" in out


def test_readelf_headers_and_dynamic(image_file):
    out = _readelf("-h", "-l", "-d", str(image_file))
    assert "DYN (Shared object file)" in out and "Advanced Micro Devices X86-64" in out
    loads = [l for l in out.splitlines() if l.strip().startswith("LOAD")]
    assert len(loads) == 1 and " R E " in loads[0]
    assert "DYNAMIC" in out
    for tag in ("(HASH)", "(SYMTAB)", "(STRTAB)", "(STRSZ)", "(SYMENT)", "(VERSYM)", "(VERDEF)",
                "(VERDEFNUM)", "Library soname: [linux-vdso.so.1]"):
        assert tag in out, tag


def test_version_hash_is_the_one_glibc_asks_for():
    assert vdso.elf_hash(b"LINUX_2.6") == 0x3AE75F6           # glibc's VDSO_HASH_LINUX_2_6
    assert vdso.elf_hash(b"printf") == 0x077905A6


def test_sysv_hash_finds_every_symbol():
    """Walk DT_HASH the way musl/glibc do, from the image bytes alone."""
    img = vdso.build().image
    phoff, phnum = struct.unpack_from("<Q", img, 32)[0], struct.unpack_from("<H", img, 56)[0]
    dyn = next(struct.unpack_from("<IIQQ", img, phoff + 56 * i)[2] for i in range(phnum)
               if struct.unpack_from("<I", img, phoff + 56 * i)[0] == 2)
    tags = {}
    while (tag := struct.unpack_from("<qQ", img, dyn))[0]:
        tags[tag[0]] = tag[1]
        dyn += 16
    nbucket, nchain = struct.unpack_from("<II", img, tags[4])
    buckets = struct.unpack_from(f"<{nbucket}I", img, tags[4] + 8)
    chains = struct.unpack_from(f"<{nchain}I", img, tags[4] + 8 + 4 * nbucket)
    for name in [f"__vdso_{n}" for n in NAMES] + list(NAMES):
        i = buckets[vdso.elf_hash(name.encode()) % nbucket]
        while i:
            st_name, _info, _other, shndx, value, _size = struct.unpack_from("<IBBHQQ", img, tags[6] + 24 * i)
            if img[tags[5] + st_name:].split(b"\0")[0] == name.encode():
                break
            i = chains[i]
        assert i and shndx and value == vdso.build().symbols[name], name
        assert struct.unpack_from("<H", img, tags[0x6FFFFFF0] + 2 * i)[0] == 2


def test_cache_matches_the_source():
    """The on-disk cache (what a warm start-up uses) is exactly what keystone makes now."""
    fresh = {name: bytes.fromhex(code) for name, code in vdso._assemble().items()}
    assert fresh == vdso.assembled()


def test_fast_paths_read_only_vvar_and_syscall_only_in_fallbacks():
    img = vdso.build()
    for name in NAMES:
        off = img.symbols[name]
        code = vdso.assembled()[name]
        insns = list(Cs(CS_ARCH_X86, CS_MODE_64).disasm(code, L.VDSO_VIRT + off))
        assert sum(i.size for i in insns) == len(code)
        for i in insns:
            if "rip +" in i.op_str or "rip -" in i.op_str:
                disp = int(i.op_str.split("rip ")[1].split("]")[0].replace(" ", ""), 16)
                assert L.VVAR_VIRT <= i.address + i.size + disp < L.VVAR_VIRT + 0x80
        calls = [k for k, i in enumerate(insns) if i.mnemonic == "syscall"]
        # the only syscall is the fallback: `mov eax, nr; syscall; ret` at the very end
        assert calls == [len(insns) - 2]
        if name != "getcpu":
            assert "rdtsc" in [i.mnemonic for i in insns] and "shrd" in [i.mnemonic for i in insns]


# --- the timekeeper ------------------------------------------------------------------
def test_timekeeper_publishes_a_monotonic_line_close_to_the_host():
    mem = memoryview(bytearray(L.PAGE_SIZE))
    tk = timekeeper.Timekeeper(mem, 0)
    try:
        assert struct.unpack_from("<I", mem, L.VVAR_ENABLED)[0] == 0     # not before calibration
        assert tk.wait_ready(2)
        seq, enabled = struct.unpack_from("<II", mem, 0)
        assert seq % 2 == 0 and enabled == 1
        _tsc, mult, shift = struct.unpack_from("<QQI", mem, L.VVAR_TSC_BASE)
        assert shift == timekeeper.SHIFT and 0 < mult < 1 << 40
        prev = tk.now_ns(1)
        for _ in range(5):
            tk.rebase()
            now = tk.now_ns(1)
            assert now >= prev
            assert abs(now - time.clock_gettime_ns(1)) < 1_000_000
            assert abs(tk.now_ns(0) - time.time_ns()) < 1_000_000
            prev = now
        tk.allow(False)
        assert struct.unpack_from("<I", mem, L.VVAR_ENABLED)[0] == 0
        assert struct.unpack_from("<I", mem, 0)[0] % 2 == 0
    finally:
        tk.stop()
    assert not tk._thread.is_alive()


def test_fixed_point_survives_hours_of_ticks():
    """(dtsc * mult) >> 32 as the guest's mul/shrd computes it, for 10 hours at 2.4 GHz."""
    mult = int(1 / 2.445 * (1 << 32))
    dtsc = int(2.445e9 * 36_000)
    product = dtsc * mult
    assert product >= 1 << 64                     # would overflow a 64-bit multiply
    assert abs((product >> 32) - 36_000 * 10**9) < 10**6


# --- special mappings ----------------------------------------------------------------
def test_map_special_never_frees_its_frames():
    mf = MemoryFile(16 << 20)
    fa = FrameAllocator(mf)
    (phys, _), = fa.alloc(2)
    mf.write(phys, b"vvar")
    mm = MemoryManager(mf, fa, PageTables(mf, fa, STUB_PDPT))
    try:
        mm.map_special(L.VVAR_VIRT, phys, 1, 1, "[vvar]")
        mm.map_special(L.VDSO_VIRT, phys + L.PAGE_SIZE, 1, 5, "[vdso]")
        assert [(v.name, v.start) for v in mm.maps()] == [("[vvar]", L.VVAR_VIRT), ("[vdso]", L.VDSO_VIRT)]
        assert mm.copy_in(L.VVAR_VIRT, 4) == b"vvar"
        with pytest.raises(SyscallError) as e:
            mm.copy_out(L.VVAR_VIRT, b"x")
        assert e.value.errno == errno.EFAULT
        with pytest.raises(SyscallError) as e:
            mm.mprotect(L.VDSO_VIRT, L.PAGE_SIZE, 7)
        assert e.value.errno == errno.EACCES
        with pytest.raises(SyscallError):
            mm.map_special(L.VDSO_VIRT, phys, 1, 1, "[again]")
        with pytest.raises(SyscallError) as e:             # a private mapping, as on Linux
            mm.madvise(L.VVAR_VIRT, L.PAGE_SIZE, mman.MADV_REMOVE)
        assert e.value.errno == errno.EINVAL
        mm.madvise(L.VVAR_VIRT, L.PAGE_SIZE, mman.MADV_DONTNEED)   # never punches the special frame
        assert mm.copy_in(L.VVAR_VIRT, 4) == b"vvar"
        used = fa.used_pages
        mm.munmap(L.VVAR_VIRT, L.PAGE_SIZE)          # Linux lets a program unmap them too
        assert [v.name for v in mm.maps()] == ["[vdso]"] and fa.used_pages == used
        mm.release()
        assert fa.used_pages == 2                   # only the special frames are left
        assert mf.read(phys, 4) == b"vvar"
    finally:
        mf.close()
