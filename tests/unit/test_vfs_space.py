"""FsSpace: blocks and inode space of the in-memory file systems, charged and given back as a
tmpfs mounted with size= and nr_inodes= does (ENOSPC past either; statfs agrees)."""
from __future__ import annotations

import errno
import os

import pytest

from kvmbox.errors import SyscallError
from kvmbox.sentry.fsimpl.host import HostFilesystem
from kvmbox.sentry.fsimpl.overlay import OverlayFs
from kvmbox.sentry.fsimpl.tmpfs import Tmpfs
from kvmbox.sentry.vfs.space import BOGO_INODE_SIZE, FsSpace
from tests.unit.vfs_fixtures import mem  # noqa: F401

PAGE = 4096


@pytest.fixture
def fs(mem):
    mf, fa = mem
    return Tmpfs(1, mf, fa, space=FsSpace(16 * PAGE, 8, fa))


def err(fn, *args, **kw) -> int:
    with pytest.raises(SyscallError) as e:
        fn(*args, **kw)
    return e.value.errno


def free(fs) -> tuple[int, int]:
    st = fs.statfs()
    return st.bfree, st.ffree


def test_statfs_of_a_fresh_file_system(fs):
    st = fs.statfs()
    assert (st.blocks, st.bfree, st.bavail, st.files, st.ffree) == (16, 16, 16, 8, 7)  # the root is one
    assert fs.super_options() == "size=64k,nr_inodes=8"


def test_inodes_run_out_and_come_back(fs):
    for i in range(7):
        fs.root.create(f"f{i}", 0o644, 0, 0)
    assert free(fs) == (16, 0)
    assert err(fs.root.create, "x", 0o644, 0, 0) == errno.ENOSPC
    assert err(fs.root.mkdir, "d", 0o755, 0, 0) == errno.ENOSPC
    assert err(fs.root.symlink, "l", "t", 0, 0) == errno.ENOSPC
    assert err(fs.root.link, "h", fs.root.lookup("f0")) == errno.ENOSPC      # a link is an inode too
    assert "x" not in fs.root.children and "h" not in fs.root.children
    fs.root.unlink("f0")
    assert free(fs) == (16, 1)
    d = fs.root.mkdir("d", 0o755, 0, 0)
    fs.root.rmdir("d")
    fs.root.link("h", fs.root.lookup("f1"))
    assert free(fs) == (16, 0)
    fs.root.unlink("h")                                  # an extra link went: its inode is back
    assert free(fs) == (16, 1) and fs.root.lookup("f1").nlink == 1
    fs.root.rename("f2", fs.root, "f3")                  # the replaced file's inode is back
    assert free(fs) == (16, 2)
    assert d.nlink == 0


def test_blocks_run_out_short_write_then_enospc(fs):
    f = fs.root.create("f", 0o644, 0, 0)
    assert f.data.write(0, b"a" * (20 * PAGE)) == 16 * PAGE
    assert free(fs) == (0, 6)
    assert err(f.data.write, 16 * PAGE, b"b") == errno.ENOSPC
    assert f.data.write(5, b"over") == 4                  # pages it has need no room
    g = fs.root.create("g", 0o644, 0, 0)
    assert err(g.data.write, 0, b"x") == errno.ENOSPC
    assert err(g.data.allocate, 0, PAGE) == errno.ENOSPC
    f.set_size(PAGE + 1)
    assert free(fs) == (14, 5)
    assert err(g.data.allocate, 0, 15 * PAGE) == errno.ENOSPC   # all or nothing
    assert g.data.blocks == 0 and free(fs) == (14, 5)
    fs.root.unlink("f")
    assert free(fs) == (16, 6)


def test_an_open_file_keeps_its_space_until_closed(fs):
    f = fs.root.create("f", 0o644, 0, 0)
    fd = f.open(os.O_RDWR, None)
    fd.write(b"x" * (3 * PAGE))
    fs.root.unlink("f")
    assert free(fs) == (13, 6)
    fd.release()
    assert free(fs) == (16, 7)


def test_o_tmpfile_is_charged_while_open(fs):
    t = fs.root.tmpfile(0o600, 0, 0, linkable=True)
    fd = t.open(os.O_RDWR, None)
    fd.write(b"y" * PAGE)
    assert free(fs) == (15, 6)
    fs.root.link("named", t)                             # its first name costs nothing more
    assert free(fs) == (15, 6)
    fd.release()
    fs.root.unlink("named")
    assert free(fs) == (16, 7)


def test_long_symlink_targets_take_a_page(fs):
    fs.root.symlink("short", "s" * 128, 0, 0)
    assert free(fs) == (16, 6)
    target = "/" + "t" * 3000
    fs.root.symlink("long", target, 0, 0)
    assert free(fs) == (15, 5)
    long = fs.root.lookup("long")
    assert long.readlink() == target and long.attr().size == 3001
    fs.root.unlink("long")
    assert free(fs) == (16, 6)
    fs.space.max_pages = 0
    assert err(fs.root.symlink, "l2", target, 0, 0) == errno.ENOSPC
    assert "l2" not in fs.root.children and free(fs) == (0, 6)


def test_pages_a_shared_mapping_filled_are_counted_at_close(fs, mem):
    mf, fa = mem
    f = fs.root.create("f", 0o644, 0, 0)
    fd = f.open(os.O_RDWR, None)
    b = f.data.backing
    b.refs += 1                                          # a MAP_SHARED Vma, as the mm holds it
    for phys, n in fa.alloc(2):                          # what a fault on the mapping adds
        b.add(0, phys, n)
    fd.release()
    assert free(fs)[0] == 14
    fs.root.unlink("f")                                  # gone from the file system: space back
    assert free(fs) == (16, 7)
    b.refs -= 1
    for _, phys, n in b.take(0, 1 << 20):                # the mapping goes last
        fa.free(phys, n)


def test_statfs_free_blocks_never_exceed_the_frame_pool(mem):
    mf, fa = mem
    fs = Tmpfs(1, mf, fa, space=FsSpace(1 << 40, 100, fa))
    assert fs.statfs().bfree == fa.free_pages
    assert FsSpace.for_memory(256 << 20, fa).statfs(0).files == (256 << 20) // 8192


def test_a_failed_copy_up_leaves_nothing_half_copied(mem, tmp_path):
    mf, fa = mem
    (tmp_path / "big").write_bytes(b"z" * (8 * PAGE))
    (tmp_path / "small").write_bytes(b"s")
    upper = Tmpfs(2, mf, fa, space=FsSpace(4 * PAGE, 64, fa))
    host = HostFilesystem(3, str(tmp_path))
    try:
        ov = OverlayFs(4, host, upper)
        big = ov.root.lookup("big")
        assert err(big.setattr, mode=0o600) == errno.ENOSPC
        assert "big" not in upper.root.children
        assert big.attr().mode & 0o777 == 0o644 and big.upper is None
        ov.root.lookup("small").setattr(mode=0o600)
        assert upper.root.lookup("small").data.read(0, 10) == b"s"
        assert upper.space.ispace == 2 * BOGO_INODE_SIZE  # the root and small; nothing of big
    finally:
        host.close()
