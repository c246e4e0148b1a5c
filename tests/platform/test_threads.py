"""Threads of one guest process on every platform: several contexts run in one address space
at once, each on its own host thread (KVM: its own vCPU; ptrace: its own stub thread).

Hand-assembled guest code; each routine gets its own code page.  Counters live in the data
page at DATA, read by the test through the MemoryFile while the guest runs.
"""
from __future__ import annotations

import os
import struct
import threading
import time

import pytest

from guest import DATA, STACK_TOP, guest_factory, ks, platform_fixture
from kvmbox.abi.mman import PROT_EXEC, PROT_READ, PROT_WRITE
from kvmbox.platform.base import INTERRUPTED, PF_WRITE, SYSCALL, Fault

F1, F2, CNT_A, CNT_B = DATA, DATA + 8, DATA + 16, DATA + 24   # flags and counters
SHARED = 0xA00000                                              # the page one thread takes away
PROMPT = 5.0                                                   # seconds: "at once", generously


@pytest.fixture(scope="module", params=["kvm", "ptrace"])
def platform(request):
    yield from platform_fixture(request.param)


@pytest.fixture
def guest(platform):
    yield from guest_factory(platform)


class Threaded:
    """A Guest plus more contexts in its address space, each with its own code page."""

    def __init__(self, g) -> None:
        self.g = g
        self.p = g.p
        self.next_code = 0x480000

    def context(self, source: str, **regs: int):
        va = self.next_code
        self.next_code += 0x1000
        self.g.map(va, 0x1000, PROT_READ | PROT_EXEC, bytes(ks.asm(source, va)[0]))
        ctx = self.p.new_context()
        ctx.set_regs(rip=va, rsp=STACK_TOP - 0x800, **regs)
        return ctx

    def counter(self, va: int) -> int:
        return struct.unpack("<Q", self.p.memfile.read(self.g.data_phys + va - DATA, 8))[0]

    def wait_counter(self, va: int, above: int = 0) -> int:
        deadline = time.monotonic() + PROMPT
        while time.monotonic() < deadline:
            n = self.counter(va)
            if n > above:
                return n
            time.sleep(0.001)
        raise AssertionError(f"the guest counter at {va:#x} did not move")


class Runner(threading.Thread):
    """A host thread that switches `ctx` into `aspace` until an event other than `skip`,
    then releases what it holds on this host thread (as a task's host thread does)."""

    def __init__(self, platform, aspace, ctx, *, then=None, release: bool = True) -> None:
        super().__init__(daemon=True)
        self.platform, self.aspace, self.ctx, self.then, self.release = platform, aspace, ctx, then, release
        self.events: list = []
        self.error: BaseException | None = None
        self.started_at = self.ended_at = 0.0

    def run(self) -> None:
        try:
            self.started_at = time.monotonic()
            self.events.append(self.ctx.switch(self.aspace))
            self.ended_at = time.monotonic()
            if self.then is not None:
                self.then(self)
            if self.release:
                self.ctx.release()
        except BaseException as e:     # noqa: BLE001 - reported by result()
            self.error = e
        finally:
            self.platform.thread_exit()

    def result(self):
        self.join(PROMPT * 2)
        assert not self.is_alive(), "the host thread did not come back"
        if self.error is not None:
            raise self.error
        return self.events[-1]


def test_two_threads_run_guest_code_at_once(guest, platform):
    """A handshake that only completes if both contexts are inside switch() together."""
    t = Threaded(guest("nop\n"))
    a = t.context(f"mov qword ptr [{F1}], 1\n w: cmp qword ptr [{F2}], 1\n jne w\n mov eax, 39\n syscall\n")
    b = t.context(f"w: cmp qword ptr [{F1}], 1\n jne w\n mov qword ptr [{F2}], 1\n mov eax, 39\n syscall\n")
    ra, rb = Runner(platform, t.g.aspace, a), Runner(platform, t.g.aspace, b)
    ra.start()
    rb.start()
    assert ra.result() is SYSCALL and rb.result() is SYSCALL


def test_each_thread_has_its_own_registers_and_fs_base(guest, platform):
    t = Threaded(guest("nop\n"))
    src = "xor eax, eax\n mov rdi, qword ptr fs:[rax]\n mov rsi, rbx\n mov eax, 39\n syscall\n"
    a = t.context(src, fs_base=DATA + 0x100, rbx=0xA)
    b = t.context(src, fs_base=DATA + 0x200, rbx=0xB)
    platform.memfile.write(t.g.data_phys + 0x100, struct.pack("<Q", 0xAAAA))
    platform.memfile.write(t.g.data_phys + 0x200, struct.pack("<Q", 0xBBBB))
    seen = {}

    def look(r):
        seen[r.ctx] = (r.ctx.syscall_args()[1:3], r.ctx.get_regs()["fs_base"])
    rs = [Runner(platform, t.g.aspace, c, then=look, release=False) for c in (a, b)]
    for r in rs:
        r.start()
    assert [r.result() for r in rs] == [SYSCALL, SYSCALL]
    assert seen[a] == ((0xAAAA, 0xA), DATA + 0x100)
    assert seen[b] == ((0xBBBB, 0xB), DATA + 0x200)
    a.release()
    b.release()


@pytest.mark.parametrize("change", ["unmap", "protect"])
def test_a_mapping_change_from_one_thread_reaches_the_other_running_one(guest, platform, change):
    """Security: once unmap/protect returns on one host thread, another thread whose guest
    keeps touching the page faults (no stale TLB or shadow entry lets it go on)."""
    t = Threaded(guest("nop\n"))
    t.g.map(SHARED, 0x1000, PROT_READ | PROT_WRITE)
    access = f"mov rax, qword ptr [{SHARED}]" if change == "unmap" else f"mov qword ptr [{SHARED}], rax"
    b = t.context(f"l: {access}\n inc qword ptr [{CNT_B}]\n jmp l\n")
    rb = Runner(platform, t.g.aspace, b)
    rb.start()
    t.wait_counter(CNT_B)                       # its guest is running, touching the page
    if change == "unmap":
        t.g.aspace.unmap(SHARED, 0x1000)        # from this (another) host thread
    else:
        t.g.aspace.protect(SHARED, 0x1000, PROT_READ)
    ev = rb.result()
    assert isinstance(ev, Fault) and ev.vector == 14 and ev.address == SHARED
    if change == "protect":
        assert ev.error_code & PF_WRITE


def test_interrupt_of_one_thread_leaves_the_other_running(guest, platform):
    t = Threaded(guest("nop\n"))
    a = t.context(f"l: inc qword ptr [{CNT_A}]\n jmp l\n")
    b = t.context(f"l: inc qword ptr [{CNT_B}]\n jmp l\n")
    ra, rb = Runner(platform, t.g.aspace, a), Runner(platform, t.g.aspace, b)
    ra.start()
    rb.start()
    t.wait_counter(CNT_A)
    t.wait_counter(CNT_B)
    a.interrupt()
    assert ra.result() is INTERRUPTED
    assert rb.is_alive() and not rb.events
    t.wait_counter(CNT_B, t.counter(CNT_B))   # b goes on
    b.interrupt()
    assert rb.result() is INTERRUPTED


def test_release_of_one_context_while_the_other_runs(guest, platform):
    t = Threaded(guest("nop\n"))
    a = t.context("mov eax, 39\n syscall\n")
    b = t.context(f"l: inc qword ptr [{CNT_B}]\n jmp l\n")
    rb = Runner(platform, t.g.aspace, b, release=False)
    rb.start()
    t.wait_counter(CNT_B)
    ra = Runner(platform, t.g.aspace, a)     # runs, releases its context and its host thread
    ra.start()
    assert ra.result() is SYSCALL
    t.wait_counter(CNT_B, t.counter(CNT_B))
    b.interrupt()
    assert rb.result() is INTERRUPTED
    b.clear_interrupt()
    threading.Timer(0.05, b.interrupt).start()
    assert b.switch(t.g.aspace) is INTERRUPTED       # and it runs again, now on this thread
    b.release()


def _host_fds() -> list[str]:
    """This process's fds, leaving out KVM vCPUs (the pool keeps them for reuse)."""
    out = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if "kvm-vcpu" not in target:
            out.append(target)
    return sorted(out)


def _stub_tasks(aspace) -> int:
    stub = getattr(aspace, "stub", None)
    if stub is None or not hasattr(stub, "pid"):
        return 0
    return len(os.listdir(f"/proc/{stub.pid}/task"))


def test_thread_create_release_cycles_leak_nothing(guest, platform):
    t = Threaded(guest("nop\n"))
    first = t.context("mov eax, 39\n syscall\n")
    entry = first.get_regs()["rip"]
    Runner(platform, t.g.aspace, first).start()          # warm up (vCPU pool, stub)
    time.sleep(0.2)
    fds, tasks, threads = _host_fds(), _stub_tasks(t.g.aspace), threading.active_count()
    for _ in range(50):
        ctx = platform.new_context()
        ctx.set_regs(rip=entry, rsp=STACK_TOP - 0x800)
        r = Runner(platform, t.g.aspace, ctx)
        r.start()
        assert r.result() is SYSCALL
    assert _host_fds() <= fds          # fewer is an earlier test's fd closing, not a leak
    assert _stub_tasks(t.g.aspace) == tasks
    assert threading.active_count() <= threads


def test_vfork_child_context_on_the_parents_thread(guest, platform):
    """A vfork child: a second context in the parent's address space, run by the same host
    thread; the parent's registers and FPU state survive the child's run and release."""
    t = Threaded(guest("nop\n"))
    parent = t.context("movq xmm0, rbx\n mov eax, 58\n syscall\n movq rdi, xmm0\n mov eax, 60\n syscall\n",
                       rbx=0x5EED)
    child = t.context("mov rbx, 7\n movq xmm0, rbx\n mov eax, 60\n syscall\n")
    assert parent.switch(t.g.aspace) is SYSCALL
    assert child.switch(t.g.aspace) is SYSCALL and child.syscall_args()[0] == 60
    child.release()
    parent.set_return(0)
    assert parent.switch(t.g.aspace) is SYSCALL
    assert parent.syscall_args()[:2] == (60, 0x5EED)
    parent.release()
