"""The figures and the words every reader sees them in: what the digest, the Home, the initiatives'
prompt and the matrix review share. A figure with its direction (`Figure`), durations, rates and their
changes, the thresholds below which a change is not compared, the fast-track budget meter, and the
plain-text `clip` and `plural`. No Slack and no Jinja2 in here: templates use these same words."""

from __future__ import annotations

from dataclasses import dataclass

from bot.domain import metrics

ELLIPSIS = "…"
MIN_ACCEPTED = 5  # a failure rate from fewer accepted handoffs is not compared
MIN_FOR_TREND = 5  # a median from fewer accepted handoffs does not count as rising
RECURRING = 3  # an element fast-tracked this often in a month is a candidate to become standard


def clip(text: str, limit: int) -> str:
    """At most `limit` characters, ending in … when cut."""
    return text if len(text) <= limit else text[: max(limit - 1, 0)] + ELLIPSIS


def plural(n, word: str, many: str | None = None) -> str:
    """ "1 item", "2 items", "1.5 working hours": the count and the word that agrees with it."""
    return (
        f"{n:g} {word if n == 1 else (many or word + 's')}"
        if isinstance(n, float)
        else f"{n} {word if n == 1 else (many or word + 's')}"
    )


def meter(count: int, budget, month: str | None = None) -> str:
    """The fast-track budget meter, the one wording every message uses: "1 of 2 allowed this month (10% of
    27 items)", or past the limit "over budget: 3 fast-tracks, 1 allowed this month (10% of 0 items, at least
    1)": "at least 1" says when the minimum of one, not the percentage, sets the limit. `count` is what is
    counted: the approved so far (a form, the digest), or the place a request takes (`budget.position`, on
    its card). `month` ("Oct 2026"): a closed month's meter says "allowed in Oct 2026"."""
    basis = f"{budget.percent:g}% of {plural(budget.items, 'item')}" + (
        ", at least 1" if budget.items * budget.percent / 100 < 1 else ""
    )
    when = f"in {month}" if month else "this month"
    if count > budget.limit:
        return f"over budget: {plural(count, 'fast-track')}, {budget.limit} allowed {when} ({basis})"
    return f"{count} of {budget.limit} allowed {when} ({basis})"


def candidate(approved: int) -> bool:
    """The fast-track review's rule (and the quarterly matrix review's): an element fast-tracked this often
    in a month is a candidate to become standard."""
    return approved >= RECURRING


# -- formatting ------------------------------------------------------------------------------------


def unit_of(*seconds: float | None) -> str:
    """The one unit for a series of durations (a line, a trend): days when any reaches 48 hours, else hours."""
    values = [abs(v) for v in seconds if v is not None]
    return "d" if values and max(values) >= 48 * 3600 else "h"


def cycle_unit(now: metrics.Side, before: metrics.Side) -> str:
    """The one unit of a cycle time (a team's as sender, or the organisation's) wherever a digest shows it:
    the first message's figure and highlights, the thread's line (median, its change, the 85th percentile),
    a signal's trail and an initiative's figures. The line's values decide it: the median now, its 85th
    percentile and the median the month before (a trail of rising medians ends in the highest)."""
    return unit_of(now.cycle.get(0.5), now.cycle.get(0.85), before.cycle.get(0.5))


def duration(seconds: float | None, unit: str | None = None) -> str:
    if seconds is None:
        return "–"
    unit = unit or unit_of(seconds)
    return f"{seconds / 86400:.1f} d" if unit == "d" else f"{seconds / 3600:.1f} h"


def percent(rate: float | None) -> str:
    return "–" if rate is None else f"{round(rate * 100)}%"


def _signed(number: float, unit: str = "", digits: int = 0) -> str:
    text = f"{abs(number):.{digits}f}"
    if float(text) == 0:
        return f"±0{unit}"
    return ("+" if number > 0 else "−") + text + unit


def change_count(now: int, before: int) -> str:
    return _signed(now - before)


def change_rate(now: float | None, before: float | None) -> str:
    if now is None or before is None:
        return "new" if before is None and now is not None else "–"
    return _signed((now - before) * 100, " pts")


def change_duration(now: float | None, before: float | None, unit: str | None = None) -> str:
    if now is None or before is None:
        return "new" if before is None and now is not None else "–"
    delta = now - before
    if (unit or unit_of(now, before)) == "d":
        return _signed(delta / 86400, " d", 1)
    return _signed(delta / 3600, " h", 1)


def compare_rate(now: metrics.Side, before: metrics.Side, before_label: str = "the month before") -> str:
    """A failure rate's change in points, or, on fewer than MIN_ACCEPTED accepted handoffs in either month,
    that it is too few to compare (a 0% → 67% swing on three handoffs means nothing)."""
    if now.accepted < MIN_ACCEPTED:
        return f"{now.accepted} handoff{'' if now.accepted == 1 else 's'}: too few to compare"
    if before.accepted < MIN_ACCEPTED:
        return f"{before.accepted} in {before_label}: too few to compare"
    return change_rate(now.failure_rate, before.failure_rate)


def compare_cycle(
    now: metrics.Side, before: metrics.Side, unit: str | None = None, before_label: str = "the month before"
) -> str:
    """A median cycle time's change, in the line's unit, or that the samples are too few to compare."""
    if now.accepted < MIN_FOR_TREND:
        return f"{now.accepted} handoff{'' if now.accepted == 1 else 's'}: too few to compare"
    if before.accepted < MIN_FOR_TREND:
        return f"{before.accepted} in {before_label}: too few to compare"
    return change_duration(now.cycle.get(0.5), before.cycle.get(0.5), unit)


def metric_text(metric: str, value: float | None, unit: str | None = None) -> str:
    """An initiative's metric: a cycle time in `unit` (the line's, else its own), a rate in percent."""
    return duration(value, unit) if metric == "cycle_time" else percent(value)


def working_hours(hours: float | None) -> str:
    return "–" if hours is None else f"{hours:.1f} working h"


def escalation_counts(row: metrics.BoundaryMonth) -> str:
    """ "L1 ×3, L2 ×1, by hand ×1", or "none"."""
    parts = [f"L{level} ×{n}" for level, n in sorted(row.escalations.items()) if n]
    if row.manual_escalations:
        parts.append(f"by hand ×{row.manual_escalations}")
    return ", ".join(parts) or "none"


# -- the digest ------------------------------------------------------------------------------------


@dataclass
class Figure:
    """A figure with its direction, as the first message shows it: the organisation's cycle time and
    failure rate, and (once pulses feed it) satisfaction, for the organisation or a team. `kind` is
    "duration" (seconds), "rate" (a fraction) or "score" (e.g. satisfaction on 1–5); the arrow is the
    direction of the change and `verdict` says whether that is good, from `lower_is_better`. A change
    between samples smaller than `minimum` is not compared: the note says so plainly."""

    label: str
    kind: str
    now: float | None
    before: float | None
    lower_is_better: bool
    sample: int = 0  # observations behind `now` (accepted handoffs, answers to a pulse)
    sample_before: int = 0
    noun: str = "handoff"
    minimum: int = MIN_ACCEPTED
    before_label: str = ""  # "Sep 2026"
    detail: str = ""  # "3 of 5"
    unit_with: tuple = ()  # other values of the same line elsewhere (the 85th percentile beside a median): one unit for all

    @property
    def unit(self) -> str:
        return unit_of(self.now, self.before, *self.unit_with)

    def text(self, value: float | None) -> str:
        if self.kind == "duration":
            return duration(value, self.unit)
        if self.kind == "rate":
            return percent(value)
        return "–" if value is None else f"{value:.1f}"

    @property
    def comparable(self) -> bool:
        return (
            self.now is not None
            and self.before is not None
            and self.sample >= self.minimum
            and self.sample_before >= self.minimum
        )

    @property
    def arrow(self) -> str:
        """↑, ↓ or → (the same as shown, once rounded), when comparable; else ""."""
        if not self.comparable:
            return ""
        if self.text(self.now) == self.text(self.before):
            return "→"
        return "↑" if self.now > self.before else "↓"

    @property
    def verdict(self) -> str:
        """ "better", "worse" or "no change" when comparable; else ""."""
        arrow = self.arrow
        if arrow in ("", "→"):
            return "no change" if arrow else ""
        return "better" if (arrow == "↓") == self.lower_is_better else "worse"

    @property
    def note(self) -> str:
        """Why there is no comparison, in plain words; "" when there is one."""
        plural = lambda n: f"{n} {self.noun}{'' if n == 1 else 's'}"  # noqa: E731
        if self.now is None and not self.sample:
            return f"no {self.noun}s this month"
        if self.sample < self.minimum:
            return f"{plural(self.sample)}: too few to compare"
        if self.before is None or self.sample_before < self.minimum:
            return f"{plural(self.sample_before)} in {self.before_label}: too few to compare"
        return ""
