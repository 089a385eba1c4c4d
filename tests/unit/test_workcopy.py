"""Fast patched rebuilds on the harness's work copy, with the fake kernel
tree (whose Makefile has real make rules: an object is its source's text,
rebuilt when the source is newer).  What is checked: only what a patch
changes is recompiled, a revert is a cache hit, and neither a patch that
does not apply, nor a failed build, nor an interrupted sync or compile
leaks into a later build."""
import io
import os
import time

import pytest

from harness.errors import KernelError, UserError
from harness.kernel import workcopy
from harness.kernel.build import Builder, BuildRequest, discard_since
from harness.kernel.patches import Patch, load_series, touched_paths
from harness.kernel.source import SourceRequest

from .conftest import FAKE_SOURCES, needs

pytestmark = needs("make", "patch")

MIGRATE = FAKE_SOURCES["mm/migrate.c"]
COMPACTION = FAKE_SOURCES["mm/compaction.c"]


def diff(path, old, new):
    """A one-hunk unified diff replacing the file's single line."""
    return (f"--- a/{path}\n+++ b/{path}\n@@ -1 +1 @@\n-{old.rstrip()}\n+{new.rstrip()}\n").encode()


PATCH_A = Patch("a.patch", diff("mm/migrate.c", MIGRATE, "int migrate_pages(void) { return -1; }"))
PATCH_B = Patch("b.patch", diff("mm/compaction.c", COMPACTION, "int compact_zone(void) { return 1; }"))
BROKEN = Patch("broken.patch", diff("mm/migrate.c", MIGRATE, "#error broken"))


def build(cache, tree, *patches, **kw):
    request = BuildRequest(source=SourceRequest(str(tree), patches=tuple(patches)), arch="x86_64", quiet=True, ccache=False, **kw)
    return Builder(cache=cache, stream=io.StringIO(), tools=["make"]).build(request)


def compiled(tree):
    log = tree.parent / "compiled.log"
    out = log.read_text().split()
    log.write_text("")
    return out


def image_text(result):
    return result.image.read_text()


def test_one_file_patch_recompiles_that_file_and_leaves_the_users_tree_alone(cache, fake_tree):
    base = build(cache, fake_tree)
    assert sorted(compiled(fake_tree)) == ["mm/compaction.o", "mm/migrate.o"]
    patched = build(cache, fake_tree, PATCH_A)
    assert compiled(fake_tree) == ["mm/migrate.o"]
    assert "return -1" in image_text(patched) and patched.key != base.key
    assert (fake_tree / "mm/migrate.c").read_text() == MIGRATE
    assert patched.metadata["work_changed"] == ["mm/migrate.c"]
    assert patched.metadata["source"]["patches"] == [{"file": "a.patch", "sha256": PATCH_A.sha256}]


def test_revert_is_a_cache_hit_and_the_next_patch_does_not_inherit_the_last(cache, fake_tree):
    base = build(cache, fake_tree)
    build(cache, fake_tree, PATCH_A)
    compiled(fake_tree)
    again = build(cache, fake_tree)
    assert again.cached and again.key == base.key and compiled(fake_tree) == []
    other = build(cache, fake_tree, PATCH_B)
    # migrate.c went back to the base (a fresh mtime: its object was A's) and is rebuilt
    assert sorted(compiled(fake_tree)) == ["mm/compaction.o", "mm/migrate.o"]
    text = image_text(other)
    assert "return -1" not in text and MIGRATE in text and "return 1;" in text


def test_patch_that_does_not_apply_names_the_hunk_and_changes_nothing(cache, fake_tree):
    build(cache, fake_tree, PATCH_A)
    work = workcopy.WorkCopy(cache, fake_tree, immutable=False)
    before = (work.tree / "mm/migrate.c").read_text()
    bad = Patch("bad.patch", diff("mm/compaction.c", "no such line", "x"))
    with pytest.raises(UserError) as err:
        build(cache, fake_tree, PATCH_A, bad)
    assert "bad.patch" in err.value.message and "Hunk #1 FAILED" in err.value.message
    assert any("rejected hunk(s) of mm/compaction.c" in line for line in err.value.log_tail)
    assert (work.tree / "mm/migrate.c").read_text() == before
    assert (work.tree / "mm/compaction.c").read_text() == COMPACTION
    assert not list(work.root.glob(".scratch-*"))


def test_failed_build_of_a_patch_leaks_nothing(cache, fake_tree):
    build(cache, fake_tree)
    with pytest.raises(KernelError) as err:
        build(cache, fake_tree, BROKEN)
    assert any("#error" in line for line in err.value.log_tail)
    other = build(cache, fake_tree, PATCH_B)
    assert MIGRATE in image_text(other) and "#error" not in image_text(other)


def test_interrupted_sync_is_redone_by_the_next_build(cache, fake_tree, monkeypatch):
    build(cache, fake_tree, PATCH_A)
    both = Patch("ab.patch", PATCH_A.data.replace(b"-1", b"-2") + PATCH_B.data)
    calls = []
    real = workcopy._install

    def dies_after_one(path, content, mode_from):
        if calls:
            raise KeyboardInterrupt
        calls.append(path)
        real(path, content, mode_from)

    monkeypatch.setattr(workcopy, "_install", dies_after_one)
    with pytest.raises(KeyboardInterrupt):
        build(cache, fake_tree, both)
    monkeypatch.setattr(workcopy, "_install", real)
    work = workcopy.WorkCopy(cache, fake_tree, immutable=False)
    assert work.state()["status"] == "syncing"
    # half done: compaction.c has the new patch, migrate.c still the old one
    assert "return 1;" in (work.tree / "mm/compaction.c").read_text()
    assert "return -1" in (work.tree / "mm/migrate.c").read_text()
    result = build(cache, fake_tree, PATCH_B)
    text = image_text(result)
    assert MIGRATE in text and "return -2" not in text and "return -1" not in text and "return 1;" in text
    assert work.state()["status"] == "clean"


def test_interrupted_compile_never_leaves_a_truncated_object_that_looks_current(cache, fake_tree):
    build(cache, fake_tree)
    (fake_tree.parent / "FAIL").write_text("")
    with pytest.raises(KernelError):
        build(cache, fake_tree, PATCH_A)
    (fake_tree.parent / "FAIL").unlink()
    work = workcopy.WorkCopy(cache, fake_tree, immutable=False)
    obj = work.objs("x86_64") / "mm" / "migrate.o"
    obj.write_text("trunc")  # what a killed compiler leaves: newer than its source
    compiled(fake_tree)
    result = build(cache, fake_tree, PATCH_A)
    assert "mm/migrate.o" in compiled(fake_tree)
    assert "trunc" not in image_text(result) and "return -1" in image_text(result)
    assert "recovered" in result.metadata


def test_discard_since_removes_only_what_the_unfinished_compile_wrote(tmp_path):
    objs = tmp_path / "objs"
    (objs / ".harness").mkdir(parents=True)
    old = objs / "old.o"
    old.write_text("old")
    (objs / ".config").write_text("CONFIG_X=y\n")
    past = time.time() - 100
    os.utime(old, (past, past))
    marker = objs / ".harness" / "building"
    marker.touch()
    (objs / "mm").mkdir()
    (objs / "mm" / "new.o").write_text("half")
    (objs / "mm" / ".new.o.cmd").write_text("cmd")
    assert discard_since(objs, marker) == 2
    assert old.exists() and (objs / ".config").exists() and marker.exists()
    assert not (objs / "mm" / "new.o").exists()


def test_edits_to_the_users_tree_reach_the_work_copy(cache, fake_tree):
    build(cache, fake_tree)
    compiled(fake_tree)
    (fake_tree / "mm/compaction.c").write_text("int compact_zone(void) { return 7; }\n")
    result = build(cache, fake_tree)
    assert compiled(fake_tree) == ["mm/compaction.o"] and "return 7" in image_text(result)


def test_check_applies_a_series_without_touching_the_work_copy(cache, fake_tree):
    work = workcopy.WorkCopy(cache, fake_tree, immutable=False)
    work.check([PATCH_A, PATCH_B])
    assert not work.tree.exists()
    with pytest.raises(UserError) as err:
        work.check([PATCH_A, Patch("again.patch", PATCH_A.data)])
    assert "again.patch" in err.value.message


# -- patches as data -------------------------------------------------------

GIT_PATCH = """\
From 1111111111111111111111111111111111111111 Mon Sep 17 00:00:00 2001
From: Dev <dev@example.org>
Subject: [PATCH 2/3] mm/migrate: count retries
 as failures

---
 mm/migrate.c | 2 +-
 1 file changed, 1 insertion(+), 1 deletion(-)

diff --git a/mm/migrate.c b/mm/migrate.c
--- a/mm/migrate.c
+++ b/mm/migrate.c
@@ -1 +1 @@
-a
+b
diff --git a/mm/old.c b/mm/new.c
similarity index 90%
rename from mm/old.c
rename to mm/new.c
diff --git a/mm/added.c b/mm/added.c
new file mode 100644
--- /dev/null
+++ b/mm/added.c
@@ -0,0 +1 @@
+x
"""


def test_touched_paths_of_a_git_patch():
    assert touched_paths(GIT_PATCH) == ["mm/migrate.c", "mm/old.c", "mm/new.c", "mm/added.c"]
    assert touched_paths("--- linux-5.0.orig/mm/x.c\t2019-03-03\n+++ linux-5.0/mm/x.c\n") == ["mm/x.c"]
    assert touched_paths("--- x/a/b/mm/x.c\n+++ y/a/b/mm/x.c\n", strip=3) == ["mm/x.c"]


def test_series_from_quilt_mbox_and_format_patch_dir(tmp_path):
    quilt = tmp_path / "quilt"
    quilt.mkdir()
    (quilt / "one.diff").write_bytes(PATCH_A.data)
    (quilt / "two.diff").write_bytes(PATCH_B.data)
    (quilt / "series").write_text("# the series\none.diff\ntwo.diff -p1\n")
    assert [p.name for p in load_series(quilt)] == ["one.diff", "two.diff"]
    (quilt / "series").write_text("one.diff\nmissing.diff\n")
    with pytest.raises(UserError) as err:
        load_series(quilt)
    assert "series:2" in err.value.message and "missing.diff" in err.value.message

    mbox = tmp_path / "series.mbox"
    mbox.write_text(GIT_PATCH + GIT_PATCH.replace("2/3", "3/3").replace("count retries\n as failures", "second"))
    patches = load_series(mbox)
    assert [p.subject for p in patches] == ["mm/migrate: count retries as failures", "mm/migrate: second"]
    assert patches[0].name == "0001-mm-migrate-count-retries-as-failures"

    formatted = tmp_path / "fp"
    formatted.mkdir()
    (formatted / "0002-b.patch").write_bytes(PATCH_B.data)
    (formatted / "0001-a.patch").write_bytes(PATCH_A.data)
    (formatted / "cover.txt").write_text("not a patch")
    assert [p.name for p in load_series(formatted)] == ["0001-a.patch", "0002-b.patch"]
    with pytest.raises(UserError):
        load_series(tmp_path / "nowhere")


def test_a_lost_state_file_rebuilds_from_scratch(cache, fake_tree):
    build(cache, fake_tree, PATCH_A)
    work = workcopy.WorkCopy(cache, fake_tree, immutable=False)
    work.state_path.unlink()  # the copy can no longer be trusted
    compiled(fake_tree)
    result = build(cache, fake_tree, PATCH_B)
    assert sorted(compiled(fake_tree)) == ["mm/compaction.o", "mm/migrate.o"]
    assert "return -1" not in image_text(result) and MIGRATE in image_text(result)
