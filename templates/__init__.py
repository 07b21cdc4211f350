"""Block Kit messages and modals, one Jinja2 template per message (`<name>.json.j2`), rendered to dicts.

Escaping is the default, not a choice: every `{{ expression }}` is escaped for mrkdwn (`&`, `<`, `>`) and
then for JSON, unless a filter below has already made it safe. So no user text can ping @channel or a
person, or disguise a link, in blocks or in the notification `text`.

Filters:
- `mrkdwn(n)`  escape for mrkdwn and clip to n characters (of the escaped text, never inside an entity)
- `mentioning(people, n)` like mrkdwn, but `<@ID>` of these user ids stays a mention (Steward's own
               messages that name people)
- `plain(n)`   the same for a plain_text field (escaped too: nothing user-written goes out unescaped)
- `input_value(n)` clip, unescaped, for the initial value of a text input (what the user typed before,
               given back to them to edit; Slack neither renders nor parses it)
- `user`       a mention built from a Slack user id (never from user text)
- `group`      a user group mention built from a user group id (`<!subteam^S…>`)
- `user_id`    a Slack user id, checked, for fields such as `initial_user`
- `channel`    a channel link built from a channel id
- `when`       a datetime (naive UTC) as a Slack date token (`<!date^…^{date_short_pretty} {time}|…>`, shown
               in the reader's time zone) with a readable UTC fallback, "Thu 26 Nov 2026 12:14 UTC"; a date as
               `day`. Every time a person sees goes through it (plain text, where Slack parses no token,
               uses `readable_utc`, the same fallback)
- `day`        a calendar date (a due date, a needed-by date) as plain text, "Mon 30 Nov 2026": a date has
               no time of day, so no time zone may shift it
- `url`        a link already validated by the domain (http/https, no spaces, < > |)
- `link(label)` the same link with a label, `<url|label>`, built whole
- `json`       a value as a JSON fragment (lists of options built in Python)

Wording every template shares (globals, also imported by handlers): `plural(n, "item")` ("1 item",
"2 items"), `meter(count, budget)`, the fast-track budget meter ("1 of 1 allowed this month (10% of 9
items)", "over budget: 3 fast-tracks, 1 allowed this month (10% of 0 items, at least 1)"). Tests: `is user_id` (a Slack user id, to tell a matrix party that is a person from a team).
"""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup

from bot.domain.figures import ELLIPSIS, clip, meter, plural

_HERE = Path(__file__).parent
_ID = re.compile(r"^[UWCGD][A-Z0-9]{2,}$")
_URL = re.compile(r"^https?://[^\s<>|]+$")


class Safe(str):
    """Text that is already safe for mrkdwn (or is plain_text): only JSON-escaped on output."""


class Raw(Markup):
    """A JSON fragment, output as it is. (Jinja's Markup marks output already finished: macro results are
    Markup too, so a macro's text is escaped once, inside the macro, not again where it is used.)"""


def escape_mrkdwn(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def clip_escaped(text: str, limit: int) -> str:
    """Escape, then clip to `limit` characters without cutting `&amp;` and friends in half."""
    escaped = escape_mrkdwn(text)
    if len(escaped) <= limit:
        return escaped
    cut = escaped[: max(limit - 1, 0)]
    amp = cut.rfind("&")
    if amp != -1 and ";" not in cut[amp:]:
        cut = cut[:amp]
    return cut + ELLIPSIS


def split_escaped(text: str, limit: int, parts: int) -> list[str]:
    """Escape, then cut into at most `parts` pieces of at most `limit` characters (at a space or a line
    break near the end when there is one, never inside `&amp;` and friends); the last clipped when even
    they cannot hold it all. For user text longer, once escaped, than one text object may be."""
    escaped, out = escape_mrkdwn(text), []
    while escaped and len(out) < parts - 1 and len(escaped) > limit:
        cut = escaped[:limit]
        amp = cut.rfind("&")
        if amp != -1 and ";" not in cut[amp:]:
            cut = cut[:amp]
        space = max(cut.rfind(" "), cut.rfind("\n"))
        if space > len(cut) - 200:
            cut = cut[: space + 1]
        out.append(cut)
        escaped = escaped[len(cut) :]
    if escaped:
        out.append(escaped if len(escaped) <= limit else clip_escaped(unescape_mrkdwn(escaped), limit))
    return out


def unescape_mrkdwn(text: str) -> str:
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def _mrkdwn_parts(value, limit: int = 3000, parts: int = 4) -> list[Safe]:
    return [Safe(p) for p in split_escaped("" if value is None else str(value), limit, parts)]


def _finalize(value):
    if isinstance(value, Markup):
        return value
    if value is None:
        return Markup("")
    if isinstance(value, bool):
        raise TypeError("render booleans with |json")
    if isinstance(value, (int, float)):
        return Markup(str(value))
    text = value if isinstance(value, Safe) else escape_mrkdwn(str(value))
    return Markup(json.dumps(text, ensure_ascii=False)[1:-1])


def _mrkdwn(value, limit: int = 3000) -> Safe:
    return Safe(clip_escaped("" if value is None else str(value), limit))


def _plain(value, limit: int = 3000) -> Safe:
    return Safe(clip_escaped("" if value is None else str(value), limit))


def _mentioning(value, people=(), limit: int = 3000) -> Safe:
    """Like `mrkdwn`, but the `<@ID>` tokens of these user ids stay mentions: for messages Steward wrote
    that name people (a refusal naming who may decide). Any other `<…>` stays escaped."""
    text = clip_escaped("" if value is None else str(value), limit)
    for person in people or ():
        if _ID.match(person or ""):
            text = text.replace(f"&lt;@{person}&gt;", f"<@{person}>")
    return Safe(text)


def _input_value(value, limit: int = 3000) -> Safe:
    return Safe(clip("" if value is None else str(value), limit))


def _user_id(user_id: str) -> Safe:
    if not _ID.match(user_id or ""):
        raise ValueError(f"not a user id: {user_id!r}")
    return Safe(user_id)


_GROUP = re.compile(r"^S[A-Z0-9]{2,}$")


def _group(group_id: str) -> Safe:
    """A user group mention built from a user group id (never from user text)."""
    if not _GROUP.match(group_id or ""):
        raise ValueError(f"not a user group id: {group_id!r}")
    return Safe(f"<!subteam^{group_id}>")


def _user(user_id: str) -> Safe:
    return Safe(f"<@{_user_id(user_id)}>")


def _channel(channel_id: str) -> Safe:
    if not _ID.match(channel_id or ""):
        raise ValueError(f"not a channel id: {channel_id!r}")
    return Safe(f"<#{channel_id}>")


def readable_utc(value: datetime) -> str:
    """A moment as a person reads it where Slack shows no date token: "Thu 26 Nov 2026 12:14 UTC"."""
    aware = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return f"{_day(aware.date())} {aware:%H:%M} UTC"


def _when(value: datetime | date | None, style: str = "{date_short_pretty} {time}") -> Safe:
    """A moment as a Slack date token: each reader sees it in their own time zone; the fallback (UTC) is
    for clients that cannot show the token."""
    if value is None:
        return Safe("")
    if not isinstance(value, datetime):
        return _day(value)
    aware = value.replace(tzinfo=UTC) if value.tzinfo is None else value
    return Safe(f"<!date^{int(aware.timestamp())}^{style}|{readable_utc(aware)}>")


def _day(value: date | None) -> Safe:
    if value is None:
        return Safe("")
    if isinstance(value, datetime):
        raise TypeError("a datetime is shown with |when")
    return Safe(f"{_WEEKDAYS[value.weekday()]} {value.day} {_MONTHS[value.month - 1]} {value.year}")


_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")  # not strftime: the locale must not change it
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _is_user_id(value) -> bool:
    return isinstance(value, str) and bool(re.match(r"^[UW][A-Z0-9]{2,}$", value))


def _url(value: str) -> Safe:
    if not _URL.match(value or "") or len(value) > 3000:
        raise ValueError("not a safe link")
    return Safe(escape_mrkdwn(value))


def _link(value: str, label: str) -> Safe:
    """A link with a label, `<url|label>`, built whole: no template writes a bare `<` of its own."""
    return Safe(f"<{_url(value)}|{clip_escaped(label, 200)}>")


def _json(value) -> Raw:
    return Raw(json.dumps(value, ensure_ascii=False))


_env = Environment(
    loader=FileSystemLoader(_HERE),
    undefined=StrictUndefined,
    finalize=_finalize,
    autoescape=True,  # with _finalize: every expression is escaped for mrkdwn and JSON, exactly once
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=False,
)


def _option(team) -> dict:
    return {"text": {"type": "plain_text", "text": clip_escaped(team.name, 75)}, "value": team.id}


def _options(teams) -> list[dict]:
    return [_option(t) for t in teams][:100]


def _criteria_options(criteria, chosen=None) -> list[dict]:
    """Checkboxes whose values are the criteria themselves (at most 70 characters; Slack allows 150), not
    their positions: a criterion removed or reordered since the form opened cannot be mistaken for another."""
    return [
        {"text": {"type": "plain_text", "text": clip_escaped(c, 75)}, "value": c}
        for c in criteria
        if chosen is None or c in chosen
    ]


def _age(start: datetime, now: datetime) -> str:
    minutes = max(int((now - start).total_seconds() // 60), 0)
    if minutes < 60:
        return f"{minutes} min"
    if minutes < 48 * 60:
        return f"{minutes // 60} h"
    return f"{minutes // (24 * 60)} d"


_env.globals.update(
    age=_age, option=_option, options=_options, criteria_options=_criteria_options, plural=plural, meter=meter
)
_env.tests.update(user_id=_is_user_id)
_env.filters.update(
    mrkdwn_parts=_mrkdwn_parts,
    mrkdwn=_mrkdwn,
    mentioning=_mentioning,
    plain=_plain,
    input_value=_input_value,
    user=_user,
    group=_group,
    user_id=_user_id,
    channel=_channel,
    when=_when,
    day=_day,
    url=_url,
    link=_link,
    json=_json,
)


def render(name: str, **context) -> dict:
    """Render `templates/<name>.json.j2` to a dict (a message's text and blocks, or a view)."""
    source = _env.get_template(f"{name}.json.j2").render(**context)
    try:
        return json.loads(source)
    except json.JSONDecodeError as exc:  # a template bug, never user input: the tests render them all
        raise ValueError(f"template {name} rendered invalid JSON: {exc}") from None


def names() -> list[str]:
    return sorted(p.name.removesuffix(".json.j2") for p in _HERE.glob("*.json.j2"))
