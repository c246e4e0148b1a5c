"""ELF64 constants and struct layouts (System V gABI + x86-64 psABI): data only, no logic."""
from __future__ import annotations

import struct

# --- e_ident -----------------------------------------------------------------
ELFMAG = b"\x7fELF"
EI_NIDENT = 16
EI_CLASS, EI_DATA, EI_VERSION, EI_OSABI = 4, 5, 6, 7
ELFCLASSNONE, ELFCLASS32, ELFCLASS64 = 0, 1, 2
ELFDATANONE, ELFDATA2LSB, ELFDATA2MSB = 0, 1, 2
EV_CURRENT = 1

# --- e_type --------------------------------------------------------------------
ET_NONE, ET_REL, ET_EXEC, ET_DYN, ET_CORE = 0, 1, 2, 3, 4
ET_NAMES = {ET_NONE: "ET_NONE", ET_REL: "relocatable object (ET_REL)", ET_EXEC: "ET_EXEC",
            ET_DYN: "ET_DYN", ET_CORE: "core dump (ET_CORE)"}

# --- e_machine (the ones worth naming in an error message) ---------------------
EM_386 = 3
EM_MIPS = 8
EM_PPC = 20
EM_PPC64 = 21
EM_S390 = 22
EM_ARM = 40
EM_SPARCV9 = 43
EM_IA_64 = 50
EM_X86_64 = 62
EM_AARCH64 = 183
EM_RISCV = 243
EM_LOONGARCH = 258
MACHINE_NAMES = {
    EM_386: "i386", EM_MIPS: "mips", EM_PPC: "powerpc", EM_PPC64: "ppc64", EM_S390: "s390",
    EM_ARM: "arm", EM_SPARCV9: "sparc64", EM_IA_64: "ia64", EM_X86_64: "x86-64",
    EM_AARCH64: "aarch64", EM_RISCV: "riscv", EM_LOONGARCH: "loongarch",
}

# --- p_type --------------------------------------------------------------------
PT_NULL, PT_LOAD, PT_DYNAMIC, PT_INTERP, PT_NOTE, PT_SHLIB, PT_PHDR, PT_TLS = range(8)
PT_GNU_EH_FRAME = 0x6474E550
PT_GNU_STACK = 0x6474E551
PT_GNU_RELRO = 0x6474E552
PT_GNU_PROPERTY = 0x6474E553

# --- p_flags -------------------------------------------------------------------
PF_X, PF_W, PF_R = 1, 2, 4

# Elf64_Ehdr: e_ident[16], e_type, e_machine (u16), e_version (u32), e_entry, e_phoff,
# e_shoff (u64), e_flags (u32), e_ehsize, e_phentsize, e_phnum, e_shentsize, e_shnum,
# e_shstrndx (u16).  64 bytes.
EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
# Elf64_Phdr: p_type, p_flags (u32), p_offset, p_vaddr, p_paddr, p_filesz, p_memsz,
# p_align (u64).  56 bytes.
PHDR = struct.Struct("<IIQQQQQQ")
EHDR_SIZE = EHDR.size          # 64
PHDR_SIZE = PHDR.size          # 56

# Linux refuses more than 64 KiB of program headers (ELF_MIN_ALIGN-independent limit).
MAX_PHDR_BYTES = 65536
# Longest PT_INTERP path worth accepting (PATH_MAX).
MAX_INTERP_LEN = 4096
