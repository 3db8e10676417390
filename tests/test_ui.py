"""`git exp ui` in a real browser (Debian's headless Chromium, driven by playwright): the
table shows every run in every status, filters and sorts as `ls` does, compare overlays
curves and draws parallel coordinates, the run page tails a live log and cancels, a forged
run's markup runs nothing, and `git exp report`'s frozen page works offline. One repository,
one server and one browser for the module; screenshots under the module's tmp dir."""

from __future__ import annotations

from collections.abc import Iterator
from importlib.util import find_spec
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.helpers import exp, own_home, wait_for
from tests.services._util import unavailable
from tests.uirepo import FABRICATED, XSS, Built, Server, build, end_live, serve, shown

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

CHROMIUM = Path("/usr/bin/chromium")
# The closed network refuses Chromium's own background connections: none are started.
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


# one repository and one server (and browser) for the module: its tests on one worker
pytestmark = pytest.mark.xdist_group("ui")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Built, Server, Path]]:
    if not CHROMIUM.exists() or find_spec("playwright") is None:
        unavailable("chromium", f"needs {CHROMIUM} (scripts/install-services.sh) and "
                                "playwright (the test extra)")
    root = tmp_path_factory.mktemp("ui")
    with own_home(root):
        built = build(root)
        server = serve(built.repo)
        try:
            yield built, server, root
        finally:
            server.stop()
            end_live(built)


@pytest.fixture(scope="module")
def browser(site: tuple[Built, Server, Path]) -> Iterator[Browser]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Browser, site: tuple[Built, Server, Path],
         request: pytest.FixtureRequest) -> Iterator[Page]:
    """A fresh page; whatever it logged as an error fails the test; a screenshot after."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda e: errors.append(str(e)))
    tab.on("console", lambda m: errors.append(m.text) if m.type == "error" and not m.text
           .endswith("status of 400 (Bad Request)") else None)  # a refused query: shown
    yield tab
    tab.screenshot(path=str(site[2] / f"{request.node.name}.png"), full_page=True)
    context.close()
    assert errors == [], errors


def rows(page: Page) -> list[dict[str, str]]:
    """The table's rows in the DOM (the visible ones), top to bottom."""
    found: list[dict[str, str]] = page.eval_on_selector_all(
        ".grid .row", "rs => rs.sort((a, b) => a.offsetTop - b.offsetTop).map(r => ({"
        "id: r.dataset.id, status: r.querySelector('.badge').textContent}))")
    return found


def ls_ids(built: Built, *args: str) -> list[str]:
    import json

    proc = exp("ls", "--json", *args, cwd=built.repo, env=built.env)
    return [r["id"] for r in json.loads(proc.stdout)]


def open_table(page: Page, server: Server) -> None:
    page.goto(server.url)
    page.wait_for_selector(".grid .row")


def test_the_table_shows_every_run_in_every_status(site: Any, page: Page):
    built, server, _ = site
    open_table(page, server)
    everything = ls_ids(built)
    assert page.text_content("#count").startswith(f"{len(everything)} run(s)")
    seen = rows(page)
    assert [r["id"] for r in seen] == everything[:len(seen)]  # newest first, as `ls`
    statuses = {r["status"] for r in seen}
    assert {"succeeded", "failed", "cancelled", "lost", "running"} <= statuses
    # only the visible rows exist; scrolling down brings the oldest ones
    assert len(seen) < len(everything)
    page.eval_on_selector(".grid .viewport", "v => { v.scrollTop = v.scrollHeight; }")
    wait_for(lambda: rows(page)[-1]["id"] == everything[-1], timeout=10, what="the last row")


def test_filtering_and_sorting_match_ls(site: Any, page: Page):
    built, server, _ = site
    open_table(page, server)
    where = "lr<0.002 and status==succeeded"
    page.fill("#where", where)
    page.press("#where", "Enter")
    wanted = ls_ids(built, "--where", where)
    wait_for(lambda: page.text_content("#count").startswith(f"{len(wanted)} run(s)"),
             timeout=10, what="the filtered table")
    page.click('.grid .head .cell[data-key="params.lr"]')  # ascending, then descending
    page.wait_for_selector('.cell.sorted-asc[data-key="params.lr"]')
    page.click('.grid .head .cell[data-key="params.lr"]')
    page.wait_for_selector('.cell.sorted-desc[data-key="params.lr"]')
    wanted = ls_ids(built, "--where", where, "--sort", "-lr")
    wait_for(lambda: [r["id"] for r in rows(page)] == wanted, timeout=10,
             what="the rows in `ls --sort -lr` order")
    page.fill("#where", "lr<<1")
    page.press("#where", "Enter")
    page.wait_for_selector("#table-error .error")
    assert page.text_content("#table-error").startswith("error: bad --where expression")
    assert "hint: " in page.text_content("#table-error")


def test_columns_can_be_chosen_and_equal_ones_hidden(site: Any, page: Page):
    _, server, _ = site
    open_table(page, server)
    page.fill("#where", "bs==16")
    page.press("#where", "Enter")
    wait_for(lambda: page.text_content("#count").startswith(f"{FABRICATED // 4} run(s)"),
             timeout=10, what="the bs==16 runs")
    head = '.grid .head .cell[data-key="params.bs"]'
    assert page.is_visible(head)
    page.check("#hide-same")  # bs is 16 in every run shown: its column goes
    page.wait_for_selector(head, state="detached")
    assert page.is_visible('.grid .head .cell[data-key="params.lr"]')  # lr varies: it stays
    page.uncheck("#hide-same")
    page.click("details.columns summary")
    page.uncheck('details.columns input[data-key="command"]')
    page.wait_for_selector('.grid .head .cell[data-key="command"]', state="detached")
    page.check('details.columns input[data-key="command"]')


def drawn(page: Page, selector: str) -> int:
    """How many canvases under `selector` hold any painted pixel."""
    count: int = page.eval_on_selector_all(selector, """cs => cs.filter(c => {
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        for (let i = 3; i < d.length; i += 4) if (d[i]) return true;
        return false; }).length""")
    return count


def test_compare_overlays_curves_and_draws_parallel_coordinates(site: Any, page: Page):
    built, server, _ = site
    open_table(page, server)
    page.fill("#where", "bs==32")
    page.press("#where", "Enter")
    page.wait_for_function("() => document.querySelectorAll('.grid .row').length === 10")
    for box in page.query_selector_all(".grid .row input[type=checkbox]")[:3]:
        box.check()
    assert page.text_content("#compare") == "Compare selected (3)"
    page.click("#compare")
    page.wait_for_selector("#charts .chart canvas")
    charts = page.eval_on_selector_all("#charts .chart", "cs => cs.map(c => "
                                       "[c.dataset.metric, c.uplot.series.length])")
    assert [m for m, _ in charts] == ["loss", "val_loss", "acc", "lr_now", "val_acc"]
    assert all(n == 4 for _, n in charts)  # x, and one series per run
    assert drawn(page, "#charts canvas") == 5
    assert page.locator("#side tr.differ").count() >= 3  # command, lr, the metrics
    page.wait_for_function("() => document.querySelector('#parallel canvas')")
    lines = int(page.get_attribute("#parallel", "data-lines") or 0)
    assert lines == len(ls_ids(built, "--where", "bs==32 and loss>=0"))
    assert drawn(page, "#parallel canvas") >= 1
    page.select_option("#x-kind", "time")  # the other x, smoothing, log scale: drawn again
    page.eval_on_selector("#smooth", "s => { s.value = '0.8'; "
                          "s.dispatchEvent(new Event('input')); }")
    page.check("#log-scale")
    page.wait_for_function("() => document.querySelector('#charts .chart').uplot"
                           ".scales.y.distr === 3")
    assert drawn(page, "#charts canvas") == 5


def test_the_run_page_tails_a_live_log_and_cancels_the_run(site: Any, page: Page):
    built, server, _ = site
    run_id = built.ids["running"]
    page.goto(f"{server.url}#/run/{run_id}")
    page.wait_for_selector("#log")
    wait_for(lambda: "tick" in page.text_content("#log"), timeout=10, what="the log")
    first = page.text_content("#log").count("tick")
    wait_for(lambda: page.text_content("#log").count("tick") > first + 3, timeout=10,
             what="new lines of the live log")  # it tails, without a reload
    page.click("#cancel")
    wait_for(lambda: page.text_content("#run-status") == "cancelled", timeout=20,
             what="the run to show cancelled")
    assert shown(built, run_id)["status"] == "cancelled"
    built.ids.pop("running")


def test_the_run_page_shows_record_curves_checkpoints_and_code_diff(site: Any, page: Page):
    built, server, _ = site
    run_id = built.ids["succeeded"]
    page.goto(f"{server.url}#/run/{run_id}")
    page.wait_for_selector("#diff .patch")
    text = page.text_content("main")
    for words in ("python train.py 0.1", "halfway", "step 19", "against its base commit",
                  "+# tuned", "Data version", "Environment"):
        assert words in text, words
    assert drawn(page, "#run-charts canvas") == 2  # loss, acc
    page.fill("#against", built.ids["failed"])
    page.click("button:has-text('Diff')")
    wait_for(lambda: f"{run_id} against {built.ids['failed']}" in page.text_content("#diff"),
             timeout=10, what="the diff against another run")


def test_a_forged_runs_markup_runs_nothing_anywhere(site: Any, page: Page,
                                                    browser: Browser):
    built, server, root = site
    run_id = built.ids["markup"]
    for where, ready in (("#/", ".grid .row"), (f"#/run/{run_id}", "#diff h3"),
                         (f"#/compare?ids={run_id},{built.ids['failed']}", "#parallel canvas")):
        page.goto(f"{server.url}{where}")
        page.wait_for_selector(ready)
        assert XSS in page.text_content("main")  # shown as the text it is
        assert page.evaluate("() => window.pwned") is None
        assert page.locator('img[src="x"]').count() == 0
    page.goto(f"{server.url}#/run/{run_id}")
    wait_for(lambda: XSS in page.text_content("#log"), timeout=10, what="the log")
    assert page.evaluate("() => window.pwned") is None
    exp("report", run_id, "-o", str(root / "markup.html"), cwd=built.repo, env=built.env)
    frozen = browser.new_page()
    frozen.goto((root / "markup.html").as_uri() + f"#/run/{run_id}")
    frozen.wait_for_selector("#log")
    assert XSS in frozen.text_content("main") and frozen.evaluate("() => window.pwned") is None
    assert frozen.locator('img[src="x"]').count() == 0
    frozen.close()


def test_the_report_is_the_same_front_end_working_offline(site: Any, browser: Browser):
    built, _, root = site
    chosen = [built.ids["succeeded"], built.ids["failed"], built.ids["fabricated"]]
    out = root / "report.html"
    exp("report", *chosen, "-o", str(out), cwd=built.repo, env=built.env)
    context = browser.new_context(offline=True, viewport={"width": 1400, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(out.as_uri())
    page.wait_for_selector(".grid .row")
    assert {r["id"] for r in rows(page)} == set(chosen)
    page.goto(out.as_uri() + "#/compare?ids=" + ",".join(chosen))
    page.wait_for_selector("#charts canvas")
    page.wait_for_function("() => document.querySelector('#parallel canvas')")
    assert drawn(page, "#charts canvas") >= 2 and drawn(page, "#parallel canvas") >= 1
    page.screenshot(path=str(root / "report-compare.png"), full_page=True)
    assert (root / "report-compare.png").stat().st_size > 10_000  # a page, not a blank
    page.goto(out.as_uri() + f"#/run/{built.ids['succeeded']}")
    page.wait_for_selector("#run-charts canvas")
    assert "step 19" in page.text_content("#log")
    context.close()
    assert errors == []

