"""`git exp run --sweep`: launch every point of a sweep and say where to look."""

from __future__ import annotations

from gitexp.cli import _render as r
from gitexp.errors import GitexpError
from gitexp.git import Repo
from gitexp.git.config import Config
from gitexp.service import launch, sweep


def launch_sweep(repo: Repo, config: Config, req: launch.LaunchRequest, specs: list[str],
                 max_parallel: int, *, detach: bool) -> sweep.Sweep:
    if not specs:
        raise GitexpError("--max-parallel needs a --sweep",
                          hint="git exp run --sweep lr=1e-3,1e-4 --max-parallel 1 -- ...")
    launched = sweep.launch(repo, config, req, sweep.parse_axes(specs),
                            max_parallel=max_parallel)
    r.sweep(launched, max_parallel, detach)
    return launched

