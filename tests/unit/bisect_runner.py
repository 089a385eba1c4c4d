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


def _build(state: dict, commit: str, run_dir: Path):
    """The clone's checked-out commit built: its image's text, or the
    Outcome of a build that failed."""
    run_dir.mkdir(parents=True, exist_ok=True)
    request = BuildRequest(source=SourceRequest(state["clone"]), arch=state["arches"][0], quiet=True, ccache=False)
    try:
        result = Builder(stream=io.StringIO(), tools=["make"]).build(request)
    except KernelError as exc:
        return Outcome(commit, "", kernel_failure="build", error=exc.render(), run_dir=str(run_dir))
    return result.image.read_text()


def evaluate(state: dict, commit: str, run_dir: Path) -> Outcome:
    image = _build(state, commit, run_dir)
    if isinstance(image, Outcome):
        return image
    (run_dir / "image.txt").write_text(image)
    if "return -1" in image:
        check = {"id": "x86_64/pins-mlock/move-pinned/return value", "kind": "exact", "expected": 2, "observed": 0,
                 "bound": None, "message": "the call returned 0, the model predicts 2"}
        return Outcome(commit, "", failing=[check], run_dir=str(run_dir))
    return Outcome(commit, "", run_dir=str(run_dir))


def evaluate_metric(state: dict, commit: str, run_dir: Path) -> Outcome:
    """The same build, measured: ``repeat`` samples of a pages-per-second
    metric, about 100 on a good commit and 80 (20 % fewer) on one whose
    image carries the broken accounting, with a deterministic spread of a
    few percent (a fixed sequence: the statistics, not the noise, are under
    test).  ``FLAT`` in the state makes every commit look the same."""
    image = _build(state, commit, run_dir)
    if isinstance(image, Outcome):
        return image
    slow = "return -1" in image and not state.get("flat")
    spread = [0.0, 2.1, -1.7, 1.2, -2.4, 0.6, -0.8, 1.9, -1.1]
    start = int(commit[:6], 16) % len(spread) + len(list(run_dir.parent.glob(f"{run_dir.name.split('-')[0]}-{commit[:12]}*")))
    values = [(80.0 if slow else 100.0) + spread[(start + k) % len(spread)] for k in range(int(state.get("repeat", 1)))]
    return Outcome(commit, "", samples=values, better="higher", unit="pages/s", run_dir=str(run_dir))
