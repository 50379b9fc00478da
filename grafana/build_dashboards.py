"""Generate the wordslab Grafana dashboards (grafana/dashboards/*.json).

    python grafana/build_dashboards.py          # rewrite the JSON files
    python grafana/build_dashboards.py --check  # exit 1 if a committed file is stale

The JSON files are committed so Grafana can provision them as they are; a unit test
checks they equal what this builder produces. Metric names are the exporter's public
contract (docs in the issues / docs/metrics.md); every query is filtered by $instance.
"""
from __future__ import annotations

import argparse
import json
import string
import sys
from pathlib import Path

DASHBOARDS_DIR = Path(__file__).resolve().parent / "dashboards"
DATASOURCE_UID = "wordslab-prometheus"
DS = {"type": "prometheus", "uid": "${datasource}"}
# Empty: links to the admin are "/admin/...", the admin behind the same front door as Grafana,
# so they work at whatever public URL the browser opened the dashboard (Runpod, Vast, WSL).
ADMIN_URL_DEFAULT = ""
INSTANCE = 'instance=~"$instance"'  # the label filter every selector carries
GRID_WIDTH = 24


# ---------------------------------------------------------------------------------------
# Queries

def query(expr: str, legend: str | None = None) -> dict:
    """A range query, for time series and stats with a sparkline."""
    target = {"datasource": DS, "editorMode": "code", "expr": expr, "range": True, "instant": False}
    if legend is not None:
        target["legendFormat"] = legend
    return target


def instant(expr: str, legend: str | None = None) -> dict:
    target = {"datasource": DS, "editorMode": "code", "expr": expr, "range": False, "instant": True}
    if legend is not None:
        target["legendFormat"] = legend
    return target


def table_query(expr: str) -> dict:
    """An instant query returned as a table: one row per series, labels as columns."""
    return {"datasource": DS, "editorMode": "code", "expr": expr, "format": "table",
            "range": False, "instant": True}


def renamed_label(expr: str, old: str, new: str) -> str:
    """`expr` with its label `old` called `new` (copied by label_join, then `old` aggregated away)."""
    return f'max without ({old}) (label_join({expr}, "{new}", "", "{old}"))'


def joined(info: str, metric: str, on: str) -> str:
    """`metric` carried onto every row of the `info` series matching on `on` labels.

    Used where one disk or interface appears under several roles, so each table row
    has the same labels in every query and the merge transformation joins them 1:1.
    """
    return f"{info} * on (instance, {on}) group_left {metric}"


# ---------------------------------------------------------------------------------------
# Field config pieces

PERCENT = {"unit": "percentunit", "min": 0, "max": 1}


def thresholds(*steps: tuple[float | None, str]) -> dict:
    return {"mode": "absolute", "steps": [{"color": color, "value": value} for value, color in steps]}


USAGE_THRESHOLDS = thresholds((None, "green"), (0.8, "orange"), (0.95, "red"))


def override(field: str, **properties) -> dict:
    """Per-column settings; `field` is the column name after the merge ("Value #B", a label)."""
    props = []
    for key, value in properties.items():
        key = {"cell": "custom.cellOptions", "width": "custom.width", "name": "displayName"}.get(key, key)
        props.append({"id": key, "value": value})
    return {"matcher": {"id": "byName", "options": field}, "properties": props}


def link(title: str, url: str) -> dict:
    return {"title": title, "url": url, "targetBlank": True}


def open_link(title: str) -> list[dict]:
    """A clickable cell opening the URL it shows."""
    return [link(title, "${__value.raw}")]


def value_colors(*entries: tuple[str, str, str]) -> list[dict]:
    """Value mappings (value, text, colour) for state columns; a missing value reads as such."""
    options = {value: {"text": text, "color": color, "index": i} for i, (value, text, color) in enumerate(entries)}
    return [{"type": "value", "options": options}]


UP_DOWN = value_colors(("1", "up", "green"), ("0", "down", "red"))
OK_FAILED = value_colors(("1", "ok", "green"), ("0", "failed", "red"))
PROJECT_STATES = value_colors(
    ("tracking", "tracking", "green"), ("no_upstream", "no upstream", "text"), ("upstream_gone", "upstream gone", "orange"),
    ("no_remote", "no remote", "text"), ("detached", "detached", "orange"), ("error", "error", "red"))
YES_NO = value_colors(("1", "yes", "green"), ("0", "no", "text"))
WATCH_POLLING = value_colors(("0", "file events", "green"), ("1", "polling", "orange"))
MODEL_STATES = value_colors(("ok", "ok", "green"), ("incomplete", "incomplete", "orange"), ("error", "unreadable", "red"))
STATE_COLORS = value_colors(("running", "running", "green"), ("starting", "starting", "yellow"),
                            ("error", "error", "red"), ("stopped", "stopped", "text"),
                            ("exited", "exited", "text"), ("terminated", "terminated", "text"))
API_STATES = value_colors(("ok", "ok", "green"), ("out_of_credit", "out of credit", "red"),
                          ("rate_limited", "rate limited", "orange"), ("unauthorized", "unauthorized", "red"),
                          ("error", "error", "red"), ("unreachable", "unreachable", "red"))
COLOR_CELL = {"type": "color-background", "mode": "basic"}
GAUGE_CELL = {"type": "gauge", "mode": "basic", "valueDisplayMode": "text"}


def hide(*names: str) -> dict:
    return {name: True for name in names}


# ---------------------------------------------------------------------------------------
# Panels (gridPos is filled in by Layout)

def panel(kind: str, title: str, description: str, targets: list[dict], unit: str, *,
          defaults: dict | None = None, overrides: list | None = None, options: dict | None = None,
          transformations: list | None = None, links: list | None = None) -> dict:
    for ref, target in zip(string.ascii_uppercase, targets):
        target["refId"] = ref
    field_defaults = {"unit": unit, "color": {"mode": "thresholds"},
                      "thresholds": thresholds((None, "green"))}
    if unit == "percentunit":
        field_defaults.update(PERCENT)
    field_defaults.update(defaults or {})
    result = {"type": kind, "title": title, "description": description, "datasource": DS,
              "targets": targets,
              "fieldConfig": {"defaults": field_defaults, "overrides": overrides or []},
              "options": options or {}}
    if transformations:
        result["transformations"] = transformations
    if links:
        result["links"] = links
    return result


def stat(title, description, targets, unit, *, text_mode="auto", graph=True, **kwargs) -> dict:
    options = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
               "orientation": "auto", "textMode": text_mode, "colorMode": "value",
               "graphMode": "area" if graph else "none", "justifyMode": "auto", "wideLayout": True}
    return panel("stat", title, description, targets, unit, options=options, **kwargs)


def gauge(title, description, targets, unit="percentunit", **kwargs) -> dict:
    options = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
               "orientation": "auto", "showThresholdLabels": False, "showThresholdMarkers": True}
    kwargs.setdefault("defaults", {"thresholds": USAGE_THRESHOLDS})
    return panel("gauge", title, description, targets, unit, options=options, **kwargs)


def bar_gauge(title, description, targets, unit="percentunit", **kwargs) -> dict:
    options = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
               "orientation": "horizontal", "displayMode": "gradient", "showUnfilled": True,
               "valueMode": "color", "namePlacement": "auto", "sizing": "auto", "minVizHeight": 16}
    return panel("bargauge", title, description, targets, unit, options=options, **kwargs)


def timeseries(title, description, targets, unit, *, stacked=False, overrides=None, **kwargs) -> dict:
    custom = {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 30 if stacked else 10,
              "showPoints": "never", "spanNulls": False, "axisSoftMin": 0,
              "stacking": {"mode": "normal" if stacked else "none", "group": "A"}}
    defaults = {"custom": custom, "color": {"mode": "palette-classic"}}
    defaults.update(kwargs.pop("defaults", {}))
    options = {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
               "tooltip": {"mode": "multi", "sort": "desc"}}
    return panel("timeseries", title, description, targets, unit, defaults=defaults,
                 overrides=overrides, options=options, **kwargs)


def table(title, description, targets, unit="string", *, exclude=(), order=(), overrides=None,
          sort_by: str | None = None, sort_desc: bool = False, **kwargs) -> dict:
    """A table joining instant queries on their shared labels (merge), then tidied (organize).

    Label columns are kept; Time, job and instance are hidden, and so is the value of a
    single query ("Value") unless `order` lists it.
    """
    options = {"showHeader": True, "cellHeight": "sm",
               "footer": {"show": False, "reducer": ["sum"], "countRows": False, "fields": ""}}
    if sort_by:
        options["sortBy"] = [{"displayName": sort_by, "desc": sort_desc}]
    hidden = ["Time", "job", "instance", *exclude]
    if "Value" not in order:
        hidden.append("Value")
    organize = {"excludeByName": hide(*hidden),
                "indexByName": {name: i for i, name in enumerate(order)}, "renameByName": {}}
    transformations = [{"id": "merge", "options": {}}, {"id": "organize", "options": organize}]
    defaults = {"custom": {"align": "auto", "cellOptions": {"type": "auto"}, "inspect": False}}
    return panel("table", title, description, targets, unit, defaults=defaults, overrides=overrides,
                 options=options, transformations=transformations, **kwargs)


def row(title: str, repeat: str | None = None) -> dict:
    result = {"type": "row", "title": title, "collapsed": False, "panels": []}
    if repeat:
        result["repeat"] = repeat
    return result


class Layout:
    """Places panels left to right in 24-column lines; a row always starts a new line."""

    def __init__(self):
        self.panels: list[dict] = []
        self.x = self.y = self.line_height = 0

    def row(self, title: str, repeat: str | None = None) -> None:
        self._new_line()
        self._place(row(title, repeat), GRID_WIDTH, 1)
        self._new_line()

    def add(self, item: dict, w: int, h: int) -> None:
        if self.x + w > GRID_WIDTH:
            self._new_line()
        self._place(item, w, h)

    def _place(self, item: dict, w: int, h: int) -> None:
        item["id"] = len(self.panels) + 1
        item["gridPos"] = {"h": h, "w": w, "x": self.x, "y": self.y}
        self.panels.append(item)
        self.x += w
        self.line_height = max(self.line_height, h)

    def _new_line(self) -> None:
        if self.x:
            self.y += self.line_height
        self.x = self.line_height = 0


class Columns:
    """Places panels in side-by-side columns of equal width, each filled top to bottom."""

    def __init__(self, count: int):
        self.width = GRID_WIDTH // count
        self.heights = [0] * count
        self.panels: list[dict] = []

    def add(self, column: int, item: dict, h: int) -> None:
        item["id"] = len(self.panels) + 1
        item["gridPos"] = {"h": h, "w": self.width, "x": column * self.width, "y": self.heights[column]}
        self.panels.append(item)
        self.heights[column] += h


def text(title: str, description: str, markdown: str) -> dict:
    """A markdown panel: headings and links, no data."""
    return {"type": "text", "title": title, "description": description,
            "options": {"mode": "markdown", "content": markdown,
                        "code": {"language": "plaintext", "showLineNumbers": False, "showMiniMap": False}}}


# ---------------------------------------------------------------------------------------
# Dashboard shell

def datasource_variable() -> dict:
    return {"type": "datasource", "name": "datasource", "label": "Data source", "query": "prometheus",
            "current": {"selected": True, "text": "Prometheus", "value": DATASOURCE_UID},
            "hide": 0, "refresh": 1, "regex": "", "options": [], "includeAll": False, "multi": False}


def query_variable(name: str, label: str, expr: str, *, all_values: bool = False) -> dict:
    variable = {"type": "query", "name": name, "label": label, "datasource": DS,
                "query": {"query": expr, "refId": f"{name}-values"}, "definition": expr,
                "refresh": 2, "sort": 3 if name == "gpu" else 1, "regex": "", "hide": 0,
                "includeAll": all_values, "multi": all_values, "options": [], "current": {}}
    if all_values:
        variable["current"] = {"selected": True, "text": ["All"], "value": ["$__all"]}
    return variable


def admin_url_variable() -> dict:
    return {"type": "textbox", "name": "admin_url", "label": "Admin URL", "query": ADMIN_URL_DEFAULT,
            "current": {"text": ADMIN_URL_DEFAULT, "value": ADMIN_URL_DEFAULT}, "hide": 0,
            "description": "Where the wordslab admin app answers (empty: behind the same front door); its pages are linked from panels."}


INSTANCE_VARIABLE_QUERY = "label_values(wordslab_system_info, instance)"


def dashboard(uid: str, title: str, description: str, layout: Layout, extra_variables=()) -> dict:
    variables = [datasource_variable(),
                 query_variable("instance", "Machine", INSTANCE_VARIABLE_QUERY),
                 *extra_variables, admin_url_variable()]
    return {
        "uid": uid, "title": title, "description": description, "tags": ["wordslab"],
        "editable": True, "graphTooltip": 1, "refresh": "5s", "schemaVersion": 39, "version": 1,
        "time": {"from": "now-1h", "to": "now"},
        "timepicker": {"refresh_intervals": ["5s", "10s", "30s", "1m", "5m"]},
        "timezone": "browser", "fiscalYearStartMonth": 0, "liveNow": False,
        "templating": {"list": variables},
        "annotations": {"list": [{
            "builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"}, "enable": True,
            "hide": True, "iconColor": "rgba(0, 211, 255, 1)", "name": "Annotations & Alerts",
            "type": "dashboard"}]},
        "links": [
            {"type": "dashboards", "tags": ["wordslab"], "asDropdown": False, "includeVars": True,
             "keepTime": True, "targetBlank": False, "title": "wordslab dashboards", "icon": "dashboard"},
            {"type": "link", "title": "Admin", "url": "${admin_url}/admin/", "icon": "external link",
             "targetBlank": True, "tooltip": "wordslab admin: projects, models, endpoints, VMs",
             "asDropdown": False, "includeVars": False, "keepTime": False, "tags": []},
        ],
        "panels": layout.panels,
    }


# ---------------------------------------------------------------------------------------
# Section 1: Machine resources

def gpu_count_stat() -> dict:
    return stat("GPUs", "Usable NVIDIA GPUs (0 without a GPU, without its driver, or with a .cpu-only "
                "marker) and whether the NVIDIA driver (NVML) answers.",
                [instant(f"wordslab_gpus{{{INSTANCE}}}", "usable GPUs"),
                 instant(f"wordslab_gpu_nvml_available{{{INSTANCE}}}", "NVIDIA driver")], "none",
                graph=False, overrides=[override("NVIDIA driver", mappings=value_colors(
                    ("1", "driver ok", "green"), ("0", "no driver", "text")))])


def machine_resources() -> dict:
    lay = Layout()
    lay.row("System")
    lay.add(table(
        "System", "Hosting platform, OS, wordslab version and documentation link of this machine, "
        "with its CPU, memory and uptime.",
        [table_query(f"wordslab_system_info{{{INSTANCE}}}"),
         table_query(f"wordslab_cpu_info{{{INSTANCE}}}"),
         table_query(f"wordslab_cpu_cores{{{INSTANCE}}}"),
         table_query(f"wordslab_memory_total_bytes{{{INSTANCE}}}"),
         table_query(f"time() - wordslab_boot_time_seconds{{{INSTANCE}}}")],
        exclude=("Value #A", "Value #B"),
        order=("hosting_platform", "os_version", "wordslab_version", "docs_url", "model",
               "Value #C", "Value #D", "Value #E"),
        overrides=[
            override("hosting_platform", name="Platform"),
            override("os_version", name="OS"),
            override("wordslab_version", name="wordslab version"),
            override("docs_url", name="Documentation", links=open_link("Open the wordslab documentation")),
            override("model", name="CPU"),
            override("Value #C", name="Logical cores", unit="short"),
            override("Value #D", name="RAM", unit="bytes"),
            override("Value #E", name="Uptime", unit="dtdurations"),
        ]), 16, 4)
    lay.add(table(
        "Software versions", "Versions of the main software of the VM's Python environment "
        "(Python, PyTorch) and the CUDA driver version when a GPU is usable.",
        [table_query(f"wordslab_app_version_info{{{INSTANCE}}}")],
        order=("app", "version"), sort_by="Software",
        overrides=[override("app", name="Software"), override("version", name="Version")]), 5, 4)
    lay.add(gpu_count_stat(), 3, 4)

    lay.row("CPU and memory")
    lay.add(gauge("CPU usage", "Share of CPU time in use on the whole machine over the last sampling "
                  "interval.", [query(f"wordslab_cpu_usage_ratio{{{INSTANCE}}}")]), 6, 6)
    lay.add(stat("Load average", "Runnable processes averaged over 1, 5 and 15 minutes; compare with "
                 "the number of logical cores in the System table.",
                 [query(f"wordslab_load1{{{INSTANCE}}}", "1 min"), query(f"wordslab_load5{{{INSTANCE}}}", "5 min"),
                  query(f"wordslab_load15{{{INSTANCE}}}", "15 min")], "short",
                 defaults={"decimals": 2}), 6, 6)
    lay.add(gauge("Memory used", "Share of RAM in use (total minus available).",
                  [query(f"wordslab_memory_used_bytes{{{INSTANCE}}} / wordslab_memory_total_bytes{{{INSTANCE}}}")]), 6, 6)
    lay.add(stat("Memory", "RAM in use (total minus available) and installed.",
                 [query(f"wordslab_memory_used_bytes{{{INSTANCE}}}", "used"),
                  query(f"wordslab_memory_total_bytes{{{INSTANCE}}}", "total")], "bytes"), 6, 6)
    cpu_modes = f'wordslab_cpu_seconds_total{{{INSTANCE}, mode!~"guest|guest_nice"}}'
    lay.add(timeseries(
        "CPU usage history", "Share of all CPU time spent in each mode (idle left out); the stack "
        "height is the CPU usage.",
        [query(f'sum by (instance, mode) (rate(wordslab_cpu_seconds_total{{{INSTANCE}, mode!~"idle|guest|guest_nice"}}'
               f"[$__rate_interval])) / on (instance) group_left "
               f"sum by (instance) (rate({cpu_modes}[$__rate_interval]))", "{{mode}}")],
        "percentunit", stacked=True), 12, 8)
    lay.add(timeseries(
        "Memory history", "RAM in use (total minus available) against installed RAM.",
        [query(f"wordslab_memory_used_bytes{{{INSTANCE}}}", "used"),
         query(f"wordslab_memory_total_bytes{{{INSTANCE}}}", "total")], "bytes",
        overrides=[override("total", **{"custom.lineStyle": {"fill": "dash", "dash": [10, 10]},
                                        "custom.fillOpacity": 0})]), 12, 8)

    lay.row("GPU $gpu", repeat="gpu")
    gpu = f'{INSTANCE}, gpu=~"$gpu"'
    lay.add(table(
        "GPU", "Model, driver and VRAM of this GPU (NVML).",
        [table_query(f"wordslab_gpu_info{{{gpu}}}"), table_query(f"wordslab_gpu_memory_total_bytes{{{gpu}}}")],
        exclude=("Value #A", "uuid"), order=("gpu", "name", "driver_version", "Value #B"),
        overrides=[override("gpu", name="GPU"), override("name", name="Model"),
                   override("driver_version", name="Driver"),
                   override("Value #B", name="VRAM", unit="bytes")]), 8, 4)
    lay.add(stat("Theoretical FLOPS", "Peak dense throughput of this GPU model by precision, from the "
                 "exporter's table of GPU models (absent for unknown models).",
                 [instant(f"wordslab_gpu_theoretical_flops{{{gpu}}}", "{{precision}}")], "flops",
                 graph=False), 6, 4)
    lay.add(gauge("GPU utilization", "Share of time a kernel was running on the GPU (NVML).",
                  [query(f"wordslab_gpu_utilization_ratio{{{gpu}}}")]), 5, 4)
    lay.add(gauge("VRAM used", "Share of the GPU memory in use.",
                  [query(f"wordslab_gpu_memory_used_bytes{{{gpu}}} / wordslab_gpu_memory_total_bytes{{{gpu}}}")]),
            5, 4)
    lay.add(stat("Temperature", "GPU core temperature; most GPUs throttle above 85 °C.",
                 [query(f"wordslab_gpu_temperature_celsius{{{gpu}}}")], "celsius",
                 defaults={"thresholds": thresholds((None, "green"), (80, "orange"), (85, "red"))}), 4, 6)
    lay.add(stat("Power", "Power drawn by the GPU and its enforced power limit.",
                 [query(f"wordslab_gpu_power_watts{{{gpu}}}", "draw"),
                  query(f"wordslab_gpu_power_limit_watts{{{gpu}}}", "limit")], "watt"), 4, 6)
    lay.add(timeseries("GPU usage history", "GPU utilization and share of VRAM in use.",
                       [query(f"wordslab_gpu_utilization_ratio{{{gpu}}}", "utilization"),
                        query(f"wordslab_gpu_memory_used_bytes{{{gpu}}} / wordslab_gpu_memory_total_bytes{{{gpu}}}",
                              "VRAM")], "percentunit"), 8, 6)
    lay.add(table("GPU processes", "Processes holding memory on this GPU, largest first.",
                  [table_query(f"wordslab_gpu_process_memory_bytes{{{gpu}}}")],
                  "bytes", exclude=("gpu",), order=("pid", "process", "user", "Value"),
                  sort_by="VRAM", sort_desc=True,
                  overrides=[override("pid", name="PID", unit="none"), override("process", name="Process"),
                             override("user", name="User"), override("Value", name="VRAM")]), 8, 6)

    lay.row("Storage")
    info = f"wordslab_storage_path_info{{{INSTANCE}}}"
    used_ratio = f"instance:wordslab_disk_used:ratio{{{INSTANCE}}}"
    lay.add(table(
        "Disks", "The disk behind each wordslab storage role (/, home, workspace, models) and whether "
        "its path is usable: two roles on one disk show the same disk. Size, used and available space as df shows them (blocks reserved "
        "for root are neither used nor available, so Used % is used / (used + available)), and "
        "read/write throughput per disk.",
        [table_query(info),
         table_query(f"wordslab_storage_path_state{{{INSTANCE}}} == 1"),
         table_query(joined(info, f"wordslab_disk_size_bytes{{{INSTANCE}}}", "disk")),
         table_query(joined(info, f"wordslab_disk_used_bytes{{{INSTANCE}}}", "disk")),
         table_query(joined(info, f"wordslab_disk_available_bytes{{{INSTANCE}}}", "disk")),
         table_query(joined(info, used_ratio, "disk")),
         table_query(joined(info, f"rate(wordslab_disk_read_bytes_total{{{INSTANCE}}}[$__rate_interval])", "disk")),
         table_query(joined(info, f"rate(wordslab_disk_written_bytes_total{{{INSTANCE}}}[$__rate_interval])", "disk"))],
        exclude=("Value #A", "Value #B"), sort_by="Role",
        order=("role", "path", "state", "disk", "Value #C", "Value #D", "Value #E", "Value #F", "Value #G",
               "Value #H"),
        overrides=[
            override("role", name="Role"), override("path", name="Path"), override("disk", name="Disk"),
            override("state", name="Path state", cell=COLOR_CELL, width=110, mappings=value_colors(
                ("ok", "ok", "green"), ("unset", "unset", "text"), ("missing", "missing", "red"),
                ("unreadable", "unreadable", "red"))),
            override("Value #C", name="Size", unit="bytes"),
            override("Value #D", name="Used", unit="bytes"),
            override("Value #E", name="Available", unit="bytes"),
            override("Value #F", name="Used %", unit="percentunit", min=0, max=1, cell=GAUGE_CELL,
                     thresholds=USAGE_THRESHOLDS, color={"mode": "thresholds"}),
            override("Value #G", name="Read", unit="Bps"),
            override("Value #H", name="Write", unit="Bps"),
        ]), 24, 7)
    vhdx = f"wordslab_virtual_disk_info{{{INSTANCE}}}"
    lay.add(table(
        "Windows virtual disks (WSL)", "On WSL only: the ext4.vhdx file on Windows holding each storage "
        "role (/ and home share the VM's own disk), its size, and the Windows drive it is on with that "
        "drive's size and used share. State: ok, unset (no WORDSLAB_WINDOWS_<ROLE> variable or file), "
        "invalid, unreachable (drive not mounted in the VM) or missing (no file where expected).",
        [table_query(vhdx),
         table_query(f"wordslab_virtual_disk_state{{{INSTANCE}}} == 1"),
         table_query(f"{vhdx} * on (instance, disk, file) group_left wordslab_virtual_disk_size_bytes{{{INSTANCE}}}"),
         table_query(joined(vhdx, f"wordslab_disk_size_bytes{{{INSTANCE}}}", "disk")),
         table_query(joined(vhdx, used_ratio, "disk"))],
        exclude=("Value #A", "Value #B"), sort_by="Role",
        order=("role", "state", "file", "Value #C", "disk", "Value #D", "Value #E"),
        overrides=[
            override("role", name="Role"),
            override("state", name="State", cell=COLOR_CELL, width=110, mappings=value_colors(
                ("ok", "ok", "green"), ("unset", "unset", "text"), ("invalid", "invalid", "red"),
                ("unreachable", "unreachable", "orange"), ("missing", "missing", "red"))),
            override("file", name="Virtual disk file"), override("Value #C", name="File size", unit="bytes"),
            override("disk", name="Windows drive"), override("Value #D", name="Drive size", unit="bytes"),
            override("Value #E", name="Drive used %", unit="percentunit", min=0, max=1, cell=GAUGE_CELL,
                     thresholds=USAGE_THRESHOLDS, color={"mode": "thresholds"}),
        ]), 24, 6)
    lay.add(timeseries("Disk throughput", "Bytes read and written per second on each disk.",
                       [query(f"rate(wordslab_disk_read_bytes_total{{{INSTANCE}}}[$__rate_interval])", "{{disk}} read"),
                        query(f"rate(wordslab_disk_written_bytes_total{{{INSTANCE}}}[$__rate_interval])",
                              "{{disk}} write")], "Bps"), 12, 7)
    lay.add(timeseries("Disk usage history", "Share of each disk in use, as df's Use%: used / (used + "
                       "available).", [query(used_ratio, "{{disk}}")], "percentunit"), 12, 7)

    lay.row("Network")
    net = f"wordslab_network_info{{{INSTANCE}}}"
    rx = f"rate(wordslab_network_receive_bytes_total{{{INSTANCE}}}[$__rate_interval])"
    tx = f"rate(wordslab_network_transmit_bytes_total{{{INSTANCE}}}[$__rate_interval])"
    rx_max = f"wordslab_network_receive_max_rate_bytes_per_second{{{INSTANCE}}}"
    tx_max = f"wordslab_network_transmit_max_rate_bytes_per_second{{{INSTANCE}}}"
    lay.add(table(
        "Network", "The primary interface (the default route's), its IP address, current traffic and "
        "the highest rates seen so far (kept across exporter restarts).",
        [table_query(net), table_query(joined(net, rx, "interface")), table_query(joined(net, tx, "interface")),
         table_query(joined(net, rx_max, "interface")), table_query(joined(net, tx_max, "interface"))],
        "Bps", exclude=("Value #A",),
        order=("interface", "ip_address", "Value #B", "Value #C", "Value #D", "Value #E"),
        overrides=[override("interface", name="Interface", unit="string"),
                   override("ip_address", name="IP address", unit="string"),
                   override("Value #B", name="In"), override("Value #C", name="Out"),
                   override("Value #D", name="Max in"), override("Value #E", name="Max out")]), 14, 5)
    lay.add(bar_gauge(
        "Traffic against the maximum", "Current traffic of the primary interface as a share of the "
        "highest rate seen so far.",
        [instant(f"{rx} / on (instance, interface) clamp_min({rx_max}, 1) and on (instance, interface) {net}",
                 "in {{interface}}"),
         instant(f"{tx} / on (instance, interface) clamp_min({tx_max}, 1) and on (instance, interface) {net}",
                 "out {{interface}}")],
        defaults={"thresholds": USAGE_THRESHOLDS}), 10, 5)
    dashed = {"custom.lineStyle": {"fill": "dash", "dash": [10, 10]}, "custom.fillOpacity": 0}
    lay.add(timeseries(
        "Network traffic", "Bytes received and sent per second on the primary interface, with the "
        "highest rates seen so far as dashed lines.",
        [query(f"{rx} and on (instance, interface) {net}", "in"),
         query(f"{tx} and on (instance, interface) {net}", "out"),
         query(f"{rx_max} and on (instance, interface) {net}", "max in"),
         query(f"{tx_max} and on (instance, interface) {net}", "max out")], "Bps",
        overrides=[override("max in", **dashed), override("max out", **dashed)]), 24, 7)

    lay.row("Exporter health")
    lay.add(table(
        "Collectors", "Each collector of the exporter: whether its last collection succeeded and how "
        "long it took. A failing one has its metrics missing from the panels above.",
        [table_query(f"wordslab_collector_success{{{INSTANCE}}}"),
         table_query(f"wordslab_collector_duration_seconds{{{INSTANCE}}}")],
        order=("collector", "Value #A", "Value #B"), sort_by="Collector",
        overrides=[override("collector", name="Collector"),
                   override("Value #A", name="Last collection", unit="none", cell=COLOR_CELL, mappings=OK_FAILED),
                   override("Value #B", name="Duration", unit="s")]), 12, 8)
    lay.add(table(
        "Background sources", "Slow sources refreshed off the scrape path (git, model caches, probes, "
        "providers): last refresh outcome, its duration, the age of the last good one and, for the "
        "projects and model caches, whether file events keep them fresh or the kernel's watches ran "
        "out and they are polled.",
        [table_query(f"wordslab_source_refresh_success{{{INSTANCE}}}"),
         table_query(f"wordslab_source_refresh_duration_seconds{{{INSTANCE}}}"),
         table_query(f"time() - wordslab_source_last_success_timestamp_seconds{{{INSTANCE}}}"),
         table_query(f'wordslab_source_watch_mode{{{INSTANCE}, mode="polling"}}')],
        order=("source", "Value #A", "Value #B", "Value #C", "Value #D"), sort_by="Source",
        exclude=("mode",),
        overrides=[override("source", name="Source"),
                   override("Value #A", name="Last refresh", unit="none", cell=COLOR_CELL, mappings=OK_FAILED),
                   override("Value #B", name="Duration", unit="s"),
                   override("Value #C", name="Last success", unit="dtdurations"),
                   override("Value #D", name="Freshness", unit="none", cell=COLOR_CELL,
                            mappings=WATCH_POLLING)]), 12, 8)

    gpu_variable = query_variable("gpu", "GPU", f"label_values(wordslab_gpu_info{{{INSTANCE}}}, gpu)", all_values=True)
    return dashboard("wordslab-machine", "Machine resources",
                     "CPU, memory, GPUs, disks and network of a wordslab machine.", lay, [gpu_variable])


# ---------------------------------------------------------------------------------------
# Section 2: Development environment

def admin_links(*pages: tuple[str, str]) -> list[dict]:
    return [link(title, "${admin_url}" + path) for title, path in pages]


def development_environment() -> dict:
    lay = Layout()
    lay.row("Applications")
    lay.add(table(
        "Applications", "Every app of the VM with its URL (click to open) and whether it answers an "
        "HTTP probe. Apps whose port variables are unset show as not configured. Installed: its install "
        "folder exists (empty when it cannot be told); seen up: it answered once on this machine. Only "
        "apps seen up and not uninstalled raise the app-down alert.",
        [table_query(f"wordslab_app_info{{{INSTANCE}}}"), table_query(f"wordslab_app_up{{{INSTANCE}}}"),
         table_query(f"wordslab_app_configured{{{INSTANCE}}}"),
         table_query(f"wordslab_app_probe_duration_seconds{{{INSTANCE}}}"),
         table_query(f"wordslab_app_installed{{{INSTANCE}}}"),
         table_query(f"wordslab_app_seen_up{{{INSTANCE}}}")],
        exclude=("Value #A",), sort_by="App",
        order=("app", "Value #B", "url", "internal_port", "external_port", "port_var", "Value #C", "Value #E",
               "Value #F", "Value #D"),
        overrides=[
            override("app", name="App", width=160),
            override("Value #B", name="Status", unit="none", width=130, cell=COLOR_CELL,
                     mappings=UP_DOWN + [{"type": "special", "options": {
                         "match": "null", "result": {"text": "not configured", "color": "text", "index": 2}}}]),
            override("url", name="URL", links=open_link("Open the app")),
            override("internal_port", name="Internal port"), override("external_port", name="External port"),
            override("port_var", name="Port variable"),
            override("Value #C", name="Configured", unit="none", mappings=YES_NO),
            override("Value #D", name="Probe time", unit="s"),
            override("Value #E", name="Installed", unit="none", mappings=YES_NO),
            override("Value #F", name="Seen up", unit="none", mappings=YES_NO),
        ]), 24, 9)

    lay.row("Projects")
    lay.add(table(
        "Projects", "Git repositories directly under the workspace: sync state, branch and upstream, "
        "size, files changed, commits to pull and to push (against the last background fetch), ages "
        "of the last commit, sync and file change, and whether the last background fetch worked.",
        [table_query(f"wordslab_project_info{{{INSTANCE}}}"),
         table_query(f"wordslab_project_size_bytes{{{INSTANCE}}}"),
         table_query(f"wordslab_project_changed_files{{{INSTANCE}}}"),
         table_query(f"wordslab_project_commits_behind{{{INSTANCE}}}"),
         table_query(f"wordslab_project_commits_ahead{{{INSTANCE}}}"),
         table_query(f"time() - wordslab_project_last_commit_timestamp_seconds{{{INSTANCE}}}"),
         table_query(f"time() - wordslab_project_last_sync_timestamp_seconds{{{INSTANCE}}}"),
         table_query(f"time() - wordslab_project_last_modified_timestamp_seconds{{{INSTANCE}}}"),
         table_query(f"wordslab_project_branch_info{{{INSTANCE}}}"),
         table_query(f"wordslab_project_status{{{INSTANCE}}} == 1"),
         table_query(f"wordslab_project_fetch_success{{{INSTANCE}}}")],
        exclude=("Value #A", "Value #I", "Value #J"), sort_by="Project",
        order=("project", "status", "branch", "upstream", "Value #B", "Value #C", "Value #D", "Value #E",
               "Value #F", "Value #G", "Value #H", "Value #K", "git_url", "path"),
        overrides=[
            override("project", name="Project", links=admin_links(("Manage in the admin", "/admin/projects/"))),
            override("Value #B", name="Size", unit="bytes"),
            *[override(field, name=name, unit="none", cell={"type": "color-text"},
                       thresholds=thresholds((None, "green"), (1, "orange")))
              for field, name in (("Value #C", "Changed files"), ("Value #D", "To pull"), ("Value #E", "To push"))],
            override("Value #F", name="Last commit", unit="dtdurations"),
            override("Value #G", name="Last sync", unit="dtdurations"),
            override("Value #H", name="Last change", unit="dtdurations"),
            override("git_url", name="Remote"), override("path", name="Path"),
            override("status", name="Sync state", cell=COLOR_CELL, mappings=PROJECT_STATES),
            override("branch", name="Branch"), override("upstream", name="Upstream"),
            override("Value #K", name="Last fetch", unit="none", mappings=OK_FAILED),
        ],
        links=admin_links(("Clone a project", "/admin/projects/new/"), ("Manage projects", "/admin/projects/"))),
        24, 9)

    lay.row("Models")
    lay.add(table(
        "Models", "Models on disk by provider (Ollama, Hugging Face, PyTorch hub, fastai, Keras) with "
        "whether their files are whole (incomplete: a download cut or a blob missing; unreadable: "
        "metadata that could not be read), type, size, parameters, quantization, context length, "
        "estimated VRAM to run them, when they "
        "were downloaded and last used, and the processing speed the admin's benchmark measured.",
        [table_query(f"wordslab_model_info{{{INSTANCE}}}"),
         table_query(f"wordslab_model_size_bytes{{{INSTANCE}}}"),
         table_query(f"wordslab_model_parameters{{{INSTANCE}}}"),
         table_query(f"wordslab_model_context_length{{{INSTANCE}}}"),
         table_query(f"wordslab_model_vram_estimate_bytes{{{INSTANCE}}}"),
         table_query(f"wordslab_model_download_timestamp_seconds{{{INSTANCE}}} * 1000"),
         # Each figure's `source` under its own name, so the table's rows still merge.
         table_query(renamed_label(f"wordslab_model_last_used_timestamp_seconds{{{INSTANCE}}} * 1000",
                                   "source", "last_used_source")),
         table_query(renamed_label(f"wordslab_model_processing_speed{{{INSTANCE}}}", "source", "speed_source")),
         table_query(f"wordslab_model_status{{{INSTANCE}}} == 1")],
        exclude=("Value #A", "Value #I"), sort_by="Model",
        order=("provider", "model", "status", "model_type", "Value #B", "Value #C", "quantization", "Value #D",
               "Value #E", "Value #F", "Value #G", "last_used_source", "Value #H", "unit", "speed_source", "path"),
        overrides=[
            override("provider", name="Provider"), override("model", name="Model"),
            override("model_type", name="Type"), override("quantization", name="Quantization"),
            override("status", name="Files", cell=COLOR_CELL, mappings=MODEL_STATES),
            override("Value #B", name="Size", unit="bytes"),
            override("Value #C", name="Parameters", unit="short"),
            override("Value #D", name="Context", unit="short"),
            override("Value #E", name="VRAM estimate", unit="bytes"),
            override("Value #F", name="Downloaded", unit="dateTimeAsIso"),
            override("Value #G", name="Last used", unit="dateTimeFromNow"),
            override("Value #H", name="Speed", unit="none", decimals=1),
            override("unit", name="Speed unit"),
            override("last_used_source", name="Last use from"), override("speed_source", name="Speed from"),
            override("path", name="Path"),
        ],
        links=admin_links(("Download a model", "/admin/models/new/"), ("Manage models", "/admin/models/"))),
        24, 10)
    lay.add(table(
        "vLLM models: speed and last request", "Models served by the vLLM servers the admin started on "
        "this machine, from vLLM's own metrics: decode speed over the last minute's requests (1 / mean "
        "time per output token, tokens/s) and when the last request finished (within 10 s), both kept "
        "while the model is idle (recording rules instance_model_name:wordslab_vllm_*).",
        [table_query(f"instance_model_name:wordslab_vllm_tokens_per_second:rate1m{{{INSTANCE}}}"),
         table_query(f"instance_model_name:wordslab_vllm_last_request_timestamp_seconds:max{{{INSTANCE}}} * 1000")],
        sort_by="Model", order=("model_name", "Value #A", "Value #B"),
        overrides=[override("model_name", name="Model"),
                   override("Value #A", name="Speed", unit="none", decimals=1),
                   override("Value #B", name="Last request", unit="dateTimeFromNow")],
        links=admin_links(("Start a model server", "/admin/endpoints/"))),
        24, 6)

    lay.row("Jobs")
    lay.add(bar_gauge(
        "Running jobs", "Progress of the admin's background jobs (clones, model downloads) that are "
        "queued or running.",
        [instant(f"wordslab_job_progress_ratio{{{INSTANCE}}} and on (instance, exported_job) "
                 f'(wordslab_job_status{{{INSTANCE}, status=~"queued|running"}} == 1)', "{{kind}} {{target}}")],
        defaults={"thresholds": thresholds((None, "blue"))},
        links=admin_links(("All jobs in the admin", "/admin/jobs/"))), 24, 6)

    return dashboard("wordslab-devenv", "Development environment",
                     "Apps, git projects, models and background jobs of a wordslab machine.", lay)


# ---------------------------------------------------------------------------------------
# Section 3: AI services

def budget_gauge() -> dict:
    return gauge("Budget used", "Month-to-date spend (cloud VMs and external APIs) as a share of the "
                 "monthly budget set in the admin (Cloud VMs > Budget & polling).",
                 [query(f"instance:wordslab_cost_month_usd:sum{{{INSTANCE}}} / on (instance) "
                        f"wordslab_cost_budget_month_usd{{{INSTANCE}}}")],
                 defaults={"thresholds": thresholds((None, "green"), (0.8, "orange"), (1, "red")),
                           "noValue": "no budget set"},
                 links=admin_links(("Set the budget", "/admin/vm_settings/")))


def ai_services() -> dict:
    lay = Layout()
    lay.row("Costs this month")
    usd = {"decimals": 2}
    lay.add(stat("Spend this month", "Month-to-date cost of the cloud VMs (compute and storage) and "
                 "external APIs tracked in the admin.",
                 [query(f"instance:wordslab_cost_month_usd:sum{{{INSTANCE}}}")], "currencyUSD", defaults=usd), 6, 5)
    lay.add(stat("Spend by kind", "Month-to-date cost split into VM compute, VM storage and external APIs.",
                 [query(f'sum by (kind) (wordslab_vm_cost_month_usd{{{INSTANCE}, kind!="total"}})', "VM {{kind}}"),
                  query(f"sum(wordslab_external_api_cost_month_usd{{{INSTANCE}}})", "External APIs")],
                 "currencyUSD", defaults=usd), 10, 5)
    lay.add(stat("Running VMs cost per hour", "What the VMs running now cost per hour of compute.",
                 [query(f"instance:wordslab_vm_price_running_usd_per_hour:sum{{{INSTANCE}}}")], "currencyUSD",
                 defaults={"decimals": 2, "noValue": "no VM running"}), 4, 5)
    lay.add(budget_gauge(), 4, 5)
    lay.add(timeseries("Spend this month over time", "Month-to-date cost in total and per VM and API.",
                       [query(f"instance:wordslab_cost_month_usd:sum{{{INSTANCE}}}", "total"),
                        query(f'wordslab_vm_cost_month_usd{{{INSTANCE}, kind="total"}}', "VM {{vm}}"),
                        query(f"wordslab_external_api_cost_month_usd{{{INSTANCE}}}", "API {{api}}")],
                       "currencyUSD"), 24, 7)

    lay.row("Model endpoints")
    lay.add(table(
        "Model endpoints", "Local model servers (vLLM, Ollama, FastAPI apps) configured in the admin or "
        "discovered, with their status, VRAM, the port they listen on inside the VM and last error.",
        [table_query(f"wordslab_endpoint_info{{{INSTANCE}}}"),
         table_query(f"wordslab_endpoint_status{{{INSTANCE}}} == 1"),
         table_query(f"wordslab_endpoint_vram_bytes{{{INSTANCE}}}"),
         table_query(f"wordslab_endpoint_last_error_info{{{INSTANCE}}}")],
        exclude=("Value #A", "Value #B", "Value #D"), sort_by="Endpoint",
        order=("endpoint", "status", "model", "service_type", "server", "api_type", "Value #C", "internal_port",
               "base_url", "error"),
        overrides=[
            override("endpoint", name="Endpoint"),
            override("status", name="Status", cell=COLOR_CELL, mappings=STATE_COLORS, width=110),
            override("model", name="Model"), override("service_type", name="Service"),
            override("server", name="Server"), override("api_type", name="API"),
            override("Value #C", name="VRAM", unit="bytes"),
            override("internal_port", name="Internal port"),
            override("base_url", name="Base URL", links=open_link("Open the endpoint")),
            override("error", name="Last error"),
        ],
        links=admin_links(("Start a model server", "/admin/endpoints/new/"),
                          ("Manage endpoints", "/admin/endpoints/"))), 24, 8)

    lay.row("External APIs")
    lay.add(table(
        "External APIs", "AI APIs used from this machine: the outcome of the last authenticated probe "
        "(ok, out of credit, rate limited, unauthorized, error, unreachable), its HTTP status, latency "
        "and age, the quota and cost per call as described in the admin, the cost this month (source: "
        "provider report or figure entered in the admin), credit left where the provider says, and "
        "the last error.",
        [table_query(f"wordslab_external_api_info{{{INSTANCE}}}"),
         table_query(f"wordslab_external_api_state{{{INSTANCE}}} == 1"),
         table_query(f"wordslab_external_api_up{{{INSTANCE}}}"),
         table_query(f"wordslab_external_api_probe_duration_seconds{{{INSTANCE}}}"),
         table_query(f"wordslab_external_api_cost_month_usd{{{INSTANCE}}}"),
         table_query(f"wordslab_external_api_last_http_status{{{INSTANCE}}}"),
         table_query(f"time() - wordslab_external_api_last_probe_timestamp_seconds{{{INSTANCE}}}"),
         table_query(f"wordslab_external_api_credit_remaining_usd{{{INSTANCE}}}"),
         table_query(f"wordslab_external_api_out_of_credit{{{INSTANCE}}}"),
         table_query(f"wordslab_external_api_last_error_info{{{INSTANCE}}}")],
        exclude=("Value #A", "Value #B", "Value #J"), sort_by="API",
        order=("api", "state", "Value #C", "provider", "api_type", "Value #F", "Value #D", "Value #G",
               "quota_limit", "cost_per_call", "Value #E", "source", "Value #H", "Value #I", "base_url",
               "api_key_var", "error"),
        overrides=[
            override("api", name="API"),
            override("state", name="State", cell=COLOR_CELL, mappings=API_STATES, width=120),
            override("Value #C", name="Up", unit="none", mappings=UP_DOWN, width=70),
            override("provider", name="Provider"), override("api_type", name="API type"),
            override("Value #F", name="HTTP", unit="none", width=70),
            override("Value #D", name="Latency", unit="s"),
            override("Value #G", name="Probed", unit="dtdurations"),
            override("quota_limit", name="Quota limit"), override("cost_per_call", name="Cost per call"),
            override("Value #E", name="Cost this month", unit="currencyUSD", decimals=2),
            override("source", name="Cost source"),
            override("Value #H", name="Credit left", unit="currencyUSD", decimals=2),
            override("Value #I", name="Out of credit", unit="none", mappings=value_colors(
                ("1", "yes", "red"), ("0", "no", "text"))),
            override("base_url", name="Base URL", links=open_link("Open the API base URL")),
            override("api_key_var", name="Key variable"), override("error", name="Last error"),
        ],
        links=admin_links(("Configure an external API", "/admin/external_apis/new/"),
                          ("Manage external APIs", "/admin/external_apis/"))), 24, 8)

    lay.row("Virtual machines")
    vms_page = admin_links(("Start / stop in the admin", "/admin/vms/"))
    vm_cost = f"wordslab_vm_cost_month_usd{{{INSTANCE}"
    vm_storage = f"wordslab_vm_storage_bytes{{{INSTANCE}"
    lay.add(table(
        "Virtual machines", "Cloud GPU VMs managed from the admin: instance type, status (and whether "
        "the provider's API answered, and when), URLs, container and volume disk sizes, price per hour, "
        "when it last started and stopped, the longest run allowed, and this month's compute, storage "
        "and total cost (from the provider's billing, or estimated from recorded run time x rates). "
        "Start, stop and terminate them in the admin.",
        [table_query(f"wordslab_vm_info{{{INSTANCE}}}"),
         table_query(f"wordslab_vm_status{{{INSTANCE}}} == 1"),
         table_query(f"wordslab_vm_gpu_memory_bytes{{{INSTANCE}}}"),
         table_query(f"wordslab_vm_cpus{{{INSTANCE}}}"),
         table_query(f"wordslab_vm_memory_bytes{{{INSTANCE}}}"),
         table_query(f'sum without (kind) ({vm_storage}, kind="container"}})'),
         table_query(f'sum without (kind) ({vm_storage}, kind="volume"}})'),
         table_query(f"wordslab_vm_price_usd_per_hour{{{INSTANCE}}}"),
         table_query(f"wordslab_vm_last_started_timestamp_seconds{{{INSTANCE}}} * 1000"),
         table_query(f"wordslab_vm_last_stopped_timestamp_seconds{{{INSTANCE}}} * 1000"),
         table_query(f'sum without (kind) ({vm_cost}, kind="compute"}})'),
         table_query(f'sum without (kind) ({vm_cost}, kind="storage"}})'),
         table_query(f'sum without (kind) ({vm_cost}, kind="total"}})'),
         table_query(f"wordslab_vm_cost_from_provider{{{INSTANCE}}}"),
         table_query(f"wordslab_vm_max_running_seconds{{{INSTANCE}}}"),
         table_query(f"wordslab_vm_provider_ok{{{INSTANCE}}}"),
         table_query(f"time() - wordslab_vm_status_checked_timestamp_seconds{{{INSTANCE}}}")],
        exclude=("Value #A", "Value #B"), sort_by="VM",
        order=("vm", "status", "Value #P", "Value #Q", "provider", "region", "gpu", "Value #C", "Value #D",
               "Value #E", "Value #F", "Value #G", "Value #H", "Value #I", "Value #J", "Value #O", "Value #K",
               "Value #L", "Value #M", "Value #N", "terminal_url", "dashboard_url"),
        overrides=[
            override("vm", name="VM", links=vms_page),
            override("status", name="Status", cell=COLOR_CELL, mappings=STATE_COLORS, links=vms_page, width=110),
            override("Value #P", name="Provider API", unit="none", mappings=OK_FAILED),
            override("Value #Q", name="Checked", unit="dtdurations"),
            override("provider", name="Provider"), override("region", name="Region"), override("gpu", name="GPU"),
            override("Value #C", name="VRAM", unit="bytes"),
            override("Value #D", name="vCPUs", unit="short"),
            override("Value #E", name="RAM", unit="bytes"),
            override("Value #F", name="Container disk", unit="bytes"),
            override("Value #G", name="Volume", unit="bytes"),
            override("Value #H", name="$ / hour", unit="currencyUSD", decimals=2),
            override("Value #I", name="Last started", unit="dateTimeFromNow"),
            override("Value #J", name="Last stopped", unit="dateTimeFromNow"),
            override("Value #O", name="Max run", unit="dtdurations"),
            override("Value #K", name="Compute cost", unit="currencyUSD", decimals=2),
            override("Value #L", name="Storage cost", unit="currencyUSD", decimals=2),
            override("Value #M", name="Cost this month", unit="currencyUSD", decimals=2),
            override("Value #N", name="Cost from", unit="none", mappings=value_colors(
                ("1", "provider billing", "text"), ("0", "estimate", "text"))),
            override("terminal_url", name="Terminal", links=open_link("Open the VM's terminal")),
            override("dashboard_url", name="Dashboard", links=open_link("Open the VM's dashboard")),
        ],
        links=admin_links(("Create a VM", "/admin/vms/new/"), ("Manage VMs", "/admin/vms/"),
                          ("VM templates", "/admin/vm_templates/"),
                          ("Hosting platforms", "/admin/platforms/"))), 24, 9)
    lay.add(stat("Autostop countdown", "Time until autostop stops each running VM unless it is used: "
                 "its GPUs above the VM's threshold, or \"keep running\" in the admin. Stop, never terminate.",
                 [query(f"wordslab_vm_autostop_seconds_remaining{{{INSTANCE}}}", "{{vm}}")], "s",
                 defaults={"noValue": "no autostop countdown",
                           "thresholds": thresholds((None, "red"), (300, "orange"), (900, "green"))},
                 links=vms_page), 24, 5)

    return dashboard("wordslab-ai-services", "AI services",
                     "Local model endpoints, external AI APIs and cloud VMs with their costs.", lay)


# ---------------------------------------------------------------------------------------
# Home: the spec's one screen, "vertically divided into three parts"

# Grafana's pages carry <base href="<root_url>/">: relative links work under a sub-path too.
KEEP_VARS = "?var-instance=${instance}&${__url_time_range}"
SECTIONS = (
    ("Machine resources", "wordslab-machine", ()),
    ("Development environment", "wordslab-devenv",
     (("Clone a project", "/admin/projects/new/"), ("Projects (delete)", "/admin/projects/"),
      ("Download a model", "/admin/models/new/"), ("Models (delete)", "/admin/models/"), ("Jobs", "/admin/jobs/"))),
    ("AI services", "wordslab-ai-services",
     (("Start a model server", "/admin/endpoints/new/"), ("Endpoints (stop, delete)", "/admin/endpoints/"),
      ("Configure an external API", "/admin/external_apis/new/"), ("External APIs (delete)", "/admin/external_apis/"),
      ("Create a VM", "/admin/vms/new/"), ("VMs (start, stop, terminate)", "/admin/vms/"),
      ("Hosting platforms", "/admin/platforms/"), ("VM templates", "/admin/vm_templates/"))),
)


def section_header(title: str, uid: str, pages: tuple) -> dict:
    lines = [f"### [{title}](d/{uid}{KEEP_VARS})", "",
             f"[Details: the {title} dashboard](d/{uid}{KEEP_VARS})"]
    if pages:
        lines += ["", "Admin: " + " · ".join(f"[{name}](${{admin_url}}{path})" for name, path in pages)]
    return text(title, f"The {title} part: its detailed dashboard and the admin pages that create and "
                f"delete its items.", "\n".join(lines))


def home() -> dict:
    cols = Columns(3)
    machine, devenv, ai = 0, 1, 2
    for column, (title, uid, pages) in enumerate(SECTIONS):
        cols.add(column, section_header(title, uid, pages), 3 if column == machine else 4)

    # Machine resources
    cols.add(machine, table(
        "System", "Hosting platform, OS, wordslab version and the documentation link.",
        [table_query(f"wordslab_system_info{{{INSTANCE}}}")],
        order=("hosting_platform", "os_version", "wordslab_version", "docs_url"),
        overrides=[override("hosting_platform", name="Platform"), override("os_version", name="OS"),
                   override("wordslab_version", name="wordslab"),
                   override("docs_url", name="Docs", links=open_link("Open the wordslab documentation"))]), 3)
    cols.add(machine, stat("Versions", "Python and PyTorch of the VM's Python environment, and the CUDA "
                           "version the driver supports (only with a usable GPU).",
                           [instant(f"wordslab_app_version_info{{{INSTANCE}}}", "{{app}} {{version}}")],
                           "none", text_mode="name", graph=False), 2)
    cols.add(machine, table(
        "CPU and memory", "CPU model, logical cores and installed RAM.",
        [table_query(f"wordslab_cpu_info{{{INSTANCE}}}"), table_query(f"wordslab_cpu_cores{{{INSTANCE}}}"),
         table_query(f"wordslab_memory_total_bytes{{{INSTANCE}}}")],
        exclude=("Value #A",), order=("model", "Value #B", "Value #C"),
        overrides=[override("model", name="CPU"), override("Value #B", name="Cores", unit="short"),
                   override("Value #C", name="RAM", unit="bytes")]), 3)
    cols.add(machine, bar_gauge(
        "Usage", "CPU, RAM, each GPU and its VRAM in use, and each disk as df counts it.",
        [instant(f"wordslab_cpu_usage_ratio{{{INSTANCE}}}", "CPU"),
         instant(f"wordslab_memory_used_bytes{{{INSTANCE}}} / wordslab_memory_total_bytes{{{INSTANCE}}}", "RAM"),
         instant(f"wordslab_gpu_utilization_ratio{{{INSTANCE}}}", "GPU {{gpu}}"),
         instant(f"wordslab_gpu_memory_used_bytes{{{INSTANCE}}} / wordslab_gpu_memory_total_bytes{{{INSTANCE}}}",
                 "VRAM {{gpu}}"),
         instant(f"instance:wordslab_disk_used:ratio{{{INSTANCE}}}", "disk {{disk}}")],
        defaults={"thresholds": USAGE_THRESHOLDS}), 7)
    gpu_info = f"wordslab_gpu_info{{{INSTANCE}}}"
    cols.add(machine, table(
        "GPUs", "Each NVIDIA GPU: model, VRAM and theoretical peak throughput (fp16 tensor, bf16 alike).",
        [table_query(gpu_info), table_query(f"wordslab_gpu_memory_total_bytes{{{INSTANCE}}}"),
         table_query(f'wordslab_gpu_theoretical_flops{{{INSTANCE}, precision="fp16"}}')],
        exclude=("Value #A", "uuid", "driver_version", "precision"), order=("gpu", "name", "Value #B", "Value #C"),
        overrides=[override("gpu", name="GPU", width=50), override("name", name="Model"),
                   override("Value #B", name="VRAM", unit="bytes"),
                   override("Value #C", name="fp16 FLOPS", unit="flops")]), 3)
    info = f"wordslab_storage_path_info{{{INSTANCE}}}"
    cols.add(machine, table(
        "Disks", "The disk behind /, WORDSLAB_HOME, WORDSLAB_WORKSPACE and WORDSLAB_MODELS, its size and "
        "available space as df shows them.",
        [table_query(info), table_query(joined(info, f"wordslab_disk_size_bytes{{{INSTANCE}}}", "disk")),
         table_query(joined(info, f"wordslab_disk_available_bytes{{{INSTANCE}}}", "disk"))],
        exclude=("Value #A", "path"), order=("role", "disk", "Value #B", "Value #C"), sort_by="Role",
        overrides=[override("role", name="Role"), override("disk", name="Disk"),
                   override("Value #B", name="Size", unit="bytes"),
                   override("Value #C", name="Available", unit="bytes")]), 5)
    net = f"wordslab_network_info{{{INSTANCE}}}"
    rx = f"rate(wordslab_network_receive_bytes_total{{{INSTANCE}}}[$__rate_interval])"
    tx = f"rate(wordslab_network_transmit_bytes_total{{{INSTANCE}}}[$__rate_interval])"
    cols.add(machine, table(
        "Network", "The primary interface, its IP address and current traffic in and out.",
        [table_query(net), table_query(joined(net, rx, "interface")), table_query(joined(net, tx, "interface"))],
        "Bps", exclude=("Value #A",), order=("interface", "ip_address", "Value #B", "Value #C"),
        overrides=[override("interface", name="Interface", unit="string"),
                   override("ip_address", name="IP address", unit="string"),
                   override("Value #B", name="In"), override("Value #C", name="Out")]), 3)

    # Development environment
    cols.add(devenv, table(
        "Apps", "The VM's apps: status of their HTTP probe and their link (click to open).",
        [table_query(f"wordslab_app_info{{{INSTANCE}}}"), table_query(f"wordslab_app_up{{{INSTANCE}}}")],
        exclude=("Value #A", "internal_port", "external_port", "port_var"), sort_by="App",
        order=("app", "Value #B", "url"),
        overrides=[override("app", name="App"),
                   override("Value #B", name="Status", unit="none", width=110, cell=COLOR_CELL,
                            mappings=UP_DOWN + [{"type": "special", "options": {
                                "match": "null", "result": {"text": "not configured", "color": "text", "index": 2}}}]),
                   override("url", name="URL", links=open_link("Open the app"))]), 7)
    cols.add(devenv, table(
        "Projects", "Git projects in the workspace: size, changed files, commits to pull and to push.",
        [table_query(f"wordslab_project_info{{{INSTANCE}}}"),
         table_query(f"wordslab_project_size_bytes{{{INSTANCE}}}"),
         table_query(f"wordslab_project_changed_files{{{INSTANCE}}}"),
         table_query(f"wordslab_project_commits_behind{{{INSTANCE}}}"),
         table_query(f"wordslab_project_commits_ahead{{{INSTANCE}}}")],
        exclude=("Value #A", "git_url", "path"), sort_by="Project",
        order=("project", "Value #B", "Value #C", "Value #D", "Value #E"),
        overrides=[override("project", name="Project"), override("Value #B", name="Size", unit="bytes"),
                   *[override(field, name=name, unit="none", cell={"type": "color-text"},
                              thresholds=thresholds((None, "green"), (1, "orange")))
                     for field, name in (("Value #C", "Changed"), ("Value #D", "To pull"), ("Value #E", "To push"))]]),
        9)
    cols.add(devenv, table(
        "Models", "Downloaded models by provider, with type and size on disk.",
        [table_query(f"wordslab_model_info{{{INSTANCE}}}"), table_query(f"wordslab_model_size_bytes{{{INSTANCE}}}")],
        exclude=("Value #A", "path", "quantization"), sort_by="Model",
        order=("provider", "model", "model_type", "Value #B"),
        overrides=[override("provider", name="Provider"), override("model", name="Model"),
                   override("model_type", name="Type"), override("Value #B", name="Size", unit="bytes")]), 10)

    # AI services
    cols.add(ai, stat("Spend this month", "Month-to-date cost of cloud VMs and external APIs, and what the "
                      "VMs running now cost per hour.",
                      [instant(f"instance:wordslab_cost_month_usd:sum{{{INSTANCE}}}", "this month"),
                       instant(f"instance:wordslab_vm_price_running_usd_per_hour:sum{{{INSTANCE}}}", "per hour now")],
                      "currencyUSD", graph=False, defaults={"decimals": 2}), 3)
    cols.add(ai, table(
        "Local endpoints", "Local model servers: status, model, internal port and base URL.",
        [table_query(f"wordslab_endpoint_info{{{INSTANCE}}}"),
         table_query(f"wordslab_endpoint_status{{{INSTANCE}}} == 1")],
        exclude=("Value #A", "Value #B", "service_type", "server", "api_type"), sort_by="Endpoint",
        order=("endpoint", "status", "model", "internal_port", "base_url"),
        overrides=[override("endpoint", name="Endpoint"),
                   override("status", name="Status", cell=COLOR_CELL, mappings=STATE_COLORS, width=90),
                   override("model", name="Model"), override("internal_port", name="Port", width=60),
                   override("base_url", name="Base URL", links=open_link("Open the endpoint"))]), 6)
    cols.add(ai, table(
        "External APIs", "AI APIs configured in the admin: probe state and cost this month.",
        [table_query(f"wordslab_external_api_info{{{INSTANCE}}}"),
         table_query(f"wordslab_external_api_state{{{INSTANCE}}} == 1"),
         table_query(f"sum without (source) (wordslab_external_api_cost_month_usd{{{INSTANCE}}})")],
        exclude=("Value #A", "Value #B", "api_type", "base_url", "api_key_var", "quota_limit", "cost_per_call"),
        sort_by="API", order=("api", "state", "provider", "Value #C"),
        overrides=[override("api", name="API"),
                   override("state", name="Status", cell=COLOR_CELL, mappings=API_STATES, width=110),
                   override("provider", name="Provider"),
                   override("Value #C", name="This month", unit="currencyUSD", decimals=2)]), 6)
    cols.add(ai, table(
        "Cloud VMs", "VMs managed from the admin: status, GPU, price per hour and cost this month.",
        [table_query(f"wordslab_vm_info{{{INSTANCE}}}"), table_query(f"wordslab_vm_status{{{INSTANCE}}} == 1"),
         table_query(f"wordslab_vm_price_usd_per_hour{{{INSTANCE}}}"),
         table_query(f'sum without (kind) (wordslab_vm_cost_month_usd{{{INSTANCE}, kind="total"}})')],
        exclude=("Value #A", "Value #B", "provider", "region", "terminal_url"), sort_by="VM",
        order=("vm", "status", "gpu", "Value #C", "Value #D", "dashboard_url"),
        overrides=[override("vm", name="VM"),
                   override("status", name="Status", cell=COLOR_CELL, mappings=STATE_COLORS, width=90),
                   override("gpu", name="GPU"), override("Value #C", name="$ / hour", unit="currencyUSD", decimals=2),
                   override("Value #D", name="This month", unit="currencyUSD", decimals=2),
                   override("dashboard_url", name="Dashboard", links=open_link("Open the VM's dashboard"))]), 7)

    return dashboard("wordslab-home", "wordslab home",
                     "The whole machine on one screen: machine resources, development environment and AI "
                     "services side by side, each linking to its detailed dashboard and admin pages.", cols)


DASHBOARDS = {
    "home.json": home,
    "machine-resources.json": machine_resources,
    "development-environment.json": development_environment,
    "ai-services.json": ai_services,
}


def render(builder) -> str:
    return json.dumps(builder(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check the committed files are current")
    args = parser.parse_args(argv)
    stale = []
    for filename, builder in DASHBOARDS.items():
        path = DASHBOARDS_DIR / filename
        text = render(builder)
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(filename)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print(f"wrote {path}")
    if stale:
        print("stale dashboards (run python grafana/build_dashboards.py): " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
