"""The Slack app manifest, for "Create an app from a manifest"."""

from __future__ import annotations

COMMANDS = [
    {
        "command": "/handoff",
        "description": "Hand work to another team, checked against the boundary's criteria",
        "usage_hint": "[team] | list | cancel <number> | help",
    },
    {
        "command": "/fasttrack",
        "description": "Ask to skip a process gate; the decision-rights matrix names who decides",
        "usage_hint": "list | rights | help",
    },
]

BOT_SCOPES = [
    "commands",  # slash commands
    "chat:write",  # cards, DMs, updates in place
    "chat:write.public",  # post team cards in public channels Steward was not invited to
    "files:write",  # the digest's trend chart (files_upload_v2)
    "channels:join",  # join the public digest channel when an upload needs membership
    # The outbox looks for a message whose outcome is unknown (a time-out, a 5xx) before it sends again,
    # by the outbox key in the message's metadata: without these it cannot look, and marks it `unknown`.
    "channels:history",  # public channels (team cards, the digest)
    "groups:history",  # private channels Steward was invited to
    "im:history",  # DMs (receipts, decisions, fast-track cards)
    "im:write",  # conversations.open: the DM channel to look in
    "users:read",  # users.list: each member's time zone, for the weekly pulse at their own 10:00; users.info: bots apart
    "usergroups:read",  # usergroups.users.list: a team's members from its user group (`usergroup`); check-config --slack
    "channels:read",  # conversations.members / .info: a team's members from its public channel; check-config --slack
    "groups:read",  # the same for private channels Steward was invited to
]

BOT_EVENTS = [
    "app_home_opened",  # a person opened Steward's Home: it is published for them (no scope needed)
    "member_joined_channel",  # someone joined a team's channel: their welcome DM (and a member, with members_from_channel)
]


def manifest(url: str | None = None, name: str = "Steward") -> dict:
    """With `url` (https://host), an HTTP app whose every request goes to /slack/events; without, Socket Mode."""
    endpoint = f"{url.rstrip('/')}/slack/events" if url else None
    commands = [dict(c, should_escape=False, **({"url": endpoint} if endpoint else {})) for c in COMMANDS]
    settings = {
        "interactivity": {"is_enabled": True, **({"request_url": endpoint} if endpoint else {})},
        # app_home_opened needs no scope, and views.publish none beyond the bot token
        "event_subscriptions": {**({"request_url": endpoint} if endpoint else {}), "bot_events": BOT_EVENTS},
        "org_deploy_enabled": False,
        "socket_mode_enabled": endpoint is None,
        "token_rotation_enabled": False,
    }
    return {
        "display_information": {
            "name": name,
            "description": "Makes the seams between teams visible: handoffs, exceptions and the monthly sync.",
            "background_color": "#2c3e50",
        },
        "features": {
            "bot_user": {"display_name": name, "always_online": True},
            # the Home tab: each person's desk (views.publish on app_home_opened); the Messages tab holds the DMs
            "app_home": {
                "home_tab_enabled": True,
                "messages_tab_enabled": True,
                "messages_tab_read_only_enabled": True,
            },
            "slash_commands": commands,
        },
        "oauth_config": {"scopes": {"bot": BOT_SCOPES}},
        "settings": settings,
    }
