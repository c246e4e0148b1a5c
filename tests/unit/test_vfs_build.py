"""build_mounts: the sandbox's mount table from FsOptions (rootfs overlay, /proc, /dev, /sys, /tmp,
user mounts) and one-line errors for bad options."""
from __future__ import annotations

import errno
import os
from types import SimpleNamespace

import pytest

from kvmbox.errors import KvmboxError, SyscallError
from kvmbox.sandbox import parse_mount
from kvmbox.sentry.vfs import perm
from kvmbox.sentry.vfs.build import FsOptions, MountSpec, build_mounts, close_mounts
from tests.unit.vfs_fixtures import mem  # noqa: F401


@pytest.fixture
def kernel(mem):
    mf, fa = mem
    return SimpleNamespace(platform=SimpleNamespace(memfile=mf, frames=fa), live_tasks=lambda: [],
                           visible_tasks=lambda: [], current_task=lambda: None, cpu_count=1)


@pytest.fixture
def rootfs(tmp_path):
    r = tmp_path / "rootfs"
    for d in ("etc", "proc/1", "sys/kernel", "dev", "tmp"):
        (r / d).mkdir(parents=True)
    (r / "etc" / "hostname").write_bytes(b"box\n")
    (r / "proc" / "1" / "environ").write_bytes(b"HOST SECRET")
    (r / "tmp" / "hostfile").write_bytes(b"host tmp")
    data = tmp_path / "data"
    data.mkdir()
    (data / "f").write_bytes(b"data f")
    return r, data


def names(t, path):
    return {n for n, _, _ in t.resolve(t.root(), path).node.entries()}


def test_layout(kernel, rootfs):
    r, data = rootfs
    t = build_mounts(kernel, FsOptions(rootfs=str(r), mounts=[
        MountSpec(str(data), "/mnt/ro"), MountSpec(str(data), "/tmp/rw", readonly=False)]))
    try:
        assert [(m.path, m.fs.fstype, m.readonly) for m in t.mounts()] == [
            ("/", "overlay", False), ("/proc", "proc", False), ("/dev", "devtmpfs", False),
            ("/dev/shm", "tmpfs", False), ("/sys", "tmpfs", True), ("/tmp", "tmpfs", False),
            ("/mnt/ro", "9p", True), ("/tmp/rw", "9p", False)]
        assert names(t, "/sys") == {"devices"}                # only the CPU files (sysfs.py)
        assert names(t, "/sys/devices/system/cpu") == {"online", "possible", "present"}
        assert "1" not in names(t, "/proc")                 # no live task, and no host /proc
        assert "hostfile" not in names(t, "/tmp")
        assert perm.is_readonly(t.resolve(t.root(), "/sys"))
        assert perm.is_readonly(t.resolve(t.root(), "/mnt/ro/f"))
        assert not perm.is_readonly(t.resolve(t.root(), "/tmp/rw/f"))
        assert not perm.is_readonly(t.resolve(t.root(), "/etc/hostname"))
        loc = t.resolve(t.root(), "/etc/hostname")
        f = loc.node.open(os.O_RDONLY, loc)
        assert f.read(100) == b"box\n"
        f.release()
        assert "mnt" in names(t, "/")                      # made in the overlay upper
        assert not (r / "mnt").exists()
        with pytest.raises(SyscallError) as e:
            t.resolve(t.root(), "/proc/1/environ/x")
        assert e.value.errno in (errno.ENOENT, errno.ENOTDIR)
    finally:
        close_mounts(t)


@pytest.mark.parametrize("opts", [
    FsOptions(rootfs="/nonexistent-dir"),
    FsOptions(mounts=[MountSpec("/nonexistent-dir", "/x")]),
    FsOptions(mounts=[MountSpec("/", "relative")]),
    FsOptions(mounts=[MountSpec("/", "/")]),
    FsOptions(mounts=[MountSpec("/", "/x", readonly=True, chown=True)]),
])
def test_bad_options(kernel, opts):
    with pytest.raises(KvmboxError) as e:
        build_mounts(kernel, opts)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("spec,want", [
    ("/h:/g", ("/h", "/g", True, False)),
    ("/h:/g:ro", ("/h", "/g", True, False)),
    ("/h:/g:rw", ("/h", "/g", False, False)),
    ("/h:/g:rw,chown", ("/h", "/g", False, True)),
    ("/h:/g:chown,rw", ("/h", "/g", False, True)),
])
def test_parse_mount(spec, want):
    m = parse_mount(spec)
    assert (m.host, m.guest, m.readonly, m.chown) == want


@pytest.mark.parametrize("spec", ["/h", "/h:", ":/g", "/h:/g:", "/h:/g:rx", "/h:/g:ro,rw", "/h:/g:chown",
                                  "/h:/g:ro,chown", "/h:/g:rw,rw", "/h:/g:rw:x", "/h:/g:rw,,chown"])
def test_parse_mount_refuses(spec):
    with pytest.raises(KvmboxError) as e:
        parse_mount(spec)
    assert "\n" not in str(e.value) and "HOST:GUEST" in str(e.value)


def test_host_mounts_show_no_host_path(kernel, rootfs):
    """/proc/mounts and mountinfo get the source "none" for a host mount (as gVisor's gofer
    mounts), and statfs says nosuid,nodev."""
    r, data = rootfs
    t = build_mounts(kernel, FsOptions(rootfs=str(r), mounts=[MountSpec(str(data), "/mnt/d")]))
    try:
        m = t.mounts()[-1]
        assert (m.path, m.source, m.fs.fstype) == ("/mnt/d", "none", "9p")
        assert str(data) not in repr(m)
        assert m.fs.statfs().flags & (perm_flags := 0x2 | 0x4) == perm_flags
    finally:
        close_mounts(t)
