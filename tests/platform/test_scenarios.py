"""Platform scenarios that must behave the same on every trap mechanism (kvm and ptrace)."""
from __future__ import annotations

import struct
import threading
import time

import pytest

from guest import CODE, DATA, FLAGS_PROLOGUE, guest_factory, ks, platform_fixture
from kvmbox.abi.mman import PROT_READ, PROT_WRITE
from kvmbox.platform.base import INTERRUPTED, SYSCALL, Fault


@pytest.fixture(scope="module", params=["kvm", "ptrace"])
def platform(request):
    yield from platform_fixture(request.param)


@pytest.fixture
def guest(platform):
    yield from guest_factory(platform)


def test_syscall_round_trip_and_return_value(guest):
    g = guest("mov eax, 39\n syscall\n mov rdi, rax\n mov eax, 60\n syscall\n")
    assert g.run() is SYSCALL
    assert g.ctx.syscall_args()[0] == 39
    g.ctx.set_return(1234)
    assert g.run() is SYSCALL
    nr, a0, *_ = g.ctx.syscall_args()
    assert (nr, a0) == (60, 1234)


def test_rip_reported_is_the_return_address(guest):
    g = guest("nop\n mov eax, 39\n syscall\n ud2\n")
    assert g.run() is SYSCALL
    ret = g.ctx.get_regs()["rip"]
    assert ret == CODE + 1 + 5 + 2
    ev = g.run()
    assert isinstance(ev, Fault) and ev.vector == 6 and ev.rip == ret


def test_syscall_preserves_registers_flags_and_red_zone(guest):
    g = guest("""
        mov rbx, 0x1111111111111111
        mov rbp, 0x2222222222222222
        mov r12, 0x3333333333333333
        mov r15, 0x4444444444444444
        mov qword ptr [rsp-8], 0x5555
        mov qword ptr [rsp-128], 0x6666
        std
        mov eax, 39
        syscall
        mov rsi, [rsp-8]
        mov rdi, [rsp-128]
        pushfq
        pop rdx
        cld
        mov eax, 60
        syscall
    """)
    assert g.run() is SYSCALL
    sp_before = g.ctx.get_regs()["rsp"]
    g.ctx.set_return(0)
    assert g.run() is SYSCALL
    r = g.ctx.get_regs()
    assert r["rbx"] == 0x1111111111111111 and r["rbp"] == 0x2222222222222222
    assert r["r12"] == 0x3333333333333333 and r["r15"] == 0x4444444444444444
    assert r["rdx"] & 0x400, "DF must survive the syscall (Linux restores RFLAGS)"
    assert (r["rsi"], r["rdi"]) == (0x5555, 0x6666), "the red zone must survive"
    assert r["rsp"] == sp_before


def test_rcx_r11_as_linux_leaves_them(guest):
    """After `syscall` Linux leaves rcx = the return address and r11 = RFLAGS (IF and bit 1 set)."""
    g = guest("mov eax, 39\n syscall\n mov rdi, rcx\n mov rsi, r11\n mov eax, 60\n syscall\n")
    assert g.run() is SYSCALL
    ret = g.ctx.get_regs()["rip"]
    g.ctx.set_return(0)
    assert g.run() is SYSCALL
    _, rcx, r11, *_ = g.ctx.syscall_args()
    assert rcx == ret and r11 & 0x202 == 0x202


def test_flags_preserved_across_an_exiting_syscall(guest):
    g = guest(f"""{FLAGS_PROLOGUE}
        mov eax, 999
        syscall
        pushfq
        pop rdi
        mov eax, 60
        syscall
    """)
    assert g.run() is SYSCALL and g.ctx.syscall_args()[0] == 999
    g.ctx.set_return(-38)
    assert g.run() is SYSCALL
    assert g.ctx.syscall_args()[1] & 0x8D5 == 0x8C5


def test_page_fault_then_resume_after_mapping(guest):
    # A read, so the error code is exact on both: ptrace infers the write bit from siginfo
    # and cannot tell a not-present write from a not-present read.
    g = guest("mov rax, 0xa00000\n mov ebx, dword ptr [rax]\n mov eax, 60\n syscall\n")
    ev = g.run()
    assert isinstance(ev, Fault)
    assert (ev.vector, ev.address, ev.error_code & 7) == (14, 0xA00000, 4)   # user read, not present
    assert ev.rip == CODE + len(ks.asm("mov rax, 0xa00000", CODE)[0])
    g.map(0xA00000, 0x1000, PROT_READ, struct.pack("<I", 0xCAFE))
    assert g.run() is SYSCALL
    assert g.ctx.get_regs()["rbx"] == 0xCAFE


@pytest.mark.parametrize("readonly_by", ["map", "protect"])
def test_host_mapping_edits_are_seen(guest, platform, readonly_by):
    """A remapped, unmapped or write-protected page takes effect at once (on KVM: PVM shadow
    paging must follow the page-table edits). The page comes back read-only either by mapping
    it read-only or by mapping it read-write and then protect()ing it."""
    g = guest("""
    again:
        mov rax, 0xa00000
        movzx ebx, byte ptr [rax]
        mov eax, 39
        syscall
        cmp rdi, 1
        jne again
        mov rax, 0xa00000
        mov byte ptr [rax], 7
        mov eax, 60
        syscall
    """)
    a = g.map(0xA00000, 0x1000, PROT_READ | PROT_WRITE, b"\xaa")
    assert g.run() is SYSCALL and g.ctx.get_regs()["rbx"] == 0xAA
    b_ext = platform.frames.alloc(1)
    g.frames.append(b_ext[0])
    platform.memfile.write(b_ext[0][0], b"\xbb")
    g.aspace.map(0xA00000, 0x1000, b_ext[0][0], PROT_READ | PROT_WRITE)
    g.ctx.set_return(0)
    assert g.run() is SYSCALL and g.ctx.get_regs()["rbx"] == 0xBB
    g.aspace.unmap(0xA00000, 0x1000)
    ev = g.run()
    assert isinstance(ev, Fault) and ev.vector == 14 and ev.address == 0xA00000
    if readonly_by == "map":
        g.aspace.map(0xA00000, 0x1000, a, PROT_READ)
    else:
        g.aspace.map(0xA00000, 0x1000, a, PROT_READ | PROT_WRITE)
        g.aspace.protect(0xA00000, 0x1000, PROT_READ)
    g.ctx.set_regs(rdi=1)
    assert g.run() is SYSCALL and g.ctx.get_regs()["rbx"] == 0xAA
    g.ctx.set_regs(rdi=1)
    g.ctx.set_return(0)
    ev = g.run()
    assert isinstance(ev, Fault) and ev.vector == 14 and ev.error_code & 3 == 3   # write, present


def test_interrupt_stops_a_spinning_guest(guest):
    g = guest("spin: jmp spin\n")
    threading.Timer(0.2, g.ctx.interrupt).start()
    t0 = time.monotonic()
    assert g.run() is INTERRUPTED
    assert time.monotonic() - t0 < 5
    g.ctx.clear_interrupt()
    threading.Timer(0.1, g.ctx.interrupt).start()       # and again, once cleared
    assert g.run() is INTERRUPTED
    g.ctx.clear_interrupt()


def test_interrupt_before_switch_returns_at_once(guest):
    g = guest("spin: jmp spin\n")
    g.ctx.interrupt()
    assert g.run() is INTERRUPTED
    g.ctx.clear_interrupt()


def test_fs_base_set_by_host_is_used_by_guest(guest):
    g = guest("mov rax, qword ptr fs:[8]\n mov rdi, rax\n mov eax, 60\n syscall\n")
    g.p.memfile.write(g.data_phys + 8, struct.pack("<Q", 0xFEEDFACE))
    g.ctx.set_regs(fs_base=DATA)
    assert g.run() is SYSCALL
    assert g.ctx.syscall_args()[1] == 0xFEEDFACE
    assert g.ctx.get_regs()["fs_base"] == DATA


def test_avx_instructions_run(guest):
    g = guest(f"""
        mov rax, {DATA}
        vmovdqu ymm0, [rax]
        vpaddd ymm0, ymm0, ymm0
        vmovdqu [rax+32], ymm0
        mov eax, 60
        syscall
    """)
    g.p.memfile.write(g.data_phys, struct.pack("<8I", *range(1, 9)))
    assert g.run() is SYSCALL
    assert struct.unpack("<8I", g.p.memfile.read(g.data_phys + 32, 32)) == tuple(2 * i for i in range(1, 9))


# `int 0x80` (no IA-32 gate here) faults at the instruction. Which fault differs legitimately:
# hardware (and ptrace, which reports what hardware would) raise #GP for the absent gate;
# PVM reports `int n` for n >= 32 from ring 3 as #UD.
_INT80_VECTOR = {"ptrace-sysemu": 13, "hw": 13, "pvm-native": 6}


def test_int80_is_a_fault_not_a_syscall(guest, platform):
    g = guest("mov eax, 20\n int 0x80\n")
    ev = g.run()
    assert isinstance(ev, Fault) and ev.vector == _INT80_VECTOR[platform.flavour] and ev.rip == CODE + 5
    assert g.ctx.get_regs()["rip"] == CODE + 5


@pytest.mark.parametrize("insn,vector", [
    ("ud2", 6), ("int3", 3), ("xor ecx, ecx\n div ecx", 0), ("hlt", 13), ("cli", 13),
    ("out 0x80, al", 13), ("mov rax, cr3", 13), ("wrmsr", 13), ("lgdt [rax]", 13),
    ("mov dx, 0x10\n out dx, al", 13),
])
def test_exceptions_and_privileged_instructions(guest, insn, vector):
    g = guest(f"mov rax, {DATA}\n {insn}\n")
    ev = g.run()
    assert isinstance(ev, Fault), ev
    assert ev.vector == vector


def test_a_new_guest_starts_with_a_clean_fpu(guest):
    """No host (Sentry) register contents reach a guest: at its first instruction every XMM
    register is zero, MXCSR and the x87 control word hold their reset values.  (A ptrace stub
    is forked from the Sentry's thread, whose SSE registers hold whatever Python last did.)"""
    x = [i * 1.000001 for i in range(1000)]            # leave doubles in the Sentry's XMMs
    assert sum(x) > 0
    stores = "".join(f"movdqu [{DATA + 16 * i:#x}], xmm{i}\n" for i in range(16))
    g = guest(stores + f"stmxcsr [{DATA + 256:#x}]\n fnstcw [{DATA + 260:#x}]\n"
                       "mov eax, 39\n syscall\n")
    assert g.run() is SYSCALL
    raw = g.p.memfile.read(g.data_phys, 264)
    assert raw[:256] == bytes(256), "XMM registers carried data into the guest"
    mxcsr, fcw = struct.unpack_from("<IH", raw, 256)
    assert (mxcsr, fcw) == (0x1F80, 0x37F)
