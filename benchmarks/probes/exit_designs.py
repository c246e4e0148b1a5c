#!/usr/bin/env python3
"""Per-exit cost of candidate VM-exit designs on this machine's /dev/kvm (issue 11).

A minimal guest (one VM, one memfd memslot, a GDT with one TSS per vCPU, an
IDT, 2 MiB and 4 KiB pages) is built with raw ioctls through
kvmbox/kvm_ioctls.py; each design gets its own vCPU, and the designs are timed
interleaved, in rounds, so the noise of a shared machine spreads evenly.  Each
figure is the median of per-iteration times (perf_counter_ns around one
KVM_RUN plus whatever host work the design needs), in microseconds.

    .venv/bin/python benchmarks/probes/exit_designs.py [--iters N] [--quick]

Designs (ring 3 unless said):
  out_tss       `out 0x10` allowed by the TSS I/O bitmap (the exit kvmbox uses)
  syscall_out   `syscall` -> user LSTAR trampoline `out 0x10; jmp rcx` (kvmbox's syscall path)
  ...           sync-regs variations of syscall_out, out with no TSS, with IOPL 3,
                MMIO write, `int 0x81` -> ring-0 `out; iretq`, int3 with guest debug
                (KVM_EXIT_DEBUG), ring-0 `hlt` and `out`, vmcall/vmmcall
  baselines     KVM_RUN with immediate_exit, an in-guest syscall, first touch of a
                present 4 KiB page, a PTRACE_SYSEMU round trip (getpid)

The functions measure(), run_all() and table() are used by benchmarks/test_transitions.py.
"""
from __future__ import annotations

import argparse
import ctypes
import fcntl
import mmap
import os
import platform as _pyplatform
import signal
import statistics
import struct
import subprocess
import sys
import time

from keystone import KS_ARCH_X86, KS_MODE_64, Ks

from kvmbox import kvm_ioctls as K

_ks = Ks(KS_ARCH_X86, KS_MODE_64)


def asm(src: str, addr: int) -> bytes:
    return bytes(_ks.asm(src, addr)[0])


# --- guest physical (= virtual) layout ---------------------------------------
MEM = 16 << 20
GDT, IDT, PML4, PDPT, PD, PT = 0x1000, 0x2000, 0x4000, 0x5000, 0x6000, 0x7000
HANDLERS = 0x10000            # 32 bytes per vector
R0CODE = 0x14000              # ring-0 loops
TSS_BASE, TSS_STRIDE = 0x20000, 0x3000
IOMAP_OFF = 0x68
TSS_LIMIT = IOMAP_OFF + 8192   # bitmap for 65536 ports plus the terminating 0xff byte
KSTACKS = 0x1F0000            # per-vCPU ring-0 stack tops go down from here, 0x2000 each
UCODE = 0x400000              # ring-3 code, 0x100 per design
TRAMP = 0x480000              # LSTAR trampolines
USTACKS = 0x5F0000
TOUCH, TOUCH_PAGES = 0x600000, 512   # 4 KiB-mapped user pages for the first-touch test
MMIO_VIRT, MMIO_PHYS = 0x800000, 0x40000000   # user page backed by no memslot

PORT_EXIT, PORT_EXC, PORT_ERR = 0x10, 0x11, 0x12
KVM_SET_GUEST_DEBUG = K._IOW(0x9B, 72)
KVM_GUESTDBG_ENABLE, KVM_GUESTDBG_USE_SW_BP = 0x1, 0x10000
MADV_DONTNEED, MADV_POPULATE_WRITE = 4, 23

_libc = ctypes.CDLL(None, use_errno=True)


class Guest:
    """One VM with the layout above; vcpu() makes a vCPU for one design."""

    def __init__(self) -> None:
        self.kvm = K.Kvm()
        self.vm = self.kvm.create_vm()
        self.memfd = os.memfd_create("exit-designs", 0)
        os.ftruncate(self.memfd, MEM)
        self.mem = mmap.mmap(self.memfd, MEM, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        self.host = ctypes.addressof(ctypes.c_char.from_buffer(self.mem))
        self.vm.set_user_memory_region(0, 0, MEM, self.host)
        self.cpuid = self.kvm.supported_cpuid()
        self.n = 0
        self._code = UCODE
        self._build()

    def q(self, off: int, v: int) -> None:
        struct.pack_into("<Q", self.mem, off, v)

    def put(self, addr: int, code: bytes) -> None:
        self.mem[addr:addr + len(code)] = code

    def _build(self) -> None:
        q = self.q
        q(GDT + 0x10, 0x00AF9B000000FFFF)   # kernel code 64
        q(GDT + 0x18, 0x00CF93000000FFFF)   # kernel data
        q(GDT + 0x20, 0x00CFFB000000FFFF)   # user code 32
        q(GDT + 0x28, 0x00CFF3000000FFFF)   # user data
        q(GDT + 0x30, 0x00AFFB000000FFFF)   # user code 64
        for v in range(32):                 # any unexpected exception: out PORT_ERR with the vector
            h = HANDLERS + v * 32
            self.put(h, asm(f"mov eax, {v}\n out {PORT_ERR}, al\n l: jmp l", h))
            self._gate(v, h, dpl=0)
        for vec in (3, 0x81):               # int3 / int 0x81 from ring 3: ring-0 `out; iretq`
            h = HANDLERS + vec * 32
            self.put(h, asm(f"out {PORT_EXC}, al\n iretq", h))
            self._gate(vec, h, dpl=3)
        q(PML4, PDPT | 7)
        q(PDPT, PD | 7)
        q(PD + 0 * 8, 0x000000 | 0x83)      # 0-2 MiB supervisor (tables, handlers, stacks)
        q(PD + 2 * 8, 0x400000 | 0x87)      # 4-6 MiB user code, trampolines, stacks
        q(PD + 3 * 8, PT | 7)               # 6-8 MiB user, 4 KiB pages
        for i in range(TOUCH_PAGES):
            q(PT + 8 * i, (TOUCH + i * 4096) | 7)
        q(PD + 4 * 8, MMIO_PHYS | 0x87)     # 8-10 MiB user, no memslot behind it

    def _gate(self, vec: int, h: int, dpl: int) -> None:
        attr = 0x8E | (dpl << 5)
        self.q(IDT + vec * 16, (h & 0xFFFF) | (0x10 << 16) | (1 << 32) | (attr << 40)
               | (((h >> 16) & 0xFFFF) << 48))
        self.q(IDT + vec * 16 + 8, h >> 32)

    def code(self, src: str) -> int:
        """Assemble ring-3 (or ring-0) code at the next 0x100 slot; returns its address."""
        addr = self._code
        b = asm(src, addr)
        assert len(b) <= 0x100
        self.put(addr, b)
        self._code += 0x100
        return addr

    def vcpu(self, rip: int, *, ring: int = 3, tss: bool = True, iopl: int = 0,
             lstar: int = 0, regs: dict | None = None, allow_port: bool = True) -> K.Vcpu:
        i = self.n
        self.n += 1
        v = self.vm.create_vcpu(i)
        v.set_cpuid2(bytes(self.cpuid))
        tss_addr = TSS_BASE + i * TSS_STRIDE
        kstack = KSTACKS - i * 0x2000
        struct.pack_into("<Q", self.mem, tss_addr + 4, kstack)          # rsp0
        struct.pack_into("<Q", self.mem, tss_addr + 0x24, kstack)       # ist1
        struct.pack_into("<H", self.mem, tss_addr + 0x66, IOMAP_OFF)
        bitmap = bytearray(b"\xff" * 8193)
        if allow_port:
            bitmap[PORT_EXIT // 8] &= ~(1 << (PORT_EXIT % 8))
        self.put(tss_addr + IOMAP_OFF, bytes(bitmap))
        sel = 0x40 + 16 * i
        lim = TSS_LIMIT
        self.q(GDT + sel, (lim & 0xFFFF) | ((tss_addr & 0xFFFFFF) << 16) | (0x89 << 40)
               | (((lim >> 16) & 0xF) << 48) | (((tss_addr >> 24) & 0xFF) << 56))
        self.q(GDT + sel + 8, tss_addr >> 32)
        v.set_msrs({0xC0000081: (0x23 << 48) | (0x10 << 32), 0xC0000082: lstar or TRAMP,
                    0xC0000084: 0})
        sr = v.get_sregs()

        def seg(n, selector, typ, dpl, db, l, s=1, base=0, limit=0xFFFFFFFF, g=1, unusable=0):
            struct.pack_into(K.SEGMENT_FMT, sr, n * 24, base, limit, selector, typ, 1, dpl, db, s, l,
                             g, 0, unusable, 0)
        if ring == 3:
            seg(0, 0x33, 0xB, 3, 0, 1)
            for n in (1, 2, 3, 4, 5):
                seg(n, 0x2B, 3, 3, 1, 0)
        else:
            seg(0, 0x10, 0xB, 0, 0, 1)
            for n in (1, 2, 3, 4, 5):
                seg(n, 0x18, 3, 0, 1, 0)
        if tss:
            seg(6, sel, 0xB, 0, 0, 0, s=0, base=tss_addr, limit=lim, g=0)
        else:
            seg(6, 0, 0xB, 0, 0, 0, s=0, base=0, limit=0, g=0, unusable=1)
        seg(7, 0, 0x2, 0, 0, 0, s=0, limit=0xFFFF, g=0)
        struct.pack_into("<QH", sr, K.SREGS_DTABLE_OFF, GDT, 0xFFF)
        struct.pack_into("<QH", sr, K.SREGS_DTABLE_OFF + 16, IDT, 256 * 16 - 1)
        cr4 = 0x20 | 0x200 | 0x400 | 0x10000
        struct.pack_into("<QQQQQQ", sr, K.SREGS_CR_OFF, 0x80050033, 0, PML4, cr4, 0, 0xD01)
        v.set_sregs(sr)
        rg = bytearray(K.REGS_SIZE)
        struct.pack_into("<Q", rg, K.RSP * 8, USTACKS - i * 0x4000)
        struct.pack_into("<QQ", rg, K.RIP * 8, rip, 0x202 | (iopl << 12))
        for name, val in (regs or {}).items():
            struct.pack_into("<Q", rg, name * 8, val)
        v.set_regs(rg)
        return v


# --- designs ------------------------------------------------------------------
class Design:
    """A vCPU plus `step`, which does one round trip (KVM_RUN and the host's share)."""

    def __init__(self, name: str, what: str, vcpu, step, expect=None, per: int = 1, note: str = ""):
        self.name, self.what, self.vcpu, self.step = name, what, vcpu, step
        self.expect, self.per, self.note = expect, per, note
        self.samples: list[int] = []
        self.error = ""


def _run_step(fd: int, extra=None):
    run = fcntl.ioctl
    req = K.KVM_RUN
    if extra is None:
        def step():
            run(fd, req, 0)
    else:
        def step():
            run(fd, req, 0)
            extra()
    return step


def build_designs(g: Guest, quick: bool = False) -> list[Design]:
    D: list[Design] = []
    ALL = K.KVM_SYNC_X86_REGS | K.KVM_SYNC_X86_SREGS
    tramp_out = asm(f"out {PORT_EXIT}, al\n jmp rcx", TRAMP)
    g.put(TRAMP, tramp_out)
    tramp_nop = TRAMP + 0x100                     # in-guest syscall: trampoline returns at once
    g.put(tramp_nop, asm("jmp rcx", tramp_nop))

    # 0. immediate_exit: KVM_RUN that enters no guest code
    spin = g.code("l: jmp l")
    v = g.vcpu(spin)
    v.enable_sync_regs(ALL)
    v.set_immediate_exit(True)

    def imm_step(fd=v.fd):
        try:
            fcntl.ioctl(fd, K.KVM_RUN, 0)
        except InterruptedError:
            pass
    D.append(Design("immediate_exit", "KVM_RUN with immediate_exit=1 (no guest entry), sync REGS|SREGS",
                    v, imm_step, expect=None))

    # a. out via TSS I/O bitmap, from ring 3 (no syscall on the way)
    c = g.code(f"l: out {PORT_EXIT}, al\n jmp l")
    v = g.vcpu(c)
    v.enable_sync_regs(ALL)
    D.append(Design("out_tss", "ring-3 `out 0x10` allowed by the TSS I/O bitmap, sync REGS|SREGS",
                    v, _run_step(v.fd), expect=(K.VcpuExit.IO, PORT_EXIT)))

    # the current syscall path: syscall -> user trampoline -> out, with sync-regs variations
    sc = g.code("l: mov eax, 39\n syscall\n jmp l")
    variants = [
        ("syscall_out", ALL, K.KVM_SYNC_X86_REGS,
         "kvmbox today: `syscall` -> LSTAR user trampoline `out 0x10` (TSS bitmap); sync REGS|SREGS, REGS dirty"),
        ("syscall_out_nodirty", ALL, 0, "as syscall_out, sync REGS|SREGS, nothing dirty on re-entry"),
        ("syscall_out_regs", K.KVM_SYNC_X86_REGS, K.KVM_SYNC_X86_REGS, "as syscall_out, sync REGS only, REGS dirty"),
        ("syscall_out_regs_nodirty", K.KVM_SYNC_X86_REGS, 0, "as syscall_out, sync REGS only, nothing dirty"),
        ("syscall_out_sregs_dirty", ALL, ALL, "as syscall_out, sync REGS|SREGS, REGS|SREGS dirty"),
        ("syscall_out_nosync", 0, 0, "as syscall_out, no sync regs, no register ioctl (exit only)"),
    ]
    for name, valid, dirty, what in variants:
        v = g.vcpu(sc)
        v.enable_sync_regs(valid)
        if dirty:
            def mark(ctl=v._ctl, regs=v.regs, dirty=dirty):
                regs[K.RAX] = 1234              # what the Sentry does: write the result
                ctl[1] = dirty
            step = _run_step(v.fd, mark)
        else:
            step = _run_step(v.fd)
        D.append(Design(name, what, v, step, expect=(K.VcpuExit.IO, PORT_EXIT)))
    v = g.vcpu(sc)
    v.enable_sync_regs(0)
    buf = bytearray(K.REGS_SIZE)

    def getset(fd=v.fd, buf=buf):
        fcntl.ioctl(fd, K.KVM_GET_REGS, buf, True)
        fcntl.ioctl(fd, K.KVM_SET_REGS, buf)
    D.append(Design("syscall_out_getset_regs", "as syscall_out, no sync regs: KVM_GET_REGS + KVM_SET_REGS per exit",
                    v, _run_step(v.fd, getset), expect=(K.VcpuExit.IO, PORT_EXIT)))
    v = g.vcpu(sc)
    v.enable_sync_regs(0)
    buf2 = bytearray(K.REGS_SIZE)
    D.append(Design("syscall_out_get_regs", "as syscall_out, no sync regs: KVM_GET_REGS per exit",
                    v, _run_step(v.fd, lambda fd=v.fd, b=buf2: fcntl.ioctl(fd, K.KVM_GET_REGS, b, True)),
                    expect=(K.VcpuExit.IO, PORT_EXIT)))

    # b. out from ring 3 with no TSS loaded
    v = g.vcpu(c, tss=False)
    v.enable_sync_regs(ALL)
    D.append(Design("out_notss", "ring-3 `out 0x10` with no TSS loaded (TR unusable)", v, _run_step(v.fd),
                    expect=(K.VcpuExit.IO, PORT_EXIT)))
    # b'. out from ring 3 with IOPL 3 (TSS loaded, port not in the bitmap)
    v = g.vcpu(c, iopl=3, allow_port=False)
    v.enable_sync_regs(ALL)
    D.append(Design("out_iopl3", "ring-3 `out 0x10` with RFLAGS.IOPL=3 (bitmap denies the port)", v,
                    _run_step(v.fd), expect=(K.VcpuExit.IO, PORT_EXIT)))

    # c. MMIO write to a user page with no memslot behind it
    m = g.code("l: mov [rbx], al\n jmp l")
    v = g.vcpu(m, regs={K.RBX: MMIO_VIRT})
    v.enable_sync_regs(ALL)
    D.append(Design("mmio_write", "ring-3 store to a mapped page outside every memslot (KVM_EXIT_MMIO)", v,
                    _run_step(v.fd), expect=(K.VcpuExit.MMIO, None)))
    v = g.vcpu(sc, lstar=TRAMP + 0x200, regs={K.RBX: MMIO_VIRT})
    g.put(TRAMP + 0x200, asm("mov [rbx], al\n jmp rcx", TRAMP + 0x200))
    v.enable_sync_regs(ALL)
    D.append(Design("syscall_mmio", "`syscall` -> user trampoline doing the MMIO store", v, _run_step(v.fd),
                    expect=(K.VcpuExit.MMIO, None)))

    # e. an exception-style exit: int 0x81 -> ring-0 handler `out 0x11; iretq`
    x = g.code("l: int 0x81\n jmp l")
    v = g.vcpu(x)
    v.enable_sync_regs(ALL)
    D.append(Design("int_ring0_out", "ring-3 `int 0x81` -> ring-0 handler `out 0x11; iretq` (kvmbox's fault exit path)",
                    v, _run_step(v.fd), expect=(K.VcpuExit.IO, PORT_EXC)))
    b = g.code("l: int3\n jmp l")
    v = g.vcpu(b)
    v.enable_sync_regs(ALL)
    D.append(Design("int3_ring0_out", "ring-3 `int3` -> ring-0 handler `out 0x11; iretq` (an exception-gate exit)",
                    v, _run_step(v.fd), expect=(K.VcpuExit.IO, PORT_EXC)))
    # int3 with KVM_SET_GUEST_DEBUG(USE_SW_BP): KVM_EXIT_DEBUG
    v = g.vcpu(b)
    v.enable_sync_regs(ALL)
    dbg = bytearray(72)
    struct.pack_into("<I", dbg, 0, KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_USE_SW_BP)
    try:
        fcntl.ioctl(v.fd, KVM_SET_GUEST_DEBUG, bytes(dbg))

        def skip_bp(regs=v.regs, ctl=v._ctl, at=b):
            if regs[K.RIP] == at:                # the exit reports the int3 itself: step over it
                regs[K.RIP] = at + 1
                ctl[1] = K.KVM_SYNC_X86_REGS
        D.append(Design("int3_debug", "ring-3 `int3` with KVM_SET_GUEST_DEBUG(USE_SW_BP) (KVM_EXIT_DEBUG)",
                        v, _run_step(v.fd, skip_bp), expect=(K.VcpuExit.DEBUG, None)))
    except OSError as e:
        d = Design("int3_debug", "ring-3 int3 with guest debug", v, None)
        d.error = f"KVM_SET_GUEST_DEBUG: {e.strerror}"
        D.append(d)
    # hypercalls from ring 3
    for ins in ("vmcall", "vmmcall"):
        h = g.code(f"l: {ins}\n jmp l")
        v = g.vcpu(h, regs={K.RAX: 0})
        v.enable_sync_regs(ALL)
        D.append(Design(f"{ins}_ring3", f"ring-3 `{ins}` (rax=0)", v, _run_step(v.fd), expect=None))
    NV = 1000
    h = g.code(f"l: mov r12, {NV}\n s: xor eax, eax\n vmmcall\n dec r12\n jnz s\n out {PORT_EXIT}, al\n jmp l")
    v = g.vcpu(h)
    v.enable_sync_regs(ALL)
    D.append(Design("vmmcall_in_guest", f"ring-3 `vmmcall` (KVM answers it in the kernel, rax=-1), {NV} per exit",
                    v, _run_step(v.fd), expect=(K.VcpuExit.IO, PORT_EXIT), per=NV,
                    note="includes 1/%d of an exit" % NV))
    # ring 0: hlt and out (PVM emulates ring-0 code)
    h0 = g.code("l: hlt\n jmp l")
    v = g.vcpu(h0, ring=0)
    v.enable_sync_regs(ALL)
    D.append(Design("hlt_ring0", "ring-0 `hlt` (no in-kernel irqchip: KVM_EXIT_HLT)", v, _run_step(v.fd),
                    expect=(K.VcpuExit.HLT, None)))
    o0 = g.code(f"l: out {PORT_EXIT}, al\n jmp l")
    v = g.vcpu(o0, ring=0)
    v.enable_sync_regs(ALL)
    D.append(Design("out_ring0", "ring-0 `out 0x10` loop", v, _run_step(v.fd), expect=(K.VcpuExit.IO, PORT_EXIT)))
    # syscall from ring 3 with LSTAR at a supervisor page (does it reach ring 0?)
    g.put(R0CODE, asm(f"out {PORT_EXIT}, al\n sysretq", R0CODE) if False else
          asm(f"out {PORT_EXIT}, al", R0CODE) + b"\x48\x0f\x07")
    v = g.vcpu(sc, lstar=R0CODE)
    v.enable_sync_regs(ALL)
    D.append(Design("syscall_ring0_lstar", "`syscall` with LSTAR on a supervisor page: ring-0 `out; sysretq`",
                    v, _run_step(v.fd), expect=(K.VcpuExit.IO, PORT_EXIT)))

    # baselines: in-guest syscall (N per exit) and first touch of 4 KiB pages
    NSC = 1000
    ig = g.code(f"l: mov r12, {NSC}\n s: mov eax, 39\n syscall\n dec r12\n jnz s\n out {PORT_EXIT}, al\n jmp l")
    v = g.vcpu(ig, lstar=tramp_nop)
    v.enable_sync_regs(ALL)
    D.append(Design("in_guest_syscall", f"`syscall` answered in the guest (trampoline `jmp rcx`), {NSC} per exit",
                    v, _run_step(v.fd), expect=(K.VcpuExit.IO, PORT_EXIT), per=NSC,
                    note="includes 1/%d of an exit" % NSC))
    tc = g.code(f"l: mov rbx, {TOUCH}\n mov ecx, {TOUCH_PAGES}\n t: mov byte ptr [rbx], 1\n add rbx, 4096\n"
                f" dec ecx\n jnz t\n out {PORT_EXIT}, al\n jmp l")
    host_touch = g.host + TOUCH
    madvise = _libc.madvise
    madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    length = TOUCH_PAGES * 4096

    def fresh():
        madvise(host_touch, length, MADV_DONTNEED)        # MMU notifier drops PVM's shadow PTEs
        madvise(host_touch, length, MADV_POPULATE_WRITE)  # host PTEs back, so only the shadow fault remains
    v = g.vcpu(tc)
    v.enable_sync_regs(ALL)
    d = Design("first_touch_4k", f"first guest touch of a present 4 KiB page ({TOUCH_PAGES} per exit, "
               "host pages populated, shadow dropped by MADV_DONTNEED)", v, None,
               expect=(K.VcpuExit.IO, PORT_EXIT), per=TOUCH_PAGES, note="includes 1/512 of an exit")
    run, fd = fcntl.ioctl, v.fd

    def touch_step():
        fresh()
        t = time.perf_counter_ns()
        run(fd, K.KVM_RUN, 0)
        return time.perf_counter_ns() - t
    d.step = touch_step
    d.timed_inside = True
    D.append(d)
    v = g.vcpu(tc)
    v.enable_sync_regs(ALL)
    D.append(Design("touch_4k_warm", f"the same {TOUCH_PAGES} touches with the shadow PTEs already there",
                    v, _run_step(v.fd), expect=(K.VcpuExit.IO, PORT_EXIT), per=TOUCH_PAGES))
    return D


# --- ptrace ---------------------------------------------------------------------
PTRACE_TRACEME, PTRACE_SYSEMU, PTRACE_KILL = 0, 31, 8


class PtraceLoop:
    """A forked child doing getpid in a loop under PTRACE_SYSEMU; step() is one round trip."""

    def __init__(self) -> None:
        cpu = sorted(os.sched_getaffinity(0))[0]
        self._affinity = os.sched_getaffinity(0)
        os.sched_setaffinity(0, {cpu})               # tracer and tracee on one CPU (see DESIGN.md)
        pid = os.fork()
        if pid == 0:
            try:
                _libc.ptrace(PTRACE_TRACEME, 0, None, None)
                os.kill(os.getpid(), signal.SIGSTOP)
                sc = _libc.syscall
                while True:
                    sc(39)
            finally:
                os._exit(0)
        os.waitpid(pid, 0)
        self.pid = pid
        self._ptrace = _libc.ptrace
        self._ptrace.argtypes = (ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p)
        self.name, self.what = "ptrace_sysemu", "PTRACE_SYSEMU round trip of a getpid (tracer and tracee on one CPU)"
        self.samples: list[int] = []
        self.error, self.per, self.note, self.vcpu = "", 1, "", None

    def step(self) -> None:
        self._ptrace(PTRACE_SYSEMU, self.pid, None, None)
        os.waitpid(self.pid, 0)

    def close(self) -> None:
        os.kill(self.pid, signal.SIGKILL)
        os.waitpid(self.pid, 0)
        os.sched_setaffinity(0, self._affinity)


# --- measuring --------------------------------------------------------------------
def _expected(d) -> bool:
    want, port = d.expect
    reason = d.vcpu.raw_exit_reason()
    return reason == want and (port is None or d.vcpu.io_port() == port)


def _check(d: Design) -> None:
    """Run the design a few times and check the exit it gives."""
    if d.step is None:
        return
    def alarm(*_):
        raise TimeoutError
    old = signal.signal(signal.SIGALRM, alarm)
    try:
        signal.setitimer(signal.ITIMER_REAL, 1.0)
        for i in range(3):
            d.step()
            if d.vcpu is not None and d.expect is not None and not _expected(d):
                break
    except TimeoutError:
        d.error = "no exit to user space within 1 s (handled inside KVM, or the guest spins)"
        if d.vcpu is not None:
            d.note = f"rip {d.vcpu.regs[K.RIP]:#x} at the kick"
        return
    except OSError as e:
        d.error = f"KVM_RUN: {e.strerror}"
        return
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    if d.vcpu is None or d.expect is None:
        if d.vcpu is not None and not getattr(d.vcpu, "_imm", False):
            reason = d.vcpu.raw_exit_reason()
            d.note = (d.note + "; " if d.note else "") + f"exit {K._EXIT_BY_CODE.get(reason, reason)!s}"
        return
    reason = d.vcpu.raw_exit_reason()
    want, port = d.expect
    if reason != want or (port is not None and d.vcpu.io_port() != port):
        got = getattr(K._EXIT_BY_CODE.get(reason), "name", reason)
        extra = f" port {d.vcpu.io_port():#x}" if reason == K.VcpuExit.IO else ""
        if reason == K.VcpuExit.IO and d.vcpu.io_port() == PORT_ERR:
            extra += f" (guest exception vector {d.vcpu.regs[K.RAX] & 0xff})"
        d.error = f"exit {got!s}{extra} at rip {d.vcpu.regs[K.RIP]:#x}, not {want.name}"


def measure(designs, iters: int = 20000, rounds: int = 20) -> None:
    """Interleaved: each round runs every design iters/rounds times, timing each iteration."""
    pc = time.perf_counter_ns
    for d in designs:
        if d.step is not None and not d.error:
            _check(d)
    live = [d for d in designs if d.step is not None and not d.error]
    for _ in range(rounds):
        for d in live:
            n = max(1, iters // rounds // d.per) if d.per > 1 else iters // rounds
            if d.per > 1:
                n = max(2, min(n, 10))
            step, out = d.step, d.samples
            if getattr(d, "timed_inside", False):
                for _ in range(n):
                    out.append(step())
                continue
            for _ in range(n):
                t = pc()
                step()
                out.append(pc() - t)


def result(d) -> dict:
    if d.error or not d.samples:
        return {"name": d.name, "what": d.what, "error": d.error or "not run", "note": d.note}
    s = sorted(d.samples)
    per = d.per
    return {"name": d.name, "what": d.what, "n": len(s), "note": d.note,
            "median_us": statistics.median(s) / 1000 / per,
            "p10_us": s[len(s) // 10] / 1000 / per, "p90_us": s[len(s) * 9 // 10] / 1000 / per}


def machine() -> dict:
    model = ""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        model = next((ln.split(":", 1)[1].strip() for ln in out.splitlines() if ln.startswith("Model name")), "")
    except OSError:
        pass
    pvm = ""
    try:
        out = subprocess.run(["dmesg"], capture_output=True, text=True).stdout
        pvm = next((ln for ln in reversed(out.splitlines()) if "kvm-pvm: loaded" in ln), "")
    except OSError:
        pass
    params = {}
    base = "/sys/module/kvm_pvm/parameters"
    if os.path.isdir(base):
        for p in ("pvm_native", "pvm_emul_batch", "pvm_wrap_single"):
            try:
                params[p] = open(os.path.join(base, p)).read().strip()
            except OSError:
                pass
    return {"cpu": model, "kernel": _pyplatform.release(), "pvm_dmesg": pvm.strip(),
            "hypervisor": "kvm_pvm" if os.path.isdir("/sys/module/kvm_pvm") else "kvm",
            "pvm_params": params, "ncpu": os.cpu_count()}


def run_all(iters: int = 20000, rounds: int = 20, ptrace: bool = True, quick: bool = False) -> dict:
    g = Guest()
    designs = build_designs(g, quick)
    pt = None
    if ptrace:
        try:
            pt = PtraceLoop()
            designs.append(pt)
        except OSError as e:
            print(f"ptrace loop unavailable: {e}", file=sys.stderr)
    try:
        measure(designs, iters, rounds)
    finally:
        if pt is not None:
            pt.close()
    return {"machine": machine(), "iters": iters, "rounds": rounds,
            "rows": [result(d) for d in designs]}


def table(res: dict) -> str:
    m = res["machine"]
    lines = [f"CPU: {m['cpu']}, {m['ncpu']} CPUs, kernel {m['kernel']}, hypervisor {m['hypervisor']} "
             f"{m['pvm_params']}", (m["pvm_dmesg"] or "(no kvm-pvm 'loaded' line left in dmesg)"),
             f"{res['iters']} iterations per design in {res['rounds']} interleaved rounds; "
             "per-iteration median, p10, p90 in us", "",
             f"{'design':26} {'median':>8} {'p10':>8} {'p90':>8}  what"]
    for r in res["rows"]:
        if "error" in r:
            lines.append(f"{r['name']:26} {'-':>8} {'':>8} {'':>8}  {r['what']}: FAILS: {r['error']}"
                         + (f" ({r['note']})" if r.get('note') else ""))
        else:
            lines.append(f"{r['name']:26} {r['median_us']:8.2f} {r['p10_us']:8.2f} {r['p90_us']:8.2f}  {r['what']}"
                         + (f" [{r['note']}]" if r.get('note') else ""))
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--iters", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    res = run_all(a.iters, a.rounds)
    if a.json:
        import json
        print(json.dumps(res, indent=1))
    else:
        print(table(res))


if __name__ == "__main__":
    main()
