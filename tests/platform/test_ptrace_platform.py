"""Ptrace-only platform tests: the stub process (seccomp, gadget, fds, lifetime), then the Sentry on it.
Hand-assembled (keystone) guest code; behaviour shared with KVM: test_scenarios.py."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest
from guest import CODE, DATA, Guest, guest_factory, platform_fixture

import helpers
from kvmbox.abi.mman import PROT_READ, PROT_WRITE
from kvmbox.guest_stub import layout as L
from kvmbox.platform.base import PF_INSTR, PF_PRESENT, SYSCALL, Fault
from kvmbox.platform.ptrace import host, stubcode

PAGE = host.stub_page()                      # the stub code page (L.PTRACE_STUB_VIRT if it was free)
GADGET = PAGE + stubcode.GADGET_OFF


class PtraceGuest(Guest):
    @property
    def pid(self) -> int:
        return self.aspace.stub_for_tracer().pid


@pytest.fixture(scope="module")
def platform():
    yield from platform_fixture("ptrace", 256 << 20)


@pytest.fixture
def guest(platform):
    yield from guest_factory(platform, PtraceGuest)


def test_platform_identity(platform):
    assert (platform.name, platform.flavour) == ("ptrace", "ptrace-sysemu")
    assert platform.user_range == (0x10000, L.USER_TOP)


def test_fault_signal_is_not_delivered(guest):
    g = guest("ud2\n")
    for _ in range(3):                       # the Sentry decides; the stub is never killed by it
        ev = g.run()
        assert isinstance(ev, Fault) and ev.vector == 6 and ev.rip == CODE
    assert os.path.exists(f"/proc/{g.pid}")


def test_protect_over_holes(guest):
    g = guest("nop\n")
    g.map(0xB00000, 0x1000, PROT_READ | PROT_WRITE)
    g.map(0xB02000, 0x1000, PROT_READ | PROT_WRITE)
    g.aspace.protect(0xB00000, 0x3000, PROT_READ)
    maps = open(f"/proc/{g.pid}/maps").read()
    assert "00b00000-00b01000 r--s" in maps and "00b02000-00b03000 r--s" in maps


@pytest.mark.parametrize("nr", [39, 1, 257, 9, 62, 57, 59, 56, 60, 34])   # getpid write openat mmap kill fork execve clone exit pause
def test_guest_cannot_get_a_real_host_syscall_through_the_gadget(guest, nr):
    """Jumping to the stub's own syscall instruction is still just an emulated syscall where
    the page is execute-only (protection keys). Where it is hidden instead (no PKU, see
    test_probe_agrees_with_the_cpu_flags), the jump is a not-present fault and nothing runs."""
    g = guest(f"""
        mov eax, {nr}
        mov edi, 1
        mov rsi, {DATA}
        mov edx, 4
        mov r15, {CODE + 0x100}
        mov rcx, {GADGET}
        jmp rcx
    """)
    ev = g.run()
    if g.aspace.stub_for_tracer().hide_code:
        assert isinstance(ev, Fault) and ev.vector == 14 and ev.rip == GADGET
        assert ev.error_code & PF_INSTR and not ev.error_code & PF_PRESENT
        assert g.aspace.stub.alive and os.path.exists(f"/proc/{g.pid}")
        return
    assert ev is SYSCALL
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
    stub = g.aspace.stub_for_tracer()
    with pytest.raises(SandboxCrash, match="SIGSYS"):
        stub.syscall(39)                       # getpid, even from the gadget
    assert not stub.alive


def test_stub_dies_on_a_clone_other_than_a_stub_thread(guest):
    """clone with fork's flags (SIGCHLD), even from the gadget: the filter kills the stub."""
    from kvmbox.errors import SandboxCrash
    g = guest("nop\n")
    with pytest.raises(SandboxCrash, match="SIGSYS"):
        g.aspace.stub_for_tracer().syscall(56, 0x11, 0, 0, 0, 0)


def test_stub_dies_on_mmap_of_another_fd(guest):
    from kvmbox.errors import SandboxCrash
    g = guest("nop\n")
    with pytest.raises(SandboxCrash, match="SIGSYS"):
        g.aspace.stub_for_tracer().syscall(9, 0xC00000, 0x1000, 3, 0x22, 0xFFFFFFFF, 0)   # anonymous mmap


def test_stub_has_only_the_memfd_own_pgid_and_one_page(guest, platform):
    g = guest("nop\n")
    fds = os.listdir(f"/proc/{g.pid}/fd")
    assert fds == [str(platform.memfile.fd)]
    assert os.getpgid(g.pid) == g.pid != os.getpgid(0)
    ranges = [line.split()[0] for line in open(f"/proc/{g.pid}/maps")
              if "memfd:kvmbox-guest" not in line]
    assert ranges == [f"{PAGE:x}-{PAGE + 0x1000:x}",
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
print(a.stub_for_tracer().pid, flush=True)
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


def test_a_stub_thread_is_driven_by_its_tracer_only(guest):
    """Thread 0 of a stub belongs to the service thread: a request from another thread is
    refused before it reaches ptrace (which would refuse it too)."""
    from kvmbox.errors import SandboxCrash
    g = guest("nop\n")
    g.aspace.stub_for_tracer()                 # this thread has its own stub thread now
    with pytest.raises(SandboxCrash, match="tracer"):
        g.aspace.stub.syscall(11, 0xC00000, 0x1000)


def test_each_host_thread_gets_its_own_stub_thread(guest):
    """Two host threads running one address space trace two threads of one stub process."""
    g = guest("nop\n")
    mine = g.aspace.stub_for_tracer()
    theirs = []

    def other():
        try:
            theirs.append(g.aspace.stub_for_tracer())
        finally:
            g.p.thread_exit()
    t = threading.Thread(target=other)
    t.start()
    t.join()
    assert theirs[0].pid == mine.pid and theirs[0].tid != mine.tid
    assert not theirs[0].alive                 # its host thread ended: so did it
    assert str(theirs[0].tid) not in os.listdir(f"/proc/{mine.pid}/task")


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


@pytest.fixture(params=["probed", "no-pku"])
def hiding_guest(request):
    """A guest on a platform that hides the stub page as this CPU needs ("probed": with
    protection keys, execute-only suffices), or as a CPU without protection keys needs."""
    from kvmbox.platform.ptrace.platform import PtracePlatform
    p = PtracePlatform(64 << 20, assume_no_pku=request.param == "no-pku")
    try:
        yield from guest_factory(p, PtraceGuest)
    finally:
        p.close()


@pytest.mark.parametrize("how", ["read", "fetch"])
def test_stub_page_is_not_there_for_the_guest(hiding_guest, how):
    """Reading the stub code page faults as an unmapped address on every CPU, and so does
    jumping to it where the page is hidden (execute-only with protection keys: the jump runs
    the gadget, whose syscall is the guest's own, emulated).  Injections work before and after."""
    access = "mov rbx, [rax]" if how == "read" else "jmp rax"
    g = hiding_guest(f"mov rax, {PAGE}\n {access}\n")
    g.map(0xB00000, 0x1000, PROT_READ | PROT_WRITE)          # an injected mmap
    ev = g.run()
    if how == "fetch" and not g.aspace.stub_for_tracer().hide_code:
        assert ev is SYSCALL and g.ctx.get_regs()["rip"] == GADGET + 2
    else:
        assert isinstance(ev, Fault) and ev.vector == 14 and ev.address == PAGE
        assert not ev.error_code & PF_PRESENT
        assert bool(ev.error_code & PF_INSTR) == (how == "fetch")
    g.map(0xB01000, 0x1000, PROT_READ)                        # and after the guest ran
    assert g.aspace.stub_for_tracer().mapped_ranges(0xB00000, 0xB02000) == [(0xB00000, 0xB01000),
                                                                (0xB01000, 0xB02000)]


def test_no_pku_mode_really_makes_the_page_readable():
    """The no-PKU path is exercised for real: the page is readable there until hidden."""
    from kvmbox.platform.ptrace.platform import PtracePlatform
    p = PtracePlatform(64 << 20, assume_no_pku=True)
    try:
        a = p.new_address_space()
        a.map(0x400000, 0x1000, p.frames.alloc(1)[0][0], PROT_READ)
        assert a.stub_for_tracer().hide_code and p.service.call(a.stub.probe_readable)
        a.release()
    finally:
        p.close()


def test_vsyscall_call_is_a_fault_not_a_host_syscall(guest):
    """The vsyscall page survives in every process; its emulation meets the filter (TRAP), not the host."""
    g = guest("xor edi, edi\n mov rax, 0xffffffffff600400\n call rax\n mov eax, 60\n syscall\n")
    ev = g.run()
    assert isinstance(ev, Fault) and ev.vector == 14 and ev.address == 0xFFFFFFFFFF600400
    assert g.aspace.stub.alive


def test_probe_agrees_with_the_cpu_flags(platform):
    """Execute-only hides the page exactly where the OS enabled protection keys (ospke);
    elsewhere (no PKU, as on some CI machines) the page is emptied while the guest runs."""
    from kvmbox.sentry.hwcap import cpuinfo_flags
    a = platform.new_address_space()
    try:
        a.map(0x400000, 0x1000, platform.frames.alloc(1)[0][0], PROT_READ)
        assert a.stub_for_tracer().hide_code == ("ospke" not in cpuinfo_flags())
    finally:
        a.release()
