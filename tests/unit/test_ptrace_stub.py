"""The ptrace stub's pre-assembled code matches its source; the seccomp filter is well formed."""
from __future__ import annotations

import struct

from keystone import KS_ARCH_X86, KS_MODE_64, Ks

from kvmbox.abi import mman
from kvmbox.guest_stub import layout as L
from kvmbox.platform.ptrace import consts as C
from kvmbox.platform.ptrace import stubcode


def test_stub_code_is_the_assembled_source_at_any_address():
    ks = Ks(KS_ARCH_X86, KS_MODE_64)
    for page in (L.PTRACE_STUB_VIRT, L.USER_TOP + 0x1234000, 0):     # position-independent
        assert bytes(ks.asm(stubcode.STUB_ASM, page)[0]) == stubcode.STUB_CODE
    assert len(stubcode.STUB_CODE) <= L.PAGE_SIZE
    probe = stubcode.STUB_ASM[:stubcode.STUB_ASM.index("probe:")]
    assert len(ks.asm(probe, 0)[0]) == stubcode.PROBE_OFF


def test_stub_entry_points_are_where_the_offsets_say():
    code = stubcode.STUB_CODE
    assert code[stubcode.GADGET_OFF:stubcode.GADGET_RET_OFF] == b"\x0f\x05"          # syscall
    assert code[stubcode.GADGET_RET_OFF:stubcode.TRAP_OFF] == b"\x41\xff\xe7"        # jmp r15
    assert code[stubcode.TRAP_OFF] == 0xCC                                          # int3
    assert stubcode.SPAWN_OFF == stubcode.TRAP_OFF + 1


def test_stub_page_is_above_the_guest_range():
    assert L.PTRACE_STUB_VIRT >= L.USER_TOP


def _decode(prog: bytes) -> list[tuple[int, int, int, int]]:
    return [struct.unpack_from("<HBBI", prog, i) for i in range(0, len(prog), 8)]


def _run_bpf(prog: bytes, nr: int, ip: int, args=(0,) * 6) -> int:
    """A tiny interpreter for the three instruction kinds the filter uses."""
    data = struct.pack("<IIQ6Q", nr, C.AUDIT_ARCH_X86_64, ip, *args)
    insns = _decode(prog)
    pc, acc = 0, 0
    while True:
        code, jt, jf, k = insns[pc]
        if code == C.BPF_LD_W_ABS:
            acc, = struct.unpack_from("<I", data, k)
            pc += 1
        elif code == C.BPF_JEQ_K:
            pc += 1 + (jt if acc == k else jf)
        elif code == C.BPF_RET_K:
            return k
        else:
            raise AssertionError(f"unexpected BPF op {code:#x}")


def test_seccomp_filter_allows_only_gadget_memory_calls():
    memfd = 7
    page = L.USER_TOP + 0x5000
    prog = stubcode.seccomp_filter(memfd, page)
    gadget = page + stubcode.GADGET_RET_OFF
    ok, kill = C.SECCOMP_RET_ALLOW, C.SECCOMP_RET_KILL_PROCESS
    mmap_args = (0x400000, 0x1000, 5, mman.MAP_SHARED | mman.MAP_FIXED, memfd, 0)
    assert _run_bpf(prog, C.NR_mmap, gadget, mmap_args) == ok
    assert _run_bpf(prog, C.NR_munmap, gadget) == ok
    assert _run_bpf(prog, C.NR_mprotect, gadget) == ok
    assert _run_bpf(prog, C.NR_mmap, gadget, (0, 0x1000, 3, mman.MAP_PRIVATE | mman.MAP_ANONYMOUS, 2**32 - 1, 0)) == kill
    assert _run_bpf(prog, C.NR_mmap, gadget, mmap_args[:4] + (memfd + 1, 0)) == kill
    assert _run_bpf(prog, C.NR_mmap, gadget + 1, mmap_args) == C.SECCOMP_RET_TRAP
    for nr in (0, 1, 2, 39, 57, 59, 62, 101, 257, 322):       # read write open getpid fork execve kill ...
        assert _run_bpf(prog, nr, gadget) == kill
    assert _run_bpf(prog, C.NR_munmap, 0x401002) == C.SECCOMP_RET_TRAP      # off the gadget: never runs


def test_seccomp_filter_allows_stub_thread_calls_exactly():
    """Stub threads: clone with exactly STUB_THREAD_FLAGS, and exit; any variant, clone3 and
    exit_group kill the stub, and off the gadget they are never run."""
    memfd = 7
    page = L.USER_TOP + 0x5000
    prog = stubcode.seccomp_filter(memfd, page)
    gadget = page + stubcode.GADGET_RET_OFF
    ok, kill = C.SECCOMP_RET_ALLOW, C.SECCOMP_RET_KILL_PROCESS
    assert _run_bpf(prog, C.NR_clone, gadget, (C.STUB_THREAD_FLAGS, 0, 0, 0, 0, 0)) == ok
    for flags in (0x11, C.STUB_THREAD_FLAGS | 1 << 32, C.STUB_THREAD_FLAGS & ~0x100,
                  C.STUB_THREAD_FLAGS | 0x1000):                  # fork, high bits, no CLONE_VM, PIDFD
        assert _run_bpf(prog, C.NR_clone, gadget, (flags, 0, 0, 0, 0, 0)) == kill
    assert _run_bpf(prog, C.NR_exit, gadget) == ok
    for nr in (C.NR_clone, C.NR_exit):
        assert _run_bpf(prog, nr, gadget + 1) == C.SECCOMP_RET_TRAP       # off the gadget
    for nr in (435, 231, 34, 157):                                   # clone3 exit_group pause prctl
        assert _run_bpf(prog, nr, gadget) == kill

