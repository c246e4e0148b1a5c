"""kvmbox.record: the @dataclass subset kvmbox uses, with dataclasses' meaning."""
from __future__ import annotations

import copy
import dataclasses
from typing import ClassVar

import pytest

from kvmbox.record import FrozenInstanceError, field, fields, record, replace


@record(frozen=True, slots=True)
class Point:
    x: int
    y: int = 0


@record
class Bag:
    items: list = field(default_factory=list)
    hidden: int = field(default=7, repr=False, compare=False)
    total: int = 0
    KIND: ClassVar[str] = "bag"

    def __post_init__(self) -> None:
        self.total = len(self.items)


@record(eq=False)
class Ident:
    n: int


@dataclasses.dataclass(frozen=True)
class DcPoint:
    x: int
    y: int = 0


def test_init_repr_eq_hash_as_dataclasses():
    p = Point(1)
    assert (p.x, p.y) == (1, 0) and repr(p) == "Point(x=1, y=0)"
    assert p == Point(1, 0) and p != Point(1, 2) and hash(p) == hash(Point(1, 0))
    assert Point(1) != DcPoint(1)                     # another class is never equal
    assert repr(DcPoint(1)).replace("DcPoint", "Point") == repr(p)
    with pytest.raises(TypeError):
        Point()                                       # x has no default


def test_frozen_and_slots():
    p = Point(1, 2)
    with pytest.raises(FrozenInstanceError):
        p.x = 3
    with pytest.raises(FrozenInstanceError):
        del p.y
    assert isinstance(FrozenInstanceError(), AttributeError)
    assert Point.__slots__ == ("x", "y") and not hasattr(p, "__dict__")
    assert copy.copy(p) == p and copy.deepcopy(p) == p


def test_factories_are_fresh_and_post_init_runs():
    a, b = Bag(), Bag([1, 2])
    a.items.append(1)
    assert Bag().items == [] and b.total == 2 and a.total == 0
    assert Bag.KIND == "bag" and [f.name for f in fields(Bag)] == ["items", "hidden", "total"]
    assert repr(b) == "Bag(items=[1, 2], total=2)"
    assert Bag([1], hidden=1) == Bag([1], hidden=2)   # compare=False
    assert Bag.__hash__ is None                       # mutable with __eq__: unhashable


def test_eq_false_keeps_identity():
    a = Ident(1)
    assert a != Ident(1) and a == a and hash(a) == object.__hash__(a)


def test_replace_runs_init():
    assert replace(Point(1, 2), y=5) == Point(1, 5)
    assert replace(Bag([1]), items=[1, 2, 3]).total == 3
    with pytest.raises(TypeError):
        replace(Point(1), z=1)


def test_inheritance_and_own_methods():
    @record(frozen=True)
    class Base:
        a: int

    @record(frozen=True)
    class Child(Base):
        b: int = 2

        def __repr__(self) -> str:
            return "mine"
    c = Child(1)
    assert (c.a, c.b) == (1, 2) and repr(c) == "mine"
    assert [f.name for f in fields(c)] == ["a", "b"]


def test_a_field_without_default_after_one_with_is_refused():
    with pytest.raises(TypeError, match="non-default"):
        @record
        class Bad:
            a: int = 1
            b: int
