"""What a person watching the demo reads: headings, a progress bar, the bot's replies, the summary block.

On a terminal the progress bar redraws one line with a carriage return; anywhere else (a pipe, a test
capturing output) every update worth telling becomes a line of its own, so the record stays readable.
"""

from __future__ import annotations

__all__ = ["MAX_COLUMNS", "Terminal", "embed_lines"]

import logging
import re
import shutil
import sys
import textwrap
import time
import typing

if typing.TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

_LOGGER: typing.Final = logging.getLogger(__name__)

_BAR_WIDTH: typing.Final = 30
MAX_COLUMNS: typing.Final = 100
"""No line of the show is wider: it reads in a default terminal and in a CI log."""
_MARKDOWN: typing.Final = re.compile(r"\*\*|__|`")
_PIPED_STEP: typing.Final = 0.2
"""Without a terminal, a progress line is printed each time the bar moves on by this fraction."""


def _plain(text: str) -> str:
    """Discord markdown an admin would see rendered, shown as plain text."""
    return _MARKDOWN.sub("", text)


def embed_lines(embed: Mapping[str, typing.Any]) -> list[str]:
    """A Discord embed as it reads in the client: title, description, then one line per field."""
    lines = [f"┃ {_plain(str(embed.get('title') or ''))}"]
    if embed.get("description"):
        lines.extend(f"┃ {_plain(line)}" for line in str(embed["description"]).splitlines())
    fields: Sequence[Mapping[str, typing.Any]] = embed.get("fields") or []
    inline = [f for f in fields if f.get("inline")]
    block = [f for f in fields if not f.get("inline")]
    # Inline fields sit side by side in the client: three to a row here too.
    for start in range(0, len(inline), 3):
        row = inline[start : start + 3]
        lines.append("┃ " + "   ".join(f"{_plain(str(f['name']))}: {_plain(str(f['value']))}" for f in row))
    for field in block:
        values = str(field["value"]).splitlines() or [""]
        lines.append(f"┃ {_plain(str(field['name']))}: {_plain(values[0])}")
        lines.extend(f"┃   {_plain(value)}" for value in values[1:])
    footer = typing.cast("Mapping[str, typing.Any]", embed.get("footer") or {})
    if footer.get("text"):
        lines.append(f"┃ ({_plain(str(footer['text']))})")
    return lines


class Terminal:
    """Writes the show to one stream; knows whether it may redraw a line."""

    def __init__(self, stream: typing.TextIO | None = None, *, interactive: bool | None = None) -> None:
        self._stream = stream or sys.stdout
        self.interactive = self._stream.isatty() if interactive is None else interactive
        self._started = time.monotonic()
        self._bar_open = False
        self._bar_label = ""
        self._bar_printed = -1.0

    def elapsed(self) -> float:
        return time.monotonic() - self._started

    def _write(self, text: str) -> None:
        self._stream.write(text)
        self._stream.flush()

    def _close_bar(self) -> None:
        if self._bar_open:
            self._write("\n")
            self._bar_open = False

    def line(self, text: str = "") -> None:
        self._close_bar()
        self._write(text + "\n")

    def lines(self, texts: Iterable[str], *, indent: str = "  ") -> None:
        for text in texts:
            self.line(indent + text)

    def heading(self, number: int | None, title: str) -> None:
        """A numbered section, stamped with the time since the demo started."""
        self.line()
        prefix = f"{number}. " if number is not None else ""
        text = f"── {prefix}{title} "
        self.line(f"{text}{'─' * max(3, 78 - len(text) - 9)} t+{self.elapsed():4.1f}s")

    def note(self, text: str) -> None:
        self.line(f"  {text}")

    def ok(self, text: str) -> None:
        self.line(f"  ✔ {text}")

    def problem(self, text: str) -> None:
        self.line(f"  ✘ {text}")

    def progress(self, label: str, done: int, total: int, detail: str = "") -> None:
        """Draw (or, without a terminal, print when it moved enough) a bar of `done` out of `total`."""
        ratio = 0.0 if total <= 0 else min(1.0, done / total)
        filled = round(ratio * _BAR_WIDTH)
        text = f"  {label:<10} [{'█' * filled}{'░' * (_BAR_WIDTH - filled)}] {ratio:4.0%}  {detail}"
        if self.interactive:
            width = shutil.get_terminal_size().columns - 1
            self._write("\r" + text[:width].ljust(width))
            self._bar_open = True
            return
        if label != self._bar_label:
            self._bar_label, self._bar_printed = label, -1.0
        if ratio >= 1.0 and self._bar_printed >= 1.0:
            return
        if ratio - self._bar_printed >= _PIPED_STEP or (ratio >= 1.0 > self._bar_printed):
            self._bar_printed = ratio
            self.line(text.rstrip())

    def status(self, text: str) -> None:
        """A line that a terminal redraws in place (the next one replaces it); elsewhere, a line of its own."""
        if not self.interactive:
            self.line(f"  {text}")
            return
        width = shutil.get_terminal_size().columns - 1
        self._write("\r" + f"  {text}"[:width].ljust(width))
        self._bar_open = True

    def end_progress(self) -> None:
        self._close_bar()
        self._bar_label, self._bar_printed = "", -1.0

    def table(self, rows: Iterable[tuple[str, str]], *, width: int = 30) -> None:
        """`label ....... value` lines, the shape the summary uses (and its test parses).

        A value too long for `MAX_COLUMNS` wraps at a space onto lines indented under it. A word too long
        for the column (a deep file path) is never broken, so that it can be copied: the value then starts
        on the line below the label, indented by 4 only.
        """
        room = MAX_COLUMNS - width - 3
        for label, value in rows:
            lines = textwrap.wrap(value, room, break_long_words=False, break_on_hyphens=False) or [""]
            if any(len(line) > room for line in lines):
                self.line(f"  {label}:")
                for line in textwrap.wrap(value, MAX_COLUMNS - 4, break_long_words=False, break_on_hyphens=False):
                    self.line(f"    {line}")
                continue
            self.line(f"  {label + ':':<{width}} {lines[0]}")
            for more in lines[1:]:
                self.line(f"  {'':<{width}} {more}")
