"""Checker semantics, statuses, and the report formats."""
import copy
import xml.etree.ElementTree as ET

from harness.check import Checker
from harness.report.junit import write_junit
from harness.report.model import run_status
from harness.report.summary import summary_text
from harness.report.tap import ktap
from harness.result import CheckKind, CheckResult, ScenarioOutcome, Status


def test_exact_bounded_invariant():
    ck = Checker("s", "step")
    assert ck.exact("a", [1, 2], [1, 2]).status is Status.PASS
    bad = ck.exact("b", [1, 2, 3], [1, 5, 3])
    assert bad.status is Status.FAIL and "index 1" in bad.message
    assert ck.bounded("c", 5, low=1).status is Status.PASS
    low = ck.bounded("d", 0, low=1)
    assert low.status is Status.FAIL and low.bound == ">= 1"
    assert ck.bounded("e", ["complete"], allowed=["complete", "contended"]).status is Status.PASS
    assert ck.bounded("f", ["complete", "skipped"], allowed=["complete"]).status is Status.FAIL
    assert ck.invariant("g", "Δx", 3, "Σ y", 3).status is Status.PASS
    assert ck.invariant("h", "Δx", 4, "Σ y", 3, relation="<=").status is Status.FAIL
    assert [r.kind for r in ck.results[:4]] == [CheckKind.EXACT, CheckKind.EXACT, CheckKind.BOUNDED, CheckKind.BOUNDED]


def test_dict_difference_names_keys():
    ck = Checker("s", "step")
    bad = ck.exact("mm_stat", {"a": 1, "b": 2}, {"a": 1, "b": 3})
    assert "b (expected 2, observed 3)" in bad.message


def test_status_worst_first_and_empty_is_error():
    assert Status.worst([Status.PASS, Status.SKIP, Status.FAIL]) is Status.FAIL
    assert Status.worst([]) is Status.ERROR


def doc_with(*checks, skip=None, error=None):
    entry = {"checks": [c.as_dict() for c in checks]}
    if skip:
        entry["skip_reason"] = skip
    if error:
        entry["error"] = error
    return {"run_id": "r", "arches": {"x86_64": {"target": {"kernel_version": "5.0.0", "model": "v5.0"}, "scenarios": {"s": entry}}}}


PASS = CheckResult("s", "st", "ok", CheckKind.EXACT, Status.PASS, 1, 1)
FAIL = CheckResult("s", "st", "bad", CheckKind.EXACT, Status.FAIL, [1, 2], [1, 3], message="first difference at index 1")


def test_run_status():
    assert run_status(doc_with(PASS)) is Status.PASS
    assert run_status(doc_with(PASS, FAIL)) is Status.FAIL
    assert run_status(doc_with(skip="no NUMA")) is Status.ERROR
    assert ScenarioOutcome.from_dict({"error": "boom", "checks": [PASS.as_dict()]}).status is Status.ERROR
    skipped = CheckResult("s", "st", "t", CheckKind.EXACT, Status.SKIP, message="kernel lacks CONFIG_X")
    # a skipped check among passes (kselftest's va_128TBswitch) leaves the scenario passing
    assert ScenarioOutcome.from_dict({"checks": [PASS.as_dict(), skipped.as_dict()]}).status is Status.PASS
    assert ScenarioOutcome.from_dict({"checks": [FAIL.as_dict(), skipped.as_dict()]}).status is Status.FAIL
    assert ScenarioOutcome.from_dict({"checks": [skipped.as_dict()]}).status is Status.SKIP


def test_ktap_and_junit_and_summary(tmp_path):
    doc = doc_with(PASS, FAIL)
    text = ktap(doc)
    assert text.startswith("KTAP version 1\n1..1\n")
    assert "ok 1 st: ok" in text and "not ok 2 st: bad" in text and "not ok 1 s" in text and "not ok 1 x86_64" in text
    write_junit(doc, tmp_path / "j.xml")
    suite = ET.parse(tmp_path / "j.xml").getroot().find("testsuite")
    assert suite.get("tests") == "2" and suite.get("failures") == "1"
    assert suite.find("testcase/failure").get("message") == "first difference at index 1"
    summary = summary_text(doc)
    assert "FAIL s/st/bad (exact)" in summary and "expected: [1, 2]" in summary and "observed: [1, 3]" in summary


def test_summary_ends_with_the_failures_after_the_across_arches_table():
    """CI shows a run's last lines: with two arches the failures come after
    the across-arches table, so the tail says what failed and why."""
    doc = doc_with(PASS, FAIL)
    doc["arches"]["arm64"] = copy.deepcopy(doc["arches"]["x86_64"])
    doc["arches"]["arm64"]["scenarios"]["t"] = {"error": "guest never booted", "checks": []}
    summary = summary_text(doc)
    across, failures, errors = (summary.index(h) for h in ("== across arches", "== failures", "== scenario errors"))
    assert across < failures < errors
    assert summary.rstrip().endswith("[arm64] t: guest never booted")
    assert summary.count("[arm64] FAIL s/st/bad (exact)") == 1


def test_skip_in_ktap_and_junit(tmp_path):
    doc = doc_with(skip="needs two NUMA nodes")
    assert "ok 1 s # SKIP needs two NUMA nodes" in ktap(doc)
    write_junit(doc, tmp_path / "j.xml")
    assert ET.parse(tmp_path / "j.xml").getroot().find("testsuite/testcase/skipped") is not None


def test_every_compares_the_distinct_values_and_fails_on_a_stray_one():
    from harness.check import Checker
    from harness.result import Status

    ck = Checker("s", "step")
    ok = ck.every("mode", "mode=MIGRATE_SYNC", ["mode=MIGRATE_SYNC"] * 40)
    stray = ck.every("mode", "mode=MIGRATE_SYNC", ["mode=MIGRATE_SYNC"] * 39 + ["mode=MIGRATE_ASYNC"])
    none = ck.every("mode", "mode=MIGRATE_SYNC", [])
    assert ok.status is Status.PASS and ok.observed == ["mode=MIGRATE_SYNC"] and ok.message == "40 events"
    assert stray.status is Status.FAIL and "mode=MIGRATE_ASYNC: 1" in stray.message
    assert none.status is Status.PASS and none.message == "no events to check"
