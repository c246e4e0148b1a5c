"""The initial process stack: argv/envp strings, platform string, AT_RANDOM bytes, argc/argv/envp/auxv.

Laid out as Linux's execve does, from the top down:

    top - 8 .. top        8 zero bytes (end marker)
    execfn\\0              the path given to execve (AT_EXECFN)
    envp strings          envp[n-1] highest
    argv strings          argv[0] lowest
    (16-byte alignment)
    platform\\0            "x86_64" (AT_PLATFORM)
    16 random bytes       (AT_RANDOM)
    (padding)
    auxv pairs ... AT_NULL 0
    NULL, envp[n-1] .. envp[0]
    NULL, argv[argc-1] .. argv[0]
    argc                  <- initial rsp, 16-byte aligned

No ASLR: the stack top is fixed (layout.STACK_TOP) and arch_align_stack's
random offset is left out, so runs are deterministic.
"""
from __future__ import annotations

import errno

import struct

from kvmbox.abi.auxv import AT_EXECFN, AT_NULL, AT_PLATFORM, AT_RANDOM
from kvmbox.errors import CannotExecute
from kvmbox.guest_stub import layout
from kvmbox.record import record

INITIAL_STACK_SIZE = 128 << 10   # mapped up front; the mapping grows down on demand up to the rlimit
MAX_ARG_STRLEN = 32 * 4096       # Linux: longest single argv/envp string (with its NUL)
_PTR = 8


class StackMemory:
    """What building the stack needs from the MemoryManager."""

    def map_stack(self, top: int, size: int, max_size: int) -> None: ...

    def copy_out(self, addr: int, data: bytes, *, force: bool = False) -> None: ...


@record(frozen=True)
class StackPlan:
    """Where everything goes on the initial stack, and the bytes to write there."""
    top: int                          # exclusive end of the stack mapping
    sp: int                           # initial rsp (points at argc)
    blob: bytes                       # the bytes of [sp, top)
    argv_addrs: tuple[int, ...]
    envp_addrs: tuple[int, ...]
    execfn_addr: int
    platform_addr: int
    random_addr: int
    auxv: tuple[tuple[int, int], ...]  # final vector, AT_NULL-terminated, addresses filled in

    @property
    def size(self) -> int:
        """Bytes of stack the plan uses."""
        return self.top - self.sp


def _checked_cstring(s: bytes, what: str) -> bytes:
    if b"\0" in s:
        raise CannotExecute(f"{what} contains a NUL byte")
    if len(s) + 1 > MAX_ARG_STRLEN:
        raise CannotExecute("argument list too long", err=errno.E2BIG)
    return s + b"\0"


def arg_space_limit(stack_max: int) -> int:
    """Bytes argv+envp (strings and pointers) may take: a quarter of the stack rlimit, as Linux."""
    return stack_max // 4


def plan_stack(top: int, argv: list[bytes], envp: list[bytes], auxv: list[tuple[int, int]],
               execfn: bytes, platform: bytes, random16: bytes,
               *, stack_max: int = layout.STACK_MAX) -> StackPlan:
    """Lay out the initial stack below `top` (pure: no memory is touched).

    In `auxv`, the values of AT_RANDOM, AT_EXECFN and AT_PLATFORM are replaced by
    the addresses of what they point to; AT_NULL is appended if missing.
    Raises CannotExecute("argument list too long") past the Linux limits.
    """
    if len(random16) != 16:
        raise ValueError("AT_RANDOM needs exactly 16 bytes")
    if top % 16:
        raise ValueError("stack top must be 16-byte aligned")
    argv_z = [_checked_cstring(a, "argument") for a in argv]
    envp_z = [_checked_cstring(e, "environment string") for e in envp]
    execfn_z = _checked_cstring(execfn, "program name")
    platform_z = _checked_cstring(platform, "platform string")
    arg_bytes = sum(map(len, argv_z)) + sum(map(len, envp_z)) + _PTR * (len(argv) + len(envp))
    if arg_bytes > arg_space_limit(stack_max):
        raise CannotExecute("argument list too long", err=errno.E2BIG)

    # Strings, from the top down.
    p = top - _PTR                                    # end marker
    p -= len(execfn_z)
    execfn_addr = p
    envp_addrs: list[int] = []
    for s in reversed(envp_z):
        p -= len(s)
        envp_addrs.append(p)
    envp_addrs.reverse()
    argv_addrs: list[int] = []
    for s in reversed(argv_z):
        p -= len(s)
        argv_addrs.append(p)
    argv_addrs.reverse()
    strings_start = p
    p &= ~15
    p -= len(platform_z)
    platform_addr = p
    p -= 16
    random_addr = p

    fills = {AT_RANDOM: random_addr, AT_EXECFN: execfn_addr, AT_PLATFORM: platform_addr}
    final_auxv = [(key, fills.get(key, value)) for key, value in auxv if key != AT_NULL]
    final_auxv.append((AT_NULL, 0))

    words: list[int] = [len(argv), *argv_addrs, 0, *envp_addrs, 0]
    for key, value in final_auxv:
        words += (key, value)
    sp = (p - _PTR * len(words)) & ~15

    blob = bytearray(top - sp)
    struct.pack_into(f"<{len(words)}Q", blob, 0, *words)

    def put(addr: int, data: bytes) -> None:
        blob[addr - sp: addr - sp + len(data)] = data

    put(strings_start, b"".join(argv_z) + b"".join(envp_z) + execfn_z)
    put(platform_addr, platform_z)
    put(random_addr, random16)
    return StackPlan(top=top, sp=sp, blob=bytes(blob), argv_addrs=tuple(argv_addrs),
                     envp_addrs=tuple(envp_addrs), execfn_addr=execfn_addr,
                     platform_addr=platform_addr, random_addr=random_addr, auxv=tuple(final_auxv))


def stack_mapping_size(used: int, page_size: int = 4096) -> int:
    """Initial size of the stack mapping: 128 KiB, or enough for `used` bytes plus a page of headroom."""
    needed = (used + page_size + page_size - 1) // page_size * page_size
    return max(INITIAL_STACK_SIZE, needed)


def write_stack(mm: StackMemory, plan: StackPlan, *, stack_max: int = layout.STACK_MAX,
                page_size: int = 4096) -> int:
    """Map the stack below plan.top with mm.map_stack and write the plan into it; returns rsp."""
    mm.map_stack(plan.top, stack_mapping_size(plan.size, page_size), stack_max)
    mm.copy_out(plan.sp, plan.blob)
    return plan.sp


def build_initial_stack(mm: StackMemory, top: int, argv: list[bytes], envp: list[bytes],
                        auxv: list[tuple[int, int]], execfn: bytes, platform: bytes,
                        random16: bytes, *, stack_max: int = layout.STACK_MAX) -> int:
    """Map and fill the initial stack as Linux does; returns the initial rsp (at argc)."""
    plan = plan_stack(top, argv, envp, auxv, execfn, platform, random16, stack_max=stack_max)
    return write_stack(mm, plan, stack_max=stack_max)
