""".ci/run's order and time budget, run for real against stand-ins for
make, dpkg-query and the harness: which stages run, the v5.0 stage only
when its estimate fits the time left, and the stage times in the tail."""
import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _tool(path: Path, text: str) -> None:
    path.write_text("#!/bin/sh\n" + text)
    path.chmod(0o755)


@pytest.fixture
def ci(tmp_path):
    """A copy of .ci/run in a stand-in checkout; returns run(cached=..., budget=...)."""
    if shutil.which("bash") is None:
        pytest.skip("needs bash")
    root = tmp_path / "checkout"
    (root / ".ci").mkdir(parents=True)
    shutil.copy(REPO / ".ci" / "run", root / ".ci" / "run")
    (root / ".venv" / "bin").mkdir(parents=True)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls.log"
    _tool(bin_dir / "make", f'echo "make $*" >> {log}\n')
    _tool(bin_dir / "dpkg-query", 'for p in "$@"; do :; done; echo "$p ii"\n')

    def run(cached, budget: int, v50_source: bool = True):
        """cached: True, False, or the kernels whose builds are cached."""
        if isinstance(cached, bool):
            cached = {"debian-5.10", "debian-6.12", "v5.0"} if cached else set()
        # the stand-in harness: sources --check says whether v5.0 is offline,
        # build --check whether a kernel is cached
        _tool(root / ".venv" / "bin" / "harness",
              f'echo "harness $*" >> {log}\n'
              'case "$*" in\n'
              f'  *"sources --check"*) exit {0 if v50_source else 1};;\n'
              + "".join(f'  *"build --kernel {k} "*"--check"*) exit 0;;\n' for k in sorted(cached)) +
              '  *"build"*"--check"*) exit 1;;\n'
              'esac\n')
        log.write_text("")
        env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}", CI_BUDGET=str(budget))
        done = subprocess.run(["bash", str(root / ".ci" / "run")], env=env, capture_output=True, text=True, timeout=60)
        return done, log.read_text().splitlines()

    return run


def _makes(calls):
    return [c for c in calls if c.startswith("make ")]


def test_the_mandatory_stages_run_in_order_and_v50_runs_when_it_fits(ci):
    done, calls = ci(cached=True, budget=5400)
    assert done.returncode == 0, done.stdout + done.stderr
    makes = _makes(calls)
    assert makes[0] == "make test"
    order = [next(i for i, c in enumerate(makes) if c.startswith(prefix)) for prefix in (
        "make test-guest KERNEL=debian-5.10", "make test-vm", "make test-lava",
        "make test-guest KERNEL=debian-6.12", "make test-guest KERNEL=v5.0")]
    assert order == sorted(order)
    # each kernel of the v5.0 stage was looked up, offline, for all three arches
    checks = [c for c in calls if "build --kernel v5.0" in c and "--check" in c]
    assert sorted(c.split("--arch ")[1].split()[0] for c in checks) == ["arm", "arm64", "x86_64"]
    assert "estimated 750s of the" in done.stdout  # 3 arches x 250 s, all cached
    if os.geteuid() == 0:  # the LAVA stage needs root; the lab it started is stopped before 6.12's guests
        assert calls.index("harness lava lab down") < calls.index(next(c for c in calls if "KERNEL=debian-6.12" in c))


def test_an_uncached_v50_stage_that_does_not_fit_is_skipped_with_the_numbers_and_the_fix(ci):
    done, calls = ci(cached={"debian-6.12"}, budget=2400)
    assert done.returncode == 0, done.stdout + done.stderr
    assert not any(c.startswith("make test-guest KERNEL=v5.0") for c in calls)
    assert any(c.startswith("make test-guest KERNEL=debian-6.12") for c in calls)  # cached: 1100 s fits
    # 3 cold builds (480 s) and 3 suites (250 s) against 2400 - 300 s less the time spent
    assert "the v5.0 stage needs about 2190s" in done.stdout
    assert "make test-guest KERNEL=v5.0 ARCH=x86_64,arm64,arm RUN_ARGS=--offline" in done.stdout


def test_an_uncached_612_stage_that_does_not_fit_is_skipped_too_and_the_rest_still_runs(ci):
    done, calls = ci(cached=set(), budget=2900)
    assert done.returncode == 0, done.stdout + done.stderr
    # 2 cold builds (780 s) and 2 suites (550 s) = 2660 s against 2600 s
    assert not any("KERNEL=debian-6.12" in c for c in calls)
    assert "the 6.12 stage needs about 2660s" in done.stdout and "make test-guest KERNEL=debian-6.12 ARCH=x86_64,arm64" in done.stdout
    assert any(c.startswith("make test-guest KERNEL=debian-5.10") for c in calls)  # always
    assert any(c.startswith("make test-guest KERNEL=v5.0") for c in calls)  # 2190 s fits in what 6.12 left


def test_the_same_uncached_stage_runs_when_the_budget_allows_it(ci):
    done, calls = ci(cached=False, budget=3000)
    assert any(c.startswith("make test-guest KERNEL=v5.0") for c in calls), done.stdout
    assert "estimated 2190s of the" in done.stdout


def test_without_a_v50_source_the_stage_says_how_to_provide_one(ci):
    done, calls = ci(cached=True, budget=5400, v50_source=False)
    assert not any(c.startswith("make test-guest KERNEL=v5.0") for c in calls)
    assert "harness sources --register v5.0 PATH" in done.stdout


def test_the_tail_lists_every_stage_time_and_names_a_failed_stage(ci, tmp_path):
    done, _ = ci(cached=True, budget=5400)
    tail = done.stdout.split("== stage times\n")[1].splitlines()
    assert [line.split("  ", 1)[1] for line in tail] == [
        "set-up", "make test", "make test-guest KERNEL=debian-5.10", "make test-vm", "make test-lava",
        "make test-guest KERNEL=debian-6.12", "make test-guest KERNEL=v5.0"]
    # a failing make test-vm: the stages after it never start, and the tail says where it stopped
    _tool(tmp_path / "bin" / "make", 'case "$1" in test-vm) exit 7;; esac\n')
    done, _ = ci(cached=True, budget=5400)
    assert done.returncode == 7
    tail = done.stdout.split("== stage times\n")[1].splitlines()
    assert tail[-2].endswith("make test-vm (did not finish)")
    assert tail[-1].startswith('CI failed in stage "make test-vm" with status 7')
    assert not any("debian-6.12" in line for line in tail)
