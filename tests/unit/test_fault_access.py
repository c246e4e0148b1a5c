"""faults.writes_page: which access a ptrace SEGV_MAPERR fault was (the instruction decides)."""
from __future__ import annotations

import pytest

from kvmbox.sentry.faults import writes_page

RIP = 0x401000
REGS = {"rax": 0x10000, "rbx": 0x20000, "rdx": 0x8, "rdi": 0x30000, "rsi": 0x40000, "rsp": 0x50008}


@pytest.mark.parametrize("code,address,write", [
    (b"\xc6\x04\x13\x01", 0x20008, True),            # mov byte ptr [rbx + rdx], 1
    (b"\x48\x8b\x03", 0x20000, False),                # mov rax, qword ptr [rbx]
    (b"\x0f\x11\x00", 0x10000, True),                 # movups [rax], xmm0 (capstone says read)
    (b"\x83\x00\x01", 0x10000, True),                 # add dword ptr [rax], 1
    (b"\x83\x38\x01", 0x10000, False),                # cmp dword ptr [rax], 1
    (b"\xf3\xa4", 0x30000, True),                     # rep movsb: the destination page ...
    (b"\xf3\xa4", 0x40000, False),                    # ... and the source page
    (b"\x50", 0x50000, True),                         # push rax
    (b"\xff\x30", 0x10000, False),                    # push qword ptr [rax]: reads [rax]
    (b"\x48\x89\x05\x10\x00\x00\x00", RIP + 0x17, True),   # mov [rip + 0x10], rax
])
def test_writes_page(code, address, write):
    assert writes_page(code, RIP, REGS, address) is write
