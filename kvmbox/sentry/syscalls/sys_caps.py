"""Capability syscalls: capget, capset, and prctl's capability options (sentry/caps.py has the model)."""
from __future__ import annotations

import errno
TYPE_CHECKING = False  # typing is not imported at run time (start-up cost)

from kvmbox.abi import capability as A
from kvmbox.errors import SyscallError
from kvmbox.sentry import caps
from kvmbox.sentry.syscalls.table import SUPPORTED, Entry

if TYPE_CHECKING:  # pragma: no cover
    from kvmbox.sentry.task import Task

Args = tuple[int, int, int, int, int, int]


def _words(t: "Task", header: int) -> int:
    """cap_validate_magic: how many 32-bit words per set this header's version carries;
    for an unknown one, write the kernel's version back and fail with EINVAL."""
    version = A.CAP_HEADER.unpack(t.mm.copy_in(header, A.CAP_HEADER.size))[0]
    words = A.VERSION_WORDS.get(version)
    if words is None:
        t.mm.copy_out(header, A.CAP_HEADER.pack(A.KERNEL_CAPABILITY_VERSION, 0)[:4])
        raise SyscallError(errno.EINVAL)
    return words


def _pid(t: "Task", header: int) -> int:
    return A.CAP_HEADER.unpack(t.mm.copy_in(header, A.CAP_HEADER.size))[1]


def capget(t: "Task", a: Args) -> int:
    """Implements Linux syscall capget(2)."""
    header, data = a[0], a[1]
    try:
        words = _words(t, header)
    except SyscallError as e:
        if data == 0 and e.errno == errno.EINVAL:
            return 0                       # libcap's version probe: capget(&{0, 0}, NULL)
        raise
    if data == 0:
        return 0
    pid = _pid(t, header)
    if pid < 0:
        raise SyscallError(errno.EINVAL)
    if pid not in (0, t.tid):
        raise SyscallError(errno.ESRCH)    # no other task is visible (yet)
    c = t.creds
    out = b"".join(A.CAP_DATA.pack(c.cap_effective >> 32 * i & 0xFFFF_FFFF,
                                   c.cap_permitted >> 32 * i & 0xFFFF_FFFF,
                                   c.cap_inheritable >> 32 * i & 0xFFFF_FFFF)
                   for i in range(words))
    t.mm.copy_out(data, out)
    return 0


def capset(t: "Task", a: Args) -> int:
    """Implements Linux syscall capset(2)."""
    header, data = a[0], a[1]
    words = _words(t, header)
    if _pid(t, header) not in (0, t.tid):
        raise SyscallError(errno.EPERM)    # only the caller's own sets
    raw = t.mm.copy_in(data, words * A.CAP_DATA.size)
    effective = permitted = inheritable = 0
    for i in range(words):
        e, p, inh = A.CAP_DATA.unpack_from(raw, i * A.CAP_DATA.size)
        effective |= e << 32 * i
        permitted |= p << 32 * i
        inheritable |= inh << 32 * i
    mask = caps.valid_mask()
    effective, permitted, inheritable = effective & mask, permitted & mask, inheritable & mask
    if not caps.capset_check(t.creds, effective, inheritable, permitted):
        raise SyscallError(errno.EPERM)
    caps.apply_capset(t.creds, effective, inheritable, permitted)
    return 0


PRCTL_OPTIONS = frozenset({A.PR_CAPBSET_READ, A.PR_CAPBSET_DROP, A.PR_CAP_AMBIENT,
                           A.PR_GET_SECUREBITS, A.PR_GET_KEEPCAPS, A.PR_SET_KEEPCAPS})


def cap_prctl(t: "Task", option: int, arg2: int, arg3: int, arg4: int, arg5: int) -> int:
    """prctl(2)'s capability options (PRCTL_OPTIONS), as cap_task_prctl and sys_prctl."""
    c = t.creds
    if option == A.PR_CAPBSET_READ:
        if not caps.cap_valid(arg2):
            raise SyscallError(errno.EINVAL)
        return c.cap_bset >> arg2 & 1
    if option == A.PR_CAPBSET_DROP:
        if not caps.capable(c, A.CAP_SETPCAP):
            raise SyscallError(errno.EPERM)
        if not caps.cap_valid(arg2):
            raise SyscallError(errno.EINVAL)
        c.cap_bset &= ~(1 << arg2)
        return 0
    if option == A.PR_CAP_AMBIENT:
        return _ambient(c, arg2, arg3, arg4, arg5)
    if option == A.PR_GET_SECUREBITS:
        return 0                           # no securebits are ever set
    if option == A.PR_GET_KEEPCAPS:
        return getattr(t, "keepcaps", 0)
    if arg2 > 1 or arg3 or arg4 or arg5:   # PR_SET_KEEPCAPS
        raise SyscallError(errno.EINVAL)
    t.keepcaps = arg2                      # recorded; there is no setuid to keep them across
    return 0


def _ambient(c, op: int, cap: int, arg4: int, arg5: int) -> int:
    if op == A.PR_CAP_AMBIENT_CLEAR_ALL:
        if cap or arg4 or arg5:
            raise SyscallError(errno.EINVAL)
        c.cap_ambient = 0
        return 0
    if not caps.cap_valid(cap) or arg4 or arg5:
        raise SyscallError(errno.EINVAL)
    if op == A.PR_CAP_AMBIENT_IS_SET:
        return c.cap_ambient >> cap & 1
    if op == A.PR_CAP_AMBIENT_RAISE:
        if not (c.cap_permitted >> cap & 1 and c.cap_inheritable >> cap & 1):
            raise SyscallError(errno.EPERM)
        c.cap_ambient |= 1 << cap
        return 0
    if op == A.PR_CAP_AMBIENT_LOWER:
        c.cap_ambient &= ~(1 << cap)
        return 0
    raise SyscallError(errno.EINVAL)


ENTRIES = (
    Entry("capget", capget, SUPPORTED, "the sets the sandbox's credentials get natively "
          "(root: the host root's bounding set); other pids ESRCH"),
    Entry("capset", capset, SUPPORTED, "Linux's subset rules; what the program is told "
          "(the Sentry's own checks do not consult it)"),
)
