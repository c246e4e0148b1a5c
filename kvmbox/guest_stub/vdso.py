"""The vDSO: its assembly source and the ELF64 shared object image built around it (cached on disk).

The image is what Linux maps as [vdso] and names in AT_SYSINFO_EHDR: an ET_DYN
with one R+X PT_LOAD (linked at 0, like Linux's), a read-only PT_DYNAMIC,
SysV DT_HASH, dynsym/dynstr, and symbol versioning (versym + verdef with
"LINUX_2.6"), which is what glibc's dl-vdso (_dl_vdso_vsym) and musl's
__vdsosym look up.  It exports __vdso_clock_gettime, __vdso_gettimeofday,
__vdso_time, __vdso_getcpu and the unprefixed weak aliases.

The code reads the [vvar] page mapped one page below the image (layout.VVAR_*,
RIP-relative) under a seqlock and computes time from `rdtsc` with a 128-bit
fixed-point product (mul + shrd), so no call leaves the guest.  Clock ids it
does not serve, or `enabled` == 0, take the real `syscall` (which reaches the
Sentry as usual); so does getcpu once a thread has narrowed its affinity.  A bad pointer faults in the guest, as Linux's vDSO does.

Each exported function is assembled on its own (keystone, at its final place,
so the RIP-relative displacements are exact); the pieces are cached like the
stub's, so a warm start-up never imports keystone.
"""
from __future__ import annotations

import functools
import struct

from kvmbox.guest_stub import layout as L
from kvmbox.guest_stub.asmcache import load_or_assemble
from kvmbox.record import record

SONAME = "linux-vdso.so.1"
VERSION = "LINUX_2.6"
TEXT_OFF = 0x800                     # .text starts here in the image; the ELF tables fit below it
_NSEC = 1_000_000_000
_SYS_GETTIMEOFDAY, _SYS_TIME, _SYS_CLOCK_GETTIME, _SYS_GETCPU = 96, 201, 228, 309


def _read_ns(add_offset: str) -> str:
    """Seqlock read of the clock into rax (ns); jumps to `fallback` when disabled.
    Clobbers rax, rcx, rdx, r8, r9; `add_offset` adds the clock's offset to rax."""
    return f"""retry:
mov r8d, dword ptr [rip + {{D+{L.VVAR_SEQ}}}]
test r8b, 1
jnz spin
cmp dword ptr [rip + {{D+{L.VVAR_ENABLED}}}], 0
je fallback
lfence
rdtsc
shl rdx, 32
or rax, rdx
sub rax, qword ptr [rip + {{D+{L.VVAR_TSC_BASE}}}]
jae forward
xor eax, eax
forward:
mul qword ptr [rip + {{D+{L.VVAR_MULT}}}]
mov ecx, dword ptr [rip + {{D+{L.VVAR_SHIFT}}}]
shrd rax, rdx, cl
add rax, qword ptr [rip + {{D+{L.VVAR_MONO_BASE}}}]
{add_offset}
cmp r8d, dword ptr [rip + {{D+{L.VVAR_SEQ}}}]
jne retry
jmp have_ns
spin:
pause
jmp retry
have_ns:
"""


def _fallback(nr: int) -> str:
    return f"fallback:\nmov eax, {nr}\nsyscall\nret\n"


_REALTIME = f"add rax, qword ptr [rip + {{D+{L.VVAR_CLOCK_OFFSETS}}}]"
_DIV_SEC = f"xor edx, edx\nmov ecx, {_NSEC}\ndiv rcx\n"           # rax = seconds, rdx = ns

# int clock_gettime(clockid_t clk /* edi */, struct timespec *tp /* rsi */)
CLOCK_GETTIME = (f"mov edi, edi\ncmp edi, 7\nja fallback\nmov eax, {L.VVAR_FAST_CLOCKS}\n"
                 "bt eax, edi\njnc fallback\n"
                 + _read_ns(f"lea r9, [rip + {{D+{L.VVAR_CLOCK_OFFSETS}}}]\nadd rax, qword ptr [r9 + rdi*8]")
                 + _DIV_SEC + "mov qword ptr [rsi], rax\nmov qword ptr [rsi + 8], rdx\nxor eax, eax\nret\n"
                 + _fallback(_SYS_CLOCK_GETTIME))
# int gettimeofday(struct timeval *tv /* rdi */, struct timezone *tz /* rsi */); tz is UTC (zeros)
GETTIMEOFDAY = ("test rdi, rdi\njz tz_part\n" + _read_ns(_REALTIME) + _DIV_SEC
                + "mov qword ptr [rdi], rax\nmov rax, rdx\nxor edx, edx\nmov ecx, 1000\ndiv rcx\n"
                "mov qword ptr [rdi + 8], rax\ntz_part:\ntest rsi, rsi\njz done\n"
                "mov qword ptr [rsi], 0\ndone:\nxor eax, eax\nret\n" + _fallback(_SYS_GETTIMEOFDAY))
# time_t time(time_t *t /* rdi, may be NULL */)
TIME = (_read_ns(_REALTIME) + _DIV_SEC + "test rdi, rdi\njz done\nmov qword ptr [rdi], rax\n"
        "done:\nret\n" + _fallback(_SYS_TIME))
# int getcpu(unsigned *cpu, unsigned *node, void *cache): cpu 0, node 0 while every thread
# may run on every CPU (0 is then as true an answer as any); once a thread of the sandbox has
# narrowed its affinity (VVAR_GETCPU_TRAP), or the vDSO is off, the real syscall, whose answer
# lies inside the calling thread's mask (only the Sentry knows it).
GETCPU = (f"cmp dword ptr [rip + {{D+{L.VVAR_ENABLED}}}], 0\nje fallback\n"
          f"cmp dword ptr [rip + {{D+{L.VVAR_GETCPU_TRAP}}}], 0\njne fallback\n"
          "test rdi, rdi\njz no_cpu\nmov dword ptr [rdi], 0\nno_cpu:\n"
          "test rsi, rsi\njz no_node\nmov dword ptr [rsi], 0\nno_node:\nxor eax, eax\nret\n"
          + _fallback(_SYS_GETCPU))

FUNCTIONS = (("clock_gettime", CLOCK_GETTIME), ("gettimeofday", GETTIMEOFDAY), ("time", TIME),
             ("getcpu", GETCPU))


def _assemble() -> dict[str, str]:
    """Each function at its final offset in .text (16-byte aligned, in FUNCTIONS order)."""
    from keystone import KS_ARCH_X86, KS_MODE_64, Ks  # imported only when the cache misses

    from kvmbox.guest_stub.stub import _assemble_pic

    ks = Ks(KS_ARCH_X86, KS_MODE_64)
    out, off = {}, TEXT_OFF
    for name, text in FUNCTIONS:
        if "{D+" in text:
            code = _assemble_pic(ks, text, L.VDSO_VIRT + off, L.VVAR_VIRT)
        else:
            code = bytes(ks.asm(text, L.VDSO_VIRT + off)[0])
        out[name] = code.hex()
        off = (off + len(code) + 15) & ~15
    return out


def assembled() -> dict[str, bytes]:
    """The machine code of each function, from the on-disk cache or keystone."""
    return load_or_assemble("vdso", [FUNCTIONS, TEXT_OFF, L.VDSO_VIRT, L.VVAR_VIRT],
                            [name for name, _ in FUNCTIONS], _assemble)


def elf_hash(name: bytes) -> int:
    """The SysV ELF hash (DT_HASH buckets, vd_hash)."""
    h = 0
    for c in name:
        h = ((h << 4) + c) & 0xFFFF_FFFF
        g = h & 0xF000_0000
        if g:
            h ^= g >> 24
        h &= ~g & 0xFFFF_FFFF
    return h


@record(frozen=True)
class VdsoImage:
    """The image bytes (load at layout.VDSO_VIRT) and each exported symbol's offset in it."""
    image: bytes
    symbols: dict[str, int]

    @property
    def npages(self) -> int:
        return len(self.image) // L.PAGE_SIZE


class _Strtab:
    def __init__(self) -> None:
        self.data = bytearray(b"\0")

    def add(self, s: str) -> int:
        off = len(self.data)
        self.data += s.encode() + b"\0"
        return off


# ELF constants used below (elf.h).
_ET_DYN, _EM_X86_64, _PT_LOAD, _PT_DYNAMIC, _PF_X, _PF_R = 3, 62, 1, 2, 1, 4
_SHT_PROGBITS, _SHT_STRTAB, _SHT_HASH, _SHT_DYNAMIC, _SHT_DYNSYM = 1, 3, 5, 6, 11
_SHT_GNU_VERDEF, _SHT_GNU_VERSYM = 0x6FFF_FFFD, 0x6FFF_FFFF
_SHF_ALLOC, _SHF_EXECINSTR = 2, 4
_DT_NULL, _DT_HASH, _DT_STRTAB, _DT_SYMTAB, _DT_STRSZ, _DT_SYMENT, _DT_SONAME = 0, 4, 5, 6, 10, 11, 14
_DT_VERSYM, _DT_VERDEF, _DT_VERDEFNUM = 0x6FFF_FFF0, 0x6FFF_FFFC, 0x6FFF_FFFD
_STB_GLOBAL, _STB_WEAK, _STT_FUNC = 1, 2, 2
_VER_FLG_BASE = 1
_TEXT_SHNDX = 6                       # index of .text in the section table below


def _align(x: int, a: int) -> int:
    return (x + a - 1) & ~(a - 1)


def _link(code: dict[str, bytes]) -> VdsoImage:
    """Lay out headers, dynamic tables, section headers and .text (at TEXT_OFF) in one image."""
    offs, off = {}, TEXT_OFF
    for name, _ in FUNCTIONS:
        offs[name] = off
        off = _align(off + len(code[name]), 16)
    text_end = max(offs[n] + len(code[n]) for n in offs)
    size = _align(text_end, L.PAGE_SIZE)
    if size > L.VDSO_MAX_PAGES * L.PAGE_SIZE:
        raise AssertionError("the vDSO image outgrew layout.VDSO_MAX_PAGES")

    dynstr, shstr = _Strtab(), _Strtab()
    soname = dynstr.add(SONAME)
    vername = dynstr.add(VERSION)
    syms = [struct.pack("<IBBHQQ", 0, 0, 0, 0, 0, 0)]
    sym_names = []
    for name, _ in FUNCTIONS:
        for exported, bind in ((f"__vdso_{name}", _STB_GLOBAL), (name, _STB_WEAK)):
            syms.append(struct.pack("<IBBHQQ", dynstr.add(exported), (bind << 4) | _STT_FUNC, 0,
                                    _TEXT_SHNDX, offs[name], len(code[name])))
            sym_names.append(exported)
    nsyms = len(syms)
    nbucket = 3
    buckets, chains = [0] * nbucket, [0] * nsyms
    for i, exported in enumerate(sym_names, start=1):
        b = elf_hash(exported.encode()) % nbucket
        chains[i], buckets[b] = buckets[b], i
    hash_tab = struct.pack(f"<{2 + nbucket + nsyms}I", nbucket, nsyms, *buckets, *chains)
    versym = struct.pack(f"<{nsyms}H", 0, *([2] * (nsyms - 1)))
    verdef = (struct.pack("<HHHHIII", 1, _VER_FLG_BASE, 1, 1, elf_hash(SONAME.encode()), 20, 28)
              + struct.pack("<II", soname, 0)
              + struct.pack("<HHHHIII", 1, 0, 2, 1, elf_hash(VERSION.encode()), 20, 0)
              + struct.pack("<II", vername, 0))

    # Layout after the ELF header and 2 program headers.
    pos = 64 + 2 * 56
    place: dict[str, tuple[int, int]] = {}

    def put(name: str, nbytes: int, align: int) -> int:
        nonlocal pos
        pos = _align(pos, align)
        place[name] = (pos, nbytes)
        pos += nbytes
        return place[name][0]

    a_hash = put(".hash", len(hash_tab), 8)
    a_dynsym = put(".dynsym", 24 * nsyms, 8)
    a_dynstr = put(".dynstr", len(dynstr.data), 1)
    a_versym = put(".gnu.version", len(versym), 2)
    a_verdef = put(".gnu.version_d", len(verdef), 8)
    dyn_entries = [(_DT_HASH, a_hash), (_DT_STRTAB, a_dynstr), (_DT_SYMTAB, a_dynsym),
                   (_DT_STRSZ, len(dynstr.data)), (_DT_SYMENT, 24), (_DT_SONAME, soname),
                   (_DT_VERSYM, a_versym), (_DT_VERDEF, a_verdef), (_DT_VERDEFNUM, 2), (_DT_NULL, 0)]
    a_dynamic = put(".dynamic", 16 * len(dyn_entries), 8)
    sections = [".hash", ".dynsym", ".dynstr", ".gnu.version", ".gnu.version_d", ".text",
                ".dynamic", ".shstrtab"]
    names = {s: shstr.add(s) for s in sections}
    a_shstr = put(".shstrtab", len(shstr.data), 1)
    a_shdrs = put("shdrs", 64 * (len(sections) + 1), 8)
    if pos > TEXT_OFF:
        raise AssertionError("the vDSO's ELF tables overlap .text")

    img = bytearray(size)
    ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)
    struct.pack_into("<16sHHIQQQIHHHHHH", img, 0, ident, _ET_DYN, _EM_X86_64, 1, 0, 64, a_shdrs, 0,
                     64, 56, 2, 64, len(sections) + 1, len(sections))
    struct.pack_into("<IIQQQQQQ", img, 64, _PT_LOAD, _PF_R | _PF_X, 0, 0, 0, size, size, L.PAGE_SIZE)
    struct.pack_into("<IIQQQQQQ", img, 120, _PT_DYNAMIC, _PF_R, a_dynamic, a_dynamic, a_dynamic,
                     16 * len(dyn_entries), 16 * len(dyn_entries), 8)
    img[a_hash:a_hash + len(hash_tab)] = hash_tab
    img[a_dynsym:a_dynsym + 24 * nsyms] = b"".join(syms)
    img[a_dynstr:a_dynstr + len(dynstr.data)] = dynstr.data
    img[a_versym:a_versym + len(versym)] = versym
    img[a_verdef:a_verdef + len(verdef)] = verdef
    for i, (tag, val) in enumerate(dyn_entries):
        struct.pack_into("<qQ", img, a_dynamic + 16 * i, tag, val)
    img[a_shstr:a_shstr + len(shstr.data)] = shstr.data
    for name in offs:
        img[offs[name]:offs[name] + len(code[name])] = code[name]
    # Section headers: (type, flags, link, info, align, entsize) per section.
    shdr = {".hash": (_SHT_HASH, _SHF_ALLOC, 2, 0, 8, 4),
            ".dynsym": (_SHT_DYNSYM, _SHF_ALLOC, 3, 1, 8, 24),
            ".dynstr": (_SHT_STRTAB, _SHF_ALLOC, 0, 0, 1, 0),
            ".gnu.version": (_SHT_GNU_VERSYM, _SHF_ALLOC, 2, 0, 2, 2),
            ".gnu.version_d": (_SHT_GNU_VERDEF, _SHF_ALLOC, 3, 2, 8, 0),
            ".text": (_SHT_PROGBITS, _SHF_ALLOC | _SHF_EXECINSTR, 0, 0, 16, 0),
            ".dynamic": (_SHT_DYNAMIC, _SHF_ALLOC, 3, 0, 8, 16),
            ".shstrtab": (_SHT_STRTAB, 0, 0, 0, 1, 0)}
    place[".text"] = (TEXT_OFF, text_end - TEXT_OFF)
    for i, s in enumerate(sections, start=1):
        typ, flags, link, info, align, entsize = shdr[s]
        where, nbytes = place[s]
        addr = where if flags & _SHF_ALLOC else 0
        struct.pack_into("<IIQQQQIIQQ", img, a_shdrs + 64 * i, names[s], typ, flags, addr, where,
                         nbytes, link, info, align, entsize)
    assert list(sections).index(".text") + 1 == _TEXT_SHNDX
    symbols = {f"__vdso_{n}": o for n, o in offs.items()} | dict(offs)
    return VdsoImage(bytes(img), symbols)


@functools.cache
def build() -> VdsoImage:
    """The vDSO image, linked for layout.VDSO_VIRT with [vvar] at layout.VVAR_VIRT."""
    return _link(assembled())
