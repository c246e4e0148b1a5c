"""TracerPins: which CPU each tracer thread and its stub threads are pinned to.

A ptrace stop wakes the tracer; unpinned, the scheduler often wakes it on the
other CPU and every trap becomes a cross-CPU round trip (about 3x dearer).  So
a tracer thread and the stub threads it traces share one CPU while it traces
any.  A tracer's first stub thread picks the CPU: of the CPUs the tracer may
use, the one with the fewest tracers pinned to it now (the one it runs on, on
a tie), so the threads of one guest process spread over the CPUs and run in
parallel.  "May use" is the affinity of the thread that made the platform: a
host thread started by a pinned tracer inherits that one CPU.  The last of its stub threads to go gives the tracer its old
affinity back, whichever host thread ends it.
"""
from __future__ import annotations

import os
import threading
from collections import Counter

from kvmbox.platform.ptrace import host
from kvmbox.record import field, record


@record
class _Tracer:
    native_id: int
    before: frozenset[int]
    cpu: int
    count: int = 0


@record
class TracerPins:
    """One platform's pinned tracers (a leaf lock: nothing is called while it is held)."""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _tracers: dict[int, _Tracer] = field(default_factory=dict)     # thread ident -> its pin
    _load: Counter = field(default_factory=Counter)                 # cpu -> tracers pinned there
    _by_cpu_owner: dict[tuple[int, int], int] = field(default_factory=dict)
    # The CPUs tracers may use: the creating thread's affinity (a host thread started by a
    # pinned tracer inherits its one CPU, which must not confine it).
    allowed: frozenset[int] = field(default_factory=lambda: frozenset(os.sched_getaffinity(0)))

    def pin(self, tid: int) -> int:
        """Pin the calling tracer thread (if not yet) and stub thread `tid` to one CPU; the
        CPU, or -1 when pinning is not possible here."""
        ident = threading.get_ident()
        with self._lock:
            tr = self._tracers.get(ident)
            if tr is None:
                try:
                    before = frozenset(os.sched_getaffinity(0))
                except OSError:
                    return -1
                here = host.current_cpu()
                cpu = min(sorted(self.allowed), key=lambda c: (self._load[c], c != here))
                try:
                    os.sched_setaffinity(0, {cpu})
                except OSError:
                    return -1
                tr = self._tracers[ident] = _Tracer(threading.get_native_id(), before, cpu)
                self._load[cpu] += 1
            tr.count += 1
            cpu = tr.cpu
            self._by_cpu_owner[(tid, cpu)] = ident
        try:
            os.sched_setaffinity(tid, {cpu})
        except OSError:
            pass
        return cpu

    def unpin(self, tid: int, cpu: int) -> None:
        """Stub thread `tid`, pinned to `cpu`, is gone (any host thread may say so)."""
        with self._lock:
            ident = self._by_cpu_owner.pop((tid, cpu), None)
            tr = self._tracers.get(ident) if ident is not None else None
            if tr is None:
                return
            tr.count -= 1
            if tr.count > 0:
                return
            del self._tracers[ident]
            self._load[tr.cpu] -= 1
        try:
            os.sched_setaffinity(tr.native_id, tr.before)
        except OSError:
            pass              # the tracer thread has ended meanwhile

    def affinity(self) -> frozenset[int]:
        """The calling thread's CPU affinity as it was before it was pinned."""
        tr = self._tracers.get(threading.get_ident())
        return tr.before if tr is not None else frozenset(os.sched_getaffinity(0))
