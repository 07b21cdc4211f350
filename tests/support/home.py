"""The App Home through signed events: opening it, clicking it, what was published."""

from __future__ import annotations

import json
import time

from tests.support.harness import blocks_text


def open_home(steward, user: str, event_id: str | None = None, retry: int | None = None, tab: str = "home"):
    body = {
        "token": "legacy",
        "team_id": "T0ACME",
        "api_app_id": "A0STEWARD",
        "type": "event_callback",
        "event_id": event_id or f"Ev{time.monotonic_ns()}",
        "event_time": int(time.time()),
        "event": {
            "type": "app_home_opened",
            "user": user,
            "channel": "D0" + user[2:],
            "tab": tab,
            "event_ts": f"{time.time():.6f}",
        },
    }
    headers = {"X-Slack-Retry-Num": str(retry), "X-Slack-Retry-Reason": "http_timeout"} if retry else {}
    return steward.post(json.dumps(body).encode(), content_type="application/json", headers=headers)


def published(fake, user: str, count: int = 1, timeout: float = 10.0) -> dict:
    """The Home last published for `user`, once views.publish was called for them `count` times."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        calls = [c for c in fake.of("views.publish") if c.args.get("user_id") == user]
        if len(calls) >= count:
            view = calls[-1].args["view"]
            return json.loads(view) if isinstance(view, str) else view
        time.sleep(0.01)
    raise AssertionError(
        f"views.publish for {user}: {len([c for c in fake.of('views.publish') if c.args.get('user_id') == user])} calls, expected {count}"
    )


def publishes(fake, user: str) -> int:
    return len([c for c in fake.of("views.publish") if c.args.get("user_id") == user])


def text_of(view: dict) -> str:
    return blocks_text({"blocks": view["blocks"]})


def buttons(view: dict) -> list[tuple[str, str]]:
    return [(e["action_id"], e.get("value")) for b in view["blocks"] if b["type"] == "actions" for e in b["elements"]]


def home_click(steward, user: str, action_id: str, value: str):
    view = {"id": "VHOME", "type": "home", "callback_id": "home", "hash": "h0", "blocks": []}
    return steward.click(user, action_id, value, view=view)
