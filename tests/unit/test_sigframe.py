"""The x86-64 signal frame layout against Linux's (uapi asm/sigcontext.h, asm/ucontext.h,
signal_64.c), plus the queueing rules of signals.deliver on a bare task."""
from __future__ import annotations

import shutil
import struct
import threading
from types import SimpleNamespace
import subprocess

import pytest

import helpers

from kvmbox.sentry.threadgroup import SignalHandlers
from kvmbox.abi import signals as S
from kvmbox.abi.structs import SIGACTION
from kvmbox.sentry.signals import deliver as D
from kvmbox.sentry.signals import frame as F

# glibc's REG_* indices into uc_mcontext.gregs (sys/ucontext.h): the sigcontext order.
GLIBC_REGS = ["r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "rdi", "rsi", "rbp", "rbx",
              "rdx", "rax", "rcx", "rsp", "rip", "rflags", "cs", "err", "trapno", "oldmask", "cr2"]


def test_struct_sizes_and_offsets():
    assert F.SIGCONTEXT_SIZE == 256
    assert F.UC_MCONTEXT == 40 and F.UC_SIGMASK == 296 and F.UCONTEXT_SIZE == 304
    assert F.FRAME_UC == 8 and F.FRAME_INFO == 312 and F.FRAME_SIZE == 440
    assert F.SIGINFO_SIZE == 128
    for i, name in enumerate(GLIBC_REGS):
        assert F.SC_OFF[name] == 8 * i, name
    assert F.SC_OFF["fpstate"] == 184          # glibc: fpregs right after gregs[23]
    assert (F.SC_OFF["gs"], F.SC_OFF["fs"], F.SC_OFF["ss"]) == (146, 148, 150)
    assert F.FRAME_UC_FLAGS == 7               # UC_FP_XSTATE | UC_SIGCONTEXT_SS | UC_STRICT_RESTORE_SS


@pytest.mark.parametrize("sp", [0x7FFF_FFFF_E000, 0x7FFF_FFFF_E008, 0x7FFF_1234_5677, 0x1000_0001])
@pytest.mark.parametrize("fpu", [576, 832, 2440, 2696])
def test_frame_layout_alignment(sp, fpu):
    frame, fpstate = F.frame_layout(sp, fpu)
    assert fpstate % 64 == 0 and fpstate + fpu + 4 <= sp
    assert (frame + 8) % 16 == 0                 # as right after a call
    assert frame + F.FRAME_SIZE <= fpstate
    assert fpstate - (frame + F.FRAME_SIZE) < 64 + 16


def test_pack_and_unpack_round_trip():
    regs = {name: 0x1000 + i for i, name in enumerate(F.SC_REGS)}
    info = F.siginfo(11, 1, addr=0xDEAD)
    raw = F.pack_frame(restorer=0x401000, regs=regs, uc_stack=(0x5000, S.SS_AUTODISARM, 8192),
                       err=6, trapno=14, oldmask=0x200, cr2=0xDEAD, fpstate=0x7000, sigmask=0x200,
                       info=info)
    assert len(raw) == F.FRAME_SIZE
    assert struct.unpack_from("<Q", raw, 0)[0] == 0x401000
    sc = F.FRAME_UC + F.UC_MCONTEXT
    assert struct.unpack_from("<Q", raw, sc + F.SC_OFF["rip"])[0] == regs["rip"]
    assert struct.unpack_from("<HHHH", raw, sc + F.SC_OFF["cs"]) == (0x33, 0, 0, 0x2B)
    assert struct.unpack_from("<4Q", raw, sc + F.SC_OFF["err"]) == (6, 14, 0x200, 0xDEAD)
    assert raw[F.FRAME_INFO:] == info
    flags, stack, back, fpstate, mask = F.unpack_ucontext(raw[F.FRAME_UC:F.FRAME_INFO])
    assert (flags, stack, back, fpstate, mask) == (7, (0x5000, S.SS_AUTODISARM, 8192), regs, 0x7000, 0x200)


def test_siginfo_layout():
    kill = F.siginfo(10, F.SI_USER, pid=42, uid=1000)
    assert len(kill) == 128
    assert struct.unpack_from("<iii", kill, 0) == (10, 0, 0)
    assert struct.unpack_from("<iI", kill, 16) == (42, 1000)
    fault = F.siginfo(11, 2, addr=0x1234, pid=42)
    assert struct.unpack_from("<iiiiQ", fault, 0) == (11, 0, 2, 0, 0x1234)
    assert F.siginfo(5, F.SI_KERNEL, pid=42)[16:] == bytes(112)
    assert struct.unpack_from("<i", F.siginfo(6, F.SI_TKILL, pid=7), 8)[0] == -6


def test_fpstate_image_and_back():
    image = bytearray(832)
    struct.pack_into("<I", image, F.MXCSR_OFF, 0x1F80)
    struct.pack_into("<Q", image, F.XSTATE_BV_OFF, 0x4)
    out = F.fpstate_image(bytes(image), 0x7)
    assert len(out) == 836
    assert F.sw_bytes(out) == (F.FP_XSTATE_MAGIC1, 836, 0x7, 832)
    assert struct.unpack_from("<I", out, 832)[0] == F.FP_XSTATE_MAGIC2
    assert struct.unpack_from("<Q", out, F.XSTATE_BV_OFF)[0] == 0x7   # FP|SSE always set
    back = F.image_from_frame(out, 832, 0x3, 832, False)
    assert struct.unpack_from("<Q", back, F.XSTATE_BV_OFF)[0] == 0x3   # AVX not in xfeatures: init
    assert back[F.SW_BYTES_OFF:F.FXSAVE_SIZE] == bytes(48)
    fx = F.image_from_frame(out[:512], 512, 0x3, 832, True)
    assert len(fx) == 832 and fx[576:] == bytes(256)
    init = F.init_fpu_image(832)
    assert struct.unpack_from("<H", init, 0)[0] == 0x37F
    assert struct.unpack_from("<I", init, F.MXCSR_OFF)[0] == 0x1F80


@pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc not installed")
def test_offsets_match_the_c_library(tmp_path):
    """glibc's ucontext_t and siginfo_t agree with the frame's offsets."""
    src = tmp_path / "off.c"
    src.write_text("""
#define _GNU_SOURCE
#include <stddef.h>
#include <stdio.h>
#include <signal.h>
#include <ucontext.h>
int main(void) {
    printf("%zu %zu %zu %zu %zu %zu\\n", offsetof(ucontext_t, uc_mcontext), offsetof(ucontext_t, uc_stack),
           offsetof(ucontext_t, uc_mcontext.fpregs), sizeof(siginfo_t), offsetof(siginfo_t, si_pid),
           offsetof(siginfo_t, si_addr));
    return 0;
}
""")
    exe = tmp_path / "off"
    subprocess.run(["gcc", "-o", str(exe), str(src)], check=True, capture_output=True)
    vals = [int(x) for x in subprocess.run([str(exe)], capture_output=True, check=True,
                                                   preexec_fn=helpers.native_preexec).stdout.split()]
    assert vals == [F.UC_MCONTEXT, F.UC_STACK, F.UC_MCONTEXT + F.SC_OFF["fpstate"], 128, 16, 16]


class BareTask:
    def __init__(self) -> None:
        self.sigmask = 0
        self.sighand = SignalHandlers()
        self.sigactions = self.sighand.actions
        self.pending_signals: list[tuple] = []
        self.sig_lock = threading.Lock()
        self.signal_waiters = None
        self.timers = None
        self.tg = SimpleNamespace(shared_pending=[], tasks=[self])


def _act(t, signo, handler):
    t.sigactions[signo] = SIGACTION.pack(handler, S.SA_RESTORER, 0x1000, 0)


def test_queue_rules():
    t = BareTask()
    D.queue(t, S.SIGCHLD)                      # ignored by default: discarded
    _act(t, S.SIGUSR1, S.SIG_IGN)
    D.queue(t, S.SIGUSR1)                      # SIG_IGN: discarded
    assert t.pending_signals == []
    t.sigmask = S.sigbit(S.SIGUSR1)
    D.queue(t, S.SIGUSR1)                      # blocked signals are never ignored at queue time
    D.queue(t, S.SIGUSR1)                      # standard signals pend once
    assert t.pending_signals == [(S.SIGUSR1, 0, 0, None)]
    D.queue(t, 40)
    D.queue(t, 40)                             # real-time signals queue
    assert [p[0] for p in t.pending_signals] == [S.SIGUSR1, 40, 40]
    D.flush(t, 40)
    assert [p[0] for p in t.pending_signals] == [S.SIGUSR1]


def test_dequeue_order_and_force():
    t = BareTask()
    for s in (S.SIGTERM, S.SIGUSR2, S.SIGHUP):
        _act(t, s, 0x4000)
        D.queue(t, s)
    t.sigmask = S.sigbit(S.SIGHUP)
    D.force(t, S.SIGSEGV, 1, 0x10)             # synchronous first
    assert D.dequeue(t, ~t.sigmask) == (S.SIGSEGV, 1, 0x10, None)
    assert D.dequeue(t, ~t.sigmask)[0] == S.SIGUSR2   # then the lowest unblocked
    assert D.dequeue(t, ~t.sigmask)[0] == S.SIGTERM
    assert D.dequeue(t, ~t.sigmask) is None           # SIGHUP stays pending while blocked
    _act(t, S.SIGFPE, 0x4000)
    t.sigmask |= S.sigbit(S.SIGFPE)
    D.force(t, S.SIGFPE, 1)                    # blocked: unblocked and reset to SIG_DFL
    assert not t.sigmask & S.sigbit(S.SIGFPE) and D.action(t, S.SIGFPE)[0] == S.SIG_DFL
