"""The fake Slack Web API itself: its message store, history, faults and rate limits, driven through a real
slack_sdk WebClient (no retries, so every answer is seen as it was given)."""

from __future__ import annotations

import http.client
import json
import threading
import time
import urllib.request
from urllib.parse import urlencode, urlsplit

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler
from slack_sdk.models.metadata import Metadata

from tests.support.slack_fake import FakeSlack

TOKEN = "xoxb-test"
BLOCKS = [{"type": "section", "text": {"type": "mrkdwn", "text": "*card*"}}]


@pytest.fixture(scope="module")
def _server():
    fake = FakeSlack().start()
    yield fake
    fake.stop()


@pytest.fixture
def fake(_server) -> FakeSlack:
    _server.reset()
    yield _server
    _server.reset()


@pytest.fixture
def client(fake) -> WebClient:
    return WebClient(base_url=fake.url, token=TOKEN, retry_handlers=[])


def meta(key, **payload) -> dict:
    return {"event_type": "steward_post", "event_payload": {"key": key, **payload}}


def refused(call) -> SlackApiError:
    with pytest.raises(SlackApiError) as info:
        call()
    return info.value


def post(client, channel="C0ENG", text="hello", **kwargs) -> str:
    return client.chat_postMessage(channel=channel, text=text, **kwargs)["ts"]


# -- the message store ------------------------------------------------------------------------------
def test_a_post_is_stored_with_its_metadata_from_a_json_body(fake, client):
    r = client.chat_postMessage(channel="C0ENG", text="card", blocks=BLOCKS, metadata=meta("k1", n=1))
    reply = client.chat_postMessage(
        channel="C0ENG", text="reply", thread_ts=r["ts"], metadata=Metadata("steward_post", {"key": "k2"})
    )
    (card, answer) = fake.messages("C0ENG")
    assert (card["ts"], card["text"], card["blocks"], card["thread_ts"]) == (r["ts"], "card", BLOCKS, None)
    assert card["metadata"] == meta("k1", n=1) and r["message"]["metadata"] == meta("k1", n=1)
    assert (answer["ts"], answer["thread_ts"], answer["metadata"]) == (reply["ts"], r["ts"], meta("k2"))
    assert float(r["ts"]) < float(reply["ts"])
    assert fake.posted("k1") == 1 and fake.posted("k2") == 1 and fake.posted("nope") == 0
    assert fake.messages("C0OTHER") == []


def test_metadata_in_a_form_body_is_parsed_and_bad_metadata_is_refused(fake, client):
    client.api_call("chat.postMessage", params={"channel": "C0ENG", "text": "form", "metadata": json.dumps(meta("f1"))})
    assert fake.messages("C0ENG")[0]["metadata"] == meta("f1") and fake.posted("f1") == 1
    assert (
        refused(
            lambda: client.api_call(
                "chat.postMessage", params={"channel": "C0ENG", "text": "x", "metadata": "{not json"}
            )
        ).response["error"]
        == "invalid_metadata_format"
    )
    assert (
        refused(lambda: client.chat_postMessage(channel="C0ENG", text="x", metadata={"event_payload": {}})).response[
            "error"
        ]
        == "invalid_metadata_schema"
    )
    assert len(fake.messages("C0ENG")) == 1 and [e for _, e, _ in fake.rejections] == [
        "invalid_metadata_format",
        "invalid_metadata_schema",
    ]


def test_a_user_id_as_channel_is_the_dm_that_conversations_open_names(fake, client):
    r = client.chat_postMessage(channel="U0ALICE", text="hi", metadata=meta("dm"))
    assert r["channel"] == "D0ALICE" == client.conversations_open(users="U0ALICE")["channel"]["id"]
    assert [m["ts"] for m in fake.messages("D0ALICE")] == [r["ts"]] == [m["ts"] for m in fake.messages("U0ALICE")]
    assert [m["ts"] for m in client.conversations_history(channel="D0ALICE")["messages"]] == [r["ts"]]
    # a DM opened but never written to exists, and is empty; one never opened does not exist
    assert client.conversations_open(users="W0BOB")["channel"]["id"] == "D0BOB"
    assert client.conversations_history(channel="D0BOB")["messages"] == []
    assert refused(lambda: client.conversations_history(channel="D0NOBODY")).response["error"] == "channel_not_found"


def test_chat_update_replaces_text_blocks_and_metadata(fake, client):
    ts = post(client, text="old", blocks=BLOCKS, metadata=meta("u1"))
    other = post(client, channel="C0QA", text="elsewhere")
    new_blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*new*"}}]
    r = client.chat_update(channel="C0ENG", ts=ts, text="new", blocks=new_blocks, metadata=meta("u2"))
    assert (r["channel"], r["ts"], r["text"]) == ("C0ENG", ts, "new")
    (m,) = fake.messages("C0ENG")
    assert (m["ts"], m["text"], m["blocks"], m["metadata"]) == (ts, "new", new_blocks, meta("u2"))
    assert fake.posted("u1") == 0 and fake.posted("u2") == 1
    client.chat_update(channel="C0ENG", ts=ts, text="text only")  # what is not sent is kept
    assert fake.messages("C0ENG")[0]["blocks"] == new_blocks
    assert (
        refused(lambda: client.chat_update(channel="C0ENG", ts="1.000001", text="x")).response["error"]
        == "message_not_found"
    )
    assert (
        refused(lambda: client.chat_update(channel="C0ENG", ts=other, text="x")).response["error"]
        == "message_not_found"
    )  # another channel's


# -- conversations.history and conversations.replies ----------------------------------------------------
def test_history_newest_first_top_level_only_filtered_and_paged(fake, client):
    ts = [post(client, text=f"m{i}", metadata=meta(f"h{i}")) for i in range(5)]
    reply = post(client, text="in thread", thread_ts=ts[1])
    broadcast = post(client, text="also in channel", thread_ts=ts[1], reply_broadcast=True)
    everything = client.conversations_history(channel="C0ENG")
    assert [m["ts"] for m in everything["messages"]] == [broadcast, *reversed(ts)] and reply not in [
        m["ts"] for m in everything["messages"]
    ]
    assert everything["has_more"] is False and everything["response_metadata"]["next_cursor"] == ""
    assert all("metadata" not in m for m in everything["messages"])
    parent = next(m for m in everything["messages"] if m["ts"] == ts[1])
    assert (parent["thread_ts"], parent["reply_count"], parent["latest_reply"]) == (ts[1], 2, broadcast)

    with_meta = client.conversations_history(channel="C0ENG", include_all_metadata=True)["messages"]
    assert [m["metadata"]["event_payload"]["key"] for m in with_meta if m["ts"] in ts] == ["h4", "h3", "h2", "h1", "h0"]

    # oldest and latest are exclusive, unless inclusive
    assert [m["ts"] for m in client.conversations_history(channel="C0ENG", oldest=ts[1], latest=ts[4])["messages"]] == [
        ts[3],
        ts[2],
    ]
    assert [
        m["ts"]
        for m in client.conversations_history(channel="C0ENG", oldest=ts[1], latest=ts[3], inclusive=True)["messages"]
    ] == [ts[3], ts[2], ts[1]]

    # pages of 2, by cursor
    seen, cursor, pages = [], None, 0
    while True:
        page = client.conversations_history(channel="C0ENG", latest=broadcast, limit=2, cursor=cursor)
        seen += [m["ts"] for m in page["messages"]]
        pages += 1
        cursor = page["response_metadata"]["next_cursor"]
        assert page["has_more"] is bool(cursor)
        if not cursor:
            break
    assert (seen, pages) == (list(reversed(ts)), 3)
    # slack_sdk's own pagination follows the cursor too
    assert [
        m["ts"] for page in client.conversations_history(channel="C0ENG", oldest="0", limit=3) for m in page["messages"]
    ] == [broadcast, *reversed(ts)]
    assert (
        refused(lambda: client.conversations_history(channel="C0ENG", cursor="bogus")).response["error"]
        == "invalid_cursor"
    )


def test_history_of_channels_with_nothing_and_the_limit_cap(fake, client):
    assert client.conversations_history(channel="C0NEVER")["messages"] == []
    fake.fail("conversations.history", "channel_not_found")
    assert refused(lambda: client.conversations_history(channel="C0ENG")).response["error"] == "channel_not_found"
    connection = http.client.HTTPConnection(urlsplit(fake.url).netloc, timeout=5)  # one kept-alive connection: fast
    for _ in range(1000):
        connection.request(
            "POST",
            "/api/chat.postMessage",
            body=json.dumps({"channel": "C0BIG", "text": "x"}),
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"},
        )
        assert json.loads(connection.getresponse().read())["ok"]
    connection.close()
    assert len(client.conversations_history(channel="C0BIG")["messages"]) == 100
    capped = client.conversations_history(channel="C0BIG", limit=5000)
    assert len(capped["messages"]) == 999 and capped["has_more"] is True


def test_history_answers_get_requests_with_a_query_string_too(fake, client):
    ts = post(client, metadata=meta("g1"))
    query = urlencode({"channel": "C0ENG", "include_all_metadata": "true", "token": TOKEN})
    with urllib.request.urlopen(f"{fake.url}conversations.history?{query}", timeout=5) as r:
        body = json.loads(r.read())
    assert [(m["ts"], m["metadata"]["event_payload"]["key"]) for m in body["messages"]] == [(ts, "g1")]


def test_replies_give_the_parent_first_then_the_thread(fake, client):
    parent = post(client, text="parent", metadata=meta("p"))
    replies = [post(client, text=f"r{i}", thread_ts=parent) for i in range(4)]
    post(client, text="unrelated")
    thread = client.conversations_replies(channel="C0ENG", ts=parent)
    assert [m["ts"] for m in thread["messages"]] == [parent, *replies] and thread["messages"][0]["reply_count"] == 4
    assert "metadata" not in thread["messages"][0]
    assert client.conversations_replies(channel="C0ENG", ts=replies[2], include_all_metadata=True)["messages"][0][
        "metadata"
    ] == meta("p")
    assert [
        m["ts"]
        for m in client.conversations_replies(channel="C0ENG", ts=parent, oldest=replies[0], latest=replies[3])[
            "messages"
        ]
    ] == [parent, replies[1], replies[2]]
    first = client.conversations_replies(channel="C0ENG", ts=parent, limit=3)
    assert [m["ts"] for m in first["messages"]] == [parent, *replies[:3]] and first["has_more"] is True
    rest = client.conversations_replies(
        channel="C0ENG", ts=parent, limit=3, cursor=first["response_metadata"]["next_cursor"]
    )
    assert [m["ts"] for m in rest["messages"]] == [replies[3]] and rest["has_more"] is False
    assert (
        refused(lambda: client.conversations_replies(channel="C0ENG", ts="1.000009")).response["error"]
        == "thread_not_found"
    )


# -- faults ---------------------------------------------------------------------------------------------
def test_store_then_error_acts_but_answers_a_server_error(fake, client):
    fake.store_then_error("chat.postMessage")
    error = refused(lambda: post(client, metadata=meta("once")))
    assert error.response.status_code == 503 and error.response["error"] == "internal_error"
    assert fake.posted("once") == 1 and len(fake.messages("C0ENG")) == 1
    post(client, metadata=meta("twice"))  # then back to normal
    assert [c.status for c in fake.calls] == [503, 200] and fake.posted("twice") == 1


def test_store_then_hang_acts_and_outlasts_a_client_timeout_without_blocking_others(fake, client):
    fake.store_then_hang("chat.postMessage", 2)
    impatient = WebClient(base_url=fake.url, token=TOKEN, timeout=1, retry_handlers=[])
    raised: list[BaseException] = []

    def hang():
        try:
            post(impatient, metadata=meta("hung"))
        except BaseException as exc:  # noqa: BLE001 - the test checks which
            raised.append(exc)

    started = time.monotonic()
    thread = threading.Thread(target=hang)
    thread.start()
    fake.wait("chat.postMessage")
    quick = time.monotonic()
    post(client, channel="C0QA", metadata=meta("meanwhile"))  # answered while the other is held
    assert time.monotonic() - quick < 0.5
    thread.join(5)
    assert 0.9 < time.monotonic() - started < 1.9
    assert len(raised) == 1 and isinstance(raised[0], TimeoutError), raised
    assert fake.posted("hung") == 1 and fake.posted("meanwhile") == 1


def test_a_short_hang_is_only_slow(fake, client):
    fake.store_then_hang("chat.postMessage", 0.3)
    started = time.monotonic()
    assert post(client) and time.monotonic() - started >= 0.3


def test_server_error_does_not_act(fake, client):
    fake.server_error("chat.postMessage", status=500, times=2)
    for _ in range(2):
        assert refused(lambda: post(client, metadata=meta("k"))).response.status_code == 500
    post(client, metadata=meta("k"))
    assert fake.posted("k") == 1 and [c.status for c in fake.of("chat.postMessage")] == [500, 500, 200]


def test_down_answers_503_to_everything_then_recovers(fake, client):
    fake.down(1.5)
    assert refused(lambda: post(client, metadata=meta("k"))).response.status_code == 503
    assert refused(lambda: client.auth_test()).response.status_code == 503
    assert fake.messages("C0ENG") == [] and [c.status for c in fake.calls] == [503, 503]
    time.sleep(1.55)
    post(client, metadata=meta("k"))
    assert fake.posted("k") == 1 and fake.calls[-1].status == 200


def test_fail_and_rate_limit_store_nothing_and_faults_queue_in_call_order(fake, client):
    fake.fail("chat.postMessage", "channel_not_found")
    fake.rate_limit("chat.postMessage", retry_after=7)
    fake.store_then_error("chat.postMessage")
    fake.server_error("chat.postMessage")
    assert refused(lambda: post(client, metadata=meta("a"))).response["error"] == "channel_not_found"
    limited = refused(lambda: post(client, metadata=meta("b"))).response
    assert (limited.status_code, limited.headers["Retry-After"], limited["error"]) == (429, "7", "ratelimited")
    assert refused(lambda: post(client, metadata=meta("c"))).response.status_code == 503
    assert refused(lambda: post(client, metadata=meta("d"))).response.status_code == 503
    post(client, metadata=meta("e"))
    assert [k for k in "abcde" if fake.posted(k)] == ["c", "e"]
    assert [c.status for c in fake.calls] == [200, 429, 503, 503, 200]
    assert fake.throttled == []  # only the rate limits' own 429s are counted there


# -- rate limits ------------------------------------------------------------------------------------------
def test_limit_per_channel_is_a_token_bucket_per_channel(fake, client):
    fake.limit_per_channel("chat.postMessage", per_second=1, burst=2)
    post(client, metadata=meta("1"))
    post(client, metadata=meta("2"))
    limited = refused(lambda: post(client, metadata=meta("3"))).response
    assert (limited.status_code, limited.headers["Retry-After"]) == (429, "1")
    assert fake.posted("3") == 0
    post(client, channel="C0QA", metadata=meta("other"))  # another channel has its own bucket
    time.sleep(1.05)  # a token comes back every second
    post(client, metadata=meta("3"))
    assert [(t.method, t.channel, t.retry_after, t.scope) for t in fake.throttled] == [
        ("chat.postMessage", "C0ENG", 1, "channel")
    ]
    assert [c.status for c in fake.calls] == [200, 200, 429, 200, 200]
    client.chat_update(channel="C0ENG", ts=fake.messages("C0ENG")[0]["ts"], text="edits are not limited")


def test_retry_after_is_the_wait_for_a_token_rounded_up(fake, client):
    fake.limit_per_channel(per_second=0.4)  # one token every 2.5 s
    post(client, channel="U0ALICE")
    assert (
        refused(lambda: post(client, channel="D0ALICE")).response.headers["Retry-After"] == "3"
    )  # the same DM's bucket
    assert fake.throttled[0].channel == "D0ALICE"


def test_limit_workspace_spans_channels(fake, client):
    fake.limit_workspace("chat.postMessage", per_minute=60)  # one a second: a loaded machine still asks within it
    post(client, channel="C0ENG")
    assert refused(lambda: post(client, channel="C0QA")).response.status_code == 429
    time.sleep(1.05)
    post(client, channel="C0QA")
    assert [(t.channel, t.scope) for t in fake.throttled] == [("C0QA", "workspace")]


def test_a_client_that_honours_retry_after_gets_through(fake):
    fake.limit_per_channel(per_second=20)
    patient = WebClient(base_url=fake.url, token=TOKEN, retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=1)])
    post(patient)
    post(patient, metadata=meta("retried"))  # 429, waits Retry-After (1 s), then posts
    assert (
        fake.posted("retried") == 1 and [c.status for c in fake.calls] == [200, 429, 200] and len(fake.throttled) == 1
    )


def test_reset_clears_store_faults_limits_and_outage(fake, client):
    post(client, metadata=meta("k"))
    fake.limit_per_channel(per_second=0.1)
    fake.limit_workspace(per_minute=1)
    fake.fail("chat.postMessage", "channel_not_found")
    fake.store_then_error("chat.postMessage")
    fake.down(60)
    assert refused(lambda: post(client)).response.status_code == 503
    fake.reset()
    assert (fake.calls, fake.throttled, fake.messages("C0ENG"), fake.posted("k")) == ([], [], [], 0)
    for _ in range(3):
        post(client, metadata=meta("after"))
    assert fake.posted("after") == 3 and {c.status for c in fake.calls} == {200}


def test_existing_answers_are_unchanged(fake, client):
    ts = float(client.chat_postMessage(channel="C0ENG", text="t")["ts"])
    assert abs(ts - time.time()) < 5  # real times, as Slack's are
    view = {"type": "modal", "callback_id": "x", "title": {"type": "plain_text", "text": "x"}, "blocks": BLOCKS}
    assert client.views_open(trigger_id="t1", view=view)["view"]["id"].startswith("V")
    assert refused(lambda: client.views_open(trigger_id="", view=view)).response["error"] == "invalid_trigger_id"
    assert (
        refused(lambda: WebClient(base_url=fake.url, token="xoxp-user", retry_handlers=[]).auth_test()).response[
            "error"
        ]
        == "not_authed"
    )
    fake.rejections.clear()


def test_the_clock_sets_the_ts_and_ts_only_grow(fake, client):
    first = post(client)
    fake.clock = lambda: 1800000000.5
    assert post(client) == "1800000000.500000" and post(client) == "1800000000.500001"
    fake.clock = lambda: 1.0  # a clock going back never makes an older ts
    assert float(post(client)) > 1800000000.5 > float(first)
    fake.reset()
    assert abs(fake.clock() - time.time()) < 5


def test_reset_can_keep_the_messages_so_earlier_cards_can_still_be_edited(fake, client):
    ts = post(client, metadata=meta("card"))
    dm = post(client, channel="U0ALICE")
    fake.reset(keep_messages=True)
    assert fake.calls == [] and fake.posted("card") == 1
    client.chat_update(channel="C0ENG", ts=ts, text="edited")
    assert [m["ts"] for m in client.conversations_history(channel="D0ALICE")["messages"]] == [dm]
    fake.reset()
    assert (
        refused(lambda: client.chat_update(channel="C0ENG", ts=ts, text="again")).response["error"]
        == "message_not_found"
    )
