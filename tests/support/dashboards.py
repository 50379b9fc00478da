"""Reading the committed Grafana dashboards and the Prometheus rules as the tests see them."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS_DIR = REPO_ROOT / "grafana" / "dashboards"
PROMETHEUS_DIR = REPO_ROOT / "prometheus"

# $var, ${var} and ${var:format}, as Grafana writes template variables.
_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)")
# Metric names in an expression: wordslab_* and recorded level:wordslab_*:op series,
# plus the alternatives of a {__name__=~"a|b"} selector.
_METRIC = re.compile(r"(?<![\w:\"])((?:[a-z_]+:)?wordslab_[a-z0-9_]+(?::[a-z0-9_]+)?)(?![\w\"(])")
_NAME_REGEX = re.compile(r'__name__=~"([^"]+)"')


@dataclass(frozen=True)
class PanelQuery:
    dashboard: str  # file name
    panel: str      # panel title
    ref_id: str
    expr: str

    @property
    def id(self) -> str:
        return f"{self.dashboard.removesuffix('.json')}::{self.panel}::{self.ref_id}"


def dashboard_files() -> list[Path]:
    return sorted(DASHBOARDS_DIR.glob("*.json"))


def load(path: Path) -> dict:
    return json.loads(path.read_text())


def all_items(dashboard: dict) -> Iterator[dict]:
    """Every panel, nested ones included (rows are layout, not panels)."""
    for item in dashboard.get("panels", []):
        if item.get("type") == "row":
            yield from item.get("panels", [])
        else:
            yield item


def data_panels(dashboard: dict) -> Iterator[dict]:
    """Every panel that shows data: not the text panels (headings and links)."""
    return (item for item in all_items(dashboard) if item.get("type") != "text")


def text_panels(dashboard: dict) -> Iterator[dict]:
    return (item for item in all_items(dashboard) if item.get("type") == "text")


def panel_queries() -> list[PanelQuery]:
    queries = []
    for path in dashboard_files():
        for panel in data_panels(load(path)):
            for target in panel.get("targets", []):
                queries.append(PanelQuery(path.name, panel.get("title", ""), target.get("refId", ""),
                                          target.get("expr", "")))
    return queries


def variables(dashboard: dict) -> dict[str, dict]:
    return {v["name"]: v for v in dashboard.get("templating", {}).get("list", [])}


def expand(expr: str, values: Mapping[str, str]) -> str:
    """Replace Grafana template variables; an unknown variable is an error, not left in place."""
    def replace(match: re.Match) -> str:
        name = match.group(1) or match.group(2)
        if name not in values:
            raise KeyError(f"no value for template variable ${name} in {expr!r}")
        return values[name]
    return _VARIABLE.sub(replace, expr)


def referenced_variables(expr: str) -> set[str]:
    return {m.group(1) or m.group(2) for m in _VARIABLE.finditer(expr)}


def metric_names(expr: str) -> list[str]:
    names = set(_METRIC.findall(expr))
    for alternatives in _NAME_REGEX.findall(expr):
        names.update(alternatives.split("|"))
    return sorted(names)


def metrics_used(exprs) -> set[str]:
    """Metric names in the expressions, recorded series counted with the metrics they are made of."""
    recorded = {rule["record"]: rule["expr"] for rule in recording_rules()}
    used: set[str] = set()
    todo = [name for expr in exprs for name in metric_names(expr)]
    while todo:
        name = todo.pop()
        if name not in used:
            used.add(name)
            todo += metric_names(recorded.get(name, ""))
    return used


def documented_metrics() -> list[str]:
    """Metric families listed in docs/metrics.md (counters with their _total)."""
    doc = (REPO_ROOT / "docs" / "metrics.md").read_text()
    return re.findall(r"^\| `(wordslab_[a-z0-9_]+)` \|", doc, re.M)


def rule_files() -> list[Path]:
    return sorted((PROMETHEUS_DIR / "rules").glob("*.yml"))


def recording_rules() -> list[dict]:
    rules = []
    for path in rule_files():
        for group in yaml.safe_load(path.read_text()).get("groups", []):
            rules.extend(rule for rule in group.get("rules", []) if "record" in rule)
    return rules
