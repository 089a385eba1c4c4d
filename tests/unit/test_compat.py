"""Compat fixes selected by kernel version and arch."""
import pytest

from harness.kernel import compat
from harness.kernel.compat.fixes import FIXES


def names(version, arch):
    return compat.select(version, arch).names


def test_v50_x86_64_needs_every_fix():
    assert names((5, 0), "x86_64") == [
        "selinux-genheaders", "hostprogs-fcommon", "subcmd-werror", "objtool-thunk-symtab", "boot-force-order-fcommon",
    ]


@pytest.mark.parametrize("arch", ["arm64", "arm"])
def test_v50_arm_needs_the_host_fixes_only(arch):
    assert names((5, 0), arch) == ["selinux-genheaders", "hostprogs-fcommon"]


def test_510_needs_none():
    assert names((5, 10), "x86_64") == [] and names((5, 10), "arm64") == []


def test_ranges_are_half_open():
    assert "hostprogs-fcommon" in names((5, 6), "x86_64")
    assert "hostprogs-fcommon" not in names((5, 7), "x86_64")
    assert "boot-force-order-fcommon" in names((5, 8), "x86_64")


def test_make_vars_merge_and_config_text():
    fixes = compat.select((5, 0), "x86_64")
    assert fixes.make_vars["HOSTCFLAGS"] == "-fcommon -Wno-error"
    assert fixes.make_vars["WERROR"] == "0"
    assert "# CONFIG_SECURITY_SELINUX is not set" in fixes.config_text


def test_every_fix_explains_itself():
    for fix in FIXES:
        assert fix.breaks and fix.upstream and fix.first < fix.until
        assert fix.make_vars or fix.config or fix.source_patch


def test_compat_version_changes_with_the_fixes():
    base = compat.compat_version(FIXES)
    changed = compat.compat_version(FIXES[:-1])
    assert base != changed and len(base) == 12
