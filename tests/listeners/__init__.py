"""The Slack adapter in-process: listeners with Bolt's context, renderers, templates, the deliverer."""
