"""Every admin page at the two screen widths users have (1366 px laptops, 1920 px desktops):
a full-page screenshot of each, and no action button that overflows the window or is clipped by
a scrolling container (the Projects table once hid its Delete button at 1366 px).

Pages are found by following the admin's own menu (and each list's Create link), filled with
rows whose names, paths and URLs are as long as real ones, so a page added later is covered too.
"""
from __future__ import annotations

import re
import time
from pathlib import Path

from common.store.services import Endpoint, ExternalApi
from common.store.vms import HostingPlatform, Vm, VmTemplate
from tests.browser.conftest import SCREENSHOTS
from tests.support.admin_server import login
from tests.support.env import free_port, wordslab_env
from tests.support.git_repos import clone, commit, make_remote

WIDTHS = {1366: 768, 1920: 1080}
LONG = "a-project-with-the-long-name-people-give-their-experiments"

# Buttons (and links styled as buttons) whose right edge is past the window, or past the visible
# box of an ancestor that clips or scrolls its content.
OVERFLOWING_BUTTONS = """() => {
  const width = document.documentElement.clientWidth;
  const found = [];
  for (const el of document.querySelectorAll('button, a.btn, input[type=submit]')) {
    const r = el.getBoundingClientRect();
    if (r.width === 0 || r.height === 0 || getComputedStyle(el).visibility === 'hidden') continue;
    let clipped = r.right > width + 1 || r.left < -1;
    for (let a = el.parentElement; a && !clipped; a = a.parentElement) {
      const style = getComputedStyle(a);
      if (/(hidden|auto|scroll|clip)/.test(style.overflowX)) {
        const box = a.getBoundingClientRect();
        clipped = r.right > box.right + 1 || r.left < box.left - 1;
      }
    }
    if (clipped) found.push((el.id || el.textContent.trim() || el.outerHTML.slice(0, 60)) +
                            ` (right ${Math.round(r.right)} px of ${width})`);
  }
  return found;
}"""


def _fill(root: Path, server) -> None:
    with server.sessions().begin() as s:
        # Its API on a closed loopback port: the admin's status thread never reaches the real one.
        platform = HostingPlatform(name="runpod-main", provider="runpod.io",
                                   base_url=f"http://127.0.0.1:{free_port()}")
        template = VmTemplate(name="rtx-a6000-48gb-secure-cloud", platform=platform, gpu="NVIDIA RTX A6000",
                              gpu_count=1, vram_gb=48, vcpus=16, ram_gb=62, compute_usd_per_hour=0.49,
                              container_usd_per_gb_month=0.1, volume_usd_per_gb_month=0.07)
        s.add_all([platform, template,
                   Vm(name="fine-tuning-llama-3-8b-experiment", template=template, container_gb=50, volume_gb=200,
                      status="running", terminal_url="https://abcdefgh12345-8888.proxy.runpod.net/terminals/1",
                      dashboard_url="https://abcdefgh12345-8888.proxy.runpod.net/", last_started_at=time.time(),
                      # Autostop's countdown, its note and "keep running" sit in the status cell.
                      autostop_idle_minutes=30, autostop_at=time.time() + 720,
                      autostop_note="GPU at 63 % within the last 30 min"),
                   Endpoint(name="qwen3-coder-30b-a3b-instruct", model="Qwen/Qwen3-Coder-30B-A3B-Instruct",
                            server="vllm", api_type="openai", service_type="LLM", internal_port=8123,
                            base_url="http://127.0.0.1:8123/v1", status="error",
                            last_error="cannot run 'vllm': No such file or directory (is vLLM installed?)"),
                   ExternalApi(name="openrouter-main-account", provider="openrouter", api_type="openai",
                               # Probed by the admin: a closed loopback port, not the real site.
                               base_url=f"http://127.0.0.1:{free_port()}/api/v1", api_key_var="OPENROUTER_API_KEY",
                               quota_description="$20 monthly limit on the key, 200 requests a minute")])


def _workspace(root: Path) -> None:
    workspace = Path(wordslab_env(root)["WORDSLAB_WORKSPACE"])
    workspace.mkdir(parents=True, exist_ok=True)
    remote = make_remote(root / "remotes" / "github.com" / "some-organization-name", LONG,
                         {"README.md": "# long\n"})
    repo = clone(str(remote), workspace / LONG)
    commit(repo, "notebook.ipynb", "{}\n", "an unpushed commit")
    (repo / "draft.py").write_text("print('unsaved')\n")


def _pages(page, base: str) -> list[str]:
    """Admin pages reachable from the menu, and each list page's Create form."""
    page.goto(base + "/admin/")
    hrefs = page.eval_on_selector_all("nav a[href^='/admin'], #grafana-links a, .nav-tabs a[href^='/admin']",
                                      "els => els.map(e => e.getAttribute('href'))")
    pages = {h.split("?")[0] for h in hrefs if h.startswith("/admin") and "logout" not in h}
    for listed in sorted(pages):
        page.goto(base + listed)
        pages.update(h.split("?")[0] for h in page.eval_on_selector_all(
            "a[href$='/new/'], a[href*='/new/?']", "els => els.map(e => e.getAttribute('href'))")
            if h.startswith("/admin"))
    return sorted(pages)


def test_every_admin_page_at_1366_and_1920_px_keeps_its_buttons_on_screen(admin_server_factory, chromium, tmp_path):
    root = tmp_path / "vm"
    _workspace(root)
    server = admin_server_factory(root=root)
    _fill(root, server)
    out = SCREENSHOTS / "admin-pages"
    out.mkdir(parents=True, exist_ok=True)
    problems = {}
    checked = []
    for width, height in WIDTHS.items():
        context = chromium.new_context(viewport={"width": width, "height": height})
        page = context.new_page()
        page.set_default_timeout(15_000)
        try:
            login(page, server)
            pages = _pages(page, server.url)
            for path in pages:
                page.goto(server.url + path)
                page.wait_for_load_state("networkidle")
                name = re.sub(r"[^A-Za-z0-9]+", "-", path.strip("/")) or "admin"
                page.screenshot(path=str(out / f"{name}--{width}.png"), full_page=True)
                offending = page.evaluate(OVERFLOWING_BUTTONS)
                if offending:
                    problems[f"{path} at {width} px"] = offending
                checked.append((path, width))
        finally:
            context.close()
    paths = {p for p, _ in checked}
    assert {"/admin/", "/admin/projects/", "/admin/projects/new/", "/admin/models/", "/admin/models/new/",
            "/admin/endpoints/", "/admin/endpoints/new/", "/admin/external_apis/", "/admin/external_apis/new/",
            "/admin/vms/", "/admin/vms/new/", "/admin/vm_templates/", "/admin/platforms/",
            "/admin/jobs/"} <= paths, paths
    assert problems == {}, problems
