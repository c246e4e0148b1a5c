"""The file syscalls on host mounts: files.c and fdops.c on a read-write host directory
compared with a native run (dirs.c is left out: host FIFOs are not reachable from the
sandbox, by design, so its FIFO checks differ), and every mutation through a read-only mount refused with
EROFS (the host directory left untouched)."""
from __future__ import annotations

import subprocess

import pytest

import kvmbox
from helpers import assert_same_outcome, run_native

EROFS_PROBE = r'''
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
static void t(const char *what, int r) { printf("%s -> %s\n", what, r < 0 ? strerrorname_np(errno) : "ok"); }
int main(int argc, char **argv) {
    if (chdir(argv[1])) return 2;
    t("open O_WRONLY", open("existing", O_WRONLY));
    t("open O_RDONLY|O_TRUNC", open("existing", O_RDONLY | O_TRUNC));
    t("open O_CREAT", open("new", O_WRONLY | O_CREAT, 0644));
    t("open O_RDONLY", open("existing", O_RDONLY));
    t("mkdir", mkdir("d", 0755));
    t("unlink", unlink("existing"));
    t("rename", rename("existing", "other"));
    t("symlink", symlink("existing", "l"));
    t("link", link("existing", "h"));
    t("chmod", chmod("existing", 0600));
    t("truncate", truncate("existing", 0));
    t("utimensat", utimensat(AT_FDCWD, "existing", NULL, 0));
    t("access W_OK", access("existing", W_OK));
    t("access R_OK", access("existing", R_OK));
    t("mknod fifo", mknod("fifo", S_IFIFO | 0644, 0));
    return 0;
}
'''

EXPECTED = """open O_WRONLY -> EROFS
open O_RDONLY|O_TRUNC -> EROFS
open O_CREAT -> EROFS
open O_RDONLY -> ok
mkdir -> EROFS
unlink -> EROFS
rename -> EROFS
symlink -> EROFS
link -> EROFS
chmod -> EROFS
truncate -> EROFS
utimensat -> EROFS
access W_OK -> EROFS
access R_OK -> ok
mknod fifo -> EROFS
"""


def test_writes_to_a_read_only_mount_give_erofs(tmp_path, platform_name):
    src, exe = tmp_path / "erofs.c", tmp_path / "erofs"
    src.write_text(EROFS_PROBE)
    if subprocess.run(["gcc", "-O2", "-static", "-o", str(exe), str(src)]).returncode:
        pytest.skip("no gcc")
    ro = tmp_path / "ro"
    ro.mkdir()
    (ro / "existing").write_bytes(b"keep me")
    before = sorted(p.name for p in ro.iterdir())
    with kvmbox.Sandbox(platform=platform_name, timeout=60,
                        mounts=[f"{ro}:/mnt/ro:ro", f"{tmp_path}:/mnt/bin"]) as sb:
        r = sb.run(["/mnt/bin/erofs", "/mnt/ro"])
    assert r.exit_code == 0, r.stderr
    assert r.stdout.decode() == EXPECTED
    assert sorted(p.name for p in ro.iterdir()) == before
    assert (ro / "existing").read_bytes() == b"keep me"


@pytest.mark.parametrize("program", ["files", "fdops"])
def test_file_programs_on_a_read_write_host_mount(program, tmp_path, test_programs, platform_name):
    prog = test_programs / "glibc" / program
    native_dir, host_dir = tmp_path / "native", tmp_path / "mounted"
    native_dir.mkdir()
    host_dir.mkdir()
    native = run_native(prog, (str(native_dir),))
    assert native.exit_code == 0, native.stdout.decode(errors="replace")
    with kvmbox.Sandbox(platform=platform_name, timeout=60,
                        mounts=[f"{host_dir}:/mnt/rw:rw"]) as sb:
        r = sb.run([str(prog), "/mnt/rw"])
    boxed = type(native)(r.exit_code, r.signal, r.stdout, r.stderr)
    assert_same_outcome(native, boxed, what=f"{program} on a host mount")
    assert list(host_dir.iterdir()) == []                  # the program removed its scratch dir
