"""The resource limits a program starts with, and the --ulimit / ulimits= options that set them.

As a native exec would, the program inherits the limits of the process that invoked
kvmbox (resource.getrlimit of each, read at every run).  --ulimit NAME=SOFT[:HARD]
(docker's names, plus `as`) and Sandbox(ulimits=...) / Sandbox.run(ulimits=...) replace
some of them.  RLIMIT_AS is not tied to --memory: it counts address space (PROT_NONE
reservations included, which Go and Java make by the GiB), while --memory bounds the
memory a program commits.  Values are in setrlimit(2)'s units (bytes, seconds, counts); `unlimited`
or -1 is RLIM_INFINITY; a soft limit alone sets the hard one too, as docker does.
"""
from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from kvmbox.errors import KvmboxError

RLIM_INFINITY = (1 << 64) - 1
RLIMIT_AS, RLIMIT_NOFILE = 9, 7
RLIM_NLIMITS = 16
NR_OPEN = 1 << 20           # fs.nr_open's default: RLIMIT_NOFILE can go no higher
# --ulimit names (docker's, and `as`) -> RLIMIT_* numbers (asm-generic/resource.h).
NAMES: dict[str, int] = {
    "cpu": 0, "fsize": 1, "data": 2, "stack": 3, "core": 4, "rss": 5, "nproc": 6, "nofile": 7,
    "memlock": 8, "as": 9, "locks": 10, "sigpending": 11, "msgqueue": 12, "nice": 13,
    "rtprio": 14, "rttime": 15,
}
_VALUE = re.compile(r"^(?:unlimited|infinity|-1|\d+)$")

Limits = dict[int, list[int]]          # RLIMIT_* -> [soft, hard]


def _bad(spec: object, why: str) -> KvmboxError:
    return KvmboxError(f"kvmbox: bad ulimit {spec!r}: {why} (use NAME=SOFT[:HARD], e.g. "
                       f"nofile=4096:8192 or core=unlimited)")


def _value(spec: object, text: int | str) -> int:
    if isinstance(text, int) and not isinstance(text, bool):
        text = str(text)
    if not isinstance(text, str) or not _VALUE.match(text.strip().lower()):
        raise _bad(spec, f"{text!r} is not a number or 'unlimited'")
    text = text.strip().lower()
    if text in ("unlimited", "infinity", "-1"):
        return RLIM_INFINITY
    value = int(text)
    if value >= RLIM_INFINITY:
        raise _bad(spec, f"{value} is too large")
    return value


def _one(spec: object, name: str, value: object) -> tuple[int, int, int]:
    resource = NAMES.get(name.strip().lower())
    if resource is None:
        raise _bad(spec, f"unknown limit {name!r} (known: {', '.join(NAMES)})")
    if isinstance(value, tuple):
        if len(value) != 2:
            raise _bad(spec, "give (soft, hard)")
        soft, hard = _value(spec, value[0]), _value(spec, value[1])
    elif isinstance(value, str) and ":" in value:
        s, _, h = value.partition(":")
        soft, hard = _value(spec, s), _value(spec, h)
    else:
        soft = hard = _value(spec, value)  # type: ignore[arg-type]
    if soft > hard:
        raise _bad(spec, "the soft limit is above the hard one")
    if resource == RLIMIT_NOFILE and hard > NR_OPEN:
        raise _bad(spec, f"nofile cannot exceed {NR_OPEN} (fs.nr_open)")
    return resource, soft, hard


def parse_ulimits(ulimits: object) -> dict[int, tuple[int, int]]:
    """RLIMIT_* -> (soft, hard) from 'NAME=SOFT[:HARD]' strings or a {name: value} mapping
    (value: a number, 'unlimited', 'SOFT:HARD' or a (soft, hard) pair); KvmboxError if bad."""
    out: dict[int, tuple[int, int]] = {}
    if ulimits is None:
        return out
    if isinstance(ulimits, Mapping):
        items = [(k, v, f"{k}={v}") for k, v in ulimits.items()]
    elif isinstance(ulimits, Sequence) and not isinstance(ulimits, (str, bytes)):
        items = []
        for spec in ulimits:
            if not isinstance(spec, str) or "=" not in spec:
                raise _bad(spec, "expected NAME=SOFT[:HARD]")
            name, _, value = spec.partition("=")
            items.append((name, value, spec))
    else:
        raise _bad(ulimits, "expected NAME=SOFT[:HARD] strings or a mapping")
    for name, value, spec in items:
        if not isinstance(name, str):
            raise _bad(spec, "the name must be a string")
        resource, soft, hard = _one(spec, name, value)
        out[resource] = (soft, hard)
    return out


def host_rlimits() -> Limits:
    """The calling process's limits, RLIM_INFINITY as Linux's all-ones."""
    import resource as _resource
    out: Limits = {}
    for r in range(RLIM_NLIMITS):
        try:
            pair = _resource.getrlimit(r)
        except (ValueError, OSError):          # a resource this host does not know
            pair = (_resource.RLIM_INFINITY, _resource.RLIM_INFINITY)
        out[r] = [RLIM_INFINITY if v == _resource.RLIM_INFINITY or v < 0 else v for v in pair]
    return out


def start_rlimits(memory_limit: int | None, *overrides: Mapping[int, tuple[int, int]]) -> Limits:
    """The limits a run starts with: the host's, then each override in turn (RLIMIT_NOFILE
    no higher than fs.nr_open).  `memory_limit` is not folded in (see the module note)."""
    limits = host_rlimits()
    for extra in overrides:
        for r, (soft, hard) in extra.items():
            limits[r] = [soft, hard]
    soft, hard = limits[RLIMIT_NOFILE]
    limits[RLIMIT_NOFILE] = [min(soft, NR_OPEN), min(hard, NR_OPEN)]
    return limits
