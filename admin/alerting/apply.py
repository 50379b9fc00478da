"""Receivers in the store -> alertmanager.yml -> Alertmanager reloaded.

A config Alertmanager refuses is never left behind: the previous file is put back, so a
restart of Alertmanager still starts.
"""
from __future__ import annotations

import secrets

from sqlalchemy import select
from sqlalchemy.orm import sessionmaker

from common import redact
from common.config import Settings
from common.store.alerts import RELAY_TOKEN_SETTING, AlertReceiver
from common.store.settings import get_setting, set_setting

from admin.alerting import config
from admin.alerting.alertmanager import Alertmanager, AlertmanagerError


def relay_token(sessions: sessionmaker) -> str:
    """The bearer token Alertmanager sends to the admin's relay; generated once, kept in the store."""
    with sessions.begin() as session:
        token = get_setting(session, RELAY_TOKEN_SETTING)
        if not token:
            token = secrets.token_urlsafe(32)
            set_setting(session, RELAY_TOKEN_SETTING, token)
        return token


def scrub(message: str, secret_values: list[str]) -> str:
    """`message` through common.redact, the one scrubbing point, with these secrets remembered
    there (Alertmanager and amtool may quote the line they refused)."""
    redact.remember(*secret_values)
    return redact.scrub(message)


def refusal(sessions: sessionmaker, settings: Settings, receivers: list[AlertReceiver]) -> str | None:
    """Why Alertmanager would refuse the config of these receivers (amtool), scrubbed; None if it loads."""
    token = relay_token(sessions)
    reason = config.check(config.config_path(settings), config.render(receivers, settings, token))
    return None if reason is None else scrub(reason, _secrets(receivers, token))


def _secrets(receivers, token: str) -> list[str]:
    return [v for r in receivers for v in (r.url, r.token, r.smtp_password) if v] + [token]


def apply(sessions: sessionmaker, settings: Settings, *, reload: bool = True) -> str:
    """Render, check (amtool) and write the config, then reload Alertmanager. Returns a message for
    the user; raises AlertmanagerError when the file would be refused (not written), when
    Alertmanager is unreachable (written; applies at its start) or refuses it (restored)."""
    token = relay_token(sessions)
    with sessions() as session:
        receivers = session.scalars(select(AlertReceiver).order_by(AlertReceiver.name)).all()
        rendered = config.render(receivers, settings, token)
        enabled = sum(1 for r in receivers if r.enabled)
        secret_values = _secrets(receivers, token)
    path = config.config_path(settings)
    reason = config.check(path, rendered)
    if reason is not None:
        raise AlertmanagerError(f"Alertmanager would refuse the new config: {scrub(reason, secret_values)} "
                                "(previous config kept)", refused=True)
    previous = path.read_bytes() if path.exists() else None
    config.write(path, rendered)
    if not reload:
        return f"Alertmanager config written ({enabled} receiver(s))"
    try:
        Alertmanager(settings.alertmanager_url).reload()
    except AlertmanagerError as exc:
        refused = exc.refused
        if refused and previous is not None:
            path.write_bytes(previous)
        raise AlertmanagerError(scrub(str(exc), secret_values) + (" (previous config kept)" if refused else
                                            " (config written; it applies when Alertmanager starts)"),
                                refused=refused) from None
    return f"Alertmanager reloaded with {enabled} receiver(s)"
