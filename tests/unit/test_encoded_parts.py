"""results.json is written again after each scenario with each scenario's
entry encoded once (``EncodedParts``): the text must be json.dumps's own."""
from __future__ import annotations

import gzip
import json
from pathlib import Path

from harness.host.rundir import EncodedParts, write_json

RECORDED = Path(__file__).resolve().parents[1] / "fixtures" / "runs" / "6.12-x86_64+arm64" / "results.json.gz"
PATTERN = ("arches", "*", "scenarios", "*")


def plain(doc) -> str:
    return json.dumps(doc, indent=2, default=str)


def recorded() -> dict:
    return json.loads(gzip.decompress(RECORDED.read_bytes()))


def test_a_recorded_results_document_is_the_same_text():
    doc = recorded()
    parts = EncodedParts(PATTERN)
    assert parts.dumps(doc) == plain(doc)
    # again, from the cache
    assert parts.dumps(doc) == plain(doc)


def test_the_document_growing_scenario_by_scenario_is_the_same_text_each_time(tmp_path):
    full = recorded()
    doc: dict = {"run_id": full["run_id"], "arches": {}, "differences": {}}
    parts = EncodedParts(PATTERN)
    for arch, arch_doc in full["arches"].items():
        doc["arches"][arch] = {k: v for k, v in arch_doc.items() if k != "scenarios"}
        doc["arches"][arch]["scenarios"] = {}
        for name, entry in arch_doc["scenarios"].items():
            doc["arches"][arch]["scenarios"] = dict(doc["arches"][arch]["scenarios"], **{name: entry})
            write_json(tmp_path / "results.json", doc, parts)
            assert (tmp_path / "results.json").read_text() == plain(doc) + "\n"


def test_a_replaced_entry_is_encoded_again_and_the_old_one_forgotten():
    entry = {"status": "PASS", "checks": [{"name": "a\nb", "observed": [1, 2]}]}
    doc = {"arches": {"x86_64": {"scenarios": {"s": entry}, "elapsed_s": 1.0}}}
    parts = EncodedParts(PATTERN)
    assert parts.dumps(doc) == plain(doc)
    doc["arches"]["x86_64"]["scenarios"]["s"] = {"status": "FAIL", "checks": []}
    assert '"FAIL"' in parts.dumps(doc)
    assert parts.dumps(doc) == plain(doc)
    assert len(parts._texts) == 1


def test_strings_that_look_like_parts_are_left_alone():
    token = "\x00" + "0" * 16 + "-0\x00"
    doc = {"arches": {"a": {"scenarios": {"s": {"x": token}}, "note": token}}}
    assert EncodedParts(PATTERN).dumps(doc) == plain(doc)
