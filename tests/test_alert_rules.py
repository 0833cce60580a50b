"""deploy/prometheus-alerts.yml, checked against the code and the docs.

The file must be valid Prometheus rules (groups of named rules, each with
an ``expr``, an optional ``for`` duration, labels and annotations), and
each expression may only name what a replica really exports: every
``flowbaton_*`` series is one of the exposition names of the families
``ReplicaMetrics`` registers (``_total`` of a counter, ``_bucket`` of a
histogram ...), every label matched or grouped by is one those series
carry (or a target label Prometheus adds), and a matched ``outcome`` or
``state`` is a value the code emits. Names come from a real
``ReplicaMetrics`` whose every family has been given a sample through its
public event methods, so nothing here repeats the code's list. Each rule's
runbook must name a section of docs/operating.md, and the page must show
the file as it is.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from flowbaton.backends.states import FLOW_STATES
from flowbaton.engine.events import TASK_OUTCOMES
from flowbaton.observability.metrics import METRIC_NAMES, ReplicaMetrics

REPO = Path(__file__).resolve().parents[1]
RULES = REPO / "deploy" / "prometheus-alerts.yml"
PAGE = REPO / "docs" / "operating.md"
#: labels Prometheus itself puts on every scraped series
TARGET_LABELS = {"instance", "job"}
#: the values a matcher on these labels may use, as the code emits them
LABEL_VALUES = {"outcome": set(TASK_OUTCOMES), "state": set(FLOW_STATES)}
SEVERITIES = {"critical", "warning", "info"}
DURATION = re.compile(r"(\d+(ms|s|m|h|d|w|y))+")
SERIES = re.compile(r"\bflowbaton_\w+")
SELECTOR = re.compile(r"\b(flowbaton_\w+)\s*\{([^}]*)\}")
MATCHER = re.compile(r'\s*(\w+)\s*(=~|!~|!=|=)\s*"([^"]*)"\s*')
GROUPING = re.compile(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)")


def exported_series() -> dict[str, set[str]]:
    """Every series name a replica exposes, with the labels it carries."""
    metrics = ReplicaMetrics("r-1", "0.0", build="1.0")
    metrics.watch(running=lambda: 1, ready=lambda: True)
    metrics.watch_fleet(backlog=lambda: 3, stranded=lambda: 1)
    metrics.claimed(takeover=True)
    metrics.claim_lost()
    metrics.declined()
    metrics.task_finished(TASK_OUTCOMES[0], 0.1, factory="shop.flows:checkout")
    metrics.flow_finished("SUCCESS", 1.0, factory="shop.flows:checkout")
    metrics.backend_call("renew", 0.01)
    metrics.backend_error("claim")
    series: dict[str, set[str]] = {}
    for family in metrics.registry.collect():
        assert family.samples, f"{family.name} has no sample: give it one above"
        for sample in family.samples:
            series.setdefault(sample.name, set()).update(sample.labels)
    return series


def rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(RULES.read_text())
    assert set(doc) == {"groups"}, f"{RULES.name}: a rules file has one key, groups"
    found = []
    for group in doc["groups"]:
        assert set(group) <= {"name", "interval", "rules"} and group["name"] and group["rules"], group
        found.extend(group["rules"])
    return found


def heading_anchors(text: str) -> set[str]:
    """The ids Python-Markdown's toc gives the page's headings."""
    anchors = set()
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*$", text, re.M):
        slug = re.sub(r"[^\w\s-]", "", heading.replace("`", "")).strip().lower()
        anchors.add(re.sub(r"[-\s]+", "-", slug))
    return anchors


RULE_LIST = rules()


@pytest.fixture(scope="module")
def exported() -> dict[str, set[str]]:
    return exported_series()


def test_the_families_are_the_ones_the_module_lists(exported: dict[str, set[str]]) -> None:
    suffixes = ("_total", "_bucket", "_count", "_sum", "_created")
    families = {next((name.removesuffix(s) for s in suffixes if name.endswith(s)), name) for name in exported}
    assert families == set(METRIC_NAMES)


def test_the_file_is_a_rules_file_of_uniquely_named_alerts() -> None:
    names = [rule["alert"] for rule in RULE_LIST]
    assert len(names) == len(set(names)) and len(names) >= 8, names
    for rule in RULE_LIST:
        assert set(rule) <= {"alert", "expr", "for", "keep_firing_for", "labels", "annotations"}, rule
        assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", rule["alert"]), rule["alert"]
        assert isinstance(rule["expr"], str) and rule["expr"].strip(), rule
        assert "for" not in rule or DURATION.fullmatch(str(rule["for"])), rule
        assert rule["labels"]["severity"] in SEVERITIES, rule
        assert rule["annotations"]["summary"], rule
        assert _balanced(rule["expr"]), f"{rule['alert']}: unbalanced brackets in {rule['expr']!r}"


@pytest.mark.parametrize("rule", RULE_LIST, ids=lambda rule: rule["alert"])
def test_every_series_label_and_value_is_one_the_code_exports(rule: dict[str, Any],
                                                              exported: dict[str, set[str]]) -> None:
    expr = rule["expr"]
    used = set(SERIES.findall(expr))
    assert used, f"{rule['alert']} names no flowbaton series"
    unknown = used - set(exported)
    assert not unknown, f"{rule['alert']} uses {unknown}, which no replica exports (it has {sorted(exported)})"
    for name, matchers in SELECTOR.findall(expr):
        for label, op, value in _matchers(matchers):
            assert label in exported[name] | TARGET_LABELS, f"{rule['alert']}: {name} has no label {label}"
            if op == "=" and label in LABEL_VALUES:
                assert value in LABEL_VALUES[label], f"{rule['alert']}: {label}={value!r} is never emitted"
    carried = set().union(*(exported[name] for name in used)) | TARGET_LABELS
    for grouping in GROUPING.findall(expr):
        labels = {label.strip() for label in grouping.split(",") if label.strip()}
        assert labels <= carried, f"{rule['alert']}: grouped by {labels - carried}, which its series lack"


def test_every_runbook_names_a_section_of_the_operating_page() -> None:
    anchors = heading_anchors(PAGE.read_text())
    for rule in RULE_LIST:
        page, _, anchor = rule["annotations"]["runbook"].partition("#")
        assert page == "docs/operating.md" and anchor in anchors, f"{rule['alert']}: no section #{anchor}"


def test_the_operating_page_shows_the_file_as_it_is() -> None:
    text = PAGE.read_text()
    assert "deploy/prometheus-alerts.yml" in text
    blocks = [yaml.safe_load(b) for b in re.findall(r"```yaml\n(.*?)```", text, re.S)]
    shown = [b for b in blocks if isinstance(b, dict) and "groups" in b]
    assert shown == [yaml.safe_load(RULES.read_text())], "docs/operating.md shows other rules than the file"


def _matchers(text: str) -> list[tuple[str, str, str]]:
    parts = [p for p in text.split(",") if p.strip()]
    found = [MATCHER.fullmatch(p) for p in parts]
    assert all(found), f"cannot read the matchers {text!r}"
    return [(m[1], m[2], m[3]) for m in found if m]


def _balanced(expr: str) -> bool:
    pairs, stack = {")": "(", "]": "[", "}": "{"}, []
    for char in re.sub(r'"[^"]*"', "", expr):
        if char in "([{":
            stack.append(char)
        elif char in pairs and (not stack or stack.pop() != pairs[char]):
            return False
    return not stack
