"""What the sandbox says about the machine, compared with native: the CPUs it may use,
the resource limits it starts with, the capabilities of its credentials."""
from __future__ import annotations

import os

import pytest

from helpers import assert_same_outcome, run_native, run_sandbox

PY = "/usr/bin/python3"

_CPU_PROBE = """
import os
print("os.cpu_count", os.cpu_count())
print("sched_getaffinity", len(os.sched_getaffinity(0)))
print("SC_NPROCESSORS_CONF", os.sysconf("SC_NPROCESSORS_CONF"))
print("cpuinfo processors", sum(l.startswith("processor") for l in open("/proc/cpuinfo")))
print("stat cpuN lines", sum(l[:3] == "cpu" and l[3].isdigit() for l in open("/proc/stat")))
for name in ("online", "possible", "present"):
    print(name, open("/sys/devices/system/cpu/" + name).read().strip())
print([l.split(":")[1].strip() for l in open("/proc/self/status") if l.startswith("Cpus_allowed_list")][0])
"""


@pytest.mark.parametrize("argv", [["/usr/bin/nproc"], ["/usr/bin/getconf", "_NPROCESSORS_ONLN"],
                                  ["/usr/bin/getconf", "_NPROCESSORS_CONF"], [PY, "-c", _CPU_PROBE]],
                         ids=["nproc", "getconf-onln", "getconf-conf", "python"])
def test_cpus_are_the_ones_the_sandbox_may_use(argv, sandbox):
    """The sandbox has as many CPUs as the host lets it use (its affinity), numbered from 0,
    and every interface agrees.  Natively the same when the runner may use every online CPU
    (make test here and in CI); under taskset the native online count is larger, so then
    every count must be the affinity's."""
    native = run_native(argv[0], argv[1:])
    boxed = run_sandbox(argv[0], argv[1:], sandbox=sandbox)
    allowed = len(os.sched_getaffinity(0))
    if allowed == os.cpu_count():
        assert_same_outcome(native, boxed, what=" ".join(argv[:2]))
        return
    cpus = "0" if allowed == 1 else f"0-{allowed - 1}"
    for line in boxed.stdout.decode().splitlines():
        assert line.split()[-1] in (str(allowed), cpus), boxed.stdout


# --- resource limits ---------------------------------------------------------------------
_LIMIT_TOOLS = {
    "sh-ulimit-soft": ["/bin/sh", "-c", "ulimit -a"],
    "sh-ulimit-hard": ["/bin/sh", "-c", "ulimit -H -a"],
    "prlimit": ["/usr/bin/prlimit", "--raw", "--noheadings", "--output=RESOURCE,SOFT,HARD"],
}


@pytest.mark.parametrize("tool", _LIMIT_TOOLS)
def test_program_starts_with_the_invokers_limits(tool, sandbox):
    """As a native exec: the limits of the process that started kvmbox (RLIMIT_NOFILE was
    1024/1024 whatever the shell had); RLIMIT_AS too, which --memory does not set (it
    counts address space, not committed memory)."""
    argv = _LIMIT_TOOLS[tool]
    native = run_native(argv[0], argv[1:])
    boxed = run_sandbox(argv[0], argv[1:], sandbox=sandbox)
    assert_same_outcome(native, boxed, what=tool)


def _lowered() -> dict[int, tuple[int, int]]:
    """Limits a process may set for itself here (at most the current hard limits)."""
    import resource as R
    out = {}
    for res, soft, hard in ((R.RLIMIT_NOFILE, 256, 1024), (R.RLIMIT_NPROC, 100, 200),
                            (R.RLIMIT_FSIZE, 1 << 30, 1 << 31), (R.RLIMIT_CORE, 0, 4096)):
        cur_hard = R.getrlimit(res)[1]
        cap = (lambda v: v) if cur_hard == R.RLIM_INFINITY else (lambda v: min(v, cur_hard))
        out[res] = (cap(soft), cap(hard))
    return out


@pytest.mark.parametrize("form", ["mapping", "strings"])
def test_ulimits_set_the_limits_as_setrlimit_would(form, sandbox):
    import resource as R
    names = {R.RLIMIT_NOFILE: "nofile", R.RLIMIT_NPROC: "nproc", R.RLIMIT_FSIZE: "fsize",
             R.RLIMIT_CORE: "core"}
    limits = _lowered()
    ulimits = ({names[r]: pair for r, pair in limits.items()} if form == "mapping"
               else [f"{names[r]}={s}:{h}" for r, (s, h) in limits.items()])
    argv = _LIMIT_TOOLS["prlimit"]
    native = run_native(argv[0], argv[1:], rlimits=limits)
    r = sandbox.run(argv, env={"PATH": "/usr/bin:/bin", "LC_ALL": "C"}, ulimits=ulimits)
    assert r.exit_code == 0, r.stderr
    assert r.stdout == native.stdout


def test_descriptors_follow_rlimit_nofile(sandbox):
    """EMFILE exactly at the soft RLIMIT_NOFILE, whatever it is (it was capped at 1024)."""
    probe = ("import os\nn = 0\ntry:\n    while True:\n        os.open('/dev/null', 0); n += 1\n"
             "except OSError as e:\n    print(e.errno, n + 3)\n")
    for nofile in (100, 3000):
        limits = {7: (nofile, nofile)}
        native = run_native(PY, ["-c", probe], rlimits=limits)
        r = sandbox.run([PY, "-c", probe], ulimits={"nofile": nofile})
        assert (r.exit_code, r.stdout) == (0, native.stdout), r.stderr


@pytest.mark.parametrize("spec", ["nofile=abc", "bogus=1", "nofile=5:4", "nofile=unlimited",
                                  "nofile", "stack=-5", "core=1:2:3"])
def test_bad_ulimit_is_one_line_and_125(spec):
    import helpers
    proc = helpers.run_cli(["run", "--ulimit", spec, "/bin/true"])
    err = proc.stderr.decode()
    assert proc.returncode == 125 and err.count("\n") == 1 and "bad ulimit" in err, err


def test_cli_ulimit(platform_name):
    import helpers
    proc = helpers.run_cli(["run", "--platform", platform_name, "--ulimit", "nofile=300:400",
                            "--ulimit", "core=unlimited", "/bin/sh", "-c",
                            "ulimit -n; ulimit -H -n; ulimit -c"])
    assert (proc.returncode, proc.stdout) == (0, b"300\n400\nunlimited\n"), proc.stderr
