"""JUnit XML: a testsuite per arch, a testcase per check (skipped
scenarios and scenario errors as one testcase each)."""
from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from harness.result import ScenarioOutcome, Status


def write_junit(doc: dict, path: Path) -> None:
    path.write_text(junit_text(doc), encoding="utf-8")


def junit_text(doc: dict) -> str:
    root = ET.Element("testsuites", name="harness")
    for arch, arch_doc in doc.get("arches", {}).items():
        suite = ET.SubElement(root, "testsuite", name=f"{arch} {arch_doc.get('target', {}).get('kernel_version', '')}".strip())
        counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
        for name, entry in arch_doc.get("scenarios", {}).items():
            outcome = ScenarioOutcome.from_dict(entry)
            if outcome.skip_reason or outcome.error:
                case = ET.SubElement(suite, "testcase", classname=f"{arch}.{name}", name="scenario")
                counts["tests"] += 1
                if outcome.skip_reason:
                    ET.SubElement(case, "skipped", message=outcome.skip_reason)
                    counts["skipped"] += 1
                else:
                    err = ET.SubElement(case, "error", message=outcome.error.splitlines()[0])
                    err.text = outcome.error
                    counts["errors"] += 1
                continue
            for check in outcome.checks:
                case = ET.SubElement(suite, "testcase", classname=f"{arch}.{name}.{check.step}", name=check.name)
                counts["tests"] += 1
                if check.status is Status.FAIL:
                    failure = ET.SubElement(case, "failure", message=check.message or "mismatch", type=check.kind.value)
                    failure.text = check.render_failure()
                    counts["failures"] += 1
                elif check.status is Status.ERROR:
                    err = ET.SubElement(case, "error", message=check.message)
                    err.text = check.render_failure()
                    counts["errors"] += 1
                elif check.status is Status.SKIP:
                    ET.SubElement(case, "skipped", message=check.message)
                    counts["skipped"] += 1
        for key, value in counts.items():
            suite.set(key, str(value))
    ET.indent(root)
    return "<?xml version='1.0' encoding='utf-8'?>\n" + ET.tostring(root, encoding="unicode") + "\n"
