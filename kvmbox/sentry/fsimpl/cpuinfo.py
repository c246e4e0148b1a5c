"""/proc/cpuinfo, generated from CPUID executed by the Sentry (never read from the host's /proc).

The `flags` line comes from the tables below (Linux's
arch/x86/include/asm/cpufeatures.h names of CPUID bits).  Each entry is ((leaf, subleaf, register index 0..3 = eax..edx), 32 names by
bit); None marks a bit Linux does not show (reserved, or shown under another
word).  Linux's synthetic flags (constant_tsc, rep_good ...) are not CPUID
bits and are not listed.
"""
from __future__ import annotations

import struct

from kvmbox.sentry.hwcap import LEAF1_EDX_FLAGS, cpuid

EAX, EBX, ECX, EDX = 0, 1, 2, 3
_ = None

LEAF1_ECX: tuple[str | None, ...] = (
    "pni", "pclmulqdq", "dtes64", "monitor", "ds_cpl", "vmx", "smx", "est",
    "tm2", "ssse3", "cid", "sdbg", "fma", "cx16", "xtpr", "pdcm",
    _, "pcid", "dca", "sse4_1", "sse4_2", "x2apic", "movbe", "popcnt",
    "tsc_deadline_timer", "aes", "xsave", _, "avx", "f16c", "rdrand", "hypervisor",
)
EXT1_EDX: tuple[str | None, ...] = (
    _, _, _, _, _, _, _, _,
    _, _, _, "syscall", _, _, _, _,
    _, _, _, "mp", "nx", _, "mmxext", _,
    _, "fxsr_opt", "pdpe1gb", "rdtscp", _, "lm", "3dnowext", "3dnow",
)
EXT1_ECX: tuple[str | None, ...] = (
    "lahf_lm", "cmp_legacy", "svm", "extapic", "cr8_legacy", "abm", "sse4a", "misalignsse",
    "3dnowprefetch", "osvw", "ibs", "xop", "skinit", "wdt", _, "lwp",
    "fma4", "tce", _, "nodeid_msr", _, "tbm", "topoext", "perfctr_core",
    "perfctr_nb", _, "bpext", "ptsc", "perfctr_llc", "mwaitx", _, _,
)
LEAF7_EBX: tuple[str | None, ...] = (
    "fsgsbase", "tsc_adjust", "sgx", "bmi1", "hle", "avx2", _, "smep",
    "bmi2", "erms", "invpcid", "rtm", "cqm", _, "mpx", "rdt_a",
    "avx512f", "avx512dq", "rdseed", "adx", "smap", "avx512ifma", _, "clflushopt",
    "clwb", "intel_pt", "avx512pf", "avx512er", "avx512cd", "sha_ni", "avx512bw", "avx512vl",
)
LEAF7_ECX: tuple[str | None, ...] = (
    _, "avx512vbmi", "umip", "pku", "ospke", "waitpkg", "avx512_vbmi2", _,
    "gfni", "vaes", "vpclmulqdq", "avx512_vnni", "avx512_bitalg", "tme", "avx512_vpopcntdq", _,
    "la57", _, _, _, _, _, "rdpid", _,
    "bus_lock_detect", "cldemote", _, "movdiri", "movdir64b", "enqcmd", "sgx_lc", _,
)
LEAF7_EDX: tuple[str | None, ...] = (
    _, _, "avx512_4vnniw", "avx512_4fmaps", "fsrm", _, _, _,
    "avx512_vp2intersect", _, "md_clear", _, _, _, "serialize", _,
    "tsxldtrk", _, "pconfig", "arch_lbr", "ibt", _, "amx_bf16", "avx512_fp16",
    "amx_tile", "amx_int8", _, _, "flush_l1d", "arch_capabilities", _, _,
)
LEAFD1_EAX: tuple[str | None, ...] = ("xsaveopt", "xsavec", "xgetbv1", "xsaves") + (_,) * 28
EXT8_EBX: tuple[str | None, ...] = (
    "clzero", "irperf", "xsaveerptr", _, "rdpru", _, _, _,
    _, "wbnoinvd", _, _, _, _, _, _,
) + (_,) * 16

# (leaf, subleaf, register) -> names, in the order /proc/cpuinfo prints the words.
FLAG_WORDS: tuple[tuple[tuple[int, int, int], tuple[str | None, ...]], ...] = (
    ((1, 0, EDX), LEAF1_EDX_FLAGS),
    ((0x8000_0001, 0, EDX), EXT1_EDX),
    ((1, 0, ECX), LEAF1_ECX),
    ((0x8000_0001, 0, ECX), EXT1_ECX),
    ((7, 0, EBX), LEAF7_EBX),
    ((0xD, 1, EAX), LEAFD1_EAX),
    ((0x8000_0008, 0, EBX), EXT8_EBX),
    ((7, 0, ECX), LEAF7_ECX),
    ((7, 0, EDX), LEAF7_EDX),
)


def flags(query=cpuid) -> list[str]:
    """The flag names of this CPU, in /proc/cpuinfo's order."""
    max_basic, max_ext = query(0)[0], query(0x8000_0000)[0]
    out: list[str] = []
    for (leaf, sub, reg), names in FLAG_WORDS:
        top = max_ext if leaf >= 0x8000_0000 else max_basic
        if leaf > top:
            continue
        value = query(leaf, sub)[reg]
        out.extend(n for bit, n in enumerate(names) if n is not None and value >> bit & 1)
    return out


def _model_name(query, max_ext: int) -> str:
    if max_ext < 0x8000_0004:
        return "unknown"
    raw = b"".join(struct.pack("<4I", *query(leaf)) for leaf in (0x8000_0002, 0x8000_0003, 0x8000_0004))
    return raw.split(b"\0", 1)[0].decode("ascii", "replace").strip()


def cpuinfo_text(cpu_count: int, mhz: float, query=cpuid) -> str:
    """The whole /proc/cpuinfo for `cpu_count` identical processors running at `mhz`."""
    try:
        max_basic, b, c, d = query(0)
        vendor = struct.pack("<3I", b, d, c).decode("ascii", "replace")
        eax1, ebx1, _ecx1, _edx1 = query(1)
        max_ext = query(0x8000_0000)[0]
        names = " ".join(flags(query))
        model_name = _model_name(query, max_ext)
        l2_kb = query(0x8000_0006)[2] >> 16 if max_ext >= 0x8000_0006 else 0
        sizes = query(0x8000_0008)[0] if max_ext >= 0x8000_0008 else 0x3028
    except OSError:
        max_basic, vendor, eax1, ebx1, names, model_name, l2_kb, sizes = 0, "unknown", 0, 0, "", "unknown", 0, 0x3028
    family = (eax1 >> 8) & 0xF
    model = (eax1 >> 4) & 0xF
    if family == 0xF:
        family += (eax1 >> 20) & 0xFF
    if family >= 6:
        model |= ((eax1 >> 16) & 0xF) << 4
    clflush = ((ebx1 >> 8) & 0xFF) * 8
    out = []
    for n in range(cpu_count):
        out.append(
            f"processor\t: {n}\n"
            f"vendor_id\t: {vendor}\n"
            f"cpu family\t: {family}\n"
            f"model\t\t: {model}\n"
            f"model name\t: {model_name}\n"
            f"stepping\t: {eax1 & 0xF}\n"
            f"cpu MHz\t\t: {mhz:.3f}\n"
            f"cache size\t: {l2_kb} KB\n"
            f"physical id\t: 0\n"
            f"siblings\t: {cpu_count}\n"
            f"core id\t\t: {n}\n"
            f"cpu cores\t: {cpu_count}\n"
            f"apicid\t\t: {n}\n"
            f"initial apicid\t: {n}\n"
            f"fpu\t\t: yes\n"
            f"fpu_exception\t: yes\n"
            f"cpuid level\t: {max_basic}\n"
            f"wp\t\t: yes\n"
            f"flags\t\t: {names}\n"
            f"bogomips\t: {2 * mhz:.2f}\n"
            f"clflush size\t: {clflush}\n"
            f"cache_alignment\t: {clflush}\n"
            f"address sizes\t: {sizes & 0xFF} bits physical, {(sizes >> 8) & 0xFF} bits virtual\n"
            f"power management:\n\n")
    return "".join(out)
