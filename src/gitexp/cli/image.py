"""`git exp image build`: the project image (its requirements + gitexp), with docker or podman."""

from __future__ import annotations

import typer

from gitexp.backends import docker
from gitexp.cli import _ranges as ranges
from gitexp.cli import _render as r
from gitexp.cli._app import HELP, app
from gitexp.cli._common import open_repo
from gitexp.errors import ConfigError
from gitexp.git.config import Target

image_app = typer.Typer(help=HELP["image"],
                        no_args_is_help=True)
app.add_typer(image_app, name="image")


@image_app.command()
def build(
    target: str = typer.Option(None, "-t", "--target", callback=ranges.name,
                               help="A docker target: its engine, image and base_image."),
    tag: str = typer.Option(None, "--tag", help="The image name (default: the target's image, "
                                                "else gitexp/<repo>:latest)."),
    base: str = typer.Option(None, "--base", help="The base image, with python3 "
                                                  "(default: python:<this python>-slim)."),
) -> int:
    """Build the project image from templates/Dockerfile (or .gitexp/Dockerfile)."""
    repo, config = open_repo()
    chosen = config.target(target) if target else Target(name="docker", backend="docker")
    if chosen.backend != "docker":
        raise ConfigError(f"target {chosen.name!r} is a {chosen.backend} target, not docker",
                          hint=f"git config exp.target.{chosen.name}.backend docker")
    r.built(docker.build_image(repo, chosen, tag=tag, base=base))
    return 0
