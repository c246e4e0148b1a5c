"""Run a program natively and in the sandbox, the same way, and compare.

The native run defines the truth. Both sides get the same argv (argv[0] is
the program path), the same explicit environment and the same stdin bytes;
stdin, stdout and stderr are pipes on the native side. A native program starts
as a sandboxed one does: every signal at its default disposition and none
blocked, whatever the test runner inherited (a background job of a
non-interactive shell ignores SIGINT and SIGQUIT; nohup ignores SIGHUP).

    native = run_native(path, ["a"], stdin=b"x")
    boxed = run_sandbox(path, ["a"], stdin=b"x", sandbox=sb)
    assert_same_outcome(native, boxed)
"""
from __future__ import annotations

import difflib
import os
import resource
import signal as _signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

REPO = Path(__file__).resolve().parent.parent
TESTS = REPO / "tests"
PROGRAMS_DIR = TESTS / "programs"
PROGRAMS_BIN = PROGRAMS_DIR / "bin"
BUILDS = ("glibc", "pie", "musl")

# The environment both sides get unless a test passes its own.
TEST_ENV: dict[str, str] = {"PATH": "/usr/bin:/bin", "LC_ALL": "C"}


@dataclass(frozen=True)
class Outcome:
    """How one run ended. exit_code is 128+signal when a signal killed it."""
    exit_code: int
    signal: int
    stdout: bytes
    stderr: bytes

    def describe(self) -> str:
        how = f"killed by signal {self.signal}" if self.signal else f"exit status {self.exit_code}"
        return how


def _raw_default(sig: int) -> None:
    """rt_sigaction(sig, SIG_DFL) as a raw syscall, for the numbers libc's sigaction refuses."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    action = (ctypes.c_ulong * 4)()          # struct kernel_sigaction, all zero: SIG_DFL
    libc.syscall(13, sig, ctypes.byref(action), None, 8)       # x86-64 rt_sigaction


def native_preexec(rlimits: Mapping[int, tuple[int, int]] | None = None) -> None:
    """subprocess preexec_fn for every native run a test compares: default signal
    dispositions and an empty signal mask, as the sandbox starts its programs.  Resource
    limits are inherited on both sides (the Sentry is this process), or set to `rlimits`."""
    for sig in range(1, _signal.NSIG):
        if sig in (_signal.SIGKILL, _signal.SIGSTOP):
            continue
        try:
            _signal.signal(sig, _signal.SIG_DFL)
        except (OSError, ValueError):      # 32 and 33: glibc keeps them for itself
            _raw_default(sig)
    _signal.pthread_sigmask(_signal.SIG_SETMASK, ())
    for res, pair in (rlimits or {}).items():
        resource.setrlimit(res, pair)


def run_native(path: str | os.PathLike, args: Sequence[str] = (), stdin: bytes = b"",
               env: Mapping[str, str] | None = None, timeout: float = 30,
               cwd: str | os.PathLike | None = None,
               rlimits: Mapping[int, tuple[int, int]] | None = None) -> Outcome:
    """Run path natively with pipes for stdin/stdout/stderr (and `rlimits` set, if given).

    env=None means TEST_ENV (never the caller's own environment), so that the
    native and sandboxed runs see the same variables.
    """
    argv = [str(path), *args]
    proc = subprocess.run(argv, input=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          env=dict(TEST_ENV if env is None else env), timeout=timeout,
                          preexec_fn=lambda: native_preexec(rlimits), check=False, cwd=cwd)
    rc = proc.returncode
    if rc < 0:
        return Outcome(128 - rc, -rc, proc.stdout, proc.stderr)
    return Outcome(rc, 0, proc.stdout, proc.stderr)


def pid_namespace_prefix() -> tuple[list[str] | None, str]:
    """The command prefix that runs a program as pid 1 of a new pid namespace with its own
    /proc (`unshare --pid --fork --mount-proc`): where the sandbox puts its first program,
    so that orphans come back to it, kill(-1) reaches only its descendants and /proc lists
    only them.  (None, why) on a host that cannot make one."""
    import shutil
    unshare = shutil.which("unshare")
    if unshare is None:
        return None, "util-linux unshare(1) is not installed"
    prefix = [unshare, "--pid", "--fork", "--mount-proc", "--kill-child"]
    probe = subprocess.run([*prefix, "/bin/true"], capture_output=True, check=False)
    if probe.returncode != 0:
        return None, f"this host cannot create a pid namespace ({probe.stderr.decode(errors='replace').strip()})"
    return prefix, ""


def run_native_as_init(prefix: Sequence[str], path: str | os.PathLike, args: Sequence[str] = (),
                       **kw) -> Outcome:
    """run_native(path, args, **kw) as pid 1 of a fresh pid namespace (pid_namespace_prefix)."""
    return run_native(prefix[0], [*prefix[1:], str(path), *args], **kw)


def run_sandbox(path: str | os.PathLike, args: Sequence[str] = (), stdin: bytes = b"",
                env: Mapping[str, str] | None = None, timeout: float = 30,
                platform: str = "kvm", sandbox=None, cwd: str | None = None) -> Outcome:
    """Run path in a kvmbox Sandbox; the same conventions as run_native.

    Pass sandbox= (e.g. the session `sandbox` fixture) to reuse one VM;
    otherwise a fresh Sandbox(platform=platform) is made for this run.
    """
    argv = [str(path), *args]
    env = dict(TEST_ENV if env is None else env)
    if sandbox is not None:
        r = sandbox.run(argv, stdin=stdin, env=env, timeout=timeout,
                        **({"cwd": cwd} if cwd is not None else {}))
    else:
        import kvmbox
        with kvmbox.Sandbox(platform=platform, timeout=timeout) as sb:
            r = sb.run(argv, stdin=stdin, env=env, timeout=None,
                       **({"cwd": cwd} if cwd is not None else {}))
    return Outcome(r.exit_code, r.signal, r.stdout, r.stderr)


def run_cli(args: Sequence[str], stdin: bytes = b"", timeout: float = 120,
            env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess:
    """`python -m kvmbox ARGS...` from the repository root, output captured."""
    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = str(REPO) + os.pathsep + full_env.get("PYTHONPATH", "")
    if env:
        full_env.update(env)
    return subprocess.run([sys.executable, "-m", "kvmbox", *args], input=stdin,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO,
                          env=full_env, timeout=timeout, check=False)


def kvmbox_command(platform: str, *opts: str) -> str:
    """`python -m kvmbox run --platform P OPTS...` as a shell command prefix (run_shell)."""
    import shlex
    return " ".join([shlex.quote(sys.executable), "-m", "kvmbox", "run", "--platform", platform,
                     *opts])


def run_shell(cmd: str, cwd: str | os.PathLike, tty: bool = False, stdin: bytes = b"",
              timeout: float = 120) -> subprocess.CompletedProcess:
    """`cmd` through bash, with TEST_ENV and kvmbox importable, output captured; with `tty`
    inside `script -qec`, whose pty is every standard stream of cmd (stdin: /dev/null)."""
    env = dict(TEST_ENV)
    env["PYTHONPATH"] = str(REPO)
    argv = ["script", "-qec", cmd, "/dev/null"] if tty else ["bash", "-c", cmd]
    return subprocess.run(argv, input=None if tty else stdin,
                          stdin=subprocess.DEVNULL if tty else None, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, cwd=cwd, env=env, timeout=timeout, check=False)


def kvm_usable() -> bool:
    """True when /dev/kvm opens read-write."""
    try:
        fd = os.open("/dev/kvm", os.O_RDWR)
    except OSError:
        return False
    os.close(fd)
    return True


def build_programs(jobs: int = 2) -> tuple[bool, str]:
    """make -C tests/programs -jN; returns (ok, combined output)."""
    proc = subprocess.run(["make", "-C", str(PROGRAMS_DIR), f"-j{jobs}"], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, check=False)
    return proc.returncode == 0, proc.stdout.decode(errors="replace")


def program_names() -> list[str]:
    """Every test program (NAME for each tests/programs/NAME.c)."""
    return sorted(p.stem for p in PROGRAMS_DIR.glob("*.c"))


def _text(data: bytes) -> list[str]:
    return data.decode("utf-8", errors="backslashreplace").splitlines(keepends=True)


def diff_text(expected: bytes, actual: bytes, a: str = "native", b: str = "sandbox") -> str:
    return "".join(difflib.unified_diff(_text(expected), _text(actual), a, b))


def assert_same_outcome(native: Outcome, boxed: Outcome, what: str = "program",
                        compare_stderr: bool = False) -> None:
    """Exit status and stdout must match byte for byte; a diff on mismatch."""
    problems = []
    if (native.exit_code, native.signal) != (boxed.exit_code, boxed.signal):
        problems.append(f"native: {native.describe()}, sandbox: {boxed.describe()}")
    if native.stdout != boxed.stdout:
        problems.append("stdout differs:\n" + diff_text(native.stdout, boxed.stdout))
    if compare_stderr and native.stderr != boxed.stderr:
        problems.append("stderr differs:\n" + diff_text(native.stderr, boxed.stderr))
    if problems:
        tail = boxed.stderr[-2000:].decode(errors="replace")
        raise AssertionError(f"{what}: " + "\n".join(problems) +
                             (f"\n--- sandbox stderr (tail) ---\n{tail}" if tail else ""))


def signal_name(sig: int) -> str:
    try:
        return _signal.Signals(sig).name
    except ValueError:
        return str(sig)


# --- the host state a run must leave as it found it (limits and security tests) ----------
def host_threads() -> int:
    """Threads of this (the Sentry's) process."""
    return len(os.listdir("/proc/self/task"))


def host_fds() -> int:
    """Host fds of this process, less the KVM vCPUs: the platform's vCPU pool may grow (to
    its bound) when a later run happens to keep more tasks running at once."""
    n = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}").startswith("anon_inode:kvm-vcpu"):
                continue
        except OSError:
            continue
        n += 1
    return n


def host_children() -> set[int]:
    """Child processes of any thread of this process (ptrace stubs, helpers)."""
    kids: set[int] = set()
    for task in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{task}/children") as f:
                kids |= {int(c) for c in f.read().split()}
        except OSError:
            pass
    return kids


def settled(check, seconds: float = 5.0) -> bool:
    """Poll check() until it is true (True) or `seconds` pass (False)."""
    import time
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True
