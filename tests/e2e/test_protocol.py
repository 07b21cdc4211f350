"""What reaches POST /slack/events that Slack did not send, or sent oddly: refused, with no side effect."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from urllib.parse import urlencode

from sqlmodel import func, select

from storage.models import Handoff
from tests.support.harness import SECRET, http, sign


def count(db) -> int:
    with db.read() as s:
        return s.exec(select(func.count()).select_from(Handoff)).one()


def test_healthz_and_unknown_paths(steward):
    r = http(steward.url + "/healthz")
    assert r.status == 200 and r.json() == {"ok": True, "database": "up"}
    assert http(steward.url + "/nope").status == 404
    assert http(steward.url + "/slack/events").status == 405


def command_body(text="eng", user="U0ALICE"):
    return urlencode(
        {
            "command": "/handoff",
            "text": text,
            "user_id": user,
            "trigger_id": "t1",
            "team_id": "T0ACME",
            "channel_id": "C0WORK",
        }
    ).encode()


def test_forged_stale_and_unsigned_requests_are_refused(steward, fake, db):
    body = command_body()
    assert steward.post(body, signed=False).status == 401
    assert steward.post(body, headers={"X-Slack-Signature": "v0=" + "0" * 64}).status == 401
    assert steward.post(body, timestamp=int(time.time()) - 305).status == 401
    assert (
        steward.post(body, timestamp=int(time.time()) + 305).status == 401
    )  # 305: int() truncation must not bring it within 300 s
    # Signed with another secret (a forged request).

    assert steward.post(body, signed=False, headers=sign(body, secret="not-the-secret")).status == 401
    # Unsigned garbage is 401 too, never a parse error.
    assert steward.post(b"{not json", content_type="application/json", signed=False).status == 401
    fake.settle(quiet=0.3)
    assert fake.of("views.open") == [] and fake.of("chat.postMessage") == [] and count(db) == 0


def test_signed_garbage_is_a_400_not_a_500(steward, fake):
    logged = len(steward.output())
    for body, ctype in [
        (b"{not json", "application/json"),
        (b"[1, 2]", "application/json"),
        (urlencode({"payload": "{broken"}).encode(), "application/x-www-form-urlencoded"),
        (urlencode({"payload": "[]"}).encode(), "application/x-www-form-urlencoded"),
        (urlencode({"payload": json.dumps({"no": "type"})}).encode(), "application/x-www-form-urlencoded"),
        (b"\xff\xfe\x00", "application/x-www-form-urlencoded"),
        (b"hello=world", "application/x-www-form-urlencoded"),
        # Events API deliveries whose event is not an object, or whose user or id is not text (found by an
        # attack on the App Home: Bolt logged a traceback for each)
        (
            json.dumps({"type": "event_callback", "event_id": "Ev1", "event": "app_home_opened"}).encode(),
            "application/json",
        ),
        (json.dumps({"type": "event_callback", "event_id": "Ev2", "event": [1]}).encode(), "application/json"),
        (
            json.dumps(
                {
                    "type": "event_callback",
                    "event_id": "Ev3",
                    "event": {"type": "app_home_opened", "user": 7, "tab": "home"},
                }
            ).encode(),
            "application/json",
        ),
        (
            json.dumps(
                {
                    "type": "event_callback",
                    "event_id": 4,
                    "event": {"type": "app_home_opened", "user": "U0BOB", "tab": "home"},
                }
            ).encode(),
            "application/json",
        ),
        (
            json.dumps({"type": "event_callback", "event_id": "Ev5", "event": {"user": "U0BOB"}}).encode(),
            "application/json",
        ),
    ]:
        r = steward.post(body, content_type=ctype)
        assert r.status == 400, (body, r.status, r.raw)
    assert steward.post(b"x" * (300 * 1024)).status == 413
    assert "Traceback" not in steward.output()[logged:]


def test_signed_payloads_with_odd_shapes_get_no_5xx(steward, fake, db):
    odd = [
        {
            "type": "block_actions",
            "user": {"id": "U0BOB"},
            "actions": [{"action_id": "handoff_accept", "value": "not-a-number"}],
            "channel": {"id": "C0ENG"},
        },
        {
            "type": "block_actions",
            "user": {"id": "U0BOB"},
            "actions": [{"action_id": "handoff_accept", "value": "999999"}],
            "channel": {"id": "C0ENG"},
        },
        {
            "type": "block_actions",
            "user": {"id": "U0BOB"},
            "actions": [{"action_id": "handoff_accept"}],
            "channel": {"id": "C0ENG"},
        },
        {
            "type": "view_submission",
            "user": {"id": "U0BOB"},
            "view": {
                "type": "modal",
                "id": "V0X",
                "callback_id": "handoff_sendback_submit",
                "private_metadata": "garbage",
                "state": {"values": {}},
            },
        },
        {
            "type": "view_submission",
            "user": {"id": "U0BOB"},
            "view": {
                "type": "modal",
                "id": "V0X",
                "callback_id": "handoff_resubmit_submit",
                "private_metadata": "x",
                "state": {"values": {}},
            },
        },
        {
            "type": "view_submission",
            "user": {"id": "U0ALICE"},
            "view": {
                "type": "modal",
                "id": "V0X",
                "callback_id": "handoff_submit",
                "private_metadata": "",
                "state": {"values": {}},
            },
        },
        {"type": "block_actions", "user": {"id": "U0BOB"}, "actions": [{"action_id": "unknown_action", "value": "1"}]},
        {"type": "shortcut", "user": {"id": "U0BOB"}, "callback_id": "nothing"},
    ]
    for payload in odd:
        r = steward.interact(payload)
        assert r.status < 500, (payload, r.status, r.raw)
    fake.settle(quiet=0.3)
    assert count(db) == 0
    # Each odd click was answered privately, never with a trace.
    for call in fake.of("chat.postEphemeral") + fake.of("chat.postMessage"):
        assert "Traceback" not in json.dumps(call.args)
    # A submission that names nothing gets field errors back, not a closed modal.
    r = steward.interact(odd[5])
    assert r.json()["response_action"] == "errors" and set(r.json()["errors"]) >= {"to_team", "title"}


def test_malformed_signature_headers_are_401_not_500(steward, fake, db):
    """Only a plain ASCII decimal timestamp (at most 12 digits) within 300 s and an ASCII signature can
    pass; anything else is refused as unsigned, never a 500 (str.isdigit() and int() accept more)."""
    body = command_body()
    now = int(time.time())
    signed = sign(body)
    odd_timestamps = [
        "²",  # str.isdigit() is true for it, int() refuses it
        "¹²³",
        "1" * 5000,  # int() refuses more than 4300 digits
        "9" * 13,
        str(now).zfill(13),  # in the window, but 13 digits
        f"+{now}",
        f"{now}.0",
        f"-{now}",
        f"{now:_}",
        "",
    ]
    for timestamp in odd_timestamps:
        # Signed over the odd timestamp itself, so only the timestamp's shape can refuse it.
        mac = hmac.new(SECRET.encode(), f"v0:{timestamp}:".encode() + body, hashlib.sha256).hexdigest()
        headers = {"X-Slack-Request-Timestamp": timestamp, "X-Slack-Signature": "v0=" + mac}
        r = steward.post(body, signed=False, headers=headers)
        assert r.status == 401, (timestamp[:20], r.status, r.raw[:200])
    for signature in ["v0=" + "²" * 64, signed["X-Slack-Signature"][:-1] + "é", "é", ""]:
        r = steward.post(body, signed=False, headers={**signed, "X-Slack-Signature": signature})
        assert r.status == 401, (signature, r.status, r.raw[:200])
    # Raw non-ASCII bytes (UTF-8) in both headers.
    r = steward.post(
        body,
        signed=False,
        headers={"X-Slack-Request-Timestamp": "١٧".encode(), "X-Slack-Signature": ("v0=" + "٣" * 64).encode()},
    )
    assert r.status == 401, (r.status, r.raw[:200])
    # The well-formed request still passes (and its modal opens after the ack: wait for it, so it does
    # not land in the next test).
    assert steward.post(body, signed=False, headers=signed).status == 200
    assert len(fake.wait("views.open")) == 1
    fake.settle(quiet=0.3)
    assert count(db) == 0


def test_ssl_check_gets_an_empty_200(steward, fake, db):
    """Slack's ssl_check form posts (signed, though Bolt answers them either way) get 200 and no body."""
    body = urlencode({"ssl_check": "1", "token": "legacy"}).encode()
    for signed in (True, False):
        r = steward.post(body, signed=signed)
        assert (r.status, r.raw) == (200, b""), (signed, r.status, r.raw)
    fake.settle(quiet=0.3)
    assert fake.calls == [] and count(db) == 0


def test_url_verification_echoes_the_challenge(steward, fake):
    body = json.dumps({"type": "url_verification", "challenge": "abc", "token": "x"}).encode()
    r = steward.post(body, content_type="application/json")
    assert r.status == 200 and r.json() == {"challenge": "abc"}, (r.status, r.raw)
    assert steward.post(body, content_type="application/json", signed=False).status == 401
    r = steward.post(body, content_type="application/json", timestamp=int(time.time()) - 400)
    assert r.status == 401


def test_body_limits_keep_their_answers(steward, fake):
    assert steward.post(b"x" * (256 * 1024 + 1)).status == 413
    assert steward.post(b"x" * (256 * 1024 + 1), signed=False).status == 413
    assert steward.post(command_body(), signed=False).status == 401
    assert steward.post(b"ssl_check=0", content_type="application/x-www-form-urlencoded").status == 400


def test_a_command_that_mentions_payload_is_still_a_command(steward, fake):
    """Bolt reads any form containing the text "payload" as interactivity; Steward mends that."""
    r = steward.command("U0ALICE", "payload")
    assert r.status == 200 and "There is no team or command 'payload'" in json.dumps(r.json())
    r = steward.command("U0ALICE", "list", channel="C0PAYLOAD")
    assert r.status == 200 and r.json()["response_type"] == "ephemeral"
