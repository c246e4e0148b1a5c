"""A guest process for memory tests on a real platform: a MemoryManager, a Context, and a small
guest that loads and stores what the host asks, so copy-on-write runs through real page faults.

The guest loops on syscall 500; the host puts an operation in rdi and its operands in
rsi (address), rdx (value) and r8 (end), and reads a result back from rdx at the next
syscall.  Page faults go to MemoryManager.handle_fault as the Kernel's run loop sends
them; one it refuses ends the operation with that Fault.  `Worker` runs calls on one
thread of its own: on ptrace, an address space belongs to the thread that first uses it.
"""
from __future__ import annotations

import queue
import threading
from collections.abc import Callable

from guest import ks

from kvmbox.abi import mman
from kvmbox.guest_stub import layout as L
from kvmbox.mm.manager import MemoryManager
from kvmbox.abi.mman import PROT_EXEC, PROT_READ, PROT_WRITE
from kvmbox.platform.base import SYSCALL, Fault

CODE = 0x400000
STACK_TOP = 0x800000
OP_READ, OP_WRITE, OP_FILL, OP_SUM = 0, 1, 2, 3
AGENT = """
top:
    mov eax, 500
    syscall
    cmp rdi, 1
    je store
    cmp rdi, 2
    je fill
    cmp rdi, 3
    je sum
    mov rdx, qword ptr [rsi]
    jmp top
store:
    mov qword ptr [rsi], rdx
    jmp top
fill:
    mov qword ptr [rsi], rdx
    add rsi, 4096
    cmp rsi, r8
    jb fill
    jmp top
sum:
    xor edx, edx
sum_next:
    add rdx, qword ptr [rsi]
    add rsi, 4096
    cmp rsi, r8
    jb sum_next
    jmp top
"""
FIXED_ANON = mman.MAP_PRIVATE | mman.MAP_ANONYMOUS | mman.MAP_FIXED


class MemProc:
    """One guest process: `mm` and `ctx`; call op() only on the thread that runs it."""

    def __init__(self, platform, mm: MemoryManager, ctx) -> None:
        self.platform = platform
        self.mm = mm
        self.ctx = ctx
        self.faults = 0

    @classmethod
    def start(cls, platform, **mm_kw) -> "MemProc":
        """A new process with the agent at CODE and a stack, stopped at its first syscall."""
        mm = MemoryManager(platform.memfile, platform.frames, platform.new_address_space(), **mm_kw)
        code = bytes(ks.asm(AGENT, CODE)[0])
        mm.mmap(CODE, 0x1000, PROT_READ | PROT_EXEC, FIXED_ANON)
        mm.copy_out(CODE, code, force=True)
        mm.mmap(STACK_TOP - 0x4000, 0x4000, PROT_READ | PROT_WRITE, FIXED_ANON)
        proc = cls(platform, mm, platform.new_context())
        proc.ctx.set_regs(rip=CODE, rsp=STACK_TOP - 0x100)
        proc._run()
        return proc

    def fork(self) -> "MemProc":
        """The child: mm.fork() over a new address space, and a new context with these registers
        (which must not run until its own thread does)."""
        child_mm = self.mm.fork(self.platform.new_address_space())
        ctx = self.platform.new_context()
        ctx.set_regs(**self.ctx.get_regs())
        return MemProc(self.platform, child_mm, ctx)

    def _run(self) -> Fault | None:
        """Run until the agent's next syscall; None, or the Fault the MemoryManager refused."""
        while True:
            ev = self.ctx.switch(self.mm.aspace)
            if ev is SYSCALL:
                assert self.ctx.syscall_args()[0] == 500, self.ctx.syscall_args()
                return None
            assert isinstance(ev, Fault) and ev.vector == 14, ev
            self.faults += 1
            if not self.mm.handle_fault(ev.address, ev.error_code):
                return ev

    def op(self, op: int, addr: int, value: int = 0, end: int = 0) -> int | Fault:
        """Have the guest do `op`; the value it read (OP_READ, OP_SUM), or a refused Fault."""
        self.ctx.set_regs(rdi=op, rsi=addr, rdx=value, r8=end)
        self.ctx.set_return(0)
        refused = self._run()
        if refused is not None:
            self.ctx.set_regs(rip=CODE, rsp=STACK_TOP - 0x100)   # back to the loop's top
            self._run()
            return refused
        return self.ctx.syscall_args()[3]

    def read(self, addr: int) -> int | Fault:
        return self.op(OP_READ, addr)

    def write(self, addr: int, value: int) -> None:
        assert self.op(OP_WRITE, addr, value) == value

    def close(self) -> None:
        self.ctx.release()
        self.mm.release()


class Worker:
    """A thread that runs the calls given to it, one at a time (a child task's host thread)."""

    def __init__(self) -> None:
        self._q: queue.Queue = queue.Queue()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while True:
            fn, box, done = self._q.get()
            if fn is None:
                return
            try:
                box.append((True, fn()))
            except BaseException as e:   # noqa: BLE001 - handed to the caller
                box.append((False, e))
            done.set()

    def call(self, fn: Callable):
        box: list = []
        done = threading.Event()
        self._q.put((fn, box, done))
        if not done.wait(60):
            raise TimeoutError("worker call did not finish")
        ok, value = box[0]
        if not ok:
            raise value
        return value

    def stop(self) -> None:
        self._q.put((None, None, None))
        self.thread.join(10)
