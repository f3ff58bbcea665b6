"""Checking untrusted metadata JSON: what each field may hold, and every way a document breaks that.

A schema maps field names to `Rule`s; `schema_problems` lists the violations as 'field: what is wrong'
strings. Unknown fields are ignored, so newer files still load. The spec (`tumorscan.spec`) and its
sections (`tumorscan.sections`) declare their schemas with these rules.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

MAX_NAME = 200
MAX_TEXT = 2000
"""Longest free text (layer names, reasons, folder paths)."""
MAX_ITEMS = 10_000
MAX_SIDE = 8192


@dataclass(frozen=True)
class Rule:
    """What one metadata field may hold: JSON types (None allowed when optional) and a further check."""

    types: tuple[type, ...]
    required: bool = False
    check: Callable[[Any], str | None] | None = None
    """Returns what is wrong with a value of the right type, or None."""


NUMBER = (int, float)
"""A JSON number (booleans are refused: `schema_problems` never takes a bool for an int)."""


def schema_problems(data: dict[str, Any], schema: dict[str, Rule]) -> list[str]:
    """Every way `data` breaks `schema`, as 'field: what is wrong' strings (empty when it conforms)."""
    problems = []
    for name, rule in schema.items():
        if name not in data:
            if rule.required:
                problems.append(f"{name}: missing")
            continue
        value = data[name]
        if (isinstance(value, bool) and bool not in rule.types) or not isinstance(value, rule.types):
            expected = " or ".join("null" if t is type(None) else t.__name__ for t in rule.types)
            problems.append(f"{name}: must be {expected}, not {type(value).__name__}")
        elif value is not None and rule.check is not None and (problem := rule.check(value)):
            problems.append(f"{name}: {problem}")
    return problems


def check_object(schema: dict[str, Rule]) -> Callable[[Any], str | None]:
    """A check of a nested object against its own schema."""

    def check(value: dict[str, Any]) -> str | None:
        problems = schema_problems(value, schema)
        return "; ".join(problems) or None

    return check


def check_items(schema: dict[str, Rule]) -> Callable[[Any], str | None]:
    """A check of a list of objects, each against `schema`."""

    def check(value: list[Any]) -> str | None:
        if len(value) > MAX_ITEMS:
            return f"holds over {MAX_ITEMS} items"
        for index, item in enumerate(value):
            if not isinstance(item, dict):
                return f"item {index}: must be dict, not {type(item).__name__}"
            if problems := schema_problems(item, schema):
                return f"item {index}: {'; '.join(problems)}"
        return None

    return check


def short(value: str) -> str | None:
    return None if len(value) <= MAX_NAME else f"is longer than {MAX_NAME} characters"


def text(value: str) -> str | None:
    return None if len(value) <= MAX_TEXT else f"is longer than {MAX_TEXT} characters"


def hex_digest(value: str) -> str | None:
    ok = len(value) == 64 and all(c in "0123456789abcdef" for c in value)
    return None if ok else "must be 64 lowercase hex digits"


def non_negative(value: float) -> str | None:
    return None if value >= 0 else "must not be negative"


def share(value: float) -> str | None:
    return None if 0 <= value <= 1 else f"must be 0 to 1, not {value}"


def side(value: int) -> str | None:
    return None if 8 <= value <= MAX_SIDE else f"must be 8 to {MAX_SIDE} pixels, not {value}"
