"""KCIDB JSON (the KernelCI database's submission format, schema v5) of a
run directory: one checkout (the kernel source and its patches), one build
per arch (build.json of the run), and one test per check
(``harness.<arch>.<scenario>.<step>.<check>``), with its status, the
scenario's duration and the evidence as file URLs.  Built from the run
directory alone; a run without what KCIDB requires (results, a build per
arch) is refused, naming the missing file."""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Optional

from harness.errors import UserError
from harness.report.model import evidence_file
from harness.result import ScenarioOutcome, Status

ORIGIN = "harness"
SCHEMA = {"major": 5, "minor": 3}
#: Our statuses -> KCIDB's (a skipped check is SKIP, an error ERROR).
STATUS = {Status.PASS: "PASS", Status.FAIL: "FAIL", Status.ERROR: "ERROR", Status.SKIP: "SKIP"}


def _load(path: Path, what: str) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        raise UserError(f"{path} is missing or unreadable: {what}",
                        hint="pass a run directory made by 'harness run' (its results, run record and each arch's build.json)") from None


def _uri(path: Optional[str]) -> Optional[str]:
    return evidence_file(path).resolve().as_uri() if path else None


def _part(text: str) -> str:
    """One component of a KCIDB test path: [a-zA-Z0-9_-]+."""
    return re.sub(r"[^a-zA-Z0-9_-]+", "_", text).strip("_") or "_"


def kcidb_doc(run_dir: Path) -> dict:
    run_dir = Path(run_dir)
    doc = _load(run_dir / "results.json", "the run's results (results.json)")
    run = _load(run_dir / "run.json", "the run record (run.json)")
    run_id = doc.get("run_id") or run_dir.name
    inputs = run.get("inputs", {})
    patches = inputs.get("patches") or []
    patch_hash = hashlib.sha256("".join(p.get("sha256", "") for p in patches).encode()).hexdigest() if patches else ""
    builds, tests, checkout_id, checkout = [], [], None, None
    for arch, arch_doc in doc.get("arches", {}).items():
        build_meta = _load(run_dir / arch / "build.json", f"the {arch} build record ({arch}/build.json): KCIDB needs the build")
        source = build_meta.get("source", {})
        if checkout is None:
            checkout_id = f"{ORIGIN}:{source.get('identity', 'unknown')}" + (f"+{patch_hash[:16]}" if patch_hash else "")
            checkout = {
                "id": checkout_id, "origin": ORIGIN, "tree_name": str(inputs.get("kernel") or source.get("name", "")),
                "start_time": run.get("started"), "valid": True,
                "comment": f"Linux {build_meta.get('kernel_version', '?')} from {source.get('origin', '?')}",
                "misc": {"source_identity": source.get("identity")},
            }
            if patches:
                checkout["patchset_files"] = [{"name": p.get("name", "patch"), "url": _uri(p.get("origin"))} for p in patches
                                              if p.get("origin")]
                checkout["patchset_hash"] = patch_hash
        build_id = f"{ORIGIN}:{build_meta.get('key', arch)}"
        config = run_dir / arch / "kernel.config"
        build = {
            "id": build_id, "checkout_id": checkout_id, "origin": ORIGIN, "architecture": arch,
            "compiler": build_meta.get("compiler"), "config_name": build_meta.get("base"),
            "start_time": build_meta.get("started"), "status": "PASS" if build_meta.get("status") == "complete" else "FAIL",
            "command": build_meta.get("reproducer"),
            "misc": {"fragments": [f.get("file") for f in build_meta.get("fragments", [])], "compat": build_meta.get("compat", [])},
        }
        if isinstance(build_meta.get("elapsed_s"), (int, float)):
            build["duration"] = float(build_meta["elapsed_s"])
        if config.exists():
            build["config_url"] = config.resolve().as_uri()
        builds.append({k: v for k, v in build.items() if v is not None})
        for name, entry in arch_doc.get("scenarios", {}).items():
            outcome = ScenarioOutcome.from_dict(entry)
            base = f"{ORIGIN}.{_part(arch)}.{_part(name)}"
            console = run_dir / arch / name / "console.log"
            common = {"build_id": build_id, "origin": ORIGIN, "start_time": run.get("started"),
                      "environment": {"comment": f"QEMU {arch}, {arch_doc.get('target', {}).get('accel', '?')}"}}
            if isinstance(outcome.elapsed_s, (int, float)):
                common["duration"] = float(outcome.elapsed_s)
            if console.exists():
                common["log_url"] = console.resolve().as_uri()
            if outcome.skip_reason or outcome.error:
                tests.append(dict(common, id=f"{ORIGIN}:{run_id}:{arch}:{name}", path=base,
                                  status="SKIP" if outcome.skip_reason else ("MISS" if outcome.error_blame == "infra" else "ERROR"),
                                  comment=outcome.skip_reason or (outcome.error or "").splitlines()[0]))
                continue
            for number, check in enumerate(outcome.checks, 1):
                test = dict(common, id=f"{ORIGIN}:{run_id}:{arch}:{name}:{number}",
                            path=f"{base}.{_part(check.step)}.{_part(check.name)}", status=STATUS[check.status],
                            comment=f"{check.step}: {check.name}",
                            misc={"kind": check.kind.value, "expected": check.expected, "observed": check.observed,
                                  "bound": check.bound, "message": check.message})
                evidence = [e for e in check.evidence if e]
                if evidence:
                    test["output_files"] = [{"name": evidence_file(e).name, "url": _uri(e)} for e in evidence[:8]]
                tests.append(test)
            for number, raw in enumerate(outcome.metrics or (), 1):
                # a performance metric: the test's numerical output, status
                # DONE (the schema's word for a main output that is no verdict)
                tests.append(dict(common, id=f"{ORIGIN}:{run_id}:{arch}:{name}:metric{number}",
                                  path=f"{base}.metric.{_part(raw['name'])}", status="DONE",
                                  comment=f"{raw['name']} ({raw['better']} is better): {raw.get('what', '')}".rstrip(": "),
                                  number={"value": float(raw["value"]), "unit": str(raw["unit"])},
                                  misc={"better": raw["better"]}))
    if checkout is None:
        raise UserError(f"{run_dir / 'results.json'} has no arch that ran: nothing to report to KCIDB")
    return {"version": SCHEMA, "checkouts": [checkout], "builds": builds, "tests": tests}
