"""A per-commit runner for the bisect tests: builds the clone's checked-out
commit of the fake kernel tree for real (work copy, incremental make) and
calls the commit bad when the built image carries the broken accounting
(``return -1`` in mm/migrate.c).  Named in the bisect state, it runs in
the ``harness bisect-step`` processes that git bisect run starts."""
import io
from pathlib import Path

from harness.errors import KernelError
from harness.kernel.build import Builder, BuildRequest
from harness.kernel.source import SourceRequest
from harness.workflows.bisect import Outcome


def evaluate(state: dict, commit: str, run_dir: Path) -> Outcome:
    run_dir.mkdir(parents=True, exist_ok=True)
    request = BuildRequest(source=SourceRequest(state["clone"]), arch=state["arches"][0], quiet=True, ccache=False)
    try:
        result = Builder(stream=io.StringIO(), tools=["make"]).build(request)
    except KernelError as exc:
        return Outcome(commit, "", kernel_failure="build", error=exc.render(), run_dir=str(run_dir))
    image = result.image.read_text()
    (run_dir / "image.txt").write_text(image)
    if "return -1" in image:
        check = {"id": "x86_64/pins-mlock/move-pinned/return value", "kind": "exact", "expected": 2, "observed": 0,
                 "bound": None, "message": "the call returned 0, the model predicts 2"}
        return Outcome(commit, "", failing=[check], run_dir=str(run_dir))
    return Outcome(commit, "", run_dir=str(run_dir))
