"""The base of every message type: msgspec Structs, frozen, keyword-only, tagged.

Tags are kebab-case class names (`Join` -> "join", `ParticipantLeft` ->
"participant-left") in a field named "type"; field names are snake_case in
Python and camelCase on the wire.

Commands come from outside, so they are type-checked when built (msgspec checks
them again when decoded). Events are only made by `decide` from checked commands,
and are type-checked when decoded, so building them stays cheap.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, ClassVar

import msgspec
import msgspec.inspect as mi

__all__ = ["Message", "kebab"]


def kebab(name: str) -> str:
    """`ParticipantJoined` -> `participant-joined`."""
    return re.sub(r"(?<!^)(?=[A-Z])", "-", name).lower()


class Message(
    msgspec.Struct, frozen=True, kw_only=True, tag_field="type", tag=kebab, rename="camel"
):
    """Fields every command and event carries: the meeting and the time (unix ms)."""

    meeting_id: str
    at: int


_Check = Callable[[object], bool]


def _check_for(t: mi.Type) -> tuple[_Check, str]:
    """A predicate for values of msgspec type `t`, and how to name that type to a person."""
    if isinstance(t, mi.AnyType):
        return (lambda v: True), "any value"
    if isinstance(t, mi.NoneType):
        return (lambda v: v is None), "None"
    if isinstance(t, mi.BoolType):
        return (lambda v: isinstance(v, bool)), "a bool"
    if isinstance(t, mi.IntType):
        return (lambda v: isinstance(v, int) and not isinstance(v, bool)), "an int"
    if isinstance(t, mi.StrType):
        return (lambda v: isinstance(v, str)), "a str"
    if isinstance(t, mi.LiteralType):
        allowed = frozenset(t.values)
        return (lambda v: isinstance(v, str | int) and v in allowed), "one of " + ", ".join(
            repr(v) for v in t.values
        )
    if isinstance(t, mi.EnumType):
        values = frozenset(m.value for m in t.cls)
        return (
            lambda v: isinstance(v, int) and not isinstance(v, bool) and v in values
        ), f"a {t.cls.__name__} value"
    if isinstance(t, mi.VarTupleType):
        item, item_name = _check_for(t.item_type)
        return (
            lambda v: isinstance(v, tuple) and all(item(x) for x in v)
        ), f"a tuple of {item_name.removeprefix('a ').removeprefix('an ')}"
    if isinstance(t, mi.DictType):
        key, _ = _check_for(t.key_type)
        return (lambda v: isinstance(v, dict) and all(key(k) for k in v)), "a dict with str keys"
    if isinstance(t, mi.StructType):
        cls = t.cls
        return (lambda v: isinstance(v, cls)), f"a {cls.__name__}"
    if isinstance(t, mi.UnionType):
        parts = [_check_for(x) for x in t.types]
        checks = [c for c, _ in parts]
        return (lambda v: any(c(v) for c in checks)), " or ".join(n for _, n in parts)
    raise TypeError(f"no build-time check for field type {t!r}")  # a bug in a type definition


class Checked(Message, frozen=True, kw_only=True):
    """A message whose field types are checked when built, with a clear TypeError."""

    __checks__: ClassVar[dict[type, tuple[tuple[str, _Check, str], ...]]] = {}

    def __post_init__(self) -> None:
        cls = type(self)
        checks = Checked.__checks__.get(cls)
        if checks is None:
            info = mi.type_info(cls)
            assert isinstance(info, mi.StructType)
            checks = tuple((f.name, *_check_for(f.type)) for f in info.fields)
            Checked.__checks__[cls] = checks
        for name, check, expected in checks:
            value: Any = getattr(self, name)
            if not check(value):
                shown = repr(value)
                if len(shown) > 60:
                    shown = shown[:57] + "..."
                raise TypeError(
                    f"{cls.__name__}.{name} must be {expected}, got {type(value).__name__} {shown}"
                )
