"""kselftest vm: the kernel's own ``tools/testing/selftests/vm`` programs,
built static for the guest's arch from the kernel's source tree, and the
tests v5.0's ``run_vmtests`` runs, as data (``guest/kselftest-vm.yaml``).

The programs are the anchor the harness is measured against
(``bench/teeth.py`` reports their kill rate beside the harness's): they
are built from the base tree of the kernel under test (a mutant patches
``mm/``, never the selftests), with the UAPI headers of that same tree
(``make headers_install``), and cached by tree, arch and compiler."""
from __future__ import annotations

import hashlib
import json
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import yaml

from harness.arches import Arch
from harness.errors import InfraError, UserError
from harness.host import proc, toolchain
from harness.host.cache import Cache, key_of, raise_if_disk_full
from harness.host.paths import guest_dir
from harness.kernel import compat

RECIPE = guest_dir() / "kselftest-vm.yaml"
RECIPE_VERSION = 1
SELFTESTS = "tools/testing/selftests/vm"


@dataclass(frozen=True)
class SelfTest:
    """One test of run_vmtests: a program with its arguments, the guest
    shell that prepares for it, and how long it may take."""

    name: str
    program: str
    args: tuple = ()
    setup: str = ""
    cleanup: str = ""
    timeout: float = 300.0
    #: Run as this user (on-fault-limit runs as nobody).
    user: str = ""
    #: {arch or "any": [options]}: kernel options the test cannot pass without.
    needs_config: tuple = ()
    #: (("5.0", why, signature), ...): kernel versions on which the test
    #: fails on its own, why, and a regular expression its output (stdout
    #: or stderr) shows when it fails that way.
    known_failures: tuple = ()

    def known_failure(self, kernel_version: str) -> tuple:
        """(why, signature) of the way this test fails on ``kernel_version``
        (e.g. 5.0.0) whatever the kernel does, or ("", "")."""
        short = ".".join(kernel_version.split("-")[0].split(".")[:2])
        return next(((why, sig) for version, why, sig in self.known_failures if version == short), ("", ""))

    def excused(self, kernel_version: str, status: int, output: str) -> str:
        """Why this failure (exit ``status``, ``output``) is the known one of
        this version, or "": only with its signature in the output, and
        never a test that timed out or was killed (a hang is not excused
        by a different known failure)."""
        why, signature = self.known_failure(kernel_version)
        if not why or status in TIMED_OUT or not re.search(signature, output, re.M):
            return ""
        return why

    def missing_config(self, arch: str, has) -> list[str]:
        """The options this test needs on ``arch`` that the kernel lacks."""
        wanted = [o for key, options in self.needs_config if key in ("any", arch) for o in options]
        return [o for o in wanted if not has(o)]

    def command(self, directory: str) -> str:
        """Guest shell: set up, run (as ``user``), clean up; prints the exit
        status on its own last line."""
        run = " ".join([f"./{self.program}", *self.args])
        if self.user:
            run = f"su -s /bin/sh {self.user} -c {proc.quote([run])}"
        parts = [f"cd {directory}"]
        if self.setup:
            parts.append(self.setup)
        parts.append(f"timeout {int(self.timeout)} {run}; status=$?")
        if self.cleanup:
            parts.append(self.cleanup)
        parts.append("printf '\\nKSFT-STATUS %d\\n' $status")
        return "; ".join(parts)


@dataclass(frozen=True)
class SourceFix:
    """A bug of a selftest program itself (not of the kernel), fixed in the
    harness's copy of its source before it is compiled: ``anchor`` must
    occur exactly once in the program's source, and ``insert`` goes right
    before it.  A source without the anchor (fixed upstream, or rewritten)
    is compiled as it is."""

    name: str
    program: str
    why: str
    upstream: str
    anchor: str
    insert: str

    def apply(self, source: str) -> tuple[str, bool]:
        count = source.count(self.anchor)
        if count == 0:
            return source, False
        if count > 1:
            raise InfraError(f"kselftest-vm.yaml: source fix {self.name}: its anchor occurs {count} times in {self.program}.c",
                             hint="make the anchor unique")
        return source.replace(self.anchor, self.insert + self.anchor, 1), True


def load_source_fixes(path: Path = RECIPE) -> list[SourceFix]:
    data = yaml.safe_load(path.read_text())
    out = []
    for raw in data.get("source_fixes") or ():
        missing = [k for k in ("name", "program", "why", "upstream", "anchor", "insert") if not raw.get(k)]
        if missing:
            raise ValueError(f"kselftest-vm.yaml: source fix {raw.get('name', '?')}: missing {', '.join(missing)}")
        out.append(SourceFix(**{k: str(raw[k]) for k in ("name", "program", "why", "upstream", "anchor", "insert")}))
    return out


def fixed_sources(sources: dict, fixes: list) -> tuple[dict, dict]:
    """The programs' sources with the fixes that apply, and {program: [fix names]}."""
    out, applied = dict(sources), {}
    for fix in fixes:
        if fix.program in out:
            text, did = fix.apply(out[fix.program].decode())
            if did:
                out[fix.program] = text.encode()
                applied.setdefault(fix.program, []).append(fix.name)
    return out, applied


def load_prepare(path: Path = RECIPE) -> str:
    """Guest shell run once before the tests (huge pages, hugetlbfs)."""
    return "; ".join(line.strip() for line in (yaml.safe_load(path.read_text()).get("prepare") or "").splitlines() if line.strip())


def load_tests(path: Path = RECIPE) -> list[SelfTest]:
    data = yaml.safe_load(path.read_text())
    return [SelfTest(name=t["name"], program=t["program"], args=tuple(str(a) for a in t.get("args", ())),
                     setup=t.get("setup", "").strip(), cleanup=t.get("cleanup", "").strip(),
                     timeout=float(t.get("timeout", 300)), user=t.get("user", ""),
                     needs_config=tuple((k, tuple(v)) for k, v in (t.get("needs_config") or {}).items()),
                     known_failures=tuple(_known(t["name"], str(k), v) for k, v in (t.get("known_failures") or {}).items()))
            for t in data["tests"]]


#: timeout(1)'s own status, and SIGKILL/SIGTERM as exit statuses
TIMED_OUT = (124, 137, 143)


def _known(test: str, version: str, entry) -> tuple:
    """A known_failures entry: {why: ..., signature: REGEX}."""
    if not isinstance(entry, dict) or not entry.get("why") or not entry.get("signature"):
        raise ValueError(f"kselftest-vm.yaml: {test}: known_failures {version!r} needs 'why' and 'signature' "
                         "(a regular expression the failing output shows), so that only that failure is excused")
    re.compile(entry["signature"])
    return (version, str(entry["why"]), str(entry["signature"]))


def programs_in(tree: Path) -> list[str]:
    """TEST_GEN_FILES of the tree's selftests/vm Makefile (the programs it builds)."""
    makefile = tree / SELFTESTS / "Makefile"
    try:
        text = makefile.read_text()
    except OSError:
        raise UserError(f"{tree} has no {SELFTESTS}/Makefile", hint="kselftest-vm needs a kernel tree with its selftests") from None
    found = []
    for match in re.finditer(r"^TEST_GEN_FILES\s*\+?=\s*(.+)$", text, re.M):
        found += [word for word in match.group(1).split() if not word.startswith("$")]
    return found


@dataclass
class Built:
    directory: Path
    #: program -> None (built) or the compiler's last lines (did not build).
    programs: dict
    cached: bool
    #: {program: [names of the source fixes applied]} (guest/kselftest-vm.yaml)
    source_fixes: dict = field(default_factory=dict)

    def path(self, program: str) -> Optional[Path]:
        return self.directory / program if self.programs.get(program) is None and program in self.programs else None


def _built(directory: Path, cached: bool) -> Built:
    manifest = json.loads((directory / "manifest.json").read_text())
    return Built(directory, manifest["programs"], cached, manifest.get("source_fixes", {}))


class SelftestBuilder:
    def __init__(self, cache: Optional[Cache] = None, echo=None) -> None:
        self.cache = cache or Cache()
        self.echo = echo

    def build(self, tree: Path, source_id: str, the_arch: Arch, version: tuple) -> Built:
        """The vm selftests of ``tree`` (whose content identity is
        ``source_id``) for ``the_arch``, cached."""
        cc = toolchain.compiler(the_arch.user_cross)
        toolchain.require(["make", "rsync"], "building the kselftest vm programs (make headers_install)")
        tests = load_tests()
        programs = sorted({t.program for t in tests} & set(programs_in(tree)))
        sources = {p: (tree / SELFTESTS / f"{p}.c").read_bytes() for p in programs if (tree / SELFTESTS / f"{p}.c").exists()}
        sources, applied = fixed_sources(sources, load_source_fixes())
        key = key_of({"recipe": RECIPE_VERSION, "arch": the_arch.name, "compiler": cc.version,
                      "sources": {p: hashlib.sha256(data).hexdigest() for p, data in sources.items()},
                      "tree": source_id})
        final = self.cache.dir("kselftest") / key
        if (final / "manifest.json").exists():
            return _built(final, cached=True)
        with self.cache.lock(f"kselftest-{key}"):
            if (final / "manifest.json").exists():
                return _built(final, cached=True)
            with self.cache.staging(final) as tmp:
                headers = self._headers(tree, the_arch, version, tmp / "hdr")
                outcome = {}
                for program in programs:
                    outcome[program] = self._compile(the_arch, tree, program, headers, tmp, sources.get(program))
                (tmp / "manifest.json").write_text(json.dumps({"programs": outcome, "arch": the_arch.name, "tree": str(tree),
                                                               "compiler": cc.version, "built": time.time(),
                                                               "source_fixes": applied}, indent=2) + "\n")
                shutil.rmtree(tmp / "hdr", ignore_errors=True)
                shutil.rmtree(tmp / "src", ignore_errors=True)
        return _built(final, cached=False)

    def _headers(self, tree: Path, the_arch: Arch, version: tuple, out: Path) -> Path:
        """``make headers_install`` of the tree, out of tree (the tree is not touched)."""
        fixes = compat.select(version, the_arch.name)
        argv = ["make", "-s", f"O={out / 'objs'}", f"ARCH={the_arch.linux_arch}", f"CROSS_COMPILE={the_arch.kernel_cross}",
                f"INSTALL_HDR_PATH={out / 'usr'}", *[f"{k}={v}" for k, v in fixes.make_vars.items()], "headers_install"]
        result = proc.run(argv, cwd=tree, echo=self.echo)
        if result.returncode != 0:
            raise_if_disk_full(out, "installing the UAPI headers", result.stdout)
            raise InfraError(f"make headers_install failed in {tree}", log_tail=result.stdout.splitlines()[-15:])
        return out / "usr" / "include"

    def _compile(self, the_arch: Arch, tree: Path, program: str, headers: Path, out: Path,
                 text: Optional[bytes] = None) -> Optional[list]:
        source = tree / SELFTESTS / f"{program}.c"
        if not source.exists():
            return [f"{source} is missing"]
        if text is not None and text != source.read_bytes():
            # the fixed copy, compiled where the original is (its #includes)
            fixed = out / "src" / f"{program}.c"
            fixed.parent.mkdir(exist_ok=True)
            fixed.write_bytes(text)
            compiled = fixed
        else:
            compiled = source
        argv = [f"{the_arch.user_cross}gcc", "-static", "-O2", "-Wall", f"-I{headers}", f"-I{source.parent}", "-o", str(out / program),
                str(compiled), "-lrt", "-lpthread"]
        result = proc.run(argv, cwd=source.parent, echo=self.echo)
        if result.returncode != 0:
            raise_if_disk_full(out, f"compiling {program}", result.stdout)
            return result.stdout.splitlines()[-6:] or ["the compiler failed"]
        return None

