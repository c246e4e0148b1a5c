"""The KVM trampoline's in-guest answer to rt_sigaction queries (kvmbox/guest_stub/stub.py):
hand-assembled guest code against a table published with set_sigactions.  Each case
checks that the query did (or did not) leave the guest, what it wrote, and that the
registers and flags a syscall keeps were kept.  The Sentry side (publishing, threads,
exec) runs real programs: tests/programs/sigquery.c."""
from __future__ import annotations

import errno
import struct

import pytest
import helpers
from guest import DATA, FLAGS_PROLOGUE

from kvmbox.platform.base import SYSCALL, Fault

pytestmark = pytest.mark.skipif(not helpers.kvm_usable(), reason="no usable /dev/kvm on this host")

SA = struct.Struct("<QQQQ")


def _table() -> bytes:
    """Signal n: handler 0x1000+n, flags 0x100*n, restorer 0x2000+n, mask bit n-1."""
    return b"".join(SA.pack(0x1000 + n, 0x100 * n, 0x2000 + n, 1 << (n - 1)) for n in range(1, 65))


_IDS = dict(pid=1, tid=1, ppid=0, uid=0, euid=0, gid=0, egid=0)


def _query(kvm_guest, sig: int, *, act: int = 0, oact: int = DATA + 0x40, size: int = 8,
           prologue: str = FLAGS_PROLOGUE, table: bytes | None = None, fast: bool = True):
    """A guest making rt_sigaction(sig, act, oact, size), then exit(60) with
    rdi=result, rsi=rflags, rdx..r9 = what rdi, rsi, rdx, r10 held after the call."""
    g = kvm_guest(f"""
        mov rdi, {sig}
        mov rsi, {act}
        mov rdx, {oact}
        mov r10, {size}
        mov r12, 0x5a5a
        {prologue}
        mov eax, 13
        syscall
        mov rbx, rdi
        pushfq
        pop r13
        cld
        mov r8, rsi
        mov r9, rdx
        mov rdx, rbx
        mov rsi, r13
        mov rbx, r10
        mov r10, rbx
        mov rdi, rax
        mov eax, 60
        syscall
    """)
    g.ctx.set_identity(enabled=fast, **_IDS)
    g.ctx.set_sigactions(_table() if table is None else table, object())
    return g


def test_a_query_is_answered_without_an_exit(kvm_guest):
    g = _query(kvm_guest, 10)
    assert g.run() is SYSCALL
    nr, ret, flags, rdi, r10, r8, r9 = g.ctx.syscall_args()
    assert nr == 60, "the query must not have exited"
    assert ret == 0
    assert (rdi, r8, r9, r10) == (10, 0, DATA + 0x40, 8), "rdi, rsi, rdx, r10 must be kept"
    assert flags & 0x8D5 == 0x8C5, f"arithmetic flags not preserved: {flags:#x}"
    assert g.ctx.get_regs()["r12"] == 0x5A5A
    got = bytes(g.p.memfile.view[g.data_phys + 0x40:g.data_phys + 0x60])
    assert SA.unpack(got) == (0x1000 + 10, 0xA00, 0x2000 + 10, 1 << 9)


@pytest.mark.parametrize("sig", [1, 9, 19, 32, 63, 64])
def test_each_signal_reads_its_own_entry(kvm_guest, sig):
    g = _query(kvm_guest, sig)
    assert g.run() is SYSCALL and g.ctx.syscall_args()[:2] == (60, 0)
    got = bytes(g.p.memfile.view[g.data_phys + 0x40:g.data_phys + 0x60])
    assert SA.unpack(got) == (0x1000 + sig, 0x100 * sig, 0x2000 + sig, 1 << (sig - 1))


@pytest.mark.parametrize("why,kw", [
    ("a new action", dict(sig=10, act=DATA)),
    ("NULL oldact", dict(sig=10, oact=0)),
    ("sig 0", dict(sig=0)),
    ("sig 65", dict(sig=65)),
    ("sig -1", dict(sig=-1)),
    ("high bits in sig (Linux reads an int)", dict(sig=(1 << 32) | 10)),
    ("sigsetsize 4", dict(sig=10, size=4)),
    ("sigsetsize 16", dict(sig=10, size=16)),
    ("DF set", dict(sig=10, prologue="std")),
    ("no table published", dict(sig=10, table=b"")),
    ("fast path off (tracing)", dict(sig=10, fast=False)),
])
def test_every_other_form_exits_with_its_arguments_intact(kvm_guest, why, kw):
    table = kw.pop("table", None)
    g = _query(kvm_guest, **kw)
    if table == b"":
        g.ctx.set_sigactions(None, object())
    assert g.run() is SYSCALL, why
    nr, sig, act, oact, size, *_ = g.ctx.syscall_args()
    assert nr == 13, f"{why}: must reach the Sentry"
    assert (sig, act, oact, size) == (kw["sig"] & (2**64 - 1), kw.get("act", 0),
                                      kw.get("oact", DATA + 0x40), kw.get("size", 8))
    assert bytes(g.p.memfile.view[g.data_phys + 0x40:g.data_phys + 0x60]) == bytes(32)


@pytest.mark.parametrize("oact", [0x10000000, 0x400000, 0x7F8000131000, 0x8000000000000000,
                                  0xFFFFFFFF81000000, DATA + 0x2000 - 16])
def test_a_bad_oldact_faults_in_the_copy_and_becomes_efault(kvm_guest, oact):
    """Unmapped, read-only code, the stub's own data page (user-readable, not writable),
    non-canonical, kernel half, and a struct running off the end of the data mapping:
    the store faults in the trampoline's copy with user rights; fast_fault then ends
    the syscall with -EFAULT and the caller's rdi and rsi, as Linux's copy_to_user."""
    from kvmbox.guest_stub import layout as L
    if oact == 0x7F8000131000:
        oact = L.STUB_VIRT + L.fast_data(0)
    g = _query(kvm_guest, 10, oact=oact)
    ev = g.run()
    assert isinstance(ev, Fault) and ev.vector in (13, 14), ev
    assert g.ctx.fast_fault(ev), "the fault is in the query's copy"
    assert g.run() is SYSCALL
    nr, ret, flags, rdi, r10, r8, r9 = g.ctx.syscall_args()
    assert (nr, ret - 2**64) == (60, -errno.EFAULT)
    assert (rdi, r8, r9, r10) == (10, 0, oact, 8)
    assert flags & 0x8D5 == 0x8C5, f"arithmetic flags not preserved: {flags:#x}"


def test_a_fault_elsewhere_is_not_taken_for_the_query(kvm_guest):
    g = kvm_guest("mov rax, 0x10000000\n mov rbx, [rax]\n")
    g.ctx.set_sigactions(_table(), object())
    ev = g.run()
    assert isinstance(ev, Fault) and ev.vector == 14
    assert not g.ctx.fast_fault(ev)


def test_a_republished_table_is_what_the_next_query_reads(kvm_guest):
    g = _query(kvm_guest, 10)
    table = bytearray(_table())
    SA.pack_into(table, 9 * 32, 7, 8, 9, 10)
    g.ctx.set_sigactions(bytes(table), object())
    assert g.run() is SYSCALL and g.ctx.syscall_args()[:2] == (60, 0)
    got = bytes(g.p.memfile.view[g.data_phys + 0x40:g.data_phys + 0x60])
    assert SA.unpack(got) == (7, 8, 9, 10)
