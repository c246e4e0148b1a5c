"""kvmbox's on-disk caches of start-up work: JSON files in ~/.cache/kvmbox (or
$XDG_CACHE_HOME/kvmbox), each named by a checksum of what it was built from.

A missing, unreadable or stale file means building again; a read-only home only costs
that rebuild. Users: the stub's machine code (guest_stub/asmcache.py) and the syscall
table's index (sentry/syscalls/table.py).
"""
from __future__ import annotations

import json
import os
import zlib


def cache_dir() -> str:
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(root, "kvmbox")


def cache_path(prefix: str, key_material: object) -> str:
    """The file for `key_material` (anything JSON can encode): another key, another file."""
    text = json.dumps(key_material, sort_keys=True).encode()
    return os.path.join(cache_dir(), f"{prefix}-{zlib.crc32(text):08x}{len(text):x}.json")


def load(path: str) -> object:
    """The JSON at `path`; OSError or ValueError if it is missing or damaged."""
    with open(path) as f:
        return json.load(f)


def store(path: str, data: object) -> None:
    """Write `data` to `path` atomically (a reader never sees half a file); a cache that
    cannot be written is skipped."""
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            json.dump(data, f)
        os.replace(tmp, path)
    except OSError:
        pass
