"""The digest's chart, drawn when its upload is delivered (the digest's messages are drawn when they are
written: see `bot.clock.run_digest`)."""

from __future__ import annotations

from bot import digest


def render_chart(deps, row) -> dict:
    period = row.params["period"]
    d = digest.compose(deps.db, deps.cfg, period)
    return {"file": digest.chart(d), "filename": f"steward-trend-{period}.png", "title": f"Handoff trends to {d.label}",
            "alt_txt": f"Median cycle time and handoff failure rate per team, {len(d.months)} months to {d.label}"}


RENDERERS = {"digest_chart": render_chart}
