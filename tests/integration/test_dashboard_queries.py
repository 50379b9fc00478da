"""Every Grafana panel query and every recording rule, run against a real Prometheus
scraping the real exporter of a world built by all tests/integration/worlds/*.py builders.

A query must parse and return data; a failure names the dashboard, panel and query and
the metrics in it that have no series (usually: that area's collector or world builder).
"""
from __future__ import annotations

import importlib
import pkgutil
import time

import pytest

from common.config import Settings
from tests.integration import worlds
from tests.support import dashboards
from tests.support.prometheus import PrometheusServer, prepare_config, start_exporter
from tests.support.metrics import metrics_containing
from tests.support.world import World

pytestmark = pytest.mark.integration

# What Grafana would put in: $__rate_interval is max(4 x scrape interval, ...) = 20 s here.
RATE_INTERVAL = "20s"
# Enough successful scrapes for rate() over RATE_INTERVAL and for the rules to run.
SCRAPES_BEFORE_QUERIES = 3
SCRAPE_WAIT_SECONDS = 40
RULE_WAIT_SECONDS = 15
# Series made by recording rules: a panel reading one may have to wait for the rule's first runs.
RECORDED = {rule["record"] for rule in dashboards.recording_rules()}


def build_world(root) -> World:
    world = World.create(root)
    for module_info in pkgutil.iter_modules(worlds.__path__):
        module = importlib.import_module(f"{worlds.__name__}.{module_info.name}")
        if not hasattr(module, "build"):
            continue
        try:
            module.build(world)
        except Exception as exc:
            world.close()
            raise RuntimeError(f"world builder tests/integration/worlds/{module_info.name}.py failed: "
                               f"{type(exc).__name__}: {exc}") from exc
    return world


class Stack:
    def __init__(self, prometheus: PrometheusServer, instance: str, workdir):
        self.prometheus = prometheus
        self.instance = instance
        self.workdir = workdir
        self._gpu: str | None = None
        # Rules run every 5 s after the scrapes: one shared grace period for all of them.
        self.rules_deadline = time.monotonic() + RULE_WAIT_SECONDS

    @property
    def gpu(self) -> str:
        """A GPU index the world's exporter reports (the value of the repeated GPU rows)."""
        if self._gpu is None:
            values = self.prometheus.api("label/gpu/values", **{"match[]": "wordslab_gpu_info"}).get("data") or []
            self._gpu = sorted(values)[0] if values else "0"
        return self._gpu

    def variables(self) -> dict[str, str]:
        return {"instance": self.instance, "gpu": self.gpu, "__rate_interval": RATE_INTERVAL,
                "datasource": "wordslab-prometheus", "admin_url": "http://127.0.0.1:9878"}

    def missing_metrics(self, expr: str) -> list[str]:
        """Metrics of `expr` without series; a recorded one also names its missing inputs."""
        recorded = {rule["record"]: rule["expr"] for rule in dashboards.recording_rules()}
        missing = []
        for name in dashboards.metric_names(expr):
            if self.prometheus.series_count(f'{name}{{instance="{self.instance}"}}'):
                continue
            inputs = self.missing_metrics(recorded[name]) if name in recorded else []
            missing.append(f"{name} (recorded from: {', '.join(inputs)})" if inputs else name)
        return missing

    def failing_collectors(self) -> list[str]:
        result = self.prometheus.query(f'wordslab_collector_success{{instance="{self.instance}"}} == 0 '
                                       f'or wordslab_source_refresh_success{{instance="{self.instance}"}} == 0')
        return sorted(s["metric"].get("collector") or "source " + s["metric"].get("source", "?")
                      for s in result.get("data", {}).get("result", []))

    def explain_no_data(self, what: str, expr: str) -> str:
        missing = self.missing_metrics(expr)
        lines = [f"{what} returned no data", f"  query: {expr}",
                 "  metrics without series on the exporter under test: " + (", ".join(missing) or
                                                                              "none (the join or filter matched nothing)")]
        failing = self.failing_collectors()
        if failing:
            lines.append("  failing collectors/sources: " + ", ".join(failing))
        lines.append(f"  logs: {self.workdir}/exporter.log, {self.workdir}/prometheus.log")
        return "\n".join(lines)


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("dashboard-queries")
    world = build_world(workdir / "world")
    exporter = prometheus = None
    try:
        exporter, address = start_exporter(world.env, world.pythonpath, workdir)
        # The first background fetch (at its slot, seconds into the world's short interval).
        metrics_containing(address, "wordslab_project_fetch_success{", timeout=60)
        config_dir = prepare_config(Settings.from_env(world.env).state_dir, address)
        prometheus = PrometheusServer.start(config_dir, workdir)
        prometheus.wait_for_samples(address, SCRAPES_BEFORE_QUERIES, SCRAPE_WAIT_SECONDS)
        yield Stack(prometheus, address, workdir)
    finally:
        if prometheus:
            prometheus.stop()
        if exporter:
            exporter.stop()
        world.close()


@pytest.mark.parametrize("panel_query", dashboards.panel_queries(), ids=lambda q: q.id)
def test_panel_query_returns_data(stack, panel_query):
    expr = dashboards.expand(panel_query.expr, stack.variables())
    response = stack.prometheus.query(expr)
    # A recorded series appears once its rule has run on enough scrapes (shared grace period).
    while (response.get("status") == "success" and not response["data"]["result"]
           and RECORDED.intersection(dashboards.metric_names(expr)) and time.monotonic() < stack.rules_deadline):
        time.sleep(0.5)
        response = stack.prometheus.query(expr)
    where = f"{panel_query.dashboard} / panel {panel_query.panel!r} / query {panel_query.ref_id}"
    assert response.get("status") == "success", (
        f"{where} is not valid PromQL: {response.get('error')}\n  query: {expr}")
    assert response["data"]["result"], stack.explain_no_data(where, expr)


@pytest.mark.parametrize("path", dashboards.dashboard_files(), ids=lambda p: p.stem)
def test_variables_list_the_machine(stack, path):
    """The instance (and gpu) variables offer the machine under test."""
    for name, variable in dashboards.variables(dashboards.load(path)).items():
        if variable["type"] != "query":
            continue
        definition = dashboards.expand(variable["definition"], stack.variables())
        metric, label = definition.removeprefix("label_values(").removesuffix(")").rsplit(", ", 1)
        values = stack.prometheus.api(f"label/{label}/values", **{"match[]": metric}).get("data") or []
        assert values, f"{path.name}: variable ${name} ({definition}) has no values"
        if name == "instance":
            assert stack.instance in values


@pytest.mark.parametrize("rule", dashboards.recording_rules(), ids=lambda r: r["record"])
def test_recording_rule_has_output(stack, rule):
    expr = f'{rule["record"]}{{instance="{stack.instance}"}}'
    while not stack.prometheus.series_count(expr) and time.monotonic() < stack.rules_deadline:
        time.sleep(0.5)
    assert stack.prometheus.series_count(expr), stack.explain_no_data(
        f"recording rule {rule['record']}", rule["expr"].strip())


def test_metrics_reference_matches_the_exporter(stack):
    """docs/metrics.md documents exactly the families the exporter exposes, with their HELP."""
    import urllib.request
    from pathlib import Path

    from tests.support.metrics_doc import render

    root = Path(__file__).resolve().parents[2]
    expected = render(urllib.request.urlopen(f"http://{stack.instance}/metrics", timeout=10).read().decode())
    actual = (root / "docs" / "metrics.md").read_text() if (root / "docs" / "metrics.md").exists() else ""
    if actual != expected:
        artifact = root / "test-artifacts" / "metrics.md"
        artifact.parent.mkdir(exist_ok=True)
        artifact.write_text(expected)
        assert actual == expected, f"docs/metrics.md is out of date: the expected file is in {artifact}"
