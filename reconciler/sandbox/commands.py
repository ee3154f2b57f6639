"""Application commands as Discord stores them: validated, ids kept across overwrites, versions bumped on change."""

from __future__ import annotations

__all__ = ["CommandRegistry", "OptionType"]

import enum
import logging
import re
import typing

from reconciler.sandbox import errors, state

if typing.TYPE_CHECKING:
    from reconciler.sandbox import ids

_LOGGER: typing.Final = logging.getLogger(__name__)

JSON = dict[str, typing.Any]

_CHAT_INPUT: typing.Final = 1
_NAME_RE: typing.Final = re.compile(r"^[-_'\w]{1,32}$", re.UNICODE)
_MAX_OPTIONS: typing.Final = 25
_STORED_KEYS: typing.Final = (
    "type",
    "name",
    "name_localizations",
    "description",
    "description_localizations",
    "options",
    "default_member_permissions",
    "contexts",
    "integration_types",
    "nsfw",
    "handler",
)


class OptionType(enum.IntEnum):
    """Application command option types."""

    SUB_COMMAND = 1
    SUB_COMMAND_GROUP = 2
    STRING = 3
    INTEGER = 4
    BOOLEAN = 5
    USER = 6
    CHANNEL = 7
    ROLE = 8
    MENTIONABLE = 9
    NUMBER = 10
    ATTACHMENT = 11


def _name_error(name: object, *, chat_input: bool) -> dict[str, typing.Any] | None:
    if not isinstance(name, str) or not 1 <= len(name) <= 32:
        return errors.field_error("BASE_TYPE_BAD_LENGTH", "Must be between 1 and 32 in length.")
    if chat_input and (not _NAME_RE.match(name) or name != name.lower()):
        return errors.field_error("APPLICATION_COMMAND_INVALID_NAME", f"Command name is invalid: {name!r}")
    return None


def _description_error(description: object, *, chat_input: bool) -> dict[str, typing.Any] | None:
    if not chat_input:
        if description not in (None, ""):
            return errors.field_error("BASE_TYPE_BAD_LENGTH", "Context menu commands cannot have a description.")
        return None
    if not isinstance(description, str) or not 1 <= len(description) <= 100:
        return errors.field_error("BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length.")
    return None


def _option_errors(options: object) -> dict[str, typing.Any]:
    found: dict[str, typing.Any] = {}
    if options is None:
        return found
    if not isinstance(options, list):
        return {"_errors": [{"code": "BASE_TYPE_LIST", "message": "Must be an array."}]}
    option_list = typing.cast("list[typing.Any]", options)
    if len(option_list) > _MAX_OPTIONS:
        return errors.field_error("BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.")
    seen: set[str] = set()
    optional_seen = False
    for index, raw in enumerate(option_list):
        option = typing.cast("JSON", raw) if isinstance(raw, dict) else {}
        problems: dict[str, typing.Any] = {}
        if (err := _name_error(option.get("name"), chat_input=True)) is not None:
            problems["name"] = err
        elif option["name"] in seen:
            problems["name"] = errors.field_error("APPLICATION_COMMAND_OPTIONS_NAME_ALREADY_EXISTS", "Duplicate")
        seen.add(str(option.get("name")))
        if (err := _description_error(option.get("description"), chat_input=True)) is not None:
            problems["description"] = err
        try:
            option_type = OptionType(option.get("type"))
        except ValueError:
            problems["type"] = errors.field_error("BASE_TYPE_CHOICES", f"Value must be one of {list(OptionType)}.")
        else:
            if option_type in {OptionType.SUB_COMMAND, OptionType.SUB_COMMAND_GROUP}:
                if nested := _option_errors(option.get("options")):
                    problems["options"] = nested
            elif option.get("required"):
                if optional_seen:
                    problems["required"] = errors.field_error(
                        "APPLICATION_COMMAND_OPTIONS_REQUIRED_INVALID",
                        "Required options must be placed before non-required options",
                    )
            else:
                optional_seen = True
        if problems:
            found[str(index)] = problems
    return found


def _clean(value: typing.Any) -> typing.Any:
    if isinstance(value, dict):
        mapping = typing.cast("dict[str, typing.Any]", value)
        return {k: _clean(v) for k, v in mapping.items() if v is not None}
    if isinstance(value, list):
        return [_clean(v) for v in typing.cast("list[typing.Any]", value)]
    return value


class CommandRegistry:
    """Global commands (scope None) and guild commands (scope: guild id) of the bot's application."""

    def __init__(self, *, application_id: int, snowflakes: ids.SnowflakeFactory) -> None:
        self._application_id = application_id
        self._snowflakes = snowflakes
        self._scopes: dict[int | None, dict[int, JSON]] = {}

    def list(self, scope: int | None) -> list[JSON]:
        """Stored commands of a scope, in creation order."""
        return list(self._scopes.get(scope, {}).values())

    def get(self, scope: int | None, command_id: int) -> JSON:
        """One stored command, or UnknownEntityError."""
        try:
            return self._scopes[scope][command_id]
        except KeyError:
            raise state.UnknownEntityError("command", command_id) from None

    def overwrite(self, scope: int | None, bodies: object) -> list[JSON]:
        """Bulk overwrite (PUT): commands keep their id when name and type match."""
        if not isinstance(bodies, list):
            raise errors.invalid_form_body(errors.field_error("BASE_TYPE_LIST", "Must be an array."))
        body_list = typing.cast("list[typing.Any]", bodies)
        problems: dict[str, typing.Any] = {}
        keys: set[tuple[int, str]] = set()
        for index, body in enumerate(body_list):
            if err := self._errors(body):
                problems[str(index)] = err
                continue
            key = (int(body.get("type", _CHAT_INPUT)), str(body["name"]))
            if key in keys:
                problems[str(index)] = {"name": errors.field_error("APPLICATION_COMMANDS_DUPLICATE_NAME", "Duplicate")}
            keys.add(key)
        if problems:
            raise errors.invalid_form_body(problems)
        existing = {(int(c["type"]), str(c["name"])): c for c in self.list(scope)}
        stored: dict[int, JSON] = {}
        for body in body_list:
            key = (int(body.get("type", _CHAT_INPUT)), str(body["name"]))
            command = self._store(scope, typing.cast("JSON", body), existing.get(key))
            stored[int(command["id"])] = command
        self._scopes[scope] = stored
        return list(stored.values())

    def create(self, scope: int | None, body: object) -> tuple[JSON, bool]:
        """POST: create, or overwrite the command with the same name and type. Returns (command, created)."""
        if err := self._errors(body):
            raise errors.invalid_form_body(err)
        body_map = typing.cast("JSON", body)
        key = (int(body_map.get("type", _CHAT_INPUT)), str(body_map["name"]))
        existing = next((c for c in self.list(scope) if (int(c["type"]), str(c["name"])) == key), None)
        command = self._store(scope, body_map, existing)
        self._scopes.setdefault(scope, {})[int(command["id"])] = command
        return command, existing is None

    def edit(self, scope: int | None, command_id: int, body: object) -> JSON:
        """PATCH: change some fields of a command."""
        current = self.get(scope, command_id)
        if not isinstance(body, dict):
            raise errors.invalid_form_body(errors.field_error("BASE_TYPE_DICT", "Must be an object."))
        merged = {k: current.get(k) for k in _STORED_KEYS if k in current}
        merged.update(typing.cast("JSON", body))
        if err := self._errors(merged):
            raise errors.invalid_form_body(err)
        command = self._store(scope, merged, current)
        self._scopes[scope][command_id] = command
        return command

    def delete(self, scope: int | None, command_id: int) -> None:
        """DELETE one command."""
        self.get(scope, command_id)
        del self._scopes[scope][command_id]

    def find(self, guild_id: int, name: str, command_type: int = _CHAT_INPUT) -> JSON:
        """The command a user in `guild_id` would see under `name`: guild commands first, then global."""
        for scope in (guild_id, None):
            for command in self.list(scope):
                if command["name"] == name and int(command["type"]) == command_type:
                    return command
        msg = f"no command named {name!r} is registered for guild {guild_id} or globally"
        raise LookupError(msg)

    def _errors(self, body: object) -> dict[str, typing.Any]:
        if not isinstance(body, dict):
            return errors.field_error("BASE_TYPE_DICT", "Must be an object.")
        command = typing.cast("JSON", body)
        chat_input = int(command.get("type", _CHAT_INPUT)) == _CHAT_INPUT
        problems: dict[str, typing.Any] = {}
        if (err := _name_error(command.get("name"), chat_input=chat_input)) is not None:
            problems["name"] = err
        if (err := _description_error(command.get("description"), chat_input=chat_input)) is not None:
            problems["description"] = err
        if option_problems := _option_errors(command.get("options")):
            problems["options"] = option_problems
        return problems

    def _store(self, scope: int | None, body: JSON, previous: JSON | None) -> JSON:
        command_type = int(body.get("type", _CHAT_INPUT))
        permissions = body.get("default_member_permissions")
        integration_types = body.get("integration_types")
        contexts = body.get("contexts")
        command: JSON = {
            "id": previous["id"] if previous is not None else str(self._snowflakes.next()),
            "application_id": str(self._application_id),
            "version": "",
            "default_member_permissions": str(permissions) if permissions is not None else None,
            "type": command_type,
            "name": body["name"],
            "name_localizations": body.get("name_localizations"),
            "description": body.get("description") or "",
            "description_localizations": body.get("description_localizations"),
            "contexts": list(typing.cast("list[int]", contexts)) if contexts is not None else None,
            "integration_types": list(typing.cast("list[int]", integration_types)) if integration_types else [0],
            "nsfw": bool(body.get("nsfw", False)),
        }
        if options := body.get("options"):
            command["options"] = _clean(options)
        if scope is None:
            command["dm_permission"] = True
        else:
            command["guild_id"] = str(scope)
        unchanged = previous is not None and all(
            previous.get(k) == command.get(k) for k in command if k not in {"version"}
        )
        command["version"] = previous["version"] if unchanged and previous else str(self._snowflakes.next())
        return command
