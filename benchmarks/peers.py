"""The peers: kvmbox's two platforms beside PRoot, gVisor's runsc and qemu-user, cold, from the CLI.

Each tool runs a workload as a user would start it, a new process per run, and
its median wall time is divided by the native median of the same run.  A tool
that is missing or fails a workload gets "n/a: <reason>" in its cell, never a
number.  gVisor runs with `--platform=ptrace`: its KVM platform hangs on PVM.
Also here: the one line saying which machine and hypervisor produced a report.
"""
from __future__ import annotations

import os
import platform
import shutil
import subprocess
import time

from bench_util import BENCH_BIN, ROOT, cli_command

RUNS = 5                                   # cold runs per cell; the median is kept
TIMEOUT = 120

# Tools in the table's column order: name -> argv prefix (None: kvmbox's own CLI).
TOOLS: dict[str, list[str] | None] = {
    "kvm": None,
    "ptrace": None,
    "proot": ["proot"],
    "runsc": ["runsc", "--platform=ptrace", "--network=none", "do"],
    "qemu-user": ["qemu-x86_64"],
}
# Debian package that brings each peer (`make bench` installs the missing ones).
PACKAGES = {"proot": "proot", "runsc": "runsc", "qemu-user": "qemu-user"}


def workloads() -> list[tuple[str, list[str]]]:
    """(label, argv) of every workload, in the table's row order."""
    return [
        ("static hello", [str(BENCH_BIN / "hello")]),
        ("dynamic `/bin/true`", ["/bin/true"]),
        ("`ls -la /etc`", ["/bin/ls", "-la", "/etc"]),
        ("`python3 -c pass`", ["/usr/bin/python3", "-c", "pass"]),
        ("getpid loop, 20,000 calls", [str(BENCH_BIN / "getpid_loop"), "20000"]),
        ("memtouch: mmap, touch, munmap 256 MiB", [str(BENCH_BIN / "pagefault"), "1"]),
    ]


def command(tool: str, argv: list[str]) -> list[str]:
    prefix = TOOLS[tool]
    if prefix is None:
        return [*cli_command(), "run", "--platform", tool, "--", *argv]
    return [*prefix, *argv]


def why_unusable(tool: str) -> str | None:
    """Why `tool` cannot run here (None: it can)."""
    prefix = TOOLS[tool]
    if prefix is None:
        return None
    if shutil.which(prefix[0]) is None:
        return f"{prefix[0]} not installed (apt-get install {PACKAGES[tool]})"
    if tool == "runsc" and os.geteuid() != 0:
        return "runsc do needs root"
    return None


def _comparable(out: bytes, argv: list[str]) -> bytes:
    """What must match native: the output itself, except `ls -la`'s sizes and times, which a
    sandbox's own /etc view may report differently; there, the names and kinds."""
    if argv[0] != "/bin/ls":
        return out
    return b"\n".join(b" ".join(line.split()[:1] + line.split()[8:]) for line in out.splitlines()[1:])


def measure(argvs: list[tuple[str, list[str]]], tools: list[str]) -> dict[tuple[str, str], tuple[float | None, str]]:
    """{(workload, tool): (median ns or None, reason)} with native as tool "native".  Runs are
    interleaved round by round, so every tool meets the same machine state."""
    out: dict[tuple[str, str], tuple[float | None, str]] = {}
    for label, argv in argvs:
        native = subprocess.run(argv, capture_output=True, timeout=TIMEOUT, cwd=ROOT)
        want = _comparable(native.stdout, argv)
        samples: dict[str, list[int]] = {t: [] for t in ["native", *tools]}
        failed: dict[str, str] = {t: why for t in tools if (why := why_unusable(t))}
        for _ in range(RUNS):
            for t in samples:
                if t in failed:
                    continue
                cmd = argv if t == "native" else command(t, argv)
                t0 = time.perf_counter_ns()
                try:
                    r = subprocess.run(cmd, capture_output=True, timeout=TIMEOUT, cwd=ROOT)
                except subprocess.TimeoutExpired:
                    failed[t] = f"no answer in {TIMEOUT} s"
                    continue
                dt = time.perf_counter_ns() - t0
                if r.returncode != 0 or _comparable(r.stdout, argv) != want:
                    last = (r.stderr.decode(errors="replace").strip().splitlines() or [""])[-1][:80]
                    failed[t] = f"exit {r.returncode}" + (f": {last}" if last else "") \
                        if r.returncode else "output differs from native"
                    continue
                samples[t].append(dt)
        for t, s in samples.items():
            if t in failed:
                out[(label, t)] = (None, failed[t])
            else:
                s.sort()
                out[(label, t)] = (float(s[len(s) // 2]), "")
    return out


def machine_line() -> str:
    """CPU model, hypervisor behind /dev/kvm, host kernel and cores of this machine."""
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    if not os.path.exists("/dev/kvm"):
        hv = "no /dev/kvm"
    elif os.path.isdir("/sys/module/kvm_pvm"):
        hv = "PVM (kvm_pvm, software world switches)"
    else:
        hv = "KVM on VMX/SVM"
    return f"{cpu}, {hv}, Linux {platform.release()}, {os.cpu_count()} cores"
