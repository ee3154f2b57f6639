"""Counts as people read them: thousands separators and "1 role", never "1 roles"."""

from __future__ import annotations

__all__ = ["counted", "drift_text"]

import typing

# Drift kinds are adjectives ("10 missing") except these two nouns.
_NOUNS: typing.Final = {"role_links": ("role link", "role links"), "roles": ("role", "roles")}


def counted(value: int, singular: str, plural: str | None = None) -> str:
    """``1,234 members``, ``1 member``: the noun agrees with the number."""
    return f"{value:,} {singular if value == 1 else plural or singular + 's'}"


def drift_text(by_kind: typing.Mapping[str, int]) -> str:
    """Non-zero drift kinds, in order: ``10 missing, 25 stale, 1 role``; ``none`` when there is none."""
    parts = [
        counted(value, *_NOUNS.get(kind, (kind.replace("_", " "), kind.replace("_", " "))))
        for kind, value in by_kind.items()
        if value
    ]
    return ", ".join(parts) or "none"
