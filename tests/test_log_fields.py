"""Log fields never shadow LogRecord attributes: `extra={"created": ...}` raises KeyError at INFO level."""

from __future__ import annotations

import ast
import logging
import pathlib

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "reconciler"
RESERVED = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


def _extra_keys(tree: ast.AST) -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            for keyword in node.keywords:
                if keyword.arg == "extra" and isinstance(keyword.value, ast.Dict):
                    found.extend(
                        (key.lineno, key.value)
                        for key in keyword.value.keys
                        if isinstance(key, ast.Constant) and isinstance(key.value, str)
                    )
    return found


def test_no_extra_key_collides_with_logrecord_attributes() -> None:
    checked = 0
    clashes: list[str] = []
    for path in PACKAGE.rglob("*.py"):
        for line, key in _extra_keys(ast.parse(path.read_text(), filename=str(path))):
            checked += 1
            if key in RESERVED:
                clashes.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {key}")
    assert checked > 20, "found almost no log fields: the scan is broken"
    assert clashes == []
