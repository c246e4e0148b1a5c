#!/usr/bin/env python3
"""Where a cold `kvmbox run /bin/true` spends its time (issue 11), as ratios to a bare start.

Each step below is a new process of the same interpreter, started interleaved round by
round so that load on a shared machine hits every step alike; each figure is the median
CPU time (user + system of the child, from wait4) and wall time:

  bare        python -c pass                       the floor any Python tool pays
  stdlib      python -c 'import <the stdlib modules a run imports>'
  imports     python -c 'import <every module a run imports>'   (kvmbox's own too)
  run-kvm     python -m kvmbox run --platform kvm /bin/true
  run-ptrace  python -m kvmbox run --platform ptrace /bin/true

The module lists come from one run in a child process (sys.modules after it), so they
follow the code. The syscall index cache (kvmbox/sentry/syscalls/table.py) is warmed by
a first, untimed run.

    .venv/bin/python benchmarks/probes/cold_start.py [--rounds N]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RUN = ["-m", "kvmbox", "run", "--platform"]

_LIST = """
import sys, json
before = set(sys.modules)
sys.argv = ['kvmbox', 'run', '--platform', 'kvm', '--', '/bin/true']
from kvmbox.cli import main
try:
    main()
except SystemExit:
    pass
new = sorted(set(sys.modules) - before)
print(json.dumps(new))
"""


def modules_of_a_run() -> tuple[list[str], list[str]]:
    """(stdlib modules, kvmbox modules) that one cold run imports beyond a bare start."""
    out = subprocess.run([sys.executable, "-c", _LIST], capture_output=True, text=True,
                         cwd=ROOT, check=True).stdout
    names = json.loads(out.strip().splitlines()[-1])
    ours = [n for n in names if n.split(".")[0] == "kvmbox"]
    theirs = [n for n in names if n.split(".")[0] != "kvmbox" and not n.startswith("_")
              and n != "__main__"]
    return theirs, ours


def one(argv: list[str]) -> tuple[float, float]:
    """(wall ms, cpu ms) of one child, its output thrown away."""
    t0 = time.perf_counter()
    with open(os.devnull, "wb") as null:
        p = subprocess.Popen(argv, stdout=null, stderr=null, cwd=ROOT)
        _, status, usage = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
    wall = (time.perf_counter() - t0) * 1000
    if p.returncode != 0:
        raise SystemExit(f"cold_start: {' '.join(argv)} exited {p.returncode}")
    return wall, (usage.ru_utime + usage.ru_stime) * 1000


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=15)
    ns = ap.parse_args()
    stdlib, ours = modules_of_a_run()
    py = sys.executable
    steps = {
        "bare": [py, "-c", "pass"],
        "stdlib": [py, "-c", "import " + ", ".join(stdlib)],
        "imports": [py, "-c", "import " + ", ".join(stdlib + ours)],
        "run-kvm": [py, *RUN, "kvm", "/bin/true"],
        "run-ptrace": [py, *RUN, "ptrace", "/bin/true"],
    }
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        del steps["run-kvm"]
    one(steps.get("run-kvm", steps["run-ptrace"]))           # warm the caches
    got: dict[str, list[tuple[float, float]]] = {k: [] for k in steps}
    for _ in range(ns.rounds):
        for k, argv in steps.items():
            got[k].append(one(argv))
    med = {k: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v))
           for k, v in got.items()}
    bw, bc = med["bare"]
    print(f"{len(stdlib)} stdlib and {len(ours)} kvmbox modules; {ns.rounds} rounds, medians")
    print("| step | wall ms | × bare | cpu ms | × bare |")
    print("|---|---|---|---|---|")
    for k, (w, c) in med.items():
        print(f"| {k} | {w:.1f} | {w / bw:.1f}× | {c:.1f} | {c / bc:.1f}× |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
