"""A read-write host mount must not become a way up on the host (issue 7 §6).

The guest runs as root, and so may the Sentry.  escape_setid.c tries, inside an
`:rw` mount, to make set-id executables, give files away, make device nodes, set
file capabilities and alter a set-id program the host planted; the verdict is
taken on the HOST afterwards: no set-id regular file the guest made or changed,
nothing owned by anyone but the user who ran kvmbox, no device node, no
capability attribute.  The mount tables must not name the host directory.

Decided behaviour (docs/vfs.md "Host mounts"): host mounts are nosuid,nodev.  On
Linux a nosuid mount still stores set-id bits and ignores them at exec; kvmbox
never lets them reach the host file, so chmod/creat succeed and the guest then
sees the bits cleared (S_ISGID stays on directories, where it only means group
inheritance).  A chown to another owner is EPERM unless the mount says `rw,chown`.
"""
from __future__ import annotations

import os
import shutil
import stat
import tempfile
from pathlib import Path

import pytest

from security.escape_harness import BUILD, ESCAPE_ENV, SCRATCH, Launch, Verdict, boxed, dumps

OTHER_UID = 12345
ROOT = os.geteuid() == 0
# Objects the program makes in the mount (their host owner must be the invoking user).
MADE = ("c_suid", "c_sgid", "c_both", "d_sgid", "d_suid", "fifo_suid", "reg_suid", "plain", "mine",
        "mine_link")
PLANTED = {"suid_root": 0o4755, "sgid_prog": 0o2755, "keep_suid": 0o4755, "theirs": 0o644}


@pytest.fixture
def mount_dir(test_programs) -> Path:
    SCRATCH.mkdir(exist_ok=True)
    base = Path(tempfile.mkdtemp(prefix="setid-", dir=SCRATCH))
    mnt = base / "shared-with-host-users"
    mnt.mkdir()
    for name, mode in PLANTED.items():
        (mnt / name).write_bytes(b"#!/bin/sh\necho planted\n")
        (mnt / name).chmod(mode)
    if ROOT:
        os.chown(mnt / "theirs", OTHER_UID, OTHER_UID)
    try:
        yield mnt
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _run(mnt: Path, test_programs, platform_name: str, options: str, launch: Launch) -> Verdict:
    prog = test_programs / BUILD / "escape_setid"
    with boxed(platform_name, mounts=[f"{mnt}:/mnt/w:{options}"]) as sb:
        r = sb.run(launch.host([str(prog), "/mnt/w"]), env=ESCAPE_ENV)
    return Verdict(r, None, f"escape_setid ({options})")


def _host_setid_check(v: Verdict, mnt: Path) -> None:
    """On the host: no set-id bit anywhere the guest made or changed, no device, no capability."""
    for p in sorted(mnt.iterdir()):
        st = p.lstat()
        mode = stat.S_IMODE(st.st_mode)
        if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
            v.problem(f"host {p.name} is a device node")
        if p.name == "keep_suid":
            if mode != PLANTED["keep_suid"]:
                v.problem(f"host keep_suid (only read) lost its bits: {mode:04o}")
            continue
        if mode & stat.S_ISUID:
            v.problem(f"host {p.name} is set-user-id: {mode:04o}")
        if mode & stat.S_ISGID and not stat.S_ISDIR(st.st_mode):
            v.problem(f"host {p.name} is set-group-id: {mode:04o}")
        if not p.is_symlink() and os.listxattr(p, follow_symlinks=False):
            v.problem(f"host {p.name} has extended attributes {os.listxattr(p)}")
        if p.name in MADE and (st.st_uid, st.st_gid) != (os.getuid(), os.getgid()):
            v.problem(f"host {p.name} belongs to {st.st_uid}:{st.st_gid}, not to the user who ran "
                      f"kvmbox ({os.getuid()}:{os.getgid()})")
        # What the guest saw is what the host has.
        seen = v.value(f"{_label_of(p.name)}_mode")
        if seen != "<missing>" and not seen.startswith(f"0{mode:04o} "):
            v.problem(f"the guest saw {p.name} as {seen!r}, the host has 0{mode:04o}")


def _label_of(name: str) -> str:
    return {"c_suid": "creat_suid", "c_sgid": "creat_sgid", "c_both": "creat_both",
            "fifo_suid": "mknod_fifo_suid", "reg_suid": "mknod_reg_suid", "plain": "chmod_via_opath",
            "mine": "mine", "theirs": "theirs", "d_sgid": "chmod_dir_suid", "d_suid": "chmod_dir_sgid",
            "suid_root": "write_suid_root", "sgid_prog": "truncate_sgid_prog",
            "keep_suid": "read_keep_suid"}.get(name, name)


def _no_host_path(v: Verdict, mnt: Path) -> None:
    for body in dumps(v.out, ("/proc/self/mountinfo", "/proc/self/mounts", "/proc/mounts",
                              "/proc/1/mountinfo")):
        for word in (str(mnt), mnt.name, str(SCRATCH), ".test-scratch"):
            if word in body:
                v.problem(f"a mount table names the host directory ({word!r}): {body!r}")
    for section in dumps(v.out, ("/proc/self/mountinfo",)):
        if " /mnt/w rw,nosuid,nodev,relatime - 9p none rw," not in section:
            v.problem(f"/mnt/w is not shown as gVisor shows a gofer mount: {section!r}")


def test_rw_mount_gives_no_way_up(mount_dir, test_programs, platform_name, launch):
    v = _run(mount_dir, test_programs, platform_name, "rw", launch)
    v.expect_all(["creat_suid", "creat_sgid", "creat_both", "mkdir_sgid", "mkdir_suid", "mknod_fifo_suid",
                  "mknod_reg_suid", "chmod_suid", "chmod_sgid", "fchmod_suid", "fchmodat_suid",
                  "chmod_via_opath", "chmod_dir_sgid", "chmod_dir_suid"], "ok")
    v.expect("chmod_suid_mode", f"00755 uid {os.getuid()} gid {os.getgid()}")
    v.expect("chmod_dir_sgid_mode", f"02755 uid {os.getuid()} gid {os.getgid()}")
    v.expect_all(["chown_mine_other", "chown_mine_nobody", "chgrp_mine_other", "fchown_mine_other",
                  "fchownat_mine_other", "lchown_link_other"], "EPERM")
    v.expect("chown_mine_root", "ok" if (os.getuid(), os.getgid()) == (0, 0) else "EPERM")
    v.expect("chown_theirs_root", "EPERM")
    v.expect("chown_theirs_same", "ok")
    v.expect_all(["mknod_mem", "mknod_disk"], "EPERM")
    v.expect_error("setxattr_capability")
    v.expect_error("setxattr_user")
    v.expect_all(["write_suid_root", "truncate_sgid_prog", "read_keep_suid"], "ok")
    _host_setid_check(v, mount_dir)
    if ROOT and mount_dir.joinpath("theirs").stat().st_uid != OTHER_UID:
        v.problem("host 'theirs' changed owner")
    _no_host_path(v, mount_dir)
    v.check()


def test_rw_chown_mount_lets_files_be_given_away(mount_dir, test_programs, platform_name, launch):
    """`rw,chown`: chown goes through (as far as the Sentry itself may), set-id bits still never
    reach the host."""
    v = _run(mount_dir, test_programs, platform_name, "rw,chown", launch)
    want = "ok" if ROOT else "EPERM"
    v.expect_all(["chown_mine_other", "fchown_mine_other", "fchownat_mine_other", "lchown_link_other",
                  "chown_theirs_root"], want)
    v.expect_all(["mknod_mem", "mknod_disk"], "EPERM")
    _host_setid_check_without_owner(v, mount_dir)
    if ROOT:
        st = (mount_dir / "mine").lstat()
        if st.st_uid != OTHER_UID:
            v.problem(f"rw,chown: host 'mine' belongs to {st.st_uid}, the guest gave it to {OTHER_UID}")
    v.check()


def _host_setid_check_without_owner(v: Verdict, mnt: Path) -> None:
    for p in sorted(mnt.iterdir()):
        mode = stat.S_IMODE(p.lstat().st_mode)
        if p.name != "keep_suid" and (mode & stat.S_ISUID or (mode & stat.S_ISGID and not p.is_dir())):
            v.problem(f"host {p.name} is set-id: {mode:04o}")
