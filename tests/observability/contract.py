"""What `Metrics` exports, as a scraper sees it: the names queries may use and each metric's labels."""

from __future__ import annotations

import attrs

from reconciler.observability.metrics import Metrics

from . import simulation

# prometheus_client's `_created` series exist too, but a panel or alert has no business reading them.
_SERIES_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
# Series Prometheus itself attaches to every scrape; alert rules may read them.
PROMETHEUS_SERIES = frozenset({"up"})


@attrs.define(frozen=True, kw_only=True, slots=True)
class ExportedMetric:
    name: str
    """As documented and as a query names it (counters with `_total`; histograms by their base name)."""
    type: str
    labels: frozenset[str]
    series: frozenset[str]
    """Every series name a query may use."""


def exported_metrics() -> dict[str, ExportedMetric]:
    """Every metric by documented name; labels come from a `Metrics` filled by `simulation.populate`."""
    metrics = Metrics()
    simulation.populate(metrics)
    exported: dict[str, ExportedMetric] = {}
    for family in metrics.registry.collect():
        suffixes = _SERIES_SUFFIXES[family.type]
        series = frozenset(family.name + suffix for suffix in suffixes)
        labels = {name for sample in family.samples for name in sample.labels if name != "le"}
        if not family.samples:
            raise AssertionError(f"simulation.populate() leaves {family.name} empty: set it there")
        name = family.name + "_total" if family.type == "counter" else family.name
        exported[name] = ExportedMetric(name=name, type=family.type, labels=frozenset(labels), series=series)
    return exported


def series_labels() -> dict[str, frozenset[str]]:
    """Labels by queryable series name (histogram buckets also have `le`)."""
    by_series: dict[str, frozenset[str]] = {}
    for metric in exported_metrics().values():
        for series in metric.series:
            by_series[series] = metric.labels | ({"le"} if series.endswith("_bucket") else set())
    return by_series
