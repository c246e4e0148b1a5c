"""Timekeeper: calibrates the TSC against the host clocks and keeps the [vvar] page current.

The guest's vDSO computes  mono = mono_base + ((rdtsc - tsc_base) * mult) >> shift
and adds a per-clock offset (REALTIME, MONOTONIC_RAW, BOOTTIME ...).  Guest
ring-3 `rdtsc` reads the host TSC (constant, non-stop), so the host reads it
too, here, through a few bytes of machine code called with ctypes.

The baseline is taken when the Timekeeper is made (with the platform); the
slope is measured once at least CALIBRATE_NS later and published with
`enabled` = 1 (before that every vDSO call takes the syscall fallback).  A
daemon thread then rebases every REBASE_S: seqlock write (odd, fields, even).
The slope stays fixed; it is biased slightly slow (by twice the calibration's
uncertainty), so each rebase pulls the clock forward to the host's by at most a
few microseconds and the new base never goes below the old extrapolation:
CLOCK_MONOTONIC read in the guest never goes backwards.

The Sentry's own clock syscalls read the same line (now_ns), so a program that
mixes vDSO calls, raw syscalls and absolute sleeps sees one consistent clock
(the line lags the host's clock by at most a few microseconds).
"""
from __future__ import annotations

import ctypes
import mmap
import struct
import threading
import time

from kvmbox.guest_stub import layout as L

CALIBRATE_NS = 20_000_000            # publish only after this much baseline (short runs use syscalls)
REBASE_S = 0.1                       # rebase period
SHIFT = 32                           # fixed-point fraction bits of mult
_SAMPLES = 16                        # best (narrowest) of this many rdtsc/clock brackets
_MIN_BIAS = 2e-6                     # the slope is at least this much (relative) slow
_MASK64 = (1 << 64) - 1
# Host clock ids (the same values as the guest's).
_REALTIME, _MONOTONIC, _MONOTONIC_RAW, _BOOTTIME = 0, 1, 4, 7

# lfence; rdtsc; shl rdx, 32; or rax, rdx; ret
_RDTSC_CODE = bytes.fromhex("0faee80f3148c1e2204809d0c3")
_rdtsc_fn = None


def rdtsc() -> int:
    """The host TSC (the same counter the guest's `rdtsc` reads)."""
    global _rdtsc_fn
    if _rdtsc_fn is None:
        page = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
        page.write(_RDTSC_CODE)
        addr = ctypes.addressof(ctypes.c_char.from_buffer(page))
        fn = ctypes.CFUNCTYPE(ctypes.c_uint64)(addr)
        fn._page = page                      # keep the code mapped as long as the function lives
        _rdtsc_fn = fn
    return _rdtsc_fn()


def _sample() -> tuple[int, int, int]:
    """(tsc, host CLOCK_MONOTONIC ns, bracket width in ticks): the narrowest of _SAMPLES brackets."""
    best = None
    gettime = time.clock_gettime_ns
    for _ in range(_SAMPLES):
        t0 = rdtsc()
        mono = gettime(_MONOTONIC)
        t1 = rdtsc()
        if best is None or t1 - t0 < best[2]:
            best = ((t0 + t1) // 2, mono, t1 - t0)
    assert best is not None
    return best


class Timekeeper:
    """Writes the clock fields of one [vvar] page (at `phys` in `mem`) for the vDSO."""

    def __init__(self, mem: memoryview, phys: int) -> None:
        self._mem = mem
        self._phys = phys
        self._base = _sample()
        self._allowed = True
        self._calibrated = False
        self.mult = 0
        self._tsc_base = self._mono_base = 0
        self._raw_off = self._boot_off = 0
        self.rebases = 0
        self._params: tuple[int, int, int, tuple[int, ...]] | None = None   # what the vDSO reads
        self.ready = threading.Event()       # set once the clock is published
        self._lock = threading.Lock()        # one writer at a time (thread and allow())
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kvmbox-timekeeper", daemon=True)
        self._thread.start()

    # --- the daemon ----------------------------------------------------------
    def _run(self) -> None:
        try:
            wait = max(0.0, (self._base[1] + CALIBRATE_NS - time.monotonic_ns()) / 1e9)
            while not self._stop.wait(wait):
                self.rebase()
                wait = REBASE_S
        except (ValueError, TypeError):
            pass                             # guest RAM went away under us (platform closed)

    def _calibrate(self, tsc: int, mono: int, width: int) -> None:
        tsc0, mono0, width0 = self._base
        ns_per_tick = (mono - mono0) / (tsc - tsc0)
        uncertainty = (width0 + width) / (tsc - tsc0)
        bias = max(2 * uncertainty, _MIN_BIAS)
        self.mult = int(ns_per_tick * (1 - bias) * (1 << SHIFT))
        self._calibrated = True

    def _extrapolate(self, tsc: int) -> int:
        return self._mono_base + (((tsc - self._tsc_base) * self.mult) >> SHIFT)

    def rebase(self) -> None:
        """Measure the host clocks now and publish new bases (monotonic: never below the old line)."""
        with self._lock:
            tsc, mono, width = _sample()
            real = time.clock_gettime_ns(_REALTIME)
            raw = time.clock_gettime_ns(_MONOTONIC_RAW)
            boot = time.clock_gettime_ns(_BOOTTIME)
            if not self._calibrated:
                self._calibrate(tsc, mono, width)
                base = mono
            else:
                base = max(mono, self._extrapolate(tsc) + 1)
            # RAW and BOOTTIME offsets only grow, so those clocks stay monotonic too.
            self._raw_off = max(self._raw_off, raw - mono) if self.rebases else raw - mono
            self._boot_off = max(self._boot_off, boot - mono) if self.rebases else boot - mono
            self._tsc_base, self._mono_base = tsc, base
            offsets = [real - mono, 0, 0, 0, self._raw_off, real - mono, 0, self._boot_off]
            self._publish(offsets)
            self.rebases += 1
        self.ready.set()

    def _publish(self, offsets: list[int]) -> None:
        mem, p = self._mem, self._phys
        self._params = (self._tsc_base, self.mult, self._mono_base, tuple(offsets))
        seq = struct.unpack_from("<I", mem, p + L.VVAR_SEQ)[0]
        struct.pack_into("<I", mem, p + L.VVAR_SEQ, (seq + 1) & 0xFFFF_FFFF)    # odd: readers wait
        struct.pack_into("<I", mem, p + L.VVAR_ENABLED, int(self._allowed and self._calibrated))
        struct.pack_into("<QQI", mem, p + L.VVAR_TSC_BASE, self._tsc_base, self.mult, SHIFT)
        struct.pack_into("<Q", mem, p + L.VVAR_MONO_BASE, self._mono_base & _MASK64)
        struct.pack_into("<8Q", mem, p + L.VVAR_CLOCK_OFFSETS, *(o & _MASK64 for o in offsets))
        struct.pack_into("<I", mem, p + L.VVAR_SEQ, (seq + 2) & 0xFFFF_FFFF)    # even: consistent

    def now_ns(self, clock: int) -> int:
        """Clock `clock` as the guest's vDSO computes it (the host's clock before calibration)."""
        params = self._params
        if params is None or not 0 <= clock < 8 or not (L.VVAR_FAST_CLOCKS >> clock) & 1:
            return time.clock_gettime_ns(clock)
        tsc_base, mult, mono_base, offsets = params
        return mono_base + ((max(rdtsc() - tsc_base, 0) * mult) >> SHIFT) + offsets[clock]

    # --- control ---------------------------------------------------------------
    def allow(self, allowed: bool) -> None:
        """Let the vDSO answer in the guest (False: every call takes the syscall, e.g. --strace)."""
        with self._lock:
            if allowed == self._allowed:
                return
            self._allowed = allowed
            mem, p = self._mem, self._phys
            seq = struct.unpack_from("<I", mem, p + L.VVAR_SEQ)[0]
            struct.pack_into("<I", mem, p + L.VVAR_SEQ, (seq + 1) & 0xFFFF_FFFF)
            struct.pack_into("<I", mem, p + L.VVAR_ENABLED, int(allowed and self._calibrated))
            struct.pack_into("<I", mem, p + L.VVAR_SEQ, (seq + 2) & 0xFFFF_FFFF)

    def trap_getcpu(self) -> None:
        """From now on the vDSO's getcpu takes the syscall (a thread narrowed its affinity,
        so "CPU 0" may lie outside a thread's mask); never undone."""
        struct.pack_into("<I", self._mem, self._phys + L.VVAR_GETCPU_TRAP, 1)

    def wait_ready(self, timeout: float = 1.0) -> bool:
        """Block until the clock is published (tests, benchmarks)."""
        return self.ready.wait(timeout)

    def stop(self) -> None:
        """Stop the rebasing thread (the platform is closing); idempotent."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=2)
