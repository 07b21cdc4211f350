"""The weekly pulse in the monthly digest: satisfaction beside cycle time and failure rate, its warning
signs among the highlights, the chart's satisfaction panel, and, read back from the rendered messages,
no figure from which a group under the threshold can be worked out."""

from __future__ import annotations

import json
import re
from datetime import datetime

from bot.domain import digest, pulse
from handlers import digest as slack_digest
from tests.support.anonymity import isolations
from tests.support.pulse_months import NAMES, SECRET, month_of_answers, organisation


def shown_groups(text: str) -> set[str]:
    """The groups whose satisfaction the rendered pulse part shows a figure for ("*Name*: 3.0 / 5 …")."""
    by_name = {v: k for k, v in NAMES.items()}
    return {by_name[name] for name in re.findall(r"\*([A-Za-z]+)\*: \d\.\d / 5", text)}


def test_satisfaction_beside_the_handoff_figures_with_nothing_small_derivable(db):
    cfg = organisation()
    # three months, satisfaction falling each month, "too rigid" for most in November
    for monday, score, feeling in (
        (datetime(2026, 9, 7), 5, "right"),
        (datetime(2026, 10, 5), 4, "right"),
        (datetime(2026, 11, 2), 2, "rigid"),
    ):
        month_of_answers(db, cfg, monday, score, feeling)
    at = datetime(2026, 12, 3, 9)
    d = digest.compose(db, cfg, "2026-11", at, sealer=pulse.Sealer(SECRET))
    parts = slack_digest.messages(d)
    first = json.dumps(parts[0], ensure_ascii=False)
    assert "Satisfaction (1–5)" in first and "2.0" in first
    assert "Acme: satisfaction falling two months running (5.0 → 4.0 → 2.0)" in first and "<@U0STEW>" in first
    detail = next(p for p in parts if p["text"].startswith("Satisfaction in"))
    text = json.dumps(detail, ensure_ascii=False)
    # qa (4) is under the threshold; the organisation minus design and eng would be qa: eng is held back too
    assert shown_groups(text) == {"design", pulse.ORG}
    assert (
        "Quality (fewer than 5 answered)" in text
        and "Engineering (held back so that no group under 5 can be worked out" in text
    )
    # every figure shown, combined any way, isolates no group under 5 (the same enumeration as the unit tests)
    coords = {g: {(u, "w") for u, teams in pulse.members(cfg).items() if g == pulse.ORG or g in teams} for g in NAMES}
    assert isolations(coords, shown_groups(text), 5) == []
    # no team figure of a group held back, anywhere in the digest
    everything = json.dumps(parts, ensure_ascii=False)
    assert not re.search(r"(Quality|Engineering)\*?: \d\.\d / 5", everything)
    assert [t.satisfaction for t in d.teams if t.id in ("qa", "eng")] == [None, None]
    # "too rigid" for more than a third: a warning sign naming the steward
    assert "Design: 100% of answers find processes too rigid" in text
    # the chart gains a satisfaction panel
    fig = digest.chart_figure(d, dpi=90)
    assert len(fig.axes) == 3 and fig.axes[2].get_ylabel() == "satisfaction (1–5)"
    # the preview and the post are one function of the same data
    assert json.dumps(
        slack_digest.messages(digest.compose(db, cfg, "2026-11", at, sealer=pulse.Sealer(SECRET)))
    ) == json.dumps(parts)


def test_without_the_secret_or_before_the_surveys_close_no_satisfaction_is_shown(db):
    cfg = organisation()
    month_of_answers(db, cfg, datetime(2026, 11, 2), 4, "right")
    without = slack_digest.messages(digest.compose(db, cfg, "2026-11", datetime(2026, 12, 3)))
    assert "Satisfaction" not in json.dumps(without)
    early = slack_digest.messages(
        digest.compose(db, cfg, "2026-11", datetime(2026, 11, 20), sealer=pulse.Sealer(SECRET))
    )
    assert "Satisfaction" not in json.dumps(early)  # month to date: figures would move as answers come
