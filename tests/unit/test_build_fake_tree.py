"""The build stage against a fake kernel tree whose Makefile fails on
demand: artifacts, cache hits, verification, build errors, cleanup."""
import io
import json
import os
import stat
from pathlib import Path

import pytest

from harness.cli import main
from harness.errors import InfraError, KernelError, UserError
from harness.kernel.build import Builder, BuildRequest
from harness.kernel.source import SourceRequest

from .conftest import needs

pytestmark = needs("make", "gcc")


def builder(cache):
    return Builder(cache=cache, stream=io.StringIO(), tools=["make"])


def request(tree, arch="x86_64", **kw):
    return BuildRequest(source=SourceRequest(str(tree)), arch=arch, quiet=True, ccache=False, **kw)


def calls(tree):
    return (tree.parent / "calls.log").read_text().split()


def test_build_installs_artifacts_and_metadata(cache, fake_tree):
    result = builder(cache).build(request(fake_tree))
    assert not result.cached
    assert result.image.read_text().startswith("image\n")
    for name in ("config", "requested.config", "build.log", "System.map", "build.json"):
        assert (result.directory / name).is_file(), name
    meta = json.loads((result.directory / "build.json").read_text())
    assert meta["status"] == "complete" and meta["arch"] == "x86_64"
    assert meta["reproducer"].startswith("harness build --kernel ")
    assert meta["compat"] == ["selinux-genheaders", "hostprogs-fcommon", "subcmd-werror", "objtool-thunk-symtab", "boot-force-order-fcommon"]
    assert any("KCONFIG_ALLCONFIG=" in c and c.endswith("allnoconfig") for c in meta["make_commands"])
    assert "OBJECT_FILES_NON_STANDARD_thunk_64.o=y" in meta["make_commands"][-1]
    assert "CONFIG_COMPACTION=y" in (result.directory / "requested.config").read_text()
    assert calls(fake_tree) == ["allnoconfig", "olddefconfig", "build"]


def test_cache_hit_rebuilds_nothing(cache, fake_tree):
    first = builder(cache).build(request(fake_tree))
    (fake_tree.parent / "calls.log").write_text("")
    second = builder(cache).build(request(fake_tree))
    assert second.cached and second.directory == first.directory
    assert calls(fake_tree) == []


def test_any_input_change_is_a_new_key(cache, fake_tree, tmp_path, monkeypatch):
    # a stand-in cross compiler: the fake tree compiles nothing, but its
    # version is part of the key
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    gcc = bin_dir / "aarch64-linux-gnu-gcc"
    gcc.write_text("#!/bin/sh\necho 'aarch64-linux-gnu-gcc (fake) 12.2.0'\n")
    gcc.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    first = builder(cache).build(request(fake_tree))
    frag = tmp_path / "extra.config"
    frag.write_text("# for the test\nCONFIG_TMPFS=y\n")
    assert builder(cache).build(request(fake_tree, fragments=(frag,))).key != first.key
    assert builder(cache).build(request(fake_tree, debug=True)).key != first.key
    assert builder(cache).build(request(fake_tree, arch="arm64")).key != first.key


def test_build_error_is_a_kernel_error_with_the_error_line(cache, fake_tree):
    (fake_tree.parent / "FAIL").write_text("")
    with pytest.raises(KernelError) as err:
        builder(cache).build(request(fake_tree))
    assert any("error: expected ';'" in line for line in err.value.log_tail)
    assert err.value.log_path.is_file()
    assert not [p for p in (cache.root / "builds").iterdir()]  # nothing that looks complete
    # the failed build left its marker: the next one first discards what
    # the failed compile wrote, then succeeds
    (fake_tree.parent / "FAIL").unlink()
    result = builder(cache).build(request(fake_tree))
    assert "recovered" in result.metadata and "clean" not in calls(fake_tree)


def test_a_failed_make_on_a_full_disk_is_infrastructure_whatever_the_log_says(cache, fake_tree, monkeypatch):
    """Decided by the room left after the failure: the same compiler error
    (which says nothing of space, as an assembler reading a truncated file
    would not) is the kernel's on a disk with room, the disk's on a full one."""
    from harness.errors import InfraError
    from harness.host import cache as cache_mod

    (fake_tree.parent / "FAIL").write_text("")
    with pytest.raises(KernelError):
        builder(cache).build(request(fake_tree))
    monkeypatch.setattr(cache_mod, "free_bytes", lambda path: 12 << 20)
    with pytest.raises(InfraError) as err:
        builder(cache).build(request(fake_tree))
    assert err.value.message.startswith("cache disk full:") and "while running make (build)" in err.value.message
    assert not [p for p in (cache.root / "builds").iterdir()]


def test_option_that_does_not_stick_names_the_dependency(cache, fake_tree, tmp_path):
    (fake_tree.parent / "drop.txt").write_text("CONFIG_TMPFS=y\nCONFIG_SHMEM=y\n")
    frag = tmp_path / "user.config"
    frag.write_text("# test\nCONFIG_TMPFS=y\n")
    with pytest.raises(UserError) as err:
        builder(cache).build(request(fake_tree, fragments=(frag,)))
    assert "CONFIG_TMPFS" in err.value.message
    assert "unmet dependency at Kconfig:5: SHMEM (now SHMEM=n)" in err.value.message
    assert "2 requested options did not stick" in err.value.message


def test_unknown_option_in_a_fragment(cache, fake_tree, tmp_path):
    (fake_tree.parent / "drop.txt").write_text("CONFIG_TMPSF=y\n")
    frag = tmp_path / "typo.config"
    frag.write_text("CONFIG_TMPSF=y\n")
    with pytest.raises(UserError) as err:
        builder(cache).build(request(fake_tree, fragments=(frag,)))
    assert "not a Kconfig symbol" in err.value.message and "typo.config:1" in err.value.message
    assert "CONFIG_TMPFS" in err.value.message  # did you mean


def test_unreadable_fragment(cache, fake_tree, tmp_path):
    with pytest.raises(UserError):
        builder(cache).build(request(fake_tree, fragments=(tmp_path / "nope.config",)))


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_read_only_cache(cache, fake_tree):
    cache.root.mkdir(parents=True)
    cache.root.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        with pytest.raises(UserError) as err:
            builder(cache).build(request(fake_tree))
        assert "not writable" in err.value.message
    finally:
        cache.root.chmod(stat.S_IRWXU)


def test_cache_on_a_file_is_a_clear_error(tmp_path, fake_tree):
    from harness.host.cache import Cache

    blocker = tmp_path / "blocker"
    blocker.write_text("")
    with pytest.raises(UserError) as err:
        builder(Cache(blocker / "cache")).build(request(fake_tree))
    assert "HARNESS_CACHE" in err.value.hint


def test_full_cache_is_a_clear_error(monkeypatch, cache, fake_tree):
    import errno

    from harness.host import cache as cache_mod

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(cache_mod.os, "fsync", full)
    with pytest.raises(InfraError) as err:  # the machine's trouble, not the input's or the kernel's
        builder(cache).build(request(fake_tree))
    assert err.value.message.startswith(f"cache disk full: {cache.root} (") and " free)" in err.value.message


def test_cli_exit_codes(tmp_path, fake_tree, capsys, monkeypatch):
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "c"))
    assert main(["build", "--kernel", str(fake_tree), "--arch", "sparc"]) == 2
    assert "x86_64" in capsys.readouterr().err
    assert main(["build", "--kernel", "v7.7"]) == 2
    assert "debian-5.10" in capsys.readouterr().err


def test_missing_cross_compiler_names_the_package():
    from harness.host import toolchain

    with pytest.raises(UserError) as err:
        toolchain.require(["aarch64-linux-gnu-gcc"], "building arm64", path="/nonexistent")
    assert "gcc-aarch64-linux-gnu" in err.value.hint


@pytest.mark.parametrize("damage", ["image deleted", "build.json corrupt"])
def test_a_cache_entry_with_its_image_missing_is_rebuilt_not_returned(cache, fake_tree, damage):
    first = builder(cache).build(request(fake_tree))
    if damage == "image deleted":
        first.image.unlink()
    else:
        (first.directory / "build.json").write_text('{"key": ')
    second = builder(cache).build(request(fake_tree))
    assert not second.cached and second.directory == first.directory
    assert second.image.is_file() and second.image.read_text().startswith("image\n")
    assert json.loads((second.directory / "build.json").read_text())["status"] == "complete"
    assert builder(cache).build(request(fake_tree)).cached


def test_a_staging_directory_left_by_a_killed_run_is_swept_and_never_reused(cache, tmp_path):
    import subprocess
    import time as _time

    from harness.host.cache import sweep_stale

    parent = cache.dir("builds")
    dead = subprocess.Popen(["true"])
    dead.wait()
    boot = open("/proc/sys/kernel/random/boot_id").read().strip()
    for name, owner in ((".tmp-k1-dead", f"{dead.pid} {boot}"), (".tmp-k2-live", f"{os.getpid()} {boot}"),
                        (".tmp-k3-rebooted", f"{os.getpid()} another-boot"), (".tmp-k4-unowned-new", None),
                        (".tmp-k5-unowned-old", None)):
        (parent / name).mkdir()
        (parent / name / "bzImage").write_text("half")
        if owner:
            (parent / f"{name}.owner").write_text(owner + "\n")
    old = _time.time() - 7 * 3600
    os.utime(parent / ".tmp-k5-unowned-old", (old, old))
    removed = {p.name for p in sweep_stale(parent)}
    assert removed == {".tmp-k1-dead", ".tmp-k3-rebooted", ".tmp-k5-unowned-old"}
    assert sorted(p.name for p in parent.iterdir()) == [".tmp-k2-live", ".tmp-k2-live.owner", ".tmp-k4-unowned-new"]
    # a staging directory is always a new one, with its owner beside it, gone once installed
    with cache.staging(parent / "k6") as tmp:
        assert tmp.name.startswith(".tmp-k6-") and (parent / f"{tmp.name}.owner").read_text().split()[0] == str(os.getpid())
        (tmp / "bzImage").write_text("whole")
    assert (parent / "k6" / "bzImage").read_text() == "whole"
    assert not [p for p in parent.iterdir() if p.name.startswith(".tmp-k6")]


def test_a_full_disk_during_make_is_infrastructure_not_the_kernel(tmp_path, fake_tree):
    """The fake tree builds in a 2 MiB tmpfs cache (a private mount
    namespace: nothing changes on the machine) and make runs out of space
    copying a 1.2 MiB object."""
    import shutil
    import subprocess
    import sys

    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("needs root and unshare(1) for a private tmpfs")
    (fake_tree / "mm" / "big.c").write_text("/* filler */\n" * 100_000)
    cache_dir = tmp_path / "small-cache"
    cache_dir.mkdir()
    build = ("import sys\n"
             "from harness.kernel.build import BuildRequest, Builder\n"
             "from harness.errors import HarnessError\n"
             "from harness.kernel.source import SourceRequest\n"
             "try:\n"
             f"    Builder(tools=['make']).build(BuildRequest(SourceRequest({str(fake_tree)!r}), 'x86_64', quiet=True, ccache=False))\n"
             "except HarnessError as exc:\n"
             "    print(exc.render(), file=sys.stderr)\n"
             "    sys.exit(exc.exit_code)\n")
    (tmp_path / "build.py").write_text(build)
    script = (f"mount -t tmpfs -o size=2m tmpfs {cache_dir} && "
              f"HARNESS_CACHE={cache_dir} {sys.executable} {tmp_path / 'build.py'}; "
              f"echo rc=$?; ls -a {cache_dir}/builds 2>/dev/null")
    done = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script], capture_output=True, text=True,
                          timeout=120, cwd=str(tmp_path), env=dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2])))
    if "mount:" in done.stderr and "rc=" not in done.stdout:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    assert "rc=3" in done.stdout, done.stdout + done.stderr
    assert f"cache disk full: {cache_dir}" in done.stderr and "free" in done.stderr
    assert "kernel error" not in done.stderr
    assert ".tmp-" not in done.stdout  # no half-written build entry left


def test_build_check_says_cached_or_not_and_builds_nothing(tmp_path, fake_tree, capsys, monkeypatch):
    from harness.host.cache import Cache

    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "c"))
    # nothing built yet: not cached (1), and the check made nothing
    assert main(["build", "--kernel", str(fake_tree), "--check"]) == 1
    assert capsys.readouterr().out.startswith("not cached: no cached x86_64 build of ")
    assert calls(fake_tree) == []
    built = builder(Cache(tmp_path / "c")).build(request(fake_tree))
    assert main(["build", "--kernel", str(fake_tree), "--check"]) == 0
    assert capsys.readouterr().out.startswith(f"{built.image}  (x86_64, ")
    # other inputs are another key
    assert main(["build", "--kernel", str(fake_tree), "--check", "--option", "CONFIG_KSM=y"]) == 1
    # a preset whose source the machine does not have: not cached, nothing fetched
    assert main(["build", "--kernel", "debian-6.1", "--check"]) == 1
    assert "debian-6.1 source is not available offline" in capsys.readouterr().out
    assert not (tmp_path / "c" / "sources").exists() or not any((tmp_path / "c" / "sources").iterdir())
    # bad input stays bad input
    assert main(["build", "--kernel", str(fake_tree), "--arch", "sparc", "--check"]) == 2
