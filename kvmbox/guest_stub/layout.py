"""Guest memory layout: every magic address, port and MSR of the guest, in one place.

Guest-physical addresses are offsets in the MemoryFile (one KVM memslot at
guest-physical 0).  The stub region is one PML4 slot (index 255, the top of the
lower half) shared by every address space; PVM needs it in the lower half, so
the application's range ends where it starts.
"""
from __future__ import annotations

PAGE_SIZE = 0x1000
PAGE_SHIFT = 12

# --- virtual layout -------------------------------------------------------
USER_TOP = 0x7F80_0000_0000          # end (exclusive) of the application's address range
STUB_PML4_INDEX = 255                # PML4 slot holding the stub region in every address space
STUB_VIRT = 0x7F80_0000_0000         # virtual base of the stub region (== USER_TOP)
PTRACE_STUB_VIRT = 0x7F80_0000_0000  # ptrace platform: the host stub's one code page, in the Sentry
                                     # and in every stub process (== USER_TOP, above the guest's range)

# Default placements for the application (Linux-like, below USER_TOP).
STACK_TOP = 0x7F7F_FFFF_F000         # top of the initial stack (grows down)
STACK_MAX = 8 << 20                  # RLIMIT_STACK default: 8 MiB
MMAP_BASE = 0x7F7F_0000_0000         # top-down mmap allocations start below here
ELF_ET_DYN_BASE = 0x5555_5555_4000   # load base of static-pie (ET_DYN) executables
# The vDSO (no ASLR yet): the [vvar] data page, then the [vdso] ELF image right above it.
# 16 MiB below STACK_TOP: above the stack's 8 MiB growth limit, far above MMAP_BASE.
VVAR_VIRT = 0x7F7F_FF00_0000         # [vvar]: one user-readable page the Sentry's timekeeper writes
VDSO_VIRT = VVAR_VIRT + 0x1000       # [vdso]: AT_SYSINFO_EHDR (its code reads [vvar] RIP-relative)
VDSO_MAX_PAGES = 2                   # the image is at most this many pages (vdso.py checks)
# [vvar] fields (little-endian; written under the seqlock, read by the vDSO code).
VVAR_SEQ = 0x00                      # u32 seqlock: odd while the Sentry rewrites the fields below
VVAR_ENABLED = 0x04                  # u32: 0 = every vDSO call falls back to the real syscall
VVAR_TSC_BASE = 0x08                 # u64: TSC value at which the clocks equal their bases
VVAR_MULT = 0x10                     # u64: ns per TSC tick as fixed point, ns = (dtsc*mult) >> shift
VVAR_SHIFT = 0x18                    # u32: the fixed-point shift (the code shifts a 128-bit product)
VVAR_GETCPU_TRAP = 0x1C              # u32: nonzero once a thread narrowed its affinity: getcpu traps
VVAR_MONO_BASE = 0x20                # u64: CLOCK_MONOTONIC (ns) at tsc_base
VVAR_CLOCK_OFFSETS = 0x40            # u64[8]: per clock id 0..7, ns added to the monotonic value
VVAR_FAST_CLOCKS = 0xF3              # bitmap of the clock ids served in the guest: 0,1,4,5,6,7

# --- the stub region: offsets from STUB_VIRT == guest-physical addresses --
# The region is identity-offset: virtual STUB_VIRT + X maps physical X.
GDT_OFF = 0x0000                     # GDT (one page): Linux's selectors, then one TSS descriptor per vCPU
IDT_OFF = 0x1000                     # IDT: 256 16-byte gates (vectors 0-31 wired)
HANDLERS_OFF = 0x2000                # ring-0 exception entry points (HANDLER_STRIDE bytes each)
HANDLER_STRIDE = 32
VDSO_DATA_OFF = 0x4000               # per-VM page readable by the user (reserved: time for a vDSO)
PERCPU_OFF = 0x10000                 # per-vCPU areas: TSS + I/O bitmap, then the IST stack
PERCPU_STRIDE = 0x8000               # 32 KiB per vCPU
PERCPU_TSS = 0x0                     # 64-bit TSS at the start of a vCPU's area...
TSS_IOMAP_OFF = 0x68                 # ...its I/O permission bitmap right after the 104-byte TSS
TSS_LIMIT = 0x68 + 8192              # TSS + 65536-port bitmap + the terminator byte, minus 1
PERCPU_SCRATCH = 0x2100              # hw flavour: per-vCPU slot saving the user RSP across a syscall
MAX_VCPUS = 32                       # per-vCPU areas fit below STUB_TABLES_OFF
STUB_TABLES_OFF = 0x120000           # PDPT/PD/PT of the stub region (built once per VM)
USER_PERCPU_OFF = 0x130000           # per-vCPU user pages: [trampoline (R+X)][fast-path data (R)]
USER_PERCPU_STRIDE = 0x2000          # vCPU i's LSTAR is STUB_VIRT + USER_PERCPU_OFF + i*stride
# Fast-path data page (one per vCPU, user-readable, written by the Sentry): u32 fields that
# let the pvm-native trampoline answer identity syscalls without a VM exit.
FAST_ENABLED = 0x0                   # nonzero: answer the syscalls below in the guest
FAST_PID, FAST_TID, FAST_PPID = 0x4, 0x8, 0xC
FAST_UID, FAST_EUID, FAST_GID, FAST_EGID = 0x10, 0x14, 0x18, 0x1C
FAST_SIGACTION = 0x20                # nonzero: answer rt_sigaction queries (act NULL) too
FAST_SIGTABLE = 0x100                # 64 kernel struct sigactions, signal n at +(n-1)*32
SIGACTION_SIZE = 32                  # handler, flags, restorer, mask (u64 each)
STUB_RESERVED = 0x200000             # physical [0, 2 MiB) belongs to the stub; frames start above

# --- GDT selectors (Linux's layout) -----------------------------------------
KERNEL_CS = 0x10
KERNEL_DS = 0x18
USER_CS32 = 0x23                     # STAR[63:48]: sysret uses +16 for 64-bit CS, +8 for SS
USER_DS = 0x2B
USER_CS = 0x33
TSS_SEL = 0x40                       # vCPU i uses TSS_SEL + 16*i (64-bit TSS descriptors are 16 bytes)

# --- ports: the exit protocol towards the Sentry -----------------------------
PORT_SYSCALL = 0x10                  # `out` in the user trampoline: a syscall (RIP == trampoline + 2)
PORT_EXCEPTION = 0x11                # `out` in a ring-0 handler: an exception frame on the IST stack

# --- MSRs ------------------------------------------------------------------
MSR_EFER = 0xC000_0080
MSR_STAR = 0xC000_0081
MSR_LSTAR = 0xC000_0082
MSR_CSTAR = 0xC000_0083
MSR_FMASK = 0xC000_0084
MSR_FS_BASE = 0xC000_0100
MSR_GS_BASE = 0xC000_0101
MSR_KERNEL_GS_BASE = 0xC000_0102

# --- control register bits ---------------------------------------------------
CR0_PE, CR0_MP, CR0_ET, CR0_NE, CR0_WP, CR0_PG = 1 << 0, 1 << 1, 1 << 4, 1 << 5, 1 << 16, 1 << 31
CR4_PAE, CR4_PGE, CR4_OSFXSR, CR4_OSXMMEXCPT = 1 << 5, 1 << 7, 1 << 9, 1 << 10
CR4_UMIP, CR4_FSGSBASE, CR4_OSXSAVE, CR4_SMEP, CR4_SMAP = 1 << 11, 1 << 16, 1 << 18, 1 << 20, 1 << 21
EFER_SCE, EFER_LME, EFER_LMA, EFER_NXE = 1 << 0, 1 << 8, 1 << 10, 1 << 11

# Exception vectors that push an error code.
VECTORS_WITH_ERROR = frozenset({8, 10, 11, 12, 13, 14, 17, 21, 29, 30})
# Exception frame pushed by a handler: vector, error, rip, cs, rflags, rsp, ss (7 qwords).
EXC_FRAME_QWORDS = 7


def percpu_tss(vcpu_index: int) -> int:
    """Physical (== stub-relative) address of vCPU `vcpu_index`'s TSS."""
    return PERCPU_OFF + vcpu_index * PERCPU_STRIDE + PERCPU_TSS


def percpu_stack_top(vcpu_index: int) -> int:
    """Physical (== stub-relative) top of vCPU `vcpu_index`'s ring-0 IST stack."""
    return PERCPU_OFF + (vcpu_index + 1) * PERCPU_STRIDE


def user_trampoline(vcpu_index: int) -> int:
    """Physical (== stub-relative) address of vCPU `vcpu_index`'s syscall trampoline page."""
    return USER_PERCPU_OFF + vcpu_index * USER_PERCPU_STRIDE


def fast_data(vcpu_index: int) -> int:
    """Physical address of vCPU `vcpu_index`'s fast-path data page (right after its trampoline)."""
    return user_trampoline(vcpu_index) + PAGE_SIZE


def exc_frame_phys(vcpu_index: int) -> int:
    """Where a ring-0 handler leaves the 7-qword exception frame for vCPU `vcpu_index`."""
    return percpu_stack_top(vcpu_index) - 8 * EXC_FRAME_QWORDS

# --- ELF loading -------------------------------------------------------------
MMAP_MIN_ADDR = 0x10000              # lowest address a fixed-position (ET_EXEC) segment may use (vm.mmap_min_addr)

# --- x86-64 page-table entries (kvmbox/mm/pagetables.py) ----
PTE_P, PTE_W, PTE_U, PTE_A, PTE_D = 0x1, 0x2, 0x4, 0x20, 0x40
PTE_PS = 0x80                        # in a PD entry: a 2 MiB leaf (kvmbox/mm/pagetables.py)
PTE_NX = 1 << 63
PTE_ADDR_MASK = 0x000F_FFFF_FFFF_F000  # physical frame bits of an entry
PT_ENTRIES = 512                     # entries per table page
HUGE_PAGE_SIZE = PAGE_SIZE * PT_ENTRIES   # what a PD entry maps as a leaf: 2 MiB
