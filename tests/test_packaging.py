"""The wheel ships the CLI entry points, the hooks and the templates; docs cover every command."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from gitexp.cli._app import GROUPS, HELP, VERBS, app, load_all

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.xdist_group("wheel")
def test_wheel_contains_hooks_templates_and_entry_points(tmp_path: Path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(tmp_path), str(ROOT)], check=True, capture_output=True)
    wheel = next(tmp_path.glob("gitexp-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    shipped = {Path(n).name for n in names if n.startswith("gitexp/templates/")}
    expected = {p.name for p in (ROOT / "templates").iterdir() if not p.name.startswith(".")}
    assert expected <= shipped, expected - shipped
    assert "gitexp/hooks/stub.sh" in names  # package data beside the code that renders it
    # the web view's front end, the chart libraries and their licences ship in the wheel
    static = ROOT / "src" / "gitexp" / "ui" / "static"
    assert {f"gitexp/ui/static/{p.relative_to(static).as_posix()}" for p in static.rglob("*")
            if p.is_file()} <= set(names)
    assert "gitexp/ui/static/vendor/echarts.LICENSE" in names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "git-exp = gitexp.cli:entry" in text and "gitexp = gitexp.cli:entry" in text


def _commands() -> list[str]:
    from typer.main import get_command

    load_all()
    group = get_command(app)
    return [name for name, cmd in group.commands.items() if not cmd.hidden]  # type: ignore[attr-defined]


def test_the_list_of_verbs_is_every_verb_with_its_own_help():
    """`git exp -h` lists verbs from `HELP` without importing them: the list must be the real
    commands, each with the help its own module declares."""
    from typer.main import get_command

    load_all()
    group = get_command(app)
    real = dict(group.commands)  # type: ignore[attr-defined]
    assert set(HELP) == set(real) == set(VERBS)
    assert {name: cmd.help for name, cmd in real.items()} == HELP
    assert {n for n, cmd in real.items() if hasattr(cmd, "commands")} == set(GROUPS)
    listing = subprocess.run(["git", "exp", "-h"], capture_output=True, text=True).stdout
    assert all(f"  {name} " in listing for name in HELP)


@pytest.mark.parametrize("name", _commands())
def test_every_command_has_help_and_is_in_the_readme(name: str):
    proc = subprocess.run(["git", "exp", name, "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "Usage:" in proc.stdout
    readme = (ROOT / "README.md").read_text()
    assert f"git exp {name}" in readme, f"README.md does not document `git exp {name}`"
    # `git exp --help` is `git help exp`: the man page must know the command too
    assert f".B {name}\n" in (ROOT / "docs" / "git-exp.1").read_text()
