"""Business operations. Routes call these; these call the DB, the agent and the runner."""
