"""Where alert notifications go: the receivers the admin renders into Alertmanager's config.

Secret parts (webhook URLs, which carry their token, the SMTP password, bearer tokens) are
written by the admin only, shown masked, and never exported: the exporter does not read
this table.
"""
from __future__ import annotations

from sqlalchemy import Boolean, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from common.store.db import Base

# Alertmanager's own integrations where it has one (0.25, Debian 12's, has no msteams_configs);
# "msteams" and "ntfy" go through the admin's relay (admin/alerting/relay.py).
RECEIVER_KINDS = ("email", "webhook", "slack", "discord", "msteams", "ntfy")
RELAYED_KINDS = ("msteams", "ntfy")

# Settings keys (common.store.settings).
RELAY_TOKEN_SETTING = "alert_relay_token"
BUDGET_STOP_SETTING = "budget_stop_all_vms"


class AlertReceiver(Base):
    __tablename__ = "alert_receivers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    kind: Mapped[str] = mapped_column(String(20))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    send_resolved: Mapped[bool] = mapped_column(Boolean, default=True)
    # webhook/slack/discord/msteams: the incoming-webhook URL; ntfy: server + topic
    # (https://ntfy.sh/my-topic). A secret: whoever has it can post.
    url: Mapped[str] = mapped_column(Text, default="")
    # webhook/ntfy: optional bearer token sent with each post.
    token: Mapped[str] = mapped_column(Text, default="")
    # email only.
    email_to: Mapped[str] = mapped_column(String(300), default="")
    email_from: Mapped[str] = mapped_column(String(300), default="")
    smarthost: Mapped[str] = mapped_column(String(300), default="")  # host:port
    smtp_username: Mapped[str] = mapped_column(String(300), default="")
    smtp_password: Mapped[str] = mapped_column(Text, default="")
    smtp_require_tls: Mapped[bool] = mapped_column(Boolean, default=True)

    def __str__(self) -> str:
        return f"{self.name} ({self.kind})"
