"""`--where`, `--sort`, `--limit` in-process: the expression language against rows as `ls`
sees them, table-driven, and `listing` on a real repository.

Fast on purpose (see tests/test_core_inprocess.py): mutation testing relies on these, not on
the `git exp ls` tests that reach the same code in seconds."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from gitexp.errors import GitexpError
from gitexp.git import Repo
from gitexp.git.config import Config
from gitexp.model import ids
from gitexp.model.record import STATUSES, Environment, Result, RunRecord, encode_message
from gitexp.model.row import SUMMARY, Row, row_of
from gitexp.service import where
from gitexp.service.where import Query, compile_where, select, sort_keys, value_of
from tests.helpers import git
from tests.test_core_inprocess import commit_run, ok, record


@pytest.fixture
def grepo(repo: Path) -> Repo:
    return Repo.discover(repo)


def make_row(run_id: str = "a-1", *, status: str | None = "succeeded", target: str = "local",
             launched_at: float = 1000.0, sweep: str | None = None,
             argv: list[str] | None = None, params: dict[str, Any] | None = None,
             **metrics: Any) -> Row:
    """A row exactly as `row_of` makes it (what the index stores and `ls` filters)."""
    rec = RunRecord(id=run_id, argv=argv or ["python", "train.py"], cwd="", base=None,
                    branch="main", user="u", launched_at=launched_at, target=target,
                    backend="local", store="file:///s", env=Environment(python="3", platform="p"),
                    params=params or {}, sweep=sweep)
    result = None if status is None else Result(status=status, metrics=metrics)
    return row_of(rec, result, "c" * 40)


# One run with a bit of everything: numbers, strings, booleans, argv and record params,
# nested params, and names that are missing.
ROW = make_row(
    argv=["python", "train.py", "--lr", "0.01", "--opt", "adam", "--epochs=10"],
    params={"quote": "a'b", "train.batch": 32, "a.depth": 1, "b.depth": 2, "loss": 9.0},
    loss=0.25, acc=0.9, flag=True, off=False, delta=-2.0, label="best", big=1500.0, tiny=0.001,
    **{"val.loss": 0.3})


# (expression, whether ROW matches it)
MATCHES: list[tuple[str, bool]] = [
    # numbers, each operator on both sides of its boundary
    ("loss < 0.3", True), ("loss < 0.25", False), ("loss <= 0.25", True),
    ("loss <= 0.2", False), ("loss > 0.2", True), ("loss > 0.25", False),
    ("loss >= 0.25", True), ("loss >= 0.3", False), ("loss == 0.25", True),
    ("loss = 0.25", True), ("loss == 0.3", False), ("loss = 0.3", False),
    ("loss != 0.25", False), ("loss != 0.3", True), ("loss<0.3", True),
    # number syntax: signs, leading/trailing dot, exponents
    ("delta < -1", True), ("delta > -3", True), ("acc < +1", True), ("loss == .25", True),
    ("epochs == 10.", True), ("big == 1.5e3", True), ("big == 1.5E+3", True),
    ("tiny == 1e-3", True), ("tiny < 1e-4", False),
    # a number in a param from argv, and a number written as a string
    ("lr < 0.1", True), ("lr == 0.01", True), ("epochs >= 10", True), ("epochs > 10", False),
    ("loss == '0.25'", True), ("epochs == '10'", True), ("epochs == ten", False),
    ("epochs != ten", True),
    # strings: bare, single- or double-quoted, with escapes; compared as text, case matters
    ("status == succeeded", True), ("status == 'succeeded'", True),
    ('status == "succeeded"', True), ("status != failed", True), ("status == failed", False),
    ("status == SUCCEEDED", False), ("status < t", True), ("status > t", False),
    ("opt == adam", True), ("label == best", True), (r"quote == 'a\'b'", True),
    (r'quote == "a\'b"', True), ("quote == 'ab'", False), ("target == local", True),
    # a string against a number: never equal, always different, never ordered
    ("opt == 1", False), ("opt != 1", True), ("opt < 1", False), ("opt >= 1", False),
    # booleans: equal only to booleans, never ordered, never 0 or 1
    ("flag == true", True), ("flag == TRUE", True), ("flag = true", True),
    ("flag != false", True), ("flag == false", False), ("flag != true", False),
    ("off == false", True), ("off == False", True), ("off != true", True),
    ("flag < true", False), ("flag <= true", False), ("flag > false", False),
    ("flag >= true", False), ("off < true", False), ("flag == 1", False),
    ("flag != 1", True), ("flag == 'True'", False), ("flag != 'True'", True),
    ("loss == true", False), ("loss != true", True), ("loss < true", False),
    ("status == true", False), ("status != false", True),
    # a missing value: its comparisons are false, except "different" and "== null"
    ("nope == 1", False), ("nope != 1", True), ("nope < 1", False), ("nope >= 1", False),
    ("nope == x", False), ("nope != x", True), ("nope == null", True),
    ("nope = none", True), ("nope == NULL", True), ("nope != null", False),
    ("nope < null", False), ("nope >= null", False),
    ("loss == null", False), ("loss != null", True), ("loss < null", False),
    ("loss >= none", False), ("sweep == null", True), ("sweep != null", False),
    # which value a name means: a field, else a metric, else a param; or said explicitly
    ("metrics.loss == 0.25", True), ("params.loss == 9", True), ("loss == 9", False),
    ("params.lr == 0.01", True), ("metrics.lr == null", True), ("params.nope == null", True),
    ("metrics. == null", True), ("params. == null", True),
    # `batch` finds `train.batch` (one key ends so); `depth` is ambiguous: missing
    ("batch == 32", True), ("params.batch == 32", True), ("depth == null", True),
    ("train.batch == 32", True),
    # precedence: `not` binds tighter than `and`, `and` tighter than `or`
    ("loss < 1 or loss > 1 and loss > 2", True),      # a or (b and c)
    ("loss > 1 and loss > 2 or loss < 1", True),      # (a and b) or c
    ("(loss < 1 or loss > 1) and loss > 2", False),
    ("not loss > 1 and loss > 2", False),             # (not a) and b
    ("not (loss > 1 and loss > 2)", True),
    ("not loss < 1 or loss < 1", True),               # (not a) or b
    ("not not loss < 1", True), ("not loss < 1", False), ("NOT loss < 1", False),
    ("loss < 1 AND acc > 0.5", True), ("loss < 1 And acc > 0.95", False),
    ("loss > 1 OR acc > 0.5", True), ("loss > 1 or acc > 0.95", False),
    ("loss > 1 or acc > 0.95 or status == succeeded", True),
    ("loss < 1 and acc > 0.5 and status == failed", False),
    ("loss < 1 and acc > 0.5 and status == succeeded", True),
    ("((loss < 1))", True), ("(loss > 1)", False),
    ("loss < 1   ", True), ("  loss < 1", True),
]


def test_where_expressions_against_one_row() -> None:
    # one test over the table, not one per case: mutation testing runs it per mutant
    wrong = [(expr, want) for expr, want in MATCHES if compile_where(expr)(ROW) is not want]
    assert wrong == []


# (expression, what the message says is wrong)
BAD: list[tuple[str, str]] = [
    ("", "it ends too early"),
    ("   ", "it ends too early"),
    ("loss <", "it ends too early"),
    ("loss < 1 and", "it ends too early"),
    ("(loss < 1", "it ends too early"),
    ("not", "it ends too early"),
    ("loss", "expected a comparison (<, <=, >, >=, ==, !=) after 'loss'"),
    ("loss and acc < 1", "expected a comparison (<, <=, >, >=, ==, !=) after 'loss'"),
    ("loss 1", "expected a comparison (<, <=, >, >=, ==, !=) after 'loss'"),
    ("and < 1", "expected a name (a field, metric or param) but found 'and'"),
    ("OR < 1", "expected a name (a field, metric or param) but found 'OR'"),
    ("loss < 1 and not < 1", "expected a name (a field, metric or param) but found '<'"),
    ("1 < loss", "expected a name (a field, metric or param) but found '1'"),
    ("'loss' < 1", "expected a name (a field, metric or param) but found \"'loss'\""),
    ("< 1", "expected a name (a field, metric or param) but found '<'"),
    ("loss < <", "expected a value after '<' but found '<'"),
    ("loss == (", "expected a value after '==' but found '('"),
    ("(loss < 1 acc", "a ')' is missing"),
    ("loss < 1)", "unexpected ')'"),
    ("loss < 1 acc < 2", "unexpected 'acc'"),
    ("loss < 1 (", "unexpected '('"),
]


def error_of(expr: str) -> tuple[str, str | None]:
    try:
        compile_where(expr)
    except GitexpError as err:
        return err.message, err.hint
    return "no error", None


def test_bad_where_says_what_is_wrong() -> None:
    wrong = [(expr, error_of(expr)) for expr, why in BAD
             if error_of(expr) != (f"bad --where expression {expr!r}: {why}", where.HINT)]
    assert wrong == []


def test_a_character_the_language_lacks_is_named_with_its_column() -> None:
    cases = [("loss ~ 1", "~", 6), ("loss < 1 & acc > 2", "&", 10), ("  \u00a7", "\u00a7", 3),
             ("loss < 'open", "'", 8), ("loss < 1.5.5", "1", 8), ("loss < 2x", "2", 8)]
    wrong = [(expr, error_of(expr)) for expr, char, column in cases
             if error_of(expr) != (f"bad --where expression {expr!r}: unexpected {char!r} "
                                   f"at column {column}", where.HINT)]
    assert wrong == []


def test_a_long_bad_expression_is_clipped_to_80_characters_in_the_message() -> None:
    long = " and ".join(f"m{i} < {i}" for i in range(40)) + " ~"
    with pytest.raises(GitexpError) as err:
        compile_where(long)
    shown = repr(long[:77] + "...")
    assert err.value.message.startswith(f"bad --where expression {shown}: unexpected '~'")
    exact = "m < 1 and " * 7 + "mmmmm < 1)"  # exactly 80 characters: shown whole
    assert len(exact) == 80
    with pytest.raises(GitexpError) as err:
        compile_where(exact)
    assert err.value.message == f"bad --where expression {exact!r}: unexpected ')'"
    over = "m < 1 and " * 7 + "mmmmmm < 1)"  # 81: clipped
    with pytest.raises(GitexpError) as err:
        compile_where(over)
    assert err.value.message == f"bad --where expression {over[:77] + '...'!r}: unexpected ')'"


def test_nesting_is_refused_past_64_levels_but_long_flat_expressions_are_fine() -> None:
    deepest = "not " * 63 + "loss < 1"  # 63 `not`s and the comparison: 64 levels
    assert compile_where(deepest)(ROW) is False  # an odd number of `not`s
    assert compile_where("not " * 62 + "loss < 1")(ROW) is True
    assert compile_where("(" * 63 + "loss < 1" + ")" * 63)(ROW) is True
    assert compile_where("not " * 31 + "(" * 32 + "loss < 1" + ")" * 32)(ROW) is False
    for too_deep in ("not " * 64 + "loss < 1", "(" * 64 + "loss < 1" + ")" * 64,
                     "not " * 32 + "(" * 32 + "loss < 1" + ")" * 32):
        with pytest.raises(GitexpError) as err:
            compile_where(too_deep)
        assert err.value.message.endswith(": nested more than 64 deep")
    # each level is left again: depth is nesting, not the count of `not`s or parentheses
    for flat in (" and ".join(["not loss > 1"] * 100), " or ".join(["(loss > 1)"] * 100),
                 " and ".join(["loss < 1"] * 100),
                 " and ".join(["(not (loss > 1))"] * 100)):
        assert compile_where(flat)(ROW) is flat.startswith(("not", "loss", "(not"))
    assert compile_where(" or ".join(["loss > 1"] * 3000) + " or acc > 0.5")(ROW) is True


def test_the_nesting_limit_is_the_same_after_any_sibling_term() -> None:
    def deep(levels: int) -> str:  # a comparison under `levels` levels in all
        return "not " * (levels - 1) + "loss < 1"

    for sibling in ("not loss > 1", "(loss < 1)", "loss < 1", "not (loss > 1)",
                    "(not loss > 1)"):
        for outer in (0, 10):
            def nested(levels: int, sibling: str = sibling, outer: int = outer) -> str:
                return "(" * outer + f"{sibling} and {deep(levels - outer)}" + ")" * outer
            odd_nots = (64 - outer - 1) % 2 == 1
            assert compile_where(nested(64))(ROW) is not odd_nots, (sibling, outer)
            with pytest.raises(GitexpError, match="nested more than 64 deep"):
                compile_where(nested(65))


def test_value_of_a_name_is_a_field_else_a_metric_else_a_param() -> None:
    cases: list[tuple[str, Any]] = [
    ("status", "succeeded"), ("target", "local"), ("loss", 0.25), ("metrics.loss", 0.25),
    ("lr", 0.01), ("params.lr", 0.01), ("opt", "adam"), ("epochs", 10), ("flag", True),
    ("batch", 32), ("train.batch", 32), ("depth", None), ("nope", None),
    ("metrics", None), ("params", None), ("metrics.", None), ("params.", None),
    ("metrics.nope", None), ("params.loss", 9.0), ("sweep", None),
    ("metrics.val.loss", 0.3), ("val.loss", 0.3), ("params.train.batch", 32),
    ("params.val.loss", None),
    ]
    assert [(name, value_of(ROW, name)) for name, _ in cases] == cases


def test_value_of_a_row_without_metrics_or_params_is_missing() -> None:
    bare: Row = {"id": "a-1"}
    for name in ("loss", "metrics.loss", "params.lr", "lr"):
        assert value_of(bare, name) is None
    assert value_of(bare, "id") == "a-1"
    assert compile_where("loss != 1")(bare) is True
    # a row field wins over a metric of that name; `metrics`/`params` are never fields
    odd = {"status": "failed", "metrics": {"status": "x", "metrics": 1}, "params": {}}
    assert value_of(odd, "status") == "failed" and value_of(odd, "metrics") == 1


def test_needs_params_only_for_names_that_may_be_params() -> None:
    rows = [make_row(loss=1.0), make_row("b-1", acc=0.5)]
    assert where.needs_params([], rows) is False
    assert where.needs_params(["status", "run", "rerun", "id"], rows) is False
    assert where.needs_params(["loss", "acc"], rows) is False  # a metric some run has
    assert where.needs_params(["metrics.anything"], rows) is False
    assert where.needs_params(["lr"], rows) is True
    assert where.needs_params(["params.loss"], rows) is True
    assert where.needs_params(["loss", "lr"], rows) is True
    assert where.needs_params(iter(["status"]), rows) is False
    assert where.needs_params(["loss"], []) is True  # no run has it as a metric
    assert where.needs_params(["lr"], [{"id": "a-1"}]) is True  # a row with no metrics
    # a metrics file's {"params": {"lr": ...}} flattens to a metric `params.lr`: the name
    # still says the param
    assert where.needs_params(["params.lr"], [make_row(**{"params.lr": 1.0})]) is True


# -- the query: validation, filters, sort, limit ----------------------------------------------
def test_a_query_refuses_an_unknown_status_a_bad_column_and_a_bad_sort() -> None:
    with pytest.raises(GitexpError) as err:
        Query(status=("succeeded", "done"))
    assert err.value.message == "unknown status 'done'"
    assert err.value.hint == "statuses: " + ", ".join(STATUSES)
    with pytest.raises(GitexpError) as err:
        Query(columns=("run", "lr loss", "x;y"))
    assert err.value.message == "cannot show column 'lr loss'"
    with pytest.raises(GitexpError) as err:
        Query(sort="-acc,lo ss")
    assert err.value.message == "cannot sort by 'lo ss'"
    Query(status=STATUSES, columns=("run", "params.lr", "train/x:y-z"), sort="-a,+b")


def test_a_query_filters_only_when_told_and_knows_the_names_it_looks_at() -> None:
    assert not Query().filters()
    assert not Query(sort="loss", limit=3, columns=("x",)).filters()
    for q in (Query(status=("failed",)), Query(target=("gpu",)), Query(where="a < 1"),
              Query(sweep="s")):
        assert q.filters()
    q = Query(where="loss < 1 and not (params.lr > 0 or opt == adam)", sort="-acc,+n",
              columns=("run", "x"))
    assert q.names() == ["acc", "n", "run", "x", "loss", "params.lr", "opt"]
    assert Query().names() == []
    with pytest.raises(GitexpError) as err:
        Query(where="loss <").names()
    assert err.value.message == "bad --where expression 'loss <': it ends too early"


def test_sort_keys_parse_direction_and_skip_empty_parts() -> None:
    assert sort_keys(None) == [] == sort_keys("") == sort_keys(" , ,")
    assert sort_keys("-loss, +acc ,,lr") == [("loss", True), ("acc", False), ("lr", False)]
    assert sort_keys("metrics.loss") == [("metrics.loss", False)]
    assert sort_keys("-XXval,+Xy") == [("XXval", True), ("Xy", False)]
    for bad in ("-", "-1x", "lo ss", "a,b c"):
        with pytest.raises(GitexpError) as err:
            sort_keys(bad)
        assert err.value.message.startswith("cannot sort by ")
        assert err.value.hint == "e.g. --sort -acc or --sort loss"


ROWS = [
    make_row("old-1", launched_at=100.0, loss=0.5, acc=0.7, opt_name="sgd"),
    make_row("new-1", launched_at=300.0, loss=0.1, acc=0.7, opt_name="adam"),
    make_row("mid-1", status="failed", target="gpu", launched_at=200.0, loss=0.3,
             sweep="s1"),
    make_row("live-1", status="running", launched_at=250.0, acc=0.9, sweep="s1", opt_name=3),
    make_row("t-1", status="failed", launched_at=150.0, loss=0.3, acc=0.8, opt_name=True),
]


def ids_of(query: Query, rows: list[Row] | None = None) -> list[str]:
    return [r["id"] for r in select(list(ROWS if rows is None else rows), query)]


def test_select_is_newest_first_and_filters_by_status_target_sweep_and_where() -> None:
    assert ids_of(Query()) == ["new-1", "live-1", "mid-1", "t-1", "old-1"]
    assert ids_of(Query(status=("failed",))) == ["mid-1", "t-1"]
    assert ids_of(Query(status=("running", "succeeded"))) == ["new-1", "live-1", "old-1"]
    assert ids_of(Query(target=("gpu",))) == ["mid-1"]
    assert ids_of(Query(target=("local",), status=("failed",))) == ["t-1"]
    assert ids_of(Query(sweep="s1")) == ["live-1", "mid-1"]
    assert ids_of(Query(sweep="")) == []
    assert ids_of(Query(where="acc >= 0.8")) == ["live-1", "t-1"]
    assert ids_of(Query(where="acc >= 0.8", status=("failed",))) == ["t-1"]
    # a run without a launch time (older record) sorts as the oldest
    undated = [make_row("u-1", launched_at=0.0), make_row("e-1", launched_at=0.5), *ROWS]
    undated[0]["launched_at"] = None
    assert ids_of(Query(), undated)[-2:] == ["e-1", "u-1"]
    assert ids_of(Query(sort="-launched_at"), undated)[-1] == "u-1"


def test_sort_orders_by_each_key_with_missing_values_last_either_way() -> None:
    assert ids_of(Query(sort="loss")) == ["new-1", "mid-1", "t-1", "old-1", "live-1"]
    assert ids_of(Query(sort="-loss")) == ["old-1", "mid-1", "t-1", "new-1", "live-1"]
    assert ids_of(Query(sort="+loss")) == ids_of(Query(sort="loss"))
    # ties keep the earlier order: newest first, or the later keys' order
    assert ids_of(Query(sort="acc")) == ["new-1", "old-1", "t-1", "live-1", "mid-1"]
    assert ids_of(Query(sort="acc,-launched_at")) == ["new-1", "old-1", "t-1", "live-1", "mid-1"]
    assert ids_of(Query(sort="acc,launched_at")) == ["old-1", "new-1", "t-1", "live-1", "mid-1"]
    assert ids_of(Query(sort="-acc,loss")) == ["live-1", "t-1", "new-1", "old-1", "mid-1"]
    assert ids_of(Query(sort="status,-loss")) == \
        ["mid-1", "t-1", "live-1", "old-1", "new-1"]
    assert ids_of(Query(sort="id")) == ["live-1", "mid-1", "new-1", "old-1", "t-1"]


def test_sort_puts_numbers_before_strings_and_never_compares_the_two() -> None:
    # opt_name: "sgd", "adam", missing, 3, True (a boolean sorts as its text)
    assert ids_of(Query(sort="opt_name")) == ["live-1", "t-1", "new-1", "old-1", "mid-1"]
    assert ids_of(Query(sort="-opt_name")) == ["old-1", "new-1", "t-1", "live-1", "mid-1"]
    rows = [make_row("a-1", n=10), make_row("b-1", n=9.5), make_row("c-1", n="10"),
            make_row("d-1", n=False)]
    assert ids_of(Query(sort="n"), rows) == ["b-1", "a-1", "c-1", "d-1"]


def test_limit_cuts_after_sorting_and_refuses_a_negative_one() -> None:
    assert ids_of(Query(sort="loss", limit=2)) == ["new-1", "mid-1"]
    assert ids_of(Query(limit=0)) == []
    assert len(ids_of(Query(limit=99))) == len(ROWS)
    with pytest.raises(GitexpError) as err:
        select(list(ROWS), Query(limit=-1))
    assert err.value.message == "--limit must be 0 or more"
    assert err.value.hint == "e.g. --limit 20"


# -- listing: what `git exp ls` shows, from a real repository --------------------------------
def foreign_run(repo: Repo, rec: RunRecord) -> str:
    """A snapshot commit with no seal (not launched by this user here), its ref set."""
    tree = repo.git("rev-parse", "HEAD^{tree}").strip()
    snap = repo.commit_tree(tree, [repo.head() or ""], encode_message(rec, None))
    repo.git("update-ref", ids.ref_for(rec.id), snap)
    return snap


def test_listing_looks_again_at_own_unfinished_runs_only(grepo: Repo) -> None:
    store = (grepo.git_dir / "gitexp" / "store").as_uri()
    day_ago = time.time() - 86400
    commit_run(grepo, record("done-1", grepo, launched_at=day_ago - 10), ok(loss=0.5))
    commit_run(grepo, record("gone-1", grepo, store=store, launched_at=day_ago), None)
    foreign_run(grepo, record("theirs-1", grepo, store=store, launched_at=day_ago + 10))
    # with the caller's configuration: a run may be silent for longer than a day here
    patient = Config({"exp.lostafter": "1000000"})
    waiting = where.listing(grepo, patient, Query())
    assert [(r["id"], r["status"]) for r in waiting] == \
        [("theirs-1", "queued"), ("gone-1", "queued"), ("done-1", "succeeded")]
    config = Config.load(grepo)  # 3 s (tests/conftest.py)
    plain = where.listing(grepo, config, Query())
    assert [r["id"] for r in plain] == ["theirs-1", "gone-1", "done-1"]
    assert all(sorted(r) == sorted(SUMMARY) for r in plain)  # plain `ls`: the summary
    by_id = {r["id"]: r for r in plain}
    # this user's run whose launch never started: looked at, written back as lost
    assert (by_id["gone-1"]["status"], by_id["gone-1"]["written_back"]) == ("lost", True)
    # another's live run: nothing to look at, shown as it is
    assert (by_id["theirs-1"]["status"], by_id["theirs-1"]["written_back"]) == \
        ("queued", False)
    assert (by_id["done-1"]["status"], by_id["done-1"]["own"]) == ("succeeded", True)
    # a query that filters, sorts or picks columns sees whole rows, looked-at ones too
    commit_run(grepo, record("gone-2", grepo, store=store, launched_at=day_ago), None)
    full = where.listing(grepo, config, Query(where="status == lost"))
    assert [r["id"] for r in full] == ["gone-1", "gone-2"]
    for row in full:
        assert set(SUMMARY) < set(row) and row["written_back"] is True
        assert row["commit"] == grepo.rev_parse(ids.ref_for(row["id"]))
    for q in (Query(sort="id"), Query(columns=("cwd",))):
        assert all("cwd" in r for r in where.listing(grepo, config, q))


def test_a_run_removed_while_ls_looks_is_skipped_and_the_others_are_still_looked_at(
        grepo: Repo) -> None:
    store = (grepo.git_dir / "gitexp" / "store").as_uri()
    day_ago = time.time() - 86400
    for i, run_id in enumerate(("a-1", "b-1", "c-1")):
        commit_run(grepo, record(run_id, grepo, store=store, launched_at=day_ago + i), None)
    # `git exp rm b-1` from elsewhere, just as a-1 is written back
    hook = grepo.git_dir / "hooks" / "reference-transaction"
    hook.parent.mkdir(exist_ok=True)
    hook.write_text("#!/bin/sh\n"
                    '[ "$1" = committed ] || exit 0\n'
                    f"grep -q ' {ids.ref_for('a-1')}$' || exit 0\n"
                    f"git update-ref -d {ids.ref_for('b-1')}\n")
    hook.chmod(0o755)
    rows = where.listing(grepo, Config.load(grepo), Query())
    assert [(r["id"], r["status"]) for r in rows] == \
        [("c-1", "lost"), ("b-1", "queued"), ("a-1", "lost")]
    assert grepo.rev_parse(ids.ref_for("b-1")) is None


def test_listing_reads_params_files_at_each_snapshot_only_when_a_name_may_be_a_param(
        grepo: Repo) -> None:
    (grepo.root / "params.yaml").write_text("train:\n  lr: 0.5\nopt: sgd\n")
    git("add", "-A", cwd=grepo.root)
    git("commit", "-qm", "params", cwd=grepo.root)
    commit_run(grepo, record("a-1", grepo, launched_at=2.0), ok(loss=0.5))
    commit_run(grepo, record("b-1", grepo, argv=["python", "train.py", "--opt", "adam"],
                             launched_at=1.0), ok(loss=0.2))
    config = Config.load(grepo)
    got = where.listing(grepo, config, Query(where="lr == 0.5"))
    assert [r["id"] for r in got] == ["a-1", "b-1"]
    assert got[0]["params"] == {"train.lr": 0.5, "opt": "sgd"}
    assert got[1]["params"] == {"train.lr": 0.5, "opt": "adam"}  # argv wins over the file
    assert [r["id"] for r in where.listing(grepo, config, Query(where="opt == adam"))] == \
        ["b-1"]
    # names that are fields or metrics: no params file is read
    rows = where.listing(grepo, config, Query(where="loss < 1", columns=("status",)))
    assert [r["params"] for r in rows] == [{}, {"opt": "adam"}]
    assert [r["id"] for r in where.listing(grepo, config, Query(sort="-params.train.lr,loss",
                                                               limit=1))] == ["b-1"]
