"""Helpers turning raw 64-bit syscall argument registers into typed values."""
from __future__ import annotations


def s32(x: int) -> int:
    """Low 32 bits as a signed int (C `int` arguments such as fds)."""
    x &= 0xFFFF_FFFF
    return x - (1 << 32) if x & 0x8000_0000 else x


def u32(x: int) -> int:
    return x & 0xFFFF_FFFF


def s64(x: int) -> int:
    x &= 0xFFFF_FFFF_FFFF_FFFF
    return x - (1 << 64) if x & (1 << 63) else x
