"""Handlers that make open files from paths: open, openat, openat2, creat.

One function, do_open, does what Linux's path_openat does: resolve (creating
with O_CREAT), then the checks of may_open in Linux's order (ELOOP, EISDIR,
ENOTDIR, EROFS, EACCES), then the node's own open(), then a descriptor.
O_TMPFILE asks the directory's node for an unnamed file instead (open_tmpfile;
directories of tmpfs and the overlay have a `tmpfile` method, others do not).
"""
from __future__ import annotations

import errno
import stat as S
import struct

from kvmbox.abi.fcntl import (FASYNC, O_ACCMODE, O_APPEND, O_CLOEXEC, O_CREAT, O_DIRECT, O_DIRECTORY,
                              O_DSYNC, O_EXCL, O_LARGEFILE, O_NOATIME, O_NOCTTY, O_NOFOLLOW,
                              O_NONBLOCK, O_PATH, O_RDONLY, O_SYNC, O_TMPFILE_BIT, O_TRUNC, O_WRONLY)
from kvmbox.errors import SyscallError
from kvmbox.sentry.rlimits import NR_OPEN, RLIMIT_NOFILE
from kvmbox.sentry.syscalls.args import s32, u32
from kvmbox.sentry.syscalls.table import PARTIAL, SUPPORTED, Entry
from kvmbox.sentry.vfs import at, perm
from kvmbox.sentry.vfs.opath import PathFile
from kvmbox.sentry.vfs.path import Location, join

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from kvmbox.sentry.files import FileDescription
    from kvmbox.sentry.task import Task

Args = tuple[int, int, int, int, int, int]

VALID_OPEN_FLAGS = (O_ACCMODE | O_CREAT | O_EXCL | O_NOCTTY | O_TRUNC | O_APPEND | O_NONBLOCK |
                    O_DSYNC | FASYNC | O_DIRECT | O_LARGEFILE | O_DIRECTORY | O_NOFOLLOW |
                    O_NOATIME | O_CLOEXEC | O_PATH | O_TMPFILE_BIT | O_SYNC)
O_PATH_FLAGS = O_DIRECTORY | O_NOFOLLOW | O_PATH | O_CLOEXEC
# Flags open(2) does not keep in the description (F_GETFL never shows them).
NOT_KEPT = O_CREAT | O_EXCL | O_NOCTTY | O_TRUNC | O_CLOEXEC

RESOLVE_NO_XDEV, RESOLVE_NO_MAGICLINKS, RESOLVE_NO_SYMLINKS = 0x01, 0x02, 0x04
RESOLVE_BENEATH, RESOLVE_IN_ROOT, RESOLVE_CACHED = 0x08, 0x10, 0x20
RESOLVE_ALL = 0x3F
OPEN_HOW = struct.Struct("<QQQ")


def nofile_limit(t: "Task") -> int:
    """RLIMIT_NOFILE's soft limit: new descriptors must be below it."""
    return min(t.rlimits[RLIMIT_NOFILE][0], NR_OPEN)


def install(t: "Task", f: "FileDescription", cloexec: bool) -> int:
    """Give `f` the lowest free descriptor (EMFILE), releasing it if none is left."""
    try:
        return t.fds.alloc(f, cloexec=cloexec, limit=nofile_limit(t))
    except SyscallError:
        f.release()
        raise


def install_pair(t: "Task", a: "FileDescription", b: "FileDescription", cloexec: bool,
                 addr: int) -> None:
    """pipe2/socketpair: give `a` and `b` the lowest free descriptors and store the two
    ints at guest `addr`; on any failure neither number stays open."""
    try:
        fa = install(t, a, cloexec)
    except SyscallError:
        b.release()
        raise
    try:
        fb = install(t, b, cloexec)
    except SyscallError:
        t.fds.close(fa)
        raise
    try:
        t.mm.copy_out(addr, struct.pack("<ii", fa, fb))
    except SyscallError:
        t.fds.close(fa)
        t.fds.close(fb)
        raise


def _check_room(t: "Task") -> None:
    """EMFILE before any path work, as Linux reserves the descriptor first."""
    limit = nofile_limit(t)
    if len(t.fds) >= limit:
        fd = 0
        while True:
            try:
                t.fds.get(fd)
            except SyscallError:
                break
            fd += 1
        if fd >= limit:
            raise SyscallError(errno.EMFILE)


def _create(t: "Task", parent: Location, name: str, mode: int) -> Location:
    """O_CREAT of a missing name: EROFS, then write+search permission on the directory."""
    perm.check_writable(parent)
    perm.check_access(parent.node.attr(), t.creds, perm.MAY_WRITE | perm.MAY_EXEC)
    c = t.creds
    node = parent.node.create(name, mode & 0o7777 & ~t.fs.umask, c.euid, _new_gid(t, parent))
    return t.kernel.vfs.child(parent, name, node)


def _new_gid(t: "Task", parent: Location) -> int:
    """A new object's group: the directory's when it is set-group-ID, else the egid."""
    a = parent.node.attr()
    return a.gid if a.mode & S.S_ISGID else t.creds.egid


def lookup_create(t: "Task", start: Location, path: str, flags: int, mode: int,
                  rules=None) -> tuple[Location, bool]:
    """(Location, created) for an O_CREAT open of `path` from `start`: one walk whose
    create hook makes a missing last component (also the target of a dangling
    symlink, as Linux does); O_EXCL follows no final symlink and wants a new file."""
    made: list[Location] = []

    def create(parent: Location, name: str) -> Location:
        made.append(_create(t, parent, name, mode))
        return made[-1]

    loc = t.kernel.vfs.resolve(start, path, follow=not flags & (O_NOFOLLOW | O_EXCL),
                               root=t.fs.root, creds=t.creds, rules=rules, create=create)
    if not made:
        # Linux's order: a name with a trailing "/" is EISDIR, then O_EXCL's EEXIST,
        # then EISDIR for ".", ".." and "/" (and for any directory, in do_open).
        last = path.rstrip("/").rpartition("/")[2]
        dots = last in ("", ".", "..")
        if path.endswith("/") and not dots:
            raise SyscallError(errno.EISDIR)
        if flags & O_EXCL:
            raise SyscallError(errno.EEXIST)
        if dots:
            raise SyscallError(errno.EISDIR)
    return loc, bool(made)


def may_open(t: "Task", loc: Location, flags: int) -> None:
    """Linux's may_open: the object's kind against the access asked, EROFS, then DAC."""
    node = loc.node
    m = node.mode
    acc = flags & O_ACCMODE
    want = 0
    if acc != O_WRONLY:                      # O_RDONLY, O_RDWR and 3 ask for reading
        want |= perm.MAY_READ
    if acc != O_RDONLY or flags & O_TRUNC:   # O_WRONLY, O_RDWR and 3 ask for writing
        want |= perm.MAY_WRITE
    if S.S_ISLNK(m):
        raise SyscallError(errno.ELOOP)
    if S.S_ISDIR(m) and want & perm.MAY_WRITE:
        raise SyscallError(errno.EISDIR)
    if want & perm.MAY_WRITE and (S.S_ISREG(m) or S.S_ISDIR(m)):
        perm.check_writable(loc)
    perm.check_access(node.attr(), t.creds, want)
    if want & perm.MAY_WRITE and S.S_ISREG(m) and t.kernel.is_executing(node):
        raise SyscallError(errno.ETXTBSY)     # a running program's image cannot be written


def check_flags(flags: int) -> None:
    """Linux's build_open_flags: O_DIRECTORY with O_CREAT is EINVAL (it once made regular
    files), and O_TMPFILE needs O_DIRECTORY and an access mode that writes."""
    if flags & (O_DIRECTORY | O_CREAT) == O_DIRECTORY | O_CREAT:
        raise SyscallError(errno.EINVAL)
    if flags & O_TMPFILE_BIT and (not flags & O_DIRECTORY or flags & O_ACCMODE == O_RDONLY):
        raise SyscallError(errno.EINVAL)


def open_tmpfile(t: "Task", dirloc: Location, flags: int, mode: int) -> "FileDescription":
    """O_TMPFILE: an unnamed regular file in the directory `dirloc` (Linux's do_tmpfile):
    EROFS, then write and search permission on the directory, then EOPNOTSUPP where the file
    system cannot make one.  It has no name (nlink 0) until linkat gives it one, which
    O_EXCL forbids; never linked, it goes with its last open description."""
    if not dirloc.node.is_dir():
        raise SyscallError(errno.ENOTDIR)
    perm.check_writable(dirloc)
    perm.check_access(dirloc.node.attr(), t.creds, perm.MAY_WRITE | perm.MAY_EXEC)
    node = dirloc.node.tmpfile(mode & 0o7777 & ~t.fs.umask, t.creds.euid, _new_gid(t, dirloc),
                               linkable=not flags & O_EXCL)   # EOPNOTSUPP but on tmpfs/overlay
    loc = Location(dirloc.mount, node, join(dirloc.path, f"#{node.ino}"))
    return node.open(flags & ~O_TRUNC, loc)


def do_open(t: "Task", dirfd: int, path: str, flags: int, mode: int,
            resolve_flags: int = 0) -> int:
    """open(2) of guest `path` relative to `dirfd`; returns the new descriptor."""
    if flags & O_PATH:
        flags &= O_PATH_FLAGS
    check_flags(flags)
    _check_room(t)
    if not path:
        raise SyscallError(errno.ENOENT)
    if flags & O_TMPFILE_BIT:
        if resolve_flags:
            from kvmbox.sentry.syscalls.resolve2 import resolve_restricted
            dirloc, _ = resolve_restricted(t, dirfd, path, flags, mode, resolve_flags)
        else:
            dirloc = at.resolve(t, dirfd, path, follow=not flags & O_NOFOLLOW)
        f = open_tmpfile(t, dirloc, flags, mode)
        f.flags = (flags & ~NOT_KEPT) | O_LARGEFILE
        return install(t, f, bool(flags & O_CLOEXEC))
    created = False
    if resolve_flags:
        from kvmbox.sentry.syscalls.resolve2 import resolve_restricted
        loc, created = resolve_restricted(t, dirfd, path, flags, mode, resolve_flags)
    elif flags & O_CREAT and not flags & O_PATH:
        start = t.fs.root if path[0] == "/" else at.dir_of(t, dirfd)
        loc, created = lookup_create(t, start, path, flags, mode)
    else:
        loc = at.resolve(t, dirfd, path, follow=not flags & O_NOFOLLOW)
    node = loc.node
    if flags & O_PATH:
        if flags & O_DIRECTORY and not node.is_dir():
            raise SyscallError(errno.ENOTDIR)
        f: FileDescription = PathFile(loc, flags & ~(O_CLOEXEC | O_NOFOLLOW))
        return install(t, f, bool(flags & O_CLOEXEC))
    if flags & O_CREAT and node.is_dir():
        raise SyscallError(errno.EISDIR)
    if flags & O_DIRECTORY and not node.is_dir():
        raise SyscallError(errno.ENOTDIR)
    if not created:
        may_open(t, loc, flags)
    elif flags & O_ACCMODE == O_ACCMODE:
        raise SyscallError(errno.EACCES)     # a new file opened with access mode 3
    open_flags = flags
    if not S.S_ISREG(node.mode):
        open_flags &= ~O_TRUNC
    f = node.open(open_flags, loc)
    f.flags = (flags & ~NOT_KEPT) | O_LARGEFILE
    _wait_open(t, f)
    return install(t, f, bool(flags & O_CLOEXEC))


def _wait_open(t: "Task", f: "FileDescription") -> None:
    """A blocking FIFO open waits for its peer (ERESTARTSYS when a signal comes first)."""
    wait_for = getattr(f, "open_wait", None)
    ready = wait_for() if wait_for is not None else None
    if ready is None:
        return
    from kvmbox.sentry.signals.deliver import ERESTARTSYS
    from kvmbox.sentry.waiter import block
    try:
        block(t, ready, sources=[f], interrupt=ERESTARTSYS)
    except BaseException:
        f.release()
        raise


def open(t: "Task", a: Args) -> int:  # noqa: A001 - the syscall's name
    """Implements Linux syscall open(2)."""
    path, flags, mode = at.read_path(t, a[0]), s32(a[1]), u32(a[2])
    return do_open(t, at.AT_FDCWD, path, flags & VALID_OPEN_FLAGS, mode)


def openat(t: "Task", a: Args) -> int:
    """Implements Linux syscall openat(2)."""
    dirfd, path, flags, mode = s32(a[0]), at.read_path(t, a[1]), s32(a[2]), u32(a[3])
    return do_open(t, dirfd, path, flags & VALID_OPEN_FLAGS, mode)


def creat(t: "Task", a: Args) -> int:
    """Implements Linux syscall creat(2)."""
    path, mode = at.read_path(t, a[0]), u32(a[1])
    return do_open(t, at.AT_FDCWD, path, O_CREAT | O_WRONLY | O_TRUNC, mode)


def openat2(t: "Task", a: Args) -> int:
    """Implements Linux syscall openat2(2)."""
    dirfd, path_addr, how_addr, size = s32(a[0]), a[1], a[2], a[3]
    if size < OPEN_HOW.size:
        raise SyscallError(errno.EINVAL)
    if size > 4096:
        raise SyscallError(errno.E2BIG)
    raw = t.mm.copy_in(how_addr, size)
    if any(raw[OPEN_HOW.size:]):
        raise SyscallError(errno.E2BIG)
    flags, mode, resolve = OPEN_HOW.unpack_from(raw)
    if flags & ~VALID_OPEN_FLAGS or resolve & ~RESOLVE_ALL:
        raise SyscallError(errno.EINVAL)
    if flags & (O_CREAT | O_TMPFILE_BIT):
        if mode & ~0o7777:
            raise SyscallError(errno.EINVAL)
    elif mode:
        raise SyscallError(errno.EINVAL)
    if flags & O_PATH and flags & ~O_PATH_FLAGS:
        raise SyscallError(errno.EINVAL)
    if resolve & RESOLVE_BENEATH and resolve & RESOLVE_IN_ROOT:
        raise SyscallError(errno.EINVAL)
    if resolve & RESOLVE_CACHED and flags & (O_CREAT | O_TRUNC | O_TMPFILE_BIT):
        raise SyscallError(errno.EAGAIN)
    path = at.read_path(t, path_addr)
    return do_open(t, dirfd, path, flags, mode, resolve & ~RESOLVE_CACHED)


_TMPFILE_NOTE = "O_TMPFILE on tmpfs and the root overlay; EOPNOTSUPP elsewhere (host mounts, /dev, /proc)"
ENTRIES = (
    Entry("open", open, PARTIAL, _TMPFILE_NOTE),
    Entry("openat", openat, PARTIAL, _TMPFILE_NOTE),
    Entry("openat2", openat2, PARTIAL, "RESOLVE_* honoured; RESOLVE_CACHED always satisfied; "
          + _TMPFILE_NOTE),
    Entry("creat", creat, SUPPORTED),
)
