"""Platform tests: hand-assembled (keystone) guest code run on the KVM platform, no Sentry involved."""
from __future__ import annotations

import struct
import threading
import time

import pytest
import helpers
from guest import CODE, DATA, Guest, guest_factory
from guest import ks as _ks

from kvmbox.guest_stub import layout as L
from kvmbox.platform.base import INTERRUPTED, PROT_READ, PROT_WRITE, SYSCALL, Fault


pytestmark = pytest.mark.skipif(not helpers.kvm_usable(), reason="no usable /dev/kvm on this host")


@pytest.fixture(scope="module")
def platform():
    from kvmbox.platform.kvm.platform import KvmPlatform
    p = KvmPlatform(256 << 20)
    yield p
    p.close()


@pytest.fixture
def guest(platform):
    yield from guest_factory(platform)


def test_syscall_preserves_registers_flags_and_red_zone(guest):
    src = """
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
    """
    g = guest(src)
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


def test_page_fault_then_resume_after_mapping(guest):
    g = guest("mov rax, 0xa00000\n mov ebx, dword ptr [rax]\n mov eax, 60\n syscall\n")
    ev = g.run()
    assert isinstance(ev, Fault)
    assert (ev.vector, ev.address, ev.error_code & 7) == (14, 0xA00000, 4)   # user read, not present
    assert ev.rip == CODE + len(_ks.asm("mov rax, 0xa00000", CODE)[0])
    g.map(0xA00000, 0x1000, PROT_READ, struct.pack("<I", 0xCAFE))
    assert g.run() is SYSCALL
    assert g.ctx.get_regs()["rbx"] == 0xCAFE


@pytest.mark.parametrize("what", ["read_gdt", "write_trampoline", "write_fast_data", "exec_handler",
                                  "read_tables"])
def test_stub_region_is_unreachable_from_ring3(guest, what):
    target = {
        "read_gdt": f"mov rax, {L.STUB_VIRT + L.GDT_OFF}\n mov rbx, [rax]",
        "write_trampoline": f"mov rax, {L.STUB_VIRT + L.user_trampoline(0)}\n mov byte ptr [rax], 0xcc",
        "write_fast_data": f"mov rax, {L.STUB_VIRT + L.fast_data(0)}\n mov byte ptr [rax], 1",
        "exec_handler": f"mov rax, {L.STUB_VIRT + L.HANDLERS_OFF}\n jmp rax",
        "read_tables": f"mov rax, {L.STUB_VIRT + L.STUB_TABLES_OFF}\n mov rbx, [rax]",
    }[what]
    g = guest(target)
    ev = g.run()
    assert isinstance(ev, Fault) and ev.vector == 14, ev


def test_interrupt_stops_a_spinning_guest(guest):
    g = guest("spin: jmp spin\n")
    threading.Timer(0.2, g.ctx.interrupt).start()
    t0 = time.monotonic()
    assert g.run() is INTERRUPTED
    assert time.monotonic() - t0 < 5
    g.ctx.clear_interrupt()


def test_fs_base_set_by_host_is_used_by_guest(guest):
    g = guest("mov rax, qword ptr fs:[8]\n mov rdi, rax\n mov eax, 60\n syscall\n")
    g.p.memfile.write(g.data_phys + 8, struct.pack("<Q", 0xFEEDFACE))
    g.ctx.set_regs(fs_base=DATA)
    assert g.run() is SYSCALL
    assert g.ctx.syscall_args()[1] == 0xFEEDFACE


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


def test_host_page_table_edits_are_seen(guest, platform):
    """PVM shadow paging: a remapped, unmapped or write-protected page must take effect at once."""
    g = guest(f"""
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
    g.aspace.map(0xA00000, 0x1000, a, PROT_READ)
    g.ctx.set_regs(rdi=1)
    assert g.run() is SYSCALL and g.ctx.get_regs()["rbx"] == 0xAA
    g.ctx.set_regs(rdi=1)
    g.ctx.set_return(0)
    ev = g.run()
    assert isinstance(ev, Fault) and ev.vector == 14 and ev.error_code & 3 == 3   # write, present


_IDS = dict(pid=4242, tid=4243, ppid=4241, uid=1001, euid=1002, gid=1003, egid=1004)
# Set CF, PF, ZF, SF and OF (0x8c5), then a syscall, then read RFLAGS.
_FLAGS_PROLOGUE = """
    mov eax, 0x7fffffff
    add eax, 1
    mov al, 0
    mov ah, 0xc5
    sahf
"""


@pytest.mark.parametrize("nr,key", [(39, "pid"), (186, "tid"), (110, "ppid"), (102, "uid"),
                                    (107, "euid"), (104, "gid"), (108, "egid")])
def test_identity_syscalls_answered_without_exit(guest, nr, key):
    g = guest(f"""{_FLAGS_PROLOGUE}
        mov eax, {nr}
        syscall
        mov rdi, rax
        pushfq
        pop rsi
        mov eax, 60
        syscall
    """)
    g.ctx.set_identity(enabled=True, **_IDS)
    assert g.run() is SYSCALL
    nr_seen, value, flags, *_ = g.ctx.syscall_args()
    assert nr_seen == 60, "the identity syscall must not have exited"
    assert value == _IDS[key]
    assert flags & 0x8D5 == 0x8C5, f"arithmetic flags not preserved: {flags:#x}"


def test_identity_fast_path_can_be_disabled(guest):
    g = guest("mov eax, 39\n syscall\n mov rdi, rax\n mov eax, 60\n syscall\n")
    g.ctx.set_identity(enabled=False, **_IDS)
    assert g.run() is SYSCALL and g.ctx.syscall_args()[0] == 39
    g.ctx.set_return(7)
    assert g.run() is SYSCALL and g.ctx.syscall_args()[:2] == (60, 7)


def test_flags_preserved_across_an_exiting_syscall(guest):
    g = guest(f"""{_FLAGS_PROLOGUE}
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


def test_ring0_fault_is_a_sandbox_crash_not_a_host_crash():
    """Break the stub on purpose (IST1 -> unmapped): the user fault cannot be delivered,
    the guest triple-faults, and the host gets a SandboxCrash it can report."""
    from kvmbox.errors import SandboxCrash
    from kvmbox.platform.kvm.platform import KvmPlatform
    p = KvmPlatform(64 << 20)
    try:
        g = Guest(p, "mov rax, 0xa00000\n mov rbx, [rax]\n")
        struct.pack_into("<Q", p.memfile.view, L.percpu_tss(g.ctx.vcpu.index) + 0x24, 0xDEAD000)
        with pytest.raises(SandboxCrash) as info:
            g.run()
        assert "stub bug" in str(info.value)
        g.close()
    finally:
        p.close()
