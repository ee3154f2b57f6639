"""The Grafana and Prometheus files under grafana/, read as the checks need them."""

from __future__ import annotations

import json
import pathlib
import typing

import attrs
import yaml

from . import promql

if typing.TYPE_CHECKING:
    from collections.abc import Iterator

ROOT: typing.Final = pathlib.Path(__file__).resolve().parents[2]
GRAFANA: typing.Final = ROOT / "grafana"
DASHBOARD: typing.Final = GRAFANA / "dashboards" / "reconciler.json"
ALERTS: typing.Final = GRAFANA / "alerts.yml"
ALERT_TESTS: typing.Final = GRAFANA / "alerts.test.yml"
PROMETHEUS_CONFIG: typing.Final = GRAFANA / "prometheus.yml"
METRICS_DOC: typing.Final = ROOT / "docs" / "metrics.md"

# What Grafana puts in place of its built-in variables when the dashboard is evaluated by a test.
BUILTIN_VARIABLES: typing.Final = {"__rate_interval": "1m", "__interval": "15s", "__range": "1h"}


@attrs.define(frozen=True, kw_only=True, slots=True)
class PanelQuery:
    panel: str
    ref_id: str
    expr: str


@attrs.define(frozen=True, kw_only=True, slots=True)
class AlertRule:
    name: str
    expr: str


def load_dashboard() -> dict[str, typing.Any]:
    return json.loads(DASHBOARD.read_text())


def _panels(panels: list[dict[str, typing.Any]]) -> Iterator[dict[str, typing.Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def panels(dashboard: dict[str, typing.Any]) -> list[dict[str, typing.Any]]:
    """Every panel, rows included, with the panels of collapsed rows."""
    return list(_panels(dashboard["panels"]))


def panel_queries(dashboard: dict[str, typing.Any]) -> list[PanelQuery]:
    return [
        PanelQuery(panel=panel["title"], ref_id=target["refId"], expr=target["expr"])
        for panel in panels(dashboard)
        for target in panel.get("targets", [])
    ]


def variable_values(dashboard: dict[str, typing.Any]) -> dict[str, str]:
    """A value for every variable: each dashboard variable's "All" value, and the built-in ones."""
    values = dict(BUILTIN_VARIABLES)
    for variable in dashboard["templating"]["list"]:
        values[variable["name"]] = variable["allValue"]
    return values


def evaluable_queries(dashboard: dict[str, typing.Any]) -> list[PanelQuery]:
    """The panel queries as Grafana sends them with "All" selected."""
    values = variable_values(dashboard)
    return [attrs.evolve(query, expr=promql.substitute(query.expr, values)) for query in panel_queries(dashboard)]


def load_alert_rules() -> list[AlertRule]:
    document = yaml.safe_load(ALERTS.read_text())
    return [
        AlertRule(name=rule["alert"], expr=rule["expr"])
        for group in document["groups"]
        for rule in group["rules"]
        if "alert" in rule
    ]


def load_alert_tests() -> dict[str, typing.Any]:
    return yaml.safe_load(ALERT_TESTS.read_text())
