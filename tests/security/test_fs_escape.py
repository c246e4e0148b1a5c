"""File-system escape attempts (DESIGN.md "Security invariants").

The program cannot reach a host file outside its mounts, cannot write a
read-only mount, cannot open /dev/kvm or /dev/mem, cannot read the Sentry's
memory or identity via /proc.  Each test runs a tests/programs/escape_*.c
program in a Sandbox (both platforms) and then judges two things:

- what the program got: each attempt prints "label: RESULT"; RESULT must be
  one a safe sandbox may answer, and no secret may appear anywhere;
- the HOST state afterwards, from Python: the never-mounted directory, the
  read-only mount, the rootfs and /etc are unchanged byte for byte and in
  their metadata (mode, mtime, ctime, inode, link count).

The host layout (a fresh directory under .test-scratch, never under /tmp,
which the sandbox replaces with its own tmpfs) is described in
escape_harness.py: a rootfs, read-write mounts /mnt/in and /mnt/other, a
read-only mount /mnt/ro, and outside/secret.txt next to them, never mounted.

Each test runs its program three ways (the `launch` fixture): as the first
process, from a forked child and from a child of a child (tests/programs/
forkrun.c), so that processes created inside the sandbox are held to the same
rules as the first one.

The programs never run natively (the host runs as root and they write
/etc/passwd): they refuse unless KVMBOX_ESCAPE_TEST=1 and the hostname is
"kvmbox".
"""
from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import helpers
from security.escape_harness import (BUILD, DECOY_PASSWD, ESCAPE_ENV, HARMLESS, INSIDE_FILE, RO_FILE,
                                     SENTRY_WORDS, Verdict, before_state, boxed,
                                     diff_snapshots, dumps, host_fds_under, host_unchanged, install,
                                     rooted, sentry_pids, snapshot, snapshot_files)


# ---------------------------------------------------------------- the programs refuse the host

def test_escape_programs_refuse_to_run_natively(test_programs):
    for name in ("escape_paths", "escape_links", "escape_race", "escape_ro", "escape_root",
                 "escape_dev", "escape_proc", "escape_setid"):
        r = helpers.run_native(test_programs / BUILD / name, ("/nonexistent", "/nonexistent", "/x"))
        assert r.exit_code == 2 and r.stdout == b"", (name, r)
    if socket.gethostname() != "kvmbox":
        # The flag alone is not enough: the hostname must be the sandbox's too.
        r = helpers.run_native(test_programs / BUILD / "escape_race", ("/nonexistent", "1"),
                               env=ESCAPE_ENV)
        assert r.exit_code == 2 and r.stdout == b"", r


# ---------------------------------------------------------------- paths, symlinks, /proc links

PATHS_ENOENT = [
    "dotdot_mnt_1", "dotdot_mnt_4", "dotdot_mnt_hostpath", "dotdot_root_1", "dotdot_root_8",
    "dotdot_root_hostpath", "host_abs_path", "dotdot_mnt_mixed",
    "openat_dirfd_up1", "openat_dirfd_up3", "openat_dirfd_hostpath", "openat_dirfd_chain",
    "openat_dirfd_chain_hostpath", "openat2_dirfd_up", "openat_opath_up",
    "chdir_loop_rel", "chdir_loop_rel_up", "chdir_loop_hostpath", "fchdir_loop_rel",
    "gsym_abs_outside", "gsym_abs_hostpath", "gsym_rel_outside", "gsym_rel_deep", "gsym_dir_up",
    "gsym_root", "gsym_root_hostpath", "gsym_proc_root", "gsym_dotdot", "gsym_rel_at",
    "gsym_dir_up_dirfd",
    "hsym_abs", "hsym_rel", "hsym_dir", "hsym_root_hostpath", "hsym_root_up", "hsym_deep",
    "hsym_dir_opendir",
    "proc_root_up", "proc_root_hostpath", "proc_thread_root_up", "proc_1_root_up", "proc_cwd_up",
    "proc_cwd_up1",
] + [f"proc_fd_{kind}_{what}" for kind in ("dirfd", "opath")
     for what in ("up1", "up2", "up3", "up4", "hostpath", "dotdot_at")]


def test_paths_dotdot_symlinks_proc_links(layout, test_programs, platform_name, launch):
    prog = install(layout, test_programs, "escape_paths")
    before = before_state(layout)
    with rooted(layout, platform_name) as sb:
        r = sb.run(launch.rooted(layout, [prog, "/mnt/in", str(layout.outside)]), env=ESCAPE_ENV)
    v = Verdict(r, layout, "escape_paths")
    v.expect_all(PATHS_ENOENT, "ENOENT")
    v.expect("openat_dirfd_chain_is_root", "yes")
    v.expect("cwd_in_mnt", "/mnt/in")
    v.expect("chdir_up_40_failures", "0")
    v.expect("cwd_after_up", "/")
    v.expect("cwd_after_fchdir_up", "/")
    v.expect_all([f"{lab}_create" for lab in ("gsym_abs_outside", "gsym_abs_hostpath", "gsym_rel_outside",
                                              "gsym_rel_deep", "gsym_etc_passwd", "gsym_dir_up", "gsym_root",
                                              "gsym_root_hostpath", "gsym_proc_root", "gsym_dotdot")], "ok")
    # An absolute symlink restarts at the SANDBOX root: the decoy, never the host's /etc/passwd.
    v.expect("gsym_etc_passwd", f"read {len(DECOY_PASSWD)} {DECOY_PASSWD.decode()[:-1]}\\x0a")
    v.expect("hsym_abs_readlink", "ok")
    v.expect("hsym_abs_nofollow", "ELOOP")
    v.expect("hsym_abs_opath_proc", "ELOOP", "ENOENT")
    v.expect("proc_exe_dotdot", "ENOTDIR")
    # A running executable is not writable (Linux: ETXTBSY); a write would land in the
    # overlay and corrupt the program for later runs in this Sandbox (host_unchanged
    # below checks the host copy).
    v.expect_all(["proc_exe_wronly", "proc_exe_rdwr", "proc_exe_trunc"], "ETXTBSY")
    v.forbid_reads({"gsym_etc_passwd"})
    if b"root:x:0:0" in r.stdout:
        v.problem("the host's /etc/passwd appears in the output")
    host_unchanged(v, before, layout)
    v.check()


# ---------------------------------------------------------------- hard links, renames, handles

def test_hard_links_renames_and_handles(layout, test_programs, platform_name, launch):
    prog = install(layout, test_programs, "escape_links")
    before = before_state(layout)
    with rooted(layout, platform_name) as sb:
        r = sb.run(launch.rooted(layout, [prog, "/mnt/in", "/mnt/other", str(layout.outside)]), env=ESCAPE_ENV)
    v = Verdict(r, layout, "escape_links")
    v.expect_all(["link_dotdot", "link_hostpath", "link_root_dotdot", "linkat_follow_abs", "linkat_follow_rel",
                  "link_into_outside", "rename_outside_in", "rename_inside_out", "rename_inside_out_deep"],
                 "ENOENT")
    v.expect_all(["link_dotdot_readback", "link_hostpath_readback", "linkat_follow_abs_readback",
                  "linkat_follow_rel_readback", "rename_outside_in_readback"], "ENOENT")
    # A second name for a symlink is harmless: it still resolves inside the sandbox.
    v.expect("link_symlink_nofollow", "ok")
    for label in ("link_symlink_nofollow", "linkat_empty_symlink", "linkat_procfd_symlink"):
        v.expect_error(label + "_readback")
    for label in ("linkat_empty_symlink", "linkat_procfd_symlink"):
        v.expect(label, "ok", "ENOENT", "EPERM")
    v.expect_all(["linkat_empty_other_mount", "linkat_empty_tmp", "linkat_empty_root", "link_other_mount",
                  "link_to_tmp", "link_to_root", "rename_other_mount", "rename_to_tmp", "rename_to_root",
                  "rename_dir_to_tmp", "rename_tmp_into_mnt", "renameat2_exchange_mounts"], "EXDEV")
    v.expect("linkat_empty_dir", "EPERM", "ENOENT")
    v.expect("rename_mountpoint", "EXDEV", "EBUSY")
    v.expect("file_after", f"read {len(INSIDE_FILE)} {INSIDE_FILE.decode()[:-1]}\\x0a")
    # File handles: a forged handle must never open anything; a real one at most the file itself.
    v.expect_error("open_by_handle_forged_2")
    v.expect_error("open_by_handle_forged_12")
    real = v.value("open_by_handle_real")
    if real.startswith("read") and real != v.value("file_after"):
        v.problem(f"open_by_handle_real read something else than file.txt: {real!r}")
    v.forbid_reads({"file_after", "open_by_handle_real"})
    host_unchanged(v, before, layout)
    if sorted(os.listdir(layout.other)):
        v.problem(f"host other/ is no longer empty: {sorted(os.listdir(layout.other))}")
    if (layout.inside / "file.txt").read_bytes() != INSIDE_FILE:
        v.problem("host inside/file.txt changed")
    if (layout.inside / "sub" / "inner.txt").read_bytes() != b"inner\n":
        v.problem("host inside/sub/inner.txt changed")
    if layout.secret_path.stat().st_nlink != 1:
        v.problem("the secret gained a hard link")
    v.check()


# ---------------------------------------------------------------- symlink swapped during resolution

_SWAPPER = r"""
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
a, b, stop = os.fsencode(sys.argv[1]), os.fsencode(sys.argv[2]), sys.argv[3]
n = 0
print("ready", flush=True)
while not os.path.exists(stop):
    for _ in range(200):
        if libc.renameat2(-100, a, -100, b, 2) != 0:   # RENAME_EXCHANGE
            print("error", ctypes.get_errno(), flush=True)
            sys.exit(1)
        n += 1
print(n, flush=True)
"""


def test_symlink_swapped_during_resolution(layout, test_programs, platform_name, launch):
    prog = install(layout, test_programs, "escape_race")
    d, alt = layout.inside / "d", layout.inside / "d_alt"
    d.mkdir()
    (d / "secret.txt").write_bytes(HARMLESS)
    os.symlink("../outside", alt)
    stop = layout.base / "stop-swapping"
    before = before_state(layout)
    count = 2000
    with rooted(layout, platform_name) as sb:
        # A separate host process swaps d <-> d_alt (RENAME_EXCHANGE) as fast as it can, so
        # "d" is a real directory one moment and a symlink to ../outside the next.
        swapper = subprocess.Popen([sys.executable, "-c", _SWAPPER, str(d), str(alt), str(stop)],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            assert swapper.stdout.readline().strip() == b"ready"
            r = sb.run(launch.rooted(layout, [prog, "/mnt/in", str(count)]), env=ESCAPE_ENV)
        finally:
            stop.touch()
            out, err = swapper.communicate(timeout=30)
    v = Verdict(r, layout, "escape_race")
    swaps = out.decode().split()
    if swapper.returncode != 0 or not swaps or not swaps[-1].isdigit():
        v.problem(f"the swapper failed: rc {swapper.returncode}, {out!r} {err!r}")
    elif int(swaps[-1]) < 100:
        v.problem(f"only {swaps[-1]} swaps during the run: the race was not exercised")
    counts = {k[len("race_"):]: int(val) for k, val in v.results.items()
              if k.startswith("race_") and k != "race_content" and val.isdigit()}
    if sum(counts.values()) != count:
        v.problem(f"outcomes {counts} do not add up to {count}")
    want = f"read {len(HARMLESS)} {HARMLESS.decode()[:-1]}\\x0a"
    for line in v.out.splitlines():
        if line.startswith("race_content: ") and line != f"race_content: {want}":
            v.problem(f"read unexpected content: {line!r}")
    host_unchanged(v, before, layout)
    v.check()


# ---------------------------------------------------------------- read-only mount

RO_EROFS = [
    "open_wronly", "open_rdwr", "open_rdwr_trunc", "open_wronly_append", "open_rdonly_trunc",
    "open_creat_new", "open_creat_excl", "open_creat_existing", "open_via_symlink", "open_via_dotdot",
    "open_inner_trunc", "creat", "openat2_wronly", "reopen_procfd_wronly", "access_w",
    "unlink", "unlink_symlink", "unlinkat_dir", "rmdir_empty", "rmdir_nonempty", "rename_within",
    "rename_dir_within", "rename_over", "renameat2_exchange", "renameat2_noreplace", "mkdir", "mkfifo",
    "symlink", "link_within", "chmod", "chmod_dir", "chown", "lchown_symlink", "fchmodat",
    "utimensat_now", "utimensat_past", "utimensat_dir", "utimes", "truncate", "truncate_grow",
    "fchmod", "fchown", "futimens",
]


def test_read_only_mount(layout, test_programs, platform_name, launch):
    prog = install(layout, test_programs, "escape_ro")
    before = before_state(layout)
    with rooted(layout, platform_name) as sb:
        r = sb.run(launch.rooted(layout, [prog, "/mnt/ro"]), env=ESCAPE_ENV)
    v = Verdict(r, layout, "escape_ro")
    v.expect_all(RO_EROFS, "EROFS")
    v.expect("fchmod_opath", "EBADF", "EROFS")
    v.expect("mkdir_existing", "EEXIST", "EROFS")
    v.expect_all(["rename_out_to_tmp", "rename_in_from_tmp", "link_out_to_tmp"], "EXDEV", "EROFS")
    v.expect_all(["setxattr", "removexattr", "fsetxattr"], "EROFS", "EOPNOTSUPP", "ENOSYS")
    v.expect("open_rdonly", "ok")
    v.expect("ftruncate", "EINVAL", "EBADF", "EROFS")
    v.expect("fallocate", "EBADF", "EROFS")
    v.expect_all(["write_rdonly_fd", "pwrite_rdonly_fd"], "EBADF")
    v.expect("mmap_shared_write", "EACCES")
    v.expect("mmap_shared_read", "ok")
    v.expect("mprotect_shared_write", "EACCES")
    v.expect("mmap_private_write", "ok")
    v.expect("file_after", f"read {len(RO_FILE)} {RO_FILE.decode()[:-1]}\\x0a")
    host_unchanged(v, before, layout)
    v.check()


# ---------------------------------------------------------------- default root: the overlay

ETC_FILES = [Path("/etc", n) for n in ("passwd", "hostname", "hosts", "shadow", "group", "motd")]
ETC_CREATED = [Path("/etc", n) for n in ("kvmbox-escape-test", "kvmbox-escape-dir", "kvmbox-escape-link",
                                         "hosts.kvmbox-moved")]


def test_default_root_writes_stay_in_the_overlay(layout, test_programs, platform_name, launch):
    victims = layout.base / "victims"
    (victims / "sub").mkdir(parents=True)
    for n in ("a.txt", "b.txt", "c.txt", "sub/inner.txt"):
        (victims / n).write_bytes(f"victim {n}\n".encode())
    prog = test_programs / BUILD / "escape_root"
    etc_before = snapshot_files(ETC_FILES + ETC_CREATED)
    victims_before = snapshot(victims)
    prog_before = snapshot_files([prog])
    with boxed(platform_name) as sb:
        r = sb.run(launch.host([str(prog), str(victims)]), env=ESCAPE_ENV)
        seen_passwd = sb.read_file("/etc/passwd")
    v = Verdict(r, None, "escape_root")
    ok_labels = ["etc_hostname_unlink", "etc_hosts_rename", "etc_shadow_chmod", "etc_group_truncate",
                 "etc_mkdir", "etc_symlink", "victim_c_unlink", "victim_inner_unlink", "victim_sub_rmdir",
                 "victim_b_utimensat", "victim_b_chmod"]
    v.expect_all(ok_labels, "ok")
    marker = "kvmbox-escape-marker"
    v.expect("etc_passwd_append", f"ok {len(marker + ':x:0:0::/:/bin/sh') + 1}")
    v.expect("etc_create", f"ok {len(marker) + 1}")
    v.expect_all(["etc_passwd_readback", "etc_create_readback", "victim_a_readback"], "has_marker")
    if Path("/etc/motd").exists():
        v.expect("etc_motd_readback", "has_marker")
    v.expect_all(["etc_hostname_after", "etc_hosts_after"], "ENOENT")
    v.expect("etc_shadow_after", "exists mode 666")
    v.expect_all(["victim_a_trunc", "victim_new"], f"ok {len(marker) + 1}")
    v.expect("victim_b_rdwr", f"ok {len(marker)}")
    if marker.encode() not in seen_passwd:
        v.problem("Sandbox.read_file('/etc/passwd') does not show the overlay's change")
    for p in diff_snapshots(etc_before, snapshot_files(ETC_FILES + ETC_CREATED)):
        v.problem(p)
    for p in diff_snapshots(victims_before, snapshot(victims)):
        v.problem(f"victims: {p}")
    for p in diff_snapshots(prog_before, snapshot_files([prog])):
        v.problem(f"the program file: {p}")
    v.check()


# ---------------------------------------------------------------- devices

DEVICES = [
    "/dev/kvm", "/dev/mem", "/dev/kmem", "/dev/port", "/dev/sda", "/dev/sda1", "/dev/vda", "/dev/vda1",
    "/dev/nvme0n1", "/dev/loop0", "/dev/loop-control", "/dev/net/tun", "/dev/fuse", "/dev/vhost-net",
    "/dev/vhost-vsock", "/dev/vsock", "/dev/hpet", "/dev/cpu/0/msr", "/dev/mapper/control", "/dev/kmsg",
    "/dev/uinput", "/dev/console", "/dev/tty0", "/dev/ttyS0", "/dev/rtc0", "/dev/dri/card0",
    "/dev/userfaultfd", "/dev/btrfs-control", "/dev/snapshot", "/dev/watchdog", "/dev/../dev/kvm",
    "/dev/./mem", "/dev//kvm", "/proc/self/root/dev/kvm", "/sys/dev/char/10:232",
    "/sys/class/misc/kvm/dev", "/sys/block/vda/dev", "/tmp/esc_kvmlink", "/mnt/esc_in/h_kvm",
    "/mnt/esc_in/h_mem",
]


def test_devices_absent_and_mknod_refused(layout, test_programs, platform_name, launch):
    prog = test_programs / BUILD / "escape_dev"
    before = snapshot(layout.inside)
    # The default root: the host's /dev is underneath; devfs must hide all of it.
    with boxed(platform_name, mounts=[f"{layout.inside}:/mnt/esc_in:rw"]) as sb:
        r = sb.run(launch.host([str(prog), "/mnt/esc_in"]), env=ESCAPE_ENV)
    v = Verdict(r, layout, "escape_dev")
    v.expect_all([f"open {d}" for d in DEVICES], "ENOENT")
    for p in ("/proc/kcore", "/proc/kmsg", "/proc/sysrq-trigger", "/proc/sys/kernel/core_pattern"):
        got = v.value(f"open {p}")
        if got == "<missing>" or got.startswith(("opened chr", "opened blk")):
            v.problem(f"open {p}: {got!r}")
    v.expect("symlink_kvm", "ok")
    v.expect_all(["mknod_mem_tmp", "mknod_kvm_tmp", "mknod_disk_tmp", "mknod_mem_mnt", "mknod_disk_mnt",
                  "mknod_mem_root", "mknodat_mem_tmp"], "EPERM")
    v.expect("mknod_mem_dev", "EPERM", "EROFS", "EACCES")
    v.expect("mknod_whiteout_tmp", "EPERM", "ok")
    for label, value in v.results.items():
        if value.startswith(("opened chr", "opened blk")) and label != "open /tmp/esc_wh":
            v.problem(f"{label}: a device opened: {value!r}")
        if label.endswith("_node") and label != "mknod_whiteout_tmp_node":
            v.problem(f"{label}: a device node exists: {value!r}")
    after = snapshot(layout.inside)
    for k in sorted(set(after) - set(before)):
        v.problem(f"host inside/{k} appeared: {after[k]}")
    v.check()


# ---------------------------------------------------------------- /proc

def test_proc_shows_nothing_of_the_sentry(layout, test_programs, platform_name, launch):
    prog = install(layout, test_programs, "escape_proc")
    before = before_state(layout)
    with rooted(layout, platform_name) as sb:
        sb.run([prog, str(os.getpid()), str(layout.outside)], env=ESCAPE_ENV)   # stubs exist from here on
        pids = sentry_pids()
        r = sb.run(launch.rooted(layout, [prog, ",".join(map(str, pids)), str(layout.outside)]), env=ESCAPE_ENV)
    v = Verdict(r, layout, "escape_proc")
    if v.value("self_mem_open") == "ok":
        v.expect("self_mem_read_own", "own")
        v.expect("self_mem_write_own", "own")
        for off in ("0", "1000", "2000", "10000", "100000", "120000"):
            v.expect_error(f"self_mem_stub_read_{off}")
            v.expect_error(f"self_mem_stub_write_{off}")
        v.expect_error("self_mem_noncanonical")
        v.expect_error("self_mem_kernel_half")
    else:
        v.expect("self_mem_open", "ENOENT")
    for i, pid in enumerate(pids):
        if v.value(f"pid{i}_is_guest") == "yes":
            continue                # a host pid that is also a guest pid: /proc/PID is the guest's own
        v.expect(f"pid{i}_is_guest", "no")
        v.expect_all([f"pid{i}_{f}" for f in ("status", "maps", "mem", "environ", "cmdline", "stat", "exe",
                                                "fd/0", "fd", "cwd", "root", "dir_stat", "root_secret")],
                     "ENOENT")
    v.expect("proc1_root_readlink", "/", "ENOENT")
    v.expect_all(["proc1_root_hostpath", "proc1_root_up", "proc1_cwd_up"], "ENOENT")
    v.expect("self_exe_readlink", prog)
    root_list = v.value("root_list").split()
    for name in ("outside", "inside", "rootfs", "usr", "work"):
        if name in root_list:
            v.problem(f"the sandbox root lists {name!r}: {root_list}")
    if v.value("proc1_root_list") not in (v.value("root_list"), "ENOENT"):
        v.problem(f"/proc/1/root lists {v.value('proc1_root_list')!r}, / lists {v.value('root_list')!r}")
    v.forbid_reads()
    # Nothing of the Sentry anywhere in what /proc showed.
    lowered = v.out.replace(str(layout.base), "<BASE>").lower()
    for word in SENTRY_WORDS:
        if word in lowered:
            at = lowered.index(word)
            v.problem(f"{word!r} appears in the output: ...{v.out[max(0, at - 120):at + 80]!r}...")
    environ = "".join(f"{k}={val}\0" for k, val in ESCAPE_ENV.items())
    shown = environ.replace("\0", "\\0")
    if f"dump /proc/self/environ {len(environ)}\n| {shown}\n" not in v.out:
        v.problem(f"/proc/self/environ is not exactly the program's environment {environ!r}")
    # The host pids: in the program's own identity files and every link target, never.
    pid_word = re.compile(r"(?<![0-9A-Za-z])(" + "|".join(map(str, pids)) + r")(?![0-9A-Za-z])")
    for section in dumps(v.out, ("/proc/self/status", "/proc/self/maps", "/proc/self/environ",
                                  "/proc/self/mountinfo")):
        if pid_word.search(section):
            v.problem(f"a host pid {pids} appears in: {section[:300]!r}")
    for line in v.out.splitlines():
        if line.startswith("link ") and pid_word.search(line):
            v.problem(f"a host pid appears in a link: {line!r}")
    for body in dumps(v.out, ("/proc/self/stat",)):
        head, _, rest = body.rpartition(")")
        ids = [head.split()[0] if head else ""] + rest.split()[1:5]   # pid, ppid, pgrp, session, tty
        if {str(p) for p in pids} & set(ids):
            v.problem(f"/proc/self/stat shows a host pid: {body[:200]!r}")
    host_unchanged(v, before, layout)
    v.check()


# ---------------------------------------------------------------- no leaked host fds

def test_no_leaked_host_fds(layout, test_programs, platform_name, launch):
    progs = {n: install(layout, test_programs, n) for n in ("escape_paths", "escape_links", "escape_ro",
                                                            "escape_race")}
    (layout.inside / "d").mkdir()
    (layout.inside / "d" / "secret.txt").write_bytes(HARMLESS)
    warm_up = [progs["escape_ro"], "/mnt/ro"]
    runs = [
        [progs["escape_ro"], "/mnt/ro"],
        [progs["escape_links"], "/mnt/in", "/mnt/other", str(layout.outside)],
        [progs["escape_race"], "/mnt/in", "200"],
        [progs["escape_links"], "/mnt/in", "/mnt/other", str(layout.outside)],
        [progs["escape_paths"], "/mnt/in", str(layout.outside)],   # last: it tries to write its own exe
    ]
    problems = []
    with rooted(layout, platform_name) as sb:
        # Warm-up the same way as the runs: a forked run takes a vCPU (an fd) per process.
        sb.run(launch.rooted(layout, warm_up), env=ESCAPE_ENV)
        count0 = len(os.listdir("/proc/self/fd"))
        held0 = host_fds_under(layout.base)
        for argv in runs:
            r = sb.run(launch.rooted(layout, argv), env=ESCAPE_ENV)
            if r.report or r.timed_out or r.exit_code != 0:
                problems.append(f"{argv[0]}: exit {r.exit_code}, {r.report or ''}, timed out {r.timed_out}, "
                                f"{r.stderr[-500:]!r}")
            time.sleep(0.05)
            count, held = len(os.listdir("/proc/self/fd")), host_fds_under(layout.base)
            if count != count0 or held != held0:
                problems.append(f"after {argv[0]}: {count} fds (was {count0}); under the scratch dir "
                                f"{held} (was {held0})")
    left = host_fds_under(layout.base)
    if left:
        problems.append(f"after close, fds still open under the scratch dir: {left}")
    assert not problems, "\n".join(problems)


def test_anon_inode_numbers_are_not_sentry_addresses(layout, test_programs, platform_name, launch):
    """pipe:[N] / anon_inode inode numbers must not be Python id()s (Sentry heap addresses).

    CPython objects are 16-byte aligned, so numbers taken from id() are all multiples of
    16; real inode numbers (Linux counts them up) are not.  Three or more such numbers all
    aligned is the signature of an address leak (a false alarm has odds 1 in 16**n)."""
    prog = install(layout, test_programs, "escape_proc")
    with rooted(layout, platform_name) as sb:
        r = sb.run(launch.rooted(layout, [prog, "0", str(layout.outside)]), env=ESCAPE_ENV)
    v = Verdict(r, layout, "escape_proc")
    inos = [int(m) for m in re.findall(r"^link /proc/\d+/fd/\d+ -> (?:pipe|anon_inode):\[(\d+)\]$", v.out, re.M)]
    if len(inos) < 3:
        v.problem(f"expected the three standard streams as pipe:[N] links, got {inos}")
    elif all(n % 16 == 0 for n in inos):
        v.problem(f"inode numbers {inos} are all 16-byte aligned: they look like Sentry object addresses")
    v.check()
