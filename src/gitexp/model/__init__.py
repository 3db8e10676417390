"""The run model: records, results, ids, metrics and a run's state in a store. Pure data: no git."""
