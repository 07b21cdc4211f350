"""The Slack Web API client every process uses: base URL and token from settings, and no automatic
retries. chat.postMessage has no idempotency key, so retrying it after a 5xx or a cut connection can
post twice: the outbox (`handlers.delivery`) decides what is retried, after looking whether Slack acted, and
honours Retry-After itself. A `views.open` is retried only after a 429, within its trigger's 3 s life (`handlers.common.open_view`)."""

from __future__ import annotations

from slack_sdk import WebClient

TIMEOUT = 5  # seconds for one Web API call


def make_client(settings, timeout: float = TIMEOUT) -> WebClient:
    """`settings`: `bot.entry.settings.Settings` (its `slack_bot_token` and `slack_api_url`)."""
    token = settings.slack_bot_token.get_secret_value() if settings.slack_bot_token else None
    return WebClient(token=token, base_url=settings.slack_api_url, timeout=timeout, retry_handlers=[])
