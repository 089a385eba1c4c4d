"""Downloading Debian packages without root: a private apt configuration
per (suite, architecture) inside the harness cache, so neither
``/etc/apt`` nor ``dpkg --add-architecture`` is touched.

apt checks the Release signatures with Debian's archive keyring, and the
.deb checksums against the signed indexes, as usual."""
from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Optional

from harness.errors import InfraError, UserError
from harness.host import proc, toolchain
from harness.host.cache import Cache, raise_if_disk_full

KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
#: How long downloaded indexes stay fresh before an update.
INDEX_TTL = 24 * 3600


def system_mirror(sources_dir: Path = Path("/etc/apt/sources.list.d"), sources_list: Path = Path("/etc/apt/sources.list")) -> str:
    """The Debian mirror this machine already uses (so proxies and local
    mirrors keep working), else deb.debian.org."""
    texts = []
    if sources_dir.is_dir():
        for path in sorted(sources_dir.glob("*.sources")) + sorted(sources_dir.glob("*.list")):
            try:
                texts.append(path.read_text())
            except OSError:
                continue
    try:
        texts.append(sources_list.read_text())
    except OSError:
        pass
    return parse_mirror("\n".join(texts)) or DEFAULT_MIRROR


def parse_mirror(text: str) -> Optional[str]:
    """The first Debian archive URI in deb822 or one-line sources text."""
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("#"):
            continue
        match = re.match(r"^URIs:\s*(\S+)", line)
        if not match:
            match = re.match(r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+\S+", line)
        if match:
            uri = match.group(1).rstrip("/")
            if "security" not in uri and "debian" in uri:
                return uri
    return None


class Apt:
    """apt-get with private state for one suite and architecture."""

    def __init__(self, cache: Cache, suite: str, arch: str, mirror: Optional[str] = None, echo=None, offline: bool = False) -> None:
        self.cache = cache
        self.suite = suite
        self.arch = arch
        self.mirror = mirror or os.environ.get("HARNESS_DEBIAN_MIRROR") or system_mirror()
        self.echo = echo
        self.offline = offline
        self.root = cache.dir("apt", f"{suite}-{arch}")

    def _options(self) -> list[str]:
        root = self.root
        opts = {
            "Dir::Etc::SourceList": str(root / "sources.list"),
            "Dir::Etc::SourceParts": str(root / "sources.list.d"),
            "Dir::Etc::Preferences": str(root / "preferences"),
            "Dir::Etc::PreferencesParts": str(root / "preferences.d"),
            "Dir::State": str(root / "state"),
            "Dir::State::Lists": str(root / "state" / "lists"),
            "Dir::State::status": str(root / "state" / "status"),
            "Dir::Cache": str(root / "cache"),
            "Dir::Cache::Archives": str(root / "cache" / "archives"),
            "Dir::Cache::pkgcache": "",
            "Dir::Cache::srcpkgcache": "",
            "APT::Architecture": self.arch,
            "APT::Architectures::": self.arch,
            "Debug::NoLocking": "1",
            "Acquire::Retries": "3",
        }
        if os.geteuid() == 0:
            # apt drops to the _apt user for downloads; it cannot write here.
            opts["APT::Sandbox::User"] = "root"
        return [arg for key, value in opts.items() for arg in ("-o", f"{key}={value}")]

    def _prepare(self) -> None:
        for sub in ("sources.list.d", "preferences.d", "state/lists/partial", "cache/archives/partial"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        (self.root / "state" / "status").touch()
        line = f"deb [signed-by={KEYRING}] {self.mirror} {self.suite} main\n"
        (self.root / "sources.list").write_text(line)

    def _fresh(self) -> bool:
        stamp = self.root / "updated"
        return stamp.exists() and time.time() - stamp.stat().st_mtime < INDEX_TTL

    def update(self) -> None:
        """apt-get update, at most once a day (never when offline)."""
        toolchain.require(["apt-get", "dpkg-deb"], "downloading Debian packages")
        self._prepare()
        stamp = self.root / "updated"
        if self._fresh():
            return
        if self.offline:
            if stamp.exists():
                return
            raise UserError(
                f"no package index for Debian {self.suite}/{self.arch} in the cache and --offline forbids fetching one",
                hint="run once without --offline on a machine that reaches a Debian mirror",
            )
        result = proc.run(["apt-get", *self._options(), "update"], echo=self.echo)
        if result.returncode != 0 or "Err:" in result.stdout:
            # apt says "Error writing to file - write (28: No space left on device)"
            raise_if_disk_full(self.root, f"apt-get update for Debian {self.suite}/{self.arch}", result.stdout)
            raise InfraError(
                f"apt-get update for Debian {self.suite}/{self.arch} failed (mirror {self.mirror})",
                hint="check the network or the mirror; set HARNESS_DEBIAN_MIRROR to another one",
                log_tail=result.stdout.splitlines()[-10:],
            )
        stamp.touch()

    def download(self, package: str, dest: Path) -> Path:
        """Download one package's .deb into ``dest``; returns its path."""
        dest.mkdir(parents=True, exist_ok=True)
        existing = self._existing(package, dest)
        if existing and (self.offline or self._fresh()):
            return existing
        self.update()
        if self.offline and not existing:
            raise UserError(f"{package} ({self.arch}) is not in the cache and --offline forbids downloading it")
        result = proc.run(["apt-get", *self._options(), "download", f"{package}:{self.arch}"], cwd=dest, echo=self.echo)
        if result.returncode != 0:
            raise_if_disk_full(dest, f"downloading {package}:{self.arch}", result.stdout)
            if "Unable to locate package" in result.stdout or "has no installation candidate" in result.stdout:
                raise UserError(f"Debian {self.suite} has no package {package} for {self.arch}", log_tail=result.stdout.splitlines()[-5:])
            raise InfraError(f"downloading {package}:{self.arch} failed", log_tail=result.stdout.splitlines()[-10:])
        found = self._existing(package, dest)
        if found is None:
            raise InfraError(f"apt-get download {package}:{self.arch} left no .deb in {dest}")
        return found

    def _existing(self, package: str, dest: Path) -> Optional[Path]:
        matches = list(dest.glob(f"{package}_*_{self.arch}.deb")) + list(dest.glob(f"{package}_*_all.deb"))
        return max(matches, key=lambda p: p.stat().st_mtime) if matches else None
