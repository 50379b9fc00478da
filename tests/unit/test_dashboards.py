"""The committed Grafana dashboards: generated, loadable by Grafana's model, and consistent."""
from __future__ import annotations

import importlib.util
import re
import sys

import pytest
import yaml

# Grafana's SDK is published for Python >= 3.11 only; on 3.10 (the floor) the other checks run.
SDK_PYTHON = sys.version_info >= (3, 11)
if SDK_PYTHON:
    from grafana_foundation_sdk.cog import plugins as sdk_plugins
    from grafana_foundation_sdk.cog import runtime as sdk_runtime
    from grafana_foundation_sdk.models import prometheus as sdk_prometheus
    from grafana_foundation_sdk.models.dashboard import Dashboard

from tests.support import dashboards

GRAFANA_DIR = dashboards.REPO_ROOT / "grafana"
FILES = dashboards.dashboard_files()
INSTANCE_FILTER = 'instance=~"$instance"'


def load_builder():
    spec = importlib.util.spec_from_file_location("build_dashboards", GRAFANA_DIR / "build_dashboards.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def provisioned_datasource_uid() -> str:
    config = yaml.safe_load((GRAFANA_DIR / "provisioning" / "datasources" / "prometheus.yaml").read_text())
    (datasource,) = config["datasources"]
    assert datasource["type"] == "prometheus"
    return datasource["uid"]


def panels_of(path):
    return list(dashboards.data_panels(dashboards.load(path)))


def all_panels():
    return [(path, panel) for path in FILES for panel in panels_of(path)]


def panel_id(item):
    path, panel = item
    return f"{path.stem}::{panel['title']}"


def test_the_home_and_the_three_sections_are_there():
    assert [p.name for p in FILES] == ["ai-services.json", "development-environment.json", "home.json",
                                       "machine-resources.json"]


def test_committed_json_is_what_the_builder_produces():
    builder = load_builder()
    assert set(builder.DASHBOARDS) == {p.name for p in FILES}
    for filename, build in builder.DASHBOARDS.items():
        assert (GRAFANA_DIR / "dashboards" / filename).read_text() == builder.render(build), (
            f"{filename} is stale: run python grafana/build_dashboards.py")


@pytest.mark.skipif(not SDK_PYTHON, reason="grafana-foundation-sdk needs Python >= 3.11")
@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_loads_through_grafana_foundation_sdk(path):
    sdk_plugins.register_default_plugins()
    data = dashboards.load(path)
    model = Dashboard.from_json(data)
    assert model.uid == data["uid"] and model.title == data["title"]
    assert len(model.panels) == len(data["panels"])
    for raw, parsed in zip(data["panels"], model.panels):
        assert parsed.title == raw["title"]
        assert (parsed.grid_pos.x, parsed.grid_pos.y, parsed.grid_pos.w, parsed.grid_pos.h) == (
            raw["gridPos"]["x"], raw["gridPos"]["y"], raw["gridPos"]["w"], raw["gridPos"]["h"])
        if raw["type"] in ("row", "text"):
            continue
        assert sdk_runtime.panelcfg_config(raw["type"]) is not None, f"unknown panel type {raw['type']}"
        assert all(isinstance(t, sdk_prometheus.Dataquery) for t in parsed.targets), raw["title"]
        assert [t.expr for t in parsed.targets] == [t["expr"] for t in raw["targets"]]
    assert {v.name for v in model.templating.list_val} == set(dashboards.variables(data))


def test_dashboard_uids_are_the_ones_the_admin_links_to():
    from admin.context import GRAFANA_DASHBOARDS
    uids = {dashboards.load(p)["uid"]: dashboards.load(p)["title"] for p in FILES}
    assert len(uids) == len(FILES)
    assert uids == GRAFANA_DASHBOARDS


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_panel_ids_unique_and_grid_positions_do_not_overlap(path):
    items = dashboards.load(path)["panels"]
    ids = [item["id"] for item in items]
    assert len(ids) == len(set(ids))
    boxes = []
    for item in items:
        pos = item["gridPos"]
        assert pos["x"] >= 0 and pos["w"] > 0 and pos["h"] > 0 and pos["x"] + pos["w"] <= 24, item["title"]
        for other_title, (x, y, w, h) in boxes:
            overlap = pos["x"] < x + w and x < pos["x"] + pos["w"] and pos["y"] < y + h and y < pos["y"] + pos["h"]
            assert not overlap, f"{item['title']!r} overlaps {other_title!r}"
        boxes.append((item["title"], (pos["x"], pos["y"], pos["w"], pos["h"])))


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_dashboard_settings_variables_and_links(path):
    data = dashboards.load(path)
    assert data["refresh"] == "5s"
    assert "wordslab" in data["tags"]
    variables = dashboards.variables(data)
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    assert variables["datasource"]["current"]["value"] == provisioned_datasource_uid()
    assert variables["instance"]["definition"] == "label_values(wordslab_system_info, instance)"
    assert variables["instance"]["query"]["query"] == variables["instance"]["definition"]
    assert variables["admin_url"]["type"] in ("textbox", "constant")
    # Empty: links are "/admin/...", the admin behind the same front door, at any public URL.
    assert variables["admin_url"]["query"] == ""
    for variable in variables.values():
        if variable["type"] == "query":
            assert variable["datasource"]["uid"] == "${datasource}"
            if variable["name"] != "instance":
                assert INSTANCE_FILTER in variable["definition"], variable["name"]
    # The other wordslab dashboards are one click away, keeping the chosen machine.
    (to_dashboards,) = [link for link in data["links"] if link["type"] == "dashboards"]
    assert to_dashboards["tags"] == ["wordslab"] and to_dashboards["includeVars"]


def test_gpu_block_repeats_per_gpu():
    data = dashboards.load(dashboards.DASHBOARDS_DIR / "machine-resources.json")
    (gpu_row,) = [p for p in data["panels"] if p["type"] == "row" and p.get("repeat")]
    assert gpu_row["repeat"] == "gpu"
    gpu = dashboards.variables(data)["gpu"]
    assert gpu["includeAll"] and gpu["multi"]
    # Every panel between the GPU row and the next row is about $gpu only.
    panels = data["panels"]
    start = panels.index(gpu_row) + 1
    block = []
    for item in panels[start:]:
        if item["type"] == "row":
            break
        block.append(item)
    assert {p["title"] for p in block} >= {"GPU", "Theoretical FLOPS", "GPU utilization", "VRAM used",
                                           "Temperature", "Power", "GPU processes"}
    for item in block:
        assert all('gpu=~"$gpu"' in t["expr"] for t in item["targets"]), item["title"]


@pytest.mark.parametrize("item", all_panels(), ids=panel_id)
def test_panel_has_unit_description_and_queries(item):
    _, panel = item
    assert panel["fieldConfig"]["defaults"].get("unit"), "no unit"
    assert panel.get("description", "").strip(), "no description"
    assert panel.get("targets"), "no query"
    assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
    for target in panel["targets"]:
        assert target["datasource"] == panel["datasource"]
        assert target["expr"].strip() and target["refId"]


def _selectors(expr: str):
    """(metric, label matchers) of every selector of a wordslab series in expr."""
    for name in dashboards.metric_names(expr):
        for match in re.finditer(re.escape(name) + r"(\{[^}]*\})?", expr):
            yield name, match.group(1) or ""


@pytest.mark.parametrize("item", all_panels(), ids=panel_id)
def test_every_selector_is_filtered_by_instance(item):
    _, panel = item
    for target in panel["targets"]:
        selectors = list(_selectors(target["expr"]))
        assert selectors, f"no wordslab metric in {target['expr']}"
        for name, matchers in selectors:
            assert INSTANCE_FILTER in matchers, f"{name} is not filtered by $instance in {target['expr']}"


@pytest.mark.parametrize("item", all_panels(), ids=panel_id)
def test_rates_use_the_rate_interval(item):
    _, panel = item
    for target in panel["targets"]:
        for function, window in re.findall(r"\b(rate|irate|increase|delta|deriv)\([^\[]*\[([^\]]+)\]",
                                           target["expr"]):
            assert window == "$__rate_interval", f"{function}() over [{window}] in {target['expr']}"


@pytest.mark.parametrize("item", all_panels(), ids=panel_id)
def test_percentages_have_fixed_0_to_100_axes(item):
    _, panel = item
    defaults = panel["fieldConfig"]["defaults"]
    if defaults["unit"] == "percentunit":
        assert (defaults.get("min"), defaults.get("max")) == (0, 1)
    for override in panel["fieldConfig"]["overrides"]:
        props = {p["id"]: p["value"] for p in override["properties"]}
        if props.get("unit") == "percentunit":
            assert (props.get("min"), props.get("max")) == (0, 1), override["matcher"]


@pytest.mark.parametrize("item", [i for i in all_panels() if i[1]["type"] == "table"], ids=panel_id)
def test_tables_join_instant_table_queries(item):
    _, panel = item
    for target in panel["targets"]:
        assert target["format"] == "table" and target["instant"] is True
    kinds = [t["id"] for t in panel.get("transformations", [])]
    assert kinds == ["merge", "organize"]
    if len(panel["targets"]) > 1:
        # Every joined value column gets a name; hidden ones are the _info queries' 1.
        organize = panel["transformations"][1]["options"]
        named = {o["matcher"]["options"] for o in panel["fieldConfig"]["overrides"]
                 if any(p["id"] == "displayName" for p in o["properties"])}
        for target in panel["targets"]:
            column = f"Value #{target['refId']}"
            assert column in named or organize["excludeByName"].get(column), f"{column} has no name"


def _links(panel):
    yield from panel.get("links", [])
    for override in panel["fieldConfig"]["overrides"]:
        for prop in override["properties"]:
            if prop["id"] == "links":
                yield from prop["value"]


def test_url_columns_are_clickable():
    linked = set()
    for _, panel in all_panels():
        for override in panel["fieldConfig"]["overrides"]:
            field = override["matcher"]["options"]
            # git remotes are often ssh (git@host:repo), which a browser cannot open.
            if (field == "url" or field.endswith("_url")) and field != "git_url":
                assert any(p["id"] == "links" for p in override["properties"]), f"{panel['title']}: {field}"
                linked.add(field)
    assert linked >= {"docs_url", "url", "base_url", "terminal_url", "dashboard_url"}


_MARKDOWN_LINK = re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)")


def every_link_url():
    for path in FILES:
        data = dashboards.load(path)
        for panel in dashboards.data_panels(data):
            yield from (link["url"] for link in _links(panel))
        for panel in dashboards.text_panels(data):
            yield from (url for _, url in _MARKDOWN_LINK.findall(panel["options"]["content"]))


def test_admin_links_use_the_admin_url_variable_and_open_real_admin_pages(vm_env):
    from tests.support.admin import logged_in_client, make_admin_app
    client = logged_in_client(make_admin_app(vm_env))
    pages = set()
    for url in every_link_url():
        if "/admin/" in url:
            assert url.startswith("${admin_url}/admin/"), url
            pages.add(url.removeprefix("${admin_url}").split("?")[0])
    for page in sorted(pages):
        assert client.get(page).status_code == 200, f"{page} is linked from a dashboard but does not open"
    assert pages >= {"/admin/projects/new/", "/admin/models/new/", "/admin/jobs/", "/admin/endpoints/",
                     "/admin/endpoints/new/", "/admin/external_apis/", "/admin/external_apis/new/",
                     "/admin/vms/", "/admin/vms/new/"}


def test_links_to_dashboards_name_existing_uids():
    uids = {dashboards.load(p)["uid"] for p in FILES}
    for url in every_link_url():
        if url.startswith("d/") or "/d/" in url:
            uid = re.search(r"(?:^|/)d/([\w-]+)", url).group(1)
            assert uid in uids, url


# --- The home dashboard: the spec's one screen -------------------------------------------------

HOME = dashboards.DASHBOARDS_DIR / "home.json"
COLUMNS = {0: ("Machine resources", "wordslab-machine"), 8: ("Development environment", "wordslab-devenv"),
           16: ("AI services", "wordslab-ai-services")}
# What the spec shows of each part, as the metrics that carry it (docs/metrics.md).
SPEC_FIELDS = {
    "Machine resources": {
        "platform, OS, wordslab version, docs link": "wordslab_system_info",
        "apps versions": "wordslab_app_version_info",
        "CPU name": "wordslab_cpu_info", "CPU cores": "wordslab_cpu_cores", "CPU usage": "wordslab_cpu_usage_ratio",
        "RAM capacity": "wordslab_memory_total_bytes", "RAM usage": "wordslab_memory_used_bytes",
        "GPU name": "wordslab_gpu_info", "GPU FLOPS": "wordslab_gpu_theoretical_flops",
        "GPU usage": "wordslab_gpu_utilization_ratio", "VRAM capacity": "wordslab_gpu_memory_total_bytes",
        "VRAM usage": "wordslab_gpu_memory_used_bytes",
        "disks behind /, home, workspace, models": "wordslab_storage_path_info",
        "disk capacity": "wordslab_disk_size_bytes", "disk usage": "wordslab_disk_available_bytes",
        "network interface and IP": "wordslab_network_info",
        "network in": "wordslab_network_receive_bytes_total", "network out": "wordslab_network_transmit_bytes_total",
    },
    "Development environment": {
        "app links": "wordslab_app_info", "app status": "wordslab_app_up",
        "projects": "wordslab_project_info", "project size": "wordslab_project_size_bytes",
        "git changes": "wordslab_project_changed_files", "to pull": "wordslab_project_commits_behind",
        "to push": "wordslab_project_commits_ahead",
        "models": "wordslab_model_info", "model size": "wordslab_model_size_bytes",
    },
    "AI services": {
        "local endpoints": "wordslab_endpoint_info", "endpoint status": "wordslab_endpoint_status",
        "external APIs": "wordslab_external_api_info", "API status": "wordslab_external_api_state",
        "API cost": "wordslab_external_api_cost_month_usd",
        "cloud VMs": "wordslab_vm_info", "VM status": "wordslab_vm_status",
        "VM price": "wordslab_vm_price_usd_per_hour", "VM cost": "wordslab_vm_cost_month_usd",
    },
}


def home_columns() -> dict[str, list[dict]]:
    columns: dict[str, list[dict]] = {title: [] for title, _ in COLUMNS.values()}
    for item in dashboards.load(HOME)["panels"]:
        columns[COLUMNS[item["gridPos"]["x"]][0]].append(item)
    return columns


def test_home_is_three_parts_side_by_side():
    """Three columns of panels each 8 grid units wide (640 px of a 1920 px screen), each headed by
    its part's name, and no row across them."""
    items = dashboards.load(HOME)["panels"]
    assert all(item["type"] != "row" for item in items)
    assert {(item["gridPos"]["x"], item["gridPos"]["w"]) for item in items} == {(0, 8), (8, 8), (16, 8)}
    for title, panels in home_columns().items():
        top = min(panels, key=lambda p: p["gridPos"]["y"])
        assert top["type"] == "text" and top["title"] == title and top["gridPos"]["y"] == 0


def test_each_home_part_links_to_its_dashboard_and_its_admin_pages():
    admin_pages = {"Machine resources": set(),
                   "Development environment": {"/admin/projects/new/", "/admin/projects/", "/admin/models/new/",
                                               "/admin/models/", "/admin/jobs/"},
                   "AI services": {"/admin/endpoints/new/", "/admin/endpoints/", "/admin/external_apis/new/",
                                   "/admin/external_apis/", "/admin/vms/new/", "/admin/vms/",
                                   "/admin/platforms/", "/admin/vm_templates/"}}
    uids = {title: uid for title, uid in COLUMNS.values()}
    for title, panels in home_columns().items():
        (header,) = [p for p in panels if p["type"] == "text"]
        urls = [url for _, url in _MARKDOWN_LINK.findall(header["options"]["content"])]
        # Relative to Grafana's <base href>, keeping the machine and the time range.
        assert f"d/{uids[title]}?var-instance=${{instance}}&${{__url_time_range}}" in urls
        linked = {url.removeprefix("${admin_url}") for url in urls if url.startswith("${admin_url}")}
        assert linked == admin_pages[title]


def test_home_shows_every_spec_field_in_its_part():
    for title, panels in home_columns().items():
        used = dashboards.metrics_used(t["expr"] for p in panels for t in p.get("targets", []))
        missing = {field: metric for field, metric in SPEC_FIELDS[title].items() if metric not in used}
        assert not missing, f"{title} part of the home dashboard lacks {missing}"


def test_every_documented_metric_is_on_a_panel():
    """Each family of docs/metrics.md is shown by at least one panel query, directly or through a
    recording rule, so a field cannot be collected and never displayed."""
    used = dashboards.metrics_used(q.expr for q in dashboards.panel_queries())
    documented = dashboards.documented_metrics()
    assert len(documented) > 90
    assert [name for name in documented if name not in used] == []


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_queries_only_use_defined_variables(path):
    data = dashboards.load(path)
    defined = set(dashboards.variables(data)) | {"__rate_interval", "__interval", "__range"}
    for panel in dashboards.data_panels(data):
        for target in panel["targets"]:
            unknown = dashboards.referenced_variables(target["expr"]) - defined
            assert not unknown, f"{panel['title']}: undefined {unknown} in {target['expr']}"
