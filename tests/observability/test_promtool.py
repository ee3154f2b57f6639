"""promtool on what we ship: the exposition, the alert rules and their unit tests, the example config."""

from __future__ import annotations

import subprocess
import typing

import pytest

from . import assets

if typing.TYPE_CHECKING:
    from collections.abc import Callable

    from reconciler.observability.metrics import Metrics


def _promtool(promtool: str, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool, *args],
        input=stdin.decode() if stdin is not None else None,
        capture_output=True,
        text=True,
        cwd=assets.GRAFANA,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("populated", [True, False], ids=["populated", "fresh"])
def test_exposition_passes_promtool_check_metrics(
    promtool: str, make_metrics: Callable[..., Metrics], populated: bool
) -> None:
    result = _promtool(promtool, "check", "metrics", stdin=make_metrics(populated=populated).exposition())

    # promtool prints lint problems (bad names, missing help, ...) and exits non-zero on them.
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_alert_rules_pass_promtool_check_rules(promtool: str) -> None:
    result = _promtool(promtool, "check", "rules", assets.ALERTS.name)

    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(assets.load_alert_rules())} rules found" in result.stdout


def test_alert_unit_tests_pass(promtool: str) -> None:
    result = _promtool(promtool, "test", "rules", assets.ALERT_TESTS.name)

    assert result.returncode == 0, result.stdout + result.stderr


def test_example_prometheus_config_is_valid(promtool: str) -> None:
    result = _promtool(promtool, "check", "config", assets.PROMETHEUS_CONFIG.name)

    assert result.returncode == 0, result.stdout + result.stderr
