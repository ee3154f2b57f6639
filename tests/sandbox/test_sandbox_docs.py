"""docs/sandbox.md documents every scenario route with an example, and no route that does not exist."""

from __future__ import annotations

import pathlib
import re

from reconciler.sandbox import DiscordSandbox
from reconciler.sandbox.scenario_http import routes

DOC = pathlib.Path(__file__).resolve().parents[2] / "docs" / "sandbox.md"
_HEADING = re.compile(r"^### `(GET|POST|PATCH|DELETE|PUT) (/_sandbox[^`]*)`$", re.MULTILINE)


def test_every_scenario_route_has_a_section_with_an_example() -> None:
    served = {(route.method, route.path) for route in routes(DiscordSandbox())}
    text = DOC.read_text()
    documented = {(method, path) for method, path in _HEADING.findall(text)}
    assert documented == served
    sections = _HEADING.split(text)[1:]
    for method, path, body in zip(sections[0::3], sections[1::3], sections[2::3], strict=True):
        assert re.search(r"```sh\n(.*\n)*curl ", body), f"{method} {path}: no curl example"
        if method != "GET":
            assert f"-X {method}" in body, f"{method} {path}: the example does not use {method}"
