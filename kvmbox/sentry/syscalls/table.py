"""The syscall table: data mapping each x86-64 syscall number to its handler and support level.

Each sys_<area>.py module exports ENTRIES, a tuple of Entry; build_table() resolves
their names to numbers (kvmbox.abi.syscall_numbers) into a tuple indexed by number,
so the dispatcher does one index per syscall and never a name lookup.  A number with
no record is unimplemented: the dispatcher returns -ENOSYS and reports it once.

default_table() does not import the 27 handler modules (and the network stack, timers
and the rest they import: 44 modules, 8-11 ms of every cold start). It reads an index
of the built table from the user's cache (written the first time, and again whenever
a handler module, this file or the numbers change), and gives each record a handler
that imports its module on the first call.
"""
from __future__ import annotations

import enum
import errno
import importlib
import os
from collections.abc import Callable, Iterable

from kvmbox import diskcache
from kvmbox.abi.syscall_numbers import NR_BY_NAME, SYSCALLS, TABLE_SIZE
from kvmbox.record import record

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


@record(frozen=True)
class Entry:
    """What a sys_*.py module declares for one syscall, by name."""
    name: str
    handler: Handler | None
    support: Support
    note: str = ""
    errno: int = 0


@record(frozen=True)
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


def eager_table() -> tuple[SyscallRecord | None, ...]:
    """The table built from the ENTRIES of every sys_*.py module that exists (all imported)."""
    groups = [importlib.import_module(name).ENTRIES for name in handler_modules()]
    return build_table(*groups)


_INDEX_FORMAT = 1


def _fingerprint(modules: list[str]) -> list:
    """What the index depends on: size and mtime of every handler module, this file and the
    syscall numbers (a change to any of them means building the table again)."""
    from kvmbox.abi import syscall_numbers
    here = os.path.dirname(__file__)
    paths = [os.path.join(here, m.rsplit(".", 1)[1] + ".py") for m in modules]
    paths += [__file__, syscall_numbers.__file__]
    out: list = [_INDEX_FORMAT]
    for p in paths:
        st = os.stat(p)
        out.append([os.path.basename(p), st.st_size, st.st_mtime_ns])
    return out


def _index_path(fingerprint: list) -> str:
    return diskcache.cache_path("syscalls", fingerprint)


def _index_rows(table: tuple[SyscallRecord | None, ...], modules: list[str]) -> list[list]:
    """[nr, name, support, note, errno, module, entry number or -1] per record of `table`."""
    where: dict[str, tuple[str, int]] = {}
    for m in modules:
        for i, e in enumerate(importlib.import_module(m).ENTRIES):
            if e.handler is not None:
                where[e.name] = (m, i)
    return [[r.nr, r.name, r.support.value, r.note, r.errno, *where.get(r.name, ("", -1))]
            for r in table if r is not None]


def lazy_handler(module: str, index: int, name: str) -> Handler:
    """A handler that imports `module` on its first call and then calls ENTRIES[index]'s."""
    fn: Handler | None = None

    def resolve() -> Handler:
        nonlocal fn
        if fn is None:
            entry = importlib.import_module(module).ENTRIES[index]
            if entry.name != name or entry.handler is None:
                raise TableError(f"stale syscall index: {module} entry {index} is not {name}")
            fn = entry.handler
        return fn

    def handler(t, a):
        return (fn or resolve())(t, a)

    handler.resolve = resolve        # type: ignore[attr-defined]
    handler.__qualname__ = handler.__name__ = f"lazy_{name}"
    return handler


def _from_index(rows: list, modules: list[str]) -> tuple[SyscallRecord | None, ...]:
    """The table from index rows, through build_table and its checks (TableError, a
    ValueError, on anything inconsistent); a row may only name one of our handler modules."""
    known = set(modules)
    entries = []
    for nr, name, support, note, err, module, index in rows:
        if NR_BY_NAME.get(name) != nr:
            raise ValueError("bad index row")
        if module and (module not in known or not isinstance(index, int) or index < 0):
            raise ValueError("bad index row")
        handler = lazy_handler(module, index, name) if module else None
        entries.append(Entry(name, handler, Support(support), str(note), int(err)))
    return build_table(entries)


def default_table() -> tuple[SyscallRecord | None, ...]:
    """The table of every sys_*.py module, from the cached index (handlers imported on first
    call); on a missing, unreadable or stale index, built eagerly and the index written."""
    modules = handler_modules()
    try:
        path = _index_path(_fingerprint(modules))
    except OSError:                   # a module file we cannot stat: no index
        return eager_table()
    try:
        return _from_index(diskcache.load(path), modules)
    except (OSError, ValueError, TypeError, KeyError):
        pass
    table = eager_table()
    diskcache.store(path, _index_rows(table, modules))
    return table


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
