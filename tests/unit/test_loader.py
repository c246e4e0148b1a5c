"""Unit tests for the ELF loader: parsing, every validation error, segment mapping, real gcc output."""
from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from kvmbox.errors import CannotExecute, ProgramNotFound
from kvmbox.guest_stub import layout
from kvmbox.sentry.loader import load_elf, parse_elf, plan_mappings, read_executable

from .fake_mm import FakeMM

PAGE = 4096
R, W, X = 4, 2, 1                      # PF_* written out here, not imported
PROT_R, PROT_W, PROT_X = 1, 2, 4
DYN_BASE = layout.ELF_ET_DYN_BASE


# --- a tiny ELF writer (independent of kvmbox.abi.elf) ------------------------------

def make_elf(loads: list[dict], *, e_type: int = 2, entry: int | None = None, machine: int = 62,
             ei_class: int = 2, ei_data: int = 1, extra: list[tuple] = (), phentsize: int = 56,
             phnum: int | None = None, tail: bytes = b"") -> bytes:
    """ELF64 with the given PT_LOADs (dict: vaddr, data, memsz, flags[, offset]) and extra phdrs.

    extra: (p_type, p_flags, p_offset, p_vaddr, p_filesz, p_memsz) tuples, put first.
    Segment data goes on its own file pages at offsets congruent to vaddr mod PAGE.
    """
    n = len(loads) + len(extra)
    cursor = (64 + n * 56 + PAGE - 1) // PAGE * PAGE
    body = bytearray(cursor)
    phdrs = []
    for p_type, flags, off, vaddr, filesz, memsz in extra:
        phdrs.append(struct.pack("<IIQQQQQQ", p_type, flags, off, vaddr, vaddr, filesz, memsz, 8))
    for seg in loads:
        data = seg.get("data", b"")
        off = seg.get("offset", cursor + seg["vaddr"] % PAGE)
        if off + len(data) > len(body):
            body.extend(bytes(off + len(data) - len(body)))
        body[off:off + len(data)] = data
        cursor = (max(cursor, off + len(data)) + PAGE - 1) // PAGE * PAGE
        phdrs.append(struct.pack("<IIQQQQQQ", 1, seg["flags"], off, seg["vaddr"], seg["vaddr"],
                                 seg.get("filesz", len(data)), seg.get("memsz", len(data)), PAGE))
    if entry is None:
        entry = loads[0]["vaddr"] if loads else 0
    ident = b"\x7fELF" + bytes([ei_class, ei_data, 1, 0]) + bytes(8)
    ehdr = struct.pack("<16sHHIQQQIHHHHHH", ident, e_type, machine, 1, entry, 64, 0, 0, 64,
                       phentsize, n if phnum is None else phnum, 64, 0, 0)
    body[0:64] = ehdr
    table = b"".join(phdrs)
    body[64:64 + len(table)] = table
    return bytes(body) + tail


TEXT = bytes(range(1, 200))
DATA = b"D" * 300


def two_segments(**kw) -> bytes:
    return make_elf([
        dict(vaddr=0x401000, data=TEXT, flags=R | X),
        dict(vaddr=0x403010, data=DATA, memsz=0x2000, flags=R | W),
    ], entry=0x401010, **kw)


def load(data: bytes, mm: FakeMM | None = None, **kw):
    mm = mm or FakeMM()
    args = dict(argv=[b"prog", b"arg"], envp=[b"A=1"], execfn=b"/bin/prog", hwcap=0x178BFBFF,
                hwcap2=2, random_bytes=bytes(range(16)), uid=1, euid=2, gid=3, egid=4)
    args.update(kw)
    return load_elf(data, mm, **args), mm


def auxv_of(mm: FakeMM, sp: int) -> dict[int, int]:
    argc = mm.u64(sp)
    p = sp + 8 * (argc + 1)
    assert mm.u64(p) == 0 or argc == 0
    p += 8
    while mm.u64(p):
        p += 8
    p += 8
    out = {}
    while True:
        key, val = mm.u64(p), mm.u64(p + 8)
        if key == 0:
            return out
        out[key] = val
        p += 16


# --- parsing and mapping -----------------------------------------------------------

def test_parse_two_segments():
    img = parse_elf(two_segments(), "p")
    assert [(s.vaddr, s.filesz, s.memsz) for s in img.segments] == [
        (0x401000, len(TEXT), len(TEXT)), (0x403010, len(DATA), 0x2000)]
    assert img.entry == 0x401010 and img.load_bias == 0 and img.interp is None
    assert img.phdr_vaddr is None          # headers are in no segment here


def test_map_contents_prot_and_bss_zeroed():
    li, mm = load(two_segments())
    assert mm.read(0x401000, len(TEXT)) == TEXT
    assert mm.read(0x401000 + len(TEXT), PAGE - len(TEXT)) == bytes(PAGE - len(TEXT))
    assert mm.prot_at(0x401000) == PROT_R | PROT_X
    assert mm.read(0x403010, len(DATA)) == DATA
    assert mm.read(0x403000, 0x10) == bytes(0x10)
    end = 0x403010 + 0x2000
    assert mm.read(0x403010 + len(DATA), end - 0x403010 - len(DATA)) == bytes(end - 0x403010 - len(DATA))
    for page in (0x403000, 0x404000, 0x405000):
        assert mm.prot_at(page) == PROT_R | PROT_W
    assert mm.prot_at(0x402000) is None and mm.prot_at(0x406000) is None
    assert li.brk_start == mm.brk_base == 0x406000
    assert li.entry == 0x401010 and li.load_bias == 0


def test_file_page_tail_after_filesz_is_zero():
    # The file holds junk right after the segment's file bytes: it must not be copied.
    data = bytearray(make_elf([dict(vaddr=0x401000, data=b"\xcc" * 16, memsz=64, flags=R | X)]))
    off = struct.unpack_from("<Q", data, 64 + 8)[0]
    data[off + 16:off + 64] = b"\xee" * 48
    _, mm = load(bytes(data))
    assert mm.read(0x401000, 64) == b"\xcc" * 16 + bytes(48)


def test_shared_page_merges_permissions_and_keeps_both():
    elf_bytes = make_elf([
        dict(vaddr=0x400100, data=b"T" * 0x700, flags=R | X),
        dict(vaddr=0x400900, data=b"W" * 0x100, memsz=0x1000, flags=R | W),
    ], entry=0x400100)
    _, mm = load(elf_bytes)
    assert mm.prot_at(0x400000) == PROT_R | PROT_W | PROT_X
    assert mm.prot_at(0x401000) == PROT_R | PROT_W
    assert mm.read(0x400100, 0x700) == b"T" * 0x700
    assert mm.read(0x400800, 0x100) == bytes(0x100)
    assert mm.read(0x400900, 0x100) == b"W" * 0x100
    assert mm.read(0x400A00, 0x1000 - 0x100) == bytes(0xF00)


def test_plan_mappings_merges_equal_neighbours():
    img = parse_elf(make_elf([
        dict(vaddr=0x400000, data=b"a" * 0x1000, flags=R),
        dict(vaddr=0x401000, data=b"b" * 0x10, flags=R),
        dict(vaddr=0x402000, data=b"c" * 0x10, flags=R | X),
    ], entry=0x402000), "p")
    assert plan_mappings(img) == [(0x400000, 0x2000, PROT_R), (0x402000, 0x1000, PROT_R | PROT_X)]


def test_plan_mappings_three_segments_in_one_page():
    img = parse_elf(make_elf([
        dict(vaddr=0x400100, data=b"a" * 0x10, flags=R),
        dict(vaddr=0x400300, data=b"b" * 0x10, flags=R | X),
        dict(vaddr=0x400500, data=b"c" * 0x10, memsz=0x2000, flags=R | W),
    ], entry=0x400300), "p")
    assert plan_mappings(img) == [(0x400000, 0x1000, PROT_R | PROT_W | PROT_X),
                                  (0x401000, 0x2000, PROT_R | PROT_W)]


def test_plan_mappings_shared_page_in_the_middle_of_runs():
    img = parse_elf(make_elf([
        dict(vaddr=0x400000, data=b"a" * 0x2800, flags=R | X),
        dict(vaddr=0x402900, data=b"b" * 0x10, memsz=0x1800, flags=R | W),
    ]), "p")
    assert plan_mappings(img) == [(0x400000, 0x2000, PROT_R | PROT_X),
                                  (0x402000, 0x1000, PROT_R | PROT_W | PROT_X),
                                  (0x403000, 0x2000, PROT_R | PROT_W)]  # ends at 0x404100


def test_static_pie_bias_and_phdr():
    # ET_DYN linked at 0 with its headers in the first segment (offset 0).
    elf_bytes = make_elf([
        dict(vaddr=0, offset=0, data=b"", filesz=0x200, memsz=0x200, flags=R),
        dict(vaddr=0x1000, data=b"\x90" * 32, flags=R | X),
    ], e_type=3, entry=0x1004)
    li, mm = load(elf_bytes)
    assert li.load_bias == DYN_BASE
    assert li.entry == DYN_BASE + 0x1004
    assert li.phdr_addr == DYN_BASE + 64
    av = auxv_of(mm, li.initial_sp)
    assert av[3] == DYN_BASE + 64 and av[9] == DYN_BASE + 0x1004 and av[5] == 2 and av[4] == 56
    assert mm.read(DYN_BASE, 4) == b"\x7fELF"
    assert mm.read(DYN_BASE + 0x1000, 32) == b"\x90" * 32


def test_pt_phdr_wins_and_gnu_stack_recorded():
    elf_bytes = make_elf([dict(vaddr=0x401000, data=b"x" * 16, flags=R | X)],
                         extra=[(6, R, 64, 0x400040, 112, 112), (0x6474E551, R | W | X, 0, 0, 0, 0)])
    img = parse_elf(elf_bytes, "p")
    assert img.phdr_vaddr == 0x400040 and img.exec_stack is True
    assert parse_elf(two_segments(), "p").exec_stack is False


def _with_interp(base: bytes, interp: bytes = b"/lib64/ld-linux-x86-64.so.2\0") -> bytes:
    """`base` (made with a placeholder PT_INTERP first) pointing at `interp` appended to it."""
    off = len(base)
    data = bytearray(base + interp)
    struct.pack_into("<IIQQQQQQ", data, 64, 3, R, off, 0, 0, len(interp), len(interp), 1)
    return bytes(data)


def test_interp_needs_a_loader():
    data = _with_interp(make_elf([dict(vaddr=0x401000, data=b"x" * 16, flags=R | X)],
                                 extra=[(3, R, 0, 0, 0, 0)]))
    with pytest.raises(CannotExecute) as ei:
        load(data)
    assert str(ei.value) == ("/bin/prog: dynamically linked, and there is no file system to "
                             "load its interpreter /lib64/ld-linux-x86-64.so.2 from")


def test_interp_loaded_top_down_with_auxv():
    from kvmbox.sentry.loader import ElfFile
    prog = _with_interp(make_elf([dict(vaddr=0x1000, data=TEXT, flags=R | X),
                                  dict(vaddr=0x3000, data=DATA, memsz=0x1800, flags=R | W)],
                                 e_type=3, entry=0x1010, extra=[(3, R, 0, 0, 0, 0)]))
    ld = make_elf([dict(vaddr=0x0, data=b"\x7fELF-ish" * 10, flags=R),
                   dict(vaddr=0x1000, data=b"LDTEXT" * 20, flags=R | X),
                   dict(vaddr=0x3000, data=b"LDDATA", memsz=0x2000, flags=R | W)],
                  e_type=3, entry=0x1004)
    asked = []

    def open_interp(path: str) -> ElfFile:
        asked.append(path)
        return ElfFile.of_bytes(ld)
    li, mm = load(prog, open_interp=open_interp)
    assert asked == ["/lib64/ld-linux-x86-64.so.2"] and li.interp == asked[0]
    span = 0x5000
    base = mm.mmap_top - span                                    # where a non-fixed mapping lands
    assert li.interp_base == base and li.entry == base + 0x1004
    av = auxv_of(mm, li.initial_sp)
    assert av[7] == base                                         # AT_BASE
    assert li.load_bias == DYN_BASE - 0x1000                     # first PT_LOAD at DYN_BASE
    assert av[9] == li.load_bias + 0x1010                        # AT_ENTRY: the program's
    assert av[3] == li.phdr_addr and av[5] == 3
    assert mm.read(base + 0x1000, 6) == b"LDTEXT" and mm.prot_at(base + 0x1000) == PROT_R | PROT_X
    assert mm.read(base + 0x3000, 8) == b"LDDATA\0\0" and mm.prot_at(base + 0x4000) == PROT_R | PROT_W
    assert mm.prot_at(base + 0x2000) is None                     # gaps stay unmapped
    assert li.brk_start == mm.brk_base                           # brk follows the program


def test_interp_errors_name_the_interpreter():
    from kvmbox.sentry.loader import ElfFile
    prog = _with_interp(make_elf([dict(vaddr=0x401000, data=b"x" * 16, flags=R | X)],
                                 extra=[(3, R, 0, 0, 0, 0)]))
    mm = FakeMM()
    with pytest.raises(CannotExecute) as ei:
        load(prog, mm, open_interp=lambda p: ElfFile.of_bytes(b"#!/bin/sh\n"))
    assert str(ei.value) == ("/bin/prog: interpreter /lib64/ld-linux-x86-64.so.2: "
                             "not an ELF file (bad magic)")
    assert mm.pages == {}                                        # nothing mapped before the check


# --- validation ----------------------------------------------------------------------

def _patch(data: bytes, fmt: str, off: int, *vals) -> bytes:
    b = bytearray(data)
    struct.pack_into(fmt, b, off, *vals)
    return bytes(b)


PH1 = 64 + 56                      # second program header in two_segments()
BAD = [
    ("empty", b"", "p: exec format error (empty file)"),
    ("magic", b"#!/bin/sh\n", "p: not an ELF file (bad magic)"),
    ("short", b"\x7fELF\x02\x01", "p: truncated ELF header"),
    ("short64", two_segments()[:40], "p: truncated ELF header"),
    ("class32", make_elf([dict(vaddr=0x401000, data=b"x", flags=R | X)], ei_class=1), "p: 32-bit ELF not supported"),
    ("class9", make_elf([dict(vaddr=0x401000, data=b"x", flags=R | X)], ei_class=9), "p: bad ELF class 9"),
    ("bigendian", make_elf([dict(vaddr=0x401000, data=b"x", flags=R | X)], ei_data=2), "p: big-endian ELF not supported"),
    ("aarch64", make_elf([dict(vaddr=0x401000, data=b"x", flags=R | X)], machine=183), "p: wrong architecture: aarch64 (expected x86-64)"),
    ("i386", make_elf([dict(vaddr=0x401000, data=b"x", flags=R | X)], machine=3), "p: wrong architecture: i386 (expected x86-64)"),
    ("machine?", make_elf([dict(vaddr=0x401000, data=b"x", flags=R | X)], machine=999), "p: wrong architecture: unknown machine 999 (expected x86-64)"),
    ("rel", make_elf([dict(vaddr=0x401000, data=b"x", flags=R | X)], e_type=1), "p: not an executable: relocatable object (ET_REL)"),
    ("core", make_elf([dict(vaddr=0x401000, data=b"x", flags=R | X)], e_type=4), "p: not an executable: core dump (ET_CORE)"),
    ("phentsize", two_segments(phentsize=32), "p: bad program header size 32 (expected 56)"),
    ("phnum0", two_segments(phnum=0), "p: no program headers"),
    ("phnum_huge", two_segments(phnum=1200), "p: too many program headers (1200)"),
    ("phdrs_past_eof", two_segments(phnum=200), "p: truncated program headers"),
    ("no_load", make_elf([], extra=[(4, R, 0, 0, 0, 0)]), "p: no loadable segments"),
    ("filesz>memsz", _patch(two_segments(), "<QQ", PH1 + 32, 0x3000, 0x2000), "p: segment 1: p_filesz 0x3000 > p_memsz 0x2000"),
    ("seg_past_eof", _patch(two_segments(), "<Q", PH1 + 32, 0x1800), "p: segment 1: truncated (file data past end of file)"),
    ("offset_overflow", _patch(_patch(two_segments(), "<Q", PH1 + 8, 2**64 - 0x1000 + 0x10), "<Q", PH1 + 32, 0x2000), "p: segment 1: file range overflows"),
    ("vaddr_overflow", _patch(two_segments(), "<Q", PH1 + 16, 2**64 - 0x1000 + 0x10), "p: segment 1: address range overflows"),
    ("beyond_user_top", _patch(two_segments(), "<Q", PH1 + 16, layout.USER_TOP - 0x1000 + 0x10), "p: segment 1: address range beyond the user address space"),
    ("below_min_addr", make_elf([dict(vaddr=0x1000, data=b"x", flags=R | X)]), "p: segment 0: address 0x1000 below mmap_min_addr 0x10000"),
    ("misaligned", _patch(two_segments(), "<Q", PH1 + 16, 0x403020), "p: segment 1: p_offset and p_vaddr differ modulo the page size"),
    ("overlap", make_elf([dict(vaddr=0x401000, data=b"x" * 0x100, flags=R | X),
                          dict(vaddr=0x401080, data=b"y" * 0x10, flags=R | W)]), "p: segments 0 and 1 overlap"),
    ("entry_outside", make_elf([dict(vaddr=0x401000, data=b"x" * 16, flags=R | X)], entry=0x500000), "p: entry point 0x500000 is outside every executable segment"),
    ("entry_in_data", two_segments()[:24] + struct.pack("<Q", 0x403010) + two_segments()[32:], "p: entry point 0x403010 is outside every executable segment"),
    ("dyn_span_too_big", make_elf([dict(vaddr=0, data=b"x", flags=R | X),
                                   dict(vaddr=0x3000_0000_0000, data=b"y", flags=R | W)], e_type=3),
     "p: segment 1: address range beyond the user address space"),
]


@pytest.mark.parametrize("name,data,message", BAD, ids=[b[0] for b in BAD])
def test_validation_errors(name, data, message):
    with pytest.raises(CannotExecute) as ei:
        parse_elf(data, "p")
    text = str(ei.value)
    assert "\n" not in text and text.startswith("p: ")
    assert text == message


def test_bad_input_never_touches_mm():
    mm = FakeMM()
    with pytest.raises(CannotExecute):
        load(two_segments(phentsize=32), mm)
    assert mm.pages == {} and mm.brk_base is None


def test_argument_list_too_long():
    mm = FakeMM()
    with pytest.raises(CannotExecute, match=r"^/bin/prog: argument list too long$"):
        load(two_segments(), mm, envp=[b"X" * 100_000] * 30)
    assert mm.pages == {}


# --- paths -----------------------------------------------------------------------------

def test_read_executable_paths(tmp_path: Path):
    with pytest.raises(ProgramNotFound, match=r"/nope: no such file or directory$"):
        read_executable(tmp_path / "nope")
    with pytest.raises(CannotExecute, match=r": is a directory$"):
        read_executable(tmp_path)
    f = tmp_path / "noexec"
    f.write_bytes(two_segments())
    f.chmod(0o644)
    with pytest.raises(CannotExecute, match=r"noexec: permission denied$"):
        read_executable(f)
    f.chmod(0o755)
    assert read_executable(f) == two_segments()
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo, 0o755)
    with pytest.raises(CannotExecute, match=r"fifo: not a regular file$"):
        read_executable(fifo)
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    empty.chmod(0o755)
    with pytest.raises(CannotExecute, match=r"empty: exec format error \(empty file\)$"):
        load_elf(str(empty), FakeMM(), argv=[], envp=[], execfn=b"e", hwcap=0, hwcap2=0,
                 random_bytes=bytes(16), uid=0, euid=0, gid=0, egid=0)


# --- real gcc output, checked against readelf ------------------------------------------

def _readelf(path: Path) -> tuple[int, list[tuple], int | None, int]:
    """(entry, [(type, offset, vaddr, filesz, memsz, flags)], PHDR vaddr, count) from readelf -lW."""
    out = subprocess.run(["readelf", "-lW", str(path)], capture_output=True, text=True, check=True).stdout
    entry = int(re.search(r"Entry point (0x[0-9a-f]+)", out).group(1), 16)
    count = int(re.search(r"There are (\d+) program headers", out).group(1))
    rows = []
    for m in re.finditer(r"^\s+(\w+)\s+(0x[0-9a-f]+) (0x[0-9a-f]+) 0x[0-9a-f]+ (0x[0-9a-f]+) (0x[0-9a-f]+) ([RWE ]{3})",
                         out, re.M):
        rows.append((m.group(1), *(int(m.group(i), 16) for i in range(2, 6)), m.group(6)))
    phdr = next((r[2] for r in rows if r[0] == "PHDR"), None)
    return entry, rows, phdr, count


@pytest.fixture(scope="module")
def gcc_programs(tmp_path_factory) -> dict[str, Path]:
    if not shutil.which("gcc") or not shutil.which("readelf"):
        pytest.skip("gcc/readelf not installed")
    d = tmp_path_factory.mktemp("gcc")
    (d / "m.c").write_text("int main(){return 0;}\n")
    progs = {}
    for kind, flags in (("static", ["-static"]), ("static-pie", ["-static-pie"]), ("dynamic", [])):
        r = subprocess.run(["gcc", *flags, "-o", str(d / kind), str(d / "m.c")], capture_output=True)
        if r.returncode == 0:
            progs[kind] = d / kind
    if "static" not in progs:
        pytest.skip("gcc -static failed (no static libc)")
    return progs


@pytest.mark.parametrize("kind", ["static", "static-pie"])
def test_gcc_program_matches_readelf(gcc_programs, kind):
    if kind not in gcc_programs:
        pytest.skip(f"gcc cannot build {kind} here")
    path = gcc_programs[kind]
    entry, rows, phdr, count = _readelf(path)
    data = path.read_bytes()
    li, mm = load(str(path), execfn=str(path).encode())
    bias = DYN_BASE if kind == "static-pie" else 0
    assert li.load_bias == bias and li.entry == entry + bias
    loads = [r for r in rows if r[0] == "LOAD"]
    assert loads
    for _, off, vaddr, filesz, memsz, flags in loads:
        assert mm.read(vaddr + bias, filesz) == data[off:off + filesz]
        assert mm.read(vaddr + bias + filesz, memsz - filesz) == bytes(memsz - filesz)
        want = (PROT_R if "R" in flags else 0) | (PROT_W if "W" in flags else 0) | (PROT_X if "E" in flags else 0)
        assert mm.prot_at(vaddr + bias + memsz - 1) & want == want
    av = auxv_of(mm, li.initial_sp)
    if phdr is None:                       # headers live in the PT_LOAD that covers offset 64
        first = next(r for r in loads if r[1] == 0)
        phdr = first[2] + 64
    assert av[3] == phdr + bias == li.phdr_addr
    e_phoff = struct.unpack_from("<Q", data, 32)[0]
    assert mm.read(av[3], 56 * count) == data[e_phoff:e_phoff + 56 * count]
    assert av[5] == count and av[9] == entry + bias and av[7] == 0
    top_end = max(v + m for _, _, v, _, m, _ in loads) + bias
    assert li.brk_start == mm.brk_base == (top_end + PAGE - 1) // PAGE * PAGE


def test_gcc_dynamic_program_needs_its_interpreter(gcc_programs):
    if "dynamic" not in gcc_programs:
        pytest.skip("gcc cannot build a dynamic program here")
    path = gcc_programs["dynamic"]
    with pytest.raises(CannotExecute, match=r"load its interpreter /.*ld-linux"):
        load(str(path))


def test_mutated_headers_give_cannotexecute_or_load_never_a_traceback():
    import random
    rng = random.Random(1234)
    good = make_elf([
        dict(vaddr=0x401000, data=TEXT, flags=R | X),
        dict(vaddr=0x403010, data=DATA, memsz=0x2000, flags=R | W),
    ], entry=0x401010, extra=[(7, R, 0x2010, 0x403010, 16, 64), (0x6474E551, R | W, 0, 0, 0, 0)])
    for _ in range(3000):
        b = bytearray(good)
        for _ in range(rng.randint(1, 4)):
            pos = rng.randrange(64 + 56 * 4)                       # header and phdr bytes
            b[pos] = rng.choice([0, 0xFF, 0x7F, 0x80, rng.randrange(256)])
        try:
            load(bytes(b), FakeMM(max_pages=4096))
        except CannotExecute as e:
            assert "\n" not in str(e) and str(e).startswith("/bin/prog: ")
