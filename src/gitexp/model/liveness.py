"""When a run is alive: how often its agent beats, and how long a silence makes it lost.
Standard library only: `git.config` reads the settings against these defaults at start-up."""

from __future__ import annotations

DEFAULT_INTERVAL = 2.0  # s between heartbeats (`exp.heartbeat`)


def default_lost_after(interval: float) -> float:
    """How long a heartbeat may be silent before its run is lost, unless `exp.lostAfter`
    says otherwise: five missed beats and some slack for a slow store."""
    return max(5 * interval + 5, 10.0)
