"""Fatal faults, timeouts and the memory limit: native run vs sandbox, plus the CLI's reports."""
from __future__ import annotations

import signal
import time

import pytest

import helpers
from helpers import assert_same_outcome, run_native, run_sandbox

FAULT_CASES = ["segv_read", "segv_write", "segv_write_ro", "segv_exec_nx", "segv_after_munmap",
               "segv_after_mprotect", "noncanonical", "kernel_half", "stub_region", "stack_overflow",
               "ud2", "int3", "div0", "hlt", "cli", "out", "out_syscall_port", "in", "mov_cr3",
               "wrmsr", "lidt", "jump_null"]


@pytest.mark.parametrize("build", ["glibc", "musl", "pie"])
@pytest.mark.parametrize("case", FAULT_CASES)
def test_fault_kills_with_linux_signal(case, build, test_programs, sandbox):
    path = test_programs / build / "faults"
    native = run_native(path, (case,))
    assert native.signal, f"native run of {case} did not die by a signal: {native.describe()}"
    boxed = run_sandbox(path, (case,), sandbox=sandbox)
    assert_same_outcome(native, boxed, what=f"faults {case}")


@pytest.mark.parametrize("build", ["glibc", "musl", "pie"])
def test_stub_region_as_on_a_cpu_without_protection_keys(build, test_programs, monkeypatch):
    """ptrace: where execute-only pages are readable (no PKU) the stub's code page is emptied
    while the guest runs; forced here so that this path runs on every machine."""
    import kvmbox
    from kvmbox.platform.ptrace.platform import ASSUME_NO_PKU_ENV
    monkeypatch.setenv(ASSUME_NO_PKU_ENV, "1")
    path = test_programs / build / "faults"
    native = run_native(path, ("stub_region",))
    with kvmbox.Sandbox(platform="ptrace") as sb:
        boxed = run_sandbox(path, ("stub_region",), sandbox=sb)
        assert sb._platform.assume_no_pku
    assert_same_outcome(native, boxed, what="faults stub_region (no PKU)")


def test_int80_is_not_a_syscall_gate(test_programs, sandbox):
    """Departure from Linux (no IA-32 emulation): `int 0x80` kills the program.

    Hardware raises #GP for the absent gate (SIGSEGV); PVM reports `int n` for
    n >= 32 from ring 3 as #UD (SIGILL).  Either way it is no way into the Sentry.
    """
    r = run_sandbox(test_programs / "glibc" / "faults", ("int80",), sandbox=sandbox)
    assert r.signal in (signal.SIGSEGV, signal.SIGILL)


@pytest.mark.parametrize("case,signame,insn", [
    ("segv_read", "SIGSEGV", "mov"), ("ud2", "SIGILL", "ud2"), ("div0", "SIGFPE", "idiv"),
    ("int3", "SIGTRAP", ""), ("hlt", "SIGSEGV", "hlt"), ("wrmsr", "SIGSEGV", "wrmsr"),
])
def test_cli_fault_report(case, signame, insn, test_programs, platform_name):
    proc = helpers.run_cli(["run", "--platform", platform_name,
                            str(test_programs / "glibc" / "faults"), case])
    assert proc.returncode == 128 + getattr(signal, signame)
    err = proc.stderr.decode()
    lines = [ln for ln in err.splitlines() if ln.startswith("kvmbox:")]
    assert len(lines) == 1, err
    assert signame in lines[0] and "rip 0x" in lines[0] and insn in lines[0], lines[0]
    assert "Traceback" not in err


@pytest.mark.parametrize("mode", ["spin", "sleep", "stdin"])
def test_cli_timeout_exits_124(mode, test_programs, platform_name):
    args = [] if mode == "spin" else [mode]
    t0 = time.monotonic()
    proc = helpers.run_cli(["run", "--platform", platform_name, "--timeout", "1",
                            str(test_programs / "glibc" / "spin"), *args],
                           timeout=30)
    assert proc.returncode == 124, proc.stderr
    assert time.monotonic() - t0 < 15
    assert b"timed out" in proc.stderr and b"Traceback" not in proc.stderr


def test_api_timeout_and_sandbox_reuse(test_programs, sandbox):
    spin = str(test_programs / "glibc" / "spin")
    r = sandbox.run([spin], timeout=0.5)
    assert r.timed_out and r.signal == signal.SIGKILL
    assert r.stdout == b"spinning\n"
    again = sandbox.run([str(test_programs / "glibc" / "hello")])
    assert again.exit_code == 0 and again.stdout


def _up_to_the_limit(test_programs, platform: str, memory: str, near: int) -> None:
    """Up to the limit mmap succeeds and every page can be touched; at it, ENOMEM: as Linux
    with strict overcommit, never a later SIGSEGV."""
    import kvmbox
    hog = str(test_programs / "glibc" / "memhog")
    limit_mb = int(memory[:-1]) << (10 if memory.endswith("G") else 0)
    with kvmbox.Sandbox(platform=platform, memory=memory, timeout=120) as sb:
        near_run = sb.run([hog, str(near), "0"])
        at_run = sb.run([hog, str(limit_mb), "0"])
    assert (near_run.exit_code, near_run.report) == (0, None), near_run
    assert near_run.stdout == f"mmap {near}M: ok\nbrk +0M: ok\n".encode()
    assert at_run.stdout == f"mmap {limit_mb}M: ENOMEM\nbrk +0M: ok\n".encode()


def test_mapping_up_to_the_limit_is_backed(test_programs, platform_name):
    _up_to_the_limit(test_programs, platform_name, "256M", 250)


def test_mapping_up_to_a_3g_limit_is_backed_on_ptrace(test_programs):
    """ptrace's MemoryFile held fewer data frames than --memory 3G allowed to commit: the
    touch past them was SIGSEGV 'not mapped'.  KVM shares the sizing (tests/unit/test_frames.py);
    765,000 first touches take seconds on ptrace but minutes on PVM, so this one is ptrace's."""
    _up_to_the_limit(test_programs, "ptrace", "3G", 3060)


def test_files_and_mappings_share_the_memory_limit(test_programs, platform_name):
    """Files in memory and the program's memory draw on one --memory: a tmpfs fill stops
    with ENOSPC near the limit, and then a 60 MiB mapping no longer fits (ENOMEM), so the
    guest never holds twice --memory of the host's memory."""
    import kvmbox
    hog = str(test_programs / "glibc" / "memhog")
    with kvmbox.Sandbox(platform=platform_name, memory="64M", timeout=120) as sb:
        r = sb.run([hog, "60", "0", "150"])
    first, *rest = r.stdout.decode().splitlines()
    filled = int(first.split()[1])
    assert first == f"filled {filled} MiB" and 32 <= filled < 64, r     # ENOSPC near 64 MiB
    assert rest == ["mmap 60M: ENOMEM", "brk +0M: ok"] and r.exit_code == 0, r


def test_guest_memory_exhausted_is_an_oom_kill(test_programs, platform_name):
    """Should guest frames run out all the same (here: taken away by the test), a page the
    program mapped ends the run as Linux's OOM killer would (SIGKILL, 137) with a report,
    never an unearned SIGSEGV 'not mapped'."""
    import kvmbox
    hog = str(test_programs / "glibc" / "memhog")
    with kvmbox.Sandbox(platform=platform_name, memory="256M", timeout=120) as sb:
        frames = sb._platform.frames
        taken, chunk = [], 1 << 16
        while chunk:                                  # every data frame there is ...
            try:
                taken += frames.alloc(chunk)
            except kvmbox.errors.SyscallError:
                chunk //= 2
        for phys, n in taken[-4:]:                    # ... less a few MiB for the loader
            frames.free(phys, n)
        r = sb.run([hog, "60", "0"])
    assert r.signal == signal.SIGKILL and r.exit_code == 137, r
    assert "out of memory" in (r.report or ""), r


def test_memory_limit_gives_enomem(test_programs, platform_name):
    import kvmbox
    hog = str(test_programs / "glibc" / "memhog")
    with kvmbox.Sandbox(platform=platform_name, memory="64M") as sb:
        over = sb.run([hog, "256", "256"])
        under = sb.run([hog, "16", "16"])
    assert over.exit_code == 0, over
    assert over.stdout == b"mmap 256M: ENOMEM\nbrk +256M: refused\n"
    assert under.stdout == b"mmap 16M: ok\nbrk +16M: ok\n"
    native = run_native(hog, ("16", "16"))
    assert native.stdout == under.stdout
