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
