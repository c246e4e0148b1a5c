"""Several guest threads in one address space, each driven by its own host thread, on both
platforms: KVM gives each a vCPU with the same page tables; ptrace gives each host thread a
stub thread of its own in the address space's stub process.  Hand-assembled guest code."""
from __future__ import annotations

import os
import threading

import pytest
from guest import CODE, DATA, Guest, guest_factory, platform_fixture

from kvmbox.platform.base import INTERRUPTED, SYSCALL, Fault

SPIN_READ = DATA + 0x1000        # the page a spinning thread keeps reading


@pytest.fixture(scope="module", params=["kvm", "ptrace"])
def platform(request):
    yield from platform_fixture(request.param, 128 << 20)


@pytest.fixture
def guest(platform):
    yield from guest_factory(platform, Guest)


def _second(g: Guest, **regs):
    """Another context (guest thread) in g's address space, starting at CODE."""
    ctx = g.p.new_context()
    ctx.set_regs(rip=CODE, rsp=0x7FF000, **regs)
    return ctx


def _run_on_thread(platform, fn) -> tuple[threading.Thread, list]:
    """A host thread that runs fn() and then tells the platform it is done (on ptrace its
    stub thread must end before it does: a stub thread is never left untraced)."""
    out: list = []

    def body():
        try:
            out.append(fn())
        except BaseException as e:   # noqa: BLE001 - handed to the test
            out.append(e)
        finally:
            platform.thread_exit()
    return threading.Thread(target=body), out


def test_each_thread_has_its_own_fs_base(guest):
    """Two contexts of one address space read fs:[0] through their own FS base."""
    g = guest("mov rax, qword ptr fs:[0]\n mov rdi, rax\n mov eax, 39\n syscall\n hlt\n")
    g.p.memfile.write(g.data_phys, (111).to_bytes(8, "little") + (222).to_bytes(8, "little"))
    g.ctx.set_regs(fs_base=DATA)
    other = _second(g, fs_base=DATA + 8)
    t, out = _run_on_thread(g.p, lambda: (other.switch(g.aspace), other.syscall_args()[1]))
    t.start()
    t.join(30)
    assert g.run() is SYSCALL and g.ctx.syscall_args()[1] == 111
    ev, rdi = out[0]
    assert ev is SYSCALL and rdi == 222
    other.release()


def test_unmap_from_one_thread_stops_another_that_runs(guest):
    """A thread spinning on a page faults once another thread unmaps it (no stale TLB or
    stub mapping survives the change), and the fault names the page."""
    g = guest(f"spin: mov rax, qword ptr [{SPIN_READ:#x}]\n jmp spin\n")
    spinner = _second(g)
    started = threading.Event()

    def run():
        started.set()
        return spinner.switch(g.aspace)
    t, out = _run_on_thread(g.p, run)
    t.start()
    started.wait(10)
    threading.Event().wait(0.2)                  # let it spin in guest code a while
    g.aspace.unmap(SPIN_READ, 0x1000)
    t.join(20)
    assert not t.is_alive(), "the spinning thread never faulted"
    ev = out[0]
    assert isinstance(ev, Fault) and ev.vector == 14 and ev.address == SPIN_READ, ev
    spinner.release()


def test_interrupting_one_thread_leaves_the_other_running(guest):
    """interrupt() reaches the named context only: the other keeps running guest code."""
    g = guest(f"spin: mov rax, qword ptr [{SPIN_READ:#x}]\n jmp spin\n")
    a, b = _second(g), _second(g)
    ta, out_a = _run_on_thread(g.p, lambda: a.switch(g.aspace))
    tb, out_b = _run_on_thread(g.p, lambda: b.switch(g.aspace))
    ta.start()
    tb.start()
    threading.Event().wait(0.3)
    a.interrupt()
    ta.join(20)
    assert out_a and out_a[0] is INTERRUPTED
    tb.join(0.3)
    assert tb.is_alive(), "interrupting one context stopped the other"
    b.interrupt()
    tb.join(20)
    assert out_b and out_b[0] is INTERRUPTED
    a.release()
    b.release()


def _stub_threads(g: Guest) -> int:
    stub = getattr(g.aspace, "stub", None)
    return len(os.listdir(f"/proc/{stub.pid}/task")) if stub is not None else 0


def test_threads_come_and_go_without_leaks(guest, platform):
    """50 host threads each run a context in one address space and end: no stub thread,
    host descriptor or vCPU is left behind for them (ptrace: the stub keeps only the
    threads still in use)."""
    g = guest("mov eax, 39\n syscall\n hlt\n")
    assert g.run() is SYSCALL
    before_fds = len(os.listdir("/proc/self/fd"))
    before_threads = _stub_threads(g)

    def one():
        ctx = _second(g)
        try:
            return ctx.switch(g.aspace)
        finally:
            ctx.release()
    for _ in range(50):
        t, out = _run_on_thread(platform, one)
        t.start()
        t.join(30)
        assert out and out[0] is SYSCALL, out
    assert _stub_threads(g) == before_threads
    assert len(os.listdir("/proc/self/fd")) <= before_fds + 2     # a vCPU the pool may keep
    assert g.run() is not None                                     # the first still runs
