"""The mutation catalogue: every entry is well-formed, and (with a v5.0
tree at hand) names text that occurs once, inside the function it says,
and becomes a patch that applies to the tree."""
import os
import subprocess
from pathlib import Path

import pytest

from harness.errors import UserError
from harness.workflows.mutation import (
    CATEGORIES,
    Mutation,
    enclosing_function,
    load_catalogue,
    select,
)

C_SOURCE = """\
static int helper(int x)
{
\treturn x + 1;
}

int
migrate_pages(struct list_head *from,
\t\tint mode)
{
\tint rc = helper(1);
\tif (rc)
\t\treturn rc;
\treturn 0;
}
"""


def v50_tree():
    path = os.environ.get("HARNESS_TEST_V50_TREE")
    if path:
        return Path(path)
    from harness.host.cache import Cache
    from harness.kernel.source import SourceResolver

    try:
        return SourceResolver(Cache()).registered_tree("v5.0")
    except UserError:
        return None


def test_enclosing_function_finds_multi_line_definitions():
    assert enclosing_function(C_SOURCE, "\treturn x + 1;") == "helper"
    assert enclosing_function(C_SOURCE, "\tif (rc)\n\t\treturn rc;") == "migrate_pages"
    assert enclosing_function(C_SOURCE, "nothing like it") is None


def test_catalogue_is_well_formed():
    catalogue = load_catalogue("v5.0")
    assert len(catalogue) >= 30
    files = {m.file for m in catalogue}
    for required in ("mm/migrate.c", "mm/compaction.c", "mm/mempolicy.c", "mm/huge_memory.c", "mm/hugetlb.c",
                     "mm/zsmalloc.c", "mm/balloon_compaction.c", "drivers/virtio/virtio_balloon.c"):
        assert required in files, required
    assert all(m.category in CATEGORIES and m.original != m.replacement and m.what for m in catalogue)
    with pytest.raises(UserError):
        select(catalogue, ["no-such-mutant"])
    with pytest.raises(UserError):
        load_catalogue("v9.9")


def test_a_mutation_in_the_wrong_function_is_refused(tmp_path):
    (tmp_path / "mm").mkdir()
    (tmp_path / "mm" / "migrate.c").write_text(C_SOURCE)
    right = Mutation("m", "mm/migrate.c", "migrate_pages", "return-value", "\treturn 0;\n}", "\treturn 1;\n}", "returns 1")
    assert b"+\treturn 1;" in right.patch(tmp_path).data
    wrong = Mutation("m", "mm/migrate.c", "helper", "return-value", "\treturn 0;\n}", "\treturn 1;\n}", "returns 1")
    with pytest.raises(UserError) as err:
        wrong.patch(tmp_path)
    assert "in migrate_pages(), not helper()" in err.value.message
    twice = Mutation("m", "mm/migrate.c", "migrate_pages", "return-value", "\treturn", "\treturn -1 +", "x")
    with pytest.raises(UserError) as err:
        twice.patch(tmp_path)
    assert "occurs 3 time(s)" in err.value.message


@pytest.mark.skipif(v50_tree() is None, reason="needs a v5.0 tree: harness sources --register v5.0 PATH, or HARNESS_TEST_V50_TREE")
@pytest.mark.skipif(subprocess.run(["which", "patch"], capture_output=True).returncode != 0, reason="needs patch (apt-get install patch)")
def test_every_mutation_applies_to_v50(tmp_path):
    tree = v50_tree()
    assert_every_mutation_applies(load_catalogue("v5.0"), tree, tmp_path)


def assert_every_mutation_applies(catalogue, tree, tmp_path):
    """Each mutant's patch (refused if its original occurs 0 or 2+ times,
    or outside its function) applies with patch(1) to a copy of its file."""
    for mutation in catalogue:
        patch = mutation.patch(tree)
        work = tmp_path / mutation.id
        (work / mutation.file).parent.mkdir(parents=True)
        (work / mutation.file).write_bytes((tree / mutation.file).read_bytes())
        out = subprocess.run(["patch", "-p1", "--batch", "--forward"], cwd=work, input=patch.data, capture_output=True)
        assert out.returncode == 0, (mutation.id, out.stdout)
        assert mutation.replacement in (work / mutation.file).read_text()


def test_a_mutant_may_be_equivalent_on_some_arches_only(tmp_path):
    by_id = {m.id: m for m in load_catalogue()}
    no_pool = by_id["hugetlb-no-pool"]
    assert "ARCH_ENABLE_HUGEPAGE_MIGRATION" in no_pool.equivalent_on("arm64")
    assert no_pool.equivalent_on("x86_64") is None  # x86_64 v5.0 migrates hugetlb pages: it counts there
    assert Mutation("m", "f", "g", "content", "a", "b", "w", equivalent="no user can tell").equivalent_on("arm") == "no user can tell"
    bad = tmp_path / "bad.yaml"
    bad.write_text("kernel: v5.0\nmutations:\n  - {id: m, file: f, function: g, category: content, original: a, "
                   "replacement: b, what: w, equivalent: [arm64]}\n")
    with pytest.raises(UserError, match="equivalent is a reason, or a mapping of arch to reason"):
        load_catalogue(path=bad)


def test_teeth_counts_a_mutant_only_where_it_is_not_equivalent():
    import importlib.util

    spec = importlib.util.spec_from_file_location("teeth", Path(__file__).resolve().parents[2] / "bench" / "teeth.py")
    teeth = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(teeth)
    row = lambda id_, eq, x86, arm: {"id": id_, "equivalent": eq, "x86_64": {"harness": {"result": x86}},  # noqa: E731
                                     "arm64": {"harness": {"result": arm}}}
    rows = [row("a", None, "killed", "killed"), row("b", {"arm64": "why"}, "killed", "survived"),
            row("c", None, "survived", "does not build")]
    assert teeth.rate(rows, "x86_64", "harness") == (2, 3)
    assert teeth.rate(rows, "arm64", "harness") == (1, 1)  # b equivalent there, c not counted


def test_the_612_catalogue_is_well_formed():
    """issue 20: at least 30 mutants of 6.12's folio-era code, across v5.0's categories."""
    catalogue = load_catalogue("6.12")
    assert len(catalogue) >= 30 and len({m.id for m in catalogue}) == len(catalogue)
    assert {m.category for m in catalogue} == set(CATEGORIES)
    files = {m.file for m in catalogue}
    for required in ("mm/migrate.c", "mm/compaction.c", "mm/mempolicy.c", "mm/huge_memory.c", "mm/hugetlb.c", "mm/zsmalloc.c"):
        assert required in files, required
    assert all(m.original != m.replacement and m.what for m in catalogue)


def debian_612_tree():
    from harness.host.cache import Cache
    from harness.kernel.source import SourceRequest, SourceResolver

    path = os.environ.get("HARNESS_TEST_612_TREE")
    if path:
        return Path(path)
    try:
        return SourceResolver(Cache()).resolve(SourceRequest("debian-6.12", offline=True)).tree
    except UserError:
        return None


@pytest.mark.skipif(debian_612_tree() is None, reason="needs the debian-6.12 source in the harness cache (or HARNESS_TEST_612_TREE)")
@pytest.mark.skipif(subprocess.run(["which", "patch"], capture_output=True).returncode != 0, reason="needs patch (apt-get install patch)")
def test_every_612_mutation_applies_to_612_in_its_function(tmp_path):
    assert_every_mutation_applies(load_catalogue("6.12"), debian_612_tree(), tmp_path)


def test_a_kernel_gets_the_catalogue_of_its_version():
    from harness.workflows.mutation import catalogue_name

    assert catalogue_name("v5.0") == "v5.0"
    assert catalogue_name("6.12") == "6.12"
    assert catalogue_name("debian-6.12", (6, 12)) == "6.12"
    assert catalogue_name("debian-5.10", (5, 10)) == "debian-5.10"  # none for 5.10: load_catalogue says which exist
    assert catalogue_name("/src/linux", (5, 0)) == "v5.0"


def test_teeth_resumed_with_the_anchor_adds_kselftest_to_every_row_without_rerunning_the_suite(tmp_path, monkeypatch):
    import importlib.util
    import json
    import sys
    from types import SimpleNamespace

    spec = importlib.util.spec_from_file_location("teeth", Path(__file__).resolve().parents[2] / "bench" / "teeth.py")
    teeth = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(teeth)
    calls = []

    def run_one(kernel, arch, patches, scenarios, root, label, offline, fail_fast=True, baseline=frozenset()):
        calls.append(label)
        killed = "kselftest" not in label and label.startswith("m1")
        return {"result": "killed" if killed else "survived", "by": "x/y/z" if killed else "", "seconds": 1.0, "failing": []}

    mutants = [SimpleNamespace(id=i, category="accounting", file="mm/migrate.c", function="f", what="w", equivalent=None,
                               patch=lambda tree: "patch") for i in ("m1", "m2")]
    monkeypatch.setattr(teeth, "run_one", run_one)
    monkeypatch.setattr(teeth, "harness_scenarios", lambda chosen: ("a", "b"))
    monkeypatch.setattr(teeth, "load_catalogue", lambda name: mutants)
    monkeypatch.setattr(teeth, "select", lambda catalogue, ids: catalogue)
    source = SimpleNamespace(tree=tmp_path, version=SimpleNamespace(short=(6, 12)))
    monkeypatch.setattr(teeth, "SourceResolver", lambda cache: SimpleNamespace(resolve=lambda request: source))
    monkeypatch.setattr(teeth, "Cache", lambda: None)
    argv = ["teeth", "--kernel", "debian-6.12", "--arch", "x86_64", "--runs", str(tmp_path / "runs")]
    monkeypatch.setattr(sys, "argv", argv + ["--no-kselftest"])
    assert teeth.main() == 0
    assert calls == ["pristine-x86_64", "m1-x86_64", "m2-x86_64"]
    (root,) = [p for p in (tmp_path / "runs").iterdir()]
    calls.clear()
    monkeypatch.setattr(sys, "argv", argv + ["--resume", str(root)])
    assert teeth.main() == 0
    # the anchor only: pristine's and each mutant's kselftest, no suite again
    assert calls == ["pristine-x86_64-kselftest", "m1-x86_64-kselftest", "m2-x86_64-kselftest"]
    table = json.loads((root / "teeth.json").read_text())
    assert [r["id"] for r in table["mutants"]] == ["m1", "m2"]
    assert table["mutants"][0]["x86_64"]["harness"]["result"] == "killed"
    assert all("kselftest" in r["x86_64"] for r in table["mutants"]) and table["kselftest"]


def test_teeth_resumed_from_a_kept_table_measures_pristine_again_and_only_the_rows_it_lacks(tmp_path, monkeypatch):
    """A teeth.json kept from an earlier session (bench/results/): its
    rows stay, with the commit each was measured at; the pristine kernel
    runs again with today's code, then the mutants the table lacks."""
    import importlib.util
    import json
    import sys
    from types import SimpleNamespace

    spec = importlib.util.spec_from_file_location("teeth", Path(__file__).resolve().parents[2] / "bench" / "teeth.py")
    teeth = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(teeth)
    calls = []

    def run_one(kernel, arch, patches, scenarios, root, label, offline, fail_fast=True, baseline=frozenset()):
        calls.append(label)
        return {"result": "killed" if label.startswith("m") else "survived", "by": "x/y/z", "seconds": 1.0, "failing": []}

    mutants = [SimpleNamespace(id=i, category="accounting", file="mm/migrate.c", function="f", what="w", equivalent=None,
                               patch=lambda tree: "patch") for i in ("m1", "m2", "m3")]
    monkeypatch.setattr(teeth, "run_one", run_one)
    monkeypatch.setattr(teeth, "harness_scenarios", lambda chosen: ("a", "b"))
    monkeypatch.setattr(teeth, "load_catalogue", lambda name: mutants)
    monkeypatch.setattr(teeth, "select", lambda catalogue, ids: [m for m in catalogue if not ids or m.id in ids])
    source = SimpleNamespace(tree=tmp_path, version=SimpleNamespace(short=(6, 12)))
    monkeypatch.setattr(teeth, "SourceResolver", lambda cache: SimpleNamespace(resolve=lambda request: source))
    monkeypatch.setattr(teeth, "Cache", lambda: None)
    monkeypatch.setattr(teeth, "harness_commit", lambda: "aaaaaaaaaaaa")
    argv = ["teeth", "--kernel", "debian-6.12", "--arch", "x86_64", "--no-kselftest", "--runs", str(tmp_path / "runs")]
    monkeypatch.setattr(sys, "argv", argv + ["--mutant", "m2", "--json", str(tmp_path / "kept.json")])
    assert teeth.main() == 0
    assert calls == ["pristine-x86_64", "m2-x86_64"]
    calls.clear()
    monkeypatch.setattr(teeth, "harness_commit", lambda: "bbbbbbbbbbbb")
    monkeypatch.setattr(sys, "argv", argv + ["--resume", str(tmp_path / "kept.json"), "--json", str(tmp_path / "all.json")])
    assert teeth.main() == 0
    assert calls == ["pristine-x86_64", "m1-x86_64", "m3-x86_64"]  # m2 kept
    table = json.loads((tmp_path / "all.json").read_text())
    assert {r["id"]: r["harness_commit"] for r in table["mutants"]} == {"m2": "aaaaaaaaaaaa", "m1": "bbbbbbbbbbbb",
                                                                         "m3": "bbbbbbbbbbbb"}
    assert len(list((tmp_path / "runs").iterdir())) == 2  # a directory of its own; the kept file untouched
    assert [r["id"] for r in json.loads((tmp_path / "kept.json").read_text())["mutants"]] == ["m2"]
    # a table of another kernel is refused
    monkeypatch.setattr(sys, "argv", ["teeth", "--kernel", "v5.0", "--arch", "x86_64", "--no-kselftest",
                                      "--resume", str(tmp_path / "kept.json")])
    assert teeth.main() == 2


def test_teeth_recheck_judges_every_run_again_and_runs_nothing(tmp_path, monkeypatch):
    """--resume DIR --recheck: each run of the table judged again from its
    captures by today's checks; a survivor a new check kills becomes
    killed; nothing is built or booted; a pristine run that now fails
    stops it as a false alarm."""
    import importlib.util
    import json
    import sys
    from types import SimpleNamespace

    import harness.pipeline as pipeline_mod

    spec = importlib.util.spec_from_file_location("teeth", Path(__file__).resolve().parents[2] / "bench" / "teeth.py")
    teeth = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(teeth)
    root = tmp_path / "teeth"
    runs = {name: root / name for name in ("pristine-x86_64", "m1-x86_64", "m2-x86_64")}
    for run in runs.values():
        run.mkdir(parents=True)
    cell = lambda result, run: {"result": result, "by": "", "seconds": 1.0, "run": str(run), "failing": []}  # noqa: E731
    table = {"kernel": "debian-6.12", "arches": ["x86_64"], "scenarios": ["a"], "kselftest": False,
             "pristine": {"x86_64": {"harness": cell("survived", runs["pristine-x86_64"])}},
             "mutants": [{"id": m, "category": "accounting", "file": "f", "function": "g", "what": "w", "equivalent": None,
                          "x86_64": {"harness": cell(result, runs[f"{m}-x86_64"])}} for m, result in (("m1", "killed"), ("m2", "survived"))]}
    (root / "teeth.json").write_text(json.dumps(table))
    judged = {"m2-x86_64": "FAIL"}

    def recheck(run_dir, reports=True, only=None):
        return {"run": Path(run_dir).name, "status": judged.get(Path(run_dir).name, "PASS")}

    def verdict(doc, baseline=frozenset()):
        return ("killed", "s/step/a new check") if doc["status"] == "FAIL" else ("survived", "")

    monkeypatch.setattr(pipeline_mod, "recheck", recheck)
    monkeypatch.setattr(teeth, "verdict", verdict)
    monkeypatch.setattr(teeth, "failing", lambda doc: ["s/step/a new check"] if doc["status"] == "FAIL" else [])
    monkeypatch.setattr(teeth, "run_one", lambda *a, **k: pytest.fail("a recheck runs nothing"))
    monkeypatch.setattr(teeth, "load_catalogue", lambda name: [])
    monkeypatch.setattr(teeth, "select", lambda catalogue, ids: catalogue)
    source = SimpleNamespace(tree=tmp_path, version=SimpleNamespace(short=(6, 12)))
    monkeypatch.setattr(teeth, "SourceResolver", lambda cache: SimpleNamespace(resolve=lambda request: source))
    monkeypatch.setattr(teeth, "Cache", lambda: None)
    monkeypatch.setattr(teeth, "harness_commit", lambda: "cccccccccccc")
    argv = ["teeth", "--kernel", "debian-6.12", "--arch", "x86_64", "--resume", str(root), "--recheck"]
    monkeypatch.setattr(sys, "argv", argv)
    assert teeth.main() == 0
    rows = {r["id"]: r["x86_64"]["harness"] for r in json.loads((root / "teeth.json").read_text())["mutants"]}
    assert (rows["m1"]["result"], rows["m2"]["result"]) == ("survived", "killed")  # m1's recorded kill: judged PASS here
    assert rows["m2"]["by"] == "s/step/a new check" and rows["m2"]["rechecked"] == "cccccccccccc"
    # only the mutants named (and the pristine runs)
    (root / "teeth.json").write_text(json.dumps(table))
    monkeypatch.setattr(sys, "argv", argv + ["--mutant", "m2"])
    assert teeth.main() == 0
    rows = {r["id"]: r["x86_64"]["harness"] for r in json.loads((root / "teeth.json").read_text())["mutants"]}
    assert "rechecked" not in rows["m1"] and rows["m1"]["result"] == "killed" and rows["m2"]["result"] == "killed"
    judged["pristine-x86_64"] = "FAIL"
    assert teeth.main() == 1


def test_a_kselftest_kill_stands_only_when_a_second_run_kills_too(tmp_path, monkeypatch):
    """kselftest's own races under TCG fail a test now and then: its kill
    of a mutant is run a second time; one kill of two is "flaky" and counts
    as a survivor.  A kept row with an unconfirmed kill gets only the
    second run."""
    import importlib.util
    import json
    import sys
    from types import SimpleNamespace

    spec = importlib.util.spec_from_file_location("teeth", Path(__file__).resolve().parents[2] / "bench" / "teeth.py")
    teeth = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(teeth)
    calls = []
    kills = {"m1-x86_64-kselftest", "m1-x86_64-kselftest-again", "m2-x86_64-kselftest", "m4-x86_64-kselftest-again"}

    def run_one(kernel, arch, patches, scenarios, root, label, offline, fail_fast=True, baseline=frozenset()):
        calls.append(label)
        killed = label in kills or ("kselftest" not in label and label.startswith("m"))
        return {"result": "killed" if killed else "survived", "by": "kselftest-vm/run_vmtests/migration" if killed else "",
                "seconds": 1.0, "failing": ["kselftest-vm/run_vmtests/migration"] if killed else []}

    mutants = [SimpleNamespace(id=i, category="accounting", file="mm/migrate.c", function="f", what="w", equivalent=None,
                               patch=lambda tree: "patch") for i in ("m1", "m2", "m3", "m4")]
    monkeypatch.setattr(teeth, "run_one", run_one)
    monkeypatch.setattr(teeth, "harness_scenarios", lambda chosen: ("a",))
    monkeypatch.setattr(teeth, "load_catalogue", lambda name: mutants)
    monkeypatch.setattr(teeth, "select", lambda catalogue, ids: catalogue)
    source = SimpleNamespace(tree=tmp_path, version=SimpleNamespace(short=(6, 12)))
    monkeypatch.setattr(teeth, "SourceResolver", lambda cache: SimpleNamespace(resolve=lambda request: source))
    monkeypatch.setattr(teeth, "Cache", lambda: None)
    kept = {"kernel": "debian-6.12", "arches": ["x86_64"], "scenarios": ["a"], "kselftest": True, "pristine": {},
            "mutants": [{"id": "m4", "category": "accounting", "equivalent": None, "harness_commit": "c",
                         "x86_64": {"harness": {"result": "killed", "by": "a/b"},
                                    "kselftest": {"result": "killed", "by": "kselftest-vm/run_vmtests/migration"}}}]}
    (tmp_path / "kept.json").write_text(json.dumps(kept))
    monkeypatch.setattr(sys, "argv", ["teeth", "--kernel", "debian-6.12", "--arch", "x86_64", "--runs", str(tmp_path / "runs"),
                                      "--resume", str(tmp_path / "kept.json"), "--json", str(tmp_path / "out.json")])
    assert teeth.main() == 0
    assert calls == ["pristine-x86_64", "pristine-x86_64-kselftest", "m1-x86_64", "m1-x86_64-kselftest",
                     "m1-x86_64-kselftest-again", "m2-x86_64", "m2-x86_64-kselftest", "m2-x86_64-kselftest-again",
                     "m3-x86_64", "m3-x86_64-kselftest", "m4-x86_64-kselftest-again"]
    table = json.loads((tmp_path / "out.json").read_text())
    ksft = {r["id"]: r["x86_64"]["kselftest"]["result"] for r in table["mutants"]}
    assert ksft == {"m1": "killed", "m2": "flaky", "m3": "survived", "m4": "killed"}
    assert table["kselftest_kill_rate"]["x86_64"] == 2 / 4


def test_teeth_interrupted_says_how_to_go_on_and_exits_130(monkeypatch, capsys):
    import importlib.util

    spec = importlib.util.spec_from_file_location("teeth", Path(__file__).resolve().parents[2] / "bench" / "teeth.py")
    teeth = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(teeth)

    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr(teeth, "main", interrupted)
    try:
        code = teeth.cli()
    except KeyboardInterrupt:  # (escaping, it would end pytest's whole run)
        pytest.fail("Ctrl-C escaped bench/teeth.py's cli() as a traceback")
    assert code == 130
    err = capsys.readouterr().err
    assert "interrupted" in err and "--resume DIR" in err and "Traceback" not in err
