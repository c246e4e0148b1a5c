"""Tuning of the guest memory manager: how eagerly it populates, how it sizes its frame pools."""
from __future__ import annotations

EAGER_POPULATE_LIMIT = 64 << 20      # a new mapping gets PTEs for at most this many bytes up front
FAULT_AROUND = 2 << 20               # a demand fault populates this aligned chunk (clipped to the VMA)
TABLE_RESERVE_MIN = 1 << 20          # page-table frames: bump region at the top of RAM, at least this big...
TABLE_RESERVE_DIV = 32               # ...or 1/32 of the MemoryFile, whichever is larger
DATA_SLACK = 128 << 20               # data frames beyond the memory limit, for what it does not charge
                                     # (the shared read-only page cache, at most 64 MiB; the vDSO)
WARM_FRAMES = 32 << 20               # freed data frames this far above the pool's start keep their host
                                     # pages (zeroed, shadow entries dropped) instead of being punched:
                                     # first-fit hands them out again first, so the next program's first
                                     # touches skip a host fault (python3 -c pass: 71 -> 63 ms warm)
HUGE_LEAVES = True                   # KVM: map aligned, fully populated 2 MiB chunks with 2 MiB leaves
HUGE_REBUILDS = 64                   # fresh page-table paths (2 MiB leaves split or reused) a process may
                                     # make before it maps no new 2 MiB leaves (kvmbox/mm/pagetables.py)
