"""Timers as scripting languages use them: Python's signal.alarm, setitimer, getitimer and
pause, and perl's alarm, compared with the native run (outcome and output)."""
from __future__ import annotations

import shutil
import signal

import pytest

from helpers import assert_same_outcome, run_native, run_sandbox

PYTHON = "/usr/bin/python3"

SCRIPTS = {
    # The reproduction: natively killed by SIGALRM after 1 s; it used to wait forever.
    "alarm-pause": "import signal; signal.alarm(1); signal.pause()",
    "alarm-handler": (
        "import signal\n"
        "signal.signal(signal.SIGALRM, lambda s, f: print('alarm', s))\n"
        "print('remaining before', signal.alarm(1), signal.alarm(1))\n"
        "signal.pause()\n"
        "print('after pause', signal.alarm(0))\n"),
    "setitimer-periodic": (
        "import signal\n"
        "n = []\n"
        "signal.signal(signal.SIGALRM, lambda s, f: n.append(s))\n"
        "signal.setitimer(signal.ITIMER_REAL, 0.02, 0.02)\n"
        "while len(n) < 5:\n"
        "    signal.pause()\n"
        "value, interval = signal.getitimer(signal.ITIMER_REAL)\n"
        "print(len(n), 0 < value <= 0.02, interval)\n"
        "print(signal.setitimer(signal.ITIMER_REAL, 0)[1], signal.getitimer(signal.ITIMER_REAL))\n"),
    "setitimer-virtual": (
        "import signal, time\n"
        "hit = []\n"
        "signal.signal(signal.SIGVTALRM, lambda s, f: hit.append(time.process_time()))\n"
        "start = time.process_time()\n"
        "signal.setitimer(signal.ITIMER_VIRTUAL, 0.1)\n"
        "while not hit:\n"
        "    pass\n"
        "print('fired after >= 50 ms of CPU', hit[0] - start >= 0.05)\n"),
    "itimer-error": (
        "import signal\n"
        "try:\n"
        "    signal.setitimer(99, 1)\n"
        "except signal.ItimerError as e:\n"
        "    print('ItimerError', e.errno)\n"),
    "unittest-timeout": (
        # the pattern test frameworks use: a SIGALRM handler raising out of a stuck test
        "import signal, time\n"
        "class Timeout(Exception): pass\n"
        "def on_alarm(s, f): raise Timeout()\n"
        "signal.signal(signal.SIGALRM, on_alarm)\n"
        "signal.setitimer(signal.ITIMER_REAL, 0.2)\n"
        "try:\n"
        "    time.sleep(30)\n"
        "except Timeout:\n"
        "    print('timed out as asked')\n"),
}


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_python_timers(name, sandbox):
    native = run_native(PYTHON, ("-c", SCRIPTS[name]))
    if name == "alarm-pause":
        assert native.signal == signal.SIGALRM, native.describe()
    else:
        assert native.exit_code == 0, native.stdout + native.stderr
    boxed = run_sandbox(PYTHON, ("-c", SCRIPTS[name]), sandbox=sandbox)
    assert_same_outcome(native, boxed, what=f"python3 {name}")


@pytest.mark.skipif(shutil.which("perl") is None, reason="perl is not installed")
@pytest.mark.parametrize("script", [
    "alarm 1; while (1) {}",
    "$SIG{ALRM} = sub { print \"alarm\\n\"; exit 3 }; alarm 1; sleep 10; print \"not reached\\n\"",
])
def test_perl_alarm(script, sandbox):
    perl = shutil.which("perl")
    native = run_native(perl, ("-e", script))
    boxed = run_sandbox(perl, ("-e", script), sandbox=sandbox)
    assert native.signal or native.exit_code == 3, native.describe()
    assert_same_outcome(native, boxed, what=f"perl -e {script!r}")
