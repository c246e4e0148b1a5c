"""On-disk cache of keystone output, so start-up never imports keystone once the cache is warm.

Entries are JSON maps of piece name -> hex machine code, keyed by a checksum of
everything the assembly depends on; a missing, unreadable or stale file means
assembling again.  A read-only home only costs re-assembly next time.
"""
from __future__ import annotations

import json
import os
import zlib
from collections.abc import Callable


def cache_dir() -> str:
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(root, "kvmbox")


def load_or_assemble(prefix: str, key_material: object, names: list[str],
                     assemble: Callable[[], dict[str, str]]) -> dict[str, bytes]:
    """The pieces `names` (hex in the cache) for `key_material`, assembling on a miss."""
    text = json.dumps(key_material, sort_keys=True).encode()
    path = os.path.join(cache_dir(), f"{prefix}-{zlib.crc32(text):08x}{len(text):x}.json")
    try:
        with open(path) as f:
            pieces = json.load(f)
        if sorted(pieces) != sorted(names):
            raise ValueError("stale cache")
    except (OSError, ValueError):
        pieces = assemble()
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            tmp = f"{path}.{os.getpid()}.tmp"
            with open(tmp, "w") as f:
                json.dump(pieces, f)
            os.replace(tmp, path)
        except OSError:
            pass
    return {name: bytes.fromhex(pieces[name]) for name in names}
