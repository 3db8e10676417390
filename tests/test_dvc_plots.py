"""The plots a `dvc.yaml` declares that are no step series (ROC and precision-recall curves,
confusion matrices, bars, images): read from each format DVC reads, kept through one
decoder, and drawn by `plot`, `report` and the final mail. Forged or oversized plots files,
in a store or a ref, give one line, never a traceback."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import pytest
from PIL import Image

from gitexp import charts
from gitexp.model import dvcplots
from gitexp.model.dvcplots import Plot, PlotsError, Series
from tests.conftest import make_repo
from tests.helpers import assert_user_error, exp, exp_json, git
from tests.test_report import frozen

PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 64
SVG = b"<svg xmlns='http://www.w3.org/2000/svg'><script>alert(1)</script></svg>"


def write(root: Path, files: dict[str, str | bytes]) -> Path:
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, bytes):
            (root / name).write_bytes(data)
        else:
            (root / name).write_text(data)
    return root


def by_id(root: Path) -> dict[str, Plot]:
    return {p.id: p for p in dvcplots.collect(root)}


ROC = {"roc": [{"fpr": 0.0, "tpr": 0.0, "threshold": 1.0},
               {"fpr": 0.25, "tpr": 0.625, "threshold": 0.5},
               {"fpr": 1.0, "tpr": 1.0, "threshold": 0.0}]}


def test_a_plot_id_whose_y_maps_files_draws_one_line_per_file(tmp_path: Path):
    """The tutorial's ROC: `{ROC: {template: simple, x: fpr, y: {file: tpr, ...}}}` over
    `{"roc": [...]}` files (an object holding the list)."""
    write(tmp_path, {
        "eval/roc/train.json": json.dumps(ROC), "eval/roc/test.json": json.dumps(
            {"roc": [{"fpr": 0.0, "tpr": 0.5}, {"fpr": 1.0, "tpr": 1.0}]}),
        "dvc.yaml": "plots:\n- ROC:\n    template: simple\n    x: fpr\n    y:\n"
                    "      eval/roc/train.json: tpr\n      eval/roc/test.json: tpr\n"
                    "    title: ROC curve\n"})
    roc = by_id(tmp_path)["ROC"]
    assert (roc.template, roc.title, roc.x_label, roc.y_label) == \
        ("simple", "ROC curve", "fpr", "tpr")
    assert roc.series == (Series("train.json", (0.0, 0.25, 1.0), (0.0, 0.625, 1.0)),
                          Series("test.json", (0.0, 1.0), (0.5, 1.0)))


def test_every_data_format_dvc_reads(tmp_path: Path):
    write(tmp_path, {
        "prc.tsv": "precision\trecall\n1\t0\n0.75\t0.5\n0.5\t1\n",
        "loss.csv": "epoch,loss,acc\n1,0.9,0.1\n2,0.5,0.6\n",
        "raw.csv": "3,0.25\n4,0.125\n",
        "pts.yaml": "- {a: 1, b: 2}\n- {a: 2, b: 4}\n",
        "list.json": json.dumps([{"x": 1, "y": 10}, {"x": 2, "y": 20}]),
        "bars.json": json.dumps([{"name": "petal", "importance": 0.4},
                                 {"name": "sepal", "importance": 0.1}]),
        "dvc.yaml": """\
plots:
- prc.tsv: {x: recall, y: precision, template: linear}
- loss.csv: {x: epoch, y: [loss, acc], x_label: epoch (1-based)}
- raw.csv: {header: false, x: '0', y: '1'}
- pts.yaml
- list.json: {template: scatter, x: x, y: y}
- bars.json: {template: bar_horizontal, x: importance, y: name}
"""})
    got = by_id(tmp_path)
    assert got["prc.tsv"].series == (Series("precision", (0.0, 0.5, 1.0), (1.0, 0.75, 0.5)),)
    assert [s.name for s in got["loss.csv"].series] == ["loss", "acc"]
    assert got["loss.csv"].series[1].y == (0.1, 0.6)
    assert (got["loss.csv"].x_label, got["loss.csv"].y_label) == ("epoch (1-based)", "y")
    assert got["raw.csv"].series[0].x == (3.0, 4.0) and got["raw.csv"].series[0].y == \
        (0.25, 0.125)
    # no x: the points are numbered (DVC's step); no y: the last field
    assert got["pts.yaml"].series == (Series("b", (0.0, 1.0), (2.0, 4.0)),)
    assert got["pts.yaml"].x_label == "step" and got["pts.yaml"].template == "linear"
    assert got["list.json"].template == "scatter"
    assert got["bars.json"].series[0].y == ("petal", "sepal")


def test_a_confusion_matrix_is_counted_where_it_is_read(tmp_path: Path):
    rows = "".join(f"{a},{p}\n" for a, p in [(0, 0)] * 500 + [(0, 1)] * 30 + [(1, 1)] * 70)
    write(tmp_path, {"cm.csv": "actual,predicted\n" + rows, "dvc.yaml": """\
stages:
  evaluate:
    cmd: 'true'
    plots:
    - cm.csv: {template: confusion, x: actual, y: predicted}
"""})
    [series] = by_id(tmp_path)["cm.csv"].series
    assert list(zip(series.x, series.y, series.n, strict=True)) == \
        [("0", "0", 500), ("0", "1", 30), ("1", "1", 70)]


def test_images_directories_and_what_is_no_plot(tmp_path: Path):
    """A directory is one plot per file (the closest declaration wins); images are kept as
    they are; dvclive's step series stay series; unsafe paths and fake images are dropped."""
    outside = tmp_path / "outside"
    write(outside, {"secret.json": json.dumps([{"a": 1}])})
    work = write(tmp_path / "work", {
        "plots/pic.png": PNG, "plots/vec.svg": SVG, "plots/fake.png": b"GIF89a not a png",
        "plots/sub/a.json": json.dumps([{"v": 1}, {"v": 2}]),
        "dvclive/plots/metrics/loss.tsv": "step\tloss\n0\t1\n",
        "dvclive/metrics.json": "{}",
        "big.json": json.dumps([{"v": 1}]) + " " * (2 << 20),
        "dvc.yaml": """\
plots:
- plots
- plots/sub: {template: scatter}
- dvclive/plots/metrics: {x: step}
- ../outside/secret.json
- /etc/passwd
- plots/link.json
- big.json
"""})
    (work / "plots" / "link.json").symlink_to(outside / "secret.json")
    got = by_id(work)
    assert set(got) == {"plots/pic.png", "plots/vec.svg", "plots/sub/a.json"}
    assert got["plots/pic.png"].image == PNG and got["plots/pic.png"].image_type == "png"
    assert got["plots/vec.svg"].image_type == "svg+xml"
    assert got["plots/sub/a.json"].template == "scatter"
    (work / "dvc.yaml").write_text("plots: [")  # broken: declares nothing, raises nothing
    assert dvcplots.collect(work) == []


def test_points_are_thinned_to_the_cap_keeping_both_ends(tmp_path: Path):
    n = dvcplots.MAX_POINTS * 3
    write(tmp_path, {"curve.csv": "x,y\n" + "".join(f"{i},{i * 2}\n" for i in range(n)),
                     "dvc.yaml": "plots:\n- curve.csv: {x: x, y: y}\n"})
    [series] = by_id(tmp_path)["curve.csv"].series
    assert len(series.x) <= dvcplots.MAX_POINTS
    assert (series.x[0], series.x[-1]) == (0.0, float(n - 1))
    assert all(y == 2 * x for x, y in zip(series.x, series.y, strict=True))


def test_encode_decode_round_trip_and_masking(tmp_path: Path):
    write(tmp_path, {"plots/pic.png": PNG, "p.json": json.dumps(
        [{"step": 1, "word": "hunter2-token"}]), "dvc.yaml": """\
plots:
- plots
- p.json: {template: bar_horizontal, x: step, y: word}
"""})
    plots = dvcplots.collect(tmp_path)
    files = dvcplots.encode(plots)
    assert set(files) == {"plots.json", "img-0.png"}
    assert dvcplots.decode(files["plots.json"], files.get) == plots
    masked = dvcplots.files_of(tmp_path, lambda b: b.replace(b"hunter2-token", b"***"))
    [bar] = [p for p in dvcplots.decode(masked["plots.json"], masked.get) if p.series]
    assert bar.series[0].y == ("***",)
    assert dvcplots.encode([]) == {} and dvcplots.decode(None, {}.get) == []


def index(*plots: dict[str, object], schema: int = 1) -> bytes:
    return json.dumps({"schema": schema, "plots": list(plots)}).encode()


LINE = {"id": "p", "template": "linear", "title": "t", "x_label": "x", "y_label": "y",
        "series": [{"name": "s", "x": [1, 2], "y": [3, 4]}]}


@pytest.mark.parametrize(("data", "images", "why"), [
    (b"{", {}, "not JSON"),
    (b"[" * 100_000, {}, "not JSON"),
    (b" " * (dvcplots.MAX_INDEX + 1), {}, "over 4 MB"),
    (json.dumps({"plots": 1}).encode(), {}, "no list of plots"),
    (index(*[LINE] * (dvcplots.MAX_PLOTS + 1)), {}, "more than 32 plots"),
    (index({**LINE, "template": "vega"}), {}, "unknown template"),
    (index({**LINE, "title": "a\x1b[31mred"}), {}, "title is not a short line"),
    (index({**LINE, "title": "x" * 5000}), {}, "title is not a short line"),
    (index({**LINE, "series": [{"name": "s", "x": [1], "y": [1, 2]}]}), {},
     "different lengths"),
    (index({**LINE, "series": [{"name": "s", "x": [{"a": 1}], "y": [1]}]}), {},
     "no number or short text"),
    (index({**LINE, "series": [{"name": "s", "x": [True], "y": [1]}]}), {},
     "no number or short text"),
    (b'{"schema": 1, "plots": [{"id": "p", "template": "linear", "title": "t", "x_label": "x",'
     b' "y_label": "y", "series": [{"name": "s", "x": [NaN], "y": [1]}]}]}', {},
     "no number or short text"),
    (index({**LINE, "series": [{"name": "s", "x": list(range(6000)),
                                "y": list(range(6000))}] * 2}), {}, "more than 10000"),
    (index({**LINE, "template": "confusion"}), {}, "different lengths"),  # no counts
    (index({"id": "i", "template": "image", "title": "t", "image": "../../.git/config"}), {},
     "names no image"),
    (index({"id": "i", "template": "image", "title": "t", "image": "img-0.png"}), {},
     "missing"),
    (index({"id": "i", "template": "image", "title": "t", "image": "img-0.png"}),
     {"img-0.png": b"MZ\x90\0 not a png"}, "no png"),
    (index({"id": "i", "template": "image", "title": "t", "image": "img-0.png"}),
     {"img-0.png": PNG + b"\0" * dvcplots.MAX_IMAGE}, "over 1 MB"),
    (index({"id": "i", "template": "image", "title": "t", "image": "img-0.png"},
           {"id": "j", "template": "image", "title": "t", "image": "img-0.png"}),
     {"img-0.png": PNG}, "names no image"),
], ids=lambda v: v if isinstance(v, str) else "")
def test_the_decoder_refuses_what_encode_never_writes(data: bytes, images: dict[str, bytes],
                                                      why: str):
    with pytest.raises(PlotsError) as caught:
        dvcplots.decode(data, images.get)
    assert why in caught.value.message and "\n" not in caught.value.message


def test_a_newer_schema_says_so():
    with pytest.raises(PlotsError, match="schema 2"):
        dvcplots.decode(index(LINE, schema=2), {}.get)


def test_render_plot_overlays_runs_in_their_colours():
    roc = Plot("ROC", "simple", "ROC", "fpr", "tpr", (
        Series("train", (0.0, 0.5, 1.0), (0.0, 0.8, 1.0)),
        Series("test", (0.0, 0.5, 1.0), (0.0, 0.6, 1.0))))
    other = Plot("ROC", "simple", "ROC", "fpr", "tpr", (Series("train", (0.0, 1.0),
                                                                (0.2, 1.0)),))
    image = Image.open(io.BytesIO(charts.render_plot({"run-a": roc, "run-b": other})))
    assert image.info["Title"] == "ROC"
    assert image.info["Description"] == "gitexp: dvc.yaml plot ROC of run-a, run-b"
    cm = Plot("cm", "confusion_normalized", "Confusion", "actual", "predicted", (
        Series("predicted", ("0", "0", "1"), ("0", "1", "1"), (5, 1, 4)),))
    assert charts.render_plot({"a": cm, "b": cm}).startswith(b"\x89PNG")
    bars = Plot("b", "bar_horizontal_sorted", "b", "importance", "name", (
        Series("name", (0.4, 0.1), ("petal", "sepal")),))
    assert charts.render_plot({"a": bars}).startswith(b"\x89PNG")


# -- end to end: a job that writes plots (no DVC needed to read them) -----------------------
JOB = f"""\
import json, os
os.makedirs("out/images", exist_ok=True)
pts = [{{"fpr": i / 10, "tpr": (i / 10) ** 0.5}} for i in range(11)]
json.dump({{"roc": pts}}, open("out/roc.json", "w"))
with open("out/cm.csv", "w") as f:
    f.write("actual,predicted\\n" + "0,0\\n" * 8 + "0,1\\n" * 2 + "1,1\\n" * 9 + "1,0\\n")
open("out/images/sample.png", "wb").write({PNG!r})
open("out/images/vector.svg", "wb").write({SVG!r})
"""
DVC_YAML = """\
stages:
  evaluate:
    cmd: python job.py
    plots:
    - out/cm.csv: {template: confusion, x: actual, y: predicted, title: <b>Confusion</b>}
    - out/images
plots:
- ROC:
    x: fpr
    y: {out/roc.json: tpr}
"""


@pytest.fixture
def plotted(tmp_path: Path) -> tuple[Path, str]:
    from tests.test_notify_smtp import agent_done

    repo = make_repo(tmp_path / "proj", {"job.py": JOB, "dvc.yaml": DVC_YAML,
                                         ".gitignore": "out/\n"})
    exp("run", "--", "python", "job.py", cwd=repo)
    run_id = exp_json("ls", cwd=repo)[0]["id"]
    agent_done(repo, run_id)
    return repo, run_id


def test_declared_plots_reach_plot_report_and_mail(plotted: tuple[Path, str]):
    from gitexp.notify.maildir import MaildirOutbox

    repo, run_id = plotted
    ref = f"refs/experiments/{run_id}"
    listed = git("ls-tree", "--name-only", f"{ref}:.gitexp-results/plots", cwd=repo).split()
    assert listed == ["img-0.png", "img-1.svg", "plots.json"]
    kept = json.loads(git("show", f"{ref}:.gitexp-results/plots/plots.json", cwd=repo))
    [roc] = [p for p in kept["plots"] if p["id"] == "ROC"]
    assert roc["series"][0]["x"] == [i / 10 for i in range(11)]
    assert roc["series"][0]["y"] == [(i / 10) ** 0.5 for i in range(11)]

    proc = exp("plot", run_id, cwd=repo)
    out = repo / ".git" / "gitexp" / "out"
    assert "out/cm.csv" in proc.stderr and "ROC" in proc.stderr
    assert Image.open(out / "plot-ROC.png").info["Title"] == "ROC"
    assert Image.open(out / "plot-out_cm.csv.png").info["Title"] == "<b>Confusion</b>"
    assert (out / f"plot-{run_id}-out_images_sample.png").read_bytes() == PNG
    exp("plot", run_id, "-m", "ROC", "-o", "roc.png", cwd=repo)  # by id, to the path asked
    assert Image.open(repo / "roc.png").info["Title"] == "ROC"
    assert_user_error(exp("plot", run_id, "-m", "AUC", cwd=repo, check=False),
                      "no series or plot named AUC", "declared plots: ROC, out/cm.csv")

    exp("report", run_id, "-o", "page.html", cwd=repo)
    page = (repo / "page.html").read_text()
    assert "<b>Confusion" not in page and "\\u003cb\\u003eConfusion" in page  # JSON-escaped
    shown = {p["id"]: p for p in frozen(page)["runs"][run_id]["plots"]}
    assert shown["out/cm.csv"]["title"] == "<b>Confusion</b>"  # drawn as text, never markup
    assert shown["ROC"]["series"][0]["x"] == roc["series"][0]["x"]
    images = [p["image"] for p in shown.values() if "image" in p]
    assert f"data:image/png;base64,{base64.b64encode(PNG).decode()}" in images
    assert any(i.startswith("data:image/svg+xml;base64,") for i in images)

    [mail] = MaildirOutbox(repo / ".git/gitexp/outbox").messages()
    parts = {p.get_filename(): p for p in mail.walk() if p.get_filename()}
    assert set(parts) == {"plot-ROC.png", "plot-out_cm.csv.png", "out_images_sample.png",
                          "out_images_vector.svg"}
    assert parts["out_images_sample.png"].get_content() == PNG
    assert parts["out_images_vector.svg"].get("Content-Disposition").startswith("attachment")
    assert "cid:out_images_vector.svg" not in str(mail)


def forge(repo: Path, run_id: str, plots_json: bytes) -> None:
    """Replace the run's plots.json in its results commit, with plain git."""
    ref = f"refs/experiments/{run_id}"
    blob = git("hash-object", "-w", "--stdin", cwd=repo, input=plots_json).strip()

    def tree_with(treeish: str, name: str, entry: str) -> str:
        rows = [r for r in git("ls-tree", treeish, cwd=repo).splitlines()
                if not r.endswith("\t" + name)]
        return git("mktree", cwd=repo, input=("\n".join([*rows, entry]) + "\n").encode()
                   ).strip()
    plots = tree_with(f"{ref}:.gitexp-results/plots", "plots.json",
                      f"100644 blob {blob}\tplots.json")
    results = tree_with(f"{ref}:.gitexp-results", "plots", f"040000 tree {plots}\tplots")
    top = tree_with(f"{ref}^{{tree}}", ".gitexp-results",
                    f"040000 tree {results}\t.gitexp-results")
    message = git("log", "-1", "--format=%B", ref, cwd=repo)
    parent = git("rev-parse", f"{ref}^", cwd=repo).strip()
    commit = git("commit-tree", top, "-p", parent, cwd=repo, input=message.encode()).strip()
    git("update-ref", ref, commit, cwd=repo)


@pytest.mark.parametrize(("forged", "why"), [
    (b"\x00{not json", "not JSON"),
    (b" " * (dvcplots.MAX_INDEX + 10), "over 4 MB"),
    (index({**LINE, "title": "\u202eevil"}), "title is not a short line"),
], ids=["not-json", "giant", "bidi"])
def test_a_forged_plots_file_in_a_ref_is_one_line_never_a_traceback(
        plotted: tuple[Path, str], forged: bytes, why: str):
    repo, run_id = plotted
    forge(repo, run_id, forged)
    proc = exp("plot", run_id, "-m", "ROC", cwd=repo, check=False)
    assert_user_error(proc, "no series or plot named ROC", why)  # it cannot be read
    proc = exp("plot", run_id, cwd=repo, check=False)  # the other images are unreadable too
    assert_user_error(proc, why)
    exp("report", run_id, "-o", "page.html", cwd=repo)
    page = (repo / "page.html").read_text()
    shown = frozen(page)["runs"][run_id]
    assert shown["plots"] == [] and why in shown["plots_problem"]
    assert shown["plots_problem"].startswith("declared plots are damaged: ")
    assert "\u202e" not in page
