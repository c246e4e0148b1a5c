"""Copy-on-write fork figures (docs/processes.md, "Memory across fork"), per platform:

  fork        MemoryManager.fork() of a parent with N MiB resident, and the parent's
              re-read of it afterwards (under PVM its write-protected frames were invalidated)
  children    a parent with 512 MiB resident, 20 children that each write 1 MiB:
              host memory (the MemoryFile's allocated blocks) and frames in use
  cluster     a child writing 1 MiB sequentially / one page in 16, per COW_CLUSTER size
  eager       KVM: mapping a child's inherited pages at fork (parent's thread) vs lazily

    .venv/bin/python benchmarks/cow_fork.py [kvm|ptrace ...] [--only fork,children,...]

Guest code and the run loop come from tests/platform/memproc.py (a guest that loads and
stores what the host asks, through real page faults).  Not part of `make bench`: the fork
round trip there needs the real fork syscall.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests" / "platform"), str(ROOT / "tests"), str(ROOT)]

from memproc import FIXED_ANON, OP_FILL, OP_SUM, MemProc, Worker  # noqa: E402

from kvmbox.mm import cow  # noqa: E402
from kvmbox.abi.mman import PROT_READ, PROT_WRITE  # noqa: E402

MIB = 1 << 20
PAGE = 4096
HEAP = 0x1000_0000
RW = PROT_READ | PROT_WRITE


def open_platform(name: str, memory: int):
    if name == "kvm":
        from kvmbox.platform.kvm.platform import KvmPlatform
        return KvmPlatform(memory)
    from kvmbox.platform.ptrace.platform import PtracePlatform
    return PtracePlatform(memory)


def host_bytes(platform) -> int:
    """Host memory the MemoryFile holds (allocated blocks of the memfd)."""
    return os.fstat(platform.memfile.fd).st_blocks * 512


def parent_with(platform, mib: int) -> MemProc:
    p = MemProc.start(platform)
    p.mm.mmap(HEAP, mib * MIB, RW, FIXED_ANON)
    p.op(OP_FILL, HEAP, 0x11, HEAP + mib * MIB)
    return p


def bench_fork(platform, mib: int) -> None:
    p = parent_with(platform, mib)
    t0 = time.perf_counter()
    p.op(OP_SUM, HEAP, 0, HEAP + mib * MIB)
    warm = time.perf_counter() - t0
    before = host_bytes(platform)
    t0 = time.perf_counter()
    child_mm = p.mm.fork(platform.new_address_space())
    took = time.perf_counter() - t0
    grown = host_bytes(platform) - before
    t0 = time.perf_counter()
    p.op(OP_SUM, HEAP, 0, HEAP + mib * MIB)
    reread = time.perf_counter() - t0
    print(f"  fork of {mib} MiB resident: {took * 1e3:.1f} ms, host memory +{grown / MIB:.2f} MiB; "
          f"parent re-reads it in {reread * 1e3:.0f} ms after fork vs {warm * 1e3:.0f} ms before")
    worker = Worker()
    worker.call(child_mm.release)
    worker.stop()
    p.close()


def bench_children(platform, n: int = 20) -> None:
    p = parent_with(platform, 512)
    base_host, base_used = host_bytes(platform), platform.frames.used_pages
    kids = []
    t0 = time.perf_counter()
    for i in range(n):
        child = p.fork()
        w = Worker()
        start = HEAP + i * 8 * MIB
        w.call(lambda c=child, s=start: c.op(OP_FILL, s, 0x20 + i, s + MIB))
        w.call(child.ctx.release)            # a vCPU back to the pool; the memory stays
        kids.append((child, w))
    took = time.perf_counter() - t0
    grown_host = host_bytes(platform) - base_host
    grown_used = (platform.frames.used_pages - base_used) * PAGE
    print(f"  512 MiB parent, {n} children writing 1 MiB each ({took:.2f} s): host memory "
          f"+{grown_host / MIB:.1f} MiB, frames in use +{grown_used / MIB:.1f} MiB "
          f"(without copy-on-write: +{n * 512} MiB)")
    for child, w in kids:
        w.call(child.mm.release)
        w.stop()
    p.close()


def bench_cluster(platform, sizes=(1, 4, 8, 16, 32, 64)) -> None:
    p = parent_with(platform, 8)
    for stride, label in ((1, "every page"), (16, "one page in 16")):
        cells = []
        for size in sizes:
            cow.COW_CLUSTER = size
            child = p.fork()
            w = Worker()

            def run(c=child):
                t0 = time.perf_counter()
                if stride == 1:
                    c.op(OP_FILL, HEAP, 0x33, HEAP + MIB)
                else:
                    for a in range(HEAP, HEAP + MIB, stride * PAGE):
                        c.write(a, 0x33)
                return time.perf_counter() - t0
            used = platform.frames.used_pages
            took = w.call(run)
            extra = platform.frames.used_pages - used
            cells.append(f"{size}: {took * 1e3:.1f} ms/{child.faults} faults/{extra} frames")
            w.call(child.close)
            w.stop()
        print(f"  child writes 1 MiB, {label}: " + "; ".join(cells))
    cow.COW_CLUSTER = 16
    p.close()


def bench_eager(platform, nvmas: int = 30, reps: int = 5) -> None:
    """A parent with `nvmas` 64 KiB mappings and a 64 MiB heap; the child touches one page of
    each mapping (a long-lived child) or of two (one that execs soon).  Eager: the parent's
    thread maps every inherited page into the child at fork (what ptrace cannot do)."""
    p = parent_with(platform, 64)
    bases = [0x4000_0000 + i * MIB for i in range(nvmas)]
    for b in bases:
        p.mm.mmap(b, 16 * PAGE, RW, FIXED_ANON)
        p.write(b, 1)
    for touched in (nvmas, 2):
        for eager in (False, True):
            forks, runs, faults = [], [], 0
            for _ in range(reps):
                t0 = time.perf_counter()
                child = p.fork()
                if eager:
                    for v in child.mm.vmas:
                        for c in range(v.start - v.start % cow.CHUNK, v.end, cow.CHUNK):
                            cow.fault_in(child.mm, c)
                forks.append(time.perf_counter() - t0)
                w = Worker()

                def run(c=child):
                    t0 = time.perf_counter()
                    for b in bases[:touched]:
                        c.read(b)
                    return time.perf_counter() - t0
                runs.append(w.call(run))
                faults = child.faults
                w.call(child.close)
                w.stop()
            print(f"  {'eager' if eager else 'lazy '} child, touches {touched:2} mappings: fork "
                  f"{min(forks) * 1e3:5.1f} ms + child {min(runs) * 1e3:5.1f} ms ({faults} faults)")
    p.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("platforms", nargs="*", default=["kvm", "ptrace"])
    ap.add_argument("--only", default="fork,children,cluster,eager")
    args = ap.parse_args()
    only = set(args.only.split(","))
    for name in args.platforms:
        platform = open_platform(name, 1024 * MIB)
        print(f"{name} ({platform.flavour}):")
        try:
            if "fork" in only:
                for mib in (16, 256):
                    bench_fork(platform, mib)
            if "children" in only:
                bench_children(platform)
            if "cluster" in only:
                bench_cluster(platform)
            if "eager" in only and name == "kvm":
                bench_eager(platform)
        finally:
            platform.close()


if __name__ == "__main__":
    main()
