"""The Prometheus files and the exporter's exposition, checked by Prometheus' own promtool."""
from __future__ import annotations

import subprocess

import pytest
import yaml

from common.config import Settings
from exporter.exposition import Exposition
from exporter.registry import build_collectors
from tests.support import dashboards

PROMTOOL = "/usr/bin/promtool"
PROMETHEUS_DIR = dashboards.PROMETHEUS_DIR
RULE_TESTS = sorted((PROMETHEUS_DIR / "tests").glob("*.yml"))


def promtool(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([PROMTOOL, *args], input=stdin, capture_output=True, cwd=PROMETHEUS_DIR, timeout=120)


def output(result: subprocess.CompletedProcess) -> str:
    return (result.stdout + result.stderr).decode(errors="replace")


def all_rules() -> list[dict]:
    return [rule for path in dashboards.rule_files()
            for group in yaml.safe_load(path.read_text())["groups"] for rule in group["rules"]]


def test_config_is_valid():
    result = promtool("check", "config", "prometheus.yml")
    assert result.returncode == 0, output(result)
    assert "SUCCESS" in output(result)


def test_rules_are_valid():
    files = [str(p.relative_to(PROMETHEUS_DIR)) for p in dashboards.rule_files()]
    assert {"rules/recording.yml", "rules/machine-alerts.yml", "rules/devenv-alerts.yml",
            "rules/ai-services-alerts.yml"} <= set(files)
    result = promtool("check", "rules", *files)
    assert result.returncode == 0, output(result)


def test_rule_unit_tests_pass():
    assert RULE_TESTS
    result = promtool("test", "rules", *(str(p.relative_to(PROMETHEUS_DIR)) for p in RULE_TESTS))
    assert result.returncode == 0, output(result)


def test_every_rule_has_a_unit_test():
    tested_alerts, tested_exprs = set(), []
    for path in RULE_TESTS:
        for case in yaml.safe_load(path.read_text())["tests"]:
            tested_alerts.update(t["alertname"] for t in case.get("alert_rule_test", []) if t.get("exp_alerts"))
            tested_exprs.extend(t["expr"] for t in case.get("promql_expr_test", []) if t.get("exp_samples"))
    for rule in all_rules():
        if "alert" in rule:
            assert rule["alert"] in tested_alerts, f"alert {rule['alert']} is never seen firing in a test"
        else:
            assert any(rule["record"] in expr for expr in tested_exprs), f"{rule['record']} has no test"


@pytest.mark.parametrize("rule", [r for r in all_rules() if "alert" in r], ids=lambda r: r["alert"])
def test_alerts_have_severity_summary_and_description(rule):
    assert rule["labels"]["severity"] in ("info", "warning", "critical")
    assert rule["annotations"]["summary"].strip()
    assert rule["annotations"]["description"].strip()


def test_exporter_exposition_passes_check_metrics(vm_env):
    collectors = build_collectors(Settings.from_env(vm_env))
    # Fill the background sources once, synchronously, so their metrics are in the output.
    for collector in collectors:
        for source in collector.sources:
            source.refresh_now()
    exposition = Exposition(collectors).render()
    assert b"wordslab_collector_success" in exposition
    result = promtool("check", "metrics", stdin=exposition)
    assert result.returncode == 0 and not output(result).strip(), output(result)
