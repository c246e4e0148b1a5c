"""Starting a program: find the executable in the sandbox's VFS, check it as execve does, load it.

The executable is resolved from the task's working directory, its PT_INTERP
interpreter from the task's root (symlinks followed, never a host path); both
are read through their VFS open files and mapped MAP_PRIVATE from them, so
/proc/self/maps names them as Linux does.  Failures are one line: ENOENT ->
ProgramNotFound (exit 127), everything else -> CannotExecute (exit 126).
"""
from __future__ import annotations

import errno
import os
import stat as S
import struct
from dataclasses import dataclass

from kvmbox.errors import CannotExecute, ProgramNotFound, SyscallError
from kvmbox.mm.mapfile import MappedFile
from kvmbox.sentry import hwcap
from kvmbox.sentry.loader import ElfFile, load_elf, read_executable
from kvmbox.sentry.vfs import perm

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from kvmbox.sentry.vfs.path import FsContext, Location, MountTable

_MESSAGES = {errno.EACCES: "permission denied", errno.ELOOP: "too many levels of symbolic links",
             errno.ENAMETOOLONG: "file name too long", errno.ENOEXEC: "exec format error"}


@dataclass(frozen=True)
class StartedImage:
    entry: int
    initial_sp: int
    exe_path: str           # canonical guest path of the executable, for /proc/self/exe
    auxv: bytes = b""       # the auxiliary vector as the stack holds it (/proc/self/auxv)


def _reason(err: int) -> str:
    return _MESSAGES.get(err) or os.strerror(err).lower()


def open_executable(vfs: "MountTable", start: "Location", root: "Location", path: str,
                    creds, what: str, opened: list) -> tuple["Location", ElfFile]:
    """Resolve `path` (from `start`, inside `root`) to an executable regular file and open it.

    Returns its Location and an ElfFile reading (and mapping) it through the VFS;
    the open file is appended to `opened` for the caller to release once loaded
    (mappings keep their MapSource, which outlives the open file).
    """
    try:
        loc = vfs.resolve(start, path, follow=True, root=root)
        attr = loc.node.attr()
    except SyscallError as e:
        if e.errno in (errno.ENOENT, errno.ENOTDIR):
            raise ProgramNotFound(f"{what}: no such file or directory") from None
        raise CannotExecute(f"{what}: {_reason(e.errno)}") from None
    if S.S_ISDIR(attr.mode):
        raise CannotExecute(f"{what}: is a directory")
    if not S.S_ISREG(attr.mode):
        raise CannotExecute(f"{what}: not a regular file")
    if not perm.may_access(attr, creds, perm.MAY_EXEC):
        raise CannotExecute(f"{what}: permission denied")
    try:
        f = loc.node.open(os.O_RDONLY, loc)
    except SyscallError as e:
        raise CannotExecute(f"{what}: {_reason(e.errno)}") from None
    opened.append(f)

    def pread(offset: int, n: int) -> bytes:
        try:
            return f.pread(n, offset)
        except (SyscallError, OSError) as e:
            raise CannotExecute(f"{what}: read error: {_reason(getattr(e, 'errno', 0) or errno.EIO)}") from None

    try:
        mapping: MappedFile | None = MappedFile(f.mmap_source(), loc.path, attr.dev, attr.ino,
                                                may_write=False)
    except SyscallError:
        mapping = None                       # not mappable: the loader copies the bytes
    return loc, ElfFile(attr.size, pread, mapping)


def pack_auxv(auxv) -> bytes:
    """(key, value) pairs -> the bytes /proc/<pid>/auxv shows (AT_NULL included)."""
    flat = [x for pair in auxv for x in pair]
    return struct.pack(f"<{len(flat)}Q", *flat)


def load_program(path: str, mm, *, argv: list[str], envp: list[str], vdso_base: int | None = None,
                 vfs: "MountTable | None" = None, fs: "FsContext | None" = None,
                 creds=None) -> StartedImage:
    """execve(2)'s work for the first program of a run; raises ProgramNotFound / CannotExecute.

    `path` is a guest path resolved in `vfs` from fs.cwd (inside fs.root); without a
    vfs it is a host path (tools and tests that load a host file directly).
    """
    from kvmbox.sentry.task import Credentials

    creds = creds or Credentials()
    cap, cap2 = hwcap.hwcaps()
    opened: list = []
    try:
        if vfs is None:
            data: ElfFile | bytes = read_executable(path)
            exe = os.path.abspath(path)
            open_interp = None
        else:
            root = fs.root if fs is not None else vfs.root()
            cwd = fs.cwd if fs is not None else root
            loc, data = open_executable(vfs, cwd, root, path, creds, path, opened)
            exe = loc.path

            def open_interp(interp: str) -> ElfFile:
                return open_executable(vfs, root, root, interp, creds,
                                       f"{path}: interpreter {interp}", opened)[1]
        image = load_elf(data, mm, argv=[os.fsencode(a) for a in argv],
                         envp=[os.fsencode(e) for e in envp], execfn=os.fsencode(path),
                         hwcap=cap, hwcap2=cap2, random_bytes=os.urandom(16), uid=creds.uid,
                         euid=creds.euid, gid=creds.gid, egid=creds.egid, vdso_base=vdso_base,
                         open_interp=open_interp)
    finally:
        for f in opened:
            f.release()
    return StartedImage(image.entry, image.initial_sp, exe, pack_auxv(image.auxv))
