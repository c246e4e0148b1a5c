"""On-disk cache of keystone output, so start-up never imports keystone once the cache is warm.

Entries are JSON maps of piece name -> hex machine code, keyed by a checksum of
everything the assembly depends on (kvmbox/diskcache.py); a missing, unreadable or
stale file means assembling again.
"""
from __future__ import annotations

from collections.abc import Callable

from kvmbox import diskcache


def load_or_assemble(prefix: str, key_material: object, names: list[str],
                     assemble: Callable[[], dict[str, str]]) -> dict[str, bytes]:
    """The pieces `names` (hex in the cache) for `key_material`, assembling on a miss."""
    path = diskcache.cache_path(prefix, key_material)
    try:
        pieces = diskcache.load(path)
        if not isinstance(pieces, dict) or sorted(pieces) != sorted(names):
            raise ValueError("stale cache")
    except (OSError, ValueError):
        pieces = assemble()
        diskcache.store(path, pieces)
    return {name: bytes.fromhex(pieces[name]) for name in names}
