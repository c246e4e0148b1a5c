"""Starting a program: read the executable, gather the process facts the loader needs, load it."""
from __future__ import annotations

import os
from dataclasses import dataclass

from kvmbox.sentry import hwcap
from kvmbox.sentry.loader import load_elf, read_executable


@dataclass(frozen=True)
class StartedImage:
    entry: int
    initial_sp: int
    exe_path: str           # absolute path of the executable, for /proc/self/exe


def load_program(path: str, mm, *, argv: list[str], envp: list[str],
                 vdso_base: int | None = None) -> StartedImage:
    """execve(2)'s work for the first program of a run; raises ProgramNotFound / CannotExecute."""
    data = read_executable(path)
    cap, cap2 = hwcap.hwcaps()
    exe = os.path.abspath(path)
    image = load_elf(data, mm, argv=[os.fsencode(a) for a in argv], envp=[os.fsencode(e) for e in envp],
                     execfn=os.fsencode(path), hwcap=cap, hwcap2=cap2, random_bytes=os.urandom(16),
                     uid=os.getuid(), euid=os.geteuid(), gid=os.getgid(), egid=os.getegid(),
                     vdso_base=vdso_base)
    return StartedImage(image.entry, image.initial_sp, exe)
