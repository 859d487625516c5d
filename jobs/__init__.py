"""Job entry points: the only things DAGs and the CLI call. Each takes Settings and explicit
parameters (the run date comes from the orchestrator), logs progress, and returns a dict of counts."""
