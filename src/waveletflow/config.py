"""Frozen dataclass configs from and to plain JSON-able dicts, with one-line errors naming the bad key.

:func:`from_dict` reads the field types from the class annotations and checks every value: ``int`` (a bool is
not an int), ``float`` (an int is accepted), ``bool``, ``str``, ``None``, unions such as ``int | None``,
tuples (``tuple[int, ...]`` or ``tuple[int, int]``, from lists), nested dataclasses (from dicts) and tuples of
them. Fields left out take their defaults. :func:`to_dict` is its inverse (tuples become lists), so
``from_dict(cls, to_dict(obj)) == obj`` and ``json.dumps(to_dict(obj))`` works.

>>> from dataclasses import dataclass
>>> @dataclass(frozen=True)
... class Opt(Config):
...     width: int = 64
...     hidden: tuple[int, ...] = (32,)
>>> Opt.from_dict({"hidden": [8, 8]})
Opt(width=64, hidden=(8, 8))
>>> Opt(width=3).to_dict()
{'width': 3, 'hidden': [32]}
>>> Opt.from_dict({"widht": 3})
Traceback (most recent call last):
...
waveletflow.errors.UserInputError: unknown key 'widht' in config (did you mean 'width'?); allowed: width, hidden
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Mapping
from functools import lru_cache
from typing import Any, TypeVar

from waveletflow.errors import UserInputError

__all__ = ["LIMITS", "Config", "check_choice", "check_limits", "check_positive", "convert", "from_dict", "require",
           "to_dict"]

T = TypeVar("T")
_NONE = type(None)


@lru_cache(maxsize=None)
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _show(value: Any) -> str:
    """A short ``repr`` of a value for an error message (one line)."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _describe(tp: Any) -> str:
    """``int`` → ``an int``, ``tuple[int, ...]`` → ``a list of ints``, ..."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in args)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {_plural(args[0])}"
        if len(set(args)) == 1:
            return f"a list of {len(args)} {_plural(args[0])}"
        return f"a list of {len(args)} items"
    names = {int: "an int", float: "a number", bool: "true or false", str: "a string", _NONE: "null", Any: "a value"}
    if tp in names:
        return names[tp]
    return f"a mapping ({tp.__name__})" if dataclasses.is_dataclass(tp) else str(tp)


def _plural(tp: Any) -> str:
    words = {int: "ints", float: "numbers", bool: "bools", str: "strings"}
    return words.get(tp, "mappings" if dataclasses.is_dataclass(tp) else _describe(tp))


def _fits(tp: Any, value: Any) -> bool:
    """Whether ``value`` has the JSON kind of ``tp`` (used to pick the member of a union)."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return True
    if tp is _NONE:
        return value is None
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    if origin is tuple:
        return isinstance(value, (list, tuple))
    if dataclasses.is_dataclass(tp):
        return isinstance(value, (Mapping, tp))
    raise TypeError(f"unsupported config annotation {tp!r}")


def convert(tp: Any, value: Any, place: str) -> Any:
    """``value`` checked against the annotation ``tp`` and converted (lists → tuples, dicts → dataclasses).

    ``place`` names the value in errors, e.g. ``"config levels[0].n_steps"``.

    >>> convert(tuple[int, int], [7, 7], "base_size")
    (7, 7)
    >>> convert(int, True, "config n_steps")
    Traceback (most recent call last):
    ...
    waveletflow.errors.UserInputError: config n_steps must be an int, got True
    """
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        for member in args:
            if _fits(member, value):
                return convert(member, value, place)
    elif _fits(tp, value):
        if tp is float:
            return float(value)
        if origin is tuple:
            if len(args) == 2 and args[1] is Ellipsis:
                return tuple(convert(args[0], v, f"{place}[{i}]") for i, v in enumerate(value))
            if len(value) == len(args):
                return tuple(convert(a, v, f"{place}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
        elif dataclasses.is_dataclass(tp):
            return value if isinstance(value, tp) else _build(tp, value, place)
        else:
            return value
    raise UserInputError(f"{place} must be {_describe(tp)}, got {_show(value)}")


def _build(cls: type[T], data: Any, place: str, top: bool = False) -> T:
    if not isinstance(data, Mapping):
        raise UserInputError(f"{place} must be a mapping of keys to values, got {_show(data)}")
    fields = [f for f in dataclasses.fields(cls) if f.init]
    names = [f.name for f in fields]
    for key in data:
        if key not in names:
            near = difflib.get_close_matches(str(key), names, n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise UserInputError(f"unknown key {key!r} in {place}{hint}; allowed: {', '.join(names)}")
    hints = _hints(cls)
    sep = " " if top else "."
    kwargs = {}
    for f in fields:
        if f.name in data:
            kwargs[f.name] = convert(hints[f.name], data[f.name], f"{place}{sep}{f.name}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise UserInputError(f"{place} is missing the required key {f.name!r}")
    try:
        return cls(**kwargs)
    except UserInputError as exc:
        if top:  # the class's own message says what is wrong
            raise
        raise UserInputError(f"{place}: {exc}") from None


def from_dict(cls: type[T], data: Mapping[str, Any], where: str = "config") -> T:
    """Build the dataclass ``cls`` from ``data``, checking keys and value types.

    ``where`` names ``data`` in errors (e.g. ``"config"`` or ``"model config"``); nested values are named
    after it: ``config levels[2]``, ``config levels[0].n_steps``. Raises
    :class:`~waveletflow.errors.UserInputError` (one line) for an unknown or missing key or a wrong type.
    """
    return _build(cls, data, where, top=True)


def to_dict(obj: Any) -> Any:
    """A plain JSON-able copy of a dataclass (or of a value inside one): tuples become lists."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, Mapping):
        return {str(k): to_dict(v) for k, v in obj.items()}
    return obj


def require(ok: bool, message: str) -> None:
    """Raise :class:`~waveletflow.errors.UserInputError` with ``message`` unless ``ok``."""
    if not ok:
        raise UserInputError(message)


def check_positive(**values: float | None) -> None:
    """Every value given that is not None must be > 0 (``check_positive(width=0)`` raises)."""
    for name, v in values.items():
        require(v is None or v > 0, f"{name} must be positive, got {v}")


#: the largest value of each structural setting: far above any published configuration, below what would take
#: minutes to build or overflow the size of a weight (a hand-edited or corrupt config is refused at once)
LIMITS = {"n_steps": 1024, "n_blocks": 256, "n_scales": 16, "width": 65536, "cond_width": 65536,
          "cond_depth": 64, "cnf_blocks": 256, "hidden": 65536}


def check_limits(**values: float | None) -> None:
    """Every value given that is not None must be at most its :data:`LIMITS` entry."""
    for name, v in values.items():
        require(v is None or v <= LIMITS[name], f"{name} must be at most {LIMITS[name]}, got {v} (a model that "
                                                f"large would take minutes to build and could not train)")


def check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    """``value`` must be one of ``choices``; ``name`` says what it is in the message."""
    require(value in choices, f"unknown {name} {value!r}; choose one of {', '.join(choices)}")


class Config:
    """Mixin for frozen dataclass configs: ``Cls.from_dict(d)`` and ``obj.to_dict()``."""

    @classmethod
    def from_dict(cls: type[T], data: Mapping[str, Any], where: str = "config") -> T:
        """See :func:`waveletflow.config.from_dict`."""
        return from_dict(cls, data, where)

    def to_dict(self) -> dict[str, Any]:
        """See :func:`waveletflow.config.to_dict`."""
        return to_dict(self)
