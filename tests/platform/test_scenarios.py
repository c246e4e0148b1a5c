"""Platform scenarios that must behave the same on every trap mechanism (kvm and ptrace)."""
from __future__ import annotations

import pytest

import helpers
from guest import CODE, DATA, guest_factory
from kvmbox.platform.base import SYSCALL, Fault


@pytest.fixture(scope="module", params=["kvm", "ptrace"])
def platform(request):
    if request.param == "kvm":
        if not helpers.kvm_usable():
            pytest.skip("no usable /dev/kvm on this host")
        from kvmbox.platform.kvm.platform import KvmPlatform
        p = KvmPlatform(128 << 20)
    else:
        from kvmbox.platform.ptrace.platform import PtracePlatform
        p = PtracePlatform(128 << 20)
    yield p
    p.close()


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
