"""The rules: bot.domain (and storage) called directly, no server."""
