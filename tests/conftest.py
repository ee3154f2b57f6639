"""Shared fixtures: the sandbox and a hikari bot on it (tests/sandbox_support.py), databases of each backend."""

from __future__ import annotations

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).parent))

from sandbox_support import chunk_tracker, gateway_bot_factory, sandbox_factory

__all__ = ["chunk_tracker", "gateway_bot_factory", "sandbox_factory"]
