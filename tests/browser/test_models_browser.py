"""Models admin in headless Chromium: download from the fake Ollama, watch the job, see the model in
the list and in the real exporter's /metrics, delete it (refused until confirmed)."""
from playwright.sync_api import expect

from tests.fakes.ollama_server import fake_ollama, sample_state
from tests.support.admin_server import login
from tests.support.env import wordslab_env
from tests.support.metrics import exporter_metrics_containing


def test_download_list_metrics_and_delete(admin_server_factory, page, screenshot, tmp_path):
    root = tmp_path / "vm"
    state = sample_state(models_dir=wordslab_env(root)["OLLAMA_MODELS"])
    state.pull_delay = 0.2  # slow enough to see the job's progress bar move
    with fake_ollama(state) as ollama:
        server = admin_server_factory(env={"OLLAMA_API_BASE": ollama.base_url}, root=root)
        login(page, server)
        page.goto(server.url + "/admin/models/")
        expect(page.locator('tr.model-row[data-model="qwen3:8b-32k"]')).to_be_visible()
        page.click("#download-model")
        page.select_option("#provider", "ollama")
        page.fill("#model", "tinyllama")
        screenshot("download-form")
        page.click("#start-download")

        expect(page.locator(".model-job .wl-job")).to_be_visible()
        screenshot("download-running")
        row = page.locator('tr.model-row[data-model="tinyllama:latest"]')
        expect(row).to_be_visible(timeout=30_000)  # jobs.js reloads the page when the job ends
        expect(row).to_contain_text("Q4_K_M")
        screenshot("downloaded")

        body = exporter_metrics_containing(server.env, tmp_path, 'model="tinyllama:latest"')
        assert 'wordslab_model_info{model="tinyllama:latest",model_type="LLM"' in body
        assert 'wordslab_source_refresh_success{source="models_ollama"} 1.0' in body

        row.locator("a.model-delete").click()
        expect(page.locator("#delete-description")).to_contain_text("the Ollama model tinyllama:latest")
        page.click("#confirm-delete button[type=submit]")  # box not ticked: refused
        expect(page.locator("#delete-error")).to_contain_text("not deleted")
        assert "tinyllama:latest" in ollama.state.models
        screenshot("delete-refused")
        page.check("#confirm-delete input[name=confirm]")
        page.click("#confirm-delete button[type=submit]")
        expect(page.locator('tr.model-row[data-model="tinyllama:latest"]')).to_have_count(0)
        expect(page.locator('tr.model-row[data-model="qwen3:8b"]')).to_be_visible()
        assert "tinyllama:latest" not in ollama.state.models
        screenshot("deleted")
