"""The guest image: an initramfs built without root from Debian packages for
the target arch (``guest/image.yaml``), our static workloads and the init
script (``guest/init.j2``), cached by its inputs.

Per-run secrets (the SSH public key, an entropy seed) never go into the
cached image: ``overlay()`` makes a small second archive that the kernel
unpacks on top (concatenated initramfs archives)."""
from __future__ import annotations

import datetime as _dt
import gzip
import hashlib
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Optional, Sequence

import jinja2
import yaml

from harness.arches import Arch
from harness.arches import arch as lookup_arch
from harness.errors import InfraError, UserError
from harness.host import proc, toolchain
from harness.host.apt import Apt
from harness.host.cache import Cache, key_of, raise_if_disk_full, sha256_file
from harness.host.paths import guest_dir
from harness.image import cpio, elf
from harness.image.boot_state import TRACE_BUFFER_KB

RECIPE_VERSION = 2  # 2: a nobody user (kselftest on-fault-limit)
MARKER = "HARNESS-"
TRIPLETS = {"amd64": "x86_64-linux-gnu", "arm64": "aarch64-linux-gnu", "armhf": "arm-linux-gnueabihf"}
#: The guest's view of QEMU user networking.
GUEST_IP, GATEWAY_IP, NETDEV = "10.0.2.15", "10.0.2.2", "eth0"


@dataclass(frozen=True)
class Recipe:
    suite: str
    packages: tuple
    install: Mapping[str, str]
    static: tuple
    workloads: tuple
    dirs: tuple

    @classmethod
    def load(cls, path: Path) -> "Recipe":
        data = yaml.safe_load(path.read_text())
        return cls(
            suite=data["suite"],
            packages=tuple(data["packages"]),
            install=dict(data["install"]),
            static=tuple(data.get("static", ())),
            workloads=tuple(data.get("workloads", ())),
            dirs=tuple(data.get("dirs", ())),
        )


@dataclass(frozen=True)
class ImageRequest:
    arch: str
    offline: bool = False
    quiet: bool = False


@dataclass
class ImageResult:
    path: Path
    key: str
    arch: str
    cached: bool
    metadata: dict = field(default_factory=dict)


def render_init(template: str, image_id: str) -> str:
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    return env.from_string(template).render(
        image_id=image_id,
        marker_prefix=MARKER,
        hostname="guest",
        netdev=NETDEV,
        guest_ip=GUEST_IP,
        gateway_ip=GATEWAY_IP,
        trace_buffer_kb=TRACE_BUFFER_KB,
    )


def base_entries(init_text: str, recipe: Recipe) -> list[cpio.Entry]:
    """Directories, the init script, device nodes and account files."""
    entries = [cpio.Entry.dir(d) for d in _with_parents(recipe.dirs + ("bin", "sbin", "usr", "etc", "lib"))]
    entries.append(cpio.Entry.node("dev/console", "c", 5, 1))
    entries.append(cpio.Entry.node("dev/null", "c", 1, 3, 0o666))
    entries.append(cpio.Entry.file("init", init_text, 0o755))
    entries.append(cpio.Entry.symlink("bin/sh", "busybox"))
    # nobody: kselftest's on-fault-limit runs as an unprivileged user
    entries.append(cpio.Entry.file("etc/passwd", "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/sh\n"))
    entries.append(cpio.Entry.file("etc/group", "root:x:0:\ntty:x:5:\nnogroup:x:65534:\n"))
    entries.append(cpio.Entry.file("etc/shells", "/bin/sh\n"))
    return entries


def _with_parents(dirs: Sequence[str]) -> list[str]:
    out: list[str] = []
    for d in dirs:
        parts = d.strip("/").split("/")
        for i in range(1, len(parts) + 1):
            p = "/".join(parts[:i])
            if p not in out:
                out.append(p)
    return sorted(out, key=lambda p: (p.count("/"), p))


def library_closure(binaries: Mapping[str, bytes], roots: Sequence[Path], triplet: str) -> dict[str, Path]:
    """Image path -> host file for every library (and loader) the dynamic
    binaries need, found in the unpacked packages."""
    search = []
    for root in roots:
        for sub in (f"lib/{triplet}", f"usr/lib/{triplet}", "lib", "usr/lib"):
            search.append((root, sub))
    found: dict[str, Path] = {}
    pending = list(binaries.values())
    seen: set[str] = set()
    while pending:
        info = elf.parse(pending.pop())
        names = list(info.needed)
        if info.interp:
            interp = info.interp.lstrip("/")
            for root in roots:
                candidate = root / interp
                if candidate.exists():
                    found[interp] = candidate
                    break
            else:
                raise UserError(f"the dynamic loader /{interp} is in none of the guest packages", hint="add libc6 to guest/image.yaml")
        for name in names:
            if name in seen:
                continue
            seen.add(name)
            for root, sub in search:
                candidate = root / sub / name
                if candidate.exists():
                    found[f"{sub}/{name}"] = candidate
                    pending.append(candidate.read_bytes())
                    break
            else:
                raise UserError(
                    f"library {name} is in none of the guest packages",
                    hint="add the Debian package that ships it to guest/image.yaml (packages:)",
                )
    return found


def file_entries(path: str, host: Path, roots: Sequence[Path]) -> list[cpio.Entry]:
    """Entries for one packaged file at image ``path``: itself, or the
    symlink it is plus (recursively) what it points to inside its package."""
    if not host.is_symlink():
        return [cpio.Entry.file(path, host.read_bytes(), host.stat().st_mode & 0o777)]
    link = os.readlink(host)
    root = next(r for r in roots if r in host.parents)
    target = (root / link.lstrip("/")) if link.startswith("/") else (host.parent / link)
    target_path = os.path.normpath(os.path.relpath(target, root))
    if target_path.startswith(".."):
        raise UserError(f"{path} links outside its package ({link})")
    return [cpio.Entry.symlink(path, link)] + file_entries(target_path, root / target_path, roots)


def overlay(authorized_key: str, seed: bytes, extra: Optional[Mapping[str, bytes]] = None) -> bytes:
    """The per-run archive: the SSH public key and the entropy seed."""
    entries = [
        cpio.Entry.dir("root", 0o700),
        cpio.Entry.dir("root/.ssh", 0o700),
        cpio.Entry.file("root/.ssh/authorized_keys", authorized_key.strip() + "\n", 0o600),
        cpio.Entry.dir("etc"),
        cpio.Entry.dir("etc/harness", 0o700),
        cpio.Entry.file("etc/harness/seed", seed, 0o600),
    ]
    for path, data in (extra or {}).items():
        entries.append(cpio.Entry.file(path, data, 0o644))
    return cpio.archive(entries)


class ImageBuilder:
    def __init__(self, cache: Optional[Cache] = None, echo=None, stream=None) -> None:
        self.cache = cache or Cache()
        self.echo = echo
        self.stream = stream or sys.stderr

    def build(self, request: ImageRequest) -> ImageResult:
        started = time.monotonic()
        the_arch = lookup_arch(request.arch)
        self.cache.check_writable()
        guest = guest_dir()
        recipe = Recipe.load(guest / "image.yaml")
        toolchain.require([f"{the_arch.user_cross}gcc", "dpkg-deb", "apt-get"], f"building the {the_arch.name} guest image")
        cc = toolchain.compiler(the_arch.user_cross)
        apt = Apt(self.cache, recipe.suite, the_arch.debian_arch, echo=self.echo, offline=request.offline)
        debs_dir = self.cache.dir("debs", f"{recipe.suite}-{the_arch.debian_arch}")
        debs = {name: apt.download(name, debs_dir) for name in recipe.packages}
        sources = self._guest_sources(guest, recipe)
        key = key_of(
            {
                "recipe": RECIPE_VERSION,
                "arch": the_arch.name,
                "debs": {name: sha256_file(path) for name, path in debs.items()},
                "guest": sources,
                "compiler": cc.version,
                "trace_buffer_kb": TRACE_BUFFER_KB,
            }
        )
        final = self.cache.dir("images") / key
        if (final / "image.json").is_file() and (final / "initramfs.cpio.gz").is_file():
            meta = json.loads((final / "image.json").read_text())
            return ImageResult(final / "initramfs.cpio.gz", key, the_arch.name, True, meta)
        with self.cache.lock(f"image-{key}"), tempfile.TemporaryDirectory(prefix="harness-image-") as work:
            work_dir = Path(work)
            entries, meta_files = self._assemble(the_arch, recipe, guest, debs, work_dir, key)
            meta = {
                "schema": 1,
                "key": key,
                "arch": the_arch.name,
                "debian_arch": the_arch.debian_arch,
                "suite": recipe.suite,
                "packages": {name: path.name for name, path in debs.items()},
                "compiler": cc.short,
                "files": meta_files,
                "built": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                "elapsed_s": round(time.monotonic() - started, 1),
            }
            with self.cache.staging(final, complete=lambda entry: (entry / "image.json").is_file()
                                    and (entry / "initramfs.cpio.gz").is_file()) as tmp:
                data = cpio.archive(entries)
                with open(tmp / "initramfs.cpio.gz", "wb") as raw:
                    with gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6, mtime=0) as gz:
                        gz.write(data)
                (tmp / "image.json").write_text(json.dumps(meta, indent=2) + "\n")
        if not request.quiet:
            print(f"[image {the_arch.name}] built {final / 'initramfs.cpio.gz'}", file=self.stream)
        return ImageResult(final / "initramfs.cpio.gz", key, the_arch.name, False, meta)

    def _guest_sources(self, guest: Path, recipe: Recipe) -> dict[str, str]:
        files = [guest / "image.yaml", guest / "init.j2"]
        files += sorted((guest / "workloads").glob("*.[ch]"))
        return {str(p.relative_to(guest)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}

    def _assemble(self, the_arch: Arch, recipe: Recipe, guest: Path, debs, work: Path, key: str):
        roots = []
        for name, deb in debs.items():
            root = work / "pkg" / name
            root.mkdir(parents=True)
            result = proc.run(["dpkg-deb", "-x", str(deb), str(root)], echo=self.echo)
            if result.returncode != 0:
                raise_if_disk_full(root, f"unpacking {deb.name}", result.stdout)
                raise InfraError(f"cannot unpack {deb}", log_tail=result.stdout.splitlines()[-5:])
            roots.append(root)
        init_text = render_init((guest / "init.j2").read_text(), key)
        entries = base_entries(init_text, recipe)
        binaries: dict[str, bytes] = {}
        meta_files = {}
        for src, dest in recipe.install.items():
            host = next((r / src for r in roots if (r / src).exists()), None)
            if host is None:
                raise UserError(f"{src} is in none of the guest packages", hint="check guest/image.yaml")
            data = host.read_bytes()
            info = elf.parse(data)
            if src in recipe.static and not info.static:
                raise UserError(f"{src} must be static but is dynamic", hint="use the -static package variant")
            if not info.static:
                binaries[dest] = data
            entries.append(cpio.Entry.file(dest, data, 0o755))
            meta_files[dest] = hashlib.sha256(data).hexdigest()
        for path, host in sorted(library_closure(binaries, roots, TRIPLETS[the_arch.debian_arch]).items()):
            for entry in file_entries(path, host, roots):
                entries.extend(cpio.Entry.dir(d) for d in _with_parents([str(Path(entry.path).parent)]))
                entries.append(entry)
        for name in recipe.workloads:
            data = compile_workload(the_arch, guest / "workloads" / f"{name}.c", work, self.echo)
            entries.append(cpio.Entry.file(f"usr/bin/{name}", data, 0o755))
            meta_files[f"usr/bin/{name}"] = hashlib.sha256(data).hexdigest()
        return _dedupe(entries), meta_files


def _dedupe(entries: list[cpio.Entry]) -> list[cpio.Entry]:
    seen, out = set(), []
    for entry in entries:
        if entry.path in seen:
            continue
        seen.add(entry.path)
        out.append(entry)
    return out


def compile_workload(the_arch: Arch, source: Path, work: Path, echo=None) -> bytes:
    """Compile one workload -static with the arch's compiler."""
    out = work / "bin" / source.stem
    out.parent.mkdir(parents=True, exist_ok=True)
    argv = [f"{the_arch.user_cross}gcc", "-static", "-O2", "-Wall", "-std=gnu11", "-o", str(out), str(source)]
    result = proc.run(argv, echo=echo)
    if result.returncode != 0:
        raise_if_disk_full(out.parent, f"compiling {source.name}", result.stdout)
        if "cannot find -lc" in result.stdout or "crt1.o" in result.stdout:
            pkg = toolchain.LIBC_DEV.get(the_arch.user_cross, "libc6-dev")
            raise UserError(f"no static C library for {the_arch.user_cross or 'the host'}gcc", hint=f"apt-get install {pkg}")
        raise InfraError(f"workload {source.name} does not compile for {the_arch.name}", log_tail=result.stdout.splitlines()[-15:])
    return out.read_bytes()
