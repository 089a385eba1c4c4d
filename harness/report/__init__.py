"""Reports of a run: results.json, junit.xml, results.tap (KTAP), a human
summary, and a cross-arch view.  All of them are made from the results
(``results.json``), so ``harness report RUN_DIR`` can redo them offline."""
from __future__ import annotations

import json
import os
from pathlib import Path

from harness.report.html import html_text
from harness.report.junit import junit_text
from harness.report.summary import summary_text
from harness.report.tap import ktap


def write_all(run_dir: Path, doc: dict) -> dict[str, Path]:
    """Write every report next to results.json; returns their paths."""
    paths = {
        "junit": run_dir / "junit.xml",
        "tap": run_dir / "results.tap",
        "summary": run_dir / "summary.txt",
        "html": run_dir / "report.html",
    }
    for name, text in (("junit", junit_text(doc)), ("tap", ktap(doc)), ("summary", summary_text(doc)),
                       ("html", html_text(doc, run_dir, _run_record(run_dir)))):
        write_whole(paths[name], text)
    return paths


def _run_record(run_dir: Path) -> dict:
    """run.json (inputs, reproducer, versions), or {} where there is none."""
    try:
        return json.loads((run_dir / "run.json").read_text())
    except (OSError, ValueError):
        return {}


def write_whole(path: Path, text: str) -> None:
    """Write ``path`` whole or not at all (an interrupted report leaves the
    previous version, never half a file)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
