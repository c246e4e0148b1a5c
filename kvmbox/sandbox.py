"""The embedding API: Sandbox (a context manager owning one platform and kernel) and Result."""
from __future__ import annotations

import os
import re
import threading
from collections.abc import Mapping, Sequence

from kvmbox.errors import KvmboxError, ProgramNotFound, SandboxCrash
from kvmbox.record import field, record
from kvmbox.sentry.files import CAPTURE_LIMIT, BytesInput, CaptureOutput, FileDescription

DEFAULT_MEMORY = 2 << 30
DEFAULT_PIDS_LIMIT = 512          # tasks alive at once (docker and runsc leave it unlimited)
DEFAULT_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root"}
_SIZE = re.compile(r"^\s*(\d+)\s*([kKmMgGtT]?)[iI]?[bB]?\s*$")


def parse_size(text: str | int) -> int:
    """'512M', '2G', '1048576' -> bytes."""
    if isinstance(text, int):
        return text
    m = _SIZE.match(text)
    if not m:
        raise KvmboxError(f"kvmbox: bad size {text!r} (use e.g. 512M or 2G)")
    mult = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}[m.group(2).lower()]
    return int(m.group(1)) * mult


@record
class Result:
    """How one program run in a Sandbox ended."""
    exit_code: int              # the program's exit status, or 128+signal if it was killed
    signal: int                 # the signal that killed it, 0 if it exited
    stdout: bytes = b""
    stderr: bytes = b""
    timed_out: bool = False
    report: str | None = None   # one-line description of a fatal fault
    notices: list[str] = field(default_factory=list)   # kvmbox's own messages (unsupported syscalls ...)
    core: bool = False          # the killing signal's default action dumps core (SIGABRT, SIGSEGV ...)
    truncated: list[str] = field(default_factory=list)  # captured streams cut at the capture limit


def _capture_limit(value: int | str) -> int:
    limit = parse_size(value)
    if limit < 0:
        raise KvmboxError(f"kvmbox: bad capture limit {value!r}")
    return limit


MOUNT_SYNTAX = "HOST:GUEST[:ro|rw[,chown]]"


def parse_mount(spec: str):
    """'HOST:GUEST[:OPTIONS]' -> MountSpec.  OPTIONS is a comma-separated list: 'ro' (the
    default) or 'rw', and 'chown' (with rw: the guest may give files to other owners)."""
    from kvmbox.sentry.vfs.build import MountSpec

    parts = spec.split(":")
    opts: list[str] = []
    if len(parts) == 3:
        opts = parts[2].split(",")
        parts = parts[:2]
    known = {"ro", "rw", "chown"}
    if len(parts) != 2 or not parts[0] or not parts[1] or not set(opts) <= known or \
            len(opts) != len(set(opts)) or {"ro", "rw"} <= set(opts):
        raise KvmboxError(f"kvmbox: bad mount {spec!r} (use {MOUNT_SYNTAX}, e.g. "
                          "/data:/data:rw or /data:/data:rw,chown)")
    readonly = "rw" not in opts
    if "chown" in opts and readonly:
        raise KvmboxError(f"kvmbox: bad mount {spec!r} (chown needs rw: HOST:GUEST:rw,chown)")
    return MountSpec(host=parts[0], guest=parts[1], readonly=readonly, chown="chown" in opts)


def resolve_program(name: str, env: Mapping[str, str], vfs=None, cwd: str = "/") -> str:
    """A program name as the shell would find it: paths as given, bare names through PATH.

    With the sandbox's mount table `vfs`, PATH is searched inside the sandbox (from
    `cwd`, symlinks followed): the first executable regular file wins, as execvp.
    Without one, on the host (tools that have no sandbox yet)."""
    if "/" in name:
        return name
    for d in env.get("PATH", "/bin:/usr/bin").split(":"):
        candidate = os.path.join(d or ".", name)
        if _executable_in(vfs, cwd, candidate) if vfs is not None else os.path.isfile(candidate):
            return candidate
    raise ProgramNotFound(f"kvmbox: {name}: command not found")


def _executable_in(vfs, cwd: str, path: str) -> bool:
    """Is `path` (from `cwd`) an executable regular file inside the sandbox's file system?"""
    import stat

    from kvmbox.errors import SyscallError
    from kvmbox.sentry.task import Credentials
    from kvmbox.sentry.vfs import perm

    root = vfs.root()
    try:
        start = vfs.resolve(root, cwd, root=root)
        attr = vfs.resolve(start, path, follow=True, root=root).node.attr()
    except SyscallError:
        return False
    return stat.S_ISREG(attr.mode) and perm.may_access(attr, Credentials(), perm.MAY_EXEC)


class Sandbox:
    """Runs programs one after another in one KVM VM.

        with kvmbox.Sandbox() as sb:
            r = sb.run(["/path/to/static-prog", "arg"], stdin=b"...")
            r.exit_code, r.stdout
    """

    def __init__(self, platform: str = "auto", memory: int | str = DEFAULT_MEMORY,
                 timeout: float | None = None, hostname: str = "kvmbox",
                 kvm_device: str = "/dev/kvm", fast_path: bool = True, *,
                 rootfs: str | None = None, mounts: Sequence = (), cwd: str = "/",
                 ulimits=None, capture_limit: int | str = CAPTURE_LIMIT,
                 pids_limit: int | None = DEFAULT_PIDS_LIMIT, network: str | None = None,
                 allow_net: Sequence[str] = (), publish: Sequence = ()) -> None:
        """rootfs: host directory used as / (default the host's /), read-only under an
        in-memory overlay.  mounts: MountSpec objects or 'HOST:GUEST[:ro|rw[,chown]]'
        strings (host mounts are nosuid,nodev; 'chown' lets the guest give files away).
        cwd: the programs' working directory inside the sandbox.  ulimits: resource
        limits replacing the inherited ones, as {'nofile': 4096, 'core': 'unlimited',
        'stack': (8 << 20, 'unlimited')} or ['nofile=4096:8192', ...] (sentry/rlimits.py).
        capture_limit: bytes of stdout and of stderr run() keeps (e.g. "64M", the default);
        past it the program's writes still succeed, the bytes are dropped and the Result
        says `truncated`.  pids_limit: how many tasks may exist at once (default 512; None:
        no limit); past it fork and clone give EAGAIN, as the pids cgroup does.
        network: "none" (the default: the sandbox's own loopback, no host socket ever) or
        "host" (TCP and UDP through host sockets the Sentry makes, docs/network.md);
        allow_net: 'HOST[:PORT]' destinations connect/sendto may reach (implies host;
        empty: any); publish: host ports the program may bind and listen on ('*': any)."""
        from kvmbox.sentry.rlimits import parse_ulimits
        from kvmbox.platform.registry import open_platform
        from kvmbox.sentry.kernel import Kernel
        from kvmbox.sentry.vfs.build import FsOptions

        from kvmbox.sentry.net.policy import make_policy
        self.memory = parse_size(memory)
        self.net_policy = make_policy(network, allow_net, publish)
        if pids_limit is not None and (not isinstance(pids_limit, int) or pids_limit < 1):
            raise KvmboxError(f"kvmbox: pids limit must be a positive integer, not {pids_limit!r}")
        self._ulimits = parse_ulimits(ulimits)
        self.capture_limit = _capture_limit(capture_limit)
        self.timeout = timeout
        self.cwd = cwd
        fs = FsOptions(rootfs=rootfs, mounts=[parse_mount(m) if isinstance(m, str) else m for m in mounts])
        self._notices: list[str] = []
        self.setup_notices: list[str] = []   # e.g. the fallback from KVM to ptrace
        self._platform = open_platform(platform, self.memory, device=kvm_device,
                                       notice=self.setup_notices.append)
        self._kernel = Kernel(self._platform, memory_limit=self.memory, hostname=hostname,
                              notice=self._notices.append, fast_path=fast_path, fs=fs,
                              pids_limit=pids_limit, net_policy=self.net_policy)
        self._lock = threading.Lock()

    @property
    def platform_name(self) -> str:
        return self._platform.name

    @property
    def flavour(self) -> str:
        return self._platform.flavour

    def run(self, argv: Sequence[str], stdin: bytes = b"", env: Mapping[str, str] | None = None,
            timeout: float | None = None, *, stdio: Sequence[FileDescription | None] | None = None,
            trace=None, cwd: str | None = None, ulimits=None,
            capture_limit: int | str | None = None) -> Result:
        """Run argv[0] with argv; returns its Result.  Bad programs raise a KvmboxError.

        The program starts with this process's resource limits, replaced by the
        Sandbox's `ulimits` and then by this run's (same forms as for Sandbox).
        capture_limit: this run's instead of the Sandbox's (see __init__)."""
        from kvmbox.sentry.rlimits import parse_ulimits, start_rlimits
        if not argv:
            raise KvmboxError("kvmbox: empty argv")
        rlimits = start_rlimits(self.memory, self._ulimits, parse_ulimits(ulimits))
        env = dict(DEFAULT_ENV if env is None else env)
        path = resolve_program(argv[0], env, getattr(self._kernel, "vfs", None),
                               cwd if cwd is not None else self.cwd)
        envp = [f"{k}={v}" for k, v in env.items()]
        if stdio is None:
            limit = self.capture_limit if capture_limit is None else _capture_limit(capture_limit)
            out, err = CaptureOutput(limit), CaptureOutput(limit)
            files: Sequence[FileDescription | None] = (BytesInput(stdin), out, err)
        else:
            out = err = None
            files = stdio
        with self._lock:
            if self._kernel is None:
                raise KvmboxError("kvmbox: the sandbox is closed")
            self._notices.clear()
            self._kernel.trace = trace
            try:
                outcome = self._kernel.run(path, list(argv), envp, files,
                                           timeout if timeout is not None else self.timeout,
                                           cwd=cwd if cwd is not None else self.cwd,
                                           rlimits=rlimits)
            except KvmboxError:
                raise
            except Exception as e:   # a platform or Sentry failure: a KvmboxError, one line
                raise SandboxCrash(f"kvmbox: internal error: {type(e).__name__}: "
                                   f"{' '.join(str(e).split())}") from e
            notices = list(self._notices)
        truncated = []
        for name, f in (("stdout", out), ("stderr", err)):
            if f is not None and f.truncated:
                truncated.append(name)
                notices.append(f"kvmbox: {name} passed the capture limit of {f.limit} bytes: "
                               f"{f.dropped} more bytes were dropped")
        return Result(outcome.exit_code, outcome.signal,
                      out.getvalue() if out is not None else b"",
                      err.getvalue() if err is not None else b"",
                      outcome.timed_out, outcome.report, notices, outcome.core, truncated)

    def write_file(self, path: str, data: bytes, mode: int = 0o644) -> None:
        """Create or replace the file at guest `path` (parents must exist) with `data`.

        It lands where the guest would write it: the in-memory overlay, a tmpfs, or a
        read-write host mount; a read-only mount raises KvmboxError (EROFS)."""
        from kvmbox.sentry.vfs.transfer import write_file
        with self._lock:
            write_file(self._live_kernel().vfs, path, bytes(data), mode)

    def read_file(self, path: str) -> bytes:
        """The bytes of the file at guest `path` as the sandbox sees it."""
        from kvmbox.sentry.vfs.transfer import read_file
        with self._lock:
            return read_file(self._live_kernel().vfs, path)

    def _live_kernel(self):
        if self._kernel is None:
            raise KvmboxError("kvmbox: the sandbox is closed")
        return self._kernel

    def kill(self) -> None:
        """Stop the program currently running (from another thread)."""
        if self._kernel is not None:
            self._kernel.stop()

    def close(self) -> None:
        with self._lock:
            if self._kernel is not None:
                self._kernel.close()
            if self._platform is not None:
                self._platform.close()
                self._platform = None
                self._kernel = None

    def __enter__(self) -> "Sandbox":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
