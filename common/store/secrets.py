"""The API keys stored in the DB, for common.redact to mask wherever they are echoed."""
from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from common.store.alerts import AlertReceiver
from common.store.services import ExternalApi
from common.store.vms import HostingPlatform


def stored_secrets(session: Session) -> list[str]:
    """Every stored API and admin key (external APIs, hosting platforms) and alert receiver
    secret (webhook URL, token, SMTP password); [] before the tables exist."""
    found: list[str] = []
    try:
        for api_key, admin_key in session.execute(select(ExternalApi.api_key, ExternalApi.admin_key)):
            found += [api_key, admin_key]
        found += session.scalars(select(HostingPlatform.api_key)).all()
        # A webhook URL (Slack, Teams, Discord) is itself the credential.
        for url, token, password in session.execute(
                select(AlertReceiver.url, AlertReceiver.token, AlertReceiver.smtp_password)):
            found += [url, token, password]
    except OperationalError as exc:
        if "no such table" not in str(exc):
            raise
    return [key for key in found if key]
