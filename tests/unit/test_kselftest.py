"""kselftest vm as data (guest/kselftest-vm.yaml), its programs built from
a tree, and the scenario's checks."""
import shutil
import textwrap
from pathlib import Path

import pytest

from harness.arches import arch
from harness.host import toolchain
from harness.host.cache import Cache
from harness.kernel.kselftest import (
    SelfTest,
    SelftestBuilder,
    load_prepare,
    load_tests,
    programs_in,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"

V50_PROGRAMS = """compaction_test gup_benchmark hugepage-mmap hugepage-shm map_hugetlb map_fixed_noreplace map_populate
mlock-random-test mlock2-tests on-fault-limit thuge-gen transhuge-stress userfaultfd va_128TBswitch virtual_address_range""".split()


def test_the_recipe_runs_what_v50s_run_vmtests_runs_in_its_order():
    from harness.kernel.kselftest import tests_for

    names = [t.name for t in tests_for((5, 0))]
    assert names == ["hugepage-mmap", "hugepage-shm", "map_hugetlb", "userfaultfd", "userfaultfd_hugetlb", "userfaultfd_shmem",
                     "compaction_test", "on-fault-limit", "map_populate", "mlock2-tests", "virtual_address_range",
                     "va_128TBswitch"]
    assert {t.program for t in tests_for((5, 0))} <= set(V50_PROGRAMS)
    assert "nr_hugepages" in load_prepare() and "hugetlbfs" in load_prepare()


def test_a_test_command_sets_up_runs_cleans_up_and_reports_its_status_on_a_line_of_its_own():
    shm = next(t for t in load_tests() if t.name == "hugepage-shm")
    command = shm.command("/tmp/ksft")
    assert command.startswith("cd /tmp/ksft; ")
    assert command.index("shmmax=") < command.index("./hugepage-shm") < command.index("echo $shmmax")
    assert command.endswith("printf '\\nKSFT-STATUS %d\\n' $status")
    nobody = next(t for t in load_tests() if t.user)
    assert "su -s /bin/sh nobody -c ./on-fault-limit" in nobody.command("/tmp/ksft")
    ufd = SelfTest("x", "userfaultfd", ("hugetlb", "32", "16", "huge/f"), timeout=600)
    assert "timeout 600 ./userfaultfd hugetlb 32 16 huge/f; status=$?" in ufd.command("/d")


def test_kernel_options_a_test_needs_are_per_arch():
    va = next(t for t in load_tests() if t.name == "va_128TBswitch")
    assert va.missing_config("x86_64", lambda option: False) == ["X86_5LEVEL"]
    assert va.missing_config("x86_64", lambda option: option == "X86_5LEVEL") == []
    assert va.missing_config("arm64", lambda option: False) == []
    shm = next(t for t in load_tests() if t.name == "hugepage-shm")
    assert shm.missing_config("arm", lambda option: False) == ["SYSVIPC"]


def fake_tree(root: Path) -> Path:
    """A tree with a selftests/vm Makefile, two programs (one that does not
    compile) and a Makefile whose headers_install writes one header."""
    vm = root / "tools" / "testing" / "selftests" / "vm"
    vm.mkdir(parents=True)
    (vm / "Makefile").write_text("TEST_GEN_FILES = compaction_test\nTEST_GEN_FILES += map_populate\nTEST_GEN_FILES += $(EXTRA)\n")
    (vm / "compaction_test.c").write_text('#include <linux/harness_uapi.h>\nint main(void) { return HARNESS_OK; }\n')
    (vm / "map_populate.c").write_text("int main(void) { return missing_symbol; }\n")
    (root / "Makefile").write_text(textwrap.dedent("""\
        headers_install:
        \tmkdir -p $(INSTALL_HDR_PATH)/include/linux
        \techo '#define HARNESS_OK 0' > $(INSTALL_HDR_PATH)/include/linux/harness_uapi.h
        """))
    return root


def test_programs_are_read_from_the_trees_makefile(tmp_path):
    assert programs_in(fake_tree(tmp_path)) == ["compaction_test", "map_populate"]


@pytest.mark.skipif(bool(toolchain.missing(["gcc", "make", "rsync"])), reason="needs gcc, make and rsync (packages gcc make rsync)")
def test_programs_build_static_against_the_trees_headers_and_are_cached(tmp_path):
    tree = fake_tree(tmp_path / "tree")
    cache = Cache(tmp_path / "cache")
    built = SelftestBuilder(cache).build(tree, "fake-identity", arch("x86_64"), (5, 0))
    assert not built.cached
    assert built.programs["compaction_test"] is None and built.path("compaction_test").is_file()
    assert built.programs["map_populate"] and built.path("map_populate") is None  # the compiler's words, not a crash
    assert "missing_symbol" in " ".join(built.programs["map_populate"])
    assert not (built.directory / "hdr").exists()
    again = SelftestBuilder(cache).build(tree, "fake-identity", arch("x86_64"), (5, 0))
    assert again.cached and again.directory == built.directory
    other = SelftestBuilder(cache).build(tree, "another-tree", arch("x86_64"), (5, 0))
    assert other.directory != built.directory
    shutil.rmtree(cache.root)


def test_a_known_failure_without_a_signature_is_refused(tmp_path):
    from harness.kernel.kselftest import load_tests

    recipe = tmp_path / "kselftest-vm.yaml"
    recipe.write_text("tests:\n  - name: t\n    program: t\n    known_failures:\n      '5.10': it just fails\n")
    with pytest.raises(ValueError, match="needs 'why' and 'signature'"):
        load_tests(recipe)


def test_a_source_fix_goes_before_its_anchor_once_or_not_at_all():
    from harness.errors import InfraError
    from harness.kernel.kselftest import SourceFix, fixed_sources

    fix = SourceFix("wake", "uffd", "why", "upstream", anchor="\t} else if (x) {\n", insert="\t\twake();\n")
    source = b"if (copy) {\n\tfail();\n\t} else if (x) {\n}\n"
    fixed, applied = fixed_sources({"uffd": source, "other": source}, [fix])
    assert fixed["uffd"] == b"if (copy) {\n\tfail();\n\t\twake();\n\t} else if (x) {\n}\n"
    assert fixed["other"] == source and applied == {"uffd": ["wake"]}  # only its program
    # fixed upstream (no anchor): compiled as it is
    assert fixed_sources({"uffd": b"int main(void) { return 0; }\n"}, [fix]) == ({"uffd": b"int main(void) { return 0; }\n"}, {})
    with pytest.raises(InfraError, match="occurs 2 times"):
        fixed_sources({"uffd": source + source}, [fix])


def test_the_userfaultfd_fix_applies_to_the_v50_and_510_sources_of_the_same_shape():
    """The recipe's own fix against both shapes __copy_page() has (v5.0's
    one-line error, 5.10's braces): the wake lands inside the failed
    UFFDIO_COPY branch, after the -EEXIST test, in both."""
    from harness.kernel.kselftest import fixed_sources, load_source_fixes

    v50 = (b"\tif (ioctl(ufd, UFFDIO_COPY, &uffdio_copy)) {\n\t\tif (uffdio_copy.copy != -EEXIST)\n"
           b"\t\t\tfprintf(stderr, \"UFFDIO_COPY error %Ld\\n\",\n\t\t\t\tuffdio_copy.copy), exit(1);\n"
           b"\t} else if (uffdio_copy.copy != page_size) {\n\t\tfprintf(stderr, \"UFFDIO_COPY unexpected copy %Ld\\n\",\n")
    v510 = v50.replace(b"-EEXIST)\n", b"-EEXIST) {\n").replace(b"uffdio_copy.copy), exit(1);\n", b"uffdio_copy.copy);\n\t\t\texit(1);\n\t\t}\n")
    for source in (v50, v510):
        fixed, applied = fixed_sources({"userfaultfd": source}, load_source_fixes())
        assert applied == {"userfaultfd": ["userfaultfd-wake-after-copy-eexist"]}
        text = fixed["userfaultfd"].decode()
        wake = text.index("ioctl(ufd, UFFDIO_WAKE")
        assert text.index("-EEXIST") < wake < text.index("} else if (uffdio_copy.copy != page_size)")


def test_a_replacing_source_fix_takes_every_expected_occurrence():
    from harness.errors import InfraError
    from harness.kernel.kselftest import SourceFix, fixed_sources

    fix = SourceFix("four", "split", "why", "upstream", anchor="check(p, 1)", replace="check(p, 4)", occurrences=2)
    source = b"if (!check(p, 1)) fail();\nsplit();\nif (!check(p, 1)) fail();\n"
    fixed, applied = fixed_sources({"split": source}, [fix])
    assert fixed["split"] == b"if (!check(p, 4)) fail();\nsplit();\nif (!check(p, 4)) fail();\n"
    assert applied == {"split": ["four"]}
    with pytest.raises(InfraError, match="occurs 1 times in split.c, not 2"):
        fixed_sources({"split": b"if (!check(p, 1)) fail();\n"}, [fix])


def test_the_61_split_huge_page_test_asks_for_the_four_thps_it_made():
    """6.1.176's split_pmd_thp() as written (dd63bd7df41a fixed it in 6.3):
    both THP checks ask for four, and the after-split test is no longer
    inverted; 6.12's shape (already fixed) is left alone."""
    from harness.kernel.kselftest import fixed_sources, load_source_fixes

    v61 = (b"\tif (!check_huge_anon(one_page, 1, pmd_pagesize)) {\n\t\tprintf(\"No THP is allocated\\n\");\n\t}\n"
           b"\tif (check_huge_anon(one_page, 0, pmd_pagesize)) {\n\t\tprintf(\"Still AnonHugePages not split\\n\");\n\t}\n"
           b"\tif (!check_huge_anon(one_page, 1, pmd_pagesize)) {\n\t\tprintf(\"No THP is allocated\\n\");\n\t}\n")
    fixed, applied = fixed_sources({"split_huge_page_test": v61}, load_source_fixes())
    text = fixed["split_huge_page_test"].decode()
    assert applied == {"split_huge_page_test": ["split-huge-page-test-four-thps", "split-huge-page-test-none-left"]}
    assert text.count("check_huge_anon(one_page, 4, pmd_pagesize)") == 2
    assert "if (!check_huge_anon(one_page, 0, pmd_pagesize))" in text and ", 1, pmd_pagesize" not in text
    v612 = fixed["split_huge_page_test"]
    assert fixed_sources({"split_huge_page_test": v612}, load_source_fixes()) == ({"split_huge_page_test": v612}, {})


def test_later_kernels_run_their_renamed_and_added_programs():
    from harness.kernel.kselftest import tests_for

    six12 = {t.name: t.program for t in tests_for((6, 12))}
    assert "userfaultfd" not in six12 and six12["uffd-stress"] == "uffd-stress" and six12["migration"] == "migration"
    assert six12["gup_test-u"] == "gup_test" and "hugetlb-soft-offline" in six12 and "uffd-stress_shmem" in six12
    six1 = [t.name for t in tests_for((6, 1))]
    assert "userfaultfd" in six1 and "uffd-stress" not in six1 and "hugetlb-soft-offline" not in six1
    assert [t.name for t in tests_for((5, 10))] == [t.name for t in tests_for((5, 0))]


def test_the_selftests_directory_moved_to_mm_in_63(tmp_path):
    from harness.kernel.kselftest import selftests_dir

    (tmp_path / "tools/testing/selftests/vm").mkdir(parents=True)
    (tmp_path / "tools/testing/selftests/vm/Makefile").write_text("TEST_GEN_FILES = a\n")
    assert selftests_dir(tmp_path) == "tools/testing/selftests/vm"
    (tmp_path / "tools/testing/selftests/mm").mkdir(parents=True)
    (tmp_path / "tools/testing/selftests/mm/Makefile").write_text("TEST_GEN_FILES = b\n")
    assert selftests_dir(tmp_path) == "tools/testing/selftests/mm" and programs_in(tmp_path) == ["b"]


def test_extra_sources_and_libraries_come_from_the_makefile():
    """The lines of 6.1's and 6.12's selftests Makefiles that add sources
    and libraries to programs."""
    from harness.kernel.kselftest import link_rules

    rules = link_rules(textwrap.dedent("""\
        TEST_GEN_FILES = migration uffd-stress cow
        $(TEST_GEN_PROGS): vm_util.c thp_settings.c
        $(TEST_GEN_FILES): vm_util.c thp_settings.c
        $(OUTPUT)/uffd-stress: uffd-common.c
        $(OUTPUT)/khugepaged: vm_util.c
        $(OUTPUT)/cow: LDLIBS += $(IOURING_EXTRA_LIBS)
        $(OUTPUT)/migration: LDLIBS += -lnuma
        $(OUTPUT)/mlock-random-test $(OUTPUT)/memfd_secret: LDLIBS += -lcap
        """))
    assert rules.extra_sources("uffd-stress") == ["vm_util.c", "thp_settings.c", "uffd-common.c"]
    assert rules.extra_sources("khugepaged") == ["vm_util.c", "thp_settings.c"]  # once each
    assert rules.extra_libs("migration") == ["-lnuma"] and rules.extra_libs("cow") == []
    assert rules.extra_libs("memfd_secret") == ["-lcap"] and rules.extra_libs("mlock-random-test") == ["-lcap"]


@pytest.mark.skipif(bool(toolchain.missing(["gcc", "ar", "make", "rsync", "dpkg-deb"])),
                    reason="needs gcc, ar, make, rsync and dpkg-deb (packages gcc binutils make rsync dpkg)")
def test_a_program_links_its_extra_sources_and_a_library_from_a_debian_package(tmp_path, monkeypatch):
    """selftests/mm: vm_util.c for every program, -lnuma from libnuma-dev
    (here a fake library in a .deb made on the spot); without the package
    the program is reported not built, naming it."""
    import subprocess

    from harness.kernel import kselftest

    tree = fake_tree(tmp_path / "tree")
    mm = tree / "tools" / "testing" / "selftests" / "mm"
    (tree / "tools" / "testing" / "selftests" / "vm").rename(mm)
    (mm / "Makefile").write_text("TEST_GEN_FILES = compaction_test migration\n$(TEST_GEN_FILES): vm_util.c\n"
                                 "$(OUTPUT)/migration: LDLIBS += -lnuma\n")
    (mm / "vm_util.c").write_text("int vm_util(void) { return 0; }\n")
    (mm / "compaction_test.c").write_text("int vm_util(void);\nint main(void) { return vm_util(); }\n")
    (mm / "migration.c").write_text("#include <fakenuma.h>\nint vm_util(void);\nint main(void) { return fake_numa() + vm_util(); }\n")
    pkg = tmp_path / "pkg"
    (pkg / "usr" / "include").mkdir(parents=True)
    (pkg / "usr" / "include" / "fakenuma.h").write_text("int fake_numa(void);\n")
    lib = pkg / "usr" / "lib" / "x86_64-linux-gnu"
    lib.mkdir(parents=True)
    (tmp_path / "numa.c").write_text("int fake_numa(void) { return 0; }\n")
    subprocess.run(["gcc", "-c", "-o", str(tmp_path / "numa.o"), str(tmp_path / "numa.c")], check=True)
    subprocess.run(["ar", "rcs", str(lib / "libnuma.a"), str(tmp_path / "numa.o")], check=True)
    (pkg / "DEBIAN").mkdir()
    (pkg / "DEBIAN" / "control").write_text("Package: libnuma-dev\nVersion: 1\nArchitecture: amd64\nMaintainer: t <t@t>\nDescription: t\n")
    deb = tmp_path / "libnuma-dev_1_amd64.deb"
    subprocess.run(["dpkg-deb", "--build", "--root-owner-group", str(pkg), str(deb)], check=True, capture_output=True)

    class FakeApt:
        def __init__(self, *args, **kwargs):
            pass

        def download(self, package, dest):
            assert package == "libnuma-dev"
            return deb

    monkeypatch.setattr(kselftest, "Apt", FakeApt)
    monkeypatch.setattr(kselftest, "tests_for", lambda version, path=None: [
        SelfTest("compaction_test", "compaction_test"), SelfTest("migration", "migration")])
    built = SelftestBuilder(Cache(tmp_path / "cache")).build(tree, "fake-mm", arch("x86_64"), (6, 12))
    assert built.programs == {"compaction_test": None, "migration": None}, built.programs

    class NoApt(FakeApt):
        def download(self, package, dest):
            raise kselftest.UserError(f"{package} (amd64) is not in the cache and --offline forbids downloading it")

    monkeypatch.setattr(kselftest, "Apt", NoApt)
    built = SelftestBuilder(Cache(tmp_path / "cache2"), offline=True).build(tree, "fake-mm", arch("x86_64"), (6, 12))
    assert built.programs["compaction_test"] is None
    assert "libnuma-dev (amd64) could not be had" in " ".join(built.programs["migration"])


def test_the_kselftest_guest_gets_a_third_cpu_where_the_migration_test_runs():
    from harness.scenarios.kselftest_vm import KselftestVm

    class T:
        def __init__(self, version):
            self.kernel_version = version

    assert KselftestVm().extra_cpus(T("6.12.117")) == 1
    assert KselftestVm().extra_cpus(T("5.10.223")) == 0 and KselftestVm().extra_cpus(T("5.0.0")) == 0


def test_the_kselftest_guest_is_1_gib_only_where_its_programs_were_seen_to_pass_so():
    from harness.scenarios.kselftest_vm import KselftestVm

    class T:
        def __init__(self, version):
            self.kernel_version = version

    assert KselftestVm().guest_memory_mb(T("5.0.0")) == 1024
    for version in ("5.10.223", "6.1.158", "6.12.117", "garbage"):
        assert KselftestVm().guest_memory_mb(T(version)) == 2048, version


MIGRATION_FLAKES = {
    # recorded: 6.12 arm64 (r612-1), shared_anon's 100 failed moves in a row
    "shared_anon": "6.12-arm64-migration-shared-anon-retries.out",
    # recorded: 6.12 x86_64 with mutant migrate-trace-swapped (it swaps two
    # fields of the mm_migrate_pages trace event, nothing else; the same
    # program passed on the pristine kernel): shared_anon_htlb's
    "shared_anon_htlb": "6.12-x86_64-migration-shared-anon-htlb-retries.out",
}


@pytest.mark.parametrize("case", sorted(MIGRATION_FLAKES))
def test_migrations_shared_case_giving_up_alone_is_run_again(case):
    """The flake of 6.12 and 6.1: one shared_* case gave up, every other
    passed.  6.12 runs that case again (-t); 6.1's program has no filter
    and runs again whole; not when another test failed too, nor on another
    case, nor on a kernel the entry does not name, nor after a timeout."""
    from harness.kernel.kselftest import load_tests

    migration = next(t for t in load_tests() if t.name == "migration")
    out = (FIXTURES / "kselftest" / MIGRATION_FLAKES[case]).read_text()
    rerun = migration.flake("6.12.117", 1, out)
    assert rerun is not None and "100 retries" in rerun.why and rerun.args == ("-t", case) and rerun.attempts == 2
    assert migration.flake("6.1.176", 1, out).args == ()
    assert migration.flake("6.12.117", 1, out.replace("pass:5 fail:1", "pass:4 fail:2")) is None
    assert migration.flake("6.12.117", 1, out.replace(f"FAIL  migration.{case}\n", "FAIL  migration.private_anon\n")) is None
    assert migration.flake("5.10.223", 1, out) is None
    assert migration.flake("6.12.117", 124, out) is None and migration.flake("6.12.117", 0, out) is None
    # a run again passes when it exits 0 and shows that case passing
    assert rerun.passed(0, f"ok 1 migration.{case}\n")
    assert not rerun.passed(0, "# Totals: pass:0 fail:0\n")  # -t named nothing: nothing ran
    assert not rerun.passed(1, f"not ok 1 migration.{case}\n")
    assert not rerun.passed(0, "ok 1 migration.shared_anon_thp\n") or case == "shared_anon_thp"


def refused(tmp_path, test_yaml: str, match: str) -> None:
    """A recipe with this one test is refused, saying ``match``."""
    recipe = tmp_path / "k.yaml"
    recipe.write_text("tests:\n  - " + test_yaml + "\n")
    with pytest.raises(ValueError, match=match):
        load_tests(recipe)


def test_a_flaky_entry_names_only_groups_its_signature_has(tmp_path):
    refused(tmp_path, "{name: t, program: t, flaky: {'6.12': {why: w, signature: 'FAIL (?P<c>x)', passes: 'ok {case}'}}}", "names case")
    refused(tmp_path, "{name: t, program: t, flaky: {'6.12': {why: w, signature: 'FAIL'}}}", "'passes'")


class _KsftGuest:
    """A guest that answers each command with the next output of its list
    (the migration program's), and records the commands."""

    def __init__(self, outputs):
        self.outputs, self.commands = list(outputs), []

    def run(self, command, timeout=0, stdin=None, check=False):
        from harness.vm.command import CommandResult

        self.commands.append(command)
        out = self.outputs.pop(0)
        return CommandResult(command, 0, out, "", 1.0)


def _migration_check(tmp_path, outputs):
    from harness.kernel.kselftest import load_tests
    from harness.scenarios.base import Captures
    from harness.scenarios.kselftest_vm import KselftestVm, run_test

    class Target:
        kernel_version = "6.12.117"

    migration = next(t for t in load_tests() if t.name == "migration")
    guest, captures = _KsftGuest(outputs), Captures(tmp_path)
    entry = run_test(guest, captures, migration, Target.kernel_version)
    [check] = KselftestVm().check({"kselftest": [entry]}, Target(), captures)
    return guest.commands, entry, check


def test_a_flake_that_passes_when_run_again_passes_and_one_that_never_does_fails(tmp_path):
    from harness.result import Status

    failed = (FIXTURES / "kselftest" / MIGRATION_FLAKES["shared_anon_htlb"]).read_text()
    passed = "ok 1 migration.shared_anon_htlb\n# Totals: pass:1 fail:0\n\nKSFT-STATUS 0\n"
    commands, entry, check = _migration_check(tmp_path / "a", [failed, passed])
    assert len(commands) == 2 and "./migration -t shared_anon_htlb" in commands[1]
    assert check.status is Status.PASS and "passed when run again (-t shared_anon_htlb, run 1 of 1)" in check.message
    # a kernel on which the case never moves its page: both runs again fail
    commands, entry, check = _migration_check(tmp_path / "b", [failed, failed.replace("pass:5", "pass:0"), failed])
    assert len(commands) == 3 and check.status is Status.FAIL and "run again 2 times, exit statuses 1, 1" in check.message
    # a run again that runs nothing (the case not found) is no pass
    nothing = "# Totals: pass:0 fail:0\n\nKSFT-STATUS 0\n"
    commands, entry, check = _migration_check(tmp_path / "c", [failed, nothing, nothing])
    assert check.status is Status.FAIL
    # another failure is not the flake: no run again, a failure
    other = failed.replace("FAIL  migration.shared_anon_htlb", "FAIL  migration.private_anon_htlb")
    commands, entry, check = _migration_check(tmp_path / "d", [other])
    assert len(commands) == 1 and check.status is Status.FAIL and "not its version's known flake" not in check.message


def test_tests_of_a_64_bit_address_space_are_not_run_on_32_bit_arm_as_run_vmtests_does():
    by_name = {t.name: t for t in load_tests()}
    for name in ("virtual_address_range", "va_128TBswitch"):
        assert by_name[name].not_run_on("x86_64") == "" and by_name[name].not_run_on("arm64") == ""
        assert "VADDR64" in by_name[name].not_run_on("arm")
    assert by_name["compaction_test"].not_run_on("arm") == ""


def test_an_arches_entry_names_known_arches_and_says_why(tmp_path):
    refused(tmp_path, "{name: t, program: t, arches: {only: [x86_64]}}", "'only'.*'why'")
    refused(tmp_path, "{name: t, program: t, arches: {only: [riscv64], why: w}}", "unknown arch riscv64")


def test_the_shared_vm_util_fix_reads_the_thp_count_into_the_long_its_format_writes():
    """6.1's and 6.12's vm_util.c: "%9ld" into a uint64_t set to -1 (on
    32-bit arm the high half stays set and every check_huge_anon() fails)."""
    from harness.kernel.kselftest import fixed_sources, load_source_fixes

    source = (b"bool __check_huge(void *addr, char *pattern, int nr_hpages,\n\t\t  uint64_t hpage_size)\n{\n"
              b"\tuint64_t thp = -1;\n\tint ret;\n")
    fixed, applied = fixed_sources({"vm_util": source, "migration": b"int main(void) { return 0; }\n"}, load_source_fixes())
    assert applied == {"vm_util": ["vm-util-check-huge-32-bit"]}
    assert b"\tlong thp = -1;" in fixed["vm_util"] and b"uint64_t thp" not in fixed["vm_util"]


@pytest.mark.skipif(bool(toolchain.missing(["gcc", "make", "rsync"])), reason="needs gcc, make and rsync (packages gcc make rsync)")
def test_a_fixed_shared_source_is_linked_as_its_fixed_copy_and_named_for_each_program(tmp_path, monkeypatch):
    """A fix of vm_util.c (program: vm_util) is compiled from a copy into
    every program that links it (here the original does not compile: no
    <stdint.h>); the tree is not touched; the manifest names the fix for
    each such program."""
    from harness.kernel import kselftest

    tree = fake_tree(tmp_path / "tree")
    vm = tree / "tools" / "testing" / "selftests" / "vm"
    (vm / "Makefile").write_text("TEST_GEN_FILES = compaction_test\n$(TEST_GEN_FILES): vm_util.c\n")
    original = "int vm_util(void)\n{\n\tuint64_t thp = -1;\n\treturn thp != -1;\n}\n"
    (vm / "vm_util.c").write_text(original)
    (vm / "compaction_test.c").write_text("int vm_util(void);\nint main(void) { return vm_util(); }\n")
    monkeypatch.setattr(kselftest, "tests_for", lambda version, path=None: [SelfTest("compaction_test", "compaction_test")])
    built = SelftestBuilder(Cache(tmp_path / "cache")).build(tree, "fake-vm", arch("x86_64"), (6, 12))
    assert built.programs == {"compaction_test": None}, built.programs
    assert built.source_fixes == {"vm_util": ["vm-util-check-huge-32-bit"], "compaction_test": ["vm-util-check-huge-32-bit"]}
    assert (vm / "vm_util.c").read_text() == original


@pytest.mark.parametrize("version,defines", [
    ("6.12", '#define PID_FMT "%d,0x%lx,0x%lx,%d"\n#define PATH_FMT "%s,0x%lx,0x%lx,%d"\n'),
    ("6.1", '#define PID_FMT "%d,0x%lx,0x%lx"\n#define PATH_FMT "%s,0x%lx,0x%lx"\n'),
])
def test_split_huge_page_tests_requests_and_mask_are_64_bit_on_every_arch(version, defines):
    """Its uint64_t arguments formatted with %lx (on 32-bit arm the kernel
    was asked to split [start, 0)), and a 1UL<<55 mask: PRIx64 and 1ULL,
    the same text as before on a 64-bit arch once PRIx64 is "lx"."""
    from harness.kernel.kselftest import fixed_sources, load_source_fixes

    source = (defines + "\n#define PFN_MASK     ((1UL<<55)-1)\n#define KPF_THP      (1UL<<22)\n").encode()
    fixed, applied = fixed_sources({"split_huge_page_test": source}, load_source_fixes())
    text = fixed["split_huge_page_test"].decode()
    assert "%lx" not in text and text.count('" PRIx64') == 4 and "1ULL<<55" in text and "1ULL<<22" in text, text
    as_on_64_bit = text.replace('" PRIx64 "', "lx").replace('" PRIx64', 'lx"')
    for line in defines.splitlines():
        assert line.split('"')[1] in as_on_64_bit
    assert {f for names in applied.values() for f in names} >= {"split-huge-page-test-pfn-mask-32-bit"}


def test_the_recorded_612_arm_run_passes_split_huge_page_test_and_skips_the_64_bit_address_space_tests(tmp_path):
    """Recorded: 6.12 on 32-bit arm (2026-12-06), kselftest mm with the
    32-bit source fixes: split_huge_page_test passes (its fixes named),
    virtual_address_range and va_128TBswitch are skips with run_vmtests'
    reason, and rechecking gives the same."""
    from harness.pipeline import recheck

    from .test_replay import materialize

    doc = recheck(materialize("6.12-arm-kselftest", tmp_path))
    checks = {c["name"]: c for c in doc["arches"]["arm"]["scenarios"]["kselftest-vm"]["checks"]}
    split = checks["split_huge_page_test"]
    assert split["status"] == "PASS" and "split-huge-page-test-request-formats-32-bit" in split["message"]
    assert "vm-util-check-huge-32-bit" in split["message"]
    for name in ("virtual_address_range", "va_128TBswitch"):
        assert checks[name]["status"] == "SKIP" and "VADDR64" in checks[name]["message"], checks[name]
