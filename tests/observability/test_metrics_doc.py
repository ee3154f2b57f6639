"""docs/metrics.md and the README list exactly the metrics the bot exports, with their types and labels."""

from __future__ import annotations

import pathlib
import re

import pytest

from . import assets, contract

TABLES = [
    pytest.param(assets.METRICS_DOC, id="docs-metrics"),
    pytest.param(assets.METRICS_DOC.parent.parent / "README.md", id="readme"),
]

_ROW = re.compile(r"^\|\s*`(reconciler_\w+)`\s*\|\s*(\w+)\s*\|([^|]*)\|([^|]*)\|\s*$")


def _documented(path: pathlib.Path) -> dict[str, tuple[str, frozenset[str], str]]:
    rows: dict[str, tuple[str, frozenset[str], str]] = {}
    for line in path.read_text().splitlines():
        match = _ROW.match(line)
        if match is None:
            continue
        name, kind, labels, meaning = match.groups()
        assert name not in rows, f"{name} is listed twice"
        rows[name] = (kind, frozenset(re.findall(r"`(\w+)`", labels)), meaning.strip())
    return rows


@pytest.mark.parametrize("path", TABLES)
def test_the_table_lists_exactly_the_exported_metrics(path: pathlib.Path) -> None:
    documented = _documented(path)
    exported = contract.exported_metrics()

    assert sorted(documented) == sorted(exported)


@pytest.mark.parametrize("path", TABLES)
def test_the_table_gives_each_metric_its_type_labels_and_a_meaning(path: pathlib.Path) -> None:
    documented = _documented(path)

    for name, metric in contract.exported_metrics().items():
        kind, labels, meaning = documented[name]
        assert (kind, labels) == (metric.type, metric.labels), name
        assert meaning, name


def test_the_alert_table_lists_exactly_the_alert_rules() -> None:
    listed = set(re.findall(r"^\|\s*`(Reconciler\w+)`", assets.METRICS_DOC.read_text(), flags=re.MULTILINE))

    assert listed == {rule.name for rule in assets.load_alert_rules()}
