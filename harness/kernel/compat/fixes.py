"""The compat fixes, newest knowledge first.  Measured on Debian 12 (GCC 12.2,
binutils 2.40, glibc 2.36) with a pristine v5.0 tree; Debian's 5.10.223
builds without any of them."""
from __future__ import annotations

from harness.kernel.compat.fix import Fix

FIXES = (
    Fix(
        name="selinux-genheaders",
        first=(4, 0),
        until=(5, 10),
        breaks="scripts/selinux/genheaders: '#error New address family defined, please update secclass_map' (glibc's AF_MAX grew)",
        upstream="not pinned down; Debian 5.10.223 builds without it (checked)",
        config=("# CONFIG_SECURITY_SELINUX is not set",),
    ),
    Fix(
        name="hostprogs-fcommon",
        first=(4, 0),
        until=(5, 7),
        breaks="host programs with tentative definitions (scripts/dtc yylloc) fail to link: GCC 10+ defaults to -fno-common",
        upstream="scripts/dtc: Remove redundant YYLOC global declaration (5.7)",
        make_vars={"HOSTCFLAGS": "-fcommon"},
    ),
    Fix(
        name="subcmd-werror",
        first=(4, 0),
        until=(5, 10),
        breaks="tools/lib/subcmd (objtool): GCC 12 -Werror=use-after-free in subcmd-util.h",
        upstream="libsubcmd: Fix use-after-free for realloc(..., 0) (5.19); Debian 5.10.223 builds without it (checked)",
        arches=("x86_64",),
        make_vars={"WERROR": "0", "HOSTCFLAGS": "-Wno-error"},
    ),
    Fix(
        name="objtool-thunk-symtab",
        first=(4, 0),
        until=(5, 10),
        breaks="objtool: arch/x86/entry/thunk_64.o: missing symbol table (binutils 2.36+ emits none for it)",
        upstream="objtool learned to handle objects without a symbol table (around 5.11); Debian 5.10.223 builds without it (checked)",
        arches=("x86_64",),
        make_vars={"OBJECT_FILES_NON_STANDARD_thunk_64.o": "y"},
    ),
    Fix(
        name="boot-force-order-fcommon",
        first=(4, 0),
        until=(5, 9),
        breaks="arch/x86/boot/compressed: multiple definition of '__force_order' (kaslr_64.o, pgtable_64.o) with -fno-common",
        upstream="x86/asm: Replace __force_order with a memory clobber (5.9)",
        arches=("x86_64",),
        make_vars={"CFLAGS_kaslr_64.o": "-fcommon", "CFLAGS_pgtable_64.o": "-fcommon"},
    ),
)
