import hashlib
import http.server
import shutil
import io
import tarfile
import threading

import pytest

from harness.cache import Cache

FAKE_MAKEFILE = """\
VERSION = 5
PATCHLEVEL = 0
SUBLEVEL = 0
EXTRAVERSION = -fake
O ?= .
TREE := $(CURDIR)

allnoconfig:
\t@mkdir -p $(O)
\t@echo allnoconfig >> $(TREE)/../calls.log
\t@grep -v -x -f $(TREE)/../drop.txt $(KCONFIG_ALLCONFIG) > $(O)/.config || true

defconfig:
\t@mkdir -p $(O)
\t@echo CONFIG_DEFCONFIG_ONLY=y > $(O)/.config

olddefconfig:
\t@echo olddefconfig >> $(TREE)/../calls.log

clean:
\t@echo clean >> $(TREE)/../calls.log

bzImage Image zImage:
\t@echo build >> $(TREE)/../calls.log
\t@echo "  CC      mm/migrate.o"
\t@echo "  CC      mm/compaction.o"
\t@if [ -f $(TREE)/../FAIL ]; then echo "mm/migrate.c:1398:5: error: expected ';' before 'return'"; exit 2; fi
\t@if [ -f $(TREE)/../HANG ]; then sleep 30; fi
\t@mkdir -p $(O)/arch/x86/boot $(O)/arch/arm64/boot $(O)/arch/arm/boot
\t@echo image > $(O)/arch/x86/boot/bzImage
\t@echo image > $(O)/arch/arm64/boot/Image
\t@echo image > $(O)/arch/arm/boot/zImage
\t@echo "ffffffff81000000 T _stext" > $(O)/System.map
"""

FAKE_KCONFIG = """\
config SHMEM
\tbool "shmem" if EXPERT
\tdefault y

config TMPFS
\tbool "tmpfs"
\tdepends on SHMEM
"""


@pytest.fixture
def fake_tree(tmp_path):
    """A fake kernel tree whose Makefile records calls and fails on demand
    (touch ../FAIL), drops options (lines in ../drop.txt)."""
    tree = tmp_path / "linux"
    tree.mkdir()
    (tree / "Makefile").write_text(FAKE_MAKEFILE)
    (tree / "Kconfig").write_text(FAKE_KCONFIG)
    (tmp_path / "drop.txt").write_text("")
    (tmp_path / "calls.log").write_text("")
    return tree


@pytest.fixture
def cache(tmp_path):
    return Cache(tmp_path / "cache")


def make_tarball(top: str, files: dict) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:xz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"{top}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.fixture
def fake_server():
    """An HTTP server on 127.0.0.1 serving {path: bytes}."""
    content: dict = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            body = content.get(self.path)
            if body is None:
                self.send_response(404)
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", content
    finally:
        server.shutdown()
        server.server_close()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def needs(*tools):
    """Skip (saying which package) when a host tool the test runs is absent."""
    from harness.toolchain import PACKAGES

    absent = [t for t in tools if shutil.which(t) is None]
    return pytest.mark.skipif(
        bool(absent), reason=f"needs {', '.join(absent)} (apt-get install {' '.join(PACKAGES.get(t, t) for t in absent)})"
    )
