"""Alerts end to end on loopback: Prometheus (Debian 2.42) evaluates the project's rules over the
real exporter and a VM's exporter, Alertmanager (Debian 0.25) runs the config the admin rendered
from its receivers, and the notifications reach a webhook, an SMTP server (aiosmtpd) and, through
the admin's relay, an ntfy server. Test notification, firing alerts page and snooze 1 h too."""
from __future__ import annotations

import json
import os
import stat
import urllib.request

import pytest

from admin.alerting.config import config_path
from tests.fakes.loopback import serving
from tests.fakes.vm_exporter import FakeVmExporter
from tests.support.alert_stack import AlertStack, wait_for
from tests.support.alertmanager import SmtpSink, WebhookReceiver

pytestmark = pytest.mark.integration

WEBHOOK_TOKEN = "hook-token-abcdefghijklmnop"
NTFY_TOKEN = "tk_ntfy0123456789abcdef"
SMTP_PASSWORD = "smtp-pass-0123456789"
# Alertmanager's group_wait (30 s) after the rule fires, plus scrapes and rule evaluation.
DELIVERY_TIMEOUT = 90



@pytest.fixture
def stack(tmp_path):
    stack = AlertStack.start(tmp_path, rule_for={"WordslabVmGpuIdle": "5s"})
    yield stack
    stack.close()



def test_vm_idle_alert_reaches_webhook_email_and_ntfy(stack):
    hook, ntfy = WebhookReceiver(), WebhookReceiver()
    vm = FakeVmExporter(utilization=0.0)
    with SmtpSink() as smtp, serving(hook.handler()) as hook_url, serving(ntfy.handler()) as ntfy_url, \
            serving(vm.handler()) as vm_url:
        page = stack.add_receiver(name="hook", kind="webhook", new_url=hook_url + "/alerts", new_token=WEBHOOK_TOKEN)
        assert "Alertmanager reloaded with 1 receiver(s)" in page.text, page.text
        stack.add_receiver(name="mail", kind="email", email_to="me@example.org", email_from="lab@example.org",
                  smarthost=f"127.0.0.1:{smtp.port}", smtp_username="", new_smtp_password=SMTP_PASSWORD,
                  smtp_require_tls="")
        page = stack.add_receiver(name="phone", kind="ntfy", new_url=ntfy_url + "/gpu-alerts", new_token=NTFY_TOKEN)
        assert "Alertmanager reloaded with 3 receiver(s)" in page.text
        # Secrets are stored, shown masked, and the rendered file is owner-only.
        listing = stack.client.get("/admin/alert_receivers/").text
        for secret in (hook_url + "/alerts", WEBHOOK_TOKEN, NTFY_TOKEN, SMTP_PASSWORD, ntfy_url + "/gpu-alerts"):
            assert secret not in listing
        assert stat.S_IMODE(os.stat(config_path(stack.settings)).st_mode) == 0o600

        stack.add_vm("box", vm_url)
        body = wait_for(lambda: next((p["body"] for p in hook.posts
                                   if p["body"]["commonLabels"].get("alertname") == "WordslabVmGpuIdle"), None),
                     DELIVERY_TIMEOUT, "the VM-idle alert at the webhook")
        assert body["status"] == "firing" and body["commonLabels"]["vm"] == "box"
        assert "VM box is running with idle GPUs" in body["alerts"][0]["annotations"]["summary"]
        assert next(p for p in hook.posts if p["body"] is body)["headers"]["Authorization"] == f"Bearer {WEBHOOK_TOKEN}"

        mail = wait_for(lambda: next((m for m in smtp.messages if "WordslabVmGpuIdle" in m["Subject"]), None),
                     15, "the VM-idle email")
        assert mail["To"] == "me@example.org" and "on VM box" in mail["Subject"]
        assert "VM box is running with idle GPUs" in mail.get_payload(decode=True).decode() \
            if not mail.is_multipart() else any("VM box is running" in part.get_payload(decode=True).decode()
                                                for part in mail.walk() if not part.is_multipart())

        pushed = wait_for(lambda: next((p for p in ntfy.posts if "WordslabVmGpuIdle" in p["body"].get("title", "")), None),
                       15, "the VM-idle alert at ntfy, through the admin's relay")
        assert pushed["path"] == "/" and pushed["body"]["topic"] == "gpu-alerts"
        assert pushed["headers"]["Authorization"] == f"Bearer {NTFY_TOKEN}"
        assert "idle GPUs" in pushed["body"]["message"] and pushed["body"]["priority"] == 4

        # The admin lists it; snooze 1 h silences exactly it, through Alertmanager's API.
        page = stack.client.get("/admin/alerts/").text
        assert "WordslabVmGpuIdle" in page and "snooze 1 h" in page
        alerts = json.load(urllib.request.urlopen(f"{stack.alertmanager.url}/api/v2/alerts"))
        idle = next(a for a in alerts if a["labels"]["alertname"] == "WordslabVmGpuIdle")
        page = stack.post("/admin/alerts/snooze/", {"fingerprint": idle["fingerprint"]}, page="/admin/alerts/")
        assert "WordslabVmGpuIdle snoozed for 1 hour" in page.text
        silences = json.load(urllib.request.urlopen(f"{stack.alertmanager.url}/api/v2/silences"))
        active = [s for s in silences if s["status"]["state"] == "active"]
        assert len(active) == 1
        matchers = {m["name"]: m["value"] for m in active[0]["matchers"]}
        assert matchers["alertname"] == "WordslabVmGpuIdle" and matchers["vm"] == "box"
        assert "WordslabVmGpuIdle" not in stack.client.get("/admin/alerts/").text


def test_test_notification_reports_delivery_and_failure(stack):
    hook = WebhookReceiver()
    with serving(hook.handler()) as hook_url:
        stack.add_receiver(name="hook", kind="webhook", new_url=hook_url + "/alerts")
        page = stack.post("/admin/alert_receivers/test/1/", {}, page="/admin/alert_receivers/")
        assert "test notification to hook delivered by Alertmanager (webhook)" in page.text, page.text
        post = next(p for p in hook.posts if p["body"]["commonLabels"]["alertname"] == "WordslabTestNotification")
        assert post["body"]["commonLabels"]["wordslab_receiver"] == "hook"
        hook.status = 500
        page = stack.post("/admin/alert_receivers/test/1/", {}, page="/admin/alert_receivers/")
        assert "test notification to hook failed" in page.text, page.text
        assert hook_url not in page.text


def test_bad_receivers_are_refused_and_change_nothing(stack):
    for fields, message in (
            ({"name": "a b", "kind": "webhook", "new_url": "http://127.0.0.1:1/x"}, "receiver name"),
            ({"name": "s", "kind": "slack", "new_url": "ftp://hooks.slack.com/services/SECRETPART"},
             "the slack URL must be an http:// or https:// URL"),
            ({"name": "n", "kind": "ntfy", "new_url": "https://ntfy.sh/"}, "server and the topic"),
            ({"name": "e", "kind": "email", "email_to": "not-an-address", "email_from": "a@b.c",
              "smarthost": "smtp:25"}, "email to"),
            ({"name": "e", "kind": "email", "email_to": "a@b.c", "email_from": "a@b.c",
              "smarthost": "smtp.example.org"}, "host:port"),
            ({"name": "d", "kind": "discord", "new_url": ""}, "needs its URL")):
        page = stack.add_receiver(**fields)
        assert message in page.text, (fields, page.text[-2000:])
        assert "SECRETPART" not in page.text
    assert "wordslab-none" in config_path(stack.settings).read_text()
    assert "No items" in stack.client.get("/admin/alert_receivers/").text or \
        "There are no items" in stack.client.get("/admin/alert_receivers/").text


def test_a_config_alertmanager_refuses_is_rolled_back(stack):
    from admin.alerting.alertmanager import AlertmanagerError
    from admin.alerting.apply import apply
    from common.store.alerts import AlertReceiver

    stack.add_receiver(name="hook", kind="webhook", new_url="http://127.0.0.1:9/alerts")
    before = config_path(stack.settings).read_text()
    # A row the form would refuse (no address), written behind its back: Alertmanager refuses it.
    with stack.ctx.sessions.begin() as s:
        s.add(AlertReceiver(name="broken", kind="email", email_to="", email_from="a@b.c",
                            smarthost="127.0.0.1:25", smtp_password="pw-0123456789abc"))
    with pytest.raises(AlertmanagerError) as raised:
        apply(stack.ctx.sessions, stack.settings)
    assert "previous config kept" in str(raised.value) and "pw-0123456789abc" not in str(raised.value)
    assert config_path(stack.settings).read_text() == before
    status = json.load(urllib.request.urlopen(f"{stack.alertmanager.url}/api/v2/status"))
    assert "broken" not in status["config"]["original"] and "hook" in before


def test_slack_discord_and_teams_get_their_own_formats(stack):
    """Each test notification goes to its receiver only, in that service's format (Slack and
    Discord by Alertmanager itself, Teams through the admin's relay), to loopback stand-ins."""
    slack, discord, teams = WebhookReceiver(), WebhookReceiver(), WebhookReceiver()
    with serving(slack.handler()) as slack_url, serving(discord.handler()) as discord_url, \
            serving(teams.handler()) as teams_url:
        stack.add_receiver(name="slack", kind="slack", new_url=slack_url + "/services/T0/B0/xyz")
        stack.add_receiver(name="discord", kind="discord", new_url=discord_url + "/api/webhooks/1/abc")
        page = stack.add_receiver(name="teams", kind="msteams", new_url=teams_url + "/webhookb2/x")
        assert "Alertmanager reloaded with 3 receiver(s)" in page.text
        for receiver_id, name, kind in ((1, "slack", "slack"), (2, "discord", "discord"), (3, "teams", "msteams")):
            page = stack.post(f"/admin/alert_receivers/test/{receiver_id}/", {}, page="/admin/alert_receivers/")
            assert f"test notification to {name} delivered by Alertmanager" in page.text, page.text
        [slack_post], [discord_post], [teams_post] = slack.posts, discord.posts, teams.posts
        assert slack_post["path"] == "/services/T0/B0/xyz"
        attachment = slack_post["body"]["attachments"][0]
        assert attachment["title"] == "[FIRING] WordslabTestNotification"
        assert "Test notification from wordslab-dashboard" in attachment["text"]
        embed = discord_post["body"]["embeds"][0]
        assert embed["title"] == "[FIRING] WordslabTestNotification" and "Test notification" in embed["description"]
        card = teams_post["body"]["attachments"][0]["content"]
        assert card["type"] == "AdaptiveCard" and "Test notification from wordslab-dashboard" in card["body"][1]["text"]


@pytest.mark.parametrize("fields", [
    # Python's URL parser takes these; Go's (Alertmanager's) refuses them.
    {"name": "hook2", "kind": "webhook", "new_url": "http://127.0.0.1:9/x%zzSECRETPART"},
    {"name": "slack", "kind": "slack", "new_url": "https://hooks.slack.com/services/%zzSECRETPART"},
    {"name": "mail", "kind": "email", "email_to": "a@b.c", "email_from": "a@b.c", "smarthost": "smtp]:25"},
])
@pytest.mark.parametrize("alertmanager_up", [True, False])
def test_a_receiver_alertmanager_would_refuse_is_refused_by_the_form(stack, fields, alertmanager_up):
    """Refused on save with a clear message, nothing stored, the config file unchanged: even with
    Alertmanager down (its next start would otherwise fail on the file), and other saves still work."""
    from common.store.alerts import AlertReceiver
    from sqlalchemy import select

    stack.add_receiver(name="hook", kind="webhook", new_url="http://127.0.0.1:9/alerts")
    before = config_path(stack.settings).read_text()
    if not alertmanager_up:
        stack.alertmanager.stop()
    page = stack.add_receiver(**fields)
    assert "Alertmanager would refuse this receiver" in page.text, page.text[-3000:]
    assert "SECRETPART" not in page.text
    with stack.ctx.sessions() as s:
        assert s.scalars(select(AlertReceiver.name)).all() == ["hook"]
    assert config_path(stack.settings).read_text() == before
    if alertmanager_up:
        page = stack.add_receiver(name="other", kind="webhook", new_url="http://127.0.0.1:9/other")
        assert "Alertmanager reloaded with 2 receiver(s)" in page.text, page.text[-3000:]


def test_a_receiver_saved_while_alertmanager_is_down_is_in_the_file_it_starts_with(stack):
    """'Connection refused' is not Alertmanager refusing the file: the new config stays written."""
    stack.alertmanager.stop()
    page = stack.add_receiver(name="hook", kind="webhook", new_url="http://127.0.0.1:9/alerts")
    assert "config written; it applies when Alertmanager starts" in page.text, page.text[-3000:]
    assert "previous config kept" not in page.text
    assert "http://127.0.0.1:9/alerts" in config_path(stack.settings).read_text()
