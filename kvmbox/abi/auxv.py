"""Auxiliary vector entry types (AT_*) for x86-64 Linux: data only."""
from __future__ import annotations

AT_NULL = 0             # end of the vector
AT_IGNORE = 1
AT_EXECFD = 2
AT_PHDR = 3             # address of the program headers in memory
AT_PHENT = 4            # size of one program header
AT_PHNUM = 5            # number of program headers
AT_PAGESZ = 6
AT_BASE = 7             # interpreter load address (0 for a static executable)
AT_FLAGS = 8
AT_ENTRY = 9            # program entry point
AT_NOTELF = 10
AT_UID = 11
AT_EUID = 12
AT_GID = 13
AT_EGID = 14
AT_PLATFORM = 15        # address of the platform string ("x86_64")
AT_HWCAP = 16           # CPUID.1:EDX on x86-64
AT_CLKTCK = 17
AT_SECURE = 23
AT_BASE_PLATFORM = 24
AT_RANDOM = 25          # address of 16 random bytes
AT_HWCAP2 = 26          # bit 1: FSGSBASE usable from user mode
AT_RSEQ_FEATURE_SIZE = 27
AT_RSEQ_ALIGN = 28
AT_EXECFN = 31          # address of the filename passed to execve
AT_SYSINFO_EHDR = 33    # vDSO base (layout.VDSO_VIRT)
AT_MINSIGSTKSZ = 51     # minimum signal stack size the kernel needs for this CPU

HWCAP2_RING3MWAIT = 1 << 0
HWCAP2_FSGSBASE = 1 << 1

AT_NAMES = {v: k for k, v in dict(globals()).items() if k.startswith("AT_") and isinstance(v, int)}
