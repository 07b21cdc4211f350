"""`python -m bot COMMAND`: the operator's commands. Problems are one line each, never a traceback."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from datetime import UTC, datetime, timedelta
from functools import partial

from bot.domain import digest, pulse
from bot.domain.core import outbox, schedule, timeutil
from bot.domain.core.schedule import parse_period
from bot.domain.digest import Refused
from bot.entry import bootstrap, clock, demo, web
from bot.entry.bootstrap import Deps, Fail
from bot.entry.clock import DIGEST, JOBS, Run, run_job
from bot.entry.manifest import manifest
from bot.entry.settings import log_level
from handlers import digest as slack_digest
from handlers.client import make_client
from handlers.common import Patience, Unread
from handlers.members import check_ids
from storage.migrate import upgrade
from storage.models import OutboxStatus

log = logging.getLogger("steward")


# -- commands ------------------------------------------------------------------------------------


def _count(n: int, one: str, many: str | None = None) -> str:
    """`1 team`, `2 teams`, `0 criteria`."""
    return f"{n} {one if n == 1 else (many or one + 's')}"


def cmd_check_config(args) -> int:
    # every setting is checked unless --file says which file (then none is read, but for --slack's token)
    settings = bootstrap.settings() if args.slack or not args.file else None
    client = bootstrap.slack(settings) if args.slack else None  # --slack without SLACK_BOT_TOKEN: exit 2 first
    cfg = bootstrap.process(args.file, "--file") if args.file else bootstrap.process(settings.process_config)
    secret = None  # PULSE_SECRET's problem, when the process has [pulse] and it is not set
    if not args.file:
        try:
            bootstrap.sealer(settings, cfg)
        except Fail as exc:
            secret = exc
    org = cfg.organization
    print(f"{org.name}: {org.model} model, time zone {org.timezone}, digest to {org.digest_channel}")
    print(
        f"working time: {', '.join(org.working_days)} {org.working_hours}, {_count(len(org.holidays), 'holiday')}"
        + (f"; escalation contact {org.escalation_contact}" if org.escalation_contact else "")
    )
    print(f"{_count(len(cfg.teams), 'team')}:")
    for t in cfg.teams:
        print(f"  {t.id:<14} {t.name} ({t.source_text()}, channel {t.channel})")
    print(f"{_count(len(cfg.boundaries), 'boundary', 'boundaries')}:")
    for b in cfg.boundaries:
        path = ", ".join(f"{lv.hours(b.sla_hours):g} h → {'/'.join(lv.notify)}" for lv in cfg.escalation_path(b))
        print(
            f"  {b.from_team} → {b.to_team}: {cfg.model_of(b)}, {_count(len(b.criteria), 'criterion', 'criteria')}, SLA {b.sla_hours} working h,"
            f" steward {b.steward}; escalation {path}"
        )
    print(f"stewards: {', '.join(cfg.stewards()) or 'none'}")
    ft = cfg.fasttrack
    print(
        f"fast-track: budget {ft.budget_percent:g}% of a team's items a month, backup approvers {', '.join(ft.backup_approvers) or 'none'}"
    )
    for r in cfg.rights:
        print(
            f"  {r.element}: standard set by {r.sets_standard}, exceptions granted by {', '.join(cfg.granters(r))}, executed by {r.owns_execution}"
        )

    period = schedule.period_of(timeutil.utcnow(), org.tz)
    due = schedule.digest_due(cfg, period).replace(tzinfo=UTC).astimezone(org.tz)
    print(
        f"schedule: digest '{cfg.schedule.digest}'; the next, for {schedule.label(period)}, on {due:%a %d %b %Y %H:%M} {org.timezone};"
        f" initiative prompts {_count(cfg.schedule.initiative_prompt_days, 'day')} before; catch-up {_count(cfg.schedule.catch_up_days, 'day')}"
    )
    p = cfg.pulse
    if p is None:
        print("pulse: off (no [pulse])")
    else:
        print(
            f"pulse: {'on' if p.enabled else 'off (enabled = false)'}; {p.send_at} in each member's time zone to"
            f" {_count(len(pulse.members(cfg)), 'person', 'people')} of {_count(len(cfg.pulse_teams()), 'team')}; shown for groups of"
            f" {p.min_group} or more; open {_count(p.open_days, 'day')}, a reminder after {_count(p.remind_after_days, 'day')};"
            + (
                " PULSE_SECRET not needed while off"
                if not p.enabled
                else " needs PULSE_SECRET (not checked: with --file no setting is read)"
                if args.file
                else " PULSE_SECRET not set"
                if secret
                else " PULSE_SECRET set"
            )
        )
    code = _check_slack(cfg, client) if client is not None else 0
    if secret is not None:
        raise secret  # after the summary (and the ids): exit 2, the line naming PULSE_SECRET on stderr
    return code


TOKEN_REFUSED = {"invalid_auth", "not_authed", "account_inactive", "token_revoked", "token_expired", "no_permission"}


def _check_slack(cfg, client) -> int:
    """check-config --slack: every id of the configuration looked up in the workspace with the bot token."""
    try:  # the token first: one refused, or Slack away, is one line, not a line per id
        Patience(60).call(client.auth_test)
    except Unread as exc:
        if str(exc) in TOKEN_REFUSED:
            raise Fail(f"SLACK_BOT_TOKEN: Slack refused it ({exc}); no id was checked") from None
        raise Fail(f"SLACK_API_URL: Slack did not answer ({exc}); no id was checked", code=1) from None
    print("checking every id against the workspace:")
    try:
        problems, notes = check_ids(cfg, client)
    except Exception as exc:  # out of reach in a way no single call caught
        raise Fail(f"SLACK_API_URL: cannot check the ids ({type(exc).__name__})", code=1) from None
    for line in notes:
        print(f"  note: {line}")
    for line in problems:
        print(f"  wrong: {line}")
    print(f"slack: {_count(len(problems), 'problem')}" + (", every id found" if not problems else ""))
    return 1 if problems else 0


def cmd_migrate(args) -> int:
    db = bootstrap.database(bootstrap.settings().database_url, need_schema=False)
    before, after = upgrade(db.engine)
    print(
        f"database at revision {after}"
        + (f" (was {before or 'empty'})" if before != after else " (already up to date)")
    )
    return 0


def cmd_manifest(args) -> int:
    if args.url and not args.url.startswith("https://"):
        raise Fail("--url: Slack only sends requests to https:// URLs")
    print(json.dumps(manifest(args.url), indent=2))
    return 0


def cmd_serve(args) -> int:
    from slack_sdk.errors import SlackApiError

    settings = bootstrap.settings()
    socket_mode = settings.slack_app_token is not None and bool(settings.slack_app_token.get_secret_value())
    required = ("slack_bot_token", "slack_app_token") if socket_mode else ("slack_bot_token", "slack_signing_secret")
    problems = settings.missing(*required)
    if problems:
        raise Fail(*problems)
    bootstrap.sealer(
        settings, bootstrap.process(settings.process_config)
    )  # PULSE_SECRET, when the process has a [pulse]
    bootstrap.database(settings.database_url).dispose()
    try:
        me = make_client(settings).auth_test()
    except SlackApiError as exc:
        raise Fail(f"SLACK_BOT_TOKEN: Slack refused it ({exc.response.get('error')})") from None
    except Exception as exc:
        raise Fail(f"SLACK_API_URL: cannot reach {settings.slack_api_url} ({type(exc).__name__})", code=1) from None
    log.info("connected to %s as %s", me.get("team"), me.get("user"))
    _forget_secrets()
    if socket_mode:
        return _serve_socket_mode(settings)

    web.serve(settings)
    return 0


def _forget_secrets() -> None:
    """Steward has read its settings: the Slack secrets leave the process environment, so no library
    picks one up behind its back (Bolt would read SLACK_BOT_TOKEN beside the client it is given, and
    warn at every start that it is unused) and no child process inherits them. gunicorn's workers are
    forks of this process: they get the settings, not the environment (`bot.entry.web`)."""
    for name in ("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "SLACK_APP_TOKEN", "PULSE_SECRET"):
        os.environ.pop(name, None)


def _serve_socket_mode(settings) -> int:
    """Socket Mode on slack-sdk's `websocket-client` adapter: when the connection ends, even without a
    close frame, the client asks for a new URL and reconnects at once (checked again every ping
    interval), with no busy loop meanwhile. The app-level token is tried first, with one
    `apps.connections.open`, so a refused token ends `serve` with one line rather than a traceback."""
    import signal
    import threading

    from slack_bolt.adapter.socket_mode.websocket_client import SocketModeHandler
    from slack_sdk.errors import SlackApiError

    app, _db = bootstrap.build(settings)
    token = settings.slack_app_token.get_secret_value()
    try:
        url = app.client.apps_connections_open(app_token=token)["url"]
    except SlackApiError as exc:
        error = exc.response.get("error")
        if error == "ratelimited":
            raise Fail(
                "SLACK_APP_TOKEN: Slack is rate limiting new connections for this app; try again in a minute", code=1
            ) from None
        raise Fail(f"SLACK_APP_TOKEN: Slack refused it ({error})") from None
    except Exception as exc:
        raise Fail(f"SLACK_API_URL: cannot reach {settings.slack_api_url} ({type(exc).__name__})", code=1) from None
    handler = SocketModeHandler(app, token)
    handler.client.wss_uri = url  # the URL just issued: its first connection needs no second call
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        handler.connect()
        log.info("Socket Mode: started (SIGTERM or Ctrl-C stops it)")
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        handler.close()
    return 0


def _moment(text: str | None, cfg):
    """--now: an ISO-8601 moment, in the organisation's time zone unless it has an offset; naive UTC."""
    if text is None:
        return timeutil.utcnow()
    try:
        moment = datetime.fromisoformat(text)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=cfg.organization.tz)
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    except (ValueError, OverflowError):
        raise Fail(f"--now: {text!r} is not an ISO-8601 date and time (e.g. 2026-11-02T09:00)") from None
    if not datetime(2000, 1, 1) <= moment <= datetime(2100, 1, 1):
        raise Fail(f"--now: {text!r} is outside 2000-2100")
    return moment


def _month(text: str | None) -> str | None:
    if text is None:
        return None
    try:
        parse_period(text)
    except ValueError:
        raise Fail(f"--month: {text!r} is not a month (YYYY-MM)") from None
    return text


def _running_from(moment):
    """A clock that starts at `moment` and runs on (for --now)."""
    import time

    start = time.monotonic()
    return lambda: moment + timedelta(seconds=time.monotonic() - start)


def cmd_run_job(args) -> int:
    if args.name not in JOBS:
        raise Fail(f"run-job: no job '{args.name}'; jobs: {', '.join(JOBS)}")
    if args.again and args.name != DIGEST:
        raise Fail(f"--again: only for `run-job digest` (it posts a month's digest again), not {args.name}")
    settings = bootstrap.settings()
    cfg = bootstrap.process(settings.process_config)
    month, now = _month(args.month), _moment(args.now, cfg)
    db = bootstrap.database(settings.database_url)
    deliverer = bootstrap.deliverer(settings, cfg, db, _running_from(now))
    run = Run(
        deliverer.ctx.cfg, db, deliverer, now, force=True, report=partial(print, flush=True)
    )  # the current members
    try:
        run_job(
            run, args.name, month, again=args.again
        )  # each line on stdout as it is said, once (the clock logs them instead)
    except Refused as exc:
        raise Fail(str(exc)) from None
    return 1 if run.failures else 0


def cmd_clock(args) -> int:
    settings = bootstrap.settings()
    cfg = bootstrap.process(settings.process_config)
    offset = _moment(args.now, cfg) - timeutil.utcnow() if args.now else timedelta(0)
    db = bootstrap.database(settings.database_url)
    now = lambda: timeutil.utcnow() + offset
    clock.serve(cfg, db, bootstrap.deliverer(settings, cfg, db, now), now=now)
    return 0


def cmd_outbox(args) -> int:
    """List what the outbox has not delivered (pending, being sent, failed, unknown), or retry one row."""
    settings = bootstrap.settings()
    db = bootstrap.database(settings.database_url)
    if args.action == "retry":
        if not args.key:
            raise Fail("outbox retry: say which row: `python -m bot outbox retry KEY`")
        row = outbox.retry(db, args.key, timeutil.utcnow())
        if row is None:
            raise Fail(f"outbox retry: no row with key {args.key!r}")
        if row.status != OutboxStatus.PENDING:
            raise Fail(f"outbox retry: {args.key} is {row.status}; only failed or unknown rows are retried")
        print(f"{args.key}: pending again; the clock's next sweep (or `python -m bot run-job outbox`) sends it")
        return 0
    if not 1 <= args.limit <= 10000:
        raise Fail("--limit: a number from 1 to 10000")
    statuses = [OutboxStatus.PENDING, OutboxStatus.SENDING, OutboxStatus.FAILED, OutboxStatus.UNKNOWN]
    rows = outbox.listing(db, [args.status] if args.status else statuses, limit=args.limit)
    if not rows:
        print(f"outbox: no {args.status} messages" if args.status else "outbox: nothing waiting, failed or unknown")
        return 0
    for row in rows:
        when = row.next_at if row.status == OutboxStatus.PENDING else row.updated_at
        error = "".join(ch if ch.isprintable() else "?" for ch in row.error or "")  # Slack's words, not terminal codes
        print(
            f"{row.status:<8} {row.key:<48} → {row.channel:<12} attempts {row.attempts:<3} {when:%Y-%m-%d %H:%M:%S} UTC"
            + (f"  {error}" if error else "")
        )
    return 0


def cmd_digest(args) -> int:
    settings = bootstrap.settings()
    cfg = bootstrap.process(settings.process_config)
    today = schedule.period_of(timeutil.utcnow(), cfg.organization.tz)
    period = _month(args.month) or schedule.shift(today, -1)
    if period > today:
        raise Fail(
            f"--month: {schedule.label(period)} has not started; the latest month to preview is {today} (month to date)"
        )

    db = bootstrap.database(settings.database_url)
    current = Deps(cfg, db).cfg  # the members as the clock sees them when it posts
    d = digest.compose(db, current, period, timeutil.utcnow(), sealer=bootstrap.sealer(settings, cfg))
    parts = slack_digest.messages(d)
    if args.blocks:
        print(json.dumps(parts, indent=2, ensure_ascii=False))
    else:
        print(slack_digest.preview(parts), end="")
    if args.chart:
        with open(args.chart, "wb") as f:
            f.write(digest.chart(d))
        print(f"chart written to {args.chart}", file=sys.stderr)
    return 0


def cmd_demo(args) -> int:
    return demo.run(args.dir)


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad argument is one line (like every other problem), pointing to --help."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: {message} (see `{self.prog} --help`)\n")


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m bot", description="Steward, a Slack bot for process stewardship.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser(
        "serve", help="serve Slack's requests on $PORT (gunicorn), or Socket Mode with SLACK_APP_TOKEN"
    ).set_defaults(func=cmd_serve)
    sub.add_parser("migrate", help="bring the database schema up to date (idempotent)").set_defaults(func=cmd_migrate)
    c = sub.add_parser("check-config", help="validate the process configuration and summarise it")
    c.add_argument("--file", help="a process TOML file (default: $PROCESS_CONFIG)")
    c.add_argument(
        "--slack",
        action="store_true",
        help="also look up every user, channel and user group id in the workspace (needs SLACK_BOT_TOKEN)",
    )
    c.set_defaults(func=cmd_check_config)
    m = sub.add_parser("manifest", help="print the Slack app manifest (JSON)")
    m.add_argument("--url", help="https://host where Steward is served (omit for Socket Mode)")
    m.set_defaults(func=cmd_manifest)
    c = sub.add_parser(
        "clock",
        help="run the scheduler until stopped: every job but outbox on its schedule (catch-up ticks), the outbox sweep",
    )
    c.add_argument("--now", help="rehearse: the clock believes it started at this moment (ISO-8601)")
    c.set_defaults(func=cmd_clock)

    jobs = ", ".join(JOBS)
    r = sub.add_parser(
        "run-job", help=f"run one job once, now: {jobs}", description=f"Run one job once, now. NAME is one of: {jobs}."
    )
    r.add_argument("name", metavar="NAME", choices=JOBS, help=f"one of: {jobs}")
    r.add_argument(
        "--now", help="the moment the job believes it is (ISO-8601; organisation time zone unless an offset is given)"
    )
    r.add_argument(
        "--month", help="the month (YYYY-MM): digest defaults to the previous month, prompts to the current one"
    )
    r.add_argument(
        "--again",
        action="store_true",
        help="digest only: post a month that was posted already once more, saying which message it replaces",
    )
    r.set_defaults(func=cmd_run_job)
    d = sub.add_parser("digest", help="print a month's digest in the terminal, without posting")
    d.add_argument("--month", help="YYYY-MM (default: the previous month)")
    d.add_argument("--blocks", action="store_true", help="print the Block Kit messages as JSON instead")
    d.add_argument("--chart", metavar="FILE", help="also write the trend chart PNG to FILE")
    d.set_defaults(func=cmd_digest)
    o = sub.add_parser("outbox", help="list messages not delivered (pending, failed, unknown), or retry one")
    o.add_argument("action", nargs="?", choices=["list", "retry"], default="list")
    o.add_argument("key", nargs="?", help="with retry: the row's key, as the list shows it")
    o.add_argument(
        "--status", choices=["pending", "sending", "failed", "unknown", "sent"], help="only rows in this state"
    )
    o.add_argument("--limit", type=int, default=100)
    o.set_defaults(func=cmd_outbox)
    e = sub.add_parser(
        "demo", help="a generated organisation in a throwaway SQLite database: its digest, chart and Block Kit"
    )
    e.add_argument("--dir", help="where to write the demo (default: a new temporary directory)")
    e.set_defaults(func=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(
        level=log_level(),  # a bad LOG_LEVEL: INFO here; a command that reads its settings refuses it
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    logging.getLogger("matplotlib.font_manager").setLevel(logging.ERROR)  # "building the font cache" on a first chart
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except Fail as exc:
        for line in exc.lines:
            print(line, file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `python -m bot check-config | head`: the reader has gone, nothing to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
