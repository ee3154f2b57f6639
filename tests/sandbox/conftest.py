"""Makes tests/sandbox_support.py importable from here and exposes its fixtures to these tests."""

from __future__ import annotations

import pathlib
import sys

_TESTS_DIR = str(pathlib.Path(__file__).resolve().parent.parent)
if _TESTS_DIR not in sys.path:
    sys.path.insert(0, _TESTS_DIR)

from sandbox_support import gateway_bot_factory, sandbox_factory  # noqa: E402

__all__ = ["gateway_bot_factory", "sandbox_factory"]
