"""Source resolution: presets, tarballs (checksum, truncation, offline,
download from a local fake server), trees, patches."""
import subprocess
from dataclasses import replace

import pytest

from harness.errors import InfraError, UserError
from harness.kernel import source as src
from harness.kernel.source import SourceRequest, SourceResolver, parse_makefile_version

from .conftest import FAKE_KCONFIG, FAKE_MAKEFILE, make_tarball, needs, sha

KERNEL_FILES = {"Makefile": FAKE_MAKEFILE, "Kconfig": FAKE_KCONFIG, "mm/migrate.c": "int migrate;\n"}


@pytest.fixture
def fake_preset(monkeypatch):
    """Swap the v5.0 preset for a small tarball with its own checksum."""
    data = make_tarball("linux-5.0", KERNEL_FILES)
    preset = replace(src.V5_0, size=len(data), sha256=sha(data))
    monkeypatch.setitem(src.PRESETS, "v5.0", preset)
    return preset, data


def test_parse_makefile_version():
    v = parse_makefile_version("VERSION = 5\nPATCHLEVEL = 10\nSUBLEVEL = 223\nEXTRAVERSION =\nNAME = x\n")
    assert (v.major, v.minor, v.sublevel, str(v)) == (5, 10, 223, "5.10.223")
    with pytest.raises(UserError):
        parse_makefile_version("all:\n")


def test_real_v50_preset_matches_the_published_tarball():
    assert src.V5_0.size == 105_235_152
    assert src.V5_0.sha256 == "437b141a6499159f5a7282d5eb4b2be055f8e862ccce44d7464e8759c31a2e43"


@needs("tar", "xz")
def test_supplied_tarball_verified_cached_and_extracted(cache, tmp_path, fake_preset):
    preset, data = fake_preset
    tarball = tmp_path / "linux-5.0.tar.xz"
    tarball.write_bytes(data)
    source = SourceResolver(cache).resolve(SourceRequest("v5.0", tarball=tarball, offline=True))
    assert str(source.version) == "5.0.0-fake"
    assert (source.tree / "mm" / "migrate.c").read_text() == "int migrate;\n"
    assert (cache.root / "sources" / "linux-5.0.tar.xz").read_bytes() == data
    # later: offline, from the cache, no tarball needed
    again = SourceResolver(cache).resolve(SourceRequest("v5.0", offline=True))
    assert again.tree == source.tree and again.id == source.id


def test_wrong_checksum(cache, tmp_path, fake_preset):
    preset, data = fake_preset
    tarball = tmp_path / "linux-5.0.tar.xz"
    tarball.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(UserError) as err:
        SourceResolver(cache).resolve(SourceRequest("v5.0", tarball=tarball))
    assert "wrong checksum" in err.value.message and preset.sha256 in err.value.message
    assert not (cache.root / "sources" / "linux-5.0.tar.xz").exists()


def test_truncated_tarball(cache, tmp_path, fake_preset):
    preset, data = fake_preset
    tarball = tmp_path / "linux-5.0.tar.xz"
    tarball.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError) as err:
        SourceResolver(cache).resolve(SourceRequest("v5.0", tarball=tarball))
    assert "truncated" in err.value.message and f"{preset.size:,}" in err.value.message


def test_offline_without_cache_says_what_to_provide(cache):
    with pytest.raises(UserError) as err:
        SourceResolver(cache).resolve(SourceRequest("v5.0", offline=True))
    assert "--offline" in err.value.message
    assert "--tarball" in err.value.hint and "105,235,152" in err.value.hint and src.V5_0.sha256 in err.value.hint


@needs("tar", "xz")
def test_download_from_mirror_verified(cache, fake_preset, fake_server, monkeypatch):
    preset, data = fake_preset
    base, content = fake_server
    content["/linux/kernel/v5.x/linux-5.0.tar.xz"] = data
    monkeypatch.setenv(src.MIRROR_ENV, base)
    source = SourceResolver(cache).resolve(SourceRequest("v5.0"))
    assert (source.tree / "Makefile").exists()


def test_download_of_wrong_bytes_is_rejected_and_not_kept(cache, fake_preset, fake_server, monkeypatch):
    preset, data = fake_preset
    base, content = fake_server
    content["/linux/kernel/v5.x/linux-5.0.tar.xz"] = data[::-1]
    monkeypatch.setenv(src.MIRROR_ENV, base)
    with pytest.raises(UserError) as err:
        SourceResolver(cache).resolve(SourceRequest("v5.0"))
    assert "wrong checksum" in err.value.message
    assert list((cache.root / "sources").iterdir()) == []


def test_unreachable_mirror_is_infra_error_with_tarball_hint(cache, fake_preset, monkeypatch):
    monkeypatch.setenv(src.MIRROR_ENV, "http://127.0.0.1:9")
    with pytest.raises(InfraError) as err:
        SourceResolver(cache).resolve(SourceRequest("v5.0"))
    assert "--tarball" in err.value.hint


@needs("tar", "xz")
def test_generic_tarball_path_and_corrupt_one(cache, tmp_path):
    good = tmp_path / "linux-6.1.tar.xz"
    good.write_bytes(make_tarball("linux-6.1", dict(KERNEL_FILES, Makefile=FAKE_MAKEFILE.replace("PATCHLEVEL = 0", "PATCHLEVEL = 1").replace("VERSION = 5", "VERSION = 6"))))
    source = SourceResolver(cache).resolve(SourceRequest(str(good)))
    assert str(source.version).startswith("6.1") and source.kind == "tarball"
    bad = tmp_path / "broken.tar.xz"
    bad.write_bytes(good.read_bytes()[:200])
    with pytest.raises(UserError) as err:
        SourceResolver(cache).resolve(SourceRequest(str(bad)))
    assert "corrupt or truncated" in err.value.message
    assert not [p for p in (cache.root / "trees").iterdir() if p.name.startswith(".tmp")]


def test_unknown_source(cache):
    with pytest.raises(UserError) as err:
        SourceResolver(cache).resolve(SourceRequest("v9.9"))
    assert "v5.0" in err.value.hint and "debian-5.10" in err.value.hint


def test_tree_configured_in_place_is_refused(cache, fake_tree):
    (fake_tree / ".config").write_text("CONFIG_X=y\n")
    with pytest.raises(UserError) as err:
        SourceResolver(cache).resolve(SourceRequest(str(fake_tree)))
    assert "make mrproper" in err.value.hint


def test_tree_identity_follows_content(cache, fake_tree):
    first = SourceResolver(cache).resolve(SourceRequest(str(fake_tree)))
    assert first.owned is False and first.tree == fake_tree.resolve()
    (fake_tree / "mm").mkdir(exist_ok=True)
    (fake_tree / "mm" / "new.c").write_text("x")
    assert SourceResolver(cache).resolve(SourceRequest(str(fake_tree))).id != first.id


@needs("git")
def test_git_tree_identity_includes_uncommitted_changes(cache, fake_tree):
    run = lambda *a: subprocess.run(["git", "-C", str(fake_tree), *a], check=True, capture_output=True)  # noqa: E731
    run("init", "-q")
    run("-c", "user.email=t@t", "-c", "user.name=t", "add", ".")
    run("-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "x")
    clean = SourceResolver(cache).resolve(SourceRequest(str(fake_tree))).id
    (fake_tree / "Kconfig").write_text(FAKE_KCONFIG + "\n# local change\n")
    assert SourceResolver(cache).resolve(SourceRequest(str(fake_tree))).id != clean


class _PackageApt:
    """Stands in for apt: "downloads" a .deb built here with dpkg-deb."""

    def __init__(self, deb):
        self.deb = deb
        self.asked = []

    def download(self, package, dest):
        self.asked.append(package)
        target = dest / self.deb.name
        target.write_bytes(self.deb.read_bytes())
        return target


def _source_deb(tmp_path, preset, version_files):
    root = tmp_path / "pkg"
    inner = root / preset.inner
    inner.parent.mkdir(parents=True)
    inner.write_bytes(make_tarball(preset.top, version_files))
    (root / "DEBIAN").mkdir()
    (root / "DEBIAN" / "control").write_text(
        f"Package: {preset.package}\nVersion: 1\nArchitecture: all\nMaintainer: t <t@t>\nDescription: t\n")
    deb = tmp_path / f"{preset.package}_1_all.deb"
    subprocess.run(["dpkg-deb", "--build", "--root-owner-group", "-Zxz", str(root), str(deb)], check=True, capture_output=True)
    return deb


@needs("dpkg-deb")
@pytest.mark.parametrize("name, suite, version", [("debian-5.10", "bullseye", "5.10"), ("debian-6.1", "bookworm", "6.1"),
                                                  ("debian-6.12", "trixie", "6.12")])
def test_debian_presets_unpack_their_package(cache, tmp_path, name, suite, version):
    preset = src.PRESETS[name]
    assert (preset.suite, preset.package) == (suite, f"linux-source-{version}")
    major, minor = version.split(".")
    makefile = FAKE_MAKEFILE.replace("VERSION = 5\n", f"VERSION = {major}\n").replace("PATCHLEVEL = 0\n", f"PATCHLEVEL = {minor}\n")
    deb = _source_deb(tmp_path, preset, dict(KERNEL_FILES, Makefile=makefile))
    apt = _PackageApt(deb)
    source = SourceResolver(cache, apt=apt).resolve(SourceRequest(name))
    assert apt.asked == [preset.package]
    assert source.name == name and source.kind == "preset" and source.version.short == (int(major), int(minor))
    assert (source.tree / "mm" / "migrate.c").read_text() == "int migrate;\n"
    assert source.identity == sha(deb.read_bytes())
