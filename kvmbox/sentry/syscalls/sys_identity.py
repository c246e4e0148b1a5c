"""Process identity syscalls: pids, process groups, credentials and uname."""
from __future__ import annotations

import errno
TYPE_CHECKING = False  # typing is not imported at run time (start-up cost)

from kvmbox.abi import structs
from kvmbox.errors import SyscallError
from kvmbox.sentry.syscalls.args import s32, u32
from kvmbox.sentry.syscalls.table import PARTIAL, SUPPORTED, Entry

if TYPE_CHECKING:  # pragma: no cover
    from kvmbox.sentry.task import Task

Args = tuple[int, int, int, int, int, int]

UNCHANGED = 0xFFFF_FFFF      # (uid_t)-1: "leave this id alone"
_UNCHANGED_NOTE = "no capabilities: succeeds only when no id would change, else EPERM"


def _same(requested: int, current: int) -> bool:
    return requested == UNCHANGED or requested == current


def getpid(t: "Task", a: Args) -> int:
    """Implements Linux syscall getpid(2)."""
    return t.tgid


def gettid(t: "Task", a: Args) -> int:
    """Implements Linux syscall gettid(2)."""
    return t.tid


def getppid(t: "Task", a: Args) -> int:
    """Implements Linux syscall getppid(2)."""
    return t.ppid


def getuid(t: "Task", a: Args) -> int:
    """Implements Linux syscall getuid(2)."""
    return t.creds.uid


def geteuid(t: "Task", a: Args) -> int:
    """Implements Linux syscall geteuid(2)."""
    return t.creds.euid


def getgid(t: "Task", a: Args) -> int:
    """Implements Linux syscall getgid(2)."""
    return t.creds.gid


def getegid(t: "Task", a: Args) -> int:
    """Implements Linux syscall getegid(2)."""
    return t.creds.egid


def getgroups(t: "Task", a: Args) -> int:
    """Implements Linux syscall getgroups(2)."""
    size = s32(a[0])
    if size < 0:
        raise SyscallError(errno.EINVAL)
    return 0


def _write_ids(t: "Task", ptrs: tuple[int, int, int], ids: tuple[int, int, int]) -> int:
    for ptr, value in zip(ptrs, ids):
        t.mm.copy_out(ptr, structs.U32.pack(value))
    return 0


def getresuid(t: "Task", a: Args) -> int:
    """Implements Linux syscall getresuid(2)."""
    ruid, euid, suid = a[0], a[1], a[2]
    c = t.creds
    return _write_ids(t, (ruid, euid, suid), (c.uid, c.euid, c.euid))


def getresgid(t: "Task", a: Args) -> int:
    """Implements Linux syscall getresgid(2)."""
    rgid, egid, sgid = a[0], a[1], a[2]
    c = t.creds
    return _write_ids(t, (rgid, egid, sgid), (c.gid, c.egid, c.egid))


def setuid(t: "Task", a: Args) -> int:
    """Implements Linux syscall setuid(2)."""
    uid = u32(a[0])
    if uid == UNCHANGED:
        raise SyscallError(errno.EINVAL)
    if uid != t.creds.uid or uid != t.creds.euid:
        raise SyscallError(errno.EPERM)
    return 0


def setgid(t: "Task", a: Args) -> int:
    """Implements Linux syscall setgid(2)."""
    gid = u32(a[0])
    if gid == UNCHANGED:
        raise SyscallError(errno.EINVAL)
    if gid != t.creds.gid or gid != t.creds.egid:
        raise SyscallError(errno.EPERM)
    return 0


def setreuid(t: "Task", a: Args) -> int:
    """Implements Linux syscall setreuid(2)."""
    ruid, euid = u32(a[0]), u32(a[1])
    if not (_same(ruid, t.creds.uid) and _same(euid, t.creds.euid)):
        raise SyscallError(errno.EPERM)
    return 0


def setregid(t: "Task", a: Args) -> int:
    """Implements Linux syscall setregid(2)."""
    rgid, egid = u32(a[0]), u32(a[1])
    if not (_same(rgid, t.creds.gid) and _same(egid, t.creds.egid)):
        raise SyscallError(errno.EPERM)
    return 0


def setresuid(t: "Task", a: Args) -> int:
    """Implements Linux syscall setresuid(2)."""
    ruid, euid, suid = u32(a[0]), u32(a[1]), u32(a[2])
    c = t.creds
    if not (_same(ruid, c.uid) and _same(euid, c.euid) and _same(suid, c.euid)):
        raise SyscallError(errno.EPERM)
    return 0


def setresgid(t: "Task", a: Args) -> int:
    """Implements Linux syscall setresgid(2)."""
    rgid, egid, sgid = u32(a[0]), u32(a[1]), u32(a[2])
    c = t.creds
    if not (_same(rgid, c.gid) and _same(egid, c.egid) and _same(sgid, c.egid)):
        raise SyscallError(errno.EPERM)
    return 0


def setfsuid(t: "Task", a: Args) -> int:
    """Implements Linux syscall setfsuid(2)."""
    _fsuid = u32(a[0])
    return t.creds.euid      # the previous fsuid; it never changes


def setfsgid(t: "Task", a: Args) -> int:
    """Implements Linux syscall setfsgid(2)."""
    _fsgid = u32(a[0])
    return t.creds.egid


def setgroups(t: "Task", a: Args) -> int:
    """Implements Linux syscall setgroups(2)."""
    size, _list = s32(a[0]), a[1]
    if size < 0 or size > 65536:
        raise SyscallError(errno.EINVAL)
    if size != 0:
        raise SyscallError(errno.EPERM)
    return 0


def _utsfield(s: str) -> bytes:
    return s.encode("utf-8", "replace")[:structs.UTSNAME_FIELD_LEN - 1]


def uname(t: "Task", a: Args) -> int:
    """Implements Linux syscall uname(2)."""
    buf = a[0]
    k = t.kernel
    data = structs.UTSNAME.pack(*(_utsfield(s) for s in (
        "Linux", k.hostname, k.release, k.version, "x86_64", "(none)")))
    t.mm.copy_out(buf, data)
    return 0


ENTRIES = (
    Entry("getpid", getpid, SUPPORTED),
    Entry("gettid", gettid, SUPPORTED),
    Entry("getppid", getppid, SUPPORTED, "init's parent is outside the sandbox: 0"),
    Entry("getuid", getuid, SUPPORTED),
    Entry("geteuid", geteuid, SUPPORTED),
    Entry("getgid", getgid, SUPPORTED),
    Entry("getegid", getegid, SUPPORTED),
    Entry("getgroups", getgroups, SUPPORTED, "no supplementary groups"),
    Entry("getresuid", getresuid, SUPPORTED, "saved id = effective id"),
    Entry("getresgid", getresgid, SUPPORTED, "saved id = effective id"),
    Entry("setuid", setuid, PARTIAL, _UNCHANGED_NOTE),
    Entry("setgid", setgid, PARTIAL, _UNCHANGED_NOTE),
    Entry("setreuid", setreuid, PARTIAL, _UNCHANGED_NOTE),
    Entry("setregid", setregid, PARTIAL, _UNCHANGED_NOTE),
    Entry("setresuid", setresuid, PARTIAL, _UNCHANGED_NOTE),
    Entry("setresgid", setresgid, PARTIAL, _UNCHANGED_NOTE),
    Entry("setfsuid", setfsuid, PARTIAL, "returns the fsuid, never changes it"),
    Entry("setfsgid", setfsgid, PARTIAL, "returns the fsgid, never changes it"),
    Entry("setgroups", setgroups, PARTIAL, "only the empty list (unchanged)"),
    Entry("uname", uname, SUPPORTED),
)
