"""The standard streams through the CLI, natively and under `kvmbox run`, compared.

stdin, stdout and stderr are each a host regular file (also opened for
appending and read-write), a pipe, /dev/null, a tty (`script` gives a pty), a
block device or closed; tests/programs/stdio.c reports what it observes about
fds 0..2 into a file, and the reports, the streams' files and the captured
output must match native byte for byte.  Then the real tools of issue 7 (wc,
tail, head + cat sharing the shell's offset, python's seek, bash's read loop).
"""
from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

import helpers

PIPE_INPUT = b"piped input, not seekable\n"
FILES = {"in.txt": b"hello world, the input file\n", "out.txt": b"old out\n",
         "err.txt": b"old err\n", "rw.txt": b"read-write file\n"}


def _shell(cmd: str, cwd: Path, tty: bool = False) -> subprocess.CompletedProcess:
    return helpers.run_shell(cmd, cwd, tty, stdin=PIPE_INPUT)


def _block_device() -> str | None:
    """A block device this user may read (the root disk, a loop device), if any."""
    for name in sorted(os.listdir("/dev")):
        path = f"/dev/{name}"
        try:
            if stat.S_ISBLK(os.stat(path).st_mode) and os.access(path, os.R_OK):
                fd = os.open(path, os.O_RDONLY)
                size = os.lseek(fd, 0, os.SEEK_END)
                os.close(fd)
                if size > 0:
                    return path
        except OSError:
            continue
    return None


# name -> (redirections, tty, extra stdio.c arguments)
CONFIGS = {
    "stdin-file": ("< in.txt", False, ""),
    "stdout-file": ("> out.txt", False, ""),
    "stderr-file": ("2> err.txt", False, ""),
    "all-files": ("< in.txt > out.txt 2> err.txt", False, ""),
    "append": ("< in.txt >> out.txt 2>> err.txt", False, ""),
    "stdout-stderr-shared": ("> out.txt 2>&1", False, ""),
    "stdin-read-write": ("<> rw.txt", False, ""),
    "pipes": ("", False, ""),
    "dev-null": ("< /dev/null > /dev/null 2> /dev/null", False, ""),
    "stdout-dev-null": ("> /dev/null", False, ""),
    "tty": ("", True, ""),
    "tty-stdin-file-stdout": ("> out.txt", True, ""),
    "stdin-closed": ("<&-", False, ""),
}


def _compare(name: str, redirs: str, tty: bool, extra: str, prog: Path, d: Path,
             platform: str, hidden: str | None = None) -> None:
    """Run `prog` natively and through the CLI with `redirs`; reports, files and output must
    match.  hidden: a host path the sandbox does not show (a host device), whose readlink is
    `host:[N]` in the sandbox by design (README, differences): the native report's line for
    it is rewritten so, and everything else must still match."""
    outcomes = []
    for side in ("native", "kvmbox"):
        for fname, data in FILES.items():
            (d / fname).write_bytes(data)
        report = d / "report"
        report.unlink(missing_ok=True)
        run = f"{prog} {report} {extra}".rstrip()
        if side == "kvmbox":
            run = f"{helpers.kvmbox_command(platform, f'--mount {d}:{d}:rw')} {run}"
        p = _shell(f"{run} {redirs}", d, tty)
        files = {f: (d / f).read_bytes() for f in FILES}
        out = p.stdout if tty else (p.stdout, p.stderr)
        outcomes.append((p.returncode, report.read_bytes() if report.exists() else b"", files, out))
    native, boxed = outcomes
    assert native[0] == 0, (name, native)
    if hidden is not None:
        line = f"link={hidden} same-as-path=1".encode()
        assert line in native[1], native[1]
        native = (native[0], native[1].replace(line, b"link=host:[N]"), *native[2:])
    assert boxed[1] == native[1], f"{name}: report differs\n" + helpers.diff_text(native[1], boxed[1])
    assert boxed == native, f"{name}: files or output differ\nnative {native}\nkvmbox {boxed}"


@pytest.mark.parametrize("name", list(CONFIGS))
def test_stdio_matches_native(name, tmp_path, test_programs, platform_name):
    redirs, tty, extra = CONFIGS[name]
    if tty and shutil.which("script") is None:
        pytest.skip("no `script` (util-linux) to make a pty")
    _compare(name, redirs, tty, extra, test_programs / "glibc" / "stdio", tmp_path, platform_name)


@pytest.mark.parametrize("build", [*helpers.BUILDS, "dynamic"])
def test_stdio_every_build(build, tmp_path, test_programs, platform_name):
    redirs, tty, extra = CONFIGS["all-files"]
    _compare("all-files", redirs, tty, extra, test_programs / build / "stdio", tmp_path, platform_name)


@pytest.fixture(scope="module")
def block_device(tmp_path_factory):
    """A readable block device with data: an existing one, else a loop device over a
    scratch file (losetup, as root); skipped only where the host allows neither."""
    dev = _block_device()
    if dev is not None:
        yield dev
        return
    img = tmp_path_factory.mktemp("blk") / "disk.img"
    img.write_bytes(bytes(range(256)) * 4096)
    try:
        made = subprocess.run(["losetup", "-f", "--show", str(img)], capture_output=True,
                              text=True, check=False)
    except FileNotFoundError:
        made = None
    if made is None or made.returncode != 0:
        why = made.stderr.strip() if made is not None else "losetup is missing"
        pytest.skip(f"no readable block device and no loop device can be made here ({why})")
    dev = made.stdout.strip()
    try:
        yield dev
    finally:
        subprocess.run(["losetup", "-d", dev], check=False)


def test_stdio_block_device(block_device, tmp_path, test_programs, platform_name):
    dev = block_device
    _compare("block", f"< {dev}", False, "ro", test_programs / "glibc" / "stdio", tmp_path,
             platform_name, hidden=dev)


# --- the real tools of the reproductions --------------------------------------------
LINES = b"".join(b"%d some text on this line\n" % i for i in range(1, 2001))

# K marks where `kvmbox run` goes (nothing natively).
TOOLS = {
    "wc-c": "K wc -c < lines.txt",
    "tail-c": "K tail -c 12 < lines.txt",
    "head-c-then-cat": "{ K head -c 5; cat; } < lines.txt | md5sum",
    "head-n-then-cat": "{ K head -n 1 > /dev/null; cat; } < lines.txt | md5sum",
    "python-seek": "K python3 -c 'import sys; sys.stdin.read(3); sys.stdin.seek(0); "
                   "print(repr(sys.stdin.read(9)))' < lines.txt",
    "python-lseek-stdout": "K python3 -c 'import os,sys; sys.stdout.write(\"abc\"); "
                           "sys.stdout.flush(); print(os.lseek(1,0,1))' > out.txt; cat out.txt",
    "python-append": "echo first > app.txt; K python3 -c 'import os; os.write(1, b\"x\"); "
                     "print(os.lseek(1, 0, 1))' >> app.txt; cat app.txt",
    "bash-read-then-cat": "K bash -c 'for i in 1 2 3; do read -r l; done; echo $l; cat' "
                          "< lines.txt | md5sum",
    "sort-file": "K sort -r < lines.txt | head -3",
}


@pytest.mark.parametrize("name", list(TOOLS))
def test_real_tools_match_native(name, tmp_path, platform_name):
    (tmp_path / "lines.txt").write_bytes(LINES)
    cmd = TOOLS[name]
    runs = []
    for k in ("", helpers.kvmbox_command(platform_name) + " "):
        p = _shell(cmd.replace("K ", k), tmp_path)
        runs.append((p.returncode, p.stdout, p.stderr))
    assert runs[1] == runs[0], f"{name}: native {runs[0]}\nkvmbox {runs[1]}"


def test_bash_read_loop_reads_lines_not_bytes(tmp_path, platform_name):
    """A seekable stdin lets bash's `read` take a buffer and seek back: about one read(2)
    per line (natively 2,001 for 2,000 lines), not one per byte."""
    (tmp_path / "lines.txt").write_bytes(LINES)
    loop = "bash -c 'while read -r l; do :; done'"
    p = _shell(f"{helpers.kvmbox_command(platform_name, '--strace')} {loop} < lines.txt", tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]
    boxed = len(re.findall(rb"^read\(0,", p.stderr, re.M))
    if shutil.which("strace"):
        n = _shell(f"strace -e trace=read -o trace.txt {loop} < lines.txt", tmp_path)
        assert n.returncode == 0
        native = len(re.findall(r"^read\(0,", (tmp_path / "trace.txt").read_text(), re.M))
        assert boxed == native, (boxed, native)
    else:
        assert boxed <= LINES.count(b"\n") + 1, boxed


def test_status_flags_never_reach_the_shells_file(tmp_path, platform_name):
    """F_SETFL of O_APPEND / O_NONBLOCK in the guest changes its own view (F_GETFL), never
    the host's open file description, which the invoking shell keeps using afterwards."""
    show = ("python3 -c 'import fcntl, os; print(*(oct(fcntl.fcntl(fd, fcntl.F_GETFL) & "
            "(os.O_APPEND | os.O_NONBLOCK)) for fd in (0, 1)), flush=True)'")
    change = ("python3 -c 'import fcntl, os\nfor fd in (0, 1):\n"
              "    fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_APPEND"
              " | os.O_NONBLOCK)\n" + show[len("python3 -c '"):])
    (tmp_path / "lines.txt").write_bytes(LINES)
    p = _shell(f"{{ {helpers.kvmbox_command(platform_name)} {change}; {show}; }} < lines.txt > out.txt",
               tmp_path)
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "out.txt").read_text().splitlines() == ["0o6000 0o6000", "0o0 0o0"]
