"""A DVC pipeline shaped like DVC's tutorial, run with `git exp run -- dvc repro` (real DVC,
real dvclive): its metrics, plots, lock and outputs are the run's."""

from __future__ import annotations

import fcntl
import io
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from gitexp.model import metrics
from tests.dvcpipe import dvc, make_pipeline
from tests.helpers import assert_user_error, exp, exp_json, git, own_home
from tests.test_data import md5
from tests.test_report import frozen

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@dataclass(frozen=True)
class Pipeline:
    root: Path
    a: str  # train.n_est 20
    b: str  # train.n_est 5
    plain: tuple[str, str]  # two runs without metrics or outputs


@pytest.fixture(scope="module")
def pipe(tmp_path_factory: pytest.TempPathFactory) -> Pipeline:
    """Built once per session, not once per xdist worker: the tests only read it (clones of it,
    `git exp` reads in it), and building it is most of this module's time."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # the directory the session's workers share
    made = base / "dvcpipe-pipe.json"
    with (base / "dvcpipe-pipe.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the other worker waits for the one building
        if not made.exists():
            made.write_text(json.dumps(build_pipe(tmp_path_factory.mktemp("pipe"))))
    found = json.loads(made.read_text())
    return Pipeline(Path(found["root"]), found["a"], found["b"], tuple(found["plain"]))


def build_pipe(base: Path) -> dict[str, object]:
    with own_home(base):
        # Not repro'd: the runs are what run the stages. The remote absolute: the runs' work
        # directories and the teammates' clones share it.
        root = make_pipeline(base / "proj", remote=base / "remote", repro=False)

        def run(*argv: str) -> str:
            # in the foreground (it exits as the job did): no polling competes with the job
            proc = exp("run", "--", *argv, cwd=root)
            found = re.search(r"^gitexp: run (\S+) on ", proc.stderr, re.MULTILINE)
            assert found, proc.stderr
            return found[1]

        a = run("dvc", "repro")
        params = root / "params.yaml"
        params.write_text(params.read_text().replace("n_est: 20", "n_est: 5"))
        git("commit", "-qam", "fewer epochs", cwd=root)
        b = run("dvc", "repro")
        plain = [run("true"), run("python", "-c", "pass")]
    return {"root": str(root), "a": a, "b": b, "plain": plain}


def clone(pipe: Pipeline, where: Path) -> Path:
    """A teammate's clone with the runs fetched (its DVC remote is the same directory)."""
    git("clone", "-q", str(pipe.root), str(where), cwd=where.parent)
    git("fetch", "-q", "origin", "refs/experiments/*:refs/experiments/*", cwd=where)
    return where


def test_dvc_yaml_metrics_reach_ls_where_and_sort(pipe: Pipeline) -> None:
    rows = exp_json("ls", "--columns", "id,avg_prec.test,roc_auc.train",
                    "--where", "avg_prec.test > 0", "--sort", "avg_prec.test", cwd=pipe.root)
    got = {r["id"]: r for r in rows}
    assert set(got) == {pipe.a, pipe.b}  # the runs without metrics do not match
    shown = {rid: exp_json("show", rid, cwd=pipe.root)["result"]["metrics"]
             for rid in (pipe.a, pipe.b)}
    for mets in shown.values():  # nested keys of eval/metrics.json, flattened
        assert {"avg_prec.test", "avg_prec.train", "roc_auc.test", "roc_auc.train",
                "train.loss"} <= mets.keys()
        assert 0 < mets["avg_prec.test"] <= 1
    order = [r["id"] for r in rows]
    assert order == sorted(order, key=lambda rid: shown[rid]["avg_prec.test"])
    table = exp("ls", "--columns", "id,avg_prec.test", cwd=pipe.root).stdout
    assert f"{shown[pipe.a]['avg_prec.test']:.4g}" in table


def test_show_separates_inputs_from_outputs(pipe: Pipeline) -> None:
    out = exp("show", pipe.b, cwd=pipe.root).stdout
    inputs = out.split("\ninputs\n")[1].split("\nmetrics\n")[0]
    outputs = out.split("\noutputs\n")[1].split("\nlog")[0]
    data_md5 = md5((pipe.root / "data" / "data.csv").read_bytes())
    assert f"data/data.csv  {data_md5}" in inputs
    assert "model.pkl" not in inputs and "eval" not in inputs
    result = exp_json("show", pipe.b, cwd=pipe.root)["result"]
    for path in ("data/prepared", "data/features", "model.pkl", "eval"):
        assert f"{path}  {result['outputs'][path]['hash']}" in outputs
    assert "avg_prec.test = " in out


def test_diff_compares_metrics_inputs_and_outputs(pipe: Pipeline) -> None:
    out = exp("diff", pipe.a, pipe.b, cwd=pipe.root).stdout
    assert "train.n_est: 20 -> 5" in out
    assert "inputs (same)" in out
    metrics_part = out.split("\nmetrics\n")[1].split("\noutputs\n")[0]
    assert "avg_prec.test: " in metrics_part and "train.loss: " in metrics_part
    outputs_part = out.split("\noutputs\n")[1]
    assert "model.pkl: " in outputs_part and "eval: " in outputs_part
    assert "data/prepared" not in outputs_part  # the same split: unchanged, not listed
    report = exp_json("diff", pipe.a, pipe.b, cwd=pipe.root)
    assert report["outputs"]["model.pkl"]["a"] != report["outputs"]["model.pkl"]["b"]

    plain = exp("diff", *pipe.plain, cwd=pipe.root).stdout
    assert "no metrics" in plain and "metrics (same)" not in plain
    assert "no outputs" in plain


def test_dvclive_series_are_plotted(pipe: Pipeline, tmp_path: Path) -> None:
    png = tmp_path / "loss.png"
    proc = exp("plot", pipe.a, pipe.b, "-m", "train.loss", "-o", str(png), cwd=pipe.root)
    assert "train.loss of 2 run(s)" in proc.stdout + proc.stderr
    assert png.read_bytes().startswith(b"\x89PNG")
    series = git("show", f"refs/experiments/{pipe.a}:.gitexp-results/metrics.jsonl",
                 cwd=pipe.root)
    steps = [p["step"] for line in series.splitlines() if "train.loss" in (p := json.loads(line))]
    assert steps == list(range(20))  # one point per epoch, as dvclive logged them


def test_the_declared_roc_reaches_plot_report_and_mail_with_the_jobs_points(
        pipe: Pipeline, tmp_path: Path) -> None:
    """dvc.yaml's `ROC` (template simple, `y: {train.json: tpr, test.json: tpr}`) is no step
    series: its points, as the job wrote them, are kept and drawn."""
    from PIL import Image

    from gitexp.notify.maildir import MaildirOutbox
    from tests.test_notify_smtp import agent_done

    # the job's own files: eval/ as the run recorded it, from the DVC remote
    eval_hash = exp_json("show", pipe.a, cwd=pipe.root)["result"]["outputs"]["eval"]["hash"]
    listing = {e["relpath"]: e["md5"] for e in json.loads(_dvc_object(pipe, eval_hash))}
    ref = f"refs/experiments/{pipe.a}"
    kept = json.loads(git("show", f"{ref}:.gitexp-results/plots/plots.json", cwd=pipe.root))
    assert [p["id"] for p in kept["plots"]] == ["ROC"]  # dvclive's series stay series
    [roc] = kept["plots"]
    assert (roc["template"], roc["x_label"], roc["y_label"]) == ("simple", "fpr", "tpr")
    for split, series in zip(("train", "test"), roc["series"], strict=True):
        points = json.loads(_dvc_object(pipe, listing[f"plots/sklearn/roc/{split}.json"]))
        assert series["name"] == f"{split}.json"
        assert series["x"] == [p["fpr"] for p in points["roc"]]
        assert series["y"] == [p["tpr"] for p in points["roc"]]

    png = tmp_path / "roc.png"
    proc = exp("plot", pipe.a, pipe.b, "-m", "ROC", "-o", str(png), cwd=pipe.root)
    assert "ROC of 2 run(s)" in proc.stderr
    image = Image.open(png)
    assert image.info["Title"] == "ROC"
    assert image.info["Description"] == f"gitexp: dvc.yaml plot ROC of {pipe.a}, {pipe.b}"

    page = tmp_path / "page.html"
    exp("report", pipe.a, pipe.b, "-o", str(page), cwd=pipe.root)
    carried = frozen(page.read_text())["runs"]  # the web view's front end, frozen
    for run_id in (pipe.a, pipe.b):  # each run's page draws its ROC from the job's points
        [roc] = [p for p in carried[run_id]["plots"] if p["id"] == "ROC"]
        assert roc["series"] and all(s["x"] for s in roc["series"])

    agent_done(pipe.root, pipe.a)
    mails = [m for m in MaildirOutbox(pipe.root / ".git/gitexp/outbox").messages()
             if m["X-Gitexp-Run"] == pipe.a and m["X-Gitexp-Event"] == "succeeded"]
    [mail] = mails
    attached = {p.get_filename(): p.get_content() for p in mail.walk() if p.get_filename()}
    assert {"plot-ROC.png", "train.loss.png"} <= set(attached)
    assert Image.open(io.BytesIO(attached["plot-ROC.png"])).info["Title"] == "ROC"


def _dvc_object(pipe: Pipeline, md5: str) -> bytes:
    """An object of the pipeline's DVC remote (DVC 3's layout: files/md5/ab/cdef...)."""
    remote = pipe.root.parent / "remote"
    return (remote / "files" / "md5" / md5[:2] / md5[2:]).read_bytes()


def test_the_results_commit_keeps_the_run_lock(pipe: Pipeline) -> None:
    ref = f"refs/experiments/{pipe.b}"
    lock = git("show", f"{ref}:.gitexp-results/dvc/dvc.lock", cwd=pipe.root)
    assert git("show", f"{ref}:.gitexp-results/dvc/dvc.yaml", cwd=pipe.root) == \
        (pipe.root / "dvc.yaml").read_text()
    outputs = exp_json("show", pipe.b, cwd=pipe.root)["result"]["outputs"]
    for out in outputs.values():  # the lock pins exactly the outputs the run recorded
        assert out["hash"] in lock


def test_checkout_outputs_leaves_dvc_status_clean_and_again_is_a_no_op(
        pipe: Pipeline, tmp_path: Path) -> None:
    there = clone(pipe, tmp_path / "mate")
    dvc(there, "pull", "-q", "data/data.csv.dvc")  # the input, as a DVC user gets it
    exp("checkout", pipe.b, "--outputs", "--trust", cwd=there)
    outputs = exp_json("show", pipe.b, cwd=there)["result"]["outputs"]
    assert md5((there / "model.pkl").read_bytes()) == outputs["model.pkl"]["hash"]
    assert "up to date" in dvc(there, "status")
    assert json.loads((there / "eval" / "metrics.json").read_text())["avg_prec"]

    inodes = {p: os.stat(there / p).st_ino for p in ("eval", "model.pkl", "dvc.lock")}
    proc = exp("outputs", pipe.b, "--trust", cwd=there)  # byte-identical, directories too
    assert "restored eval" in proc.stdout
    assert {p: os.stat(there / p).st_ino for p in inodes} == inodes  # nothing rewritten
    assert "up to date" in dvc(there, "status")


def test_outputs_of_one_stage_restore_its_lock_entry_only(pipe: Pipeline,
                                                           tmp_path: Path) -> None:
    there = clone(pipe, tmp_path / "mate")
    exp("outputs", pipe.a, "model.pkl", "--trust", cwd=there)
    status = json.loads(dvc(there, "status", "--json"))
    changed_outs = {stage for stage, changes in status.items()
                    for change in changes if isinstance(change, dict) and "changed outs" in change}
    assert "train" not in changed_outs  # its lock entry came with model.pkl
    assert "evaluate" in changed_outs  # eval not restored: DVC still says so


def test_a_refused_checkout_leaves_head_index_and_work_tree_as_before(
        pipe: Pipeline, tmp_path: Path) -> None:
    there = clone(pipe, tmp_path / "mate")
    (there / "model.pkl").write_bytes(b"my own model\n")  # ignored, so no "uncommitted" refusal
    def state() -> tuple[str, str, bytes, str]:  # DVC's cache (.dvc/cache, .dvc/tmp) aside
        return (git("rev-parse", "HEAD", cwd=there), git("symbolic-ref", "HEAD", cwd=there),
                (there / ".git" / "index").read_bytes(),
                git("status", "--porcelain", "--ignored", "--", ".", ":!.dvc", cwd=there))

    before = state()
    for extra in ((), ("-b", "try-it")):
        proc = exp("checkout", pipe.a, "--outputs", "--trust", *extra, cwd=there, check=False)
        assert_user_error(proc, "model.pkl exists and differs")
        assert state() == before
        assert not git("branch", "--list", "try-it", cwd=there)
        assert (there / "model.pkl").read_bytes() == b"my own model\n"
        assert not (there / "eval").exists()


def test_dvc_yaml_is_untrusted(tmp_path: Path) -> None:
    """Declared paths outside the directory, through a symlink, or too large are not read."""
    work, outside = tmp_path / "work", tmp_path / "outside"
    (work / "eval").mkdir(parents=True)
    outside.mkdir()
    (outside / "m.json").write_text('{"stolen": 1}')
    (work / "eval" / "link.json").symlink_to(outside / "m.json")
    (work / "big.json").write_text('{"big": 1}' + " " * (2 << 20))
    (work / "eval" / "metrics.json").write_text('{"avg_prec": {"test": 0.5}}')
    (work / "dvc.yaml").write_text(
        "metrics:\n- ../outside/m.json\n- /etc/passwd\n- eval/link.json\n- big.json\n"
        "- eval/metrics.json\n- .git/config\nstages:\n  s:\n    cmd: 'true'\n"
        "    metrics:\n    - eval/link.json:\n        cache: false\n")
    assert metrics.from_files(work) == {"avg_prec.test": 0.5}
    (work / "dvc.yaml").write_text("metrics: [")  # broken: declares nothing, raises nothing
    assert metrics.from_files(work) == {}
