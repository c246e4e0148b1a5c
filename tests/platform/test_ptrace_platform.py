"""Platform tests for ptrace: hand-assembled (keystone) guest code in a stub process, then whole programs."""
from __future__ import annotations

import os
import struct
import subprocess
import sys
import threading
import time

import pytest
from guest import CODE, DATA, Guest, guest_factory
from guest import ks as _ks

import helpers
from kvmbox.guest_stub import layout as L
from kvmbox.platform.base import INTERRUPTED, PROT_READ, PROT_WRITE, SYSCALL, Fault
from kvmbox.platform.ptrace import stubcode

GADGET = L.PTRACE_STUB_VIRT + stubcode.GADGET_OFF


class PtraceGuest(Guest):
    @property
    def pid(self) -> int:
        return self.aspace.stub.pid


@pytest.fixture(scope="module")
def platform():
    from kvmbox.platform.ptrace.platform import PtracePlatform
    p = PtracePlatform(256 << 20)
    yield p
    p.close()


@pytest.fixture
def guest(platform):
    yield from guest_factory(platform, PtraceGuest)


def test_platform_identity(platform):
    assert (platform.name, platform.flavour) == ("ptrace", "ptrace-sysemu")
    assert platform.user_range == (0x10000, L.USER_TOP)


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
    assert r["rdx"] & 0x400, "DF must survive the syscall"
    assert (r["rsi"], r["rdi"]) == (0x5555, 0x6666), "the red zone must survive"
    assert r["rsp"] == sp_before


def test_rcx_r11_as_linux_leaves_them(guest):
    g = guest("mov eax, 39\n syscall\n mov rdi, rcx\n mov rsi, r11\n mov eax, 60\n syscall\n")
    assert g.run() is SYSCALL
    ret = g.ctx.get_regs()["rip"]
    g.ctx.set_return(0)
    assert g.run() is SYSCALL
    _, rcx, r11, *_ = g.ctx.syscall_args()
    assert rcx == ret and r11 & 0x202 == 0x202


def test_page_fault_then_resume_after_mapping(guest):
    g = guest("mov rax, 0xa00000\n mov ebx, dword ptr [rax]\n mov eax, 60\n syscall\n")
    ev = g.run()
    assert isinstance(ev, Fault)
    assert (ev.vector, ev.address, ev.error_code & 5) == (14, 0xA00000, 4)   # user, not present
    assert ev.rip == CODE + len(_ks.asm("mov rax, 0xa00000", CODE)[0])
    g.map(0xA00000, 0x1000, PROT_READ, struct.pack("<I", 0xCAFE))
    assert g.run() is SYSCALL
    assert g.ctx.get_regs()["rbx"] == 0xCAFE


def test_fault_signal_is_not_delivered(guest):
    g = guest("ud2\n")
    for _ in range(3):                       # the Sentry decides; the stub is never killed by it
        ev = g.run()
        assert isinstance(ev, Fault) and ev.vector == 6 and ev.rip == CODE
    assert os.path.exists(f"/proc/{g.pid}")


def test_interrupt_stops_a_spinning_guest(guest):
    g = guest("spin: jmp spin\n")
    threading.Timer(0.2, g.ctx.interrupt).start()
    t0 = time.monotonic()
    assert g.run() is INTERRUPTED
    assert time.monotonic() - t0 < 5
    g.ctx.clear_interrupt()
    threading.Timer(0.1, g.ctx.interrupt).start()
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


def test_host_mapping_edits_are_seen(guest, platform):
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
    g.aspace.map(0xA00000, 0x1000, a, PROT_READ | PROT_WRITE)
    g.aspace.protect(0xA00000, 0x1000, PROT_READ)
    g.ctx.set_regs(rdi=1)
    assert g.run() is SYSCALL and g.ctx.get_regs()["rbx"] == 0xAA
    g.ctx.set_regs(rdi=1)
    g.ctx.set_return(0)
    ev = g.run()
    assert isinstance(ev, Fault) and ev.vector == 14 and ev.error_code & 3 == 3   # write, present


def test_protect_over_holes(guest):
    g = guest("nop\n")
    g.map(0xB00000, 0x1000, PROT_READ | PROT_WRITE)
    g.map(0xB02000, 0x1000, PROT_READ | PROT_WRITE)
    g.aspace.protect(0xB00000, 0x3000, PROT_READ)
    maps = open(f"/proc/{g.pid}/maps").read()
    assert "00b00000-00b01000 r--s" in maps and "00b02000-00b03000 r--s" in maps


@pytest.mark.parametrize("nr", [39, 1, 257, 9, 62, 57, 59])   # getpid write openat mmap kill fork execve
def test_guest_cannot_get_a_real_host_syscall_through_the_gadget(guest, nr):
    """Jumping to the stub's own syscall instruction is still just an emulated syscall."""
    g = guest(f"""
        mov eax, {nr}
        mov edi, 1
        mov rsi, {DATA}
        mov edx, 4
        mov r15, {CODE + 0x100}
        mov rcx, {GADGET}
        jmp rcx
    """)
    assert g.run() is SYSCALL
    assert g.ctx.syscall_args()[0] == nr
    assert g.ctx.get_regs()["rip"] == GADGET + 2
    g.ctx.set_return(-38)
    ev = g.run()                               # jmp r15 -> zeros at CODE+0x100: add [rax], al faults
    assert isinstance(ev, Fault) and ev.rip == CODE + 0x100
    assert os.path.exists(f"/proc/{g.pid}")


def test_guest_syscall_not_executed_by_host(guest, tmp_path):
    """openat/write issued by the guest must never reach the host kernel."""
    path = tmp_path / "must-not-exist"
    g = guest(f"""
        mov eax, 257
        mov edi, -100
        mov rsi, {DATA}
        mov edx, 0x41
        mov r10d, 0x1b6
        syscall
        mov eax, 60
        syscall
    """)
    g.p.memfile.write(g.data_phys, str(path).encode() + b"\0")
    assert g.run() is SYSCALL and g.ctx.syscall_args()[0] == 257
    g.ctx.set_return(-13)
    assert g.run() is SYSCALL and g.ctx.syscall_args()[0] == 60
    assert not path.exists()


def test_stub_dies_on_a_forbidden_injected_syscall(guest):
    from kvmbox.errors import SandboxCrash
    g = guest("nop\n")
    stub = g.aspace.stub
    with pytest.raises(SandboxCrash, match="SIGSYS"):
        stub.syscall(39)                       # getpid, even from the gadget
    assert not stub.alive


def test_stub_dies_on_mmap_of_another_fd(guest):
    from kvmbox.errors import SandboxCrash
    g = guest("nop\n")
    with pytest.raises(SandboxCrash, match="SIGSYS"):
        g.aspace.stub.syscall(9, 0xC00000, 0x1000, 3, 0x22, 0xFFFFFFFF, 0)   # anonymous mmap


def test_stub_has_only_the_memfd_own_pgid_and_one_page(guest, platform):
    g = guest("nop\n")
    fds = os.listdir(f"/proc/{g.pid}/fd")
    assert fds == [str(platform.memfile.fd)]
    assert os.getpgid(g.pid) == g.pid != os.getpgid(0)
    ranges = [line.split()[0] for line in open(f"/proc/{g.pid}/maps")
              if "memfd:kvmbox-guest" not in line]
    assert ranges == [f"{L.PTRACE_STUB_VIRT:x}-{L.PTRACE_STUB_VIRT + 0x1000:x}",
                      "ffffffffff600000-ffffffffff601000"]
    status = open(f"/proc/{g.pid}/status").read()
    assert "Seccomp:\t2" in status and "NoNewPrivs:\t1" in status


def test_stub_is_released(guest):
    g = guest("nop\n")
    pid = g.pid
    g.aspace.release()
    assert not os.path.exists(f"/proc/{pid}/status") or "zombie" not in open(f"/proc/{pid}/status").read()
    g.aspace.release()                         # idempotent


_DIES_WITH_SENTRY = r"""
import os, sys
sys.path.insert(0, sys.argv[1])
from kvmbox.platform.ptrace.platform import PtracePlatform
p = PtracePlatform(64 << 20)
a = p.new_address_space()
a.map(0x400000, 0x1000, p.frames.alloc(1)[0][0], 1)
print(a.stub.pid, flush=True)
os.kill(os.getpid(), 9)
"""


def test_stub_dies_with_the_sentry():
    proc = subprocess.run([sys.executable, "-c", _DIES_WITH_SENTRY, str(helpers.REPO)],
                          stdout=subprocess.PIPE, timeout=30)
    pid = int(proc.stdout.split()[0])
    for _ in range(100):
        if not os.path.exists(f"/proc/{pid}"):
            break
        time.sleep(0.05)
    assert not os.path.exists(f"/proc/{pid}")


def test_use_from_another_thread_is_refused(guest):
    from kvmbox.errors import SandboxCrash
    g = guest("nop\n")
    err = []

    def other():
        try:
            g.run()
        except SandboxCrash as e:
            err.append(e)
    t = threading.Thread(target=other)
    t.start()
    t.join()
    assert err and "tracer" in str(err[0])


def test_round_trip_cost(guest):
    """Not a benchmark: a loose bound so a regression to cross-CPU wake-ups shows."""
    g = guest("again: mov eax, 39\n syscall\n jmp again\n")
    for _ in range(50):
        assert g.run() is SYSCALL
        g.ctx.set_return(0)
    n = 500
    t0 = time.perf_counter()
    for _ in range(n):
        g.run()
        g.ctx.set_return(0)
    per = (time.perf_counter() - t0) / n
    print(f"ptrace round trip: {per * 1e6:.1f} us")
    assert per < 0.002


# --- the whole Sentry on ptrace ---------------------------------------------------------

@pytest.fixture(scope="module")
def ptrace_sandbox():
    import kvmbox
    sb = kvmbox.Sandbox(platform="ptrace", timeout=60)
    yield sb
    sb.close()


def test_sandbox_runs_hello_on_ptrace(test_programs, ptrace_sandbox):
    assert ptrace_sandbox.platform_name == "ptrace"
    path = test_programs / "glibc" / "hello"
    helpers.assert_same_outcome(helpers.run_native(path), helpers.run_sandbox(path, sandbox=ptrace_sandbox))


PROGRAMS = [("hello", []), ("io", []), ("mem", []), ("mremap", []), ("malloc", []), ("fpmath", []),
            ("time", []), ("args", ["a", "b c"]), ("exit42", []), ("faults", ["segv_read"]),
            ("ids", []), ("misc", [])]


@pytest.mark.parametrize("build", ["glibc", "musl", "pie"])
@pytest.mark.parametrize("name,args", PROGRAMS, ids=[n + "-" + "-".join(a) for n, a in PROGRAMS])
def test_programs_on_ptrace(test_programs, ptrace_sandbox, build, name, args):
    path = test_programs / build / name
    if not path.exists():
        pytest.skip(f"{path} not built")
    native = helpers.run_native(path, args)
    boxed = helpers.run_sandbox(path, args, sandbox=ptrace_sandbox)
    helpers.assert_same_outcome(native, boxed, what=f"{build}/{name}")


def test_auto_falls_back_to_ptrace_with_a_notice():
    from kvmbox.platform import registry
    notes: list[str] = []
    p = registry.open_platform("auto", 64 << 20, device="/nonexistent/kvm", notice=notes.append)
    try:
        assert p.name == "ptrace"
        assert len(notes) == 1 and "using the ptrace platform" in notes[0] and "/nonexistent/kvm" in notes[0]
    finally:
        p.close()


def test_kvm_with_a_missing_device_is_an_error():
    from kvmbox.errors import PlatformUnavailable
    from kvmbox.platform.registry import open_platform
    with pytest.raises(PlatformUnavailable, match="/nonexistent/kvm"):
        open_platform("kvm", 64 << 20, device="/nonexistent/kvm")


def test_int80_is_a_gp_fault_not_a_syscall(guest):
    g = guest("mov eax, 20\n int 0x80\n")
    ev = g.run()
    assert isinstance(ev, Fault) and ev.vector == 13 and ev.rip == CODE + 5
    assert g.ctx.get_regs()["rip"] == CODE + 5


def test_stub_page_is_not_readable_by_the_guest(guest):
    g = guest(f"mov rax, {L.PTRACE_STUB_VIRT}\n mov rbx, [rax]\n")
    ev = g.run()
    assert isinstance(ev, Fault) and ev.vector == 14 and ev.address == L.PTRACE_STUB_VIRT


def test_vsyscall_call_is_a_fault_not_a_host_syscall(guest):
    """The vsyscall page survives in every process; its emulation meets the filter (TRAP), not the host."""
    g = guest("xor edi, edi\n mov rax, 0xffffffffff600400\n call rax\n mov eax, 60\n syscall\n")
    ev = g.run()
    assert isinstance(ev, Fault) and ev.vector == 14 and ev.address == 0xFFFFFFFFFF600400
    assert g.aspace.stub.alive
