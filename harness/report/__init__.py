"""Reports of a run: results.json, junit.xml, results.tap (KTAP), a human
summary, and a cross-arch view.  All of them are made from the results
(``results.json``), so ``harness report RUN_DIR`` can redo them offline."""
from __future__ import annotations

from pathlib import Path

from harness.report.junit import write_junit
from harness.report.summary import summary_text
from harness.report.tap import ktap


def write_all(run_dir: Path, doc: dict) -> dict[str, Path]:
    """Write every report next to results.json; returns their paths."""
    paths = {
        "junit": run_dir / "junit.xml",
        "tap": run_dir / "results.tap",
        "summary": run_dir / "summary.txt",
    }
    write_junit(doc, paths["junit"])
    paths["tap"].write_text(ktap(doc))
    paths["summary"].write_text(summary_text(doc))
    return paths
