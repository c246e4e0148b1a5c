"""The ELF loader: validate an x86-64 executable, map its segments into a MemoryManager, build its stack.

Steps, each usable alone:
  ElfFile                    the bytes of an executable: pread + size (+ a MappedFile to map from)
  parse_elf(file, path)      pure validation -> ElfImage (segments, entry, bias, PT_INTERP ...)
  map_image(image, mm)       PT_LOAD segments -> MAP_PRIVATE file mappings with their final prot
                             (anonymous memory + copied bytes when the ElfFile cannot be mapped)
and load_elf() which chains them, loads the PT_INTERP interpreter (through the
`open_interp` callback: the Sentry's VFS), and builds the initial stack and auxv.
read_executable(host_path) remains for tools and tests that load a host file.

ET_EXEC goes at its addresses, the main ET_DYN at layout.ELF_ET_DYN_BASE (as
Linux does without ASLR), the interpreter top-down in the mmap area like any
non-fixed mapping.  There is no ASLR yet: runs are deterministic.
"""
from __future__ import annotations

import errno
import os
import stat

from kvmbox.abi import auxv as at
from kvmbox.abi import elf
from kvmbox.abi.mman import MAP_ANONYMOUS, MAP_FIXED, MAP_PRIVATE, PROT_EXEC, PROT_READ, PROT_WRITE
from kvmbox.errors import CannotExecute, ProgramNotFound, SyscallError
from kvmbox.guest_stub import layout
from kvmbox.record import field, record, replace
from kvmbox.sentry.hwcap import minsigstksz as hwcap_minsigstksz
from kvmbox.sentry.stack import plan_stack, write_stack

_U64_MAX = (1 << 64) - 1

TYPE_CHECKING = False  # typing is not imported at run time (start-up cost)
if TYPE_CHECKING:
    from typing import Callable, NoReturn

    from kvmbox.mm.mapfile import MappedFile

    Fail = Callable[[str], NoReturn]


class LoaderMemory:
    """What loading needs from the MemoryManager."""

    def mmap(self, addr: int, length: int, prot: int, flags: int, fd: int = -1,
             offset: int = 0, *, file: "MappedFile | None" = None) -> int: ...

    def munmap(self, addr: int, length: int) -> None: ...

    def copy_out(self, addr: int, data: bytes, *, force: bool = False) -> None: ...

    def set_brk_base(self, addr: int) -> None: ...

    def map_stack(self, top: int, size: int, max_size: int) -> None: ...


@record(frozen=True)
class ElfFile:
    """An executable's bytes as the loader reads them.

    `pread(offset, n)` returns up to n bytes (short at end of file).  With a
    `mapping`, segments become MAP_PRIVATE mappings of the file (so
    /proc/self/maps names it); without one their bytes are copied into
    anonymous memory.
    """
    size: int
    pread: "Callable[[int, int], bytes]"
    mapping: "MappedFile | None" = None

    @classmethod
    def of_bytes(cls, data: bytes) -> "ElfFile":
        data = bytes(data)
        return cls(len(data), lambda off, n: data[off:off + n])


@record(frozen=True)
class Segment:
    """One PT_LOAD program header (addresses not yet biased)."""
    index: int          # position in the program header table
    offset: int
    vaddr: int
    filesz: int
    memsz: int
    flags: int          # PF_R / PF_W / PF_X

    @property
    def prot(self) -> int:
        return ((PROT_READ if self.flags & elf.PF_R else 0)
                | (PROT_WRITE if self.flags & elf.PF_W else 0)
                | (PROT_EXEC if self.flags & elf.PF_X else 0))


@record(frozen=True)
class ElfImage:
    """A validated executable: everything the mapping step and the auxv need."""
    path: str
    file: ElfFile
    elf_type: int               # ET_EXEC or ET_DYN
    entry: int                  # e_entry, unbiased
    phoff: int
    phentsize: int
    phnum: int
    segments: tuple[Segment, ...]
    load_bias: int              # 0 for ET_EXEC; added to every vaddr
    phdr_vaddr: int | None      # unbiased address of the program headers in memory, if loaded
    interp: str | None          # PT_INTERP path
    exec_stack: bool            # PT_GNU_STACK has PF_X (no PT_GNU_STACK: False, as x86-64 Linux)
    has_tls: bool               # PT_TLS present (libc sets the thread pointer itself)


@record(frozen=True)
class LoadedImage:
    """The result of load_elf: where the program starts and what it was given."""
    entry: int                  # biased entry point (initial rip)
    initial_sp: int             # initial rsp, pointing at argc
    phdr_addr: int              # AT_PHDR (0 if the program headers are not in any segment)
    phnum: int
    load_bias: int
    brk_start: int              # page-aligned end of the highest segment
    stack_top: int
    exec_stack: bool
    interp: str | None = None   # PT_INTERP of the program (loaded at interp_base)
    auxv: tuple[tuple[int, int], ...] = ()
    mappings: tuple[tuple[int, int, int], ...] = field(default=())   # (addr, length, prot)
    interp_base: int = 0        # AT_BASE: where the interpreter was loaded (0: none)


# --- path checks ---------------------------------------------------------------

def read_executable(path: str | os.PathLike[str]) -> bytes:
    """The bytes of the program at `path`, after the checks execve makes on the path."""
    name = os.fsdecode(path)
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        raise ProgramNotFound(f"{name}: no such file or directory") from None
    except PermissionError:
        raise CannotExecute(f"{name}: permission denied") from None
    except OSError as e:
        raise CannotExecute(f"{name}: {e.strerror or e}") from None
    if stat.S_ISDIR(st.st_mode):
        raise CannotExecute(f"{name}: is a directory")
    if not stat.S_ISREG(st.st_mode):
        raise CannotExecute(f"{name}: not a regular file")
    if not os.access(path, os.X_OK):
        raise CannotExecute(f"{name}: permission denied")
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise CannotExecute(f"{name}: {e.strerror or e}") from None


# --- parsing and validation ------------------------------------------------------

def _page_down(x: int, page: int) -> int:
    return x & ~(page - 1)


def _page_up(x: int, page: int) -> int:
    return (x + page - 1) & ~(page - 1)


def _check_ident(data: bytes, fail: Fail) -> None:
    if not data:
        fail("exec format error (empty file)")
    if data[:4] != elf.ELFMAG:
        fail("not an ELF file (bad magic)")
    if len(data) < elf.EI_NIDENT:
        fail("truncated ELF header")
    cls, order = data[elf.EI_CLASS], data[elf.EI_DATA]
    if cls == elf.ELFCLASS32:
        fail("32-bit ELF not supported")
    if cls != elf.ELFCLASS64:
        fail(f"bad ELF class {cls}")
    if order == elf.ELFDATA2MSB:
        fail("big-endian ELF not supported")
    if order != elf.ELFDATA2LSB:
        fail(f"bad ELF data encoding {order}")
    if len(data) < elf.EHDR_SIZE:
        fail("truncated ELF header")


def parse_elf(data: bytes | ElfFile, path: str = "<elf>", *, page_size: int = layout.PAGE_SIZE,
              dyn_base: int = layout.ELF_ET_DYN_BASE) -> ElfImage:
    """Validate `data` (bytes or an ElfFile) as an x86-64 executable and describe it.

    Raises CannotExecute; every message is one line starting with `path`.
    Pure: touches no memory, reads only the headers and PT_INTERP.
    """
    def fail(msg: str) -> NoReturn:
        raise CannotExecute(f"{path}: {msg}")

    f = data if isinstance(data, ElfFile) else ElfFile.of_bytes(data)
    size = f.size
    head = f.pread(0, elf.EHDR_SIZE) if size else b""
    _check_ident(head, fail)
    (_ident, e_type, e_machine, _version, e_entry, e_phoff, _shoff, _flags, _ehsize,
     e_phentsize, e_phnum, _shentsize, _shnum, _shstrndx) = elf.EHDR.unpack_from(head)
    if e_machine != elf.EM_X86_64:
        known = elf.MACHINE_NAMES.get(e_machine)
        fail(f"wrong architecture: {known} (expected x86-64)" if known
             else f"wrong architecture: unknown machine {e_machine} (expected x86-64)")
    if e_type not in (elf.ET_EXEC, elf.ET_DYN):
        fail(f"not an executable: {elf.ET_NAMES.get(e_type, f'e_type {e_type}')}")
    if e_phentsize != elf.PHDR_SIZE:
        fail(f"bad program header size {e_phentsize} (expected {elf.PHDR_SIZE})")
    if e_phnum == 0:
        fail("no program headers")
    if e_phnum * elf.PHDR_SIZE > elf.MAX_PHDR_BYTES:
        fail(f"too many program headers ({e_phnum})")
    if e_phoff + e_phnum * elf.PHDR_SIZE > size:
        fail("truncated program headers")
    table = f.pread(e_phoff, e_phnum * elf.PHDR_SIZE)
    if len(table) != e_phnum * elf.PHDR_SIZE:
        fail("truncated program headers")

    segments: list[Segment] = []
    interp: str | None = None
    exec_stack = False
    has_tls = False
    pt_phdr: int | None = None
    for i in range(e_phnum):
        (p_type, p_flags, p_offset, p_vaddr, _paddr, p_filesz, p_memsz,
         _align) = elf.PHDR.unpack_from(table, i * elf.PHDR_SIZE)
        if p_type == elf.PT_LOAD:
            if p_memsz == 0 and p_filesz == 0:
                continue                      # Linux skips empty PT_LOADs
            segments.append(Segment(i, p_offset, p_vaddr, p_filesz, p_memsz, p_flags))
        elif p_type == elf.PT_INTERP and interp is None:
            interp = _interp_path(f, p_offset, p_filesz, path, fail)   # Linux reads the first only
        elif p_type == elf.PT_GNU_STACK:
            exec_stack = bool(p_flags & elf.PF_X)
        elif p_type == elf.PT_TLS:
            has_tls = True
        elif p_type == elf.PT_PHDR:
            pt_phdr = p_vaddr
    if not segments:
        fail("no loadable segments")

    min_vaddr = min(s.vaddr for s in segments)
    bias = 0
    if e_type == elf.ET_DYN:
        bias = dyn_base - _page_down(min_vaddr, page_size)
    for s in segments:
        _check_segment(s, bias, e_type, size, page_size, fail)
    ordered = sorted(segments, key=lambda s: s.vaddr)
    for a, b in zip(ordered, ordered[1:]):
        if a.vaddr + a.memsz > b.vaddr:
            fail(f"segments {a.index} and {b.index} overlap")

    if not any(s.flags & elf.PF_X and s.vaddr <= e_entry < s.vaddr + s.memsz for s in segments):
        fail(f"entry point {e_entry:#x} is outside every executable segment")

    phdr_vaddr = pt_phdr
    if phdr_vaddr is None:
        table_end = e_phoff + e_phnum * elf.PHDR_SIZE
        for s in segments:
            if s.offset <= e_phoff and table_end <= s.offset + s.filesz:
                phdr_vaddr = s.vaddr + (e_phoff - s.offset)
                break
    return ElfImage(path=path, file=f, elf_type=e_type, entry=e_entry, phoff=e_phoff,
                    phentsize=e_phentsize, phnum=e_phnum, segments=tuple(ordered),
                    load_bias=bias, phdr_vaddr=phdr_vaddr, interp=interp,
                    exec_stack=exec_stack, has_tls=has_tls)


def _interp_path(f: ElfFile, offset: int, filesz: int, path: str, fail: Fail) -> str:
    """The interpreter a PT_INTERP names, by binfmt_elf's rules: 2..PATH_MAX bytes, all
    readable (else EIO), the last one NUL; the path is the C string at the start (NUL
    padding or anything after the first NUL is ignored; an empty path fails later, ENOENT)."""
    if filesz < 2 or filesz > elf.MAX_INTERP_LEN:
        fail(f"bad PT_INTERP (size {filesz})")
    raw = f.pread(offset, filesz) if offset + filesz <= f.size else b""
    if len(raw) != filesz:
        raise CannotExecute(f"{path}: truncated PT_INTERP", err=errno.EIO)
    if raw[-1] != 0:
        fail("bad PT_INTERP (not NUL-terminated)")
    return os.fsdecode(raw[:raw.index(b"\0")])


def _check_segment(s: Segment, bias: int, e_type: int, file_size: int, page_size: int,
                   fail: Fail) -> None:
    """Reject a PT_LOAD that cannot be mapped sanely."""
    where = f"segment {s.index}"
    if s.filesz > s.memsz:
        fail(f"{where}: p_filesz {s.filesz:#x} > p_memsz {s.memsz:#x}")
    if s.offset + s.filesz > _U64_MAX:
        fail(f"{where}: file range overflows")
    if s.offset + s.filesz > file_size:
        fail(f"{where}: truncated (file data past end of file)")
    if s.vaddr + s.memsz > _U64_MAX:
        fail(f"{where}: address range overflows")
    if (s.offset - s.vaddr) % page_size:
        fail(f"{where}: p_offset and p_vaddr differ modulo the page size")
    start = s.vaddr + bias
    if e_type == elf.ET_EXEC and _page_down(start, page_size) < layout.MMAP_MIN_ADDR:
        fail(f"{where}: address {s.vaddr:#x} below mmap_min_addr {layout.MMAP_MIN_ADDR:#x}")
    if start < 0 or _page_up(start + s.memsz, page_size) > layout.USER_TOP:
        fail(f"{where}: address range beyond the user address space")


# --- mapping -----------------------------------------------------------------------

def plan_mappings(image: ElfImage, page_size: int = layout.PAGE_SIZE) -> list[tuple[int, int, int]]:
    """(addr, length, prot) runs covering every PT_LOAD's pages, with final protections.

    Segments are sorted and their byte ranges disjoint (parse_elf checks), so
    two neighbours can share at most the one page where the first ends and the
    next begins: that page gets the union of their permissions.  Adjacent runs
    with equal protection are merged.  Linear in the number of segments.
    """
    runs: list[tuple[int, int, int]] = []

    def append(addr: int, length: int, prot: int) -> None:
        if runs and runs[-1][0] + runs[-1][1] == addr and runs[-1][2] == prot:
            runs[-1] = (runs[-1][0], runs[-1][1] + length, prot)
        else:
            runs.append((addr, length, prot))

    for s in image.segments:
        lo = _page_down(s.vaddr + image.load_bias, page_size)
        hi = _page_up(s.vaddr + image.load_bias + s.memsz, page_size)
        if runs and runs[-1][0] + runs[-1][1] > lo:          # the shared page
            addr, length, prot = runs.pop()
            shared_end = addr + length
            if addr < lo:
                append(addr, lo - addr, prot)
            append(lo, shared_end - lo, prot | s.prot)
            lo = shared_end
        if lo < hi:
            append(lo, hi - lo, s.prot)
    return runs


def _file_pieces(image: ElfImage, addr: int, end: int,
                 page_size: int) -> list[tuple[Segment, int, int]] | None:
    """The run [addr, end) cut into one piece per segment, or None if two share a page."""
    pieces: list[tuple[Segment, int, int]] = []
    for s in image.segments:
        lo = max(addr, _page_down(s.vaddr + image.load_bias, page_size))
        hi = min(end, _page_up(s.vaddr + image.load_bias + s.memsz, page_size))
        if lo < hi:
            if pieces and pieces[-1][2] > lo:
                return None
            pieces.append((s, lo, hi))
    return pieces


def _map_piece(image: ElfImage, mm: LoaderMemory, s: Segment, lo: int, hi: int, prot: int,
               page_size: int) -> None:
    """Map [lo, hi) of segment s: its file pages privately from the file, its bss anonymous."""
    assert image.file.mapping is not None
    start = s.vaddr + image.load_bias
    seg_lo = _page_down(start, page_size)
    file_hi = min(hi, _page_up(start + s.filesz, page_size)) if s.filesz else lo
    if lo < file_hi:
        offset = _page_down(s.offset, page_size) + (lo - seg_lo)
        mm.mmap(lo, file_hi - lo, prot, MAP_PRIVATE | MAP_FIXED, -1, offset,
                file=image.file.mapping)
    if max(lo, file_hi) < hi:
        mm.mmap(max(lo, file_hi), hi - max(lo, file_hi), prot,
                MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED)
    tail = start + s.filesz
    if s.memsz > s.filesz and s.filesz and lo <= tail < file_hi and tail % page_size:
        mm.copy_out(tail, bytes(_page_up(tail, page_size) - tail), force=True)   # padzero


def map_image(image: ElfImage, mm: LoaderMemory,
              page_size: int = layout.PAGE_SIZE) -> tuple[tuple[int, int, int], ...]:
    """Map every PT_LOAD with its final prot; returns the runs (addr, length, prot) mapped.

    With a mappable file, each segment's file pages are a MAP_PRIVATE mapping of
    the file and its bss anonymous memory (the rest of the last file page zeroed,
    as Linux's padzero).  Without one, or where two segments share a page, the
    pages are anonymous with the file bytes copied in; everything a segment's
    bytes do not cover stays zero.
    """
    runs = plan_mappings(image, page_size)
    copy: list[Segment] = []
    try:
        for addr, length, prot in runs:
            pieces = None
            if image.file.mapping is not None:
                pieces = _file_pieces(image, addr, addr + length, page_size)
            if pieces is None:
                mm.mmap(addr, length, prot, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED)
                copy += [s for s in image.segments
                         if s.vaddr + image.load_bias < addr + length
                         and addr < s.vaddr + image.load_bias + s.memsz and s not in copy]
                continue
            for s, lo, hi in pieces:
                _map_piece(image, mm, s, lo, hi, prot, page_size)
        for s in copy:
            if s.filesz:
                data = image.file.pread(s.offset, s.filesz)
                if len(data) != s.filesz:
                    raise CannotExecute(f"{image.path}: segment {s.index}: short read")
                mm.copy_out(s.vaddr + image.load_bias, data, force=True)
    except SyscallError as e:
        raise CannotExecute(f"{image.path}: cannot map segments: {os.strerror(e.errno)}") from None
    return tuple(runs)


def brk_start_of(image: ElfImage, page_size: int = layout.PAGE_SIZE) -> int:
    """Page-aligned end of the highest segment: where brk starts."""
    return _page_up(max(s.vaddr + s.memsz for s in image.segments) + image.load_bias, page_size)


# --- the whole execve ----------------------------------------------------------------

def make_auxv(image: ElfImage, *, hwcap: int, hwcap2: int, uid: int, euid: int, gid: int,
              egid: int, page_size: int, clktck: int, minsigstksz: int,
              vdso_base: int | None = None, interp_base: int = 0) -> list[tuple[int, int]]:
    """The auxiliary vector in Linux's order; AT_RANDOM/EXECFN/PLATFORM are filled by the stack.

    AT_SYSINFO_EHDR (first, as x86-64's ARCH_DLINFO puts it) only with a vdso_base;
    without it libc makes real system calls.  AT_RSEQ_* are left out (no rseq support).
    AT_PHDR/AT_ENTRY describe the program itself; AT_BASE is the interpreter's load
    address (0 without one).
    """
    phdr = image.phdr_vaddr + image.load_bias if image.phdr_vaddr is not None else 0
    vdso = [(at.AT_SYSINFO_EHDR, vdso_base)] if vdso_base is not None else []
    return vdso + [
        (at.AT_MINSIGSTKSZ, minsigstksz),
        (at.AT_HWCAP, hwcap),
        (at.AT_PAGESZ, page_size),
        (at.AT_CLKTCK, clktck),
        (at.AT_PHDR, phdr),
        (at.AT_PHENT, image.phentsize),
        (at.AT_PHNUM, image.phnum),
        (at.AT_BASE, interp_base),
        (at.AT_FLAGS, 0),
        (at.AT_ENTRY, image.entry + image.load_bias),
        (at.AT_UID, uid),
        (at.AT_EUID, euid),
        (at.AT_GID, gid),
        (at.AT_EGID, egid),
        (at.AT_SECURE, 0),
        (at.AT_RANDOM, 0),
        (at.AT_HWCAP2, hwcap2),
        (at.AT_EXECFN, 0),
        (at.AT_PLATFORM, 0),
        (at.AT_NULL, 0),
    ]


def span_of(image: ElfImage, page_size: int = layout.PAGE_SIZE) -> tuple[int, int]:
    """(lowest page, bytes) the PT_LOADs of `image` cover, unbiased."""
    lo = _page_down(image.segments[0].vaddr, page_size)
    hi = _page_up(max(s.vaddr + s.memsz for s in image.segments), page_size)
    return lo, hi - lo


def load_interp(image: ElfImage, mm: LoaderMemory, page_size: int = layout.PAGE_SIZE) -> ElfImage:
    """Map the interpreter `image` (parsed with dyn_base=0): ET_DYN goes wherever a non-fixed
    mapping of its whole span would (top-down in the mmap area); returns it with its bias."""
    if image.elf_type == elf.ET_DYN:
        lo, span = span_of(image, page_size)
        try:
            base = mm.mmap(0, span, 0, MAP_PRIVATE | MAP_ANONYMOUS)   # find room, as Linux's
            mm.munmap(base, span)                                       # total_mapping_size
        except SyscallError as e:
            raise CannotExecute(f"{image.path}: cannot map segments: {os.strerror(e.errno)}") from None
        image = replace(image, load_bias=base - lo)
    map_image(image, mm, page_size)
    return image


def load_elf(data_or_path: bytes | str | os.PathLike[str] | ElfFile, mm: LoaderMemory, *,
             argv: list[bytes], envp: list[bytes], execfn: bytes, hwcap: int, hwcap2: int,
             platform_string: str = "x86_64", random_bytes: bytes, uid: int, euid: int,
             gid: int, egid: int, page_size: int = layout.PAGE_SIZE, clktck: int = 100,
             minsigstksz: int | None = None,
             open_interp: "Callable[[str], ElfFile] | None" = None,
             stack_top: int = layout.STACK_TOP, stack_max: int = layout.STACK_MAX,
             vdso_base: int | None = None, path: str | None = None) -> LoadedImage:
    """execve's work: validate, map the segments (and the interpreter's), set brk, build the stack.

    `data_or_path` is an ElfFile, the file's bytes, or a host path (checked by
    read_executable); `path` names it in messages (default: execfn).  A program
    with PT_INTERP gets its interpreter from `open_interp(interp_path)` (an
    ElfFile; it raises ProgramNotFound / CannotExecute itself), mapped top-down
    in the mmap area; the program starts at the interpreter's entry with AT_BASE
    set, AT_PHDR/AT_ENTRY still describing the program.  Without open_interp such
    a program is refused.  minsigstksz defaults to this CPU's.  vdso_base (already
    mapped by the caller) becomes AT_SYSINFO_EHDR.
    Everything is validated (including the stack plan and the interpreter's
    headers) before mm is touched.
    """
    if isinstance(data_or_path, ElfFile):
        name, data = os.fsdecode(execfn), data_or_path
    elif isinstance(data_or_path, (bytes, bytearray, memoryview)):
        name, data = os.fsdecode(execfn), ElfFile.of_bytes(bytes(data_or_path))
    else:
        name, data = os.fsdecode(data_or_path), ElfFile.of_bytes(read_executable(data_or_path))
    path = name if path is None else path
    image = parse_elf(data, path, page_size=page_size)
    interp: ElfImage | None = None
    if image.interp is not None:
        if open_interp is None:
            raise CannotExecute(f"{path}: dynamically linked, and there is no file system to "
                                f"load its interpreter {image.interp} from")
        interp = parse_elf(open_interp(image.interp), f"{path}: interpreter {image.interp}",
                           page_size=page_size, dyn_base=0)
    auxv_args = dict(hwcap=hwcap, hwcap2=hwcap2, uid=uid, euid=euid, gid=gid, egid=egid,
                     page_size=page_size, clktck=clktck,
                     minsigstksz=hwcap_minsigstksz() if minsigstksz is None else minsigstksz,
                     vdso_base=vdso_base)
    try:    # validated with a stand-in AT_BASE: the plan's size does not depend on it
        plan_stack(stack_top, argv, envp, make_auxv(image, **auxv_args), execfn,
                   platform_string.encode(), random_bytes, stack_max=stack_max)
    except CannotExecute as e:
        raise CannotExecute(f"{path}: {e}") from None
    mappings = map_image(image, mm, page_size)
    entry = image.entry + image.load_bias
    interp_base = 0
    if interp is not None:
        interp = load_interp(interp, mm, page_size)
        interp_base = interp.load_bias
        entry = interp.entry + interp.load_bias
    plan = plan_stack(stack_top, argv, envp, make_auxv(image, interp_base=interp_base, **auxv_args),
                      execfn, platform_string.encode(), random_bytes, stack_max=stack_max)
    brk = brk_start_of(image, page_size)
    mm.set_brk_base(brk)
    sp = write_stack(mm, plan, stack_max=stack_max, page_size=page_size)
    return LoadedImage(
        entry=entry, initial_sp=sp,
        phdr_addr=dict(plan.auxv)[at.AT_PHDR], phnum=image.phnum, load_bias=image.load_bias,
        brk_start=brk, stack_top=stack_top, exec_stack=image.exec_stack, interp=image.interp,
        auxv=plan.auxv, mappings=mappings, interp_base=interp_base)
