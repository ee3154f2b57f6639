"""HTTP errors with Discord's JSON error body (`{"message": ..., "code": ...}`)."""

from __future__ import annotations

__all__ = [
    "DiscordHTTPError",
    "already_acknowledged",
    "cannot_send_empty",
    "field_error",
    "invalid_form_body",
    "invalid_json",
    "invalid_webhook_token",
    "missing_access",
    "not_found",
    "unauthorized",
    "unknown_interaction",
    "unknown_message",
    "unknown_webhook",
]

import logging
import typing

_LOGGER: typing.Final = logging.getLogger(__name__)


class DiscordHTTPError(Exception):
    """An error reply: HTTP status, Discord JSON error code and message, optional field errors."""

    def __init__(self, status: int, code: int, message: str, *, errors: dict[str, typing.Any] | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.errors = errors

    def body(self) -> dict[str, typing.Any]:
        """The JSON body Discord sends for this error."""
        payload: dict[str, typing.Any] = {"message": self.message, "code": self.code}
        if self.errors is not None:
            payload["errors"] = self.errors
        return payload


def field_error(code: str, message: str) -> dict[str, typing.Any]:
    """One leaf of Discord's nested form-error structure."""
    return {"_errors": [{"code": code, "message": message}]}


def invalid_form_body(errors: dict[str, typing.Any]) -> DiscordHTTPError:
    """400 `Invalid Form Body` (code 50035) with Discord's nested `errors`."""
    return DiscordHTTPError(400, 50035, "Invalid Form Body", errors=errors)


def unauthorized() -> DiscordHTTPError:
    """`401, 0, "401: Unauthorized"`."""
    return DiscordHTTPError(401, 0, "401: Unauthorized")


def missing_access() -> DiscordHTTPError:
    """`403, 50001, "Missing Access"`."""
    return DiscordHTTPError(403, 50001, "Missing Access")


def not_found() -> DiscordHTTPError:
    """`404, 0, "404: Not Found"`."""
    return DiscordHTTPError(404, 0, "404: Not Found")


def invalid_json() -> DiscordHTTPError:
    """`400, 50109, "The request body contains invalid JSON."`."""
    return DiscordHTTPError(400, 50109, "The request body contains invalid JSON.")


def already_acknowledged() -> DiscordHTTPError:
    """`400, 40060, "Interaction has already been acknowledged."`."""
    return DiscordHTTPError(400, 40060, "Interaction has already been acknowledged.")


def invalid_webhook_token() -> DiscordHTTPError:
    """`401, 50027, "Invalid Webhook Token"`."""
    return DiscordHTTPError(401, 50027, "Invalid Webhook Token")


def unknown_interaction() -> DiscordHTTPError:
    """`404, 10062, "Unknown interaction"`."""
    return DiscordHTTPError(404, 10062, "Unknown interaction")


def unknown_webhook() -> DiscordHTTPError:
    """`404, 10015, "Unknown Webhook"`."""
    return DiscordHTTPError(404, 10015, "Unknown Webhook")


def unknown_message() -> DiscordHTTPError:
    """`404, 10008, "Unknown Message"`."""
    return DiscordHTTPError(404, 10008, "Unknown Message")


def cannot_send_empty() -> DiscordHTTPError:
    """`400, 50006, "Cannot send an empty message"`."""
    return DiscordHTTPError(400, 50006, "Cannot send an empty message")
