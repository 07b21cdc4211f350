"""What the tests share: the served-app harness, the fake Slack and Socket Mode, each feature's helpers."""
