"""The house rules, read from the source (the AST): no import cycles, each side imports only
what it may, function-level imports only for heavy optional libraries, thin CLI verbs, and
one owner for a run's state files. docs/architecture.md states the same rules for people."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "gitexp"

# What each layer must never import (a module's layer is its first package under gitexp/).
FORBIDDEN = {
    "model": {"git", "service", "worker", "backends", "data", "notify", "hooks", "cli"},
    "worker": {"service", "cli"},
    "service": {"notify", "cli"},
    "stores": {"model", "service", "worker", "backends", "data", "notify", "hooks", "cli"},
    "git": {"service", "worker", "backends", "data", "notify", "hooks", "cli"},
    "backends": {"service", "notify", "hooks", "cli"},
    "data": {"service", "backends", "notify", "hooks", "cli"},
    "notify": {"cli", "hooks"},
    "hooks": {"cli"},
    # the web view stands beside service: it reads runs through it, and draws in the browser
    "ui": {"cli", "notify", "worker", "hooks"},
}
# Libraries a function may import for itself, and why: each is heavy, optional, or both, and
# only some commands need it. Everything else (gitexp's own modules included, but for the
# few named here) is imported at the top of the module, where the import graph can be seen.
DEFERRED = {
    "google": "google-cloud-* (extras gcs/gce): seconds to import; only gs:// stores, GCE",
    "dvc": "DVC (extra dvc): ~1 s to import; only runs that use DVC data",
    "dvc_data": "part of DVC (extra dvc)",
    "fsspec": "DVC's file systems (extra dvc)",
    "kubernetes": "the Kubernetes client (extra kubernetes): only that target",
    "paramiko": "SSH (extra ssh): only ssh:// stores and ssh targets",
    "matplotlib": "plots (extra plots): ~0.3 s to import; only when a curve is drawn",
    "yaml": "PyYAML: only params.yaml, dvc.yaml and Kubernetes manifests need it",
    "rich": "~40 ms to import; only the commands that draw a table or a bar",
    "importlib.metadata": "~15 ms to import; only when the packages of a run are listed",
    "concurrent.futures": "threads: only when several remote runs are looked at together",
    "multiprocessing": "~15 ms to import; only a first `ls` of thousands of runs, which "
                       "reads them on every core",
    # gitexp's own, where a start-up path must not wait for them (the import graph and the
    # cycle check above still count these imports)
    "gitexp.notify.mailer": "the agent's mail (email, mailbox, html: tens of ms): loaded "
                            "once the job has started, so the job's first line never waits",
}
# A git hook must cost next to nothing per commit: the runner imports by hand, late.
HOOK_RUNNER = "gitexp.hooks.run"
VERB_MAX_LINES = 60
STATE_FILES = ("status.json", "heartbeat", "handle.json", "result.json", "cancel")
STATE_OWNER = "gitexp.model.runstate"


@dataclass(frozen=True)
class Import:
    module: str  # the importing module
    target: str  # the imported module, or `module.name` for `from module import name`
    line: int
    in_function: bool
    type_only: bool  # under `if TYPE_CHECKING:` - never executed


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(SRC).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


MODULES = modules()


def _resolve(name: str) -> str:
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name


def imports(module: str) -> Iterator[Import]:
    tree = ast.parse(MODULES[module].read_text())
    type_only = {id(node) for block in ast.walk(tree) if isinstance(block, ast.If)
                 and "TYPE_CHECKING" in ast.unparse(block.test) for node in ast.walk(block)}
    inside = {id(node) for fn in ast.walk(tree)
              if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef))
              for node in ast.walk(fn)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [f"{node.module}.{a.name}" for a in node.names]  # a module, or a name in one
        else:
            continue
        for name in names:
            yield Import(module, name, node.lineno, id(node) in inside, id(node) in type_only)


def graph() -> dict[str, set[str]]:
    """gitexp module -> the gitexp modules it runs the import of (at any depth, but not
    under TYPE_CHECKING). Importing `a.b.c` also imports the packages `a.b` and `a`."""
    edges: dict[str, set[str]] = {m: set() for m in MODULES}
    for module in MODULES:
        for imp in imports(module):
            if imp.type_only or not imp.target.startswith("gitexp"):
                continue
            target = _resolve(imp.target)
            parts = target.split(".")
            for i in range(1, len(parts) + 1):
                dep = ".".join(parts[:i])
                # a package's own modules import it while it is being imported: no cycle
                if dep in MODULES and dep != module and not module.startswith(dep + "."):
                    edges[module].add(dep)
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and (PACKAGE / parts[1]).is_dir() else ""


# -- the rules ----------------------------------------------------------------------------
def test_no_import_cycle_even_counting_function_level_imports():
    assert cycles(graph()) == []


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_each_side_imports_only_what_it_may():
    broken = []
    for module in MODULES:
        banned = FORBIDDEN.get(layer(module), set())
        for imp in imports(module):
            target = _resolve(imp.target) if imp.target.startswith("gitexp") else ""
            if target and layer(target) in banned and layer(target) != layer(module):
                broken.append(f"{module}:{imp.line} imports {target}")
    assert broken == []


def test_nothing_imports_the_cli():
    broken = [f"{m}:{i.line}" for m in MODULES if layer(m) != "cli" and m != "gitexp.__main__"
              for i in imports(m) if _resolve(i.target).startswith("gitexp.cli")]
    assert broken == []


def test_only_the_cli_imports_the_web_view():
    """`gitexp.ui` (its server needs the `ui` extra) is reached from its verbs alone."""
    broken = [f"{m}:{i.line}" for m in MODULES if layer(m) not in ("ui", "cli")
              for i in imports(m) if _resolve(i.target).startswith("gitexp.ui")]
    assert broken == []
    drawing = [f"{m}:{i.line}" for m in MODULES if layer(m) == "ui"
               for i in imports(m) if _resolve(i.target) == "gitexp.charts"]
    assert drawing == []  # the browser draws: no matplotlib on the way to a page


def test_function_level_imports_are_heavy_optional_libraries_only():
    broken = []
    for module in MODULES:
        if module == HOOK_RUNNER:
            continue
        for imp in imports(module):
            if imp.in_function and not imp.type_only and not any(
                    imp.target == lib or imp.target.startswith(lib + ".") for lib in DEFERRED):
                broken.append(f"{module}:{imp.line} imports {imp.target} in a function")
    assert broken == []


def test_the_hook_runner_needs_only_the_standard_library_to_start():
    top = [i.target for i in imports(HOOK_RUNNER) if not i.in_function and not i.type_only]
    assert [t for t in top if t.startswith("gitexp")] == []


def test_cli_verbs_are_thin_and_never_import_each_other():
    verbs = {m for m in MODULES if layer(m) == "cli" and not m.rpartition(".")[2].startswith("_")
             and m != "gitexp.cli"}
    assert len(verbs) > 15
    long = {v: n for v in verbs if (n := len(MODULES[v].read_text().splitlines()))
            > VERB_MAX_LINES}
    assert long == {}
    crossing = [f"{v}:{i.line} imports {i.target}" for v in verbs for i in imports(v)
                if _resolve(i.target) in verbs]
    assert crossing == []


def test_only_the_run_state_module_names_the_state_files():
    names = "|".join(re.escape(name) for name in STATE_FILES)
    # as a store key: run_key(id, "heartbeat"), self.key("cancel"), "runs/{id}/result.json"
    pattern = re.compile(rf'key\([^)]*"({names})"|/({names})"')
    named = [f"{m}:{n}" for m, path in MODULES.items() if m != STATE_OWNER
             for n, line in enumerate(path.read_text().splitlines(), 1) if pattern.search(line)]
    assert named == []


@pytest.mark.parametrize("rule", sorted(FORBIDDEN))
def test_every_layer_with_rules_exists(rule: str):
    assert (PACKAGE / rule).is_dir()


def test_the_architecture_page_states_the_import_rules():
    page = (SRC.parent / "docs" / "architecture.md").read_text()
    head = page[:page.index("## ", page.index("## ") + 1)]  # the first section
    for rule in ("worker never imports service", "service never imports notify",
                 "model imports nothing of git", "nothing imports cli",
                 "nothing but cli imports ui"):
        assert rule in head, rule


def test_no_relative_imports():
    """Every import names its module in full, so the checks above see all of them."""
    relative = [f"{m}:{n.lineno}" for m, path in MODULES.items()
                for n in ast.walk(ast.parse(path.read_text()))
                if isinstance(n, ast.ImportFrom) and n.level]
    assert relative == []


@pytest.mark.parametrize("package", ["stores", "backends", "notify"])
def test_registries_import_by_name_only_within_their_own_layer(package: str):
    """Registries import their kinds by name (`import_module`), which the import graph above
    cannot see: each may name only modules of its own package."""
    registry = import_module(f"gitexp.{package}").REGISTRY
    named = {entry.partition(":")[0] for entry in registry.values()}
    assert named and all(name.startswith(f"gitexp.{package}.") and name in MODULES
                         for name in named), named
