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
from typing import Optional, Sequence

import yaml

from harness.arches import Arch
from harness.errors import InfraError, UserError
from harness.host import proc, toolchain
from harness.host.apt import Apt
from harness.host.cache import Cache, key_of, raise_if_disk_full, sha256_file
from harness.host.paths import guest_dir
from harness.kernel import compat, kconfig

RECIPE = guest_dir() / "kselftest-vm.yaml"
RECIPE_VERSION = 1
SELFTESTS = "tools/testing/selftests/vm"
#: 6.3 renamed it ("selftests/vm: rename selftests/vm to selftests/mm").
SELFTESTS_MM = "tools/testing/selftests/mm"


def selftests_dir(tree: Path) -> str:
    """The tree's memory-management selftests: selftests/mm from 6.3, else selftests/vm."""
    return SELFTESTS_MM if (Path(tree) / SELFTESTS_MM / "Makefile").is_file() else SELFTESTS


#: kselftest's exit status for a test that skipped itself
KSFT_SKIP = 4


def short_version(kernel_version: str) -> str:
    """"6.12" of "6.12.117-..." (the recipe's per-version keys)."""
    return ".".join(kernel_version.split("-")[0].split(".")[:2])


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
    #: The kernel versions whose run_vmtests run it: ">= 6.3", "< 5.11, ..."
    #: (empty: every version).
    kernels: str = ""
    #: vCPUs the test needs to do its work (it skips itself with fewer).
    min_cpus: int = 0
    #: Patterns (regexes) of kernel messages the test makes the kernel log
    #: on purpose (each with its why in the recipe).
    messages: tuple = ()
    #: (Flaky, ...): kernel versions on which the test can lose a race of
    #: its own now and then (under TCG): a failure that shows the signature
    #: is run again, and passes only when a run again passes.
    flaky: tuple = ()
    #: The arches whose run_vmtests runs it (empty: every arch), and why.
    arches: tuple = ()
    arches_why: str = ""

    def applies(self, version: Optional[tuple]) -> bool:
        return not self.kernels or version is None or kconfig.version_in(self.kernels, version, f"kselftest-vm.yaml: {self.name}")

    def known_failure(self, kernel_version: str) -> tuple:
        """(why, signature) of the way this test fails on ``kernel_version``
        (e.g. 5.0.0) whatever the kernel does, or ("", "")."""
        short = short_version(kernel_version)
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

    def not_run_on(self, arch: str) -> str:
        """Why run_vmtests does not run this test on ``arch``, or ""."""
        if not self.arches or arch in self.arches:
            return ""
        return f"run_vmtests runs it on {', '.join(self.arches)} only: {self.arches_why}"

    def flake(self, kernel_version: str, status: Optional[int], output: str) -> Optional["Rerun"]:
        """How to run this failure (exit ``status``, ``output``) again when
        it is this version's known flake, or None: only with the flake's
        signature in the output, never a pass, a skip, a timeout or a kill."""
        short = short_version(kernel_version)
        entry = next((f for f in self.flaky if f.version == short), None)
        if entry is None or not status or status == KSFT_SKIP or status in TIMED_OUT:
            return None
        found = re.search(entry.signature, output, re.M)
        if not found:
            return None
        groups = {k: v for k, v in found.groupdict().items() if v is not None}
        args = tuple(a.format(**groups) for a in entry.rerun) if entry.rerun else self.args
        return Rerun(entry.why, args, re.compile(entry.passes.format(**{k: re.escape(v) for k, v in groups.items()}), re.M),
                     entry.attempts)

    def missing_config(self, arch: str, has) -> list[str]:
        """The options this test needs on ``arch`` that the kernel lacks."""
        wanted = [o for key, options in self.needs_config if key in ("any", arch) for o in options]
        return [o for o in wanted if not has(o)]

    def command(self, directory: str, args: Optional[tuple] = None) -> str:
        """Guest shell: set up, run (as ``user``; with ``args`` instead of
        the test's own, for a run again), clean up; prints the exit status
        on its own last line."""
        run = proc.quote([f"./{self.program}", *(self.args if args is None else args)])
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
class Flaky:
    """A flaky entry of the recipe, for one kernel version."""

    version: str
    why: str
    #: A regular expression the failing output shows (its named groups,
    #: e.g. the failing case, fill ``rerun`` and ``passes``).
    signature: str
    #: The program's arguments for the run again ("{case}" from the
    #: signature); empty: the test's own (the whole program).
    rerun: tuple
    #: A regular expression the run again must show to pass (with its exit
    #: status 0): that the failing case did run, and passed.
    passes: str
    #: Runs again at most.
    attempts: int


@dataclass(frozen=True)
class Rerun:
    """How to run a flaky failure again."""

    why: str
    args: tuple
    passes: "re.Pattern"
    attempts: int

    def passed(self, status: Optional[int], output: str) -> bool:
        return status == 0 and bool(self.passes.search(output))


@dataclass(frozen=True)
class SourceFix:
    """A bug of a selftest program itself (not of the kernel), fixed in the
    harness's copy of its source before it is compiled: ``anchor`` must
    occur exactly ``occurrences`` times (once, unless said) in the
    program's source, and ``insert`` goes right before each, or ``replace``
    takes its place.  A source without the anchor (fixed upstream, or
    rewritten) is compiled as it is."""

    name: str
    program: str
    why: str
    upstream: str
    anchor: str
    insert: str = ""
    replace: Optional[str] = None
    occurrences: int = 1

    def apply(self, source: str) -> tuple[str, bool]:
        count = source.count(self.anchor)
        if count == 0:
            return source, False
        if count != self.occurrences:
            raise InfraError(f"kselftest-vm.yaml: source fix {self.name}: its anchor occurs {count} times in {self.program}.c,"
                             f" not {self.occurrences}", hint="make the anchor unique, or say how often it occurs")
        new = self.replace if self.replace is not None else self.insert + self.anchor
        return source.replace(self.anchor, new), True


FIX_KEYS = ("name", "program", "why", "upstream", "anchor")


def load_source_fixes(path: Path = RECIPE) -> list[SourceFix]:
    data = yaml.safe_load(path.read_text())
    out = []
    for raw in data.get("source_fixes") or ():
        missing = [k for k in FIX_KEYS if not raw.get(k)]
        if ("insert" in raw) == ("replace" in raw):
            missing.append("insert or replace (one of them)")
        if missing:
            raise ValueError(f"kselftest-vm.yaml: source fix {raw.get('name', '?')}: missing {', '.join(missing)}")
        out.append(SourceFix(**{k: str(raw[k]) for k in FIX_KEYS}, insert=str(raw.get("insert", "")),
                             replace=None if "replace" not in raw else str(raw["replace"]),
                             occurrences=int(raw.get("occurrences", 1))))
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
                     known_failures=tuple(_known(t["name"], str(k), v) for k, v in (t.get("known_failures") or {}).items()),
                     kernels=str(t.get("kernels", "")), min_cpus=int(t.get("min_cpus", 0)),
                     messages=tuple(_message(t["name"], m) for m in t.get("messages") or ()),
                     arches=_arches(t), arches_why=str((t.get("arches") or {}).get("why", "")),
                     flaky=tuple(_flaky(t["name"], str(k), v) for k, v in (t.get("flaky") or {}).items()))
            for t in data["tests"]]


def _flaky(test: str, version: str, entry) -> Flaky:
    """A flaky entry: {why, signature: REGEX, passes: REGEX, rerun: [args], attempts: N}."""
    if not isinstance(entry, dict) or not all(entry.get(k) for k in ("why", "signature", "passes")):
        raise ValueError(f"kselftest-vm.yaml: {test}: flaky {version!r} needs 'why', 'signature' (a regular expression the "
                         "failing output shows) and 'passes' (one a run again that passed shows)")
    signature = re.compile(entry["signature"])
    names = set(signature.groupindex)
    for text in [*entry.get("rerun", ()), entry["passes"]]:
        used = set(re.findall(r"(?<!\{)\{(\w+)\}", str(text)))
        if used - names:
            raise ValueError(f"kselftest-vm.yaml: {test}: flaky {version!r}: {text!r} names {', '.join(sorted(used - names))},"
                             " not a named group of the signature")
    attempts = int(entry.get("attempts", 1))
    if not 1 <= attempts <= 5:
        raise ValueError(f"kselftest-vm.yaml: {test}: flaky {version!r}: attempts must be 1 to 5, not {attempts}")
    return Flaky(version, str(entry["why"]), str(entry["signature"]), tuple(str(a) for a in entry.get("rerun", ())),
                 str(entry["passes"]), attempts)


def _arches(test: dict) -> tuple:
    """An arches entry: {only: [arch, ...], why: ...}; each arch one the harness knows."""
    entry = test.get("arches")
    if entry is None:
        return ()
    from harness.arches import ARCHES

    if not isinstance(entry, dict) or not entry.get("only") or not entry.get("why"):
        raise ValueError(f"kselftest-vm.yaml: {test['name']}: an arches entry needs 'only' (a list of arches) and 'why'")
    unknown = [a for a in entry["only"] if a not in ARCHES]
    if unknown:
        raise ValueError(f"kselftest-vm.yaml: {test['name']}: unknown arch {', '.join(unknown)} (known: {', '.join(ARCHES)})")
    return tuple(entry["only"])


def _message(test: str, entry) -> str:
    """A messages entry: {pattern: REGEX, why: ...}."""
    if not isinstance(entry, dict) or not entry.get("pattern") or not entry.get("why"):
        raise ValueError(f"kselftest-vm.yaml: {test}: a messages entry needs 'pattern' (a regular expression) and 'why'")
    re.compile(entry["pattern"])
    return str(entry["pattern"])


def tests_for(version: Optional[tuple], path: Path = RECIPE) -> list[SelfTest]:
    """The recipe's tests that the run_vmtests of kernel ``version`` runs."""
    return [t for t in load_tests(path) if t.applies(version)]


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
    """TEST_GEN_FILES of the tree's selftests/vm (or mm) Makefile (the programs it builds)."""
    makefile = tree / selftests_dir(tree) / "Makefile"
    try:
        text = makefile.read_text()
    except OSError:
        raise UserError(f"{tree} has no {SELFTESTS}/Makefile", hint="kselftest-vm needs a kernel tree with its selftests") from None
    found = []
    for match in re.finditer(r"^TEST_GEN_(?:FILES|PROGS)\s*\+?=\s*(.+)$", text, re.M):
        found += [word for word in match.group(1).split() if not word.startswith("$") and word not in found]
    return found


@dataclass(frozen=True)
class LinkRules:
    """What a selftests Makefile adds to a program beside its own .c: the
    shared sources (``$(TEST_GEN_FILES): vm_util.c``, 5.19 onwards) and
    its own (``$(OUTPUT)/uffd-stress: uffd-common.c``), and libraries
    (``$(OUTPUT)/migration: LDLIBS += -lnuma``)."""

    common: tuple = ()
    sources: tuple = ()  # ((program, (file.c, ...)), ...)
    libs: tuple = ()  # ((program, ("-lnuma", ...)), ...)

    def extra_sources(self, program: str) -> list[str]:
        return list(dict.fromkeys(list(self.common) + [c for p, files in self.sources if p == program for c in files]))

    def extra_libs(self, program: str) -> list[str]:
        return [lib for p, libs in self.libs if p == program for lib in libs]


def link_rules(makefile: str) -> LinkRules:
    """The extra sources and libraries a selftests Makefile gives its
    programs (pure: the Makefile's text)."""
    common: list[str] = []
    sources: dict[str, list[str]] = {}
    libs: dict[str, list[str]] = {}
    for line in makefile.splitlines():
        line = line.split("#", 1)[0].rstrip()
        match = re.match(r"^((?:\$\(\w+\)\s*)+):\s*(\S.*)$", line)
        if match and {"TEST_GEN_FILES", "TEST_GEN_PROGS"} & set(re.findall(r"\$\((\w+)\)", match.group(1))):
            common += [w for w in match.group(2).split() if w.endswith(".c")]
            continue
        match = re.match(r"^((?:\$\(OUTPUT\)/[\w.-]+\s*)+):\s*LDLIBS\s*\+=\s*(.+)$", line)
        if match:
            for target in re.findall(r"\$\(OUTPUT\)/([\w.-]+)", match.group(1)):
                libs.setdefault(target, []).extend(w for w in match.group(2).split() if w.startswith("-l"))
            continue
        match = re.match(r"^((?:\$\(OUTPUT\)/[\w.-]+\s*)+):\s*([\w./ -]+\.c(?:\s+[\w./-]+\.c)*)\s*$", line)
        if match:
            for target in re.findall(r"\$\(OUTPUT\)/([\w.-]+)", match.group(1)):
                sources.setdefault(target, []).extend(match.group(2).split())
    return LinkRules(tuple(dict.fromkeys(common)), tuple((p, tuple(f)) for p, f in sources.items()),
                     tuple((p, tuple(v)) for p, v in libs.items()))


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


#: Static libraries some programs link (the Makefile's LDLIBS), and the
#: Debian package that has them for the guest's arch.
LIB_PACKAGES = {"-lnuma": "libnuma-dev", "-lcap": "libcap-dev"}
LIB_SUITE = "bookworm"


class SelftestBuilder:
    def __init__(self, cache: Optional[Cache] = None, echo=None, offline: bool = False) -> None:
        self.cache = cache or Cache()
        self.echo = echo
        self.offline = offline

    def build(self, tree: Path, source_id: str, the_arch: Arch, version: tuple) -> Built:
        """The vm (or mm) selftests of ``tree`` (whose content identity is
        ``source_id``) that kernel ``version``'s run_vmtests runs, for
        ``the_arch``, cached."""
        cc = toolchain.compiler(the_arch.user_cross)
        toolchain.require(["make", "rsync"], "building the kselftest vm programs (make headers_install)")
        tests = tests_for(tuple(version[:2]) if version else None)
        directory = tree / selftests_dir(tree)
        rules = link_rules((directory / "Makefile").read_text())
        programs = sorted({t.program for t in tests} & set(programs_in(tree)))
        sources = {p: (directory / f"{p}.c").read_bytes() for p in programs if (directory / f"{p}.c").exists()}
        extras = sorted({c for p in programs for c in rules.extra_sources(p)})
        # a fix may also be of a shared source the Makefile links (vm_util.c: "program: vm_util")
        shared = {c[:-2]: (directory / c).read_bytes() for c in extras if c.endswith(".c") and (directory / c).exists()}
        fixed, applied = fixed_sources({**shared, **sources}, load_source_fixes())
        sources = {p: fixed[p] for p in sources}
        for program in programs:  # a program linking a fixed shared source is built with its fixes
            for name in (c[:-2] for c in rules.extra_sources(program) if c.endswith(".c")):
                if name in applied and name not in programs:
                    applied.setdefault(program, []).extend(applied[name])
        shared = {f"{name}.c": fixed[name] for name in shared if fixed[name] != (directory / f"{name}.c").read_bytes()}
        libs = sorted({lib for p in programs for lib in rules.extra_libs(p) if lib in LIB_PACKAGES})
        debs = {lib: self._lib_deb(the_arch, LIB_PACKAGES[lib]) for lib in libs}
        inputs = {"recipe": RECIPE_VERSION, "arch": the_arch.name, "compiler": cc.version,
                  "sources": {p: hashlib.sha256(data).hexdigest() for p, data in sources.items()},
                  "tree": source_id}
        if extras:
            inputs["extras"] = {c: hashlib.sha256(shared.get(c) or (directory / c).read_bytes()).hexdigest()
                                for c in extras if (directory / c).exists()}
        if debs:
            inputs["libs"] = {lib: sha256_file(deb) if isinstance(deb, Path) else deb for lib, deb in debs.items()}
        key = key_of(inputs)
        final = self.cache.dir("kselftest") / key
        if (final / "manifest.json").exists():
            return _built(final, cached=True)
        with self.cache.lock(f"kselftest-{key}"):
            if (final / "manifest.json").exists():
                return _built(final, cached=True)
            with self.cache.staging(final) as tmp:
                headers = self._headers(tree, the_arch, version, tmp / "hdr")
                # check_config.sh's output: no liburing (the tests that want it skip those parts)
                (tmp / "hdr" / "local").mkdir(parents=True, exist_ok=True)
                (tmp / "hdr" / "local" / "local_config.h").write_text("/* harness: no liburing */\n")
                lib_flags = {lib: self._unpack(deb, tmp / "hdr" / "libs" / lib.lstrip("-"), the_arch) if isinstance(deb, Path) else deb
                             for lib, deb in debs.items()}
                outcome = {}
                for program in programs:
                    missing = [f"{lib}: {flags}" for lib, flags in lib_flags.items()
                               if lib in rules.extra_libs(program) and isinstance(flags, str)]
                    if missing:
                        outcome[program] = missing
                        continue
                    flags = [f for lib, fl in lib_flags.items() if lib in rules.extra_libs(program) for f in fl]
                    outcome[program] = self._compile(the_arch, tree, program, headers, tmp, sources.get(program),
                                                     extras=rules.extra_sources(program), fixed_extras=shared,
                                                     flags=flags + [f"-I{tmp / 'hdr' / 'local'}"],
                                                     libs=[lib for lib in rules.extra_libs(program) if lib in LIB_PACKAGES])
                (tmp / "manifest.json").write_text(json.dumps({"programs": outcome, "arch": the_arch.name, "tree": str(tree),
                                                               "compiler": cc.version, "built": time.time(),
                                                               "source_fixes": applied}, indent=2) + "\n")
                shutil.rmtree(tmp / "hdr", ignore_errors=True)
                shutil.rmtree(tmp / "src", ignore_errors=True)
        return _built(final, cached=False)

    def _lib_deb(self, the_arch: Arch, package: str):
        """The Debian -dev package with a static library some programs link
        (for the guest's arch), or why it cannot be had (those programs are
        then reported as not built, with that reason)."""
        try:
            return Apt(self.cache, LIB_SUITE, the_arch.debian_arch, echo=self.echo, offline=self.offline).download(
                package, self.cache.dir("debs", f"{LIB_SUITE}-{the_arch.debian_arch}"))
        except (UserError, InfraError) as exc:
            return f"{package} ({the_arch.debian_arch}) could not be had: {exc.message}"

    def _unpack(self, deb: Path, out: Path, the_arch: Arch) -> list:
        out.mkdir(parents=True, exist_ok=True)
        result = proc.run(["dpkg-deb", "-x", str(deb), str(out)], echo=self.echo)
        if result.returncode != 0:
            raise_if_disk_full(out, f"unpacking {deb.name}", result.stdout)
            raise InfraError(f"dpkg-deb could not unpack {deb}", hint="delete it from the cache to fetch it again",
                             log_tail=result.stdout.splitlines()[-5:])
        libdirs = sorted({str(p.parent) for p in out.rglob("*.a")})
        return [f"-I{out / 'usr' / 'include'}"] + [f"-L{d}" for d in libdirs]

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
                 text: Optional[bytes] = None, extras: Sequence[str] = (), flags: Sequence[str] = (),
                 libs: Sequence[str] = (), fixed_extras: Optional[dict] = None) -> Optional[list]:
        source = tree / selftests_dir(tree) / f"{program}.c"
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
        linked = []
        for extra in extras:  # a shared source with a fix: its fixed copy, beside the program's
            if extra in (fixed_extras or {}):
                copy = out / "src" / extra
                copy.parent.mkdir(exist_ok=True)
                copy.write_bytes(fixed_extras[extra])
                linked.append(copy)
            else:
                linked.append(source.parent / extra)
        # the Makefile's CFLAGS may have -I $(top_srcdir) (gup_test.c: <mm/gup_test.h>)
        makefile = (source.parent / "Makefile").read_text()
        top = [f"-I{tree}"] if re.search(r"-I\s*\$\(top_srcdir\)(\s|$)", makefile, re.M) else []
        argv = [f"{the_arch.user_cross}gcc", "-static", "-O2", "-Wall", f"-I{headers}", f"-I{source.parent}", *top, *flags,
                "-o", str(out / program), str(compiled), *map(str, linked), *libs, "-lrt", "-lpthread"]
        result = proc.run(argv, cwd=source.parent, echo=self.echo)
        if result.returncode != 0:
            raise_if_disk_full(out, f"compiling {program}", result.stdout)
            return result.stdout.splitlines()[-6:] or ["the compiler failed"]
        return None

