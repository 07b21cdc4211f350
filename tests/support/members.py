"""Team membership: organisations, the refresh against the fake Slack, what it recorded."""

from __future__ import annotations

import json
import time
from datetime import datetime

from slack_sdk import WebClient
from sqlmodel import select

from handlers import members as slack_members
from storage.models import MemberEvent, Outbox
from tests.support.harness import TOKEN

NOW = datetime(2026, 11, 10, 9)


def org(**teams) -> dict:
    return {
        "organization": {"name": "Acme", "digest_channel": "C0SYNC"},
        "teams": [
            {"id": tid, "name": tid.title(), "channel": f"C0{tid.upper()}", **spec} for tid, spec in teams.items()
        ],
        "boundaries": [{"from": "ops", "to": "qa", "steward": "U0STEW", "criteria": ["Runbook"]}],
    }


def client(fake) -> WebClient:
    return WebClient(token=TOKEN, base_url=fake.url)


def refresh(db, cfg, fake, now=NOW, patience=None) -> tuple[list[str], list[str]]:
    said = []
    keys = slack_members.refresh(db, cfg, client(fake), now, said.append, patience)
    return keys, said


def events(db) -> list[tuple]:
    with db.read() as s:
        return [
            (e.team, e.user_id, e.kind, e.source, e.baseline)
            for e in s.exec(select(MemberEvent).order_by(MemberEvent.id))
        ]


def welcomes(db) -> list[str]:
    with db.read() as s:
        return sorted(k for k in s.exec(select(Outbox.key).where(Outbox.key.like("welcome:%"))))


def people(fake, ids) -> None:
    for u in ids:
        fake.users[u] = {"name": u.lower()}


def joined_event(user: str, channel: str, event_id: str) -> bytes:
    return json.dumps(
        {
            "token": "legacy",
            "team_id": "T0ACME",
            "api_app_id": "A0STEWARD",
            "type": "event_callback",
            "event_id": event_id,
            "event_time": int(time.time()),
            "event": {
                "type": "member_joined_channel",
                "user": user,
                "channel": channel,
                "channel_type": "C",
                "team": "T0ACME",
                "event_ts": f"{time.time():.6f}",
            },
        }
    ).encode()
