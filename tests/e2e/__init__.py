"""End to end: the served app through signed requests, the CLI and the clock as subprocesses, Socket Mode."""
