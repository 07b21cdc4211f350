"""Steward's assembly: settings, the process configuration, the app factory, the CLI and the clock."""
