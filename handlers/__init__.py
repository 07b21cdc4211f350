"""The Slack adapter: one module per feature, each with `register(app, deps)`.

A listener parses the payload, calls a domain function, renders a template and calls Slack. Rules live
in the domain modules (`bot/handoffs.py`, …), never here.
"""

from handlers import fasttrack, handoff, initiative


def register_all(app, deps) -> None:
    handoff.register(app, deps)
    initiative.register(app, deps)
    fasttrack.register(app, deps)
