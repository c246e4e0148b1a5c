"""mmapfile on a read-write host mount: MAP_SHARED of a host file writes back on msync and munmap,
and the bytes land in the host file. (tests/syscalls/test_programs.py runs it on the sandbox's
tmpfs /tmp, where a shared mapping is the file's page cache itself.)"""
from __future__ import annotations

import pytest

import kvmbox
from helpers import BUILDS, assert_same_outcome, run_native

GUEST_DIR = "/mnt/kvmbox-mmapfile"


@pytest.mark.parametrize("build", [*BUILDS, "dynamic"])
def test_mmapfile_on_a_host_mount(build, tmp_path, test_programs, platform_name):
    prog = test_programs / build / "mmapfile"
    native_dir, host_dir = tmp_path / "native", tmp_path / "mounted"
    native_dir.mkdir()
    host_dir.mkdir()
    # "nocoherence": a write(2) after the pages were populated is not seen by a shared
    # mapping of a host file (README, differences from Linux); both sides skip that check.
    native = run_native(prog, (str(native_dir), "nocoherence"))
    assert native.exit_code == 0, native.stdout.decode(errors="replace")
    with kvmbox.Sandbox(platform=platform_name, timeout=60,
                        mounts=[f"{host_dir}:{GUEST_DIR}:rw"]) as sb:
        r = sb.run([str(prog), GUEST_DIR, "nocoherence"])
    boxed = type(native)(r.exit_code, r.signal, r.stdout, r.stderr)
    assert_same_outcome(native, boxed, what=f"{build}/mmapfile on a host mount")
    assert list(host_dir.iterdir()) == []                  # the program removed its file


def test_shared_writes_reach_the_host_file(tmp_path, test_programs, platform_name):
    """The bytes a guest writes through MAP_SHARED are in the host file after the run."""
    src = tmp_path / "share.c"
    host_dir = tmp_path / "mounted"
    host_dir.mkdir()
    (host_dir / "data").write_bytes(b"." * 5000)
    src.write_text(r'''
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
int main(int argc, char **argv) {
    int fd = open(argv[1], O_RDWR);
    char *p = mmap(0, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) return 1;
    memcpy(p + 4096, "written by the guest", 20);
    return 0;                                   /* no msync, no munmap: exit writes back */
}
''')
    import subprocess
    exe = tmp_path / "share"
    if subprocess.run(["gcc", "-O2", "-o", str(exe), str(src)]).returncode:
        pytest.skip("no gcc")
    with kvmbox.Sandbox(platform=platform_name, timeout=60,
                        mounts=[f"{host_dir}:/mnt/h:rw", f"{tmp_path}:/mnt/bin"]) as sb:
        r = sb.run(["/mnt/bin/share", "/mnt/h/data"])
    assert r.exit_code == 0, r.stderr
    data = (host_dir / "data").read_bytes()
    assert len(data) == 5000 and data[4096:4116] == b"written by the guest"
    assert data[:4096] == b"." * 4096 and data[4116:] == b"." * (5000 - 4116)


def _sentry_fds() -> int:
    import os
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.parametrize("mode", ["private", "shared"])
def test_mapping_a_file_20000_times_holds_one_host_fd(mode, tmp_path, test_programs, platform_name):
    """20,000 mappings of one host file at once (mapmany.c): the Sentry (this process) holds
    one host descriptor for them, not one each; the run matches native, with no traceback."""
    import threading
    prog = test_programs / "glibc" / "mapmany"
    host_dir = tmp_path / "mounted"
    host_dir.mkdir()
    (host_dir / "data").write_bytes(bytes(range(256)) * 16)
    args = ["20000", "DATA", mode]
    native = run_native(prog, [a.replace("DATA", str(host_dir / "data")) for a in args], timeout=120)
    assert native.exit_code == 0, native.stdout
    with kvmbox.Sandbox(platform=platform_name, timeout=300, mounts=[f"{host_dir}:/mnt/h:rw"]) as sb:
        sb.run([str(prog), "1", "/mnt/h/data", mode])          # vCPUs and stubs exist from here
        before = _sentry_fds()
        most, done = [before], threading.Event()

        def sample() -> None:
            while not done.wait(0.02):
                most.append(_sentry_fds())
        t = threading.Thread(target=sample, daemon=True)
        t.start()
        try:
            r = sb.run([str(prog), *[a.replace("DATA", "/mnt/h/data") for a in args]])
        finally:
            done.set()
            t.join()
        after = _sentry_fds()
    boxed = type(native)(r.exit_code, r.signal, r.stdout, r.stderr)
    assert_same_outcome(native, boxed, what=f"mapmany 20000 {mode}")
    assert b"Traceback" not in r.stderr
    assert max(most) - before < 16, f"the Sentry's descriptors grew from {before} to {max(most)}"
    assert after <= before
