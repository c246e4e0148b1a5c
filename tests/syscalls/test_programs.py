"""Each C program under tests/programs, in each build (glibc static, static-pie,
musl, dynamic), run natively and in the KVM sandbox: exit status and stdout must match
byte for byte. The native run defines the truth (and is checked to succeed).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import pytest

import helpers
from helpers import BUILDS, assert_same_outcome, run_native, run_sandbox


@dataclass(frozen=True)
class Case:
    program: str
    args: tuple[str, ...] = ()
    stdin: bytes = b""
    env: dict = field(default_factory=lambda: dict(helpers.TEST_ENV))
    expect_exit: int = 0          # what the native run must give
    name: str = ""

    @property
    def id(self) -> str:
        return self.name or self.program


_STDIN_TEXT = b"".join(b"line %d: the quick brown fox jumps over the lazy dog\n" % i for i in range(200))
_STDIN_BINARY = bytes(range(256)) * 300 + b"\x00tail without newline"

CASES = [
    Case("hello"),
    Case("exit42", expect_exit=42),
    Case("exit42", ("exit_group",), expect_exit=42, name="exit42-exit_group"),
    Case("exit42", ("exit",), expect_exit=42, name="exit42-exit"),
    Case("args"),
    Case("args", ("one", "two words", "", "x=y", "ünïcödé"),
         env={**helpers.TEST_ENV, "KVMBOX_TEST_VAR": "hello sandbox", "EMPTY": ""},
         name="args-env"),
    Case("io"),
    Case("io", stdin=b"hello world, this is stdin\n", name="io-stdin"),
    Case("stdin_sum"),
    Case("stdin_sum", stdin=b"abc\n", name="stdin_sum-small"),
    Case("stdin_sum", stdin=_STDIN_TEXT, name="stdin_sum-text"),
    Case("stdin_sum", stdin=_STDIN_BINARY, name="stdin_sum-binary"),
    Case("mem"),
    Case("mremap"),
    Case("mmtail"),
    Case("mmedge", ("/dev/shm",)),
    Case("forkmem", ("/dev/shm",)),
    Case("mapmany", ("2000",)),
    Case("sigstack"),
    Case("sigquery"),
    Case("aslimit"),
    Case("ids"),
    Case("caps"),
    Case("time"),
    Case("timers"),
    Case("timerfd"),
    Case("signalfd"),
    Case("random"),
    Case("tty"),
    Case("stat"),
    Case("limits"),
    Case("signals"),
    Case("sigs"),
    Case("sigfault"),
    Case("gpfault"),
    Case("futex"),
    Case("futexes"),
    Case("pthreads"),
    Case("sched"),
    Case("threadstress", ("/tmp", "40")),      # the long run is in `make bench`
    Case("spinbar"),
    Case("threadhostile"),
    Case("misc"),
    Case("fpmath"),
    Case("malloc"),
    Case("procfs", ("one", "two words", "")),
    Case("mmapfile", ("/tmp",)),
    Case("mmapeof", ("/dev/shm",)),
    Case("mmapeof", ("/tmp",), name="mmapeof-tmp"),
    Case("cowtext", ("/usr/bin/true",)),
    Case("files", ("/tmp",)),
    Case("dirs", ("/tmp",)),
    Case("fdops", ("/tmp",)),
    Case("locks", ("/tmp",)),
    Case("locks_fork", ("/tmp",)),
    Case("pipes"),
    Case("unixsock", ("/tmp",)),                         # socket files in the overlay's upper
    Case("unixsock", ("/dev/shm",), name="unixsock-shm"),   # ... and on a tmpfs
    # AF_INET/AF_INET6 on 127.0.0.1 and ::1 only (never another address, natively or not)
    Case("inetsock", ("tcp",), name="inetsock-tcp"),
    Case("inetsock", ("errors",), name="inetsock-errors"),
    Case("inetsock", ("opts",), name="inetsock-opts"),
    Case("inetsock", ("udp",), name="inetsock-udp"),
    Case("inetsock", ("more",), name="inetsock-more"),
    Case("inetsock", ("extra",), name="inetsock-extra"),
    Case("inetsock", ("inherit",), name="inetsock-inherit"),
    Case("inetsock", ("queued",), name="inetsock-queued"),
    Case("inetsock", ("backlog",), name="inetsock-backlog"),   # about 1 s natively per family
    Case("inetsock", ("blocking",), name="inetsock-blocking"),
    Case("reopen", stdin=b"hello there stdin\n"),
    Case("poll"),
    Case("epoll"),
    Case("exec"),
    Case("tmpfile", ("/dev/shm",)),
    Case("tmpfile", ("/tmp",), name="tmpfile-tmp"),     # the root overlay's upper layer
    Case("xattrs", ("/dev/shm",)),
    Case("timestamps", ("/dev/shm",)),
    Case("timestamps", ("/tmp",), name="timestamps-tmp"),   # entries born in the overlay's upper
]

# Every build also runs dynamically linked (bin/dynamic: through the host's ld.so and libc,
# found in the sandbox's file system).
PROGRAM_BUILDS = (*BUILDS, "dynamic")
PARAMS = [pytest.param(c, b, id=f"{c.id}-{b}") for c in CASES for b in PROGRAM_BUILDS]


# Programs exercised by other modules (fatal faults, timeouts and limits: test_faults_limits.py;
# the memory fuzzer: test_memfuzz.py).
OTHER_MODULES = {"faults", "spin", "memhog", "sysfuzz", "vdso_clock", "memfuzz"}
# File systems bounded by --memory, against a private native tmpfs (test_fsspace.py).
OTHER_MODULES |= {"fsspace"}
# Signal default actions, one outcome per run (test_signals.py).
OTHER_MODULES |= {"sigdefault"}
# Waits that only a timeout or kill can end (test_blocking.py).
OTHER_MODULES |= {"block"}
# The standard streams as host files, pipes, ttys ... through the CLI (test_stdio.py).
OTHER_MODULES |= {"stdio"}
# RLIMIT_FSIZE on each kind of file, SIGXFSZ caught, ignored or fatal (test_fsize.py).
OTHER_MODULES |= {"fsize"}
# Timer signals that end a program, and the high-rate stress (test_timers.py).
OTHER_MODULES |= {"timerdie", "timerstress"}
# File-system escape attempts, run only in the sandbox (tests/security/test_fs_escape.py).
OTHER_MODULES |= {"escape_dev", "escape_links", "escape_paths", "escape_proc", "escape_race",
                  "escape_ro", "escape_root", "escape_setid"}
# The standard streams as a way out, and random calls on them (tests/security/test_stream_*.py).
OTHER_MODULES |= {"escape_stdio", "streamfuzz"}
# Processes, as pid 1 of a pid namespace natively (test_processes.py).
OTHER_MODULES |= {"procs"}
# Forks until EAGAIN under a pids limit (tests/real/test_process_limits.py).
OTHER_MODULES |= {"forkcount"}
# Runs a program from a forked child or grandchild (tests/security/test_fs_escape.py).
OTHER_MODULES |= {"forkrun"}
# Creates threads until EAGAIN under a pids limit (tests/security/test_thread_limits.py).
OTHER_MODULES |= {"threadbomb"}


def test_every_program_has_a_case():
    covered = {c.program for c in CASES} | OTHER_MODULES
    missing = sorted(set(helpers.program_names()) - covered)
    assert not missing, f"tests/programs without a case in test_programs.py: {missing}"


@pytest.mark.parametrize("case,build", PARAMS)
def test_native_vs_sandbox(case: Case, build: str, test_programs, sandbox):
    path = test_programs / build / case.program
    native = run_native(path, case.args, stdin=case.stdin, env=case.env)
    assert native.exit_code == case.expect_exit and native.signal == 0, (
        f"the native run itself failed ({native.describe()}); "
        f"stdout:\n{native.stdout.decode(errors='replace')}")
    boxed = run_sandbox(path, case.args, stdin=case.stdin, env=case.env, sandbox=sandbox)
    assert_same_outcome(native, boxed, what=f"{build}/{case.program} {' '.join(case.args)}".strip())


@pytest.mark.parametrize("program,args,expect_exit", [
    ("hello", (), 0),
    ("exit42", ("exit_group",), 42),
])
def test_cli_run_matches_native(program, args, expect_exit, test_programs, platform_name):
    """`python -m kvmbox run PROGRAM ARGS`: the CLI's exit status is the program's."""
    path = test_programs / "glibc" / program
    native = run_native(path, args)
    assert native.exit_code == expect_exit
    proc = helpers.run_cli(["run", "--platform", platform_name, str(path), *args])
    assert proc.returncode == native.exit_code, proc.stderr.decode(errors="replace")[-2000:]
    assert proc.stdout == native.stdout, helpers.diff_text(native.stdout, proc.stdout, "native", "cli")


def test_mmapeof_default_action_is_sigbus(test_programs, sandbox):
    """A page wholly past EOF touched with SIGBUS's default action: killed by SIGBUS (135)."""
    import signal
    path = test_programs / "glibc" / "mmapeof"
    native = run_native(path, ("/dev/shm", "die"))
    assert native.signal == signal.SIGBUS, native.describe()
    boxed = run_sandbox(path, ("/dev/shm", "die"), sandbox=sandbox)
    assert_same_outcome(native, boxed, what="mmapeof /dev/shm die")


def test_mmapeof_on_a_host_mount(tmp_path, test_programs, platform_name):
    """mmapeof on a read-write host mount: the host-file mappings (private copies, shared
    pages written back) raise SIGBUS past EOF the same way."""
    import kvmbox
    prog = test_programs / "glibc" / "mmapeof"
    native_dir, host_dir = tmp_path / "native", tmp_path / "mounted"
    native_dir.mkdir()
    host_dir.mkdir()
    native = run_native(prog, (str(native_dir),))
    assert native.exit_code == 0, native.stdout.decode(errors="replace")
    with kvmbox.Sandbox(platform=platform_name, timeout=60, mounts=[f"{host_dir}:/mnt/eof:rw"]) as sb:
        r = sb.run([str(prog), "/mnt/eof"])
    boxed = type(native)(r.exit_code, r.signal, r.stdout, r.stderr)
    assert_same_outcome(native, boxed, what="mmapeof on a host mount")
    assert list(host_dir.iterdir()) == []
