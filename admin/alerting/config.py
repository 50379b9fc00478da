"""alertmanager.yml rendered from the receivers in the store, written where Alertmanager reads it.

Routing suits one person: alerts of the same name on the same machine (and VM) form one
notification, sent 30 s after the first fires, repeated every 4 h while they fire. Test
alerts (label wordslab_receiver) go at once, to the one receiver named, or to all.

Alertmanager integrations used natively: email_configs, webhook_configs, slack_configs,
discord_configs (>= 0.25). Microsoft Teams (msteams_configs only since 0.26; Debian 12 ships
0.25) and ntfy (no integration) go to the admin's relay as webhooks, authenticated by a
bearer token, and the relay reformats them (admin/alerting/relay.py).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Iterable

import yaml

from common import redact
from common.config import Settings
from common.store.alerts import RELAYED_KINDS, AlertReceiver

ALL = "wordslab-all"
NOBODY = "wordslab-none"
GROUP_BY = ["alertname", "instance", "vm"]
TIMINGS = {"group_wait": "30s", "group_interval": "5m", "repeat_interval": "4h"}
SUBJECT = '[{{ .Status | toUpper }}] {{ .CommonLabels.alertname }}{{ with .CommonLabels.vm }} on VM {{ . }}{{ end }}'
TEXT = ('{{ range .Alerts }}{{ .Annotations.summary }}\n{{ .Annotations.description }}\n\n{{ end }}')


def config_path(settings: Settings) -> Path:
    """WORDSLAB_ALERTMANAGER_CONFIG, else <state dir>/alertmanager/alertmanager.yml."""
    return settings.alertmanager_config or Path(settings.state_dir) / "alertmanager" / "alertmanager.yml"


def relay_url(settings: Settings, receiver: AlertReceiver) -> str:
    return f"{settings.admin_url.rstrip('/')}/alerts-relay/{receiver.id}"


def _integration(receiver: AlertReceiver, settings: Settings, relay_token: str) -> tuple[str, dict]:
    """(Alertmanager config key, one entry of it) for a receiver."""
    resolved = bool(receiver.send_resolved)
    if receiver.kind == "email":
        entry = {"to": receiver.email_to, "from": receiver.email_from, "smarthost": receiver.smarthost,
                 "require_tls": bool(receiver.smtp_require_tls), "send_resolved": resolved,
                 "headers": {"Subject": SUBJECT}, "text": TEXT}
        if receiver.smtp_username:
            entry["auth_username"] = receiver.smtp_username
            entry["auth_password"] = receiver.smtp_password
        return "email_configs", entry
    if receiver.kind in RELAYED_KINDS:
        return "webhook_configs", {"url": relay_url(settings, receiver), "send_resolved": resolved,
                                   "http_config": {"authorization": {"credentials": relay_token}}}
    if receiver.kind == "webhook":
        entry = {"url": receiver.url, "send_resolved": resolved}
        if receiver.token:
            entry["http_config"] = {"authorization": {"credentials": receiver.token}}
        return "webhook_configs", entry
    if receiver.kind == "slack":
        return "slack_configs", {"api_url": receiver.url, "send_resolved": resolved,
                                 "title": SUBJECT, "text": TEXT}
    if receiver.kind == "discord":
        return "discord_configs", {"webhook_url": receiver.url, "send_resolved": resolved,
                                   "title": SUBJECT, "message": TEXT}
    raise ValueError(f"unknown receiver kind {receiver.kind!r}")


def _receiver(name: str, receivers: Iterable[AlertReceiver], settings: Settings, token: str) -> dict:
    out: dict = {"name": name}
    for receiver in receivers:
        key, entry = _integration(receiver, settings, token)
        out.setdefault(key, []).append(entry)
    return out


def render(receivers: Iterable[AlertReceiver], settings: Settings, relay_token: str) -> dict:
    """The whole Alertmanager config as a dict: one receiver with every enabled integration
    (the default route), plus one per receiver for its test notifications."""
    enabled = [r for r in receivers if r.enabled]
    # Each test alert (unique test_id label) is its own group ("..."), sent at once.
    test = {"group_by": ["..."], "group_wait": "0s"}
    test_routes = [{"receiver": f"test-{r.id}", "matchers": [f'wordslab_receiver="{r.name}"'], **test}
                   for r in enabled]
    test_all = {"receiver": ALL if enabled else NOBODY, **test,
                "matchers": ['alertname="WordslabTestNotification"']}
    return {
        "route": {"receiver": ALL if enabled else NOBODY, "group_by": GROUP_BY, **TIMINGS,
                  "routes": test_routes + [test_all]},
        "receivers": [{"name": NOBODY}]
        + ([_receiver(ALL, enabled, settings, relay_token)] if enabled else [])
        + [_receiver(f"test-{r.id}", [r], settings, relay_token) for r in enabled],
    }


def write(path: Path, config: dict) -> None:
    """Atomically, owner-only (it holds webhook URLs and the SMTP password)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "w") as fh:
        fh.write("# Written by wordslab-admin from its alert receivers: edit them in the admin (Alerts menu).\n")
        yaml.safe_dump(config, fh, sort_keys=False)
    os.replace(tmp, path)


def check(path: Path, config: dict) -> str | None:
    """Alertmanager's own verdict on `config` before it is used (`amtool check-config`, from the
    same Debian package): None when it loads, else amtool's reason (may quote secrets: scrub it).
    None too when amtool is not installed (compose's admin image): the reload is the check there.
    The file is written owner-only beside `path` and removed."""
    amtool = shutil.which("amtool")
    if amtool is None:
        return None
    candidate = path.with_name(path.name + ".check.yml")
    write(candidate, config)
    try:
        result = subprocess.run([amtool, "check-config", str(candidate)], capture_output=True, text=True,
                                timeout=30, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return None
    finally:
        candidate.unlink(missing_ok=True)
    if result.returncode == 0:
        return None
    lines = [line.strip() for line in (result.stdout + result.stderr).splitlines()]
    reason = next((line for line in lines if "FAILED" in line or "error" in line.lower()), None)
    return redact.excerpt((reason or "amtool check-config failed").replace(str(candidate), "alertmanager.yml"), 400)
