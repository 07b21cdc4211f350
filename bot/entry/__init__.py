"""The entry points: the CLI (`cli`), the web app (`app`, `web`), the clock (`clock`), the demo, settings
and the manifest. `bootstrap` is the one module where a process is wired: its dependencies and the domain
events' subscribers."""
