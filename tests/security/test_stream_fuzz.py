"""No guest action on a host stream ends kvmbox with "internal error" (exit 125).

tests/programs/streamfuzz.c makes thousands of random I/O calls with hostile
offsets, sizes, whences, flags and ioctls on the standard streams and on
descriptors made from them, through `kvmbox run` with the streams as host files,
pipes and /dev/null, also under a small soft RLIMIT_FSIZE of kvmbox itself (so
host writes fail with EFBIG, issue 7's pwrite64 crash).  Every host error must
reach the guest as its errno.
"""
from __future__ import annotations

import pytest

import helpers

CONFIGS = {
    "files": "< in.txt > out.txt 2> err.txt",
    "append-and-null": "< /dev/null >> out.txt 2>> err.txt",
    "pipes": "2> err.txt | cat > piped.txt",
    "host-fsize-limit": "< in.txt > out.txt 2> err.txt",
}


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("config", list(CONFIGS))
def test_no_guest_action_on_a_stream_is_an_internal_error(config, seed, tmp_path, test_programs,
                                                          platform_name):
    (tmp_path / "in.txt").write_bytes(b"input file\n" * 100)
    prog = test_programs / "musl" / "streamfuzz"
    limit = "ulimit -S -f 8192; " if config == "host-fsize-limit" else ""
    run = (f"{helpers.kvmbox_command(platform_name, '--env KVMBOX_SANDBOXED_FUZZ=1', '--timeout 120')}"
           f" {prog} {seed} 3000 {CONFIGS[config]}; echo \"rc=${{PIPESTATUS[0]}}\" > rc.txt")
    p = helpers.run_shell(f"{limit}{run}", tmp_path, timeout=300)
    rc = (tmp_path / "rc.txt").read_text().strip()
    err = (tmp_path / "err.txt").read_bytes() if (tmp_path / "err.txt").exists() else b""
    assert b"kvmbox: internal error" not in err + p.stderr, err[-3000:]
    assert rc == "rc=0", (rc, err[-3000:], p.stderr[-3000:])


def test_streamfuzz_refuses_to_run_natively(test_programs):
    r = helpers.run_native(test_programs / "musl" / "streamfuzz", ("1", "10"))
    assert r.exit_code == 2
