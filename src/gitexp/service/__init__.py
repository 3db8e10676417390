"""The developer's side: launch, observe, query, rerun, diff, gc, sharing, report."""
