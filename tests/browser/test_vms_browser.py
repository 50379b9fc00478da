"""Cloud VM in headless Chromium against a fake Runpod: configure platform and template, create
the VM (confirmed), stop it, start it again, and see its status and this month's cost move."""
from __future__ import annotations

import re
import time

from playwright.sync_api import expect

from tests.fakes.cloud_providers import API_KEY, FakeRunpod, serve
from tests.support.admin_server import login


def _submit(page):
    page.click("form.admin-form input[type=submit], form.admin-form button[type=submit]")


def _choose(page, selector: str, label: str):
    # Relationship fields are select2 widgets over a hidden <select>.
    page.select_option(selector, label=label, force=True)


def _cost(page) -> float:
    text = page.locator(".vm-cost").inner_text()
    return float(re.sub(r"[^0-9.]", "", text))


def _act(page, action: str, confirm: bool = False):
    form = page.locator(f"form.vm-action[data-action={action}]")
    if confirm:
        form.locator("input.vm-confirm").check()
    form.locator("button").click()
    page.wait_for_load_state()


def test_vm_lifecycle_moves_status_and_cost(admin_server_factory, page, screenshot):
    fake = FakeRunpod()
    with serve(fake) as fake_url:
        server = admin_server_factory()
        login(page, server)

        page.goto(server.url + "/admin/platforms/new/")
        page.fill("#name", "runpod")
        page.select_option("#provider", "runpod.io")
        page.fill("#base_url", fake_url)
        page.fill("#new_api_key", API_KEY)
        _submit(page)
        expect(page.locator("table")).to_contain_text("••••" + API_KEY[-4:])
        assert API_KEY not in page.content()

        page.goto(server.url + "/admin/vm_templates/new/")
        page.fill("#name", "a6000")
        _choose(page, "#platform", "runpod (runpod.io)")
        page.fill("#gpu", "NVIDIA RTX A6000")
        page.fill("#vram_gb", "48")
        page.fill("#vcpus", "8")
        page.fill("#ram_gb", "50")
        # An absurdly dear but allowed rate, so seconds of running show in cents.
        page.fill("#compute_usd_per_hour", "360")
        page.fill("#container_usd_per_gb_month", "0.10")
        page.fill("#volume_usd_per_gb_month", "0.10")
        _submit(page)
        expect(page.locator("table")).to_contain_text("a6000")

        page.goto(server.url + "/admin/vms/new/")
        page.fill("#name", "trainer")
        _choose(page, "#template", "a6000")
        page.fill("#container_gb", "20")
        page.fill("#volume_gb", "100")
        screenshot("vm-form")
        _submit(page)
        page.goto(server.url + "/admin/vms/")
        expect(page.locator(".vm-status")).to_have_text("new")

        _act(page, "create")  # not confirmed: refused, nothing rented
        expect(page.locator(".alert-danger")).to_contain_text("tick the confirmation box")
        assert not fake.instances
        _act(page, "create", confirm=True)
        expect(page.locator(".alert-success")).to_contain_text("create trainer: accepted by runpod.io")
        assert len(fake.instances) == 1
        expect(page.locator(".vm-status")).to_have_text(re.compile("starting|running"))
        screenshot("created")

        time.sleep(1.5)  # let it run: at 360 $/h that is ~0.15 $
        _act(page, "stop")
        expect(page.locator(".vm-status")).to_have_text("stopped")
        first_cost = _cost(page)
        assert first_cost > 0.1
        screenshot("stopped")

        _act(page, "start", confirm=True)
        expect(page.locator(".vm-status")).to_have_text(re.compile("starting|running"))
        time.sleep(1.5)
        _act(page, "stop")
        expect(page.locator(".vm-status")).to_have_text("stopped")
        assert _cost(page) > first_cost + 0.1
        screenshot("cost-moved")

        _act(page, "terminate")  # deletes the volume: refused without the box ticked
        expect(page.locator(".alert-danger")).to_contain_text("Terminate trainer and delete its 100 GB volume")
        assert len(fake.instances) == 1
        _act(page, "terminate", confirm=True)
        expect(page.locator(".vm-status")).to_have_text("terminated")
        assert not fake.instances
