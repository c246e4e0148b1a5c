"""load_program through the VFS: executables and PT_INTERP interpreters found in the sandbox's
mount table (never at host paths), mapped MAP_PRIVATE from their files, with Linux's auxv."""
from __future__ import annotations

import os
import shutil
import struct
from pathlib import Path

import pytest

from kvmbox.abi import auxv as at
from kvmbox.errors import CannotExecute, ProgramNotFound
from kvmbox.guest_stub import layout as L
from kvmbox.sentry.fsimpl.host import HostFilesystem
from kvmbox.sentry.fsimpl.tmpfs import Tmpfs
from kvmbox.sentry.program import load_program
from kvmbox.sentry.vfs.path import FsContext, MountTable

from .test_mm import make

TRUE = Path("/bin/true").resolve()


@pytest.fixture
def mm():
    m = make(256 << 20)
    yield m
    m.release()
    m.memfile.close()


def host_root() -> MountTable:
    return MountTable(HostFilesystem(1, "/"), readonly=True, source="/")


def auxv(image) -> dict[int, int]:
    words = struct.unpack(f"<{len(image.auxv) // 8}Q", image.auxv)
    return dict(zip(words[0::2], words[1::2]))


def load(mm, path: str, vfs: MountTable, cwd: str = "/"):
    root = vfs.root()
    fs = FsContext(root, vfs.resolve(root, cwd, root=root))
    return load_program(path, mm, argv=[path], envp=[], vfs=vfs, fs=fs)


def test_dynamic_program_gets_its_interpreter(mm):
    if not TRUE.exists():
        pytest.skip("no /bin/true")
    image = load(mm, "/bin/true", host_root())
    av = auxv(image)
    base = av[at.AT_BASE]
    assert base and base < L.MMAP_BASE and image.entry > base
    maps = {(v.path, v.offset) for v in mm.maps() if v.path}
    paths = {p for p, _ in maps}
    assert image.exe_path in paths                          # the program, mapped from its file
    assert any("ld-linux-x86-64.so.2" in p for p in paths)  # the interpreter, by its real path
    assert not any(p.startswith("/lib64/") for p in paths)  # the symlink was followed
    ld = next(v for v in mm.maps() if v.path and "ld-linux" in v.path and v.offset == 0)
    assert ld.start == base
    assert mm.copy_in(base, 4) == b"\x7fELF"
    assert av[at.AT_ENTRY] != image.entry and av[at.AT_PHDR] > L.ELF_ET_DYN_BASE - 1
    assert mm.copy_in(av[at.AT_PHDR], 4) == struct.pack("<I", 6)   # PT_PHDR comes first


def test_relative_path_from_cwd_and_canonical_exe(mm):
    image = load(mm, "./true", host_root(), cwd=str(TRUE.parent))
    assert image.exe_path == str(TRUE)


@pytest.mark.parametrize("path,err,words", [
    ("/no/such/prog", ProgramNotFound, "no such file"),
    ("/etc", CannotExecute, "is a directory"),
    ("/etc/passwd", CannotExecute, "permission denied"),   # no x bit (root too)
    ("/dev/null", CannotExecute, "not a regular file"),
])
def test_errors_are_one_line(mm, path, err, words):
    if not os.path.exists(path) and err is CannotExecute:
        pytest.skip(f"{path} missing on this host")
    with pytest.raises(err) as e:
        load(mm, path, host_root())
    assert str(e.value).startswith(path) and words in str(e.value) and "\n" not in str(e.value)
    assert mm.maps() == []


def test_interpreter_comes_from_the_sandbox_not_the_host(mm, tmp_path):
    """A root without /lib64: the interpreter is missing there even though the host has it."""
    if not TRUE.exists():
        pytest.skip("no /bin/true")
    shutil.copy(TRUE, tmp_path / "true")
    vfs = MountTable(HostFilesystem(1, str(tmp_path)), readonly=True, source=str(tmp_path))
    with pytest.raises(ProgramNotFound) as e:
        load(mm, "/true", vfs)
    assert str(e.value) == "/true: interpreter /lib64/ld-linux-x86-64.so.2: no such file or directory"


def test_static_program_from_tmpfs(mm):
    """An executable written into an in-memory file system loads from its page cache."""
    import helpers
    prog = helpers.PROGRAMS_BIN / "glibc" / "hello"
    if not prog.exists():
        pytest.skip("test programs not built")
    fs = Tmpfs(2, mm.memfile, mm.frames)
    vfs = MountTable(fs)
    node = fs.root.create("hello", 0o755, os.getuid(), os.getgid())
    f = node.open(os.O_WRONLY, vfs.root())
    f.write(prog.read_bytes())
    f.release()
    image = load(mm, "/hello", vfs)
    assert image.exe_path == "/hello" and auxv(image)[at.AT_BASE] == 0
    assert any(v.path == "/hello" for v in mm.maps())
    mm.release()
    fs.root.unlink("hello")
