"""kvmbox.platform.fpu.reset_xsave: register data gone, reset values in, PKRU kept."""
from __future__ import annotations

import struct

from kvmbox.platform.fpu import XFEATURE_PKRU, reset_xsave


def test_reset_clears_registers_and_keeps_pkru_and_mxcsr_mask():
    image = bytearray(b"\xAB" * 1088)
    struct.pack_into("<I", image, 28, 0x0000FFBF)                 # MXCSR_MASK the CPU reported
    struct.pack_into("<Q", image, 512, 0x2E7 | XFEATURE_PKRU)     # x87, SSE, AVX, ..., PKRU set
    out = reset_xsave(bytes(image))
    assert len(out) == len(image)
    fcw, = struct.unpack_from("<H", out, 0)
    mxcsr, mask = struct.unpack_from("<II", out, 24)
    assert (fcw, mxcsr, mask) == (0x37F, 0x1F80, 0xFFBF)
    assert out[32:512] == bytes(480) and out[2:24] == bytes(22)  # every register zero
    bv, = struct.unpack_from("<Q", out, 512)
    assert bv == XFEATURE_PKRU                                    # only PKRU still loaded


def test_short_image_is_legacy_only():
    out = reset_xsave(b"\xff" * 512)
    assert struct.unpack_from("<HI", out, 0)[0] == 0x37F and out[32:] == bytes(480)
