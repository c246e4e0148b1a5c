"""FrameRefs: how many private mappings hold each data frame a copy-on-write fork shared.

One byte per frame of the MemoryFile holds the frame's references beyond the
first (0: not shared, which is almost every frame).  The operations on runs of
frames, sharing a process's memory at fork, dropping a reference at exit, cutting a
run into its shared and unshared parts, are bytes operations done in C (translate,
count, a regular expression), not Python loops: 65536 frames (256 MiB) are shared
in about a millisecond, where a dict of counts took about 50 ms.  A byte of 255
means 255 or more: the rest lives in a small dict (a frame held by hundreds of
forked processes, a shell's text in a fork bomb, say).  Not locked: FrameAllocator
calls it under its own lock.
"""
from __future__ import annotations

import mmap
import re
from collections.abc import Iterator

_SAT = 255                                      # the byte is 255 + _big[frame]
_INC = bytes(range(1, 256)) + b"\xff"           # +1; only used on runs with no 254 or 255
_DEC = b"\x00" + bytes(range(255))              # -1; only used on runs with no 0 or 255
_RUNS = re.compile(rb"\x00+|[^\x00]+")


class FrameRefs:
    """Extra references of frames 0..nframes-1 (frame = phys // PAGE)."""

    __slots__ = ("_b", "_big", "shared")

    def __init__(self, nframes: int) -> None:
        # An anonymous mapping, not a bytearray: a bytearray is zeroed byte by byte up front,
        # which for --memory 4T (a GiB of counts) took a second at every start; untouched
        # pages of the mapping cost nothing.
        self._b = mmap.mmap(-1, max(nframes, 1))
        self._big: dict[int, int] = {}
        self.shared = 0                         # frames with at least one extra reference

    def extra(self, frame: int) -> int:
        v = self._b[frame]
        return v if v < _SAT else _SAT + self._big[frame]

    def add(self, first: int, n: int) -> None:
        """One more reference to each of frames [first, first+n)."""
        b = self._b
        s = b[first:first + n]
        if s.find(b"\xfe") < 0 and s.find(b"\xff") < 0:
            self.shared += s.count(0)
            b[first:first + n] = s.translate(_INC)
            return
        for f in range(first, first + n):
            v = b[f]
            if v < _SAT - 1:
                self.shared += v == 0
                b[f] = v + 1
            elif v == _SAT - 1:
                b[f], self._big[f] = _SAT, 0
            else:
                self._big[f] += 1

    def drop(self, first: int, n: int) -> None:
        """One reference fewer to each of frames [first, first+n), all of them shared."""
        b = self._b
        s = b[first:first + n]
        if s.find(b"\xff") < 0:
            assert s.find(b"\x00") < 0, "drop of a frame that is not shared"
            self.shared -= s.count(1)
            b[first:first + n] = s.translate(_DEC)
            return
        for f in range(first, first + n):
            v = b[f]
            if v == _SAT:
                if self._big[f]:
                    self._big[f] -= 1
                else:
                    del self._big[f]
                    b[f] = _SAT - 1
            else:
                assert v, "drop of a frame that is not shared"
                self.shared -= v == 1
                b[f] = v - 1

    def runs(self, first: int, n: int) -> Iterator[tuple[int, int, bool]]:
        """[first, first+n) cut into maximal runs (first frame, count, shared?)."""
        s = self._b[first:first + n]
        zeros = s.count(0)
        if zeros == n or zeros == 0:
            yield first, n, zeros == 0
            return
        for m in _RUNS.finditer(s):
            yield first + m.start(), m.end() - m.start(), s[m.start()] != 0

    def any(self, first: int, n: int) -> bool:
        """Is any of frames [first, first+n) shared?"""
        return self._b[first:first + n].count(0) != n
