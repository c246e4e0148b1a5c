"""The FPU/SIMD reset state every new guest thread starts from, on any platform.

A pooled KVM vCPU still holds the registers of the guest it ran last, and a
ptrace stub is forked from a Sentry thread whose XMM registers hold whatever
Python computed; neither may reach a new guest.  Both platforms load this
image before a context's first entry.
"""
from __future__ import annotations

import struct

LEGACY_SIZE = 512                                  # the FXSAVE area at the start of an image
FCW_OFF, MXCSR_OFF, MXCSR_MASK_OFF = 0, 24, 28     # inside the legacy area
XSTATE_BV_OFF = 512                                # the XSAVE header's component bitmap
FCW_RESET, MXCSR_RESET = 0x37F, 0x1F80
XFEATURE_PKRU = 1 << 9     # protection keys: not register data; the ptrace stub's execute-only
                           # code page depends on the PKRU value it set up, so it is kept


def reset_xsave(image: bytes) -> bytes:
    """`image` (standard-format XSAVE, as KVM_GET_XSAVE or PTRACE_GETREGSET give it) turned
    into the reset state: every register component in its init state (its XSTATE_BV bit
    cleared), the legacy area zero but for the x87 control word 0x37f, MXCSR 0x1f80 and the
    CPU's MXCSR_MASK.  Only PKRU is kept as it was."""
    out = bytearray(image)
    legacy = bytearray(LEGACY_SIZE)
    struct.pack_into("<H", legacy, FCW_OFF, FCW_RESET)
    struct.pack_into("<I", legacy, MXCSR_OFF, MXCSR_RESET)
    legacy[MXCSR_MASK_OFF:MXCSR_MASK_OFF + 4] = image[MXCSR_MASK_OFF:MXCSR_MASK_OFF + 4]
    out[:LEGACY_SIZE] = legacy
    if len(out) >= XSTATE_BV_OFF + 8:
        (bv,) = struct.unpack_from("<Q", out, XSTATE_BV_OFF)
        struct.pack_into("<Q", out, XSTATE_BV_OFF, bv & XFEATURE_PKRU)
    return bytes(out)
