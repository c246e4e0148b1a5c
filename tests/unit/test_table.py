"""The syscall table: numbers against the system header, build-time checks, entry style."""
from __future__ import annotations

import errno
import inspect
import re
from pathlib import Path

import pytest

from kvmbox.abi.syscall_numbers import NAME_BY_NR, NR_BY_NAME, SYSCALLS, TABLE_SIZE
from kvmbox.sentry.syscalls import table as T
from kvmbox.sentry.syscalls.table import (ERROR, PARTIAL, SUPPORTED, UNIMPLEMENTED, Entry,
                                          TableError, build_table, default_table, describe)

HEADER = Path("/usr/include/x86_64-linux-gnu/asm/unistd_64.h")


def _header_numbers() -> dict[str, int]:
    pairs = re.findall(r"^#define __NR_(\w+)\s+(\d+)\s*$", HEADER.read_text(), re.M)
    return {name: int(nr) for name, nr in pairs}


@pytest.mark.skipif(not HEADER.exists(), reason="no x86-64 kernel headers on this host")
def test_numbers_match_the_system_header():
    header = _header_numbers()
    assert len(header) > 300
    for name, nr in header.items():
        assert NR_BY_NAME.get(name) == nr, name
    # Anything we list beyond the header must be newer than everything it knows.
    for nr, name in SYSCALLS:
        if name not in header:
            assert nr > max(header.values()), name


def test_well_known_numbers():
    assert (NR_BY_NAME["read"], NR_BY_NAME["rseq"], NR_BY_NAME["clone3"]) == (0, 334, 435)
    assert NR_BY_NAME["futex_waitv"] == 449 and NAME_BY_NR[60] == "exit"
    assert len(NAME_BY_NR) == len(SYSCALLS) == len(NR_BY_NAME)
    assert max(NAME_BY_NR) < TABLE_SIZE


def _h(t, a):
    """Implements Linux syscall getpid(2)."""
    return 1


def test_build_table_indexes_by_number():
    tbl = build_table([Entry("getpid", _h, SUPPORTED, "n")],
                      [Entry("rseq", None, ERROR, "x", errno.ENOSYS)])
    assert len(tbl) == TABLE_SIZE
    rec = tbl[39]
    assert (rec.nr, rec.name, rec.handler, rec.support, rec.note) == (39, "getpid", _h, SUPPORTED, "n")
    assert tbl[334].errno == errno.ENOSYS and tbl[334].handler is None
    assert tbl[0] is None


def test_unimplemented_entry_gets_enosys():
    tbl = build_table([Entry("kexec_load", None, UNIMPLEMENTED, "never")])
    assert tbl[NR_BY_NAME["kexec_load"]].errno == errno.ENOSYS


@pytest.mark.parametrize("groups", [
    ([Entry("getpid", _h, SUPPORTED)], [Entry("getpid", _h, PARTIAL)]),   # duplicate
    ([Entry("no_such_call", _h, SUPPORTED)],),                             # unknown name
    ([Entry("getpid", None, SUPPORTED)],),                                 # no handler
    ([Entry("getpid", None, PARTIAL)],),
    ([Entry("rseq", None, ERROR)],),                                       # no errno
    ([Entry("rseq", _h, ERROR, "", errno.ENOSYS)],),                       # handler on ERROR
])
def test_build_table_rejects_bad_entries(groups):
    with pytest.raises(TableError):
        build_table(*groups)


def test_describe_lists_every_known_number():
    tbl = build_table([Entry("getpid", _h, SUPPORTED, "note")])
    rows = describe(tbl)
    assert [r[0] for r in rows] == [nr for nr, _ in SYSCALLS]
    by_name = {r[1]: r for r in rows}
    assert by_name["getpid"] == (39, "getpid", SUPPORTED, "note")
    assert by_name["read"] == (0, "read", UNIMPLEMENTED, "")


def _all_entries():
    out = []
    for modname in T.handler_modules():
        mod = __import__(modname, fromlist=["ENTRIES"])
        out.extend((modname, e) for e in mod.ENTRIES)
    return out


def test_default_table_builds_and_has_ours():
    tbl = default_table()
    for name in ("getpid", "uname", "clock_gettime", "getrandom", "rt_sigaction", "futex"):
        rec = tbl[NR_BY_NAME[name]]
        assert rec is not None and rec.handler is not None, name
    assert tbl[NR_BY_NAME["rseq"]].support is ERROR
    assert tbl[NR_BY_NAME["rseq"]].errno == errno.ENOSYS


def test_every_entry_follows_the_house_style():
    entries = _all_entries()
    assert len(entries) >= 50
    for modname, e in entries:
        if e.support in (SUPPORTED, PARTIAL):
            assert callable(e.handler), e.name
        if e.handler is not None:
            assert e.handler.__doc__ == f"Implements Linux syscall {e.name}(2).", (modname, e.name)
            assert list(inspect.signature(e.handler).parameters) == ["t", "a"], e.name
        if e.support is PARTIAL or e.support is ERROR:
            assert e.note, (modname, e.name)


# --- the cached index: default_table() without importing the handler modules ---------------

def _fields(table):
    return [(r.nr, r.name, r.support, r.note, r.errno, r.handler is None) for r in table if r]


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    return tmp_path / "kvmbox"


def test_lazy_table_from_the_index_is_the_eager_table(cache):
    eager = T.eager_table()
    first = default_table()                       # no index yet: built eagerly, index written
    assert [p.name for p in cache.iterdir()] == [Path(T._index_path(
        T._fingerprint(T.handler_modules()))).name]
    second = default_table()                      # from the index
    assert _fields(first) == _fields(second) == _fields(eager)
    lazy = [r for r in second if r and r.handler]
    assert len(lazy) > 150 and all(r.handler.__name__ == f"lazy_{r.name}" for r in lazy)
    for r in lazy:                                # each resolves to the very handler it stands for
        assert r.handler.resolve() is eager[r.nr].handler, r.name


def test_a_lazy_handler_calls_through(cache):
    default_table()
    rec = default_table()[NR_BY_NAME["getpid"]]

    class Task:
        tgid = 4242
    assert rec.handler.__name__ == "lazy_getpid"
    assert rec.handler(Task(), (0,) * 6) == 4242 == rec.handler(Task(), (0,) * 6)


@pytest.mark.parametrize("damage", ["garbage", "foreign module", "wrong number", "no handler"])
def test_a_damaged_index_is_not_trusted(cache, damage):
    """A corrupt or tampered index is rebuilt from the modules; it never names a module of
    its own choosing or gives a record another syscall's number."""
    import json
    default_table()
    path = Path(T._index_path(T._fingerprint(T.handler_modules())))
    rows = json.loads(path.read_text())
    row = next(r for r in rows if r[1] == "getpid")
    if damage == "garbage":
        path.write_text("{not json")
    else:
        if damage == "foreign module":
            row[5], row[6] = "os", 0
        elif damage == "wrong number":
            row[0] = NR_BY_NAME["kill"]
        else:
            row[5], row[6] = "", -1
        path.write_text(json.dumps(rows))
    table = default_table()
    assert _fields(table) == _fields(T.eager_table())
    assert table[NR_BY_NAME["getpid"]].handler is T.eager_table()[NR_BY_NAME["getpid"]].handler
    assert _fields(default_table()) == _fields(table)     # and the index was written again


def test_an_index_entry_that_names_another_syscall_fails_loudly():
    h = T.lazy_handler(T.handler_modules()[0], 0, "no_such_call")
    with pytest.raises(TableError, match="stale syscall index"):
        h.resolve()


def test_no_writable_cache_still_gives_the_table(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))       # a file: no directory under it
    assert _fields(default_table()) == _fields(T.eager_table())


def test_the_index_depends_on_every_handler_module():
    names = {n for n, *_ in T._fingerprint(T.handler_modules())[1:]}
    assert {m.rsplit(".", 1)[1] + ".py" for m in T.handler_modules()} <= names
    assert {"table.py", "syscall_numbers.py"} <= names
