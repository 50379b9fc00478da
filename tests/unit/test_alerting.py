"""Alert delivery pieces without the whole stack: the rendered alertmanager.yml passes Debian's
own `amtool check-config` for every receiver kind, the relay (Teams/ntfy) checks its token and
never echoes a receiver's URL, and the firing-alerts page survives Alertmanager being down."""
import shutil
import subprocess

import pytest
import yaml

from admin.alerting import config
from common.config import Settings
from common.store.alerts import RELAY_TOKEN_SETTING, AlertReceiver
from common.store.settings import get_setting
from tests.fakes.loopback import serving
from tests.support.admin import csrf_from, logged_in_client, make_admin_app
from tests.support.alertmanager import WebhookReceiver
from tests.support.env import free_port

AMTOOL = shutil.which("amtool")
SLACK = "https://hooks.slack.com/services/T000/B000/SECRETSECRET"


def _receivers():
    return [
        AlertReceiver(id=1, name="mail", kind="email", enabled=True, send_resolved=True, email_to="me@example.org",
                      email_from="lab@example.org", smarthost="smtp.example.org:587", smtp_username="me",
                      smtp_password="pw-123456789", smtp_require_tls=True, url="", token=""),
        AlertReceiver(id=2, name="hook", kind="webhook", enabled=True, send_resolved=False,
                      url="https://example.org/hook", token="tok-abcdefghijkl"),
        AlertReceiver(id=3, name="slack", kind="slack", enabled=True, send_resolved=True, url=SLACK, token=""),
        AlertReceiver(id=4, name="discord", kind="discord", enabled=True, send_resolved=True,
                      url="https://discord.com/api/webhooks/1/abc", token=""),
        AlertReceiver(id=5, name="teams", kind="msteams", enabled=True, send_resolved=True,
                      url="https://example.webhook.office.com/webhookb2/x", token=""),
        AlertReceiver(id=6, name="phone", kind="ntfy", enabled=True, send_resolved=True,
                      url="https://ntfy.sh/topic", token=""),
        AlertReceiver(id=7, name="off", kind="slack", enabled=False, send_resolved=True, url=SLACK, token=""),
    ]


def test_rendered_config_passes_amtool_for_every_kind(tmp_path):
    assert AMTOOL, "amtool (Debian package prometheus-alertmanager) is needed to validate the config"
    settings = Settings.from_env({"WORDSLAB_ADMIN_URL": "http://127.0.0.1:9878"})
    rendered = config.render(_receivers(), settings, "relay-token-xyz")
    path = tmp_path / "alertmanager.yml"
    config.write(path, rendered)
    result = subprocess.run([AMTOOL, "check-config", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    everyone = next(r for r in rendered["receivers"] if r["name"] == config.ALL)
    assert {k for k in everyone if k.endswith("_configs")} == {
        "email_configs", "webhook_configs", "slack_configs", "discord_configs"}
    relayed = [w["url"] for w in everyone["webhook_configs"] if "alerts-relay" in w["url"]]
    assert relayed == ["http://127.0.0.1:9878/alerts-relay/5", "http://127.0.0.1:9878/alerts-relay/6"]
    assert len(everyone["slack_configs"]) == 1  # the disabled one is left out
    assert rendered["route"]["group_by"] == ["alertname", "instance", "vm"]
    assert (rendered["route"]["group_wait"], rendered["route"]["repeat_interval"]) == ("30s", "4h")


def test_no_receiver_renders_a_valid_do_nothing_config(tmp_path):
    rendered = config.render([], Settings.from_env({}), "t")
    assert rendered["route"]["receiver"] == config.NOBODY
    assert yaml.safe_load(yaml.safe_dump(rendered))["receivers"] == [{"name": config.NOBODY}]


@pytest.fixture
def app(vm_env):
    env = {**vm_env, "WORDSLAB_ALERTMANAGER_URL": f"http://127.0.0.1:{free_port()}",
           "WORDSLAB_VM_STATUS_INTERVAL_SECONDS": "0"}
    return make_admin_app(env, view_modules=("alerts",))


def _relay_token(app) -> str:
    with app.extensions["wordslab"].sessions() as s:
        return get_setting(s, RELAY_TOKEN_SETTING)


PAYLOAD = {"status": "firing", "commonLabels": {"alertname": "WordslabVmGpuIdle", "vm": "box"},
           "alerts": [{"status": "firing", "labels": {"alertname": "WordslabVmGpuIdle"},
                       "annotations": {"summary": "VM box is running with idle GPUs", "description": "Stop it."}}]}


def test_relay_posts_a_teams_card_and_checks_its_token(app):
    teams = WebhookReceiver()
    client = logged_in_client(app)
    with serving(teams.handler()) as url:
        token = csrf_from(client.get("/admin/alert_receivers/new/").text)
        page = client.post("/admin/alert_receivers/new/", follow_redirects=True, data={
            "csrf_token": token, "name": "teams", "kind": "msteams", "enabled": "y", "new_url": url + "/webhookb2/x"})
        assert "config written" in page.text or "did not answer" in page.text  # no Alertmanager here
        relay = app.test_client()  # Alertmanager has no session and no CSRF token
        assert relay.post("/alerts-relay/1", json=PAYLOAD, headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert relay.post("/alerts-relay/1", json=PAYLOAD).status_code == 401
        good = {"Authorization": f"Bearer {_relay_token(app)}"}
        assert relay.post("/alerts-relay/9", json=PAYLOAD, headers=good).status_code == 404
        assert relay.post("/alerts-relay/1", json=PAYLOAD, headers=good).status_code == 200
        card = teams.posts[-1]["body"]["attachments"][0]["content"]
        assert teams.posts[-1]["path"] == "/webhookb2/x"
        assert card["body"][0]["text"] == "[FIRING] WordslabVmGpuIdle on VM box"
        assert "VM box is running with idle GPUs\nStop it." in card["body"][1]["text"]
        teams.status = 500
        failed = relay.post("/alerts-relay/1", json=PAYLOAD, headers=good)
        assert failed.status_code == 502 and url not in failed.text and "msteams answered HTTP 500" in failed.text
        assert url not in client.get("/admin/alert_receivers/").text


def test_firing_alerts_page_says_when_alertmanager_is_down(app):
    page = logged_in_client(app).get("/admin/alerts/")
    assert page.status_code == 200 and "did not answer" in page.text and 'id="alertmanager-error"' in page.text
