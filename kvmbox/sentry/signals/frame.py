"""The x86-64 rt_sigframe exactly as Linux lays it out (arch/x86/include/uapi/asm/sigcontext.h,
arch/x86/kernel/signal_64.c): pure packing and unpacking, no guest access.

    frame + 0     pretcode (sa_restorer: the handler's return address)
    frame + 8     struct ucontext: uc_flags, uc_link, uc_stack (24), uc_mcontext
                  (struct sigcontext, 256), uc_sigmask (8)           = 304 bytes
    frame + 312   siginfo_t                                          = 128 bytes
    ... (rounded) fpstate: a 64-byte-aligned XSAVE image with sw_reserved
                  filled (FP_XSTATE_MAGIC1) and FP_XSTATE_MAGIC2 right after it.

At handler entry rsp = frame, and (rsp + 8) % 16 == 0 as after a call.
"""
from __future__ import annotations

import struct

# --- struct sigcontext (64-bit) ---------------------------------------------------
SC_REGS = ("r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "rdi", "rsi", "rbp", "rbx",
           "rdx", "rax", "rcx", "rsp", "rip", "rflags")
SIGCONTEXT = struct.Struct("<18Q4H5Q64x")          # regs, cs gs fs ss, err trapno oldmask cr2 fpstate
SIGCONTEXT_SIZE = SIGCONTEXT.size                  # 256
SC_OFF = {name: 8 * i for i, name in enumerate(SC_REGS)}
SC_OFF.update(cs=144, gs=146, fs=148, ss=150, err=152, trapno=160, oldmask=168, cr2=176, fpstate=184)

# --- struct ucontext and struct rt_sigframe ------------------------------------------
UC_FLAGS, UC_LINK, UC_STACK, UC_MCONTEXT = 0, 8, 16, 40
UC_SIGMASK = UC_MCONTEXT + SIGCONTEXT_SIZE         # 296
UCONTEXT_SIZE = UC_SIGMASK + 8                     # 304
UCONTEXT_HEAD = struct.Struct("<QQQi4xQ")           # uc_flags, uc_link, ss_sp, ss_flags, ss_size
SIGINFO_SIZE = 128
FRAME_UC = 8
FRAME_INFO = FRAME_UC + UCONTEXT_SIZE              # 312
FRAME_SIZE = FRAME_INFO + SIGINFO_SIZE             # 440
UC_FP_XSTATE, UC_SIGCONTEXT_SS, UC_STRICT_RESTORE_SS = 0x1, 0x2, 0x4
FRAME_UC_FLAGS = UC_FP_XSTATE | UC_SIGCONTEXT_SS | UC_STRICT_RESTORE_SS

# --- the FPU area (struct _fpx_sw_bytes in the fxsave area's sw_reserved) -------------
FP_XSTATE_MAGIC1 = 0x46505853
FP_XSTATE_MAGIC2 = 0x46505845
FP_XSTATE_MAGIC2_SIZE = 4
SW_BYTES_OFF = 464
SW_BYTES = struct.Struct("<IIQI")                  # magic1, extended_size, xfeatures, xstate_size
FXSAVE_SIZE = 512
XSTATE_BV_OFF = 512                                # the XSAVE header's xfeatures bitmap
XCOMP_BV_OFF = 520
XFEATURE_MASK_FPSSE = 0x3
MXCSR_OFF, FCW_OFF = 24, 0

USER_CS, USER_DS = 0x33, 0x2B
RED_ZONE = 128

# --- siginfo_t ---------------------------------------------------------------------
SI_USER, SI_KERNEL, SI_QUEUE, SI_TKILL = 0, 0x80, -1, -6
SIGINFO_HEAD = struct.Struct("<iii4x")             # si_signo, si_errno, si_code


def siginfo(signo: int, code: int, *, addr: int = 0, pid: int = 0, uid: int = 0) -> bytes:
    """A 128-byte siginfo_t: sender pid/uid for codes <= 0 (kill, tgkill), si_addr for faults."""
    head = SIGINFO_HEAD.pack(signo, 0, code)
    if code <= 0:
        body = struct.pack("<iI", pid, uid & 0xFFFF_FFFF)
    elif code == SI_KERNEL:
        body = b""
    else:
        body = struct.pack("<Q", addr & (1 << 64) - 1)
    return (head + body).ljust(SIGINFO_SIZE, b"\0")


def chld_siginfo(signo: int, code: int, *, pid: int, uid: int, status: int, utime: int,
                 stime: int) -> bytes:
    """A 128-byte siginfo_t for a child's state change (CLD_*): its pid, uid, status, and
    user/system time in clock ticks, as SIGCHLD carries them."""
    body = struct.pack("<iIi4xqq", pid, uid & 0xFFFF_FFFF, status, utime, stime)
    return (SIGINFO_HEAD.pack(signo, 0, code) + body).ljust(SIGINFO_SIZE, b"\0")


def frame_layout(sp: int, fpu_size: int) -> tuple[int, int]:
    """(frame address, fpstate address) for a signal taken with stack pointer `sp`
    (already the alternate stack's top, or the user rsp minus the red zone), as
    get_sigframe() computes them: fpstate 64-byte aligned below sp, then the frame
    16-byte aligned minus 8."""
    fpstate = (sp - (fpu_size + FP_XSTATE_MAGIC2_SIZE)) & ~63
    frame = ((fpstate - FRAME_SIZE) & ~15) - 8
    return frame, fpstate


def fpstate_image(image: bytes, xfeatures: int) -> bytes:
    """The XSAVE image as the signal frame holds it: sw_reserved describing it, FP|SSE
    always set in XSTATE_BV (as Linux does for legacy readers), and MAGIC2 after it."""
    buf = bytearray(image)
    size = len(buf)
    buf[SW_BYTES_OFF:FXSAVE_SIZE] = bytes(FXSAVE_SIZE - SW_BYTES_OFF)
    SW_BYTES.pack_into(buf, SW_BYTES_OFF, FP_XSTATE_MAGIC1, size + FP_XSTATE_MAGIC2_SIZE, xfeatures, size)
    if size >= XSTATE_BV_OFF + 8:
        bv, = struct.unpack_from("<Q", buf, XSTATE_BV_OFF)
        struct.pack_into("<Q", buf, XSTATE_BV_OFF, bv | XFEATURE_MASK_FPSSE)
    return bytes(buf) + struct.pack("<I", FP_XSTATE_MAGIC2)


def init_fpu_image(size: int) -> bytes:
    """The FPU state a handler starts with (Linux's init_fpstate): x87 and SSE reset,
    FCW 0x37f, MXCSR 0x1f80, all registers zero, other components in their init state."""
    buf = bytearray(max(size, FXSAVE_SIZE + 64))
    struct.pack_into("<H", buf, FCW_OFF, 0x37F)
    struct.pack_into("<I", buf, MXCSR_OFF, 0x1F80)
    struct.pack_into("<Q", buf, XSTATE_BV_OFF, XFEATURE_MASK_FPSSE)
    return bytes(buf[:max(size, FXSAVE_SIZE + 64)])


def sw_bytes(legacy: bytes) -> tuple[int, int, int, int]:
    """(magic1, extended_size, xfeatures, xstate_size) from an FPU area's first 512 bytes."""
    return SW_BYTES.unpack_from(legacy, SW_BYTES_OFF)


def image_from_frame(area: bytes, xstate_size: int, xfeatures: int, full_size: int,
                     fx_only: bool) -> bytes:
    """The XSAVE image to load from a frame's FPU area on rt_sigreturn.

    fx_only (no valid magic): only the 512-byte legacy area counts; the other
    components go to their init state.  Otherwise components absent from the
    frame's xfeatures are put in init state by clearing their XSTATE_BV bits.
    """
    buf = bytearray(full_size)
    if fx_only:
        buf[:FXSAVE_SIZE] = area[:FXSAVE_SIZE]
        struct.pack_into("<Q", buf, XSTATE_BV_OFF, XFEATURE_MASK_FPSSE)
    else:
        n = min(xstate_size, full_size)
        buf[:n] = area[:n]
        bv, = struct.unpack_from("<Q", buf, XSTATE_BV_OFF)
        struct.pack_into("<Q", buf, XSTATE_BV_OFF, bv & xfeatures)
    buf[SW_BYTES_OFF:FXSAVE_SIZE] = bytes(FXSAVE_SIZE - SW_BYTES_OFF)
    return bytes(buf)


def pack_frame(*, restorer: int, regs: dict[str, int], uc_stack: tuple[int, int, int],
               err: int, trapno: int, oldmask: int, cr2: int, fpstate: int, sigmask: int,
               info: bytes) -> bytes:
    """The FRAME_SIZE bytes of the rt_sigframe (pretcode, ucontext, siginfo)."""
    ss_sp, ss_flags, ss_size = uc_stack
    sc = SIGCONTEXT.pack(*(regs[name] & (1 << 64) - 1 for name in SC_REGS),
                         USER_CS, 0, 0, USER_DS, err, trapno, oldmask, cr2, fpstate)
    head = UCONTEXT_HEAD.pack(FRAME_UC_FLAGS, 0, ss_sp, _s32(ss_flags), ss_size)
    out = struct.pack("<Q", restorer) + head + sc + struct.pack("<Q", sigmask) + info
    assert len(out) == FRAME_SIZE
    return out


def unpack_ucontext(uc: bytes) -> tuple[int, tuple[int, int, int], dict[str, int], int, int]:
    """(uc_flags, uc_stack, registers by name, fpstate pointer, uc_sigmask) of a ucontext."""
    flags, _link, ss_sp, ss_flags, ss_size = UCONTEXT_HEAD.unpack_from(uc, 0)
    vals = SIGCONTEXT.unpack_from(uc, UC_MCONTEXT)
    regs = dict(zip(SC_REGS, vals[:18]))
    fpstate = vals[-1]
    (mask,) = struct.unpack_from("<Q", uc, UC_SIGMASK)
    return flags, (ss_sp, ss_flags & 0xFFFF_FFFF, ss_size), regs, fpstate, mask


def _s32(x: int) -> int:
    x &= 0xFFFF_FFFF
    return x - (1 << 32) if x & 0x8000_0000 else x
