"""Record classes: the part of @dataclass that kvmbox uses, made with one exec() per class.

Why kvmbox does not use dataclasses: a cold `kvmbox run /bin/true` creates about 40
record classes, and with dataclasses that cost about 20 ms of the run (a cProfile of
one cold run: 40 `_process_class` calls, 0.020 s), plus importing inspect, ast and dis
(about 5 ms) that nothing else at start-up needs. dataclasses compiles each generated
method separately and inspects every annotation; this module writes __init__, __repr__,
__eq__, __hash__ and the frozen guards of a class as one source text and compiles it
once. The generated methods are the same code dataclasses would generate, so making and
reading a record costs the same; only class creation is cheaper.

Supported, with dataclasses' meaning: `record`, `record(frozen=True, eq=False,
slots=True)`, `field(default=..., default_factory=..., repr=False, compare=False)`,
`__post_init__`, inheritance from a record, `replace` and `fields`. Not supported (no
kvmbox class uses them): order, kw_only, InitVar, init=False fields, match_args.
"""
from __future__ import annotations

TYPE_CHECKING = False               # typing itself is not imported: start-up time
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, TypeVar
    T = TypeVar("T")

_MISSING: Any = object()          # no default given


class FrozenInstanceError(AttributeError):
    """An assignment to a field of a frozen record."""


class Field:
    """One field of a record: its name, default or factory, and whether repr/eq use it."""
    __slots__ = ("name", "default", "default_factory", "repr", "compare")

    def __init__(self, default: Any = _MISSING, default_factory: Any = _MISSING,
                 repr: bool = True, compare: bool = True) -> None:
        if default is not _MISSING and default_factory is not _MISSING:
            raise ValueError("cannot give both default and default_factory")
        self.name = ""
        self.default = default
        self.default_factory = default_factory
        self.repr = repr
        self.compare = compare

    def __repr__(self) -> str:
        return f"Field({self.name!r})"


def field(*, default: Any = _MISSING, default_factory: Callable[[], Any] | Any = _MISSING,
          repr: bool = True, compare: bool = True) -> Any:
    """A field with a default factory or without repr/compare, as dataclasses.field."""
    return Field(default, default_factory, repr, compare)


def _is_classvar(annotation: object) -> bool:
    text = annotation if isinstance(annotation, str) else repr(annotation)
    return text.startswith(("ClassVar", "typing.ClassVar"))


def _collect(cls: type) -> list[Field]:
    """The fields of cls: the inherited records' first, then its own annotations in order."""
    found: dict[str, Field] = {}
    for base in reversed(cls.__mro__[1:]):
        for f in base.__dict__.get("__record_fields__", ()):
            found[f.name] = f
    for name, annotation in cls.__dict__.get("__annotations__", {}).items():
        if _is_classvar(annotation):
            continue
        value = cls.__dict__.get(name, _MISSING)
        f = value if isinstance(value, Field) else Field(default=value)
        f.name = name
        found[name] = f
        if isinstance(value, Field):
            if f.default is _MISSING:
                delattr(cls, name)
            else:
                setattr(cls, name, f.default)
    return list(found.values())


def _source(cls: type, fields: list[Field], frozen: bool, eq: bool,
            env: dict[str, Any]) -> tuple[str, list[str]]:
    """The text of the methods to add, and their names."""
    params, body, made = ["self"], [], []
    seen_default = False
    for f in fields:
        if f.default_factory is not _MISSING:
            env[f"_f_{f.name}"] = f.default_factory
            params.append(f"{f.name}=_FACTORY")
            value = f"_f_{f.name}() if {f.name} is _FACTORY else {f.name}"
            seen_default = True
        elif f.default is not _MISSING:
            env[f"_d_{f.name}"] = f.default
            params.append(f"{f.name}=_d_{f.name}")
            value = f.name
            seen_default = True
        else:
            if seen_default:
                raise TypeError(f"{cls.__name__}: non-default field {f.name!r} "
                                "follows a default one")
            params.append(f.name)
            value = f.name
        body.append(f"_set(self, {f.name!r}, {value})" if frozen else f"self.{f.name} = {value}")
    if hasattr(cls, "__post_init__"):
        body.append("self.__post_init__()")
    lines = [f"def __init__({', '.join(params)}):", *(f"    {b}" for b in body or ["pass"])]
    made.append("__init__")

    shown = ", ".join(f"{f.name}={{self.{f.name}!r}}" for f in fields if f.repr)
    lines += ["def __repr__(self):",
              f"    return f'{{self.__class__.__qualname__}}({shown})'"]
    made.append("__repr__")

    compared = [f.name for f in fields if f.compare]
    key = "(" + "".join(f"self.{n}," for n in compared) + ")"
    if eq:
        other = "(" + "".join(f"other.{n}," for n in compared) + ")"
        lines += ["def __eq__(self, other):",
                  "    if other.__class__ is self.__class__:",
                  f"        return {key} == {other}",
                  "    return NotImplemented"]
        made.append("__eq__")
    if eq and frozen:
        lines += ["def __hash__(self):", f"    return hash({key})"]
        made.append("__hash__")
    if frozen:
        env["_names"] = frozenset(f.name for f in fields)
        lines += ["def __setattr__(self, name, value):",
                  "    if type(self) is _cls or name in _names:",
                  "        raise FrozenInstanceError(f'cannot assign to field {name!r}')",
                  "    super(_cls, self).__setattr__(name, value)",
                  "def __delattr__(self, name):",
                  "    if type(self) is _cls or name in _names:",
                  "        raise FrozenInstanceError(f'cannot delete field {name!r}')",
                  "    super(_cls, self).__delattr__(name)"]
        made += ["__setattr__", "__delattr__"]
    return "\n".join(lines) + "\n", made


def _with_slots(cls: type, fields: list[Field]) -> type:
    """A copy of cls with __slots__ for its own fields (a class cannot gain slots later)."""
    inherited = {f.name for base in cls.__mro__[1:]
                 for f in base.__dict__.get("__record_fields__", ())}
    ns = dict(cls.__dict__)
    own = tuple(f.name for f in fields if f.name not in inherited)
    for name in own:
        ns.pop(name, None)
    ns.pop("__dict__", None)
    ns.pop("__weakref__", None)
    ns["__slots__"] = own
    new = type(cls)(cls.__name__, cls.__bases__, ns)
    new.__qualname__ = cls.__qualname__
    return new


def _frozen_state(cls: type, names: tuple[str, ...]) -> None:
    """__getstate__/__setstate__ for a frozen record with slots (as dataclasses adds)."""
    def __getstate__(self: object) -> list:
        return [getattr(self, n) for n in names]

    def __setstate__(self: object, state: list) -> None:
        for n, v in zip(names, state):
            object.__setattr__(self, n, v)
    cls.__getstate__ = __getstate__        # type: ignore[attr-defined]
    cls.__setstate__ = __setstate__        # type: ignore[attr-defined]


def _build(cls: type, frozen: bool, eq: bool, slots: bool) -> type:
    fields = _collect(cls)
    if slots:
        cls = _with_slots(cls, fields)
        if frozen:       # copy and pickle restore slots with setattr, which frozen refuses
            _frozen_state(cls, tuple(f.name for f in fields))
    cls.__record_fields__ = tuple(fields)   # type: ignore[attr-defined]
    env: dict[str, Any] = {"_FACTORY": _MISSING, "_set": object.__setattr__, "_cls": cls,
                           "FrozenInstanceError": FrozenInstanceError}
    text, made = _source(cls, fields, frozen, eq, env)
    exec(compile(text, f"<record {cls.__qualname__}>", "exec"), env)
    for name in made:
        if name in cls.__dict__ and name != "__hash__":
            continue                     # the class's own method wins, as with dataclasses
        fn = env[name]
        fn.__qualname__ = f"{cls.__qualname__}.{name}"
        setattr(cls, name, fn)
    if eq and not frozen:
        # dataclasses' rule: a mutable record with __eq__ is unhashable unless the class
        # body defined __hash__ itself.
        own_hash = cls.__dict__.get("__hash__", _MISSING)
        if own_hash is _MISSING or (own_hash is None and "__eq__" in cls.__dict__):
            cls.__hash__ = None           # type: ignore[assignment]
    return cls


def record(cls: type[T] | None = None, /, *, frozen: bool = False, eq: bool = True,
           slots: bool = False) -> Any:
    """Class decorator: make cls a record (as @dataclass with the same arguments)."""
    def wrap(c: type[T]) -> type[T]:
        return _build(c, frozen, eq, slots)
    return wrap if cls is None else wrap(cls)


def fields(obj: object) -> tuple[Field, ...]:
    """The fields of a record class or instance, in __init__ order."""
    return obj.__record_fields__          # type: ignore[attr-defined]


def replace(obj: T, **changes: Any) -> T:
    """A new record like obj with some fields changed (runs __init__ and __post_init__)."""
    for f in obj.__record_fields__:        # type: ignore[attr-defined]
        if f.name not in changes:
            changes[f.name] = getattr(obj, f.name)
    return obj.__class__(**changes)
