"""Resolve a kernel source: a named preset (``v5.0``, ``debian-5.10``), a
local tarball, or a local tree, plus patches on top.

A user's tree is never modified: builds are out of tree (``O=``), and
patches are applied to the harness's own work copy (``harness.kernel.workcopy``).  Downloads are verified and
cached; ``offline`` never touches the network and says what to provide.
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import urllib.error
import urllib.request
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Optional, Sequence, Tuple, Union

from harness.errors import InfraError, UserError
from harness.host import proc, toolchain
from harness.host.apt import Apt
from harness.host.cache import Cache, raise_if_disk_full, sha256_file
from harness.kernel.patches import Patch, patch_from_file


@dataclass(frozen=True, order=True)
class KernelVersion:
    major: int
    minor: int
    sublevel: int = 0
    extra: str = ""

    @property
    def short(self) -> Tuple[int, int]:
        return (self.major, self.minor)

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.sublevel}{self.extra}"


def parse_makefile_version(text: str) -> KernelVersion:
    """VERSION/PATCHLEVEL/SUBLEVEL/EXTRAVERSION from a top-level Makefile."""
    values = {}
    for key in ("VERSION", "PATCHLEVEL", "SUBLEVEL", "EXTRAVERSION"):
        match = re.search(rf"^{key}\s*=\s*(\S*)\s*$", text, re.MULTILINE)
        values[key] = match.group(1) if match else ""
    try:
        return KernelVersion(int(values["VERSION"]), int(values["PATCHLEVEL"]), int(values["SUBLEVEL"] or 0), values["EXTRAVERSION"])
    except ValueError:
        raise UserError("the tree's Makefile has no VERSION/PATCHLEVEL: is this a Linux kernel tree?") from None


@dataclass(frozen=True)
class TarballPreset:
    name: str
    url: str
    filename: str
    size: int
    sha256: str
    top: str


@dataclass(frozen=True)
class DebianPreset:
    name: str
    suite: str
    package: str
    inner: str
    top: str


V5_0 = TarballPreset(
    name="v5.0",
    url="https://cdn.kernel.org/pub/linux/kernel/v5.x/linux-5.0.tar.xz",
    filename="linux-5.0.tar.xz",
    size=105_235_152,
    sha256="437b141a6499159f5a7282d5eb4b2be055f8e862ccce44d7464e8759c31a2e43",
    top="linux-5.0",
)
DEBIAN_5_10 = DebianPreset(
    name="debian-5.10",
    suite="bullseye",
    package="linux-source-5.10",
    inner="usr/src/linux-source-5.10.tar.xz",
    top="linux-source-5.10",
)
DEBIAN_6_1 = DebianPreset(
    name="debian-6.1",
    suite="bookworm",
    package="linux-source-6.1",
    inner="usr/src/linux-source-6.1.tar.xz",
    top="linux-source-6.1",
)
DEBIAN_6_12 = DebianPreset(
    name="debian-6.12",
    suite="trixie",
    package="linux-source-6.12",
    inner="usr/src/linux-source-6.12.tar.xz",
    top="linux-source-6.12",
)
PRESETS = {p.name: p for p in (V5_0, DEBIAN_5_10, DEBIAN_6_1, DEBIAN_6_12)}

#: sha256 of the v5.0 files the model is read from (and the Makefile), from
#: a pristine v5.0 tree: a tree registered as "v5.0" must match them.
V5_0_FINGERPRINT = {
    "Makefile": "6d41a8325426821b53bf56f11998bc5beac21d58b3290dafd6cc84c3b6d1280f",
    "mm/migrate.c": "1c49ac60061cc25299ae4edbe5e9f63d98a5a7ea0fb552e2ed63dcad8b4827e3",
    "mm/compaction.c": "bc494562692c1dd76a7a26f721b6d6b6d52e8421659df453080314feb58ffb74",
    "mm/mempolicy.c": "d4253b7d68b3ee121975b4947d7519b8fcf14681713dbd8b6284783a1fd28e78",
    "mm/huge_memory.c": "93567fa84e1fdc6f93df34d41f0f7ae43708b1ea4c389b8c296bf3986f7a306f",
    "include/trace/events/migrate.h": "b0a27ea46bf27f5695b61e78f27effdf06e4662bf74b775c70e2156d9dcfbff1",
}
TREE_FINGERPRINTS = {V5_0.name: V5_0_FINGERPRINT}


def fingerprint_mismatches(tree: Path, fingerprint: dict) -> list[str]:
    """Files of ``tree`` that differ from (or lack) the fingerprint."""
    bad = []
    for rel, digest in fingerprint.items():
        path = tree / rel
        if not path.is_file() or sha256_file(path) != digest:
            bad.append(rel)
    return bad
MIRROR_ENV = "HARNESS_KERNEL_ORG"


@dataclass(frozen=True)
class SourceRequest:
    #: "v5.0", "debian-5.10", a tree path or a tarball path.
    spec: str
    #: Supplies the v5.0 tarball from disk instead of downloading it.
    tarball: Optional[Path] = None
    #: Patch files (or :class:`harness.kernel.patches.Patch`), applied in order on
    #: the harness's work copy (never on the source itself).
    patches: Tuple[Union[Path, Patch], ...] = ()
    offline: bool = False

    def patch_list(self) -> list[Patch]:
        return [p if isinstance(p, Patch) else patch_from_file(p) for p in self.patches]


@dataclass(frozen=True)
class KernelSource:
    name: str
    #: "preset", "tarball" or "tree".
    kind: str
    #: Content identity of the base source (sha256, or a tree fingerprint).
    identity: str
    tree: Path
    version: KernelVersion
    origin: str
    #: (name, sha256) of each patch on top of the base, in order.
    patches: Tuple[Tuple[str, str], ...] = ()
    #: The tree is the harness's own (extracted from a tarball or package),
    #: not a user's.
    owned: bool = True

    @property
    def id(self) -> str:
        parts = [self.identity] + [sha for _, sha in self.patches]
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]

    def with_patches(self, patches: Sequence[Patch]) -> "KernelSource":
        """The same base with ``patches`` on top (built in the work copy)."""
        name = self.name + "".join(f"+{p.name}" for p in patches)
        return replace(self, name=name, patches=tuple((p.name, p.sha256) for p in patches))

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "kind": self.kind,
            "identity": self.identity,
            "id": self.id,
            "tree": str(self.tree),
            "version": str(self.version),
            "origin": self.origin,
            "patches": [{"file": n, "sha256": s} for n, s in self.patches],
            "owned": self.owned,
        }


Fetcher = Callable[[str, Path], None]


def fetch_url(url: str, dest: Path, timeout: float = 30.0) -> None:
    """Download ``url`` to ``dest`` (which must not exist yet)."""
    request = urllib.request.Request(url, headers={"User-Agent": "harness/0.1"})
    with urllib.request.urlopen(request, timeout=timeout) as response, open(dest, "wb") as out:
        shutil.copyfileobj(response, out, 1 << 20)


class SourceResolver:
    def __init__(self, cache: Cache, echo: Optional[proc.Echo] = None, fetch: Fetcher = fetch_url, apt: Optional[Apt] = None) -> None:
        self.cache = cache
        self.echo = echo
        self.fetch = fetch
        self._apt = apt

    # ------------------------------------------------------------------
    def resolve(self, request: SourceRequest) -> KernelSource:
        """The base source (patches are applied by the build, on its work
        copy).  A user's tree must be clean for an out-of-tree build."""
        base = self._base(request)
        if not base.owned:
            check_clean_tree(base.tree)
        return base

    def check_spec(self, request: SourceRequest) -> None:
        """A cheap first look at the source's name (before host tools are
        checked or anything is downloaded)."""
        if request.spec in PRESETS or Path(request.spec).expanduser().exists():
            return
        self._base(request)

    def _base(self, request: SourceRequest) -> KernelSource:
        spec = request.spec
        if spec in PRESETS:
            preset = PRESETS[spec]
            if isinstance(preset, TarballPreset):
                tarball = self.preset_tarball(preset, request.tarball, request.offline)
                if tarball.is_dir():
                    tree = tarball.resolve()
                    return self._source(preset.name, "preset", tree_fingerprint(tree), tree,
                                        f"registered tree {tree}", owned=False)
                tree = self._extract(tarball, preset.sha256, preset.top)
                return self._source(preset.name, "preset", preset.sha256, tree, f"{preset.url} (sha256 {preset.sha256[:12]}...)")
            if request.tarball:
                raise UserError(f"--tarball is for v5.0; {spec} comes from Debian's {preset.package} package")
            deb = self.debian_package(preset, request.offline)
            identity = sha256_file(deb)
            tree = self._extract_deb(deb, identity, preset)
            return self._source(preset.name, "preset", identity, tree, f"Debian {preset.suite} {deb.name}")
        path = Path(spec).expanduser()
        if path.is_dir():
            return self._tree(path)
        if path.is_file():
            identity = sha256_file(path)
            tree = self._extract(path, identity, None)
            return self._source(path.name, "tarball", identity, tree, str(path.resolve()))
        if request.tarball and spec not in PRESETS:
            raise UserError(f"--tarball supplies the v5.0 source; for another tarball pass its path as the source: {request.tarball}")
        raise UserError(
            f"unknown kernel source {spec!r}",
            hint=f"use one of: {', '.join(PRESETS)}, a path to a kernel tree, or a path to a tarball",
        )

    def _source(self, name, kind, identity, tree, origin, owned=True) -> KernelSource:
        version = parse_makefile_version(_read(tree / "Makefile"))
        return KernelSource(name, kind, identity, tree, version, origin, owned=owned)

    # ------------------------------------------------------------------
    def preset_tarball(self, preset: TarballPreset, supplied: Optional[Path], offline: bool) -> Path:
        """The verified tarball in the cache: from --tarball, the cache, or
        a download (never when offline)."""
        cached = self.cache.dir("sources") / preset.filename
        if supplied:
            verify_tarball(Path(supplied), preset)
            if not cached.exists() or sha256_file(cached) != preset.sha256:
                self._install_file(Path(supplied), cached)
            return cached
        if cached.exists():
            verify_tarball(cached, preset, cached=True)
            return cached
        registered = self.registered_tree(preset.name)
        if registered is not None:
            return registered
        if offline:
            raise UserError(
                f"the {preset.name} source is not in the cache ({cached}) and --offline forbids downloading it",
                hint=(
                    f"provide it with --tarball PATH ({preset.filename}, {preset.size:,} bytes, sha256 {preset.sha256}), "
                    f"a tree path as the source, or run once online"
                ),
            )
        url = preset.url
        mirror = os.environ.get(MIRROR_ENV)
        if mirror:
            url = mirror.rstrip("/") + "/" + preset.url.split("/pub/", 1)[1]
        tmp = cached.with_name(f".tmp-{os.getpid()}-{preset.filename}")
        if self.echo:
            self.echo(f"download {url}")
        try:
            self.fetch(url, tmp)
            verify_tarball(tmp, preset)
            os.replace(tmp, cached)
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            tmp.unlink(missing_ok=True)
            reason = getattr(exc, "reason", exc)
            raise InfraError(
                f"cannot download {url}: {reason}",
                hint=f"download {preset.filename} elsewhere and pass --tarball PATH, or set {MIRROR_ENV} to a mirror",
            ) from exc
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return cached

    def register(self, name: str, tree: Path) -> Path:
        """Record a local tree as the source of a preset (verified against
        the preset's fingerprint), for builds without the tarball."""
        if name not in TREE_FINGERPRINTS:
            raise UserError(f"only {', '.join(TREE_FINGERPRINTS)} can be registered as a tree", hint="pass other trees as paths")
        tree = Path(tree).expanduser().resolve()
        if not (tree / "Makefile").is_file():
            raise UserError(f"{tree} is not a kernel tree (no Makefile)")
        bad = fingerprint_mismatches(tree, TREE_FINGERPRINTS[name])
        if bad:
            raise UserError(
                f"{tree} is not a pristine {name} tree: {', '.join(bad)} differ",
                hint="register an unmodified tree; a patched tree is built with --kernel PATH or --patch",
            )
        check_clean_tree(tree)
        record = self.cache.dir("sources") / f"{name}.tree"
        record.write_text(str(tree) + "\n")
        return record

    def registered_tree(self, name: str) -> Optional[Path]:
        record = self.cache.root / "sources" / f"{name}.tree"
        if not record.is_file():
            return None
        tree = Path(record.read_text().strip())
        if not tree.is_dir() or fingerprint_mismatches(tree, TREE_FINGERPRINTS.get(name, {})):
            raise UserError(
                f"the tree registered as {name} ({tree}) is gone or no longer pristine",
                hint=f"register it again (harness sources --register {name} PATH) or remove {record}",
            )
        return tree

    def available_offline(self, name: str) -> Optional[str]:
        """How a preset can be had without the network, or None."""
        preset = PRESETS[name]
        if isinstance(preset, TarballPreset):
            if (self.cache.root / "sources" / preset.filename).is_file():
                return f"tarball {self.cache.root / 'sources' / preset.filename}"
            record = self.cache.root / "sources" / f"{name}.tree"
            return f"registered tree {record.read_text().strip()}" if record.is_file() else None
        debs = list((self.cache.root / "sources").glob(f"{preset.package}_*.deb")) if (self.cache.root / "sources").is_dir() else []
        return f"package {debs[0].name}" if debs else None

    def _install_file(self, src: Path, dest: Path) -> None:
        tmp = dest.with_name(f".tmp-{os.getpid()}-{dest.name}")
        try:
            shutil.copyfile(src, tmp)
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)

    def debian_package(self, preset: DebianPreset, offline: bool) -> Path:
        apt = self._apt or Apt(self.cache, preset.suite, "amd64", echo=self.echo, offline=offline)
        try:
            return apt.download(preset.package, self.cache.dir("sources"))
        except UserError as exc:
            if offline:
                raise UserError(
                    f"the {preset.name} source ({preset.package}) is not in the cache and --offline forbids downloading it",
                    hint="run once without --offline where a Debian mirror is reachable",
                ) from exc
            raise

    # ------------------------------------------------------------------
    def _extract(self, tarball: Path, identity: str, top: Optional[str]) -> Path:
        """Extract a tarball once into trees/<identity>/ (atomically)."""
        final = self.cache.dir("trees") / identity[:16]
        if (final / "Makefile").exists():
            return final
        toolchain.require(["tar", "xz"], "extracting a kernel tarball")
        with self.cache.lock(f"tree-{identity[:16]}"):
            if (final / "Makefile").exists():
                return final
            with self.cache.staging(final) as tmp:
                result = proc.run(["tar", "-xf", str(tarball), "-C", str(tmp)], echo=self.echo)
                if result.returncode != 0:
                    raise_if_disk_full(tmp, f"extracting {tarball.name}", result.stdout)
                    raise UserError(
                        f"{tarball} is corrupt or truncated: tar could not extract it",
                        hint="download it again (and check its sha256)",
                        log_tail=result.stdout.splitlines()[-5:],
                    )
                _flatten(tmp, top)
                if not (tmp / "Makefile").exists() or not (tmp / "Kconfig").exists():
                    raise UserError(f"{tarball} does not contain a kernel tree (no top-level Makefile and Kconfig)")
        return final

    def _extract_deb(self, deb: Path, identity: str, preset: DebianPreset) -> Path:
        final = self.cache.dir("trees") / identity[:16]
        if (final / "Makefile").exists():
            return final
        toolchain.require(["dpkg-deb", "tar", "xz"], f"unpacking {preset.package}")
        with self.cache.lock(f"tree-{identity[:16]}"):
            if (final / "Makefile").exists():
                return final
            with self.cache.staging(final) as tmp:
                unpack = tmp / ".deb"
                result = proc.run(["dpkg-deb", "-x", str(deb), str(unpack)], echo=self.echo)
                if result.returncode != 0:
                    raise_if_disk_full(tmp, f"unpacking {deb.name}", result.stdout)
                    raise UserError(f"{deb} is not a valid .deb", log_tail=result.stdout.splitlines()[-5:])
                inner = unpack / preset.inner
                result = proc.run(["tar", "-xf", str(inner), "-C", str(tmp)], echo=self.echo)
                if result.returncode != 0:
                    raise_if_disk_full(tmp, f"extracting {inner.name}", result.stdout)
                    raise UserError(f"{inner} in {deb.name} is corrupt", log_tail=result.stdout.splitlines()[-5:])
                shutil.rmtree(unpack)
                _flatten(tmp, preset.top)
        return final

    # ------------------------------------------------------------------
    def _tree(self, path: Path) -> KernelSource:
        path = path.resolve()
        if not (path / "Makefile").is_file() or not (path / "Kconfig").is_file():
            raise UserError(f"{path} is not a kernel tree (no top-level Makefile and Kconfig)")
        return self._source(str(path), "tree", tree_fingerprint(path), path, str(path), owned=False)

def _flatten(tmp: Path, top: Optional[str]) -> None:
    """Move the tarball's single top directory's contents up into ``tmp``."""
    entries = [e for e in tmp.iterdir() if not e.name.startswith(".deb")]
    if top is None and len(entries) == 1 and entries[0].is_dir():
        top = entries[0].name
    if top is None or not (tmp / top).is_dir():
        return
    inner = tmp / top
    for child in inner.iterdir():
        os.rename(child, tmp / child.name)
    inner.rmdir()


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror}") from None


def verify_tarball(path: Path, preset: TarballPreset, cached: bool = False) -> None:
    """Size, then sha256, against the preset; clear user errors otherwise."""
    where = "the cached copy " if cached else ""
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror}") from None
    if size < preset.size:
        raise UserError(
            f"{where}{path} is truncated: {size:,} of {preset.size:,} bytes",
            hint=f"download {preset.filename} again" + (f" (remove {path} first)" if cached else ""),
        )
    digest = sha256_file(path)
    if size != preset.size or digest != preset.sha256:
        raise UserError(
            f"{where}{path} has the wrong checksum for {preset.name}: sha256 {digest}, expected {preset.sha256}",
            hint=f"use the kernel.org {preset.filename} ({preset.size:,} bytes)" + (f"; remove {path}" if cached else ""),
        )


def check_clean_tree(tree: Path) -> None:
    """kbuild refuses O= builds from a tree configured in place."""
    if (tree / ".config").exists() or (tree / "include" / "config").is_dir():
        raise UserError(
            f"the kernel tree {tree} has been configured or built in place (.config or include/config exists); "
            "out-of-tree builds need a clean source tree",
            hint="run 'make mrproper' in it (this removes its .config), or build from a clean copy",
        )


def tree_fingerprint(tree: Path) -> str:
    """Identity of a user's tree: git HEAD plus local changes, or (no git)
    every file's path, size and mtime."""
    digest = hashlib.sha256()
    if (tree / ".git").exists():
        head = _git(tree, "rev-parse", "HEAD")
        if head is not None:
            digest.update(head.encode())
            digest.update((_git(tree, "diff", "HEAD", "--binary") or "").encode())
            untracked = _git(tree, "ls-files", "--others", "--exclude-standard", "-z") or ""
            for name in sorted(filter(None, untracked.split("\0"))):
                try:
                    st = (tree / name).stat()
                except OSError:
                    continue
                digest.update(f"{name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
            return "git-" + digest.hexdigest()
    digest.update("".join(f"{name}\0{size}\0{mtime}\n" for name, (size, mtime) in sorted(stat_manifest(tree).items())).encode())
    return "tree-" + digest.hexdigest()


def stat_manifest(tree: Path) -> dict:
    """{path: [size, mtime_ns]} of every file under ``tree`` except .git."""
    out: dict = {}
    stack = [""]
    while stack:
        rel = stack.pop()
        try:
            entries = list(os.scandir(tree / rel if rel else tree))
        except OSError:
            continue
        for entry in entries:
            name = f"{rel}/{entry.name}" if rel else entry.name
            try:
                if entry.is_dir(follow_symlinks=False):
                    if entry.name != ".git":
                        stack.append(name)
                    continue
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            out[name] = [st.st_size, st.st_mtime_ns]
    return out


def _git(tree: Path, *args: str) -> Optional[str]:
    try:
        out = proc.run(["git", "-C", str(tree), *args], timeout=120, separate_stderr=True)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def copy_tree(src: Path, dest: Path, echo=None) -> None:
    """Copy a kernel tree (without .git) into an existing empty directory."""
    pack, unpack = proc.pipe(["tar", "-C", str(src), "--exclude=.git", "-cf", "-", "."], ["tar", "-C", str(dest), "-xf", "-"], echo=echo)
    if pack != 0 or unpack != 0:
        raise InfraError(f"copying {src} to {dest} failed (tar exited {pack} and {unpack})")
