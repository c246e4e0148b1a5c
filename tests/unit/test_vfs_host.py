"""Host passthrough: reads and writes beneath the mount root, and no way out of it.

Symlinks inside the host directory are resolved by the Sentry inside the
sandbox's root; a directory swapped for a symlink between the Sentry's lookup
and the host open gives ELOOP/ENOENT, never the outside file.
"""
from __future__ import annotations

import errno
import os
import stat as S

import pytest

from kvmbox.errors import KvmboxError, SyscallError
from kvmbox.sentry.fsimpl import hostcalls
from kvmbox.sentry.fsimpl.host import HostFilesystem
from kvmbox.sentry.vfs import perm
from kvmbox.sentry.vfs.path import MountTable
from kvmbox.sentry.vfs.node import DT_DIR, DT_LNK, DT_REG, RENAME_EXCHANGE


def err(fn, *a, **k) -> int:
    with pytest.raises(SyscallError) as e:
        fn(*a, **k)
    return e.value.errno


def read_all(table, path: str) -> bytes:
    loc = table.resolve(table.root(), path)
    f = loc.node.open(os.O_RDONLY, loc)
    try:
        return f.read(1 << 20)
    finally:
        f.release()


@pytest.fixture
def host(tmp_path):
    """tmp/outside/secret (never reachable) and tmp/root: the mounted directory."""
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret").write_bytes(b"SECRET")
    root = tmp_path / "root"
    root.mkdir()
    (root / "d").mkdir()
    (root / "d" / "f").write_bytes(b"inside f")
    (root / "secret").write_bytes(b"decoy")
    os.symlink("/secret", root / "abs")                    # absolute: the sandbox's /secret
    os.symlink("../../outside/secret", root / "d" / "up")  # climbs: stops at the root
    os.symlink(str(tmp_path / "outside" / "secret"), root / "hostabs")
    os.symlink("/etc/passwd", root / "etc")
    return tmp_path


@pytest.mark.parametrize("use_openat2", [True, False] if hostcalls.HAVE_OPENAT2 else [False])
def test_read_and_symlinks_stay_inside(host, use_openat2, monkeypatch):
    monkeypatch.setattr(hostcalls, "HAVE_OPENAT2", use_openat2)
    monkeypatch.setattr(hostcalls.open_beneath, "__kwdefaults__", {"use_openat2": use_openat2})
    fs = HostFilesystem(7, str(host / "root"))
    t = MountTable(fs, readonly=True)
    assert read_all(t, "/d/f") == b"inside f"
    assert read_all(t, "/abs") == b"decoy"
    assert err(read_all, t, "/d/up") == errno.ENOENT       # ../../outside stops at the root
    assert err(read_all, t, "/hostabs") == errno.ENOENT
    assert err(read_all, t, "/etc") == errno.ELOOP          # /etc is this very link
    assert err(read_all, t, "/../outside/secret") == errno.ENOENT
    fs.close()


def test_attr_entries_identity(host):
    fs = HostFilesystem(7, str(host / "root"))
    t = MountTable(fs, readonly=True)
    loc = t.resolve(t.root(), "/d/f")
    st = os.stat(host / "root" / "d" / "f")
    a = loc.node.attr()
    assert (a.dev, a.ino, a.size, a.mode) == (7, st.st_ino, 8, st.st_mode)
    assert t.resolve(t.root(), "/d/f").node is loc.node          # stable identity
    ents = {n: (i, d) for n, i, d in fs.root.entries()}
    assert ents["d"][1] == DT_DIR and ents["abs"][1] == DT_LNK and ents["secret"][1] == DT_REG
    assert ents["secret"][0] == os.stat(host / "root" / "secret").st_ino
    assert t.resolve(t.root(), "/abs", follow=False).node.readlink() == "/secret"
    f = loc.node.open(os.O_RDONLY, loc)
    assert f.pread(4, 2) == b"side" and f.attr().ino == st.st_ino
    src = f.mmap_source()
    f.release()
    assert src.fill(0, 100) == b"inside f" and src.shared_backing() is None   # outlives close
    fs.close()


def test_readonly_refuses_writes(host):
    fs = HostFilesystem(7, str(host / "root"))
    t = MountTable(fs)
    loc = t.resolve(t.root(), "/d/f")
    assert err(perm.check_writable, loc) == errno.EROFS
    assert err(loc.node.open, os.O_WRONLY, loc) == errno.EROFS
    assert err(loc.node.open, os.O_RDONLY | os.O_TRUNC, loc) == errno.EROFS
    assert err(fs.root.create, "n", 0o644, 0, 0) == errno.EROFS
    assert err(fs.root.unlink, "secret") == errno.EROFS
    assert err(loc.node.setattr, mode=0o777) == errno.EROFS
    assert err(fs.root.lookup("d").open, os.O_RDWR, None) == errno.EISDIR
    assert (host / "root" / "d" / "f").read_bytes() == b"inside f"
    fs.close()


def test_readwrite_mount(host):
    fs = HostFilesystem(7, str(host / "root"), readonly=False)
    r = fs.root
    n = r.create("new", 0o640, 0, 0)
    f = n.open(os.O_RDWR, None)
    f.write(b"written")
    f.release()
    p = host / "root" / "new"
    assert p.read_bytes() == b"written" and S.S_IMODE(p.stat().st_mode) == 0o640
    assert err(r.create, "new", 0o644, 0, 0) == errno.EEXIST
    d = r.mkdir("sub", 0o750, 0, 0)
    assert S.S_IMODE((host / "root" / "sub").stat().st_mode) == 0o750
    r.rename("new", d, "moved")
    assert (host / "root" / "sub" / "moved").read_bytes() == b"written"
    assert d.lookup("moved") is n and n.relpath == "sub/moved"
    d.link("hard", n)
    assert n.attr().nlink == 2
    r.symlink("sl", "/anything", 0, 0)
    assert os.readlink(host / "root" / "sl") == "/anything"
    n.setattr(size=3, mode=0o600, mtime_ns=10**18)
    st = (host / "root" / "sub" / "moved").stat()
    assert (st.st_size, S.S_IMODE(st.st_mode), st.st_mtime_ns) == (3, 0o600, 10**18)
    r.mknod("fifo", S.S_IFIFO | 0o600, 0, 0, 0)
    assert S.S_ISFIFO((host / "root" / "fifo").lstat().st_mode)
    assert err(r.lookup("fifo").open, os.O_RDONLY, None) == errno.ENXIO
    d.unlink("hard")
    assert err(r.rmdir, "sub") == errno.ENOTEMPTY
    d.unlink("moved")
    r.rmdir("sub")
    assert not (host / "root" / "sub").exists()
    r.create("x", 0o644, 0, 0)
    r.create("y", 0o644, 0, 0)
    r.rename("x", r, "y", RENAME_EXCHANGE)
    assert (host / "outside" / "secret").read_bytes() == b"SECRET"
    fs.close()


def test_swap_dir_for_symlink_race(host):
    """The Sentry looks up /d/f, then the host swaps d for a symlink to the outside."""
    fs = HostFilesystem(7, str(host / "root"), readonly=False)
    t = MountTable(fs)
    loc = t.resolve(t.root(), "/d/f")
    dnode = t.resolve(t.root(), "/d").node
    os.rename(host / "root" / "d", host / "root" / "d.old")
    os.symlink(str(host / "outside"), host / "root" / "d")
    (host / "outside" / "f").write_bytes(b"OUTSIDE f")
    assert err(loc.node.open, os.O_RDONLY, loc) in (errno.ELOOP, errno.ENOENT)
    assert err(loc.node.attr) in (errno.ELOOP, errno.ENOENT)
    assert err(dnode.lookup, "secret") in (errno.ELOOP, errno.ENOENT, errno.ENOTDIR)
    assert err(dnode.entries) in (errno.ELOOP, errno.ENOENT, errno.ENOTDIR)
    assert err(dnode.create, "planted", 0o644, 0, 0) in (errno.ELOOP, errno.ENOENT)
    assert err(loc.node.setattr, mode=0o777) in (errno.ELOOP, errno.ENOENT)
    assert not (host / "outside" / "planted").exists()
    assert S.S_IMODE((host / "outside" / "f").stat().st_mode) != 0o777
    # a fresh walk sees the symlink and resolves it inside the sandbox
    assert err(t.resolve, t.root(), "/d/f") == errno.ENOENT
    fs.close()


def test_file_swapped_for_fifo_does_not_block(host):
    fs = HostFilesystem(7, str(host / "root"))
    t = MountTable(fs)
    loc = t.resolve(t.root(), "/secret")
    os.unlink(host / "root" / "secret")
    os.mkfifo(host / "root" / "secret")
    assert err(loc.node.open, os.O_RDONLY, loc) in (errno.ENXIO, errno.ENOENT)
    fs.close()


def test_missing_root(tmp_path):
    with pytest.raises(KvmboxError):
        HostFilesystem(7, str(tmp_path / "nope"))
