"""harness model ...: output, JSON, and exit 2 with a useful message on bad input."""
import json

import pytest

from harness.cli import main


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_simulate_text(capsys):
    code, out, _ = run(capsys, "model", "simulate", "--pages", "anon+pinned*2", "--pages", "anon*30", "--query")
    assert code == 0
    assert "return: 2" in out
    assert "status: [S x32]" in out
    assert "mm_migrate_pages: nr_succeeded=30 nr_failed=2 mode=MIGRATE_SYNC reason=syscall_or_cpuset" in out
    assert "query:  [0 x2, 1 x30]" in out


def test_simulate_json_arm64_thp(capsys):
    code, out, _ = run(capsys, "model", "simulate", "--arch", "arm64", "--pages", "thp", "--json")
    assert code == 0
    doc = json.loads(out)
    assert doc["ret"] == 0
    assert doc["vmstat"]["thp_split_page"] == 1
    assert doc["events"][0]["nr_succeeded"] == 512
    assert "log" not in doc


def test_simulate_yaml_steps(tmp_path, capsys):
    path = tmp_path / "e1.yaml"
    path.write_text(
        "kernel: v5.0\narch: x86_64\npages: [anon*4]\nsteps:\n"
        "  - {call: move_pages, entries: [{pages: all, node: 1}]}\n"
        "  - {call: move_pages, entries: [{pages: all, node: 1}]}\n"
    )
    code, out, _ = run(capsys, "model", "simulate", str(path), "--json", "--explain")
    assert code == 0
    doc = json.loads(out)
    assert [len(step["events"]) for step in doc["steps"]] == [1, 0]
    assert doc["steps"][0]["log"]


def test_simulate_options_override_file(tmp_path, capsys):
    path = tmp_path / "thp.yaml"
    path.write_text("pages: [thp]\ncall: move_pages\nentries: [{page: 0, node: 1}]\n")
    _, out, _ = run(capsys, "model", "simulate", str(path), "--arch", "arm64", "--json")
    assert json.loads(out)["vmstat"]["thp_split_page"] == 1


@pytest.mark.parametrize("argv,words", [
    (["--pages", "anonx"], ["page kind", "anon_swapcache", "zsmalloc"]),
    (["--pages", "anon+sticky"], ["page state", "mlocked", "pinned"]),
    (["--pages", "anon", "--arch", "sparc"], ["arch", "x86_64", "arm64"]),
    (["--pages", "anon", "--kernel", "4.19"], ["kernel version", "v5.0", "5.10"]),
    (["--pages", "anon", "--call", "migrate", "--mode", "FAST"], ["mode", "MIGRATE_SYNC_LIGHT"]),
    (["--pages", "anon*x"], ["count", "not a number"]),
    (["--pages", "anon", "--flags", "MOVE_SOME"], ["flag", "MOVE_ALL"]),
    ([], ["--pages"]),
])
def test_bad_options_exit_2_naming_accepted_values(capsys, argv, words):
    code, _, err = run(capsys, "model", "simulate", *argv)
    assert code == 2
    for word in words:
        assert word in err


@pytest.mark.parametrize("text,words", [
    ("pages: [anon\n", ["malformed YAML"]),
    ("- just a list\n", ["mapping"]),
    ("pages: [anon]\ncall: teleport\n", ["call", "move_pages", "compaction"]),
    ("pages: [anon]\ncall: move_pages\nentries: [{pages: 0-9, node: 1}]\n", ["out of range"]),
    ("pages: [anon]\ncall: move_pages\nentries: [{fault: cosmic_ray, node: 1}]\n", ["address kind", "no_vma"]),
    ("pages: [anon]\ncall: move_pages\ncolour: blue\n", ["scenario key", "kernel"]),
    ("pages: [{kind: thp, count: 0}]\ncall: move_pages\n", ["count"]),
    ("arch: arm\nnuma_nodes: 2\npages: [anon]\ncall: move_pages\n", ["no NUMA"]),
    ("pages: [anon@3]\ncall: move_pages\n", ["node 3"]),
])
def test_bad_yaml_exit_2(tmp_path, capsys, text, words):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    code, _, err = run(capsys, "model", "simulate", str(path))
    assert code == 2
    for word in words:
        assert word in err


def test_missing_file_exit_2(tmp_path, capsys):
    code, _, err = run(capsys, "model", "simulate", str(tmp_path / "nope.yaml"))
    assert code == 2 and "cannot read scenario" in err


def test_callers_table(capsys):
    code, out, _ = run(capsys, "model", "callers", "--json")
    rows = json.loads(out)
    assert {r["name"]: r["mode"] for r in rows}["kcompactd"] == "MIGRATE_SYNC_LIGHT"


def test_kernels_table(capsys):
    code, out, _ = run(capsys, "model", "kernels")
    assert [line.split()[0] for line in out.splitlines()[:4]] == ["v5.0", "5.10", "6.1", "6.12"]
    code, out, _ = run(capsys, "model", "kernels", "--json")
    doc = json.loads(out)
    assert doc["v5.0"]["arches"]["arm64"]["thp_migration"] is False
    assert doc["5.10"]["arches"]["arm64"]["thp_migration"] is True
