"""The `kvmbox` command line: run, syscalls, info, bench.

Exit statuses of `kvmbox run`: the program's own status, 128+N when it was
killed by signal N, 124 when --timeout expired, 125 when kvmbox itself failed
(bad option, no usable /dev/kvm, sandbox crash), 126 when the program cannot be
executed (not ELF, wrong architecture, truncated, no permission, a directory),
127 when it does not exist in the sandbox's file system.
"""
from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from kvmbox.errors import EXIT_KVMBOX_FAILED, EXIT_TIMEOUT, KvmboxError

USAGE_ERROR = EXIT_KVMBOX_FAILED


class _Formatter(argparse.HelpFormatter):
    """argparse's formatter, told the width so that it does not import shutil (and with it
    bz2, lzma and zlib) to ask for it: 1.5 ms of every cold `kvmbox run`."""

    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24,
                 width: int | None = None) -> None:
        if width is None:
            try:
                width = int(os.environ.get("COLUMNS", "")) - 2
            except ValueError:
                try:
                    width = os.get_terminal_size(sys.__stdout__.fileno()).columns - 2
                except (AttributeError, ValueError, OSError):
                    width = 78
        super().__init__(prog, indent_increment, max_help_position, width)


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # one line, status 125 (kvmbox failed), no usage dump
        print(f"kvmbox: {message}", file=sys.stderr)
        raise SystemExit(USAGE_ERROR)


def _parser() -> argparse.ArgumentParser:
    from kvmbox.sandbox import MOUNT_SYNTAX

    p = _Parser(prog="kvmbox", description="Run x86-64 Linux programs in a KVM sandbox "
                "whose kernel is written in Python.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    r = sub.add_parser("run", help="run a program in the sandbox")
    r.add_argument("--platform", default="auto", choices=["auto", "kvm", "ptrace"],
                   help="trap mechanism (auto: kvm when /dev/kvm opens)")
    r.add_argument("--strace", action="store_true", help="print each syscall on stderr")
    r.add_argument("--env", action="append", default=[], metavar="K=V", help="set an environment variable")
    r.add_argument("--memory", default="2G", metavar="SIZE", help="memory limit (default 2G)")
    r.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                   help="stop the program after this long (exit status 124)")
    r.add_argument("--hostname", default="kvmbox")
    r.add_argument("--rootfs", default=None, metavar="DIR",
                   help="host directory to use as / (read-only, with an in-memory overlay; "
                        "default: the host's /)")
    r.add_argument("--mount", action="append", default=[], metavar=MOUNT_SYNTAX,
                   help="mount a host directory in the sandbox (default ro; repeatable); "
                        "nosuid,nodev; files made there belong to you, and a chown to another "
                        "owner is refused unless 'rw,chown' is given")
    r.add_argument("--cwd", default=None, metavar="DIR",
                   help="working directory inside the sandbox (default: the current directory "
                        "when the root is the host's /, else /)")
    r.add_argument("--ulimit", action="append", default=[], metavar="NAME=SOFT[:HARD]",
                   help="set a resource limit (nofile, nproc, stack, core, cpu, fsize, as, "
                        "memlock, ...; 'unlimited' accepted; repeatable). Default: kvmbox's own")
    r.add_argument("--pids-limit", type=int, default=512, metavar="N",
                   help="most tasks alive at once (default 512); past it fork gives EAGAIN")
    r.add_argument("--network", default=None, metavar="none|host",
                   help="none (default): the sandbox's own loopback only, nothing outside; "
                        "host: TCP/UDP through host sockets made by the Sentry")
    r.add_argument("--allow-net", action="append", default=[], metavar="HOST[:PORT]",
                   help="with host networking, the only destinations connect/sendto may reach "
                        "(repeatable; implies --network host)")
    r.add_argument("--publish", action="append", default=[], metavar="PORT",
                   help="a host port the program may bind and listen on (repeatable; '*' any; "
                        "implies --network host)")
    r.add_argument("--no-fast-path", action="store_true",
                   help="send every syscall to the Sentry (no in-guest answers for getpid & co.)")
    r.add_argument("--kvm-device", default="/dev/kvm", help=argparse.SUPPRESS)
    r.add_argument("--debug", action="store_true", help="print platform details and Python tracebacks")
    r.add_argument("program")
    r.add_argument("args", nargs=argparse.REMAINDER)
    sub.add_parser("syscalls", help="print the syscall table with support levels")
    i = sub.add_parser("info", help="describe the platform kvmbox would use here")
    i.add_argument("--kvm-device", default="/dev/kvm", help=argparse.SUPPRESS)
    b = sub.add_parser("bench", help="run the benchmark suite (same as `make bench`)")
    b.add_argument("pytest_args", nargs=argparse.REMAINDER)
    return p


def _cmd_run(ns: argparse.Namespace) -> int:
    from kvmbox.sandbox import DEFAULT_ENV, Sandbox

    env = dict(DEFAULT_ENV)
    if "TERM" in os.environ:
        env["TERM"] = os.environ["TERM"]
    for item in ns.env:
        if "=" not in item:
            raise KvmboxError(f"kvmbox: --env wants K=V, got {item!r}")
        k, v = item.split("=", 1)
        env[k] = v
    stdio = _host_stdio()
    trace = (lambda line: print(line, file=sys.stderr, flush=True)) if ns.strace else None
    try:
        cwd = ns.cwd if ns.cwd is not None else ("/" if ns.rootfs else os.getcwd())
        with Sandbox(platform=ns.platform, memory=ns.memory, timeout=ns.timeout,
                     hostname=ns.hostname, kvm_device=ns.kvm_device,
                     fast_path=not ns.no_fast_path, rootfs=ns.rootfs, mounts=ns.mount,
                     cwd=cwd, ulimits=ns.ulimit, pids_limit=ns.pids_limit,
                     network=ns.network, allow_net=ns.allow_net, publish=ns.publish) as sb:
            for line in sb.setup_notices:
                print(line, file=sys.stderr)
            if ns.debug:
                print(f"kvmbox: platform {sb.platform_name}, flavour {sb.flavour}", file=sys.stderr)
            r = sb.run([ns.program, *ns.args], env=env, stdio=stdio, trace=trace)
    finally:
        for f in stdio:
            if f is not None:
                f.release()
    for line in r.notices:
        print(line, file=sys.stderr)
    if r.timed_out:
        print(f"kvmbox: {ns.program}: timed out after {ns.timeout:g} s", file=sys.stderr)
        return EXIT_TIMEOUT
    if r.report:
        print(f"kvmbox: {ns.program}: {r.report}", file=sys.stderr)
    return r.exit_code


def _host_stdio() -> list:
    """kvmbox's own descriptors 0, 1, 2 as the program's (None where one is closed: it stays
    closed), each a dup of the same open file, so offsets and flags are the shell's."""
    import fcntl

    from kvmbox.sentry.hoststream import HostStream

    out = []
    for fd in range(3):
        try:
            # A descriptor kvmbox inherited cannot be close-on-exec (the exec would have
            # closed it): one that is was opened by this Python after a closed one's place.
            inherited = not fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC
            out.append(HostStream(fd) if inherited else None)
        except OSError:
            out.append(None)
    return out


def _cmd_syscalls() -> int:
    from kvmbox.sentry.syscalls.table import default_table, describe

    for nr, name, support, note in describe(default_table()):
        print(f"{nr:4d}  {name:24s} {support.value:13s} {note}".rstrip())
    return 0


def _cmd_info(ns: argparse.Namespace) -> int:
    from kvmbox.platform.registry import open_platform

    # The platform `kvmbox run` would pick: kvm, else ptrace with the one-line reason on stderr.
    plat = open_platform("auto", 64 << 20, device=ns.kvm_device, notice=lambda m: print(m, file=sys.stderr))
    try:
        print(f"platform: {plat.name}")
        print(f"flavour:  {plat.flavour}")
        if plat.name == "kvm":
            print(f"device:   {ns.kvm_device}")
        lo, hi = plat.user_range
        print(f"user address range: {lo:#x}-{hi:#x}")
    finally:
        plat.close()
    return 0


def _cmd_bench(ns: argparse.Namespace) -> int:
    import subprocess
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    # The same invocation as `make bench`, from the checkout's root (writes benchmarks/results/).
    return subprocess.call([sys.executable, "-m", "pytest", "-q", "benchmarks", *ns.pytest_args], cwd=root)


def main(argv: Sequence[str] | None = None) -> int:
    ns = _parser().parse_args(argv)
    debug = getattr(ns, "debug", False)
    try:
        if ns.command == "run":
            return _cmd_run(ns)
        if ns.command == "syscalls":
            return _cmd_syscalls()
        if ns.command == "info":
            return _cmd_info(ns)
        return _cmd_bench(ns)
    except KvmboxError as e:
        msg = str(e)
        print(msg if msg.startswith("kvmbox") else f"kvmbox: {msg}", file=sys.stderr)
        return e.exit_status
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 141
    except Exception as e:  # never a traceback for the user unless asked
        if debug:
            raise
        print(f"kvmbox: internal error: {type(e).__name__}: {e}", file=sys.stderr)
        return EXIT_KVMBOX_FAILED
