"""Lint of what the operator exposes: promtool's ``check metrics`` and our own rules (prefix, base
units, suffixes by type, bounded label names), and the documentation of every metric."""

from __future__ import annotations

import re
import subprocess

import pytest
from prometheus_client import generate_latest
from prometheus_client.core import Metric

from kubegym_operator import metrics
from kubegym_operator.builders.status import Event
from tests.unit.observability.support import DOCS, populated, promtool

#: Label names a series may carry: each takes values from a closed set or names a live object.
ALLOWED_LABELS = {
    # kubegym_*
    "kind",
    "result",
    "reason",
    "namespace",
    "name",
    "phase",
    "algorithm",
    "environment",
    "model",
    "env",
    "statistic",
    "percentile",
    "le",
    "version",
    "verb",  # kubegym_api_requests: HTTP verbs (a handful)
    "code",  # kubegym_api_requests: HTTP status codes (a bounded set)
    # default collectors (python_info, python_gc_*)
    "implementation",
    "major",
    "minor",
    "patchlevel",
    "generation",
}
#: Labels Prometheus sets from the target: a series carrying one would have it renamed.
TARGET_LABELS = {"job", "instance", "pod", "service", "container", "endpoint"}
#: Name parts of non-base units (Prometheus uses seconds, bytes, ratios).
NON_BASE_UNITS = {
    "ms",
    "millis",
    "milliseconds",
    "us",
    "microseconds",
    "ns",
    "nanoseconds",
    "minutes",
    "hours",
    "days",
    "percent",
    "kb",
    "mb",
    "gb",
    "kilobytes",
    "megabytes",
    "gigabytes",
    "kib",
    "mib",
}
SNAKE = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")


@pytest.fixture(scope="module")
def families() -> list[Metric]:
    """Every family the operator serves, each with samples (objects of all kinds, one error)."""
    metrics.count_event("TrainingRun", Event("Warning", "UserError", "unknown env"))
    metrics.API_REQUESTS.labels("GET", "200").inc(0)
    with populated():
        return list(metrics.REGISTRY.collect())


@pytest.fixture(scope="module")
def exposition(families: list[Metric]) -> str:
    """The /metrics text of the same state."""
    with populated():
        return generate_latest(metrics.REGISTRY).decode()


def test_promtool_check_metrics_finds_nothing(exposition: str) -> None:
    proc = subprocess.run([promtool(), "check", "metrics"], input=exposition, capture_output=True, text=True)
    assert proc.returncode == 0 and not proc.stdout.strip() and not proc.stderr.strip(), proc.stdout + proc.stderr


def test_every_family_is_populated_for_this_lint(families: list[Metric]) -> None:
    empty = [f.name for f in families if f.name.startswith("kubegym_") and not f.samples]
    assert not empty, f"no samples to lint for {empty}: extend tests/unit/observability/support.py"


def test_names_prefix_units_and_type_suffixes(families: list[Metric]) -> None:
    problems: list[str] = []
    for family in families:
        name = family.name
        if not SNAKE.match(name):
            problems.append(f"{name}: not snake_case")
        if not name.startswith(("kubegym_", "process_", "python_")):
            problems.append(f"{name}: not prefixed kubegym_")
        parts = set(name.split("_"))
        if parts & NON_BASE_UNITS:
            problems.append(f"{name}: non-base unit {sorted(parts & NON_BASE_UNITS)}")
        if not family.documentation.strip():
            problems.append(f"{name}: no HELP")
        sample_names = {s.name for s in family.samples}
        if family.type == "counter" and not all(n.endswith("_total") for n in sample_names):
            problems.append(f"{name}: a counter's samples must end in _total ({sample_names})")
        if family.type == "histogram" and name.startswith("kubegym_") and not name.endswith("_seconds"):
            problems.append(f"{name}: kubegym's histograms measure durations, in seconds")
        if family.type == "gauge" and name.endswith(("_total", "_count", "_sum", "_bucket")):
            problems.append(f"{name}: a gauge with a counter/histogram suffix")
        if name.endswith("_ratio") and not all(0 <= s.value <= 1 for s in family.samples):
            problems.append(f"{name}: a ratio outside [0, 1]")
        if name.endswith("_timestamp_seconds") and not all(s.value > 1e9 for s in family.samples):
            problems.append(f"{name}: not a Unix time in seconds")
    assert not problems, "\n".join(problems)


def test_label_names_are_bounded_and_do_not_clash_with_target_labels(families: list[Metric]) -> None:
    seen = {label for family in families for sample in family.samples for label in sample.labels}
    assert not seen & TARGET_LABELS
    assert seen <= ALLOWED_LABELS, f"labels outside the reviewed set: {seen - ALLOWED_LABELS}"
    for name, family in metrics.FAMILIES.items():
        assert family.labels[:1] == ("kind",) or {"namespace", "name"} <= set(family.labels), name


def test_every_metric_is_documented_and_every_documented_metric_exists(families: list[Metric]) -> None:
    text = DOCS.read_text()
    suffix = {"counter": "_total", "info": "_info"}
    served = {f.name + suffix.get(f.type, "") for f in families if f.name.startswith("kubegym_")}
    documented = set(re.findall(r"`(kubegym_[a-z0-9_]+)", text))
    missing = served - documented
    assert not missing, f"undocumented in docs/observability.md: {sorted(missing)}"
    # Histograms may be named with their _bucket/_sum/_count series in examples.
    stale = {n for n in documented if re.sub(r"_(bucket|sum|count)$", "", n) not in served and n not in served}
    assert not stale, f"documented but not served: {sorted(stale)}"
    assert "process_" in text and "python_" in text
