"""Fragments, layering, the missing-option check (on recorded .config
files) and the dependency explanation."""
from pathlib import Path

import pytest

from harness.errors import UserError
from harness.kernel import kconfig

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "kconfig"


def test_parse_fragment_keeps_reasons_and_values():
    opts = kconfig.parse_fragment("# why a\nCONFIG_A=y\n\nCONFIG_B=m\n# why c\n# CONFIG_C is not set\nCONFIG_S=\"x y\"\n", "f")
    assert [(o.name, o.value, o.reason) for o in opts] == [("A", "y", "why a"), ("B", "m", None), ("C", "n", "why c"), ("S", '"x y"', None)]
    assert opts[0].where == "f:2"


@pytest.mark.parametrize("text", ["CONFIG_A", "A=y", "CONFIG_A=", "config A"])
def test_parse_fragment_rejects_garbage_with_file_and_line(text):
    with pytest.raises(UserError) as err:
        kconfig.parse_fragment("# ok\nCONFIG_OK=y\n" + text + "\n", "frag.config")
    assert "frag.config:3" in err.value.message


def test_every_option_in_our_fragments_says_why():
    for path in sorted((ROOT / "kconfigs").rglob("*.config")):
        for option in kconfig.parse_fragment(path.read_text(), str(path)):
            assert option.reason, f"{option.where}: CONFIG_{option.name} has no reason comment"


def test_layering_later_wins_and_render_round_trips():
    base = kconfig.parse_fragment("# on\nCONFIG_NUMA=y\nCONFIG_X=y\n", "base")
    arm = kconfig.parse_fragment("# no NUMA on arm\n# CONFIG_NUMA is not set\n", "arm")
    merged = kconfig.layer([base, arm])
    assert merged["NUMA"].value == "n" and merged["NUMA"].source == "arm"
    again = kconfig.layer([kconfig.parse_fragment(kconfig.render(merged), "r")])
    assert {k: v.value for k, v in again.items()} == {"NUMA": "n", "X": "y"}


def test_parse_dotconfig_recorded():
    values = kconfig.parse_dotconfig((FIXTURES / "v5.0-x86_64-harness.config").read_text())
    assert values["MIGRATION"] == "y"
    assert values["ARCH_ENABLE_THP_MIGRATION"] == "y"
    assert values.get("SECURITY_SELINUX", "n") == "n"
    assert values["TRANSPARENT_HUGEPAGE_MADVISE"] == "y"
    assert values["NUMA_BALANCING_DEFAULT_ENABLED"] == "n"


def test_check_on_recorded_config_of_an_early_fragment():
    """The first v5.0 x86_64 allnoconfig attempt: EMBEDDED (allnoconfig_y)
    turned EXPERT on, so SHMEM and VIRTIO_MENU fell to n and TMPFS and the
    virtio drivers with them.  Recorded .config, real kconfig output."""
    actual = kconfig.parse_dotconfig((FIXTURES / "v5.0-x86_64-allnoconfig-early-fragment.config").read_text())
    requested = kconfig.layer([kconfig.parse_fragment(
        "CONFIG_NUMA=y\nCONFIG_TMPFS=y\nCONFIG_VIRTIO_NET=y\nCONFIG_VIRTIO_BALLOON=y\nCONFIG_ZRAM=y\n", "early")])
    missing = {m.option.name: m.actual for m in kconfig.check(requested, actual)}
    assert missing == {"TMPFS": "n", "VIRTIO_NET": "n", "VIRTIO_BALLOON": "n"}


SYNTH_KCONFIG = {
    "fs/Kconfig": (
        "config TMPFS\n\tbool \"Tmpfs\"\n\tdepends on SHMEM\n\thelp\n\t  if you say Y here, config NOT_A_SYMBOL\n\n"
        "config SHMEM\n\tbool \"shmem\" if EXPERT\n\tdefault y\n"
    ),
    "drivers/virtio/Kconfig": (
        "menuconfig VIRTIO_MENU\n\tbool \"Virtio drivers\"\n\nif VIRTIO_MENU\n\n"
        "config VIRTIO_BALLOON\n\ttristate \"balloon\"\n\tdepends on VIRTIO\n\nendif # VIRTIO_MENU\n"
        "config VIRTIO\n\ttristate\n"
    ),
    "mm/Kconfig": "menu \"Memory\"\n\tdepends on MMU\nconfig COMPACTION\n\tbool \"compaction\"\nendmenu\n",
}


def test_kconfig_definitions_track_depends_if_and_menu_and_skip_help():
    defs = kconfig.kconfig_definitions(SYNTH_KCONFIG)
    assert defs["TMPFS"][0].condition == "SHMEM"
    assert defs["VIRTIO_BALLOON"][0].condition == "VIRTIO_MENU && VIRTIO"
    assert defs["COMPACTION"][0].condition == "MMU"
    assert "NOT_A_SYMBOL" not in defs
    assert defs["VIRTIO"][0].prompt is False and defs["TMPFS"][0].prompt is True


@pytest.mark.parametrize("expr,values,result", [
    ("A && B", {"A": "y", "B": "y"}, 2),
    ("A && B", {"A": "y"}, 0),
    ("A || B", {"B": "m"}, 1),
    ("!A", {}, 2),
    ("A && (B || !C)", {"A": "y", "C": "y"}, 0),
    ("X86_64 = y", {"X86_64": "y"}, 2),
    ("ARCH != \"arm\"", {"ARCH": "\"arm\""}, 2),
])
def test_evaluate(expr, values, result):
    assert kconfig.evaluate(expr, values) == result


def test_explain_names_unmet_dependency_and_unknown_options():
    actual = {"SHMEM": "n", "VIRTIO_MENU": "y"}
    requested = kconfig.layer([kconfig.parse_fragment("CONFIG_TMPFS=y\nCONFIG_VIRTIO_BALLOON=y\nCONFIG_TMPFFS=y\n", "user.config")])
    explained = {m.option.name: m for m in kconfig.explain(kconfig.check(requested, actual), kconfig.kconfig_definitions(SYNTH_KCONFIG), actual)}
    assert "fs/Kconfig:1: SHMEM" in explained["TMPFS"].why and "SHMEM=n" in explained["TMPFS"].why
    assert "VIRTIO=n" in explained["VIRTIO_BALLOON"].why
    assert explained["TMPFFS"].unknown and "CONFIG_TMPFS" in explained["TMPFFS"].why
    assert "user.config:3" in explained["TMPFFS"].render()


def test_explain_select_only_symbol():
    actual = {}
    requested = kconfig.layer([kconfig.parse_fragment("CONFIG_VIRTIO=y\n", "u")])
    defs = kconfig.kconfig_definitions(SYNTH_KCONFIG)
    (m,) = kconfig.explain(kconfig.check(requested, actual), defs, actual)
    assert "no prompt" in m.why


@pytest.mark.parametrize("header, version, arch, applies", [
    ("# kernels: >= 5.11\n# arches: any\n", (5, 10), "x86_64", False),
    ("# kernels: >= 5.11\n# arches: any\n", (5, 11), "arm", True),
    ("# kernels: >= 5.11, < 6.12\n", (6, 1), "arm64", True),
    ("# kernels: >= 5.11, < 6.12\n", (6, 12), "arm64", False),
    ("# kernels: >= 6.2\n# arches: arm64\n", (6, 12), "arm64", True),
    ("# kernels: >= 6.2\n# arches: arm64\n", (6, 12), "x86_64", False),
])
def test_version_fragment_header(header, version, arch, applies):
    assert kconfig.version_fragment_applies(header + "\n# why\nCONFIG_A=y\n", version, arch, "f") is applies


@pytest.mark.parametrize("text, said", [("# why\nCONFIG_A=y\n", "no '# kernels:"), ("# kernels: 6.1\n", "'6.1'")])
def test_version_fragment_without_a_readable_header_is_refused(text, said):
    with pytest.raises(UserError) as err:
        kconfig.version_fragment_applies(text, (6, 1), "x86_64", "versions/bad.config")
    assert "versions/bad.config" in err.value.message and said in err.value.message


def test_version_fragments_leave_old_kernels_alone_and_layer_before_the_arch():
    """v5.0 and 5.10 get exactly the fragments they always had (so their
    builds stay cache hits); 6.x get theirs between mm and the arch's."""
    from harness.arches import arch as lookup_arch
    from harness.kernel import compat
    from harness.kernel.build import BuildRequest, layers
    from harness.kernel.source import SourceRequest

    def files(version, arch):
        _, record = layers(BuildRequest(SourceRequest("v5.0"), arch), lookup_arch(arch), compat.AppliedFixes(()), version)
        return [Path(r["file"]).relative_to(ROOT / "kconfigs").as_posix() for r in record]

    for version in ((5, 0), (5, 10)):
        assert files(version, "arm64") == ["base.config", "mm.config", "arch/arm64.config"]
    new = files((6, 12), "arm64")
    assert new[:2] == ["base.config", "mm.config"] and new[-1] == "arch/arm64.config"
    assert "versions/since-6.12.config" in new and "versions/5.11-to-6.12.config" not in new
    assert "versions/5.11-to-6.12.config" in files((6, 1), "x86_64")
    parsed, _ = layers(BuildRequest(SourceRequest("v5.0"), "x86_64"), lookup_arch("x86_64"), compat.AppliedFixes(()), (6, 12))
    merged = kconfig.layer(parsed)
    assert merged["GUP_BENCHMARK"].value == "n" and merged["GUP_TEST"].value == "y" and merged["MEMCG_V1"].value == "y"
