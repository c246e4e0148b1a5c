"""The syscall table: data mapping each x86-64 syscall number to its handler and support level.

Each sys_<area>.py module exports ENTRIES, a tuple of Entry; build_table() resolves
their names to numbers (kvmbox.abi.syscall_numbers) into a tuple indexed by number,
so the dispatcher does one index per syscall and never a name lookup.  A number with
no record is unimplemented: the dispatcher returns -ENOSYS and reports it once.
"""
from __future__ import annotations

import enum
import errno
import importlib
import os
from dataclasses import dataclass
from collections.abc import Callable, Iterable

from kvmbox.abi.syscall_numbers import NR_BY_NAME, SYSCALLS, TABLE_SIZE

Handler = Callable[..., int]


class Support(enum.Enum):
    SUPPORTED = "supported"          # behaves as Linux does
    PARTIAL = "partial"              # handled, with documented differences (see note)
    ERROR = "error"                  # deliberately fails with a fixed errno (see note)
    UNIMPLEMENTED = "unimplemented"  # no record: -ENOSYS


SUPPORTED = Support.SUPPORTED
PARTIAL = Support.PARTIAL
ERROR = Support.ERROR
UNIMPLEMENTED = Support.UNIMPLEMENTED


@dataclass(frozen=True)
class Entry:
    """What a sys_*.py module declares for one syscall, by name."""
    name: str
    handler: Handler | None
    support: Support
    note: str = ""
    errno: int = 0


@dataclass(frozen=True)
class SyscallRecord:
    """One slot of the built table: the Entry with its number resolved."""
    nr: int
    name: str
    handler: Handler | None
    support: Support
    note: str
    errno: int


class TableError(ValueError):
    """A malformed set of entries (unknown or duplicate name, inconsistent fields)."""


def _check(e: Entry) -> None:
    if e.name not in NR_BY_NAME:
        raise TableError(f"unknown syscall name {e.name!r}")
    if e.support in (SUPPORTED, PARTIAL) and e.handler is None:
        raise TableError(f"{e.name}: {e.support.value} entry needs a handler")
    if e.support is ERROR and (e.handler is not None or e.errno <= 0):
        raise TableError(f"{e.name}: error entry needs errno > 0 and no handler")
    if e.support is UNIMPLEMENTED and e.handler is not None:
        raise TableError(f"{e.name}: unimplemented entry cannot have a handler")


def build_table(*entry_groups: Iterable[Entry]) -> tuple[SyscallRecord | None, ...]:
    """A tuple of TABLE_SIZE slots indexed by syscall number (None where nothing is declared).

    UNIMPLEMENTED entries are allowed (to carry a note) and yield a record with errno
    ENOSYS.  Raises TableError on an unknown or duplicated name.
    """
    slots: list[SyscallRecord | None] = [None] * TABLE_SIZE
    for group in entry_groups:
        for e in group:
            _check(e)
            nr = NR_BY_NAME[e.name]
            if slots[nr] is not None:
                raise TableError(f"duplicate entry for {e.name!r}")
            err = errno.ENOSYS if e.support is UNIMPLEMENTED else e.errno
            slots[nr] = SyscallRecord(nr, e.name, e.handler, e.support, e.note, err)
    return tuple(slots)


def handler_modules() -> list[str]:
    """Names of the kvmbox.sentry.syscalls.sys_* modules present, sorted."""
    import kvmbox.sentry.syscalls as pkg
    # A directory listing, not pkgutil (which imports typing: start-up time matters here).
    names = {f[:-3] for d in pkg.__path__ for f in os.listdir(d)
             if f.startswith("sys_") and f.endswith(".py")}
    return sorted(f"{pkg.__name__}.{n}" for n in names)


def default_table() -> tuple[SyscallRecord | None, ...]:
    """The table built from the ENTRIES of every sys_*.py module that exists."""
    groups = [importlib.import_module(name).ENTRIES for name in handler_modules()]
    return build_table(*groups)


def describe(table: tuple[SyscallRecord | None, ...]) -> list[tuple[int, str, Support, str]]:
    """(nr, name, support, note) for every known syscall number, in number order."""
    rows = []
    for nr, name in SYSCALLS:
        rec = table[nr] if nr < len(table) else None
        if rec is None:
            rows.append((nr, name, UNIMPLEMENTED, ""))
        else:
            rows.append((nr, rec.name, rec.support, rec.note))
    return rows
