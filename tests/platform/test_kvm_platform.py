"""KVM-only platform tests (the stub region, the identity fast path, a broken stub); hand-assembled
(keystone) guest code, no Sentry involved. Behaviour shared with ptrace: test_scenarios.py."""
from __future__ import annotations

import struct

import pytest
import helpers
from guest import FLAGS_PROLOGUE, Guest

from kvmbox.guest_stub import layout as L
from kvmbox.platform.base import SYSCALL, Fault


pytestmark = pytest.mark.skipif(not helpers.kvm_usable(), reason="no usable /dev/kvm on this host")


@pytest.mark.parametrize("what", ["read_gdt", "write_trampoline", "write_fast_data", "exec_handler",
                                  "read_tables"])
def test_stub_region_is_unreachable_from_ring3(kvm_guest, what):
    target = {
        "read_gdt": f"mov rax, {L.STUB_VIRT + L.GDT_OFF}\n mov rbx, [rax]",
        "write_trampoline": f"mov rax, {L.STUB_VIRT + L.user_trampoline(0)}\n mov byte ptr [rax], 0xcc",
        "write_fast_data": f"mov rax, {L.STUB_VIRT + L.fast_data(0)}\n mov byte ptr [rax], 1",
        "exec_handler": f"mov rax, {L.STUB_VIRT + L.HANDLERS_OFF}\n jmp rax",
        "read_tables": f"mov rax, {L.STUB_VIRT + L.STUB_TABLES_OFF}\n mov rbx, [rax]",
    }[what]
    g = kvm_guest(target)
    ev = g.run()
    assert isinstance(ev, Fault) and ev.vector == 14, ev


_IDS = dict(pid=4242, tid=4243, ppid=4241, uid=1001, euid=1002, gid=1003, egid=1004)
@pytest.mark.parametrize("nr,key", [(39, "pid"), (186, "tid"), (110, "ppid"), (102, "uid"),
                                    (107, "euid"), (104, "gid"), (108, "egid")])
def test_identity_syscalls_answered_without_exit(kvm_guest, nr, key):
    g = kvm_guest(f"""{FLAGS_PROLOGUE}
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


def test_identity_fast_path_can_be_disabled(kvm_guest):
    g = kvm_guest("mov eax, 39\n syscall\n mov rdi, rax\n mov eax, 60\n syscall\n")
    g.ctx.set_identity(enabled=False, **_IDS)
    assert g.run() is SYSCALL and g.ctx.syscall_args()[0] == 39
    g.ctx.set_return(7)
    assert g.run() is SYSCALL and g.ctx.syscall_args()[:2] == (60, 7)


def test_ring0_fault_is_a_sandbox_crash_not_a_host_crash():
    """Break the stub on purpose (IST1 -> unmapped): the user fault cannot be delivered,
    the guest triple-faults, and the host gets a SandboxCrash it can report."""
    from kvmbox.errors import SandboxCrash
    from kvmbox.platform.kvm.platform import KvmPlatform
    p = KvmPlatform(64 << 20)
    try:
        g = Guest(p, "mov rax, 0xa00000\n mov rbx, [rax]\n")
        for index in range(p.max_vcpus):        # whichever vCPU the pool gives the guest
            struct.pack_into("<Q", p.memfile.view, L.percpu_tss(index) + 0x24, 0xDEAD000)
        with pytest.raises(SandboxCrash) as info:
            g.run()
        assert "stub bug" in str(info.value)
        g.close()
    finally:
        p.close()
