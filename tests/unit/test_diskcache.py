"""kvmbox.diskcache: files keyed by what they were built from, written atomically."""
from __future__ import annotations

from kvmbox import diskcache


def test_keys_name_files_and_data_round_trips(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    a, b = diskcache.cache_path("x", [1, "a"]), diskcache.cache_path("x", [1, "b"])
    assert a != b and a == diskcache.cache_path("x", [1, "a"])
    assert a.startswith(str(tmp_path / "kvmbox" / "x-")) and a.endswith(".json")
    diskcache.store(a, {"k": [1, 2]})
    assert diskcache.load(a) == {"k": [1, 2]}
    assert [p.name for p in (tmp_path / "kvmbox").iterdir()] == [a.rsplit("/", 1)[1]]   # no .tmp left


def test_an_unwritable_cache_is_skipped(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))          # no directory can be made under it
    path = diskcache.cache_path("x", 1)
    diskcache.store(path, [1])                                   # no exception
    try:
        diskcache.load(path)
    except OSError:
        pass
    else:
        raise AssertionError("a cache that could not be written was read back")
