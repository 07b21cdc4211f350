"""`serve` in HTTP mode: the WSGI app under gunicorn with threads (not Bolt's development server)."""

from __future__ import annotations

import os

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


def options(settings: Settings) -> dict:
    """gunicorn's configuration, from the validated settings (HOST, PORT, WEB_CONCURRENCY, WEB_THREADS, LOG_LEVEL)."""
    return {
        "bind": settings.bind,
        "workers": settings.web_concurrency,
        "worker_class": "gthread",
        "threads": settings.web_threads,
        "timeout": 30,
        "graceful_timeout": 10,
        "accesslog": None,
        "errorlog": "-",
        "loglevel": settings.log_level.lower(),
        "proc_name": "steward-web",
    }


def serve(settings: Settings) -> None:
    # gunicorn reads WEB_CONCURRENCY with int() when its configuration module is first imported: it is
    # imported here, for `serve` alone, once the setting is validated (so `3.0`, which the setting takes,
    # or a value no other command reads cannot end any command in a traceback).
    os.environ["WEB_CONCURRENCY"] = str(settings.web_concurrency)
    from gunicorn.app.base import BaseApplication

    class _Gunicorn(BaseApplication):
        def __init__(self, options: dict, settings: Settings):
            self.options, self.settings = options, settings
            super().__init__()

        def load_config(self):
            for key, value in self.options.items():
                self.cfg.set(key, value)

        def load(self):
            return wsgi_app(self.settings)

    _Gunicorn(options(settings), settings).run()
