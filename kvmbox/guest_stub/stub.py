"""The guest stub's assembly source and its build (keystone), cached on disk.

Two flavours share one exit protocol towards the Sentry (see layout.PORT_*):

pvm-native (this machine's PVM /dev/kvm): `syscall` from ring 3 does not enter
ring 0 on PVM; it jumps to LSTAR still in CPL3.  LSTAR therefore points at a
user-readable trampoline page holding `out PORT_SYSCALL, al; jmp rcx`.  The
`out` is the VM exit (the TSS I/O bitmap allows exactly that port to ring 3);
the host reads and writes registers through KVM_CAP_SYNC_REGS and the
trampoline returns with `jmp rcx`.  RFLAGS are untouched because FMASK is 0
(nothing runs in ring 0 on this path, so there is nothing to protect, and the
trampoline could not restore masked flags without touching the user stack).

hw (bare-metal VMX/SVM): LSTAR points at a supervisor page: swap to the
per-vCPU kernel stack, exit with the same port, and return with sysretq (or
iretq when RCX is not canonical).  It is assembled and laid out like
pvm-native but cannot be exercised on a PVM host.

Exceptions (both flavours) go through the IDT to a 32-byte ring-0 entry per
vector on the IST1 stack: push a zero error code when the CPU pushes none,
push the vector, `out PORT_EXCEPTION, al`, then drop both and `iretq`.  The
host reads the 7-qword frame at layout.exc_frame_phys(vcpu) while the vCPU
sits after the `out`; resuming it returns to the (possibly edited) frame.
"""
from __future__ import annotations

import functools

from kvmbox.abi.signals import SIGSET_SIZE
from kvmbox.guest_stub import layout as L
from kvmbox.guest_stub.asmcache import load_or_assemble
from kvmbox.record import record

FLAVOURS = ("pvm-native", "hw")


def _handler_source(vector: int) -> str:
    push_err = "" if vector in L.VECTORS_WITH_ERROR else "push 0\n"
    return f"{push_err}push {vector}\nout {L.PORT_EXCEPTION}, al\nadd rsp, 16\niretq\n"


# The pvm-native trampoline.  Identity syscalls are answered in the guest from
# the fast-path data page one page above (RIP-relative `[rip + {D+off}]`
# operands, resolved by _assemble_pic), so they cost no exit.  The compares
# clobber arithmetic flags; the fast path restores them from R11 (which holds
# RFLAGS at the `syscall`): OF by an `add` that overflows exactly when it was
# set, then SF/ZF/AF/PF/CF with `sahf`, using only flag-neutral `lea`/`mov`
# after that.  On the exit path the Sentry restores RFLAGS from R11.
_FAST = (("getpid", 39, L.FAST_PID), ("gettid", 186, L.FAST_TID), ("getppid", 110, L.FAST_PPID),
         ("getuid", 102, L.FAST_UID), ("geteuid", 107, L.FAST_EUID), ("getgid", 104, L.FAST_GID),
         ("getegid", 108, L.FAST_EGID))
FAST_SYSCALLS = frozenset(nr for _, nr, _ in _FAST)
RT_SIGACTION = 13

# Restore the user's arithmetic flags from R11, clobbering EAX (see above).
_RESTORE_FLAGS = """mov eax, r11d
shr eax, 11
and eax, 1
add al, 0x7f
lea eax, [r11*8]
lea eax, [rax*8]
lea eax, [rax*4]
sahf
"""

# rt_sigaction(sig, NULL, oldact, 8), a query, answered from the table the Sentry
# keeps in the data page while the process has one thread (FAST_SIGACTION).  Every
# other form exits: a new action, a NULL oldact, a bad sig or sigsetsize, sig with
# high bits set (Linux reads an int), and DF set (movsq must run forwards).  The
# copy runs in CPL3 with the user's own rights, so a bad oldact faults like a user
# store; the Sentry first resolves the fault as any other (demand paging, stack
# growth) and otherwise turns it into -EFAULT (KvmContext.fast_fault, using the four
# `movsq` as the marker).  RSI and RDI get their values back before the return.
_SIGACTION_QUERY = f"""f_rt_sigaction:
cmp dword ptr [rip + {{D+{L.FAST_SIGACTION}}}], 0
je slow
test rsi, rsi
jnz slow
test rdx, rdx
jz slow
cmp r10, {SIGSET_SIZE}
jne slow
test r11, 0x400
jnz slow
test rdi, rdi
jz slow
cmp rdi, 64
ja slow
shl rdi, 5
lea rsi, [rip + {{D+{L.FAST_SIGTABLE - L.SIGACTION_SIZE}}}]
add rsi, rdi
mov rdi, rdx
movsq
movsq
movsq
movsq
lea rax, [rip + {{D+{L.FAST_SIGTABLE}}}]
sub rsi, rax
shr rsi, 5
mov rdi, rsi
xor esi, esi
{_RESTORE_FLAGS}mov eax, 0
jmp rcx
"""
SIGACTION_COPY = bytes.fromhex("48a5") * 4      # the four movsq of the query's copy

TRAMPOLINE_PVM = (
    f"cmp dword ptr [rip + {{D+{L.FAST_ENABLED}}}], 0\nje slow\n"
    + "".join(f"cmp eax, {nr}\nje f_{name}\n" for name, nr, _ in _FAST)
    + f"cmp eax, {RT_SIGACTION}\nje f_rt_sigaction\n"
    + f"slow:\nout {L.PORT_SYSCALL}, al\njmp rcx\n"
    + "".join(f"""f_{name}:
{_RESTORE_FLAGS}mov eax, dword ptr [rip + {{D+{off}}}]
jmp rcx
""" for name, _, off in _FAST)
    + _SIGACTION_QUERY)

# Ring-0 syscall entry for hardware virtualization (flavour "hw").  GS_BASE
# (after swapgs) is the vCPU's per-CPU area: the TSS (RSP0 at +4) and a scratch
# slot for the user RSP.  After the exit, sysretq returns when RCX is canonical;
# otherwise (sysret would fault in ring 0 on Intel) an iretq frame is built on
# the kernel stack and the user takes the #GP at the bad RIP, as on Linux.
# Flags may be clobbered here: both returns reload RFLAGS from R11.
SYSCALL_ENTRY_HW = f"""
swapgs
mov qword ptr gs:[{L.PERCPU_SCRATCH}], rsp
mov rsp, qword ptr gs:[4]
out {L.PORT_SYSCALL}, al
push rax
mov rax, rcx
sar rax, 47
inc rax
cmp rax, 1
pop rax
ja noncanonical
mov rsp, qword ptr gs:[{L.PERCPU_SCRATCH}]
swapgs
.byte 0x48, 0x0f, 0x07
noncanonical:
push {L.USER_DS}
push qword ptr gs:[{L.PERCPU_SCRATCH}]
push r11
push {L.USER_CS}
push rcx
swapgs
iretq
"""


@record(frozen=True)
class StubCode:
    """Assembled stub pieces, each to be placed at STUB_VIRT + its offset."""
    flavour: str
    handlers: tuple[bytes, ...]          # 32 entries, one per exception vector
    trampoline: bytes                    # the user trampoline (pvm-native) or ring-0 entry (hw)
    syscall_exit_offset: int             # offset of the instruction after the syscall `out`
    sigaction_copy: tuple[int, int]      # trampoline offsets [lo, hi) of the rt_sigaction
                                         # query's stores to the user ((0, 0): none, hw)


def _sources(flavour: str) -> dict[str, str]:
    src = {f"h{v}": _handler_source(v) for v in range(32)}
    src["trampoline"] = TRAMPOLINE_PVM if flavour == "pvm-native" else SYSCALL_ENTRY_HW
    return src


def _assemble_pic(ks, text: str, base: int, data: int) -> bytes:
    """Assemble `text` at `base`, turning each `[rip + {D+n}]` into a RIP-relative
    reference to data + n.  Two passes: capstone reads the first pass's layout
    (every displacement is 32-bit, so the layout does not move)."""
    import re

    from capstone import CS_ARCH_X86, CS_MODE_64, Cs

    slots = [int(m) for m in re.findall(r"\{D\+(\d+)\}", text)]
    first = bytes(ks.asm(re.sub(r"\{D\+\d+\}", "0x10000000", text), base)[0])
    ends = [i.address + i.size for i in Cs(CS_ARCH_X86, CS_MODE_64).disasm(first, base)
            if "rip +" in i.op_str]
    if len(ends) != len(slots):
        raise AssertionError("could not place RIP-relative operands")
    disps = iter(data + n - end for n, end in zip(slots, ends))
    final = bytes(ks.asm(re.sub(r"\{D\+\d+\}", lambda _: hex(next(disps)), text), base)[0])
    if len(final) != len(first):
        raise AssertionError("RIP-relative pass changed the layout")
    return final


def _assemble(flavour: str) -> dict[str, str]:
    from keystone import KS_ARCH_X86, KS_MODE_64, Ks  # imported only when the cache misses

    ks = Ks(KS_ARCH_X86, KS_MODE_64)
    out = {}
    for name, text in _sources(flavour).items():
        if name.startswith("h"):
            base = L.STUB_VIRT + L.HANDLERS_OFF + int(name[1:]) * L.HANDLER_STRIDE
            out[name] = bytes(ks.asm(text, base)[0]).hex()
        else:
            # Position-independent: the same bytes serve every vCPU's trampoline page.
            base = L.STUB_VIRT + L.user_trampoline(0)
            out[name] = _assemble_pic(ks, text, base, base + L.PAGE_SIZE).hex()
    return out


@functools.cache
def build(flavour: str = "pvm-native") -> StubCode:
    """Assemble the stub for `flavour`, using an on-disk cache keyed by the source text."""
    if flavour not in FLAVOURS:
        raise ValueError(f"unknown stub flavour {flavour!r}")
    sources = _sources(flavour)
    pieces = load_or_assemble(f"stub-{flavour}", sources, list(sources), lambda: _assemble(flavour))
    handlers = tuple(pieces[f"h{v}"] for v in range(32))
    for v, code in enumerate(handlers):
        if len(code) > L.HANDLER_STRIDE:
            raise AssertionError(f"exception entry {v} is {len(code)} bytes")
    tramp = pieces["trampoline"]
    # The syscall exit is the `out imm8, al` (0xE6 imm8) of the entry path.
    exit_off = tramp.index(bytes([0xE6, L.PORT_SYSCALL])) + 2
    if tramp.count(bytes([0xE6, L.PORT_SYSCALL])) != 1 or len(tramp) > L.PAGE_SIZE:
        raise AssertionError("the syscall entry must have exactly one exit and fit a page")
    copy = (0, 0)
    if flavour == "pvm-native":
        if tramp.count(SIGACTION_COPY) != 1:
            raise AssertionError("the rt_sigaction query must have exactly one copy")
        lo = tramp.index(SIGACTION_COPY)
        copy = (lo, lo + len(SIGACTION_COPY))
    return StubCode(flavour, handlers, tramp, exit_off, copy)
