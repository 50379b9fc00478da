"""docs/metrics.md from a live exposition: name, type, labels and HELP of every family.

The integration test renders it from the exporter of the full test world (where every
area has data) and fails when docs/metrics.md differs, so the reference cannot drift.
Regenerate: python -m tests.support.metrics_doc URL_OF_METRICS > docs/metrics.md
(the failing test also writes the expected file to test-artifacts/metrics.md).
"""
from __future__ import annotations

import sys
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

# Section of the dashboard each metric prefix belongs to, in document order.
SECTIONS = (
    ("Machine resources", ("wordslab_system", "wordslab_app_version", "wordslab_cpu", "wordslab_load",
                           "wordslab_boot", "wordslab_memory", "wordslab_gpu", "wordslab_storage",
                           "wordslab_disk", "wordslab_virtual_disk", "wordslab_network")),
    ("Development environment", ("wordslab_app_", "wordslab_job", "wordslab_project", "wordslab_model")),
    ("AI services", ("wordslab_endpoint", "wordslab_external_api", "wordslab_vm", "wordslab_cost")),
    ("Exporter health", ("wordslab_collector", "wordslab_source")),
)

HEADER = """# Metrics reference

Every metric of `wordslab-exporter`, generated from the exporter of the test suite's full
world (tests/support/metrics_doc.py). Names and labels are a public contract: write your
PromQL and alerts on them. Base units throughout (`_bytes`, `_seconds`, `_ratio` 0-1,
`_total` counters); `_info` gauges have the value 1 and carry strings in labels; state sets
(`..._status{status}`, `..._state{state}`) have one series per state, 1 for the current one,
unless their help says otherwise.

Prometheus adds `instance` and `job` to every series. The `job` label of the
`wordslab_job_*` metrics therefore arrives in Prometheus as `exported_job`.
"""


def section_of(name: str) -> str:
    for title, prefixes in SECTIONS:
        if any(name.startswith(p) for p in prefixes):
            return title
    return "Other"


def render(exposition: str) -> str:
    rows: dict[str, list[str]] = {title: [] for title, _ in SECTIONS}
    for family in sorted(text_string_to_metric_families(exposition), key=lambda f: f.name):
        labels = sorted({k for s in family.samples for k in s.labels})
        name = family.name + ("_total" if family.type == "counter" else "")
        help_text = family.documentation.replace("|", "\\|")
        label_text = ", ".join(f"`{label}`" for label in labels) or "-"
        rows.setdefault(section_of(name), []).append(f"| `{name}` | {family.type} | {label_text} | {help_text} |")
    out = [HEADER]
    for title, lines in rows.items():
        if not lines:
            continue
        out += [f"## {title}", "", "| metric | type | labels | meaning |", "| --- | --- | --- | --- |", *lines, ""]
    return "\n".join(out)


if __name__ == "__main__":
    sys.stdout.write(render(urllib.request.urlopen(sys.argv[1], timeout=10).read().decode()))
