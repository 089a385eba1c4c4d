"""Bad input, each with the exit code 2 and a message that names the thing
and the fix, through the command line a user types.  More bad inputs are
tested where their stage is (the index at the bottom names them)."""
import io
import os

import pytest

from harness.cli import main
from harness.errors import UserError
from harness.kernel.build import Builder, BuildRequest
from harness.kernel.source import SourceRequest


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HARNESS_RUNS", str(tmp_path / "runs"))
    monkeypatch.chdir(tmp_path)


def refused(argv, capsys, *words):
    """Run the CLI; it must exit 2 and its error output name every word."""
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own refusals
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2, err
    for word in words:
        assert word in err, (word, err)
    return err


def test_unknown_arch(capsys, tmp_path):
    refused(["run", "--arch", "sparc"], capsys, "unknown arch 'sparc'", "arm64", "x86_64")
    assert not (tmp_path / "runs").exists()


def test_unknown_scenario(capsys, fake_tree):
    refused(["run", "--kernel", str(fake_tree), "--scenario", "nosuch"], capsys, "unknown scenario 'nosuch'", "compact-memory")


def test_unknown_kernel_name_makes_no_run_directory(capsys, tmp_path):
    refused(["run", "--kernel", "v9.9"], capsys, "unknown kernel source 'v9.9'", "v5.0", "debian-5.10")
    assert not (tmp_path / "runs").exists()


def test_missing_fragment_file(capsys, fake_tree, tmp_path):
    refused(["build", "--kernel", str(fake_tree), "--fragment", str(tmp_path / "nope.config")], capsys,
            "cannot read fragment", "nope.config")


def test_a_fragment_line_that_is_not_kconfig(capsys, fake_tree, tmp_path):
    fragment = tmp_path / "mine.config"
    fragment.write_text("CONFIG_COMPACTION=y\nthis is not a config line\n")
    refused(["build", "--kernel", str(fake_tree), "--fragment", str(fragment)], capsys, "mine.config:2", "not a kconfig line")


@pytest.mark.parametrize("line, option", [("# CONFIG_MIGRATION is not set", "MIGRATION"), ("CONFIG_EVENT_TRACING=n", "EVENT_TRACING"),
                                          ("CONFIG_DEBUG_FS=n", "DEBUG_FS")])
def test_turning_off_an_option_every_scenario_needs(capsys, fake_tree, line, option):
    err = refused(["build", "--kernel", str(fake_tree), "--option", line], capsys, f"CONFIG_{option}=n (options:1)",
                  "no scenario runs without", "drop that line")
    assert "fix:" in err


def test_an_option_only_some_scenarios_need_may_be_turned_off(fake_tree, tmp_path):
    from harness.arches import arch
    from harness.kernel import compat
    from harness.kernel.build import layers

    fixes = compat.AppliedFixes(fixes=())  # no compat layer
    parsed, _ = layers(BuildRequest(SourceRequest(str(fake_tree)), "x86_64", options=("# CONFIG_COMPACTION is not set",)),
                       arch("x86_64"), fixes)
    assert parsed[-1][0].name == "COMPACTION" and parsed[-1][0].value == "n"


def test_zero_make_jobs(capsys, fake_tree):
    refused(["build", "--kernel", str(fake_tree), "-j", "0"], capsys, "0 make jobs", "at least 1")
    refused(["build", "--kernel", str(fake_tree), "-j", "many"], capsys, "'many' is not a number")
    with pytest.raises(UserError, match="0 make jobs"):
        Builder(stream=io.StringIO(), tools=["make"]).build(BuildRequest(SourceRequest(str(fake_tree)), "x86_64", jobs=0, quiet=True))


def test_runs_directory_that_cannot_be_written(capsys, fake_tree, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    refused(["run", "--kernel", str(fake_tree), "--runs", str(blocker / "runs")], capsys,
            "cannot create a run directory under", "a-file", "--runs")
    if os.geteuid() != 0:  # root writes through permission bits
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        refused(["run", "--kernel", str(fake_tree), "--runs", str(locked / "runs")], capsys, "Permission denied")


def test_a_tree_that_is_not_a_kernel(capsys, tmp_path):
    (tmp_path / "notes").mkdir()
    refused(["build", "--kernel", str(tmp_path / "notes")], capsys, "is not a kernel tree", "Makefile")


@pytest.mark.parametrize("command", ["check", "report"])
def test_a_directory_that_is_not_a_run(capsys, tmp_path, command):
    (tmp_path / "empty").mkdir()
    refused([command, str(tmp_path / "empty")], capsys, "no readable results.json", "run directory")


def test_a_patch_that_is_missing(capsys, fake_tree, tmp_path):
    refused(["run", "--kernel", str(fake_tree), "--patch", str(tmp_path / "fix.patch")], capsys, "fix.patch")


def test_a_kernel_image_that_cannot_be_read(capsys, tmp_path):
    initrd = tmp_path / "initrd.img"
    initrd.write_bytes(b"x")
    refused(["boot", "--kernel-image", str(tmp_path / "no-bzImage"), "--initrd", str(initrd)], capsys,
            "kernel image", "no-bzImage", "missing or unreadable")


def test_a_guest_without_numa_skips_a_numa_scenario_with_the_reason():
    from harness.arches import arch
    from harness.model.kernels import V5_0
    from harness.scenarios import builtin_scenarios
    from harness.scenarios.base import Target

    target = Target(arch("x86_64"), V5_0, "5.0.0", {"CONFIG_NUMA": "y"}, numa_nodes=0)
    numa = [s for s in builtin_scenarios() if s.needs_numa]
    assert numa
    for scenario in numa:
        reason = scenario.skip_reason(target)
        assert reason and "NUMA" in reason, (scenario.name, reason)


# Bad inputs tested with their stage (each exits 2 / raises UserError, naming the fix):
#   unknown config option, unsatisfiable option: test_build_fake_tree.py::test_unknown_option_in_a_fragment,
#       test_kconfig.py::test_explain_names_unmet_dependency_and_unknown_options
#   wrong checksum, truncated or corrupt tarball: test_source.py::test_wrong_checksum, ::test_truncated_tarball,
#       ::test_generic_tarball_path_and_corrupt_one, ::test_download_of_wrong_bytes_is_rejected_and_not_kept
#   patch that does not apply: test_series.py::test_patch_that_does_not_apply_is_refused_before_anything_runs
#   missing QEMU: test_vm.py::test_missing_qemu_names_the_package; missing cross compiler:
#       test_build_fake_tree.py::test_missing_cross_compiler_names_the_package; missing flex/bison/libelf:
#       test_deps_sources.py::test_missing_packages_named_when_not_installing
#   busy port: test_vm.py::test_busy_port_is_retried_on_another; unreadable kernel (Machine): test_vm.py
#   compare, series, bisect and plan inputs: test_compare.py, test_series.py, test_bisect.py, test_plan_derive.py


def test_memory_offline_on_arm64_says_why_the_guests_memory_cannot_go_offline():
    """Not "kernel lacks CONFIG_MEMORY_HOTREMOVE" (a config we could pick):
    arm64 refuses to offline boot memory, the only memory its guest has."""
    from harness.arches import arch
    from harness.model.kernels import V5_0
    from harness.scenarios import builtin_scenarios
    from harness.scenarios.base import Target

    offline = next(s for s in builtin_scenarios() if s.name == "memory-offline")
    with_option = {"NUMA": "y", "MEMORY_HOTREMOVE": "y"}
    assert "prevent_bootmem_remove_notifier" in offline.skip_reason(Target(arch("arm64"), V5_0, "6.12.117", with_option, numa_nodes=2))
    assert offline.skip_reason(Target(arch("x86_64"), V5_0, "5.0.0", with_option, numa_nodes=2)) is None
    assert "CONFIG_MEMORY_HOTREMOVE" in offline.skip_reason(Target(arch("x86_64"), V5_0, "5.0.0", {"NUMA": "y"}, numa_nodes=2))
