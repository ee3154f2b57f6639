"""The dashboard, the alert rules and the provisioning agree with the metrics the bot exports."""

from __future__ import annotations

import itertools
import os
import pathlib
import re

import pytest
import yaml

from . import assets, contract, promql

EXPORTED = contract.exported_metrics()
SERIES_LABELS = contract.series_labels()
DASHBOARD = assets.load_dashboard()
RAW_QUERIES = assets.panel_queries(DASHBOARD)
PANEL_QUERIES = assets.evaluable_queries(DASHBOARD)
ALERT_RULES = assets.load_alert_rules()
# Labels Prometheus attaches to every scraped series.
TARGET_LABELS = frozenset({"job", "instance"})


def _unknown_selectors(expr: str, allowed: frozenset[str]) -> list[str]:
    problems: list[str] = []
    for selector in promql.selectors(expr):
        if selector.metric in allowed:
            continue
        if selector.metric not in SERIES_LABELS:
            problems.append(f"{selector.metric} is not exported")
            continue
        unknown = selector.labels - SERIES_LABELS[selector.metric] - TARGET_LABELS
        if unknown:
            problems.append(f"{selector.metric} has no label {', '.join(sorted(unknown))}")
    return problems


def test_the_promql_helper_finds_selectors() -> None:
    expr = (
        'sum by (guild) (rate(a_total{guild=~"$guild", kind!="x"}[5m] offset 1m)) / on (guild) group_left'
        ' max without (shard) (b) > bool 0 and count(c{d="{e}"}) unless histogram_quantile(0.9, d_bucket)'
    )
    found = [(s.metric, sorted(s.labels)) for s in promql.selectors(expr)]

    assert found == [("a_total", ["guild", "kind"]), ("b", []), ("c", ["d"]), ("d_bucket", [])]
    assert promql.bool_form('x{a!="1"} > 0 and y == bool 1 or z[5m:1m] <= 2') == (
        'x{a!="1"} > bool 0 and y == bool 1 or z[5m:1m] <= bool 2'
    )


@pytest.mark.parametrize("query", PANEL_QUERIES, ids=lambda q: f"{q.panel} {q.ref_id}")
def test_panel_queries_read_only_exported_metrics_and_labels(query: assets.PanelQuery) -> None:
    assert _unknown_selectors(query.expr, frozenset()) == []


@pytest.mark.parametrize("rule", ALERT_RULES, ids=lambda rule: rule.name)
def test_alert_expressions_read_only_exported_metrics_and_labels(rule: assets.AlertRule) -> None:
    assert promql.selectors(rule.expr), "an alert that reads no metric"
    assert _unknown_selectors(rule.expr, contract.PROMETHEUS_SERIES) == []


def test_every_metric_has_a_panel() -> None:
    shown = set().union(*(promql.metric_names(query.expr) for query in PANEL_QUERIES))

    missing = [metric.name for metric in EXPORTED.values() if not metric.series & shown]
    assert missing == []


def test_every_per_guild_panel_query_honours_the_guild_variable() -> None:
    ignored: list[str] = []
    for raw, query in zip(RAW_QUERIES, PANEL_QUERIES, strict=True):
        per_guild = [s for s in promql.selectors(query.expr) if "guild" in SERIES_LABELS[s.metric]]
        filtered = len(re.findall(r'guild=~"\$guild"', raw.expr))
        if any("guild" not in s.labels for s in per_guild) or filtered < len(per_guild):
            ignored.append(f"{raw.panel} {raw.ref_id}: {raw.expr}")
    assert ignored == []


def test_no_metric_label_collides_with_a_label_prometheus_sets() -> None:
    collisions = {
        metric.name: sorted(metric.labels & (TARGET_LABELS | {"le", "quantile"}))
        for metric in EXPORTED.values()
        if metric.labels & (TARGET_LABELS | {"le", "quantile"})
        or any(label.startswith("__") for label in metric.labels)
    }
    assert collisions == {}


def test_dashboard_has_a_guild_variable_fed_by_prometheus() -> None:
    (variable,) = DASHBOARD["templating"]["list"]

    assert variable["name"] == "guild"
    assert variable["query"]["query"] == "label_values(reconciler_guild_ready, guild)"
    assert variable["datasource"] == {"type": "prometheus", "uid": "prometheus"}
    assert variable["includeAll"]
    assert variable["multi"]


def test_every_panel_and_query_names_the_provisioned_datasource() -> None:
    (datasource,) = yaml.safe_load((assets.GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())[
        "datasources"
    ]
    expected = {"type": datasource["type"], "uid": datasource["uid"]}

    for panel in assets.panels(DASHBOARD):
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == expected, panel["title"]
        assert panel["targets"], panel["title"]
        assert all(target["datasource"] == expected for target in panel["targets"]), panel["title"]


def test_panels_have_unique_ids_titles_and_do_not_overlap() -> None:
    panels = assets.panels(DASHBOARD)
    ids = [panel["id"] for panel in panels]
    titles = [panel["title"] for panel in panels]
    assert len(ids) == len(set(ids))
    assert len(titles) == len(set(titles))

    cells: dict[tuple[int, int], str] = {}
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] >= 0
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        for cell in itertools.product(range(grid["x"], grid["x"] + grid["w"]), range(grid["y"], grid["y"] + grid["h"])):
            assert cell not in cells, f"{panel['title']} overlaps {cells[cell]}"
            cells[cell] = panel["title"]


def test_every_panel_explains_itself() -> None:
    undescribed = [p["title"] for p in assets.panels(DASHBOARD) if p["type"] != "row" and not p.get("description")]
    assert undescribed == []


def test_dashboard_provider_loads_the_dashboards_folder() -> None:
    (provider,) = yaml.safe_load((assets.GRAFANA / "provisioning" / "dashboards" / "reconciler.yml").read_text())[
        "providers"
    ]
    # Grafana expands $VAR in provisioning files; GF_PATHS_PROVISIONING is how Grafana is pointed at them.
    path = re.sub(
        r"\$\{?(\w+)\}?",
        lambda m: {"GF_PATHS_PROVISIONING": str(assets.GRAFANA / "provisioning")}[m.group(1)],
        provider["options"]["path"],
    )

    assert provider["type"] == "file"
    assert pathlib.Path(os.path.normpath(path)) == assets.DASHBOARD.parent


def test_every_alert_has_a_firing_and_a_quiet_unit_test() -> None:
    cases = [case for test in assets.load_alert_tests()["tests"] for case in test["alert_rule_test"]]
    firing = {case["alertname"] for case in cases if case["exp_alerts"]}
    quiet = {case["alertname"] for case in cases if not case["exp_alerts"]}
    names = {rule.name for rule in ALERT_RULES}

    assert names - firing == set(), "alerts without a case where they fire"
    assert names - quiet == set(), "alerts without a case where they stay quiet"
    assert (firing | quiet) - names == set(), "tests of alerts that do not exist"


@pytest.mark.parametrize("rule", ALERT_RULES, ids=lambda rule: rule.name)
def test_every_alert_has_a_severity_and_a_summary(rule: assets.AlertRule) -> None:
    document = yaml.safe_load(assets.ALERTS.read_text())
    (raw,) = [r for g in document["groups"] for r in g["rules"] if r.get("alert") == rule.name]

    assert raw["labels"]["severity"] in {"critical", "warning"}
    assert raw["annotations"]["summary"]
    assert raw["annotations"]["description"]
