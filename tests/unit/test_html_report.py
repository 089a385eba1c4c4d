"""report.html of recorded runs, as a person would see it: the matrix, the
failures first and expanded, every check, the model's page-by-page
reasoning beside the kernel's answers; opened in headless Chromium when
it is installed (Debian's chromium package)."""
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from harness.pipeline import recheck

from .test_mutant_replay import MUTANTS
from .test_replay import RUNS, materialize


class Page(HTMLParser):
    """The parts of the page the tests look at."""

    def __init__(self):
        super().__init__()
        self.open_details, self.closed_details, self.rows, self.links = [], [], [], []
        self.ids, self.text = set(), []
        self._row = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.add(attrs["id"])
        if tag == "details":
            (self.open_details if "open" in attrs else self.closed_details).append(attrs.get("id"))
        elif tag == "tr":
            self._row = {"class": attrs.get("class", ""), "cells": []}
        elif tag == "td" and self._row is not None:
            self._row["cells"].append("")
        elif tag == "a" and "href" in attrs:
            self.links.append(attrs["href"])

    def handle_endtag(self, tag):
        if tag == "tr" and self._row is not None:
            self.rows.append(self._row)
            self._row = None

    def handle_data(self, data):
        self.text.append(data)
        if self._row is not None and self._row["cells"]:
            self._row["cells"][-1] += data


def rendered(path: Path) -> Page:
    page = Page()
    page.feed(path.read_text())
    return page


@pytest.fixture(scope="module")
def mutant_run(tmp_path_factory):
    run_dir = materialize("migrate-file-refs-off-by-one", tmp_path_factory.mktemp("mutant"), MUTANTS)
    recheck(run_dir)
    return run_dir


def test_a_failing_run_shows_its_failures_first_and_expanded_with_the_models_pages(mutant_run):
    html = (mutant_run / "report.html").read_text()
    page = rendered(mutant_run / "report.html")
    # the matrix: one row per scenario, a verdict per arch linking to it
    assert {"x86_64-swap-cache", "arm64-swap-cache"} <= page.ids
    matrix = [r for r in page.rows if r["cells"] and r["cells"][0] == "swap-cache"]
    assert [c.split()[0] for c in matrix[0]["cells"][1:]] == ["FAIL", "FAIL"]
    # failures come before the per-arch sections, and the failed scenarios are open
    assert html.index('id="failures"') < html.index('id="arch-x86_64"')
    assert "x86_64-swap-cache" in page.open_details and "arm64-swap-cache" in page.open_details
    assert "[x86_64] swap-cache / move / query status" in html
    # the model's reasoning per page, beside what the kernel answered: the
    # 64 swap-cache pages the model moves stayed on node 0 (query 0)
    differing = [r["cells"] for r in page.rows if "differs" in r["class"]]
    swap = next(c for c in differing if c[1].startswith("sc:0 (anon_swapcache)"))
    assert swap[0] == "0-63" and swap[1].endswith("sc:63 (anon_swapcache)")
    assert (swap[3], swap[4], swap[5], swap[6]) == ("1", "S", "1", "0")  # status model/kernel, query model/kernel
    assert "migrate_page: success" in swap[7]
    # evidence and captures link inside the run directory
    assert "x86_64/swap-cache/workload.out" in page.links and "x86_64/swap-cache/console.log" in page.links
    assert all((mutant_run / link).exists() for link in page.links if not link.startswith("#"))


def test_a_passing_run_keeps_its_scenarios_closed_and_shows_no_failures(tmp_path):
    run_dir = materialize("v5.0-swap-cache-x86_64+arm64", tmp_path, RUNS)
    recheck(run_dir)
    page = rendered(run_dir / "report.html")
    assert "failures" not in page.ids and not page.open_details
    assert {"x86_64-swap-cache", "arm64-swap-cache"} <= set(page.closed_details)
    assert not [r for r in page.rows if "differs" in r["class"]]
    assert "harness -q run --kernel v5.0" in "".join(page.text)  # the reproducer


def _png_size_and_colours(path: Path) -> tuple[int, int, int]:
    """Width, height and the number of distinct colours of a PNG (a blank
    page has one or two)."""
    from PIL import Image

    with Image.open(path) as image:
        rgb = image.convert("RGB")
        return rgb.width, rgb.height, len(rgb.getcolors(maxcolors=1 << 24) or ())


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def screenshot(page: Path, shot: Path, size: str = "1280,1600") -> str:
    """Headless Chromium's screenshot of ``page``; its log.  A profile of
    its own (two test workers may run it at once), output to a file rather
    than pipes (a helper it leaves behind, such as crashpad, cannot keep the
    test waiting), and its whole process group gone afterwards."""
    import os
    import signal

    log = shot.with_suffix(".log")
    with open(log, "w") as out:
        child = subprocess.Popen([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                                  f"--user-data-dir={shot.parent / (shot.stem + '-profile')}", f"--window-size={size}",
                                  f"--screenshot={shot}", page.as_uri()],
                                 stdout=out, stderr=subprocess.STDOUT, cwd=shot.parent, start_new_session=True)
        try:
            child.wait(timeout=120)
        except subprocess.TimeoutExpired:
            pass
        finally:
            try:
                os.killpg(child.pid, signal.SIGKILL)
            except OSError:
                pass
            child.wait()
    return log.read_text(errors="replace")


@pytest.mark.skipif(not CHROMIUM, reason="needs headless Chromium (Debian package chromium)")
def test_the_report_opens_offline_in_a_browser(mutant_run, tmp_path):
    shot = tmp_path / "report.png"
    log = screenshot(mutant_run / "report.html", shot)
    assert shot.exists(), log[-2000:]
    width, height, colours = _png_size_and_colours(shot)
    assert (width, height) == (1280, 1600)
    assert colours > 20  # text, tables and the red and green verdicts, not a blank page


def test_compare_html_puts_a_and_b_side_by_side_regressions_first(tmp_path, capsys):
    """harness compare A B --html: the pristine swap-cache run against the
    refs-off-by-one mutant; every regression is a highlighted row, before
    the checks that stayed the same, with both observations and the model's
    expectation for each."""
    from harness.cli import main

    a = materialize("v5.0-swap-cache-x86_64+arm64", tmp_path / "a", RUNS)
    b = materialize("migrate-file-refs-off-by-one", tmp_path / "b", MUTANTS)
    out = tmp_path / "compare.html"
    assert main(["compare", str(a), str(b), "--html", str(out)]) == 1  # regressions
    page = rendered(out)
    rows = [dict(r, cells=[c.strip() for c in r["cells"]]) for r in page.rows if r["cells"] and len(r["cells"]) == 11]
    verdicts = [r["cells"][3] for r in rows]
    assert verdicts.count("regression") == 16 and verdicts.count("same") == 68
    first_same = verdicts.index("same")
    assert all(v == "regression" for v in verdicts[:8]) and "regression" not in verdicts[first_same:first_same + 34]
    pgfail = next(r for r in rows if r["cells"][1] == "Δpgmigrate_fail" and r["cells"][0] == "move")
    assert pgfail["class"] == "regression"
    assert [pgfail["cells"][i] for i in (4, 5, 6, 7, 8, 9)] == ["PASS", "0", "0", "FAIL", "64", "0"]
    assert "16 regressions" in "".join(page.text)
    assert main(["compare", str(a), str(b), "--html", str(tmp_path / "nowhere" / "x.html")]) == 2
