"""Gateway transport encodings: plain text frames, zlib-stream and zstd-stream, as Discord offers them."""

from __future__ import annotations

__all__ = ["FrameEncoder", "encoder_for", "payload_encoder", "zstd_available"]

import abc
import logging
import sys
import typing
import zlib

_LOGGER: typing.Final = logging.getLogger(__name__)

if sys.version_info >= (3, 14):  # pragma: no cover - the venv runs 3.11
    from compression import zstd as _zstd
else:  # pragma: no cover - depends on the installed extras
    try:
        from backports import zstd as _zstd
    except ImportError:
        _zstd = None

ZLIB_LEVEL: typing.Final = 1
ZSTD_LEVEL: typing.Final = 1


def zstd_available() -> bool:
    """Whether zstd-stream can be offered (hikari asks for it when it has `backports.zstd`)."""
    return _zstd is not None


class FrameEncoder(abc.ABC):
    """Turns one JSON payload into what goes on the wire for one connection (stateful per stream)."""

    __slots__ = ()

    binary: typing.ClassVar[bool] = True
    """Whether frames are sent as BINARY (compressed) or TEXT websocket messages."""

    @abc.abstractmethod
    def encode(self, payload: bytes) -> bytes:
        """Encode one payload; stream encoders must be fed payloads in send order."""


class PlainEncoder(FrameEncoder):
    """No compression: each payload is one TEXT frame."""

    __slots__ = ()
    binary: typing.ClassVar[bool] = False

    def encode(self, payload: bytes) -> bytes:
        return payload


class ZlibStreamEncoder(FrameEncoder):
    """One zlib stream per connection; every payload ends with a Z_SYNC_FLUSH (`00 00 ff ff`)."""

    __slots__ = ("_compressor",)

    def __init__(self, level: int = ZLIB_LEVEL) -> None:
        self._compressor = zlib.compressobj(level)

    def encode(self, payload: bytes) -> bytes:
        return self._compressor.compress(payload) + self._compressor.flush(zlib.Z_SYNC_FLUSH)


class ZlibPayloadEncoder(FrameEncoder):
    """Per-payload zlib (identify `compress: true`): each payload compressed on its own."""

    __slots__ = ()

    def encode(self, payload: bytes) -> bytes:
        return zlib.compress(payload, ZLIB_LEVEL)


class ZstdStreamEncoder(FrameEncoder):
    """One zstd frame per connection, flushed at the end of every payload."""

    __slots__ = ("_compressor",)

    def __init__(self, level: int = ZSTD_LEVEL) -> None:
        if _zstd is None:  # pragma: no cover - depends on the installed extras
            msg = "zstd-stream needs backports.zstd (Python < 3.14)"
            raise RuntimeError(msg)
        self._compressor = _zstd.ZstdCompressor(level=level)

    def encode(self, payload: bytes) -> bytes:
        return self._compressor.compress(payload, mode=_zstd.ZstdCompressor.FLUSH_BLOCK)  # pyright: ignore[reportOptionalMemberAccess]


def encoder_for(compress: str | None, *, zlib_level: int = ZLIB_LEVEL, zstd_level: int = ZSTD_LEVEL) -> FrameEncoder:
    """Encoder for the `compress` query parameter of the gateway URL (None: plain text)."""
    if compress is None or compress == "":
        return PlainEncoder()
    if compress == "zlib-stream":
        return ZlibStreamEncoder(zlib_level)
    if compress == "zstd-stream" and zstd_available():
        return ZstdStreamEncoder(zstd_level)
    msg = f"unsupported compression {compress!r}"
    raise ValueError(msg)


def payload_encoder() -> FrameEncoder:
    """Encoder used after an IDENTIFY with `compress: true` on an uncompressed transport."""
    return ZlibPayloadEncoder()
