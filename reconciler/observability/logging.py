"""One log line per event, as logfmt or JSON, with every secret scrubbed before it is written.

Fields travel in ``extra=`` so that a line stays machine-readable; the redaction works on the final
text, so a token that slipped into an exception message or a third-party log line never reaches a file.
"""

from __future__ import annotations

__all__ = ["RedactingHandler", "Redactor", "StructuredFormatter", "configure_logging"]

import datetime
import json
import logging
import sys
import typing

import typing_extensions

if typing.TYPE_CHECKING:
    from collections.abc import Iterable

_REDACTED: typing.Final = "[REDACTED]"
# Attributes every LogRecord has; anything else came in through `extra=` and is a field of the event.
_STANDARD_ATTRS: typing.Final = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys() | {"message", "asctime", "taskName"}
)


def _logfmt_value(value: object) -> str:
    text = str(value)
    if text == "" or any(c in text for c in ' ="\n\t'):
        return json.dumps(text, ensure_ascii=False)
    return text


class StructuredFormatter(logging.Formatter):
    """Renders ``ts level logger event key=value ...`` (logfmt) or one JSON object per line."""

    def __init__(self, fmt: typing.Literal["logfmt", "json"] = "logfmt") -> None:
        super().__init__()
        self._json = fmt == "json"

    @typing_extensions.override
    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, object] = {
            "ts": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        fields.update({k: v for k, v in vars(record).items() if k not in _STANDARD_ATTRS and not k.startswith("_")})
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            fields["error"] = f"{type(exc).__name__}: {exc}"
            # The traceback stays on the same line: one event, one line.
            fields["traceback"] = self.formatException(record.exc_info).replace("\n", "\\n")
        if self._json:
            return json.dumps(fields, default=str, ensure_ascii=False)
        return " ".join(f"{k}={_logfmt_value(v)}" for k, v in fields.items())


class Redactor:
    """Replaces every known secret in a text: the log lines, and exception text kept in the database."""

    def __init__(self, secrets: Iterable[str]) -> None:
        # Short strings would redact ordinary words; real tokens are long.
        self._secrets = tuple(s for s in secrets if len(s) >= 8)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, _REDACTED)
        return text


class RedactingHandler(logging.StreamHandler[typing.TextIO]):
    """Scrubs every known secret from the finished line, tracebacks included, whichever logger wrote it."""

    def __init__(self, stream: typing.TextIO, secrets: Iterable[str]) -> None:
        super().__init__(stream)
        self._redact = Redactor(secrets)

    @typing_extensions.override
    def format(self, record: logging.LogRecord) -> str:
        return self._redact(super().format(record))


def configure_logging(
    *,
    level: str = "INFO",
    fmt: typing.Literal["logfmt", "json"] = "logfmt",
    secrets: Iterable[str] = (),
    stream: typing.TextIO | None = None,
) -> logging.Handler:
    """Install the structured handler on the root logger, replacing any earlier one; returns it."""
    handler = RedactingHandler(stream or sys.stderr, secrets)
    handler.setFormatter(StructuredFormatter(fmt))
    root = logging.getLogger()
    for old in list(root.handlers):
        if isinstance(old, RedactingHandler):
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # hikari's own chatter at INFO is useful; its DEBUG/TRACE dumps every payload.
    logging.getLogger("hikari").setLevel(max(logging.INFO, logging.getLevelNamesMapping()[level]))
    return handler
