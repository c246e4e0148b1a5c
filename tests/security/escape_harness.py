"""The host side of the file-system escape tests (tests/security/test_fs_escape.py).

Builds the host layout a test runs against, snapshots host trees so a test
can prove they did not change, copies a program into a rootfs, and judges a
program's "label: RESULT" output (see tests/programs/escape_common.h):

    BASE/rootfs/      the sandbox's / (read-only under an overlay): the program,
                      a decoy etc/passwd, empty mount points
    BASE/inside/      mounted read-write at /mnt/in; host-planted symlinks here
    BASE/other/       mounted read-write at /mnt/other (empty)
    BASE/ro/          mounted read-only at /mnt/ro
    BASE/outside/     never mounted: secret.txt holds a per-test random secret

BASE/rootfs is a sibling of outside/, so a ".." that escaped the sandbox root,
or one that escaped the /mnt/in mount, lands exactly on outside/.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

import helpers

BUILD = "musl"
ESCAPE_ENV = {"KVMBOX_ESCAPE_TEST": "1", "PATH": "/bin"}
SCRATCH = helpers.REPO / ".test-scratch"
DECOY_PASSWD = b"kvmbox-decoy:x:1:1:decoy:/:/bin/false\n"
INSIDE_FILE = b"inside file, harmless\n"
RO_FILE = b"read-only mount: must never change\n"
HARMLESS = b"harmless-inside-d\n"
RUN_TIMEOUT = 120
# A program's output may show these only if something of the Sentry leaked.
SENTRY_WORDS = ("python", ".venv", "site-packages", "/kvmbox/", "memfd:", "pytest")


# ---------------------------------------------------------------- host layout

@dataclass
class Layout:
    base: Path
    rootfs: Path
    inside: Path
    other: Path
    ro: Path
    outside: Path
    secret: bytes

    @property
    def secret_path(self) -> Path:
        return self.outside / "secret.txt"

    def mounts(self) -> list[str]:
        return [f"{self.inside}:/mnt/in:rw", f"{self.other}:/mnt/other:rw", f"{self.ro}:/mnt/ro:ro"]


def make_layout(base: Path) -> Layout:
    """Build the host tree described at the top of this module under base."""
    lay = Layout(base, base / "rootfs", base / "inside", base / "other", base / "ro", base / "outside",
                 b"TOP-SECRET-" + os.urandom(12).hex().encode())
    for d in ("mnt/in", "mnt/other", "mnt/ro", "tmp", "proc", "dev", "sys", "etc"):
        (lay.rootfs / d).mkdir(parents=True)
    (lay.rootfs / "tmp").chmod(0o1777)
    (lay.rootfs / "etc" / "passwd").write_bytes(DECOY_PASSWD)
    lay.outside.mkdir()
    lay.secret_path.write_bytes(lay.secret + b"\n")
    lay.secret_path.chmod(0o644)
    (lay.outside / "dir").mkdir()
    (lay.outside / "dir" / "secret2.txt").write_bytes(lay.secret + b" (2)\n")
    lay.inside.mkdir()
    (lay.inside / "file.txt").write_bytes(INSIDE_FILE)
    (lay.inside / "sub").mkdir()
    (lay.inside / "sub" / "inner.txt").write_bytes(b"inner\n")
    # Host-planted links: each would reach the secret if the HOST resolved it.
    os.symlink(lay.secret_path, lay.inside / "h_abs")
    os.symlink("../outside/secret.txt", lay.inside / "h_rel")
    os.symlink("../outside", lay.inside / "h_dir")
    os.symlink("/", lay.inside / "h_root")
    os.symlink("../" * 40 + str(lay.secret_path).lstrip("/"), lay.inside / "h_deep")
    os.symlink("/dev/kvm", lay.inside / "h_kvm")
    os.symlink("/dev/mem", lay.inside / "h_mem")
    lay.other.mkdir()
    lay.ro.mkdir()
    (lay.ro / "file.txt").write_bytes(RO_FILE)
    (lay.ro / "sub").mkdir()
    (lay.ro / "sub" / "inner.txt").write_bytes(b"inner read-only\n")
    (lay.ro / "empty").mkdir()
    os.symlink("file.txt", lay.ro / "link")
    # Old times, so that any touch shows in mtime.
    for p in (lay.secret_path, lay.ro / "file.txt", lay.ro / "sub" / "inner.txt"):
        os.utime(p, ns=(1_000_000_000_000_000_000, 1_000_000_000_000_000_000))
    return lay


def install(lay: Layout, test_programs: Path, program: str) -> str:
    """Copy the static program into the rootfs; returns its guest path."""
    dst = lay.rootfs / program
    shutil.copyfile(test_programs / BUILD / program, dst)
    dst.chmod(0o755)
    return "/" + program


class Launch:
    """Runs an escape program directly (depth 0) or from a forked child (1) or a child of a
    child (2), through tests/programs/forkrun.c, which ends as the program ended."""

    def __init__(self, depth: int, test_programs: Path, lay: Layout) -> None:
        self.depth, self.test_programs = depth, test_programs
        self.forkrun = install(lay, test_programs, "forkrun") if depth else ""

    def rooted(self, lay: Layout, argv: list[str]) -> list[str]:
        """argv for a sandbox whose root is lay.rootfs (forkrun is copied in beside the
        program when the fixture is made)."""
        if not self.depth:
            return list(argv)
        return [self.forkrun, str(self.depth), *argv]

    def host(self, argv: list[str]) -> list[str]:
        """argv for a sandbox whose root is the host's /."""
        if not self.depth:
            return list(argv)
        return [str(self.test_programs / BUILD / "forkrun"), str(self.depth), *argv]


Snapshot = dict[str, tuple]


def snapshot(root: Path) -> Snapshot:
    """Everything the host knows about a tree: kinds, bytes, modes, times, inodes, links."""
    out: Snapshot = {}
    paths = [root]
    for dirpath, dirnames, filenames in os.walk(root):
        paths += [Path(dirpath, n) for n in dirnames + filenames]
    for p in paths:
        st = p.lstat()
        if stat.S_ISREG(st.st_mode):
            data = hashlib.sha256(p.read_bytes()).hexdigest()
        elif stat.S_ISLNK(st.st_mode):
            data = os.readlink(p)
        else:
            data = None
        out[str(p.relative_to(root))] = (stat.S_IFMT(st.st_mode), st.st_mode, st.st_uid, st.st_gid,
                                         st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino,
                                         st.st_nlink, st.st_rdev, data)
    return out


def snapshot_files(paths: list[Path]) -> Snapshot:
    """The same facts for a list of single host files (missing ones recorded as missing)."""
    out: Snapshot = {}
    for p in paths:
        try:
            st = p.lstat()
        except FileNotFoundError:
            out[str(p)] = ("missing",)
            continue
        data = hashlib.sha256(p.read_bytes()).hexdigest() if stat.S_ISREG(st.st_mode) else None
        out[str(p)] = (st.st_mode, st.st_uid, st.st_gid, st.st_size, st.st_mtime_ns, st.st_ctime_ns,
                       st.st_ino, st.st_nlink, data)
    return out


def diff_snapshots(before: Snapshot, after: Snapshot) -> list[str]:
    problems = []
    for k in sorted(set(before) | set(after)):
        if before.get(k) != after.get(k):
            problems.append(f"host {k!r} changed: {before.get(k)} -> {after.get(k)}")
    return problems


# ---------------------------------------------------------------- judging output

def parse(stdout: bytes) -> dict[str, str]:
    """'label: RESULT' lines -> {label: RESULT} (dump bodies and walk lines skipped)."""
    results: dict[str, str] = {}
    for line in stdout.decode(errors="replace").splitlines():
        if line.startswith(("dump ", "| ", "link ", "walk ")):
            continue
        label, sep, value = line.partition(": ")
        if sep:
            results[label] = value
    return results


class Verdict:
    """Collects every problem of one run, then fails once with all of them and the output."""

    def __init__(self, result, lay: Layout | None, what: str) -> None:
        self.result = result
        self.what = what
        self.out = result.stdout.decode(errors="replace")
        self.err = result.stderr.decode(errors="replace")
        self.results = parse(result.stdout)
        self.problems: list[str] = []
        if result.timed_out or result.report or result.exit_code != 0 or "done" not in self.out.splitlines():
            self.problems.append(f"the program did not finish cleanly: exit {result.exit_code}, "
                                 f"signal {result.signal}, timed_out {result.timed_out}, report {result.report!r}")
        if lay is not None:
            secret = lay.secret.decode()
            for name, text in (("stdout", self.out), ("stderr", self.err)):
                if secret in text:
                    self.problems.append(f"THE SECRET appears in {name}")

    def value(self, label: str) -> str:
        return self.results.get(label, "<missing>")

    def expect(self, label: str, *allowed: str) -> None:
        v = self.value(label)
        if v not in allowed:
            self.problems.append(f"{label}: got {v!r}, want {' or '.join(allowed)}")

    def expect_all(self, labels, *allowed: str) -> None:
        for label in labels:
            self.expect(label, *allowed)

    def expect_error(self, label: str) -> None:
        """Any errno, but not success and not data."""
        v = self.value(label)
        if v == "<missing>" or v.startswith(("ok", "read", "opened")):
            self.problems.append(f"{label}: got {v!r}, want an errno")

    def forbid_reads(self, allowed: set[str] = frozenset()) -> None:
        for label, v in self.results.items():
            if v.startswith("read ") and label not in allowed:
                self.problems.append(f"{label}: read data it must not reach: {v!r}")

    def problem(self, text: str) -> None:
        self.problems.append(text)

    def check(self) -> None:
        if self.problems:
            raise AssertionError(
                f"{self.what}: {len(self.problems)} problem(s):\n  " + "\n  ".join(self.problems)
                + "\n--- stdout (tail) ---\n" + self.out[-6000:]
                + ("\n--- stderr (tail) ---\n" + self.err[-3000:] if self.err else ""))


def boxed(platform_name: str, **kw):
    import kvmbox
    return kvmbox.Sandbox(platform=platform_name, timeout=RUN_TIMEOUT, **kw)


def rooted(lay: Layout, platform_name: str):
    """A Sandbox whose / is BASE/rootfs, with the three mounts."""
    return boxed(platform_name, rootfs=str(lay.rootfs), mounts=lay.mounts())


def host_unchanged(v: Verdict, before: dict[str, Snapshot], lay: Layout) -> None:
    after = {"outside": snapshot(lay.outside), "ro": snapshot(lay.ro), "rootfs": snapshot(lay.rootfs)}
    for key in before:
        for p in diff_snapshots(before[key], after[key]):
            v.problem(f"{key}: {p}")
    secret = lay.secret_path.stat()
    for tree in (lay.inside, lay.other, lay.ro):
        for dirpath, dirnames, filenames in os.walk(tree):
            for n in dirnames + filenames:
                p = Path(dirpath, n)
                st = p.lstat()
                if (st.st_dev, st.st_ino) == (secret.st_dev, secret.st_ino):
                    v.problem(f"host {p} is a hard link to the secret")
                if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                    v.problem(f"host {p} is a device node {os.major(st.st_rdev)}:{os.minor(st.st_rdev)}")
                if stat.S_ISREG(st.st_mode) and lay.secret in p.read_bytes():
                    v.problem(f"host {p} holds a copy of the secret")


def before_state(lay: Layout) -> dict[str, Snapshot]:
    return {"outside": snapshot(lay.outside), "ro": snapshot(lay.ro), "rootfs": snapshot(lay.rootfs)}


def dumps(out: str, paths: tuple[str, ...]) -> list[str]:
    """The bodies of the named 'dump PATH N' sections (without the '| ' prefixes)."""
    bodies, current = [], None
    for line in out.splitlines():
        if line.startswith("dump "):
            if current is not None:
                bodies.append("\n".join(current))
            name = line.split()[1].rstrip(":")
            current = [] if name in paths else None
        elif line.startswith("| ") or line == "|":
            if current is not None:
                current.append(line[2:])
        elif current is not None:
            bodies.append("\n".join(current))
            current = None
    if current is not None:
        bodies.append("\n".join(current))
    return bodies


def sentry_pids() -> list[int]:
    """This process (the Sentry) first, then its children (e.g. the ptrace platform's stubs)."""
    pids = [os.getpid()]
    for task in os.listdir(f"/proc/{os.getpid()}/task"):
        try:
            pids += [int(c) for c in Path(f"/proc/{os.getpid()}/task/{task}/children").read_text().split()]
        except OSError:
            pass
    return pids


def host_fds_under(base: Path) -> dict[str, list[str]]:
    """Open fds, of the Sentry and its children, that point under base."""
    found: dict[str, list[str]] = {}
    for pid in sentry_pids():
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith(str(base)):
                found.setdefault(str(pid), []).append(target)
    return {k: sorted(v) for k, v in found.items()}
