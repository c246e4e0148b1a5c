"""Starting a program: find the executable in the sandbox's VFS, check it as execve does, load it.

The executable is resolved from the task's working directory, its PT_INTERP
interpreter from the task's root (symlinks followed, never a host path); both
are read through their VFS open files and mapped MAP_PRIVATE from them, so
/proc/self/maps names them as Linux does.  Failures are one line: ENOENT ->
ProgramNotFound (exit 127), everything else -> CannotExecute (exit 126).

A file starting with "#!" is a script, run as Linux's binfmt_script does: the
interpreter named on its first line (resolved from the working directory,
inside the root) runs with argv [interpreter, optional-arg, script-path,
argv[1:]...]; an interpreter may itself be a script, five levels deep at most.
"""
from __future__ import annotations

import errno
import os
import stat as S
import struct

from kvmbox.errors import CannotExecute, ProgramNotFound, SyscallError
from kvmbox.mm.mapfile import MappedFile
from kvmbox.record import record
from kvmbox.sentry import hwcap
from kvmbox.sentry.loader import ElfFile, load_elf, read_executable
from kvmbox.sentry.vfs import perm

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from kvmbox.sentry.vfs.path import FsContext, Location, MountTable

SCRIPT_HEAD = 256          # BINPRM_BUF_SIZE: how much of a file binfmt_script looks at
SCRIPT_DEPTH = 5           # exec_binprm(): more interpreter rewrites than this give ELOOP
_MESSAGES = {errno.EACCES: "permission denied", errno.ELOOP: "too many levels of symbolic links",
             errno.ENAMETOOLONG: "file name too long", errno.ENOEXEC: "exec format error"}


@record(frozen=True)
class StartedImage:
    entry: int
    initial_sp: int
    exe_path: str           # canonical guest path of the executable, for /proc/self/exe
    auxv: bytes = b""       # the auxiliary vector as the stack holds it (/proc/self/auxv)
    argv: tuple[str, ...] = ()   # the argv the program got (a script's interpreter line prepended)
    exe_node: object = None      # the executable's VFS node (None when loaded from a host path)


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
        raise CannotExecute(f"{what}: {_reason(e.errno)}", err=e.errno) from None
    if S.S_ISDIR(attr.mode):
        raise CannotExecute(f"{what}: is a directory", err=errno.EACCES)
    if not S.S_ISREG(attr.mode):
        raise CannotExecute(f"{what}: not a regular file", err=errno.EACCES)
    if not perm.may_access(attr, creds, perm.MAY_EXEC):
        raise CannotExecute(f"{what}: permission denied", err=errno.EACCES)
    try:
        f = loc.node.open(os.O_RDONLY, loc)
    except SyscallError as e:
        raise CannotExecute(f"{what}: {_reason(e.errno)}", err=e.errno) from None
    opened.append(f)

    def pread(offset: int, n: int) -> bytes:
        try:
            return f.pread(n, offset)
        except (SyscallError, OSError) as e:
            raise CannotExecute(f"{what}: read error: {_reason(getattr(e, 'errno', 0) or errno.EIO)}",
                                err=errno.EIO) from None

    try:
        mapping: MappedFile | None = MappedFile(f.mmap_source(), loc.path, attr.dev, attr.ino,
                                                may_write=False)
    except SyscallError:
        mapping = None                       # not mappable: the loader copies the bytes
    return loc, ElfFile(attr.size, pread, mapping)


def parse_shebang(head: bytes) -> tuple[bytes, bytes | None] | None:
    """(interpreter, optional argument) of a "#!" line, parsed as fs/binfmt_script.c does.

    `head` is the file's start; like the kernel's buffer it is taken as SCRIPT_HEAD
    bytes, NUL-padded.  None when it is not a script; SyscallError(ENOEXEC) when
    the line names no interpreter or the name may be cut off by the buffer's end.
    """
    if head[:2] != b"#!":
        return None
    buf = head[:SCRIPT_HEAD].ljust(SCRIPT_HEAD, b"\0")
    buf_end = SCRIPT_HEAD - 1                 # the kernel's last usable position

    def non_spacetab(i: int, end: int) -> int | None:
        while i < end:
            if buf[i] not in (0x20, 0x09):
                return i
            i += 1
        return None

    def terminator(i: int, end: int) -> int | None:
        while i < end:
            if buf[i] in (0x20, 0x09, 0):
                return i
            i += 1
        return None

    i_end = buf.find(b"\n")
    if i_end < 0:
        first = non_spacetab(2, buf_end)
        if first is None or terminator(first, buf_end) is None:
            raise SyscallError(errno.ENOEXEC)     # all blank, or the name may be truncated
        i_end = buf_end
    while buf[i_end - 1] in (0x20, 0x09):
        i_end -= 1
    i_name = non_spacetab(2, i_end)
    if i_name is None:
        raise SyscallError(errno.ENOEXEC)
    i_sep = terminator(i_name, i_end)
    i_arg = non_spacetab(i_sep, i_end) if i_sep is not None and buf[i_sep] != 0 else None
    name = buf[i_name:i_end if i_sep is None else i_sep]
    arg = buf[i_arg:i_end].split(b"\0", 1)[0] if i_arg is not None else None
    return name, arg


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
        exe_node = None
        if vfs is None:
            data: ElfFile | bytes = read_executable(path)
            exe = os.path.abspath(path)
            open_interp = None
        else:
            root = fs.root if fs is not None else vfs.root()
            cwd = fs.cwd if fs is not None else root
            loc, data, argv = _open_script_chain(vfs, cwd, root, path, argv, creds, opened)
            exe, exe_node = loc.path, loc.node

            def open_interp(interp: str) -> ElfFile:
                # As binfmt_elf's open_exec: from the caller's cwd; an empty path names the
                # cwd itself (a directory, so EACCES).
                return open_executable(vfs, cwd, root, interp or ".", creds,
                                       f"{path}: interpreter {interp or repr(interp)}", opened)[1]
        image = load_elf(data, mm, argv=[os.fsencode(a) for a in argv],
                         envp=[os.fsencode(e) for e in envp], execfn=os.fsencode(path),
                         hwcap=cap, hwcap2=cap2, random_bytes=os.urandom(16), uid=creds.uid,
                         euid=creds.euid, gid=creds.gid, egid=creds.egid, vdso_base=vdso_base,
                         open_interp=open_interp)
    finally:
        for f in opened:
            f.release()
    return StartedImage(image.entry, image.initial_sp, exe, pack_auxv(image.auxv), tuple(argv),
                        exe_node)


def _open_script_chain(vfs: "MountTable", cwd: "Location", root: "Location", path: str,
                       argv: list[str], creds, opened: list) -> tuple["Location", ElfFile, list[str]]:
    """Open `path`, following "#!" interpreters; the final binary, its ElfFile and argv."""
    what, name = path, path
    for _depth in range(SCRIPT_DEPTH + 1):
        # A missing interpreter is ENOENT from execve, so exit status 127 as for the program.
        loc, data = open_executable(vfs, cwd, root, name, creds, what, opened)
        try:
            line = parse_shebang(data.pread(0, SCRIPT_HEAD))
        except SyscallError as e:
            raise CannotExecute(f"{what}: bad interpreter line: {_reason(e.errno)}") from None
        if line is None:
            return loc, data, argv
        interp, arg = (os.fsdecode(x) if x is not None else None for x in line)
        # binfmt_script: argv[0] gives way to the interpreter (and its one argument),
        # then the script as it was named, then the rest.
        argv = [interp, *([arg] if arg is not None else []), name, *argv[1:]]
        what, name = f"{path}: interpreter {interp}", interp
    raise CannotExecute(f"{path}: {_reason(errno.ELOOP)} (interpreters nested too deeply)",
                        err=errno.ELOOP)
