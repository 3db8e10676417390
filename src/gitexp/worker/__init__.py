"""The worker's side: the agent, its checkout, the bootstrap of a remote worker, sweep turns."""
