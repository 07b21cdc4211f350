"""What every feature shares: the versioned item and its event log (`items`), the outbox (`outbox`), domain
events (`events`), the process configuration (`process`), months and due times (`schedule`), time
(`timeutil`), working time (`worktime`) and deliveries from outside handled once (`inbound`). The core
imports no feature."""
