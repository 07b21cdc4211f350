"""What the pulse-anonymity tests (tests/test_pulse_*.py added with them, tests/test_members_guests.py) use
from the other test modules, in one place: when tests/ moves (tests/support, rules, listeners, e2e), only these
imports change. The flow tests' fixtures (`served`, `app`) are taken as attributes (`flow.served`)."""

from tests import test_pulse_flow as flow
from tests.harness import cli, view_of
from tests.test_members import joined_event, org, people, refresh
from tests.test_pulse_anonymity import SECRET, config, isolations
from tests.test_storage import scratch_database

__all__ = [
    "SECRET",
    "cli",
    "config",
    "flow",
    "isolations",
    "joined_event",
    "org",
    "people",
    "refresh",
    "scratch_database",
    "view_of",
]
