"""The digest as Slack messages: the first from templates/digest_summary.json.j2 (the month in at most 12
blocks: figures with their direction, at most five highlights naming who acts), the details from
templates/digest.json.j2 in its thread, split to Slack's block limit; the same messages as
terminal text (`python -m bot digest`), and the chart drawn when its upload is delivered. The messages
are drawn when the digest is written to the outbox (`bot.entry.clock.run_digest`): the figures as they were."""

from __future__ import annotations

import html
import re

from bot.domain import digest, initiatives
from bot.domain.core import schedule
from bot.domain.digest import Digest
from bot.domain.figures import (
    change_count,
    change_duration,
    change_rate,
    compare_cycle,
    compare_rate,
    cycle_unit,
    duration,
    escalation_counts,
    metric_text,
    percent,
    unit_of,
    working_hours,
)
from templates import clip_escaped, render

MAX_BLOCKS = 45  # per message (Slack allows 50): room for a part's own header and footer


def has_figures(tv) -> bool:
    """Whether a team's row in the thread has figures to show (else it has one only for its initiative)."""
    n = tv.now
    return bool(
        n.sent
        or n.received
        or n.as_sender.accepted
        or n.as_receiver.accepted
        or n.sent_back
        or tv.fasttracks
        or n.open_overdue
    )


def context(d: Digest) -> dict:
    """What templates/digest.json.j2 needs: the digest, the teams that have a row in the thread (`rows`:
    the first message says what the thread holds from the same list), and the formatting helpers."""
    return dict(
        d=d,
        rows=[tv for tv in d.teams if has_figures(tv) or tv.initiative],
        has_figures=has_figures,
        cycle_unit=cycle_unit,
        duration=duration,
        percent=percent,
        change_count=change_count,
        change_rate=change_rate,
        change_duration=change_duration,
        metric_text=metric_text,
        metric_label=initiatives.METRICS,
        short=schedule.short_label,
        working_hours=working_hours,
        escalation_counts=escalation_counts,
        compare_rate=compare_rate,
        compare_cycle=compare_cycle,
        unit_of=unit_of,
    )


def messages(d: Digest, replaces: dict | None = None) -> list[dict]:
    """The digest as Slack messages: the first (templates/digest_summary.json.j2) is the month in at most
    12 blocks: the organisation's figures with their direction and at most five highlights, each naming who
    should act; the details (templates/digest.json.j2) follow as thread replies of at most MAX_BLOCKS
    blocks. `replaces` ({"channel", "at"} of an earlier edition's first message) marks a deliberate re-post."""
    summary = render("digest_summary", **context(d), replaces=replaces)
    details = render("digest", **context(d))
    blocks = details["blocks"]
    parts = [blocks[i : i + MAX_BLOCKS] for i in range(0, len(blocks), MAX_BLOCKS)]
    out = [summary]
    for i, part in enumerate(parts, 1):
        text = f"{clip_escaped(d.organization, 80)} sync digest, {d.label}: details" + (
            f" (part {i} of {len(parts)})" if len(parts) > 1 else ""
        )
        if len(parts) > 1:
            part = part + [{"type": "context", "elements": [{"type": "mrkdwn", "text": f"Part {i} of {len(parts)}"}]}]
        out.append({"text": text, "blocks": part})
    if d.pulse is not None:  # the weekly pulse's month: figures shown, what was held back and why, comments
        names = {t.id: t.name for t in d.teams} | {"*": d.organization}
        pulse_signals = [s for s in d.signals if s.metric == "satisfaction"]
        out.append(
            render(
                "pulse_digest", s=d.pulse, names=names, label=d.label, question=d.pulse_question, signals=pulse_signals
            )
        )
    return out


_TOKEN = re.compile(
    r"<(?:!date\^\d+\^[^|>]*\|([^>]*)|@([A-Z0-9]+)|#([A-Z0-9]+)(?:\|[^>]*)?|(https?://[^|>]+)(?:\|([^>]*))?)>"
)


def _plain(mrkdwn: str) -> str:
    def token(m: re.Match) -> str:
        date, user, channel, url, text = m.groups()
        if date is not None:
            return date
        if user:
            return f"@{user}"
        if channel:
            return f"#{channel}"
        return f"{text} ({url})" if text else url

    return html.unescape(_TOKEN.sub(token, mrkdwn)).replace("*", "")


def preview(parts: list[dict]) -> str:
    """The messages as terminal text: what `digest --month` prints."""
    lines: list[str] = []
    for i, message in enumerate(parts):
        if i:
            lines += ["", f"── in the thread, part {i + 1} " + "─" * 40]
        for block in message["blocks"]:
            kind = block["type"]
            if kind == "header":
                title = _plain(block["text"]["text"])
                lines += ["", title, "═" * len(title)]
            elif kind == "section":
                lines += ["", _plain(block["text"]["text"])]
            elif kind == "context":
                lines += [_plain(e.get("text", "")) for e in block["elements"]]
            elif kind == "divider":
                lines += ["", "─" * 60]
    return "\n".join(lines).strip() + "\n"


def render_chart(deps, row) -> dict:
    period = row.params["period"]
    d = digest.compose(deps.db, deps.cfg, period, sealer=deps.sealer)
    return {
        "file": digest.chart(d),
        "filename": f"steward-trend-{period}.png",
        "title": f"Handoff trends to {d.label}",
        "alt_txt": f"Median cycle time and handoff failure rate per team, {len(d.months)} months to {d.label}",
    }


RENDERERS = {"digest_chart": render_chart}
