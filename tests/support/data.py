"""The tests' data files: the organisation most tests run (process.toml), the pulse's (pulse.toml), snapshots."""

from __future__ import annotations

from pathlib import Path

DATA = Path(__file__).resolve().parents[1] / "data"
PROCESS = DATA / "process.toml"
PULSE = DATA / "pulse.toml"
SNAPSHOTS = DATA / "snapshots"
