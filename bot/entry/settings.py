"""Deployment settings, read from the environment or `.env` (the public contract in the README)."""

from __future__ import annotations

import ipaddress
import re

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from bot.domain.core.process import plain_error

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_HOST_NAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    slack_bot_token: SecretStr | None = None
    slack_signing_secret: SecretStr | None = None
    slack_app_token: SecretStr | None = None
    slack_api_url: str = "https://slack.com/api/"
    database_url: str = "sqlite:///steward.db"
    process_config: str = "process.toml"
    port: int = Field(default=3000, ge=1, le=65535)
    # keys the weekly pulse's answers (HMAC of user and week) so the database alone cannot tell whose
    # answer is whose; required when the process configuration has [pulse]. Keep it secret and stable.
    pulse_secret: SecretStr | None = None
    # tuning of `serve` (HTTP mode, gunicorn) and of every command's log
    host: str = "0.0.0.0"
    web_concurrency: int = Field(default=2, ge=1, le=64)  # gunicorn worker processes
    web_threads: int = Field(default=8, ge=1, le=256)  # threads per worker
    log_level: str = "INFO"
    home_figures_seconds: float = Field(default=60, ge=0, allow_inf_nan=False)  # read by bot.domain.home

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, value: str) -> str:
        level = value.strip().upper()
        if level not in LOG_LEVELS:
            raise ValueError(f"{value!r} is not a log level: one of {', '.join(LOG_LEVELS)}")
        return level

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        try:
            return str(ipaddress.ip_address(value.strip("[]")))
        except ValueError:
            pass
        if not _HOST_NAME.match(value):
            raise ValueError(f"{value!r} is not an IP address or a host name (e.g. 0.0.0.0, 127.0.0.1, ::)")
        return value

    @property
    def bind(self) -> str:
        """gunicorn's `bind`: HOST and PORT (an IPv6 address in brackets)."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @field_validator("pulse_secret")
    @classmethod
    def _pulse_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and value.get_secret_value() and len(value.get_secret_value()) < 16:
            raise ValueError("at least 16 characters (e.g. `python -c 'import secrets; print(secrets.token_hex(32))'`)")
        return value

    @field_validator("slack_api_url")
    @classmethod
    def _api_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        # slack-sdk joins method names onto the base URL: it needs the trailing slash.
        return value if value.endswith("/") else value + "/"

    @field_validator("slack_bot_token", "slack_app_token")
    @classmethod
    def _token(cls, value: SecretStr | None, info) -> SecretStr | None:
        prefix, kind = {
            "slack_bot_token": ("xoxb-", "a bot token"),
            "slack_app_token": ("xapp-", "an app-level token"),
        }[info.field_name]
        if value is not None and value.get_secret_value() and not value.get_secret_value().startswith(prefix):
            raise ValueError(f"must be {kind} ({prefix}…)")
        return value

    def missing(self, *names: str) -> list[str]:
        """The names of required settings that are empty, as environment variable names."""
        problems = []
        for name in names:
            value = getattr(self, name)
            if value is None or (isinstance(value, SecretStr) and not value.get_secret_value()):
                problems.append(f"{name.upper()}: required but not set")
        return problems


SECRETS = {"slack_bot_token", "slack_signing_secret", "slack_app_token", "pulse_secret", "database_url"}


class _LogSettings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    log_level: str = "INFO"


def log_level() -> str:
    """LOG_LEVEL (environment or `.env`) as every command logs at, read before any other setting: the
    level when it is valid, else INFO; a command that reads its settings then refuses the invalid one
    with its own line (`Settings.log_level`)."""
    level = _LogSettings().log_level.strip().upper()
    return level if level in LOG_LEVELS else "INFO"


class SettingsError(Exception):
    """Raised with one line per problem, each naming the environment variable."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


def load_settings(*required: str) -> Settings:
    try:
        settings = Settings()
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            name = str(err["loc"][0]) if err["loc"] else "settings"
            problems.append(f"{name.upper()}: {plain_error(err, show_input=name not in SECRETS)}")
        raise SettingsError(problems) from None
    problems = settings.missing(*required)
    if problems:
        raise SettingsError(problems)
    return settings
