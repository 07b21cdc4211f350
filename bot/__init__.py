"""Steward: `bot.domain` holds the rules (no Slack, no Jinja2), `bot.entry` the entry points that assemble
them with the Slack adapter (`handlers`), the templates and storage. `python -m bot` is `bot.entry.cli`."""
