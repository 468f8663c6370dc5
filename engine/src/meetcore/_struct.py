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


def _condition(t: mi.Type, v: str, env: dict[str, Any]) -> tuple[str, str]:
    """Python source that is true when `v` holds a value of msgspec type `t`, and how
    to name that type to a person. Names the source needs are put in `env`."""
    if isinstance(t, mi.AnyType):
        return "True", "any value"
    if isinstance(t, mi.NoneType):
        return f"{v} is None", "None"
    if isinstance(t, mi.BoolType):
        return f"({v} is True or {v} is False)", "a bool"
    if isinstance(t, mi.IntType):
        return f"(isinstance({v}, int) and {v}.__class__ is not bool)", "an int"
    if isinstance(t, mi.StrType):
        return f"isinstance({v}, str)", "a str"
    name = f"_c{len(env)}"
    if isinstance(t, mi.LiteralType):
        env[name] = frozenset(t.values)
        return f"(isinstance({v}, str) and {v} in {name})", "one of " + ", ".join(
            repr(x) for x in t.values
        )
    if isinstance(t, mi.EnumType):
        env[name] = frozenset(m.value for m in t.cls)
        cond = f"(isinstance({v}, int) and {v}.__class__ is not bool and {v} in {name})"
        return cond, f"a {t.cls.__name__} value"
    if isinstance(t, mi.VarTupleType):
        item, item_name = _condition(t.item_type, "x", env)
        cond = f"(isinstance({v}, tuple) and all({item} for x in {v}))"
        return cond, f"a tuple of {item_name.removeprefix('a ').removeprefix('an ')}"
    if isinstance(t, mi.DictType):
        key, key_name = _condition(t.key_type, "k", env)
        return (
            f"(isinstance({v}, dict) and all({key} for k in {v}))",
            f"a dict with {key_name[2:]} keys",
        )
    if isinstance(t, mi.StructType):
        env[name] = t.cls
        return f"isinstance({v}, {name})", f"a {t.cls.__name__}"
    if isinstance(t, mi.UnionType):
        parts = [_condition(x, v, env) for x in t.types]
        return "(" + " or ".join(c for c, _ in parts) + ")", " or ".join(n for _, n in parts)
    raise TypeError(f"no build-time check for field type {t!r}")  # a bug in a type definition


def _fail(cls: type, name: str, value: object, expected: str) -> None:
    shown = repr(value)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    raise TypeError(f"{cls.__name__}.{name} must be {expected}, got {type(value).__name__} {shown}")


def _compile_check(cls: type) -> Callable[[Any], None]:
    """One function checking every field of `cls`, generated like attrs' `__init__`."""
    info = mi.type_info(cls)
    assert isinstance(info, mi.StructType)
    env: dict[str, Any] = {"_fail": _fail, "_cls": cls}
    lines = ["def check(self):"]
    for field in info.fields:
        condition, expected = _condition(field.type, "v", env)
        lines += [
            f"    v = self.{field.name}",
            f"    if not {condition}: _fail(_cls, {field.name!r}, v, {expected!r})",
        ]
    exec("\n".join(lines), env)
    check: Callable[[Any], None] = env["check"]
    return check


class Checked(Message, frozen=True, kw_only=True):
    """A message whose field types are checked when built, with a clear TypeError."""

    __checks__: ClassVar[dict[type, Callable[[Any], None]]] = {}

    def __post_init__(self) -> None:
        cls = type(self)
        check = Checked.__checks__.get(cls)
        if check is None:
            check = Checked.__checks__[cls] = _compile_check(cls)
        check(self)
