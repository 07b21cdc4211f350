"""`serve` in HTTP mode: the WSGI app under gunicorn with threads (not Bolt's development server)."""

from __future__ import annotations

import os

from gunicorn.app.base import BaseApplication

from bot.entry.app import WebApp
from bot.entry.bootstrap import build
from bot.entry.settings import Settings, load_settings


def wsgi_app(settings: Settings | None = None):
    """Build the WSGI app (one per gunicorn worker) from `serve`'s settings, which a worker inherits as
    a fork of its master, or else from the environment. It does not connect to the database (`serve`
    checked it before gunicorn started), so a worker that restarts while the database is down still
    boots, and serves again as soon as it is back."""
    settings = settings or load_settings("slack_bot_token", "slack_signing_secret")
    app, db = build(settings)
    return WebApp(app, db, settings.slack_signing_secret.get_secret_value())


class _Gunicorn(BaseApplication):
    def __init__(self, options: dict, settings: Settings):
        self.options, self.settings = options, settings
        super().__init__()

    def load_config(self):
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self):
        return wsgi_app(self.settings)


def serve(settings: Settings) -> None:
    _Gunicorn(
        {
            "bind": f"{os.environ.get('HOST', '0.0.0.0')}:{settings.port}",
            "workers": int(os.environ.get("WEB_CONCURRENCY", "2")),
            "worker_class": "gthread",
            "threads": int(os.environ.get("WEB_THREADS", "8")),
            "timeout": 30,
            "graceful_timeout": 10,
            "accesslog": None,
            "errorlog": "-",
            "loglevel": os.environ.get("LOG_LEVEL", "info").lower(),
            "proc_name": "steward-web",
        },
        settings,
    ).run()
