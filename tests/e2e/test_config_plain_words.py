"""`check-config` in plain words: every problem of a process configuration names its key and says what the
value must be, without pydantic's own phrases ("Input should be…", "Field required", "Extra inputs are
not permitted", links to errors.pydantic.dev), run as an operator runs it."""

from __future__ import annotations

from tests.support.harness import cli

PYDANTIC = ("Input should", "Field required", "Extra inputs", "errors.pydantic.dev", "Value error", "should have")

BAD = """
[organization]
timezone = 1
digest_channel = "C0SYNC"
model = "flat"
holidays = ["christmas", 2026-12-24T10:00:00]
nmae = "typo"

[[teams]]
id = "design"
name = ""
channel = "C0DESIGN"
members = "U0ALICE"

[[teams]]
id = "eng"
name = "Engineering"
channel = "C0ENG"
members_from_channel = 3

[[boundaries]]
from = "design"
to = "eng"
steward = "U0STEW"
sla_hours = 2.5
criteria = ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k"]
escalation = []

[[boundaries]]
from = "eng"
to = "design"
steward = "U0STEW"
escalation = [{ after_sla = "twice", notify = 5 }]

[schedule]
tick_minutes = "five"

[fasttrack]
budget_percent = "ten"
reasons = [7]

[pulse]
teams = "design"
"""


def test_every_problem_in_plain_words_naming_its_key(tmp_path):
    path = tmp_path / "process.toml"
    path.write_text(BAD)
    r = cli("check-config", "--file", str(path), cwd=tmp_path)
    assert r.returncode == 2 and r.stdout == "" and "Traceback" not in r.stderr, r.stderr
    lines = r.stderr.strip().splitlines()
    assert not [line for line in lines if any(p in line for p in PYDANTIC)], lines
    assert sorted(lines) == sorted(
        [
            "organization.name: required but not set",
            "organization.timezone: must be text in quotes (it is 1)",
            "organization.model: must be 'centralized', 'decentralized' or 'hybrid' (it is 'flat')",
            "organization.holidays[0]: must be a date, e.g. 2026-12-24 (it is 'christmas')",
            "organization.holidays[1]: must be a date without a time, e.g. 2026-12-24 (it is 2026-12-24T10:00:00)",
            "organization.nmae: unknown key",
            "teams[0].name: must not be empty",
            'teams[0].members: must be a list, e.g. ["a", "b"] (it is \'U0ALICE\')',
            "teams[1].members_from_channel: must be true or false (it is 3)",
            "boundaries[0].sla_hours: must be a whole number (it is 2.5)",
            "boundaries[0].criteria: at most 10 items (it has 11)",
            "boundaries[0].escalation: must not be empty",
            "boundaries[1].escalation[0].after_sla: must be a number (it is 'twice')",
            'boundaries[1].escalation[0].notify: a list of whom to notify, e.g. ["team", "steward"]',
            "schedule.tick_minutes: must be a whole number (it is 'five')",
            "fasttrack.budget_percent: must be a number (it is 'ten')",
            "fasttrack.reasons[0]: must be text in quotes (it is 7)",
            'pulse.teams: must be a list, e.g. ["a", "b"] (it is \'design\')',
        ]
    )


def test_an_empty_list_that_must_not_be_empty_is_reported_not_silent(tmp_path):
    """`teams = []` (or an empty escalation path) was skipped as a follow-on of another error that did
    not exist: check-config then exited 2 saying nothing at all."""
    path = tmp_path / "process.toml"
    path.write_text(
        '[organization]\nname = "Acme"\ndigest_channel = "C0SYNC"\n'
        '[[teams]]\nid = "a"\nname = "A"\nchannel = "C0A"\n[[teams]]\nid = "b"\nname = "B"\nchannel = "C0B"\n'
        '[[boundaries]]\nfrom = "a"\nto = "b"\nsteward = "U0S"\nescalation = []\n'
    )
    r = cli("check-config", "--file", str(path), cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.strip().splitlines() == ["boundaries[0].escalation: must not be empty"]
    path.write_text('teams = []\n[organization]\nname = "Acme"\ndigest_channel = "C0SYNC"\n')
    r = cli("check-config", "--file", str(path), cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.strip().splitlines() == ["teams: must not be empty"]


def test_a_problem_inside_a_list_is_not_said_twice(tmp_path):
    """An invalid level inside a path of one: the level's own problem, not also "must not be empty"."""
    path = tmp_path / "process.toml"
    path.write_text(
        '[organization]\nname = "Acme"\ndigest_channel = "C0SYNC"\n'
        '[[teams]]\nid = "a"\nname = "A"\nchannel = "C0A"\n[[teams]]\nid = "b"\nname = "B"\nchannel = "C0B"\n'
        '[[boundaries]]\nfrom = "a"\nto = "b"\nsteward = "U0S"\nescalation = [{ after_sla = 0, notify = ["team"] }]\n'
    )
    r = cli("check-config", "--file", str(path), cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        "boundaries[0].escalation[0].after_sla: more than 0 (it is 0)"
    ]
