"""Kernel builds: layered config, verification, make, cached artifacts.

``build(request)`` resolves the source, layers the fragments (``base``,
``mm``, the arch's, optionally ``debug``, the user's, the compat fixes'),
configures with ``allnoconfig`` + ``KCONFIG_ALLCONFIG`` (or ``defconfig`` +
the fragments, for comparison), runs ``olddefconfig``, stops with every
requested option that did not stick, builds the image out of tree, and
installs the artifacts atomically under ``builds/<key>/``.  A cache hit
returns at once and rebuilds nothing.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import re
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence, Tuple

from harness.arches import Arch
from harness.arches import arch as lookup_arch
from harness.errors import KernelError, UserError, tail_of
from harness.host import proc, toolchain
from harness.host.cache import Cache, key_of, raise_if_disk_full, sha256_file
from harness.host.paths import kconfigs_path
from harness.host.progress import Progress
from harness.kernel import compat, kconfig
from harness.kernel.patches import Patch
from harness.kernel.source import KernelSource, SourceRequest, SourceResolver
from harness.kernel.workcopy import WorkCopy

#: Bump when the way a build is made changes (invalidates the build cache).
RECIPE_VERSION = 1
BASES = ("allnoconfig", "defconfig")


def kconfigs_dir() -> Path:
    path = kconfigs_path()
    if not (path / "base.config").is_file():
        raise UserError(f"the kconfig fragments are missing ({path}/base.config)", hint="run the harness from its source checkout")
    return path


@dataclass(frozen=True)
class BuildRequest:
    source: SourceRequest
    arch: str
    fragments: Tuple[Path, ...] = ()
    #: Extra options as fragment lines (per-scenario needs).
    options: Tuple[str, ...] = ()
    debug: bool = False
    base: str = "allnoconfig"
    jobs: Optional[int] = None
    quiet: bool = False
    ccache: bool = True
    #: Only look the build up in the cache; never build (NotBuilt if absent).
    cache_only: bool = False
    #: Stop when a requested option did not stick (off only for experiments
    #: such as the defconfig baseline of the build benchmark).
    verify: bool = True


@dataclass
class BuildResult:
    key: str
    directory: Path
    image: Path
    config: Path
    arch: str
    source: dict
    kernel_version: str
    cached: bool
    elapsed: float
    metadata: dict = field(default_factory=dict)

    @classmethod
    def load(cls, directory: Path, cached: bool = True, elapsed: float = 0.0) -> "BuildResult":
        meta = json.loads((directory / "build.json").read_text())
        return cls(
            key=meta["key"],
            directory=directory,
            image=directory / meta["image"],
            config=directory / "config",
            arch=meta["arch"],
            source=meta["source"],
            kernel_version=meta["kernel_version"],
            cached=cached,
            elapsed=elapsed,
            metadata=meta,
        )


class NotBuilt(UserError):
    """A cache-only build request found nothing."""


def layers(request: BuildRequest, the_arch: Arch, fixes: compat.AppliedFixes,
           version: Optional[tuple] = None) -> tuple[list[list[kconfig.Option]], list[dict]]:
    """The fragments in order, parsed, and a record of each (path, sha256):
    base, mm, the version fragments that apply to ``version`` (kconfigs/versions,
    see :func:`harness.kernel.kconfig.version_fragment_applies`), the arch's
    (its exceptions win), debug, then the user's."""
    root = kconfigs_dir()
    files = [root / "base.config", root / "mm.config"]
    if version is not None:
        files += [path for path in sorted((root / "versions").glob("*.config"))
                  if kconfig.version_fragment_applies(path.read_text(), tuple(version), the_arch.name, str(path))]
    files.append(root / the_arch.fragment)
    if request.debug:
        files.append(root / "debug.config")
    parsed, record = [], []
    for path in files:
        text = path.read_text()
        parsed.append(kconfig.parse_fragment(text, str(path.relative_to(root.parent)) if root.parent in path.parents else str(path)))
        record.append({"file": str(path), "sha256": _sha(text)})
    for path in request.fragments:
        path = Path(path).expanduser()
        try:
            text = path.read_text()
        except OSError as exc:
            raise UserError(f"cannot read fragment {path}: {exc.strerror}") from None
        parsed.append(kconfig.parse_fragment(text, str(path)))
        record.append({"file": str(path.resolve()), "sha256": _sha(text)})
    if request.options:
        text = "\n".join(request.options)
        parsed.append(kconfig.parse_fragment(text, "options"))
        record.append({"file": "options", "sha256": _sha(text)})
    if fixes.config_text:
        parsed.append(kconfig.parse_fragment(fixes.config_text, "compat"))
        record.append({"file": "compat", "sha256": _sha(fixes.config_text)})
    users = parsed[len(files):len(parsed) - (1 if fixes.config_text else 0)]
    refuse_required_off(parsed[:len(files)], users, root / "required.list")
    return parsed, record


def refuse_required_off(ours: Sequence[Sequence[kconfig.Option]], theirs: Sequence[Sequence[kconfig.Option]],
                        required_list: Path) -> None:
    """A user layer that turns off an option every scenario needs is a user
    error naming the option, where it was turned off and why it is needed."""
    required = [line.strip() for line in required_list.read_text().splitlines() if line.strip() and not line.startswith("#")]
    reasons = {o.name: o.reason for layer in ours for o in layer}
    for layer in theirs:
        for option in layer:
            if option.name in required and option.value == "n":
                raise UserError(
                    f"CONFIG_{option.name}=n ({option.source}:{option.line}) turns off an option no scenario runs without"
                    + (f": {reasons[option.name]}" if reasons.get(option.name) else ""),
                    hint=f"drop that line (the list is {required_list}); options only some scenarios need, such as "
                         "COMPACTION, NUMA or VIRTIO_BALLOON, may be turned off and those scenarios are skipped")


def _sha(text: str) -> str:

    return hashlib.sha256(text.encode()).hexdigest()


class Builder:
    def __init__(
        self,
        cache: Optional[Cache] = None,
        echo: Optional[proc.Echo] = None,
        stream=None,
        tools: Sequence[str] = toolchain.KERNEL_BUILD_TOOLS,
    ) -> None:
        self.cache = cache or Cache()
        self.echo = echo
        self.stream = stream or sys.stderr
        #: Host tools checked before building (tests of a fake tree need fewer).
        self.tools = tuple(tools)

    # ------------------------------------------------------------------
    def build(self, request: BuildRequest) -> BuildResult:
        started = time.monotonic()
        the_arch = lookup_arch(request.arch)
        if request.base not in BASES:
            raise UserError(f"unknown config base {request.base!r}", hint=f"use one of: {', '.join(BASES)}")
        resolver = SourceResolver(self.cache, echo=self.echo)
        resolver.check_spec(request.source)
        user_patches = request.source.patch_list()
        self.cache.check_writable()
        # The user's inputs first (a tree that is not a kernel, a bad
        # fragment or option), then the host: a cached build needs the
        # compiler (its version is part of the key) but not flex or bison.
        base = resolver.resolve(request.source)
        fixes = compat.select(base.version.short, the_arch.name)
        patches = user_patches + [Patch(f"compat-{fix.name}", fix.source_patch.encode(), origin="harness/compat")
                                  for fix in fixes.source_patches]
        source = base.with_patches(patches)
        parsed, fragment_record = layers(request, the_arch, fixes, base.version.short)
        cc = toolchain.compiler(the_arch.kernel_cross)
        requested = kconfig.layer(parsed)
        requested_text = kconfig.render(requested)
        make_vars = dict(fixes.make_vars)
        key = key_of(
            {
                "recipe": RECIPE_VERSION,
                "source": source.id,
                "arch": the_arch.name,
                "base": request.base,
                "config": requested_text,
                "compiler": cc.version,
                "compat": compat.compat_version(),
                "make_vars": make_vars,
                "target": the_arch.image_target,
                # an unverified build never stands in for a verified one
                **({} if request.verify else {"verify": False}),
            }
        )
        final = self.cache.dir("builds") / key
        hit = self._cached(final, started)
        if hit is not None:
            if not request.quiet:
                print(f"[build {the_arch.name}] cache hit: {final}", file=self.stream)
            return hit
        if request.cache_only:
            raise NotBuilt(f"no cached {the_arch.name} build of {request.source.spec} with these inputs",
                           hint=f"build it: {reproducer(request)}")
        toolchain.require(list(self.tools), "building a kernel")
        work = WorkCopy(self.cache, base.tree, immutable=base.owned, echo=self.echo)
        with work.lock():
            hit = self._cached(final, started)
            if hit is not None:
                return hit
            sync = work.sync(patches)
            return self._build(request, the_arch, source, work, sync, fixes, cc, requested, requested_text,
                               fragment_record, make_vars, key, final, started)

    def _cached(self, final: Path, started: float) -> Optional[BuildResult]:
        if (final / "build.json").is_file():
            try:
                result = BuildResult.load(final, cached=True, elapsed=time.monotonic() - started)
            except (OSError, ValueError, KeyError):
                return None  # an unreadable build.json: rebuilt, never trusted
            if result.image.is_file():
                return result
        return None

    # ------------------------------------------------------------------
    def _build(self, request, the_arch, source: KernelSource, work: WorkCopy, sync, fixes, cc, requested, requested_text,
               fragment_record, make_vars, key, final, started) -> BuildResult:
        # One build directory per work copy, arch and config base: make
        # rebuilds only what the patches (or a revert) changed.
        objs = work.objs(the_arch.name, request.base)
        meta_dir = objs / ".harness"
        meta_dir.mkdir(exist_ok=True)
        log_path = meta_dir / "build.log"
        marker = meta_dir / "building"
        history_path = meta_dir / "objects.json"
        config_id = hashlib.sha256(json.dumps([requested_text, request.base, sorted(make_vars.items()), fixes.names]).encode()).hexdigest()[:16]
        expected = _expected_objects(history_path, config_id)
        progress = Progress(f"build {the_arch.name} {source.version}", quiet=request.quiet, stream=self.stream, expected=expected)
        env = self._env(the_arch, work)
        base_make = ["make", f"O={objs}", f"ARCH={the_arch.linux_arch}"]
        if the_arch.kernel_cross:
            base_make.append(f"CROSS_COMPILE={the_arch.kernel_cross}")
        compilers = []
        if request.ccache and shutil.which("ccache"):
            compilers = [f"CC=ccache {cc.command}", "HOSTCC=ccache gcc"]
        make_words = [f"{k}={v}" for k, v in sorted(make_vars.items())]
        build_stamp = ["KBUILD_BUILD_USER=harness", "KBUILD_BUILD_HOST=harness", "KBUILD_BUILD_TIMESTAMP=harness"]
        if request.jobs is not None and request.jobs < 1:
            raise UserError(f"{request.jobs} make jobs", hint="give at least 1, or leave -j out for one per CPU")
        jobs = request.jobs or os.cpu_count() or 1
        meta = {
            "schema": 1,
            "status": "running",
            "key": key,
            "arch": the_arch.name,
            "source": source.as_dict(),
            "work_tree": str(work.tree),
            "work_changed": sync.changed,
            "kernel_version": str(source.version),
            "base": request.base,
            "fragments": fragment_record,
            "compat": fixes.names,
            "compat_version": compat.compat_version(),
            "compiler": cc.short,
            "make_vars": make_vars,
            "image": Path(the_arch.image_path).name,
            "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "reproducer": reproducer(request),
            "make_commands": [],
        }
        (meta_dir / "build.json").write_text(json.dumps(meta, indent=2) + "\n")
        (meta_dir / "requested.config").write_text(requested_text)
        with open(log_path, "w") as log:
            if marker.exists():
                removed = discard_since(objs, marker)
                meta["recovered"] = f"removed {removed} file(s) an interrupted or failed compile may have left half-written"
                log.write(f"harness: {meta['recovered']}\n")
            progress.set_stage("configuring")
            allconfig = meta_dir / "requested.config"
            if request.base == "allnoconfig":
                self._make(base_make + compilers + [f"KCONFIG_ALLCONFIG={allconfig}", "allnoconfig"], work.tree, env, log, progress, meta, "configuration")
            else:
                self._make(base_make + compilers + ["defconfig"], work.tree, env, log, progress, meta, "configuration")
                with open(objs / ".config", "a") as dotconfig:
                    dotconfig.write("\n" + requested_text)
            self._make(base_make + compilers + ["olddefconfig"], work.tree, env, log, progress, meta, "configuration")
            actual = kconfig.parse_dotconfig((objs / ".config").read_text())
            if request.verify:
                self._verify(requested, actual, source, work.tree, the_arch, objs)
            else:
                meta["unverified_mismatches"] = [m.option.name for m in kconfig.check(requested, actual)]
            progress.set_stage("compiling")
            # set only around compiling: an interrupted compile may leave
            # truncated objects (see discard_since), a failed configuration
            # does not
            marker.touch()
            argv = base_make + compilers + make_words + build_stamp + [f"-j{jobs}", the_arch.image_target]
            try:
                self._make(argv, work.tree, env, log, progress, meta, "build", stream=True)
            finally:
                progress.close()
        marker.unlink(missing_ok=True)
        _record_objects(history_path, config_id, progress.count)
        elapsed = time.monotonic() - started
        image = objs / the_arch.image_path
        meta.update(
            status="complete",
            elapsed_s=round(elapsed, 1),
            objects=progress.count,
            image_sha256=sha256_file(image),
            image_size=image.stat().st_size,
            finished=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        )
        with self.cache.staging(final, complete=lambda entry: self._cached(entry, started) is not None) as tmp:
            shutil.copy2(image, tmp / image.name)
            shutil.copy2(objs / ".config", tmp / "config")
            shutil.copy2(meta_dir / "requested.config", tmp / "requested.config")
            shutil.copy2(log_path, tmp / "build.log")
            if (objs / "System.map").exists():
                shutil.copy2(objs / "System.map", tmp / "System.map")
            (tmp / "build.json").write_text(json.dumps(meta, indent=2) + "\n")
        progress.done(f"built {final / image.name}")
        return BuildResult.load(final, cached=False, elapsed=elapsed)

    def _env(self, the_arch: Arch, work: WorkCopy) -> dict:
        env = dict(os.environ, LC_ALL="C")
        env.setdefault("CCACHE_DIR", str(self.cache.dir("ccache")))
        env.setdefault("CCACHE_MAXSIZE", "20G")
        # ccache hits across work copies (a new tree, a bisect clone): every
        # work copy has the same layout, so with paths made relative to its
        # root the compiler lines are the same (only __FILE__ strings name
        # the copy that first compiled an object).
        env.setdefault("CCACHE_NOHASHDIR", "1")
        env.setdefault("CCACHE_BASEDIR", str(work.root))
        return env

    def _make(self, argv, tree: Path, env, log, progress, meta, what, stream=False) -> None:
        meta["make_commands"].append(proc.quote(argv))
        if stream:
            status = proc.stream(argv, on_line=progress.kbuild_line, cwd=tree, env=env, echo=self.echo, log=log)
        else:
            status = proc.run(argv, cwd=tree, env=env, echo=self.echo, log=log).returncode
        if status != 0:
            log.flush()
            written = [tree if what == "config" else Path(log.name).parent] + ([Path(env["CCACHE_DIR"])] if env.get("CCACHE_DIR") else [])
            raise_if_disk_full(written, f"running make ({what})", "\n".join(tail_of(Path(log.name), 200)))
            raise KernelError(
                f"kernel {what} failed for {meta['arch']} {meta['kernel_version']} (make exited {status})",
                hint=_build_hint(Path(log.name)),
                log_path=Path(log.name),
                log_tail=error_lines(Path(log.name)),
            )

    def _verify(self, requested, actual, source: KernelSource, tree: Path, the_arch: Arch, objs: Path) -> None:
        mismatches = kconfig.check(requested, actual)
        if not mismatches:
            return
        definitions = kconfig.kconfig_definitions(read_kconfig_files(tree, the_arch.linux_arch))
        explained = kconfig.explain(mismatches, definitions, actual)
        unknown = [m for m in explained if m.unknown]
        lines = "\n  ".join(m.render() for m in explained)
        raise UserError(
            f"{len(explained)} requested option{'s' if len(explained) > 1 else ''} did not stick after olddefconfig "
            f"({the_arch.name}, {source.version}):\n  {lines}",
            hint=(
                "remove or fix the unknown option(s) in your fragment"
                if unknown and len(unknown) == len(explained)
                else "enable the unmet dependencies in a fragment, or drop the option"
            ),
            log_path=objs / ".config",
        )


def discard_since(objs: Path, marker: Path) -> int:
    """Remove every file of the build directory written since ``marker``
    was touched (the compile that did not finish): a truncated object
    newer than its source would otherwise look up to date to make.  Their
    .cmd files go too, so kbuild rebuilds them; nothing else is lost."""
    since = marker.stat().st_mtime_ns
    removed = 0
    for root, dirs, files in os.walk(objs):
        if Path(root) == objs:
            dirs[:] = [d for d in dirs if d != ".harness"]
        for name in files:
            path = Path(root) / name
            if path == objs / ".config":
                continue
            try:
                if path.lstat().st_mtime_ns >= since:
                    path.unlink()
                    removed += 1
            except OSError:
                continue
    return removed


def read_kconfig_files(tree: Path, linux_arch: str) -> dict[str, str]:
    """Every Kconfig file of the tree except other arches'."""
    src_arch = {"x86_64": "x86", "i386": "x86"}.get(linux_arch, linux_arch)
    files = {}
    for path in tree.rglob("Kconfig*"):
        rel = path.relative_to(tree).as_posix()
        if rel.startswith("arch/") and not rel.startswith(f"arch/{src_arch}/"):
            continue
        if path.is_file():
            try:
                files[rel] = path.read_text(errors="replace")
            except OSError:
                continue
    return files


_ERROR = re.compile(r"(error:|Error \d|\*\*\*|undefined reference|multiple definition|No rule to make target|fatal error)", re.I)


def error_lines(log: Path, limit: int = 15) -> list[str]:
    """The build's error lines (else the log's tail), for the error report."""
    lines = tail_of(log, 400)
    errors = [line for line in lines if _ERROR.search(line)]
    return (errors or lines)[-limit:]


def _build_hint(log: Path) -> str:
    if any("command not found" in line for line in tail_of(log, 400)):
        return "a build tool is missing (see the log): install it"
    return "see the log; if an old kernel trips over today's toolchain, a fix belongs in harness/compat/"


def reproducer(request: BuildRequest) -> str:
    words = ["harness", "build", "--kernel", request.source.spec, "--arch", request.arch]
    if request.source.tarball:
        words += ["--tarball", str(request.source.tarball)]
    for patch in request.source.patches:
        words += ["--patch", str(patch)]
    for fragment in request.fragments:
        words += ["--fragment", str(fragment)]
    for option in request.options:
        words += ["--option", option]
    if request.debug:
        words.append("--debug")
    if request.base != "allnoconfig":
        words += ["--base", request.base]
    if request.source.offline:
        words.append("--offline")
    return proc.quote(words)


def _expected_objects(history: Path, config_id: str) -> Optional[int]:
    """How many objects the last build of this configuration in this build
    directory compiled (the progress line's 100 %), or None."""
    try:
        value = json.loads(history.read_text()).get(config_id)
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, int) and value > 0 else None


def _record_objects(history: Path, config_id: str, count: int) -> None:
    try:
        data = json.loads(history.read_text())
        data = data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        data = {}
    if count:
        data[config_id] = count
        tmp = history.with_name(history.name + ".tmp")
        tmp.write_text(json.dumps(data) + "\n")
        os.replace(tmp, history)
