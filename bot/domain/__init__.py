"""The rules: one module per feature (handoffs, fasttrack, escalations, pulse, digest, review, members, home,
initiatives; sla, metrics and figures beside them) over a small core (`bot.domain.core`). Nothing here
imports Slack, Jinja2, templates, handlers or the entry points (import-linter checks it): the web app,
the clock, the CLI and the tests call these functions alike."""
