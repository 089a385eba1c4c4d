"""System package lists, and registering a pristine tree as a named source."""
import hashlib

import pytest

from harness.errors import UserError
from harness.host import deps
from harness.kernel import source as src
from harness.kernel.source import SourceRequest, SourceResolver


def test_packages_per_arch():
    x86 = deps.packages(["x86_64"])
    assert "qemu-system-x86" in x86 and "flex" in x86 and "gcc-aarch64-linux-gnu" not in x86
    both = deps.packages(["x86_64", "arm64"])
    assert {"qemu-system-arm", "gcc-aarch64-linux-gnu", "libc6-dev-arm64-cross"} <= set(both)
    arm = deps.packages(["arm"])
    assert "gcc-arm-linux-gnueabi" in arm and "gcc-arm-linux-gnueabihf" in arm
    with pytest.raises(UserError):
        deps.packages(["sparc"])


def test_missing_packages_named_when_not_installing(monkeypatch):
    monkeypatch.setattr(deps, "missing", lambda pkgs: ["qemu-system-arm"])
    with pytest.raises(UserError) as err:
        deps.ensure(["arm64"], install=False)
    assert err.value.hint == "run: sudo apt-get install -y qemu-system-arm"


def test_an_interrupted_dpkg_is_finished_before_installing_again(monkeypatch):
    """apt's words after stop 36's CI was killed inside an apt-get install
    (recorded): dpkg --configure -a first, then the install once more."""
    import subprocess
    from pathlib import Path

    from harness.errors import InfraError

    said = (Path(__file__).resolve().parents[1] / "fixtures" / "apt" / "install-dpkg-interrupted.txt").read_text()
    calls, state = [], {"interrupted": True}

    def run(argv, **kw):
        calls.append(" ".join(argv[:3]))
        if argv[:2] == ["dpkg", "--configure"]:
            state["interrupted"] = False
        if argv[:2] == ["apt-get", "install"] and state["interrupted"]:
            return subprocess.CompletedProcess(argv, 100, "", said)
        return subprocess.CompletedProcess(argv, 0, "", "")

    monkeypatch.setattr(deps, "missing", lambda pkgs: ["qemu-system-arm"])
    monkeypatch.setattr(deps.os, "geteuid", lambda: 0)
    monkeypatch.setattr(deps.proc, "run", run)
    said_lines = []
    assert deps.ensure(["arm64"], install=True, echo=said_lines.append) == ["qemu-system-arm"]
    assert calls == ["apt-get update -q", "apt-get install -y", "dpkg --configure -a", "apt-get install -y"]
    assert any("interrupted" in line for line in said_lines)
    # a dpkg that stays broken: the install's failure, with apt's words
    monkeypatch.setattr(deps.proc, "run", lambda argv, **kw: subprocess.CompletedProcess(
        argv, 100 if argv[0] == "apt-get" and argv[1] == "install" else 0, "", said))
    with pytest.raises(InfraError) as err:
        deps.ensure(["arm64"], install=True, echo=lambda line: None)
    assert err.value.message == "apt-get install failed" and "dpkg was interrupted" in err.value.log_tail[-1]


@pytest.fixture
def fingerprinted(fake_tree, monkeypatch):
    prints = {rel: hashlib.sha256((fake_tree / rel).read_bytes()).hexdigest() for rel in ("Makefile", "Kconfig")}
    monkeypatch.setitem(src.TREE_FINGERPRINTS, "v5.0", prints)
    return fake_tree


def test_register_a_pristine_tree_and_build_v50_from_it(cache, fingerprinted):
    resolver = SourceResolver(cache)
    assert resolver.available_offline("v5.0") is None
    resolver.register("v5.0", fingerprinted)
    assert "registered tree" in resolver.available_offline("v5.0")
    source = resolver.resolve(SourceRequest("v5.0", offline=True))
    assert source.tree == fingerprinted.resolve() and not source.owned
    assert source.id == resolver.resolve(SourceRequest(str(fingerprinted))).id  # same builds either way


def test_a_modified_tree_is_refused(cache, fingerprinted):
    (fingerprinted / "Kconfig").write_text("# patched\n")
    with pytest.raises(UserError) as err:
        SourceResolver(cache).register("v5.0", fingerprinted)
    assert "not a pristine v5.0 tree: Kconfig" in err.value.message


def test_registered_tree_changed_later_is_reported(cache, fingerprinted):
    SourceResolver(cache).register("v5.0", fingerprinted)
    (fingerprinted / "Makefile").write_text((fingerprinted / "Makefile").read_text() + "\n# changed\n")
    with pytest.raises(UserError) as err:
        SourceResolver(cache).resolve(SourceRequest("v5.0", offline=True))
    assert "no longer pristine" in err.value.message


def test_only_known_presets_can_be_registered(cache, fake_tree):
    with pytest.raises(UserError):
        SourceResolver(cache).register("debian-5.10", fake_tree)


def test_apt_saying_the_disk_is_full_is_a_full_disk_not_the_mirror(tmp_path, monkeypatch):
    """apt-get update's own words when the cache's disk filled up (recorded
    by the full-disk fault test): infrastructure, naming the path and the
    free space, not "check the network or the mirror"."""
    import subprocess
    from pathlib import Path

    from harness.errors import InfraError
    from harness.host import apt as apt_mod
    from harness.host import toolchain
    from harness.host.cache import Cache

    said = (Path(__file__).resolve().parents[1] / "fixtures" / "apt" / "update-disk-full.txt").read_text()
    monkeypatch.setattr(toolchain, "require", lambda tools, purpose, path=None: None)
    monkeypatch.setattr(apt_mod.proc, "run", lambda argv, **kw: subprocess.CompletedProcess(argv, 100, said, ""))
    with pytest.raises(InfraError) as err:
        apt_mod.Apt(Cache(tmp_path / "cache"), "bookworm", "amd64").update()
    text = err.value.render()
    assert "disk" in text and "full" in text and str(tmp_path / "cache") in text and "free" in text
    assert "mirror" not in text
